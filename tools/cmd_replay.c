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
#include <inttypes.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "audit_export.h"
#include "audit_proof.h"
#include "audit_source.h"
#include "batchsig.h"
#include "cli.h"
#include "kkey.h"
#include "store.h"
#include "wire.h"

static const char *const CMD = "replay";

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: kabar replay (--broker EP | --data DIR) [--from SEQ] [--to SEQ]\n"
            "                    [--since TIME] [--until TIME] [--type PREFIX]\n"
            "                    [--source ID] [--target ID] [--format jsonl|csv|msgpack]\n"
            "                    [--verify] [--with-proof FILE]\n"
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
            "      --verify       also show who signed each event and whether its batch\n"
            "                     signature verifies: JSON fields signature (\"valid\",\n"
            "                     \"unsigned\" or \"invalid: WHY\"), key_id, agency; CSV columns\n"
            "                     key_id,agency,signature (online: an auditor's --key);\n"
            "                     whose key is whose comes from the registry the log holds\n"
            "                     (the operator's word: to check against a registry you\n"
            "                     trust, use --with-proof and 'kabar audit check-export\n"
            "                     --registry FILE')\n"
            "      --with-proof FILE  write a verifiable export of the selection to FILE (- for\n"
            "                     stdout) instead: every record of the covered seq range, a\n"
            "                     range proof under a signed checkpoint and the signatures;\n"
            "                     check it with 'kabar audit check-export' (docs/AUDIT.md)\n"
            "  -t, --timeout MS   give up when the broker is silent this long (default "
            "10000)\n" CLI_IDENTITY_HELP "  -h, --help         show this help\n"
            "\n"
            "Exit codes: 0 done, 2 bad usage, no log, or the broker cannot be reached.\n");
}

typedef enum { FMT_JSONL, FMT_CSV, FMT_MSGPACK } out_format;

/* --verify: the signature of the batch of the previous event, cached. */
typedef struct sigcheck {
    store_reader *rd;  /* offline */
    audit_source *src; /* online */
    uint64_t batch;    /* cached batch id, 0: none */
    bool bad;          /* the batch itself fails */
    char why[KABAR_ERROR_MESSAGE_MAX + 64];
    char key_id[KKEY_ID_TEXT];
    char agency[64]; /* "" unregistered */
    int64_t valid_from, revoked_at;
    uint32_t n;
    kabar_buf leaves;
} sigcheck;

typedef struct replay {
    out_format format;
    bool verify;
    sigcheck sig;
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
    rc |= csv_field(b, r->tmp.data, r->tmp.len, !r->verify);
    return rc ? kabar_error_set(err, KABAR_NO_MEMORY, "out of memory") : 0;
}

/* Load batch `id` into the cache and check its signature once. */
static void sig_load(sigcheck *sc, uint64_t id)
{
    kabar_error e = {0};
    const uint8_t *key = NULL, *sig = NULL, *leaves = NULL;
    uint32_t n = 0;
    int rc;
    sc->batch = id;
    sc->bad = false;
    sc->agency[0] = '\0';
    sc->key_id[0] = '\0';
    if (sc->rd) {
        store_batch b;
        if ((rc = store_batch_get(sc->rd, id, &b, &e)) == 0) {
            key = b.key;
            sig = b.sig;
            n = b.n;
            leaves = b.leaves;
        }
    } else {
        audit_batch b;
        if ((rc = audit_source_batch(sc->src, id, &b, &e)) == 0) {
            key = b.key;
            sig = b.sig;
            n = b.n;
            leaves = (const uint8_t *)b.leaves;
        }
    }
    if (rc != 0) {
        sc->bad = true;
        snprintf(sc->why, sizeof sc->why, "batch %" PRIu64 " cannot be read: %s", id, e.message);
        return;
    }
    kkey_id_text(key, sc->key_id);
    sc->n = n;
    sc->leaves.len = 0;
    if (kabar_buf_append(&sc->leaves, leaves, (size_t)n * 32) != 0) {
        sc->bad = true;
        snprintf(sc->why, sizeof sc->why, "out of memory");
        return;
    }
    if (batchsig_verify(key, sig, (const uint8_t(*)[32])sc->leaves.data, n, &e) != 0) {
        sc->bad = true;
        snprintf(sc->why, sizeof sc->why, "the batch signature does not verify");
        return;
    }
    if (sc->rd) {
        store_key k;
        if (store_key_get(sc->rd, key, &k, &e) == 0) {
            snprintf(sc->agency, sizeof sc->agency, "%s", k.agency);
            sc->valid_from = k.valid_from;
            sc->revoked_at = k.revoked_at;
        }
    } else {
        audit_key k;
        if (audit_source_key(sc->src, key, &k, &e) == 0) {
            snprintf(sc->agency, sizeof sc->agency, "%s", k.agency);
            sc->valid_from = k.valid_from;
            sc->revoked_at = k.revoked_at;
        }
    }
    if (sc->agency[0] == '\0') {
        sc->bad = true;
        snprintf(sc->why, sizeof sc->why, "key %s is not in the registry", sc->key_id);
    }
}

