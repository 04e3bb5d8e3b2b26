/*
 * config.c - the configuration table of kabard (see config.h).
 */
#include "config.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "klog.h"

typedef enum cfg_type {
    CFG_STRING, /* const char * */
    CFG_SWITCH, /* bool, no value */
    CFG_BYTES,  /* uint64_t, with K/M/G/T suffixes */
    CFG_LEVEL,  /* int, a klog_level by name */
} cfg_type;

typedef struct cfg_row {
    const char *name; /* flag without "--" */
    cfg_type type;
    const char *def; /* default as text, NULL: none */
    const char *env; /* environment variable, NULL: none */
    const char *arg; /* placeholder in --help */
    const char *help;
    size_t offset; /* of the field in kabard_config */
} cfg_row;

#define F(field) offsetof(kabard_config, field)

static const cfg_row rows[] = {
    {"data", CFG_STRING, NULL, "KABAR_DATA", "DIR",
     "directory of the log (created if missing; one kabard per directory)", F(data)},
    {"listen", CFG_STRING, KABAR_DEFAULT_ENDPOINT, "KABAR_LISTEN", "ENDPOINT",
     "ZeroMQ endpoint to bind; a wildcard port (tcp://127.0.0.1:*) is allowed, the real one "
     "is written to DIR/kabard.endpoint",
     F(listen)},
    {"insecure", CFG_SWITCH, NULL, NULL, NULL,
     "accept plaintext connections (required: CURVE is not available in this version; "
     "development and loopback only)",
     F(insecure)},
    {"schema", CFG_STRING, NULL, "KABAR_SCHEMA", "FILE",
     "schema registry to validate events with (default: the built-in one)", F(schema)},
    {"max-size", CFG_BYTES, "0", NULL, "BYTES",
     "size limit of the log, e.g. 64G (0: until the disk is full); publishers get DISK_FULL "
     "beyond it",
     F(max_size)},
    {"unsafe-nosync", CFG_SWITCH, NULL, NULL, NULL,
     "do not fsync commits: acked events can be lost in a crash (benchmarks only)",
     F(unsafe_nosync)},
    {"log-level", CFG_LEVEL, "info", NULL, "LEVEL", "debug, info or warn", F(log_level)},
    {"help", CFG_SWITCH, NULL, NULL, NULL, "print this help and exit", F(help)},
    {"version", CFG_SWITCH, NULL, NULL, NULL, "print the version and exit", F(version)},
};

#define NROWS (sizeof rows / sizeof rows[0])

int config_parse_bytes(const char *s, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return -1;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return -1;
    unsigned shift = 0;
    switch (*end) {
    case 'K':
    case 'k':
        shift = 10;
        end++;
        break;
    case 'M':
    case 'm':
        shift = 20;
        end++;
        break;
    case 'G':
    case 'g':
        shift = 30;
        end++;
        break;
    case 'T':
    case 't':
        shift = 40;
        end++;
        break;
    default:
        break;
    }
    if (shift != 0 && strcmp(end, "iB") == 0)
        end += 2;
    else if (strcmp(end, "B") == 0)
        end += 1;
    if (*end != '\0')
        return -1;
    if (shift != 0 && v > (UINT64_MAX >> shift))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}

/* Set one row's field from text; `from` names the flag or variable for errors. */
static int set(kabard_config *c, const cfg_row *r, const char *val, const char *from,
               kabar_error *err)
{
    char *field = (char *)c + r->offset;
    switch (r->type) {
    case CFG_STRING:
        if (val[0] == '\0')
            return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "%s: expected %s, got nothing",
                                   from, r->arg);
        *(const char **)field = val;
        return 0;
    case CFG_SWITCH:
        *(bool *)field = true;
        return 0;
    case CFG_BYTES:
        if (config_parse_bytes(val, (uint64_t *)field) != 0)
            return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                                   "%s: \"%s\" is not a size (expected bytes, e.g. 1073741824 "
                                   "or 64G)",
                                   from, val);
        return 0;
    case CFG_LEVEL: {
        int lv = klog_level_parse(val);
        if (lv < 0 || lv > KLOG_WARN)
            return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                                   "%s: \"%s\" is not a log level (expected debug, info or "
                                   "warn)",
                                   from, val);
        *(int *)field = lv;
        return 0;
    }
    }
    return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "%s: unsupported setting", from);
}

static const cfg_row *find(const char *name, size_t len)
{
    for (size_t i = 0; i < NROWS; i++)
        if (strlen(rows[i].name) == len && memcmp(rows[i].name, name, len) == 0)
            return &rows[i];
    return NULL;
}

static int defaults_and_env(kabard_config *c, config_getenv_fn env, kabar_error *err)
{
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < NROWS; i++) {
        const cfg_row *r = &rows[i];
        int rc;
        if (r->def != NULL && (rc = set(c, r, r->def, r->name, err)) != 0)
            return rc;
        const char *v = (r->env != NULL && env != NULL) ? env(r->env) : NULL;
        if (v != NULL && v[0] != '\0' && (rc = set(c, r, v, r->env, err)) != 0)
            return rc;
    }
    return 0;
}

int config_parse(kabard_config *c, int argc, char **argv, config_getenv_fn env, kabar_error *err)
{
    int rc = defaults_and_env(c, env, err);
    if (rc != 0)
        return rc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0')
            return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                                   "unexpected argument \"%s\" (kabard takes only options; see "
                                   "kabard --help)",
                                   a);
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const cfg_row *r = find(name, nlen);
        if (r == NULL)
            return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                                   "unknown option --%.*s (see kabard --help)", (int)nlen, name);
        const char *val;
        if (r->type == CFG_SWITCH) {
            if (eq != NULL)
                return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "--%s takes no value", r->name);
            val = "";
        } else if (eq != NULL) {
            val = eq + 1;
        } else if (i + 1 < argc) {
            val = argv[++i];
        } else {
            return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "--%s needs a value (%s)", r->name,
                                   r->arg);
        }
        char from[64];
        snprintf(from, sizeof from, "--%s", r->name);
        if ((rc = set(c, r, val, from, err)) != 0)
            return rc;
    }
    return 0;
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
    for (size_t i = 0; i < NROWS; i++) {
        const cfg_row *r = &rows[i];
        char flag[48];
        snprintf(flag, sizeof flag, "--%s%s%s", r->name, r->arg ? " " : "", r->arg ? r->arg : "");
        fprintf(out, "  %-22s %s", flag, r->help);
        if (r->def != NULL && strcmp(r->def, "0") != 0)
            fprintf(out, " [default: %s]", r->def);
        if (r->env != NULL)
            fprintf(out, " [env: %s]", r->env);
        fputc('\n', out);
    }
    fprintf(out, "\nexit status: 0 stopped cleanly (SIGTERM/SIGINT), 1 runtime failure,\n"
                 "2 bad usage or cannot start. See docs/OPERATIONS.md.\n");
}
