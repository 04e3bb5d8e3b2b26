/*
 * cmd_oversight.c - `kabar oversight report` (see cmd_oversight.h and
 * docs/OVERSIGHT.md "kabar oversight report").
 *
 * Exit codes: 0 the report was written; 2 bad usage, no state in --data,
 * the broker or log cannot be read, or the output cannot be written.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "cmd_oversight.h"
#include "odate.h"
#include "ostate.h"
#include "rebuild.h"
#include "report.h"

static const char *const CMD = "oversight";

static void usage(FILE *f)
{
    fprintf(f, "Usage: kabar oversight report --data DIR [--since DATE] [--until DATE]\n"
               "                              [--format text|csv|json] [--now TIME] [--tz ZONE]\n"
               "       kabar oversight report --rebuild (--broker EP | --log DIR) [same options]\n"
               "\n"
               "The secretariat's oversight report, from kabar-oversight's state: first the\n"
               "agencies with no visit in the period and the findings past their due date,\n"
               "then per agency the visits, findings, innovations and attendance rate.\n"
               "\n"
               "Options:\n"
               "  -D, --data DIR      kabar-oversight's data directory (read-only; safe while\n"
               "                      the agent runs)\n"
               "  --since DATE        first day of the period, YYYY-MM-DD (inclusive)\n"
               "  --until DATE        the day after the period (exclusive), YYYY-MM-DD\n"
               "  -f, --format F      text (default), csv (one row per agency) or json\n"
               "  --json              the same as --format json\n"
               "  --now TIME          the clock: RFC 3339 instant or date (default: now)\n"
               "  --tz ZONE           the region's zone: +07:00 (default, WIB), WITA, WIT, +HH:MM\n"
               "  --rebuild           replay the whole log into a fresh state first, with the\n"
               "                      agent's own code, and report from that\n"
               "  -b, --broker EP     --rebuild from this broker, as the principal of the global\n"
               "                      --key (kabar --key FILE oversight ...) or $KABAR_KEY\n"
               "  --log DIR           --rebuild offline from this log directory (kabard --data)\n"
               "  -t, --timeout MS    how long to wait for a silent broker (default 10000)\n"
               "\n"
               "Days are the region's days. Stock figures (open, overdue, days overdue) are\n"
               "as of the period's last day, or today when that is earlier. Every figure is\n"
               "defined in docs/OVERSIGHT.md.\n"
               "\n"
               "Exit codes: 0 ok, 2 bad usage or the state, log or broker cannot be read.\n");
}

typedef struct opts {
    const char *data, *broker, *log, *format, *since, *until, *now, *tz;
    bool rebuild;
    int timeout_ms;
} opts;

static int parse(int argc, char **argv, opts *o)
{
    static const struct option longs[] = {{"data", required_argument, 0, 'D'},
                                          {"since", required_argument, 0, 's'},
                                          {"until", required_argument, 0, 'u'},
                                          {"format", required_argument, 0, 'f'},
                                          {"json", no_argument, 0, 'j'},
                                          {"now", required_argument, 0, 'n'},
                                          {"tz", required_argument, 0, 'z'},
                                          {"rebuild", no_argument, 0, 'r'},
                                          {"broker", required_argument, 0, 'b'},
                                          {"log", required_argument, 0, 'L'},
                                          {"timeout", required_argument, 0, 't'},
                                          {"help", no_argument, 0, 'h'},
                                          {0, 0, 0, 0}};
    int c;
    opterr = 0;
    optind = 1;
    while ((c = getopt_long(argc, argv, "D:f:b:t:h", longs, NULL)) != -1) {
        switch (c) {
        case 'D':
            o->data = optarg;
            break;
        case 's':
            o->since = optarg;
            break;
        case 'u':
            o->until = optarg;
            break;
        case 'f':
            o->format = optarg;
            break;
        case 'j':
            o->format = "json";
            break;
        case 'n':
            o->now = optarg;
            break;
        case 'z':
            o->tz = optarg;
            break;
        case 'r':
            o->rebuild = true;
            break;
        case 'b':
            o->broker = optarg;
            break;
        case 'L':
            o->log = optarg;
            break;
        case 't':
            if (!cli_parse_int(CMD, "--timeout", optarg, 1, 86400000, &o->timeout_ms))
                return CLI_USAGE;
            break;
        case 'h':
            usage(stdout);
            return -1;
        default:
            return cli_usage_error(CMD, "unknown or incomplete option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error(CMD, "unexpected argument '%s'", argv[optind]);
    if (!o->rebuild && o->data == NULL)
        return cli_usage_error(CMD, "--data DIR is required (kabar-oversight's data directory), "
                                    "or --rebuild with --broker or --log");
    if (!o->rebuild && (o->broker || o->log))
        return cli_usage_error(CMD, "--broker and --log are for --rebuild");
    if (o->rebuild && (o->broker == NULL) == (o->log == NULL))
        return cli_usage_error(CMD, "--rebuild needs one of --broker EP or --log DIR");
    return 0;
}

static int parse_day(const char *opt, const char *s, int32_t *day)
{
    *day = ODATE_NONE;
    if (s == NULL)
        return 0;
    if (!odate_parse(s, strlen(s), day))
        return cli_usage_error(CMD, "%s: \"%s\" is not a date (YYYY-MM-DD)", opt, s);
    return 0;
}

static int parse_report_opts(const opts *o, report_opts *r, report_format *fmt)
{
    kabar_error e = {0};
    int64_t now = kabar_now();
    if (o->format == NULL || strcmp(o->format, "text") == 0)
        *fmt = REPORT_TEXT;
    else if (strcmp(o->format, "csv") == 0)
        *fmt = REPORT_CSV;
    else if (strcmp(o->format, "json") == 0)
        *fmt = REPORT_JSON;
    else
        return cli_usage_error(CMD, "--format: \"%s\" is not text, csv or json", o->format);
    r->tz_s = ODATE_WIB;
    if (o->tz != NULL && !odate_tz_parse(o->tz, &r->tz_s))
        return cli_usage_error(CMD, "--tz: \"%s\" is not a zone (+07:00, WIB, WITA, WIT)", o->tz);
    if (o->now != NULL && odate_parse_time(o->now, r->tz_s, &now, &e) != 0)
        return cli_usage_error(CMD, "--now: %s", e.message);
    r->today = odate_of_instant(now, r->tz_s);
    if (parse_day("--since", o->since, &r->since) || parse_day("--until", o->until, &r->until))
        return CLI_USAGE;
    if (r->since != ODATE_NONE && r->until != ODATE_NONE && r->until < r->since)
        return cli_usage_error(CMD, "--until %s is before --since %s", o->until, o->since);
    return 0;
}

/* A fresh state in a temporary directory, filled from the log. */
static int rebuild(const opts *o, char *tmp, size_t cap, ostate **st)
{
    kabar_error e = {0};
    const char *base = getenv("TMPDIR");
    snprintf(tmp, cap, "%s/kabar-oversight-XXXXXX", base && base[0] ? base : "/tmp");
    if (mkdtemp(tmp) == NULL) {
        tmp[0] = '\0';
        return cli_error(CMD, "cannot make a temporary directory: %s (set TMPDIR)",
                         strerror(errno));
    }
    kabar_client_opts co = {.timeout_ms = o->timeout_ms};
    if (o->broker != NULL && cli_identity(CMD, NULL, &co) != CLI_OK) /* --key, KABAR_KEY */
        return CLI_USAGE;
    int rc = ostate_open(st, tmp, false, &e);
    if (rc == 0 && o->broker != NULL)
        rc = rebuild_from_broker_opts(*st, cli_broker(o->broker), &co, NULL, &e);
    else if (rc == 0)
        rc = rebuild_from_log(*st, o->log, NULL, &e);
    if (rc != 0) {
        cli_error(CMD, "cannot rebuild the state from %s: %s", o->broker ? o->broker : o->log,
                  e.message);
        return CLI_USAGE;
    }
    return 0;
}