/*
 * The signature status of one record: "unsigned", "valid" or "invalid:
 * WHY" into status; key_id and agency of the signer ("" when unsigned).
 */
static void sig_status(replay *r, const kabar_record *rec, uint64_t batch, uint32_t index,
                       char *status, size_t ssz)
{
    sigcheck *sc = &r->sig;
    kabar_event ev;
    uint8_t leaf[32];
    if (batch == 0) {
        snprintf(status, ssz, "unsigned");
        sc->key_id[0] = sc->agency[0] = '\0';
        sc->batch = 0;
        return;
    }
    if (batch != sc->batch)
        sig_load(sc, batch);
    if (sc->bad) {
        snprintf(status, ssz, "invalid: %s", sc->why);
        return;
    }
    merkle_leaf_hash(rec->bytes, rec->len, leaf);
    if (index >= sc->n || memcmp(leaf, sc->leaves.data + (size_t)index * 32, 32) != 0) {
        snprintf(status, ssz, "invalid: the event differs from what key %s signed", sc->key_id);
        return;
    }
    if (!kkey_valid_at(sc->valid_from, sc->revoked_at, rec->received_at)) {
        snprintf(status, ssz, "invalid: key %s was not valid when the event was received",
                 sc->key_id);
        return;
    }
    if (kabar_event_decode(NULL, rec->bytes, rec->len, &ev, NULL) != 0 ||
        ev.source.len != strlen(sc->agency) ||
        memcmp(ev.source.ptr, sc->agency, ev.source.len) != 0) {
        snprintf(status, ssz, "invalid: signed by agency %s, not by the event's source",
                 sc->agency);
        return;
    }
    snprintf(status, ssz, "valid");
}

/* The batch reference of a record: offline from the store, online from audit.records. */
static int rec_batch(replay *r, const kabar_record *rec, uint64_t *batch, uint32_t *index,
                     kabar_error *err)
{
    if (r->sig.rd)
        return 0; /* set by the offline source */
    audit_rec ar;
    int rc = audit_source_record(r->sig.src, rec->seq, &ar, err);
    if (rc != 0)
        return rc;
    *batch = ar.batch;
    *index = ar.batch_index;
    return 0;
}

/* Append the --verify fields to b: JSON (before the closing brace) or CSV columns. */
static int sig_fields(replay *r, const kabar_record *rec, uint64_t batch, uint32_t index,
                      kabar_error *err)
{
    kabar_buf *b = &r->buf;
    char status[KABAR_ERROR_MESSAGE_MAX + 128];
    int rc = rec_batch(r, rec, &batch, &index, err);
    if (rc != 0)
        return rc;
    sig_status(r, rec, batch, index, status, sizeof status);
    const char *kid = batch ? r->sig.key_id : "", *ag = batch ? r->sig.agency : "";
    if (r->format == FMT_JSONL) {
        if (b->len < 2 || b->data[b->len - 2] != '}')
            return 0;
        b->len -= 2; /* "}\n" */
        rc |= kabar_buf_append(b, ",\"signature\":", 13);
        rc |= cli_json_str(b, status, strlen(status));
        if (batch) {
            rc |= kabar_buf_append(b, ",\"key_id\":", 10);
            rc |= cli_json_str(b, kid, strlen(kid));
            rc |= kabar_buf_append(b, ",\"agency\":", 10);
            rc |= cli_json_str(b, ag, strlen(ag));
        }
        rc |= kabar_buf_append(b, "}\n", 2);
    } else if (r->format == FMT_CSV) {
        rc |= csv_cstr(b, kid);
        rc |= csv_cstr(b, ag);
        rc |= csv_field(b, status, strlen(status), true);
    }
    return rc ? kabar_error_set(err, KABAR_NO_MEMORY, "out of memory") : 0;
}

/* Write one record; batch and index are the offline store's (online: looked up). */
static int write_record_sig(replay *r, const kabar_record *rec, uint64_t batch, uint32_t index,
                            kabar_error *err)
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
    if (rc == 0 && r->verify && (rc = sig_fields(r, rec, batch, index, err)) != 0)
        return audit_error_wrap(err, rc, "--verify: seq %llu", (unsigned long long)rec->seq);
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

static int write_record(replay *r, const kabar_record *rec, kabar_error *err)
{
    return write_record_sig(r, rec, 0, 0, err);
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
    r->sig.rd = rd;
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
        if ((rc = write_record_sig(r, &rec, sr.batch, sr.batch_index, err)) != 0 || cli_stop)
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
    OPT_VERIFY,
    OPT_WITH_PROOF,
};

