/*
 * cli.h - what the `kabar` subcommands share: the subcommand entry points,
 * the broker endpoint rule, option value parsers, signals and output.
 *
 * Every subcommand is `int cmd_NAME(int argc, char **argv)` with argv[0]
 * the subcommand's name; it parses its own options with getopt_long,
 * prints its usage (matching docs/CLI.md) for --help, and returns the
 * process exit code:
 */
#ifndef KABAR_CLI_H
#define KABAR_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kabar.h"

#define CLI_OK    0 /* done, everything accepted / the check passed */
#define CLI_FAIL  1 /* ran, but some event was rejected or the check failed */
#define CLI_USAGE 2 /* bad usage, or cannot run (no broker, no log, ...) */

/* The subcommands (tools/cmd_NAME.c). */
int cmd_publish(int argc, char **argv);
int cmd_tail(int argc, char **argv);
int cmd_replay(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/*
 * The broker endpoint: `flag` (from --broker) when not NULL, else env
 * KABAR_BROKER when set and not empty, else KABAR_DEFAULT_ENDPOINT.
 */
const char *cli_broker(const char *flag);

/*
 * Print "kabar CMD: message\n" to stderr. Returns CLI_USAGE so that
 * `return cli_error(...)` ends a subcommand that cannot run.
 */
int cli_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "Try 'kabar CMD --help'." after a usage error; returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * Option values. Each returns true on success; on failure it prints a
 * usage error naming `opt` ("--window") and returns false.
 */
bool cli_parse_u64(const char *cmd, const char *opt, const char *s, uint64_t min, uint64_t *out);
bool cli_parse_int(const char *cmd, const char *opt, const char *s, int min, int max, int *out);
/* An RFC 3339 instant, or a date YYYY-MM-DD meaning 00:00:00 UTC of that day. */
bool cli_parse_time(const char *cmd, const char *opt, const char *s, int64_t *ns);

/*
 * SIGINT and SIGTERM set cli_stop (without SA_RESTART, so a blocking
 * wait returns early); SIGPIPE is ignored so that a closed pipe is a
 * write error (EPIPE) the command can end on quietly.
 */
extern volatile sig_atomic_t cli_stop;
void cli_signals(void);

/* Give stdout a large buffer (call before the first write). */
void cli_stdout_buffered(void);

/* Is stdout a pipe whose reader has exited (`kabar replay | head`)? */
bool cli_reader_gone(void);

/*
 * Flush stdout. 0, or the errno of the failed write (EPIPE when the reader
 * went away); other errors are also reported on stderr.
 */
int cli_flush(const char *cmd);

/* Append s[0..n) as a JSON string (quotes and escapes) to b. */
int cli_json_str(kabar_buf *b, const char *s, size_t n);

/* Print "kabar CMD: <err->message>" and return the exit code for err->code. */
int cli_fail(const char *cmd, const kabar_error *err);

#endif /* KABAR_CLI_H */
