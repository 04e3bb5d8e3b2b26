/*
 * opttab.c - a daemon's configuration as one table (see opttab.h).
 */
#include "opttab.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "klog.h"

int opt_parse_bytes(const char *s, uint64_t *out)
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
static int set(void *cfg, const opt_row *r, const char *val, const char *from, kabar_error *err)
{
    char *field = (char *)cfg + r->offset;
    char *end;
    switch (r->type) {
    case OPT_STRING:
        if (val[0] == '\0')
            return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "%s: expected %s, got nothing",
                                   from, r->arg);
        *(const char **)field = val;
        return 0;
    case OPT_SWITCH:
        *(bool *)field = true;
        return 0;
    case OPT_BYTES:
        if (opt_parse_bytes(val, (uint64_t *)field) != 0)
            return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                                   "%s: \"%s\" is not a size (expected bytes, e.g. 1073741824 "
                                   "or 64G)",
                                   from, val);
        return 0;
    case OPT_LEVEL: {
        int lv = klog_level_parse(val);
        if (lv < 0)
            return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                                   "%s: \"%s\" is not a log level (expected debug, info, warn "
                                   "or error)",
                                   from, val);
        *(int *)field = lv;
        return 0;
    }
    case OPT_LONG: {
        errno = 0;
        long v = strtol(val, &end, 10);
        if (errno != 0 || end == val || *end != '\0' || v < r->min || v > r->max)
            return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                                   "%s: \"%s\" is not a number from %ld to %ld", from, val, r->min,
                                   r->max);
        *(long *)field = v;
        return 0;
    }
    }
    return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "%s: unsupported setting", from);
}

const char *opt_getenv(const char *name)
{
    return getenv(name);
}

static const opt_row *find(const opt_table *t, const char *name, size_t len)
{
    for (size_t i = 0; i < t->nrows; i++)
        if (strlen(t->rows[i].name) == len && memcmp(t->rows[i].name, name, len) == 0)
            return &t->rows[i];
    return NULL;
}

static int defaults_and_env(const opt_table *t, void *cfg, size_t size, opt_getenv_fn env,
                            kabar_error *err)
{
    memset(cfg, 0, size);
    for (size_t i = 0; i < t->nrows; i++) {
        const opt_row *r = &t->rows[i];
        int rc;
        if (r->def != NULL && (rc = set(cfg, r, r->def, r->name, err)) != 0)
            return rc;
        const char *v = (r->env != NULL && env != NULL) ? env(r->env) : NULL;
        if (v != NULL && v[0] != '\0' && (rc = set(cfg, r, v, r->env, err)) != 0)
            return rc;
    }
    return 0;
}

int opt_parse(const opt_table *t, void *cfg, size_t size, int argc, char **argv, opt_getenv_fn env,
              kabar_error *err)
{
    int rc = defaults_and_env(t, cfg, size, env, err);
    if (rc != 0)
        return rc;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0')
            return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                                   "unexpected argument \"%s\" (%s takes only options; see %s "
                                   "--help)",
                                   a, t->program, t->program);
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
        const opt_row *r = find(t, name, nlen);
        if (r == NULL)
            return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                                   "unknown option --%.*s (see %s --help)", (int)nlen, name,
                                   t->program);
        const char *val;
        if (r->type == OPT_SWITCH) {
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
        if ((rc = set(cfg, r, val, from, err)) != 0)
            return rc;
    }
    return 0;
}

void opt_usage(const opt_table *t, FILE *out)
{
    for (size_t i = 0; i < t->nrows; i++) {
        const opt_row *r = &t->rows[i];
        char flag[48];
        snprintf(flag, sizeof flag, "--%s%s%s", r->name, r->arg ? " " : "", r->arg ? r->arg : "");
        fprintf(out, "  %-22s %s", flag, r->help);
        if (r->def != NULL && strcmp(r->def, "0") != 0)
            fprintf(out, " [default: %s]", r->def);
        if (r->env != NULL)
            fprintf(out, " [env: %s]", r->env);
        fputc('\n', out);
    }
}
