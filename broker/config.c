/*
 * config.c - the configuration table of kabard (see config.h).
 */
#include "config.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "klog.h"
#include "opttab.h"

#define F(field) offsetof(kabard_config, field)

static const opt_row rows[] = {
    OPT_ROW("data", OPT_STRING, NULL, "KABAR_DATA", "DIR",
            "directory of the log (created if missing; one kabard per directory)", F(data)),
    OPT_ROW("listen", OPT_STRING, KABAR_DEFAULT_ENDPOINT, "KABAR_LISTEN", "ENDPOINT",
            "ZeroMQ endpoint to bind; a wildcard port (tcp://127.0.0.1:*) is allowed, the real one "
            "is written to DIR/kabard.endpoint",
            F(listen)),
    OPT_ROW("insecure", OPT_SWITCH, NULL, NULL, NULL,
            "plaintext, no keys: every peer may do everything (development only; refused unless "
            "--listen is ipc:// or loopback tcp)",
            F(insecure)),
    OPT_ROW("origin", OPT_STRING, NULL, "KABAR_ORIGIN", "NAME",
            "the log's name in its signed checkpoints, e.g. kabar.padang.go.id/log (kept when the "
            "log is created; default kabar/HOSTNAME)",
            F(origin)),
    OPT_RANGE("checkpoint-interval", "60", NULL, "SECONDS",
              "sign a checkpoint at least this often while the log grows", F(checkpoint_interval),
              1, 86400),
    OPT_RANGE("checkpoint-events", "10000", NULL, "N",
              "... or as soon as this many events were added since the last one",
              F(checkpoint_events), 1, 1000000000),
    OPT_ROW("schema", OPT_STRING, NULL, "KABAR_SCHEMA", "FILE",
            "schema registry to validate events with (default: the built-in one)", F(schema)),
    OPT_ROW("max-size", OPT_BYTES, "0", NULL, "BYTES",
            "size limit of the log, e.g. 64G (0: until the disk is full); publishers get DISK_FULL "
            "beyond it",
            F(max_size)),
    OPT_ROW("unsafe-nosync", OPT_SWITCH, NULL, NULL, NULL,
            "do not fsync commits: acked events can be lost in a crash (benchmarks only)",
            F(unsafe_nosync)),
    OPT_ROW("log-level", OPT_LEVEL, "info", NULL, "LEVEL", "debug, info, warn or error",
            F(log_level)),
    OPT_ROW("help", OPT_SWITCH, NULL, NULL, NULL, "print this help and exit", F(help)),
    OPT_ROW("version", OPT_SWITCH, NULL, NULL, NULL, "print the version and exit", F(version)),
};

static const opt_table table = {"kabard", rows, sizeof rows / sizeof rows[0]};

int config_parse(kabard_config *c, int argc, char **argv, config_getenv_fn env, kabar_error *err)
{
    return opt_parse(&table, c, sizeof *c, argc, argv, env, err);
}

int config_check(const kabard_config *c, kabar_error *err)
{
    if (c->data == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "no data directory: pass --data DIR or set KABAR_DATA");
    if (c->insecure && !config_endpoint_local(c->listen))
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "--insecure on %s: plaintext is allowed only on ipc:// or a "
                               "loopback tcp address (127.0.0.1, [::1], localhost); drop "
                               "--insecure, or --listen on one of those",
                               c->listen);
    return 0;
}

bool config_endpoint_local(const char *ep)
{
    if (strncmp(ep, "ipc://", 6) == 0 || strncmp(ep, "inproc://", 9) == 0)
        return true;
    if (strncmp(ep, "tcp://", 6) != 0)
        return false;
    const char *h = ep + 6, *colon = strrchr(h, ':');
    size_t len = colon ? (size_t)(colon - h) : strlen(h);
    if (memchr(h, ';', len) != NULL) /* tcp://SOURCE;HOST:PORT names the bound side last */
        return false;
    if ((len == 9 && memcmp(h, "localhost", 9) == 0) || (len == 5 && memcmp(h, "[::1]", 5) == 0))
        return true;
    if (len < 9 || len > 15 || memcmp(h, "127.", 4) != 0)
        return false;
    int dots = 0;
    for (size_t i = 0; i < len; i++) {
        if (h[i] == '.')
            dots++;
        else if (h[i] < '0' || h[i] > '9')
            return false;
    }
    return dots == 3;
}

void config_usage(FILE *out)
{
    fprintf(out, "usage: kabard --data DIR [--listen ENDPOINT] [--insecure] [--origin NAME]\n"
                 "              [--checkpoint-interval SECONDS] [--checkpoint-events N]\n"
                 "              [--schema FILE] [--max-size BYTES] [--unsafe-nosync]\n"
                 "              [--log-level LEVEL]\n"
                 "       kabard --help | --version\n\n"
                 "kabard is the kabar broker: it validates published events, commits them to\n"
                 "the log in DIR, acks them once they are on disk and relays them to\n"
                 "subscribers. Clients connect with CURVE and a key registered in the log\n"
                 "(kabar agency add); the broker's key is DIR/broker.key, created on first\n"
                 "start, and clients pin DIR/broker.pub. See docs/SECURITY.md.\n\noptions:\n");
    opt_usage(&table, out);
    fprintf(out, "\nexit status: 0 stopped cleanly (SIGTERM/SIGINT), 1 runtime failure,\n"
                 "2 bad usage or cannot start. See docs/OPERATIONS.md.\n");
}
