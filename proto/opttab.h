/*
 * opttab.h - a daemon's configuration as one table (STYLE.md #13).
 *
 * kabard, kabar-agent and kabar-oversight each describe their settings as
 * rows: flag name, type, default, environment variable, placeholder, help,
 * and where the value goes in the program's config struct. One parser fills
 * the struct from the defaults, then the environment, then the flags
 * ("--name VALUE" or "--name=VALUE"; switches take none), and one printer
 * writes the rows for --help, so the help cannot drift from what is parsed.
 */
#ifndef KABAR_OPTTAB_H
#define KABAR_OPTTAB_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kabar.h"

typedef enum opt_type {
    OPT_STRING, /* const char * (points into argv or the environment) */
    OPT_SWITCH, /* bool, no value */
    OPT_BYTES,  /* uint64_t, with K/M/G/T suffixes (opt_parse_bytes) */
    OPT_LEVEL,  /* int, a klog_level by name: debug, info, warn, error */
    OPT_LONG,   /* long, within [min, max] */
} opt_type;

typedef struct opt_row {
    const char *name; /* flag without "--" */
    opt_type type;
    const char *def; /* default as text, NULL: none */
    const char *env; /* environment variable, NULL: none */
    const char *arg; /* placeholder in --help */
    const char *help;
    size_t offset; /* of the field in the program's config struct */
    long min, max; /* OPT_LONG only */
} opt_row;

/* A row; `offset` is offsetof(the config struct, field). */
#define OPT_ROW(name_, type_, def_, env_, arg_, help_, offset_)                                    \
    {                                                                                              \
        .name = (name_), .type = (type_), .def = (def_), .env = (env_), .arg = (arg_),             \
        .help = (help_), .offset = (offset_)                                                       \
    }
/* An OPT_LONG row whose value must be within [min_, max_]. */
#define OPT_RANGE(name_, def_, env_, arg_, help_, offset_, min_, max_)                             \
    {                                                                                              \
        .name = (name_), .type = OPT_LONG, .def = (def_), .env = (env_), .arg = (arg_),            \
        .help = (help_), .offset = (offset_), .min = (min_), .max = (max_)                         \
    }

typedef struct opt_table {
    const char *program; /* named in messages: "see kabard --help" */
    const opt_row *rows;
    size_t nrows;
} opt_table;

/* Looks up an environment variable: getenv, or a fake in tests. */
typedef const char *(*opt_getenv_fn)(const char *name);
/* getenv, as an opt_getenv_fn. */
const char *opt_getenv(const char *name);

/*
 * Zero `cfg` (`size` bytes), then fill it from the defaults, the
 * environment (through `env`, which may be NULL for none) and the flags in
 * argv[1..argc-1]. Returns 0, or KABAR_INVALID_ARGUMENT with a message
 * naming the flag or variable and what was expected. Does not check that
 * required settings are present (so that --help works without them).
 */
int opt_parse(const opt_table *t, void *cfg, size_t size, int argc, char **argv, opt_getenv_fn env,
              kabar_error *err);

/* One line per row: "  --name ARG   help [default: X] [env: Y]". */
void opt_usage(const opt_table *t, FILE *out);

/*
 * A size: a decimal number with an optional suffix K, M, G or T (powers of
 * 1024, optionally followed by "iB" or "B"). Returns 0 or -1.
 */
int opt_parse_bytes(const char *s, uint64_t *out);

#endif /* KABAR_OPTTAB_H */