static void remove_tmp(const char *tmp)
{
    char p[PATH_MAX + 32];
    if (tmp[0] == '\0')
        return;
    snprintf(p, sizeof p, "%s/%s", tmp, OSTATE_FILE);
    unlink(p);
    snprintf(p, sizeof p, "%s/%s-lock", tmp, OSTATE_FILE);
    unlink(p);
    rmdir(tmp);
}

static int report(int argc, char **argv)
{
    opts o = {.timeout_ms = 10000};
    report_opts ro = {0};
    report_format fmt = REPORT_TEXT;
    int rc = parse(argc, argv, &o);
    if (rc != 0)
        return rc < 0 ? CLI_OK : rc;
    if ((rc = parse_report_opts(&o, &ro, &fmt)) != 0)
        return rc;
    char tmp[PATH_MAX] = "";
    ostate *st = NULL;
    ostate_txn *t = NULL;
    json_t *model = NULL;
    kabar_error e = {0};
    if (o.rebuild)
        rc = rebuild(&o, tmp, sizeof tmp, &st);
    else if (ostate_open(&st, o.data, true, &e) != 0)
        rc = cli_fail(CMD, &e);
    if (rc == 0 && (ostate_begin(st, false, &t, &e) != 0 || report_build(t, &ro, &model, &e) != 0))
        rc = cli_fail(CMD, &e);
    ostate_abort(&t);
    if (rc == 0 && report_write(stdout, model, fmt, &e) != 0)
        rc = cli_reader_gone() ? CLI_OK : cli_fail(CMD, &e);
    json_decref(model);
    ostate_close(&st);
    remove_tmp(tmp);
    return rc;
}

int cmd_oversight(int argc, char **argv)
{
    cli_signals();
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (strcmp(argv[1], "report") == 0)
        return report(argc - 1, argv + 1);
    return cli_usage_error(CMD, "unknown subcommand '%s' (only 'report')", argv[1]);
}
