/*
 * config.c - the configuration table of kabard (see config.h).
 */
#include "config.h"

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
            "accept plaintext connections (required: CURVE is not available in this version; "
            "development and loopback only)",
            F(insecure)),
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
    return 0;
}

void config_usage(FILE *out)
{
    fprintf(out, "usage: kabard --data DIR --insecure [--listen ENDPOINT] [--schema FILE]\n"
                 "              [--max-size BYTES] [--unsafe-nosync] [--log-level LEVEL]\n"
                 "       kabard --help | --version\n\n"
                 "kabard is the kabar broker: it validates published events, commits them to\n"
                 "the log in DIR, acks them once they are on disk and relays them to\n"
                 "subscribers.\n\noptions:\n");
    opt_usage(&table, out);
    fprintf(out, "\nexit status: 0 stopped cleanly (SIGTERM/SIGINT), 1 runtime failure,\n"
                 "2 bad usage or cannot start. See docs/OPERATIONS.md.\n");
}
