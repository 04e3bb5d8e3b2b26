/*
 * cmd_replay.c - `kabar replay`: write a range or period of the log, from a
 * broker (online) or straight from a data directory (offline, read-only,
 * safe while kabard runs), as JSON Lines, CSV or msgpack (docs/CLI.md
 * "replay").
 *
 * Both sources feed the same writer, one record at a time; output goes
 * through a 1 MiB stdio buffer. Periods are half-open: --since is
 * inclusive, --until exclusive, on received_at (the log's clock, which
 * never decreases along seq), so `--since 2023-05-01 --until 2023-05-02`
 * is exactly one UTC day.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "store.h"
#include "wire.h"

static const char *const CMD = "replay";

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: kabar replay (--broker EP | --data DIR) [--from SEQ] [--to SEQ]\n"
            "                    [--since TIME] [--until TIME] [--type PREFIX]\n"
            "                    [--source ID] [--target ID] [--format jsonl|csv|msgpack]\n"
            "\n"
            "Write every selected event of the log, then exit.\n"
            "\n"
            "Options:\n"
            "  -b, --broker EP    read from this broker (default when --data is not given:\n"
            "                     $KABAR_BROKER or " KABAR_DEFAULT_ENDPOINT ")\n"
            "  -D, --data DIR     read the log in DIR directly (read-only; safe while\n"
            "                     kabard runs)\n"
            "      --from SEQ     first seq (inclusive)\n"
            "      --to SEQ       last seq (inclusive); default: the head when replay starts\n"
            "      --since TIME   events received at or after TIME\n"
            "      --until TIME   events received before TIME\n"
            "                     (TIME: RFC 3339, or YYYY-MM-DD meaning 00:00 UTC)\n"
            "      --type PREFIX  only types starting with PREFIX\n"
            "      --source ID    only events published by this agency\n"
            "      --target ID    only events that concern this agency (or broadcasts)\n"
            "  -f, --format F     jsonl (default): one JSON event per line, with seq and\n"
            "                     received_at; csv: RFC 4180 with a header row\n"
            "                     seq,received_at,id,type,v,source,targets,occurred_at,corr,body;\n"
            "                     msgpack: records [seq, received_at, event] back to back\n"
            "  -t, --timeout MS   give up when the broker is silent this long (default 10000)\n"
            "  -h, --help         show this help\n"
            "\n"
            "Exit codes: 0 done, 2 bad usage, no log, or the broker cannot be reached.\n");
}

typedef enum { FMT_JSONL, FMT_CSV, FMT_MSGPACK } out_format;

typedef struct replay {
    out_format format;
    uint64_t from, to; /* 0: no bound */
    bool has_since, has_until;
    int64_t since, until;
    kabar_buf buf, tmp;
    uint64_t written;
    bool reader_gone; /* stdout is a pipe whose reader exited (| head) */
} replay;

/* ------------------------------------------------------------------------ */
/* Writers                                                                  */

