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
int cmd_agency(int argc, char **argv);

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
 * Identity: who this process is to the broker (docs/CLI.md "Keys").
 *
 *   --key FILE              this principal's secret key file (kabar keygen);
 *                           env KABAR_KEY. Without one the client speaks
 *                           plaintext and signs nothing (a kabard --insecure).
 *   --server-key KEY|FILE   the broker's public key to pin ("ed25519:..." or a
 *                           file holding it, e.g. the broker's DATA/broker.pub);
 *                           env KABAR_SERVER_KEY; with --data DIR and neither,
 *                           DIR/broker.pub when it exists.
 *
 * Both are global options (`kabar --key FILE COMMAND ...`, read by kabar.c)
 * and also options of the commands that connect and have no --key of their
 * own (publish, tail, status, bench, ...): a command's value wins over the
 * global one, which wins over the environment. `kabar agency` uses --key
 * for the agency's public key, so its identity is the global --key or
 * KABAR_KEY.
 */
enum { CLI_OPT_KEY = 0x4b00, CLI_OPT_SERVER_KEY };
#define CLI_IDENTITY_LONGOPTS                                                                      \
    {"key", required_argument, NULL, CLI_OPT_KEY},                                                 \
    {                                                                                              \
        "server-key", required_argument, NULL, CLI_OPT_SERVER_KEY                                  \
    }
#define CLI_IDENTITY_HELP                                                                          \
    "      --key FILE        your secret key file (default $KABAR_KEY); without one:\n"            \
    "                        plaintext and unsigned, for a kabard --insecure\n"                    \
    "      --server-key KEY  the broker's public key, ed25519:... or a file holding it\n"          \
    "                        (default $KABAR_SERVER_KEY)\n"

/* Set the --key / --server-key value (NULL or "" clears it). The string is borrowed. */
void cli_set_key(const char *path);
void cli_set_server_key(const char *key_or_path);
/*
 * For CLI_OPT_KEY / CLI_OPT_SERVER_KEY from getopt: set it and return true;
 * false for any other option.
 */
bool cli_identity_option(int opt, const char *arg);

/*
 * Resolve the identity (flags, environment, `data`/broker.pub when data is
 * not NULL), load the key file and the server key once per process, and set
 * o->key and o->server_key (NULL, NULL for plaintext). CLI_OK, or CLI_USAGE
 * after printing why ("kabar CMD: --key FILE: ..."): key file missing,
 * unreadable or readable by others, server key malformed, or one of the
 * two given without the other.
 */
int cli_identity(const char *cmd, const char *data, kabar_client_opts *o);
/* The identity key loaded by cli_identity, or NULL (plaintext). Lives until exit. */
const struct kkey *cli_key(void);

/*
 * cli_identity, then kabar_client_connect to cli_broker(broker_flag). CLI_OK
 * with *out set, or CLI_USAGE after printing the reason.
 */
int cli_connect(const char *cmd, const char *broker_flag, const char *data, kabar_client_opts *o,
                kabar_client **out);

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
