/*
 * audit_report.c - `kabar audit report` (see audit_report.h and
 * docs/OVERSIGHT.md "The auditor's report").
 *
 * The whole log goes into a fresh oversight state (rebuild.h: the agent's
 * apply code), the report model is built from it with its charts
 * (report.h), the model gains where it came from ("source",
 * "generated_at"), and one of the formats is written: text, csv, json by
 * report_fmt, html by audit_html. A file given with --out is written
 * beside itself and renamed into place, so that it is never half there.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "audit_html.h"
#include "audit_report.h"
#include "cli.h"
#include "ostate.h"
#include "rebuild.h"
#include "report.h"
#include "store.h"

static const char *const CMD = "audit report";

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: kabar audit report (--data DIR | --broker EP) [--since DATE] [--until DATE]\n"
            "                          [--agency ID] [--format text|csv|json|html] [--out FILE]\n"
            "                          [--now TIME] [--tz ZONE]\n"
            "\n"
            "The oversight report's figures (visits, findings, innovations, attendance per\n"
            "agency) computed from the log itself, with the oversight agent's own code, so\n"
            "that an auditor does not depend on the secretariat's agent. The HTML form is\n"
            "one self-contained file with charts that opens in a browser without a network.\n"
            "\n"
            "Options:\n"
            "  -D, --data DIR      read the log offline from kabard's data directory\n"
            "                      (read-only; safe while kabard runs)\n"
            "  -b, --broker EP     read the log through this broker (default when --data is\n"
            "                      not given: $KABAR_BROKER, else " KABAR_DEFAULT_ENDPOINT ")\n"
            "  --since DATE        first day of the period, YYYY-MM-DD (inclusive)\n"
            "  --until DATE        the day after the period (exclusive), YYYY-MM-DD\n"
            "  -a, --agency ID     the report of this agency only\n"
            "  -f, --format F      text (default), csv, json or html; --json is --format json\n"
            "  -o, --out FILE      write to FILE (replaced whole) instead of stdout\n"
            "  --now TIME          the clock: RFC 3339 instant or date (default: now)\n"
            "  --tz ZONE           the region's zone: +07:00 (default, WIB), WITA, WIT, +HH:MM\n"
            "  -t, --timeout MS    how long to wait for a silent broker (default "
            "10000)\n" CLI_IDENTITY_HELP "\n"
            "Days are the region's days. Stock figures (open, overdue, innovations by stage)\n"
            "are as of the period's last day, or today when that is earlier. Every figure\n"
            "and chart is defined in docs/OVERSIGHT.md.\n"
            "\n"
            "Exit codes: 0 written, 2 bad usage, the log or broker cannot be read, or the\n"
            "output cannot be written.\n");
}

typedef enum out_format { OUT_TEXT, OUT_CSV, OUT_JSON, OUT_HTML } out_format;

typedef struct opts {
    const char *data, *broker, *since, *until, *agency, *format, *out, *now, *tz;
    out_format fmt;
    int timeout_ms;
} opts;

static int parse(int argc, char **argv, opts *o)
{
    static const struct option longs[] = {{"data", required_argument, 0, 'D'},
                                          {"broker", required_argument, 0, 'b'},
                                          {"since", required_argument, 0, 's'},
                                          {"until", required_argument, 0, 'u'},
                                          {"agency", required_argument, 0, 'a'},
                                          {"format", required_argument, 0, 'f'},
                                          {"json", no_argument, 0, 'j'},
                                          {"out", required_argument, 0, 'o'},
                                          {"now", required_argument, 0, 'n'},
                                          {"tz", required_argument, 0, 'z'},
                                          {"timeout", required_argument, 0, 't'},
                                          {"help", no_argument, 0, 'h'},
                                          CLI_IDENTITY_LONGOPTS,
                                          {0, 0, 0, 0}};
    static const char *const formats[] = {"text", "csv", "json", "html"};
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "D:b:a:f:o:t:h", longs, NULL)) != -1) {
        switch (c) {
        case 'D':
            o->data = optarg;
            break;
        case 'b':
            o->broker = optarg;
            break;
        case 's':
            o->since = optarg;
            break;
        case 'u':
            o->until = optarg;
            break;
        case 'a':
            o->agency = optarg;
            break;
        case 'f':
            o->format = optarg;
            break;
        case 'j':
            o->format = "json";
            break;
        case 'o':
            o->out = optarg;
            break;
        case 'n':
            o->now = optarg;
            break;
        case 'z':
            o->tz = optarg;
            break;
        case 't':
            if (!cli_parse_int(CMD, "--timeout", optarg, 1, 86400000, &o->timeout_ms))
                return CLI_USAGE;
            break;
        case 'h':
            usage(stdout);
            return -1;
        default:
            if (cli_identity_option(c, optarg))
                break;
            return cli_usage_error(CMD, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (o->data != NULL && o->broker != NULL)
        return cli_usage_error(CMD, "--data (offline) and --broker (online) exclude each other");
    o->fmt = OUT_TEXT;
    if (o->format != NULL) {
        size_t i = 0;
        while (i < 4 && strcmp(o->format, formats[i]) != 0)
            i++;
        if (i == 4)
            return cli_usage_error(CMD, "--format: \"%s\" is not text, csv, json or html",
                                   o->format);
        o->fmt = (out_format)i;
    }
    if (o->agency != NULL && (o->agency[0] == '\0' || strlen(o->agency) > KABAR_MAX_AGENCY_LEN))
        return cli_usage_error(CMD, "--agency: \"%s\" is not an agency id (1 to %d bytes)",
                               o->agency, KABAR_MAX_AGENCY_LEN);
    return 0;
}

/* Fill st from the log: offline from --data, else through the broker. */
static int read_log(const opts *o, ostate *st, uint64_t *records)
{
    kabar_error e = {0};
    if (o->data != NULL) {
        if (rebuild_from_log(st, o->data, records, &e) != 0)
            return cli_error(CMD, "cannot read the log in %s: %s", o->data, e.message);
        return 0;
    }
    kabar_client_opts co = {.timeout_ms = o->timeout_ms, .window = 1};
    int rc = cli_identity(CMD, NULL, &co);
    if (rc != 0)
        return rc;
    if (rebuild_from_broker_opts(st, cli_broker(o->broker), &co, records, &e) != 0)
        return cli_error(CMD, "cannot read the log through %s: %s", cli_broker(o->broker),
                         e.message);
    return 0;
}

