/*
 * config.h - kabard's configuration: one table, filled from flags and the
 * environment, printed by --help.
 *
 * Every setting is one row of the table in config.c: its flag name, type,
 * default, environment variable and help text. A flag beats its environment
 * variable, which beats the default. Adding a setting is adding a row and a
 * field below; --help and docs/OPERATIONS.md list them all.
 *
 * Strings in a kabard_config point into argv, the environment or static
 * defaults: they live as long as the process and are never freed.
 */
#ifndef KABARD_CONFIG_H
#define KABARD_CONFIG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kabar.h"

typedef struct kabard_config {
    const char *data;         /* --data DIR, KABAR_DATA: the log's directory (required) */
    const char *listen;       /* --listen ENDPOINT, KABAR_LISTEN */
    bool insecure;            /* --insecure: plaintext, no keys (ipc:// or loopback only) */
    const char *origin;       /* --origin NAME, KABAR_ORIGIN: checkpoint origin of a new log */
    long checkpoint_interval; /* --checkpoint-interval SECONDS */
    long checkpoint_events;   /* --checkpoint-events N */
    const char *schema;       /* --schema FILE, KABAR_SCHEMA; NULL: the built-in registry */
    uint64_t max_size;        /* --max-size BYTES: the log's size limit, 0 = the disk's */
    bool unsafe_nosync;       /* --unsafe-nosync: benchmarks only, acks before the disk has it */
    int log_level;            /* --log-level: a klog_level */
    bool help;                /* --help */
    bool version;             /* --version */
} kabard_config;

/* Looks up an environment variable; getenv in kabard, a fake in tests. */
typedef const char *(*config_getenv_fn)(const char *name);

/*
 * Fill `c` from defaults, then the environment (through `env`, which may be
 * NULL for none), then the flags in argv[1..argc-1]. Flags take their value
 * as "--name VALUE" or "--name=VALUE"; switches take none. Returns 0, or
 * KABAR_INVALID_ARGUMENT with a message naming the flag or variable and
 * what was expected. Does not check that required settings are present:
 * see config_check (so that --help works without them).
 */
int config_parse(kabard_config *c, int argc, char **argv, config_getenv_fn env, kabar_error *err);

/*
 * Required settings present, and --insecure only on an endpoint nobody else
 * can reach: KABAR_INVALID_ARGUMENT saying what to pass otherwise.
 */
int config_check(const kabard_config *c, kabar_error *err);

/*
 * May a plaintext endpoint be bound? True for ipc://, inproc:// and tcp://
 * on a loopback address: 127.0.0.0/8, [::1], localhost.
 */
bool config_endpoint_local(const char *endpoint);

/* The usage text with one line per table row, as --help prints it. */
void config_usage(FILE *out);

#endif /* KABARD_CONFIG_H */