static int csv_field(kabar_buf *b, const char *s, size_t n, bool last)
{
    bool quote = false;
    for (size_t i = 0; i < n && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\r' || s[i] == '\n';
    int rc = 0;
    if (!quote) {
        rc |= kabar_buf_append(b, s, n);
    } else {
        size_t run = 0;
        rc |= kabar_buf_append(b, "\"", 1);
        for (size_t i = 0; i < n; i++) {
            if (s[i] != '"')
                continue;
            rc |= kabar_buf_append(b, s + run, i + 1 - run); /* up to and with the quote */
            rc |= kabar_buf_append(b, "\"", 1);
            run = i + 1;
        }
        rc |= kabar_buf_append(b, s + run, n - run);
        rc |= kabar_buf_append(b, "\"", 1);
    }
    rc |= last ? kabar_buf_append(b, "\r\n", 2) : kabar_buf_append(b, ",", 1);
    return rc ? KABAR_NO_MEMORY : 0;
}

static int csv_cstr(kabar_buf *b, const char *s)
{
    return csv_field(b, s, strlen(s), false);
}

/* The body as compact JSON, rendered as in the JSON Lines form. */
static int body_json(replay *r, const kabar_record *rec, const kabar_event *ev, kabar_error *err)
{
    static const char key[] = ",\"body\":";
    int rc;
    r->tmp.len = 0;
    if ((rc = kabar_event_to_json(&r->tmp, 0, INT64_MIN, rec->bytes, rec->len, err)) != 0)
        return rc;
    /*
     * body is the last key. Inside a JSON string a quote is always escaped,
     * so the first `,"body":` is the key itself, not text in a value.
     */
    const char *p = strstr(r->tmp.data, key);
    size_t n = p ? strlen(p + sizeof key - 1) : 0;
    if (p && n >= 2) {
        memmove(r->tmp.data, p + sizeof key - 1, n - 1); /* drop the closing brace */
        r->tmp.len = n - 1;
        return 0;
    }
    r->tmp.len = 0;
    return wire_msgpack_to_json(&r->tmp, ev->body, ev->body_len, err);
}

static int write_csv(replay *r, const kabar_record *rec, kabar_error *err)
{
    kabar_event ev;
    char num[32], t[KABAR_TIME_MAX];
    kabar_buf *b = &r->buf;
    int rc;
    if ((rc = kabar_event_decode(NULL, rec->bytes, rec->len, &ev, err)) != 0)
        return rc;
    if ((rc = body_json(r, rec, &ev, err)) != 0)
        return rc;
    b->len = 0;
    snprintf(num, sizeof num, "%llu", (unsigned long long)rec->seq);
    rc |= csv_cstr(b, num);
    kabar_time_format(rec->received_at, t);
    rc |= csv_cstr(b, t);
    rc |= csv_field(b, ev.id.ptr, ev.id.len, false);
    rc |= csv_field(b, ev.type.ptr, ev.type.len, false);
    snprintf(num, sizeof num, "%u", ev.v);
    rc |= csv_cstr(b, num);
    rc |= csv_field(b, ev.source.ptr, ev.source.len, false);
    kabar_buf targets = {0};
    for (uint32_t i = 0; i < ev.ntargets; i++) {
        if (i > 0)
            rc |= kabar_buf_append(&targets, ";", 1);
        rc |= kabar_buf_append(&targets, ev.targets[i].ptr, ev.targets[i].len);
    }
    rc |= csv_field(b, targets.data ? targets.data : "", targets.len, false);
    kabar_buf_free(&targets);
    if (ev.has_occurred_at)
        kabar_time_format(ev.occurred_at, t);
    rc |= csv_cstr(b, ev.has_occurred_at ? t : "");
    rc |= csv_field(b, ev.corr.ptr ? ev.corr.ptr : "", ev.corr.ptr ? ev.corr.len : 0, false);
    rc |= csv_field(b, r->tmp.data, r->tmp.len, true);
    return rc ? kabar_error_set(err, KABAR_NO_MEMORY, "out of memory") : 0;
}

static int write_record(replay *r, const kabar_record *rec, kabar_error *err)
{
    kabar_buf *b = &r->buf;
    int rc = 0;
    b->len = 0;
    switch (r->format) {
    case FMT_JSONL:
        rc = kabar_event_to_json(b, rec->seq, rec->received_at, rec->bytes, rec->len, err);
        if (rc == 0)
            rc = kabar_buf_append(b, "\n", 1);
        break;
    case FMT_CSV:
        rc = write_csv(r, rec, err);
        break;
    case FMT_MSGPACK:
        rc = wire_enc_record(b, rec->seq, rec->received_at, rec->bytes, rec->len);
        break;
    }
    if (rc == KABAR_NO_MEMORY)
        return kabar_error_set(err, rc, "out of memory writing event seq %llu",
                               (unsigned long long)rec->seq);
    if (rc != 0) { /* a stored event that does not decode: say which one */
        kabar_error why = *err;
        return kabar_error_set(err, rc,
                               "event seq %llu in the log cannot be read: %s (the log is damaged; "
                               "--from %llu skips it)",
                               (unsigned long long)rec->seq, why.message,
                               (unsigned long long)rec->seq + 1);
    }
    if (fwrite(b->data, 1, b->len, stdout) != b->len) {
        int e = errno;
        r->reader_gone = e == EPIPE || cli_reader_gone();
        return kabar_error_set(err, KABAR_IO, "cannot write the output: %s", strerror(e));
    }
    r->written++;
    return 0;
}

/* Records outside the period or seq range that the source could not skip. */
static bool wanted(const replay *r, const kabar_record *rec, bool *past_end)
{
    if ((r->has_until && rec->received_at >= r->until) || (r->to && rec->seq > r->to)) {
        *past_end = true;
        return false;
    }
    return !(rec->seq < r->from || (r->has_since && rec->received_at < r->since));
}

/* ------------------------------------------------------------------------ */
/* Sources                                                                  */

static int replay_offline(replay *r, const char *dir, const store_filter *base, kabar_error *err)
{
    store *s = NULL;
    store_reader *rd = NULL;
    store_iter *it = NULL;
    store_opts so = {.readonly = true};
    store_filter f = *base;
    int rc;
    if ((rc = store_open(&s, dir, &so, err)) != 0 || (rc = store_reader_open(s, &rd, err)) != 0)
        goto done;
    f.from = r->from;
    f.to = r->to;
    if (r->has_since) {
        uint64_t first = store_seq_at_time(rd, r->since);
        if (first > f.from)
            f.from = first;
    }
    if (r->has_until) {
        uint64_t end = store_seq_at_time(rd, r->until); /* first seq not wanted */
        if (end <= (f.from ? f.from : 1))
            goto done; /* the period holds nothing */
        if (f.to == 0 || end - 1 < f.to)
            f.to = end - 1;
    }
    if (f.to == 0)
        f.to = store_reader_head(rd); /* the head as of now, even if kabard appends */
    if (f.to == 0 || (f.from && f.from > f.to))
        goto done;
    if ((rc = store_iter_open(rd, &f, &it, err)) != 0)
        goto done;
    for (;;) {
        store_record sr;
        if ((rc = store_iter_next(it, &sr, err)) != 0) {
            if (rc == KABAR_END)
                rc = 0;
            break;
        }
        kabar_record rec = {sr.seq, sr.received_at, sr.bytes, sr.len};
        if ((rc = write_record(r, &rec, err)) != 0 || cli_stop)
            break;
    }
done:
    store_iter_close(&it);
    store_reader_close(&rd);
    store_close(&s);
    return rc;
}

static int replay_online(replay *r, const char *broker, const kabar_client_opts *copts,
                         const store_filter *f, kabar_error *err)
{
    kabar_client *c = NULL;
    kabar_sub *sub = NULL;
    kabar_sub_opts so = {.type_prefix = f->type_prefix,
                         .source = f->source,
                         .target = f->target,
                         .start = KABAR_START_FIRST,
                         .until_seq = r->to,
                         .until_head = true,
                         .credit = 8192};
    int rc;
    if (r->has_since) {
        so.start = KABAR_START_TIME; /* --from, if also given, is applied as records come */
        so.time = r->since;
    } else if (r->from > 0) {
        so.start = KABAR_START_SEQ;
        so.seq = r->from;
    }
    if ((rc = kabar_client_connect(&c, broker, copts, err)) != 0 ||
        (rc = kabar_client_subscribe(c, &so, &sub, err)) != 0)
        goto done;
    while (!cli_stop) {
        kabar_record rec;
        bool past_end = false;
        rc = kabar_sub_next(sub, &rec, 500, err);
        if (rc == KABAR_TIMEOUT)
            continue;
        if (rc == KABAR_END) {
            rc = 0;
            break;
        }
        if (rc != 0)
            break;
        if (wanted(r, &rec, &past_end) && (rc = write_record(r, &rec, err)) != 0)
            break;
        if (past_end)
            break;
    }
done:
    kabar_sub_close(&sub);
    kabar_client_destroy(&c);
    return rc;
}

/* ------------------------------------------------------------------------ */

enum {
    OPT_FROM = 256,
    OPT_TO,
    OPT_SINCE,
    OPT_UNTIL,
    OPT_TYPE,
    OPT_SOURCE,
    OPT_TARGET,
};

static bool parse_format(const char *s, out_format *f)
{
    if (strcmp(s, "jsonl") == 0 || strcmp(s, "json") == 0)
        *f = FMT_JSONL;
    else if (strcmp(s, "csv") == 0)
        *f = FMT_CSV;
    else if (strcmp(s, "msgpack") == 0)
        *f = FMT_MSGPACK;
    else
        return false;
    return true;
}

int cmd_replay(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"broker", required_argument, NULL, 'b'},
        {"data", required_argument, NULL, 'D'},
        {"from", required_argument, NULL, OPT_FROM},
        {"to", required_argument, NULL, OPT_TO},
        {"since", required_argument, NULL, OPT_SINCE},
        {"until", required_argument, NULL, OPT_UNTIL},
        {"type", required_argument, NULL, OPT_TYPE},
        {"source", required_argument, NULL, OPT_SOURCE},
        {"target", required_argument, NULL, OPT_TARGET},
        {"format", required_argument, NULL, 'f'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *broker = NULL, *data = NULL;
    store_filter f = {0};
    replay r = {.format = FMT_JSONL};
    kabar_client_opts copts = {.timeout_ms = 10000};
    int opt;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "b:D:f:t:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'b':
            broker = optarg;
            break;
        case 'D':
            data = optarg;
            break;
        case OPT_FROM:
            if (!cli_parse_u64(CMD, "--from", optarg, 1, &r.from))
                return CLI_USAGE;
            break;
        case OPT_TO:
            if (!cli_parse_u64(CMD, "--to", optarg, 1, &r.to))
                return CLI_USAGE;
            break;
        case OPT_SINCE:
            if (!cli_parse_time(CMD, "--since", optarg, &r.since))
                return CLI_USAGE;
            r.has_since = true;
            break;
        case OPT_UNTIL:
            if (!cli_parse_time(CMD, "--until", optarg, &r.until))
                return CLI_USAGE;
            r.has_until = true;
            break;
        case OPT_TYPE:
            f.type_prefix = optarg;
            break;
        case OPT_SOURCE:
            f.source = optarg;
            break;
        case OPT_TARGET:
            f.target = optarg;
            break;
        case 'f':
            if (!parse_format(optarg, &r.format))
                return cli_usage_error(CMD, "--format: \"%s\" is not one of jsonl, csv, msgpack",
                                       optarg);
            break;
        case 't':
            if (!cli_parse_int(CMD, "--timeout", optarg, 1, 3600000, &copts.timeout_ms))
                return CLI_USAGE;
            break;
        case 'h':
            usage(stdout);
            return CLI_OK;
        default:
            return cli_usage_error(CMD, "unknown option");
        }
    }
    if (optind < argc)
        return cli_usage_error(CMD, "unexpected argument \"%s\"", argv[optind]);
    if (broker && data)
        return cli_usage_error(CMD, "give either --broker or --data, not both");
    if (r.from && r.to && r.from > r.to)
        return cli_usage_error(CMD, "--from %llu is after --to %llu", (unsigned long long)r.from,
                               (unsigned long long)r.to);
    if (r.has_since && r.has_until && r.since >= r.until)
        return cli_usage_error(CMD, "--since must be before --until");

    kabar_error err = {0};
    int rc, code = CLI_OK;
    cli_signals();
    cli_stdout_buffered();
    if (r.format == FMT_CSV)
        fputs("seq,received_at,id,type,v,source,targets,occurred_at,corr,body\r\n", stdout);
    if (data)
        rc = replay_offline(&r, data, &f, &err);
    else
        rc = replay_online(&r, cli_broker(broker), &copts, &f, &err);
    if (rc != 0 && r.reader_gone) {
        code = CLI_OK; /* the reader has all it wanted */
    } else if (rc != 0) {
        if (rc == KABAR_NOT_FOUND && data)
            cli_error(CMD, "%s (give the directory kabard was started with)", err.message);
        else
            cli_fail(CMD, &err);
        code = CLI_USAGE;
    }
    int e = cli_flush(CMD);
    if (e != 0 && e != EPIPE)
        code = CLI_USAGE;
    kabar_buf_free(&r.buf);
    kabar_buf_free(&r.tmp);
    return code;
}