/*
 * Offline: the root hash (base64) of the log's Merkle tree of `size` events,
 * the ones the report was computed from, so that the auditor can hold the
 * report against a signed checkpoint of that size. "" when it cannot be had
 * (an older log): the report does not depend on it.
 */
static void log_root(const char *dir, uint64_t size, char *out, size_t cap)
{
    store *log = NULL;
    store_reader *r = NULL;
    store_opts so = {.readonly = true};
    kabar_error e = {0};
    uint8_t root[32];
    out[0] = '\0';
    if (store_open(&log, dir, &so, &e) == 0 && store_reader_open(log, &r, &e) == 0 &&
        store_root(r, size, root, &e) == 0)
        sodium_bin2base64(out, cap, root, sizeof root, sodium_base64_VARIANT_ORIGINAL);
    else
        fprintf(stderr, "kabar %s: warning: no Merkle root for the report: %s\n", CMD, e.message);
    store_reader_close(&r);
    store_close(&log);
}

/* The report model, with where it came from. */
static int build(const opts *o, const report_opts *ro, ostate *st, uint64_t records, json_t **model)
{
    kabar_error e = {0};
    ostate_txn *t = NULL;
    json_t *seen = NULL;
    int rc = ostate_begin(st, false, &t, &e);
    if (rc == 0 && o->agency != NULL)
        rc = ostate_get(t, OSTATE_AGENCIES, o->agency, strlen(o->agency), &seen, &e);
    if (rc == 0)
        rc = report_build(t, ro, model, &e);
    ostate_abort(&t);
    if (rc != 0)
        return cli_fail(CMD, &e);
    if (o->agency != NULL && seen == NULL)
        fprintf(stderr,
                "kabar %s: warning: no event of the log names agency \"%s\": its figures are "
                "all zero (check the id: kabar agency list)\n",
                CMD, o->agency);
    json_decref(seen);
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
    json_t *src = json_object();
    json_object_set_new(src, "kind", json_string(o->data != NULL ? "log" : "broker"));
    json_object_set_new(src, "where",
                        json_string(o->data != NULL ? o->data : cli_broker(o->broker)));
    json_object_set_new(src, "records", json_integer((json_int_t)records));
    if (o->data != NULL && records > 0) {
        char root[64];
        uint64_t size = (uint64_t)json_integer_value(json_object_get(*model, "position"));
        log_root(o->data, size, root, sizeof root);
        if (root[0]) {
            json_object_set_new(src, "tree_size", json_integer((json_int_t)size));
            json_object_set_new(src, "root", json_string(root));
        }
    }
    json_object_set_new(*model, "source", src);
    json_object_set_new(*model, "generated_at", json_string(when));
    return 0;
}