/* --with-proof FILE: the export document (tools/audit_export.h) instead of events. */
static int replay_with_proof(const replay *r, const store_filter *f, const char *broker,
                             const char *data, const kabar_client_opts *copts0, const char *path)
{
    kabar_error err = {0};
    kabar_client *c = NULL;
    audit_source s;
    kabar_client_opts copts = *copts0;
    int code;
    if (data) {
        if (audit_source_open_dir(&s, data, &err) != 0)
            return cli_fail(CMD, &err);
    } else {
        if ((code = cli_connect(CMD, broker, NULL, &copts, &c)) != CLI_OK)
            return code;
        if (audit_source_open_client(&s, c, &err) != 0) {
            kabar_client_destroy(&c);
            return cli_fail(CMD, &err);
        }
    }
    bool to_stdout = strcmp(path, "-") == 0;
    FILE *out = to_stdout ? stdout : fopen(path, "w");
    if (out == NULL) {
        code = cli_error(CMD, "--with-proof %s: %s", path, strerror(errno));
        goto done;
    }
    audit_export_opts o = {.type_prefix = f->type_prefix,
                           .source = f->source,
                           .target = f->target,
                           .from = r->from,
                           .to = r->to,
                           .has_since = r->has_since,
                           .has_until = r->has_until,
                           .since = r->since,
                           .until = r->until,
                           .fresh = true};
    code = CLI_OK;
    if (audit_export_write(&s, &o, out, &err) != 0)
        code = cli_fail(CMD, &err);
    if (!to_stdout && fclose(out) != 0 && code == CLI_OK)
        code = cli_error(CMD, "--with-proof %s: %s", path, strerror(errno));
    if (to_stdout && cli_flush(CMD) != 0)
        code = CLI_USAGE;
done:
    audit_source_close(&s);
    kabar_client_destroy(&c);
    return code;
}

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
        {"verify", no_argument, NULL, OPT_VERIFY},
        {"with-proof", required_argument, NULL, OPT_WITH_PROOF},
        {"help", no_argument, NULL, 'h'},
        CLI_IDENTITY_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *broker = NULL, *data = NULL, *proof_file = NULL;
    store_filter f = {0};
    replay r = {.format = FMT_JSONL};
    kabar_client_opts copts = {.timeout_ms = 10000};
    int opt;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "b:D:f:t:h", longopts, NULL)) != -1) {
        if (cli_identity_option(opt, optarg))
            continue;
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
        case OPT_VERIFY:
            r.verify = true;
            break;
        case OPT_WITH_PROOF:
            proof_file = optarg;
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

    if (r.verify && r.format == FMT_MSGPACK)
        return cli_usage_error(CMD, "--verify adds JSON fields or CSV columns: not with msgpack");
    if (proof_file && r.verify)
        return cli_usage_error(CMD, "--with-proof exports carry the signatures already: no "
                                    "--verify with it");
    if (proof_file)
        return replay_with_proof(&r, &f, broker, data, &copts, proof_file);

    kabar_error err = {0};
    int rc, code = CLI_OK;
    kabar_client *audit_client = NULL;
    audit_source src = {0};
    if (!data && (code = cli_identity(CMD, NULL, &copts)) != CLI_OK)
        return code;
    if (r.verify && !data) {
        /* A second connection for the audit calls, beside the subscription. */
        kabar_client_opts o2 = copts;
        if ((code = cli_connect(CMD, broker, NULL, &o2, &audit_client)) != CLI_OK)
            return code;
        if (audit_source_open_client(&src, audit_client, &err) != 0) {
            kabar_client_destroy(&audit_client);
            return cli_fail(CMD, &err);
        }
        r.sig.src = &src;
    }
    code = CLI_OK;
    if (r.verify)
        fprintf(stderr,
                "kabar replay: --verify checks each signer against the registry %s (the "
                "operator's statement of which key is which agency's); to check against a "
                "registry you confirmed with the agencies, export with --with-proof and run "
                "'kabar audit check-export --registry FILE'\n",
                data ? "stored in the log" : "the broker serves");
    cli_signals();
    cli_stdout_buffered();
    if (r.format == FMT_CSV)
        fputs(r.verify ? "seq,received_at,id,type,v,source,targets,occurred_at,corr,body,key_id,"
                         "agency,signature\r\n"
                       : "seq,received_at,id,type,v,source,targets,occurred_at,corr,body\r\n",
              stdout);
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
    kabar_buf_free(&r.sig.leaves);
    audit_source_close(&src);
    kabar_client_destroy(&audit_client);
    return code;
}