static int write_model(FILE *f, const opts *o, const json_t *m, kabar_error *e)
{
    static const report_format fmts[] = {REPORT_TEXT, REPORT_CSV, REPORT_JSON};
    if (o->fmt == OUT_HTML)
        return audit_html_write(f, m, e);
    if (o->fmt == OUT_TEXT) {
        const json_t *src = json_object_get(m, "source");
        fprintf(f, "Computed from the log (%s %s, %lld events) by kabar audit report.\n",
                o->data != NULL ? "log directory" : "broker",
                json_string_value(json_object_get(src, "where")),
                (long long)json_integer_value(json_object_get(src, "records")));
        if (json_is_string(json_object_get(src, "root")))
            fprintf(f, "Log tree of size %lld, root %s\n",
                    (long long)json_integer_value(json_object_get(src, "tree_size")),
                    json_string_value(json_object_get(src, "root")));
        fputc('\n', f);
    }
    return report_write(f, m, fmts[o->fmt], e);
}

/* Write to --out FILE through FILE.tmp-PID and a rename, or to stdout. */
static int output(const opts *o, const json_t *m)
{
    kabar_error e = {0};
    if (o->out == NULL || strcmp(o->out, "-") == 0) {
        if (write_model(stdout, o, m, &e) != 0)
            return cli_reader_gone() ? CLI_OK : cli_fail(CMD, &e);
        return 0;
    }
    char tmp[PATH_MAX];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp-%ld", o->out, (long)getpid()) >= sizeof tmp)
        return cli_error(CMD, "--out: the path is too long");
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return cli_error(CMD, "cannot write %s: %s", o->out, strerror(errno));
    int rc = write_model(f, o, m, &e);
    if (fsync(fileno(f)) != 0 && rc == 0)
        rc = kabar_error_set(&e, KABAR_IO, "cannot write %s: %s", o->out, strerror(errno));
    if (fclose(f) != 0 && rc == 0)
        rc = kabar_error_set(&e, KABAR_IO, "cannot write %s: %s", o->out, strerror(errno));
    if (rc == 0 && rename(tmp, o->out) != 0)
        rc = kabar_error_set(&e, KABAR_IO, "cannot rename %s to %s: %s", tmp, o->out,
                             strerror(errno));
    if (rc != 0) {
        unlink(tmp);
        return cli_fail(CMD, &e);
    }
    return 0;
}

int audit_report_main(int argc, char **argv)
{
    opts o = {.timeout_ms = 10000};
    report_opts ro = {.charts = true};
    kabar_error e = {0};
    cli_signals();
    int rc = parse(argc, argv, &o);
    if (rc != 0)
        return rc < 0 ? CLI_OK : rc;
    if (report_opts_parse(&ro, o.since, o.until, o.now, o.tz, &e) != 0)
        return cli_usage_error(CMD, "%s", e.message);
    ro.agency = o.agency;
    char tmp[PATH_MAX] = "";
    ostate *st = NULL;
    json_t *model = NULL;
    uint64_t records = 0;
    if (rebuild_tmp_open(tmp, sizeof tmp, &st, &e) != 0)
        return cli_fail(CMD, &e);
    rc = read_log(&o, st, &records);
    if (rc == 0)
        rc = build(&o, &ro, st, records, &model);
    rebuild_tmp_remove(tmp, &st);
    if (rc == 0)
        rc = output(&o, model);
    json_decref(model);
    return rc;
}
