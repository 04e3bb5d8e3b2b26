/*
 * audit_export.c - verifiable exports (audit_export.h).
 */
#include "audit_export.h"

#include <inttypes.h>
#include <jansson.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "audit_proof.h"
#include "batchsig.h"
#include "checkpoint.h"
#include "cli.h"
#include "kkey.h"
#include "store.h"

#define EXPORT_FORMAT "kabar-export-v1"

/* ------------------------------------------------------------------------ */
/* The covered range                                                        */

typedef struct range {
    uint64_t from_b, to_b; /* the filter's seq bounds inside the tree */
    uint64_t first, last;  /* covered: first > last when empty */
    uint64_t lo, hi;       /* proven: lo > hi when nothing */
} range;

static void range_ends(range *r, uint64_t size, uint64_t from, uint64_t to)
{
    r->from_b = from ? from : 1;
    r->to_b = to && to < size ? to : size;
}

static void range_proven(range *r)
{
    r->lo = r->first > r->from_b ? r->first - 1 : r->first;
    r->hi = r->last < r->to_b ? r->last + 1 : r->last;
}

/* The first seq in [a, b] received at or after t, or b + 1. */
static int first_at(audit_source *s, uint64_t a, uint64_t b, int64_t t, uint64_t *out,
                    kabar_error *err)
{
    uint64_t lo = a, hi = b + 1; /* answer in [lo, hi] */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        audit_rec r;
        int rc = audit_source_record(s, mid, &r, err);
        if (rc != 0)
            return rc;
        if (r.received_at >= t)
            hi = mid;
        else
            lo = mid + 1;
    }
    *out = lo;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                  */

typedef struct wbuf {
    kabar_buf b;
    FILE *out;
    int rc;
} wbuf;

static void w(wbuf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void w(wbuf *o, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof tmp || kabar_buf_append(&o->b, tmp, (size_t)n) != 0)
        o->rc = KABAR_NO_MEMORY;
}

static void wstr(wbuf *o, const char *s)
{
    if (s == NULL || s[0] == '\0')
        w(o, "null");
    else if (cli_json_str(&o->b, s, strlen(s)) != 0)
        o->rc = KABAR_NO_MEMORY;
}

static void wb64(wbuf *o, const void *p, size_t n)
{
    if (kabar_buf_append(&o->b, "\"", 1) || audit_b64_append(&o->b, p, n) ||
        kabar_buf_append(&o->b, "\"", 1))
        o->rc = KABAR_NO_MEMORY;
}

static void wtime(wbuf *o, bool has, int64_t t)
{
    char s[KABAR_TIME_MAX];
    if (!has || t == INT64_MAX) {
        w(o, "null");
        return;
    }
    kabar_time_format(t, s);
    w(o, "\"%s\"", s);
}

static int wflush(wbuf *o, kabar_error *err)
{
    if (o->rc)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    if (o->b.len && fwrite(o->b.data, 1, o->b.len, o->out) != o->b.len)
        return kabar_error_set(err, KABAR_IO, "cannot write the export");
    o->b.len = 0;
    return 0;
}

static bool period_match(const audit_export_opts *o, int64_t t)
{
    return !(o->has_since && t < o->since) && !(o->has_until && t >= o->until);
}

static int write_signature(audit_source *s, wbuf *o, const audit_rec *r, kabar_error *err)
{
    audit_batch b;
    audit_key k;
    merkle_proof path;
    int rc;
    if ((rc = audit_source_batch(s, r->batch, &b, err)) != 0)
        return audit_error_wrap(err, rc, "seq %" PRIu64, r->seq);
    if (r->batch_index >= b.n)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "seq %" PRIu64 ": index %u outside its batch of %u", r->seq,
                               r->batch_index, b.n);
    if ((rc = batchsig_path(b.leaves, b.n, r->batch_index, &path, err)) != 0)
        return rc;
    char key[KKEY_TEXT_MAX], id[KKEY_ID_TEXT];
    kkey_public_text(b.key, key);
    kkey_id_text(b.key, id);
    bool known = audit_source_key(s, b.key, &k, err) == 0;
    w(o, ",\"signature\":{\"key\":\"%s\",\"key_id\":\"%s\",\"agency\":", key, id);
    wstr(o, known ? k.agency : NULL);
    w(o, ",\"valid_from\":");
    wtime(o, known, k.valid_from);
    w(o, ",\"revoked_at\":");
    wtime(o, known, k.revoked_at);
    w(o, ",\"sig\":");
    wb64(o, b.sig, 64);
    w(o, ",\"n\":%u,\"index\":%u,\"path\":[", b.n, r->batch_index);
    for (size_t i = 0; i < path.len; i++) {
        if (i)
            w(o, ",");
        wb64(o, path.hash[i], 32);
    }
    w(o, "]}");
    return 0;
}

int audit_export_write(audit_source *s, const audit_export_opts *o, FILE *out, kabar_error *err)
{
    kabar_buf note = {0};
    audit_hashes proof = {0};
    wbuf wb = {.out = out};
    uint64_t size = 0;
    range rg;
    int rc;
    rc = audit_source_checkpoint(s, false, &note, &size, err);
    if (rc == KABAR_NOT_FOUND && s->online == NULL)
        kabar_error_set(err, rc,
                        "the log has no checkpoint yet: kabard makes one every "
                        "--checkpoint-interval; or export online (--broker), which asks for one");
    if (rc == 0 && s->online && o->fresh && s->head > size)
        rc = audit_source_checkpoint(s, true, &note, &size, err);
    if (rc != 0)
        goto done;
    if (s->head > size)
        fprintf(stderr,
                "kabar replay: the export is proven under the checkpoint of size %" PRIu64
                "; seqs %" PRIu64 "-%" PRIu64 " came after it and are not covered\n",
                size, size + 1, s->head);
    range_ends(&rg, size, o->from, o->to);
    rg.first = rg.from_b;
    rg.last = rg.to_b;
    if (rg.from_b <= rg.to_b) {
        if (o->has_since && (rc = first_at(s, rg.from_b, rg.to_b, o->since, &rg.first, err)) != 0)
            goto done;
        if (o->has_until) {
            uint64_t end;
            uint64_t a = rg.first <= rg.to_b ? rg.first : rg.to_b;
            if ((rc = first_at(s, a, rg.to_b, o->until, &end, err)) != 0)
                goto done;
            rg.last = end - 1;
        }
        if (rg.last < rg.first - 1)
            rg.last = rg.first - 1;
    } else {
        rg.first = rg.from_b;
        rg.last = rg.from_b - 1;
    }
    range_proven(&rg);
    if (rg.lo <= rg.hi && rg.hi <= size && rg.lo >= 1) {
        merkle_proof plo, phi;
        uint8_t r1[32], r2[32];
        if ((rc = audit_source_prove(s, rg.lo, size, &plo, r1, NULL, err)) != 0 ||
            (rc = audit_source_prove(s, rg.hi, size, &phi, r2, NULL, err)) != 0 ||
            (rc = audit_range_from_paths(rg.lo - 1, rg.hi - 1, size, &plo, &phi, &proof, err)) != 0)
            goto done;
    }
    store_filter f = {.type_prefix = o->type_prefix, .source = o->source, .target = o->target};
    w(&wb, "{\n\"format\":\"" EXPORT_FORMAT "\",\n\"checkpoint\":");
    if (cli_json_str(&wb.b, note.data, note.len) != 0)
        wb.rc = KABAR_NO_MEMORY;
    w(&wb, ",\n\"filter\":{\"type\":");
    wstr(&wb, o->type_prefix);
    w(&wb, ",\"source\":");
    wstr(&wb, o->source);
    w(&wb, ",\"target\":");
    wstr(&wb, o->target);
    w(&wb, ",\"from\":");
    o->from ? w(&wb, "%" PRIu64, o->from) : w(&wb, "null");
    w(&wb, ",\"to\":");
    o->to ? w(&wb, "%" PRIu64, o->to) : w(&wb, "null");
    w(&wb, ",\"since\":");
    wtime(&wb, o->has_since, o->since);
    w(&wb, ",\"until\":");
    wtime(&wb, o->has_until, o->until);
    w(&wb, "},\n\"first\":%" PRIu64 ",\n\"last\":%" PRIu64 ",\n\"range_proof\":[", rg.first,
      rg.last);
    for (size_t i = 0; i < proof.len; i++) {
        if (i)
            w(&wb, ",");
        wb64(&wb, proof.h[i], 32);
    }
    w(&wb, "],\n\"records\":[");
    bool firstrec = true;
    for (uint64_t seq = rg.lo; rg.lo >= 1 && seq <= rg.hi; seq++) {
        audit_rec r;
        kabar_event ev;
        if ((rc = audit_source_record(s, seq, &r, err)) != 0)
            goto done;
        bool match = false;
        if (seq >= rg.first && seq <= rg.last) {
            if ((rc = kabar_event_decode(NULL, r.event, r.event_len, &ev, err)) != 0) {
                audit_error_wrap(err, rc, "seq %" PRIu64, seq);
                goto done;
            }
            match = store_filter_match(&f, &ev) && period_match(o, r.received_at);
        }
        w(&wb, "%s\n{\"seq\":%" PRIu64 ",\"match\":%s,\"record\":", firstrec ? "" : ",", seq,
          match ? "true" : "false");
        firstrec = false;
        wb64(&wb, r.raw, r.raw_len);
        if (match && r.batch != 0 && (rc = write_signature(s, &wb, &r, err)) != 0)
            goto done;
        w(&wb, "}");
        if (wb.b.len > (1u << 20) && (rc = wflush(&wb, err)) != 0)
            goto done;
    }
    w(&wb, "\n]\n}\n");
    rc = wflush(&wb, err);
done:
    kabar_buf_free(&note);
    kabar_buf_free(&wb.b);
    audit_hashes_free(&proof);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Checking                                                                 */

typedef struct checker {
    FILE *out;
    audit_export_summary *sum;
    const audit_registry *reg; /* NULL: none given */
} checker;

static void bad(checker *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void bad(checker *c, const char *fmt, ...)
{
    va_list ap;
    c->sum->problems++;
    va_start(ap, fmt);
    vfprintf(c->out, fmt, ap);
    va_end(ap);
    fputc('\n', c->out);
}

static const char *jstr(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int jtime(json_t *o, const char *k, bool *has, int64_t *t, kabar_error *err)
{
    const char *s = jstr(o, k);
    *has = s != NULL;
    if (s && kabar_time_parse(s, strlen(s), t, err) != 0)
        return kabar_error_set(err, KABAR_BAD_VALUE, "filter.%s: \"%s\" is not an RFC 3339 time", k,
                               s);
    return 0;
}

static void time_text(int64_t t, char out[KABAR_TIME_MAX])
{
    if (t == INT64_MIN || t == INT64_MAX)
        snprintf(out, KABAR_TIME_MAX, "%s", t == INT64_MIN ? "always" : "never");
    else
        kabar_time_format(t, out);
}

/* What the export claims of the signer: only its own consistency is checked (no registry). */
static void check_claims(checker *c, json_t *sig, const audit_rec *r, const kabar_event *ev,
                         const char *id)
{
    const char *agency = jstr(sig, "agency");
    kabar_error e = {0};
    if (agency == NULL || ev->source.len != strlen(agency) ||
        memcmp(ev->source.ptr, agency, ev->source.len) != 0)
        bad(c,
            "seq %" PRIu64 ": signed by key %s, which the export says is agency %s, but its "
            "source is %.*s",
            r->seq, id, agency ? agency : "(unregistered)", (int)ev->source.len, ev->source.ptr);
    bool hv, hr;
    int64_t vf = INT64_MIN, ra = INT64_MAX;
    if (jtime(sig, "valid_from", &hv, &vf, &e) != 0 || jtime(sig, "revoked_at", &hr, &ra, &e) != 0)
        bad(c, "seq %" PRIu64 ": %s", r->seq, e.message);
    else if ((hv && r->received_at < vf) || (hr && r->received_at >= ra))
        bad(c,
            "seq %" PRIu64 ": key %s was not valid when the event was received (the export says)",
            r->seq, id);
}

/* Key -> agency and validity from the auditor's registry. */
static void check_registry(checker *c, json_t *sig, const uint8_t pk[32], const audit_rec *r,
                           const kabar_event *ev, const char *id)
{
    const audit_trusted_key *k;
    const char *claimed = jstr(sig, "agency");
    char t[KABAR_TIME_MAX], vf[KABAR_TIME_MAX], ra[KABAR_TIME_MAX];
    switch (audit_registry_check(c->reg, pk, ev->source.ptr, ev->source.len, r->received_at, &k)) {
    case AUDIT_REG_UNKNOWN:
        bad(c,
            "seq %" PRIu64 ": signed by key %s, which is not in the registry you gave (the "
            "export says it is agency %s's)",
            r->seq, id, claimed ? claimed : "(none)");
        return;
    case AUDIT_REG_NOT_SOURCE:
        bad(c,
            "seq %" PRIu64 ": signed by key %s of agency %s (per the registry you gave), but its "
            "source is %.*s",
            r->seq, id, k->agency, (int)ev->source.len, ev->source.ptr);
        return;
    case AUDIT_REG_NOT_VALID:
        kabar_time_format(r->received_at, t);
        time_text(k->valid_from, vf);
        time_text(k->revoked_at, ra);
        bad(c,
            "seq %" PRIu64 ": signed by key %s, which was not valid when the event was received "
            "(%s; valid from %s until %s, per the registry you gave)",
            r->seq, id, t, vf, ra);
        return;
    case AUDIT_REG_OK:
        break;
    }
    if (claimed != NULL && strcmp(claimed, k->agency) != 0) {
        bad(c,
            "seq %" PRIu64 ": the export says key %s is agency %s's, the registry you gave says "
            "%s's",
            r->seq, id, claimed, k->agency);
        return;
    }
    c->sum->signatures++;
}

static void check_signature(checker *c, json_t *sig, const audit_rec *r, const kabar_event *ev)
{
    const char *key = jstr(sig, "key"), *sigb = jstr(sig, "sig");
    json_t *path = json_object_get(sig, "path");
    json_t *n = json_object_get(sig, "n"), *index = json_object_get(sig, "index");
    uint8_t pk[32], sb[64], leaf[32], root[32], msg[BATCHSIG_MSG];
    merkle_proof p = {0};
    kabar_error e = {0};
    if (!key || !sigb || !json_is_array(path) || !json_is_integer(n) || !json_is_integer(index) ||
        strncmp(key, "ed25519:", 8) != 0 || audit_unb64(key + 8, strlen(key + 8), pk, 32, &e) ||
        audit_unb64(sigb, strlen(sigb), sb, 64, &e) || json_array_size(path) > MERKLE_MAX_PROOF ||
        json_integer_value(n) < 1 || json_integer_value(n) > UINT32_MAX ||
        json_integer_value(index) < 0) {
        bad(c, "seq %" PRIu64 ": its signature proof is malformed", r->seq);
        return;
    }
    size_t i;
    json_t *h;
    json_array_foreach(path, i, h)
    {
        if (!json_is_string(h) ||
            audit_unb64(json_string_value(h), json_string_length(h), p.hash[i], 32, &e) != 0) {
            bad(c, "seq %" PRIu64 ": its signature path is malformed", r->seq);
            return;
        }
        p.len++;
    }
    uint64_t idx = (uint64_t)json_integer_value(index);
    uint32_t nn = (uint32_t)json_integer_value(n);
    if (idx != r->batch_index) {
        bad(c, "seq %" PRIu64 ": the signature is for index %" PRIu64 ", the record says %u",
            r->seq, idx, r->batch_index);
        return;
    }
    merkle_leaf_hash(r->event, r->event_len, leaf);
    if (audit_path_root(idx, nn, leaf, &p, root, &e) != 0) {
        bad(c, "seq %" PRIu64 ": the batch path does not fit: %s", r->seq, e.message);
        return;
    }
    batchsig_message(nn, root, msg);
    char id[KKEY_ID_TEXT];
    kkey_id_text(pk, id);
    if (crypto_sign_verify_detached(sb, msg, sizeof msg, pk) != 0) {
        bad(c,
            "seq %" PRIu64 ": the batch signature by key %s does not verify: the event was "
            "changed, or it was not signed by that key",
            r->seq, id);
        return;
    }
    if (c->reg != NULL) {
        check_registry(c, sig, pk, r, ev, id);
        return;
    }
    uint64_t before = c->sum->problems;
    check_claims(c, sig, r, ev, id);
    if (c->sum->problems != before)
        return;
    c->sum->signatures_unverified++;
    fprintf(c->out,
            "seq %" PRIu64 ": signature valid by key %s, agency NOT VERIFIED (no --registry)\n",
            r->seq, id);
}

int audit_export_check(const char *text, size_t len, const char *log_key, const audit_registry *reg,
                       FILE *out, audit_export_summary *sum, kabar_error *err)
{
    json_error_t je;
    checker c = {out, sum, reg};
    uint8_t(*leaves)[32] = NULL;
    audit_hashes proof = {0};
    int rc = 0;
    memset(sum, 0, sizeof *sum);
    json_t *doc = json_loadb(text, len, 0, &je);
    if (doc == NULL)
        return kabar_error_set(err, KABAR_BAD_JSON, "not an export: line %d: %s", je.line, je.text);
    const char *fmt = jstr(doc, "format"), *note = jstr(doc, "checkpoint");
    json_t *filter = json_object_get(doc, "filter"), *recs = json_object_get(doc, "records");
    json_t *jp = json_object_get(doc, "range_proof"), *jf = json_object_get(doc, "first"),
           *jl = json_object_get(doc, "last");
    if (!fmt || strcmp(fmt, EXPORT_FORMAT) != 0 || !note || !json_is_object(filter) ||
        !json_is_array(recs) || !json_is_array(jp) || !json_is_integer(jf) ||
        !json_is_integer(jl) || json_integer_value(jf) < 1 || json_integer_value(jl) < 0) {
        rc = kabar_error_set(err, KABAR_BAD_VALUE,
                             "not a kabar export (\"format\": \"" EXPORT_FORMAT
                             "\" with checkpoint, filter, first, last, range_proof, records)");
        goto done;
    }
    /* The checkpoint. */
    char origin[CHECKPOINT_NAME_MAX + 1] = "";
    uint64_t claimed;
    checkpoint cp;
    checkpoint_verifier v;
    if ((rc = audit_note_size(note, strlen(note), &claimed, origin, sizeof origin, err)) != 0 ||
        (rc = audit_log_key_load(&v, log_key, origin, err)) != 0)
        goto done;
    if (checkpoint_open(&cp, note, strlen(note), &v, err) != 0) {
        bad(&c, "export: the checkpoint does not verify with the log key: %s", err->message);
        goto done;
    }
    sum->size = cp.size;
    /* The filter and the covered range. */
    audit_export_opts o = {.type_prefix = jstr(filter, "type"),
                           .source = jstr(filter, "source"),
                           .target = jstr(filter, "target")};
    json_t *jfrom = json_object_get(filter, "from"), *jto = json_object_get(filter, "to");
    if ((jfrom && !json_is_null(jfrom) &&
         (!json_is_integer(jfrom) || json_integer_value(jfrom) < 1)) ||
        (jto && !json_is_null(jto) && (!json_is_integer(jto) || json_integer_value(jto) < 1))) {
        rc = kabar_error_set(err, KABAR_BAD_VALUE,
                             "filter.from and filter.to must be null or seqs (integers >= 1)");
        goto done;
    }
    o.from = json_is_integer(jfrom) ? (uint64_t)json_integer_value(jfrom) : 0;
    o.to = json_is_integer(jto) ? (uint64_t)json_integer_value(jto) : 0;
    if ((rc = jtime(filter, "since", &o.has_since, &o.since, err)) != 0 ||
        (rc = jtime(filter, "until", &o.has_until, &o.until, err)) != 0)
        goto done;
    range rg;
    range_ends(&rg, cp.size, o.from, o.to);
    rg.first = (uint64_t)json_integer_value(jf);
    rg.last = (uint64_t)json_integer_value(jl);
    sum->first = rg.first;
    sum->last = rg.last;
    if (rg.from_b <= rg.to_b &&
        (rg.first < rg.from_b || rg.last > rg.to_b || rg.last + 1 < rg.first)) {
        bad(&c,
            "export: the covered range %" PRIu64 "-%" PRIu64 " is not inside the filter's "
            "seqs %" PRIu64 "-%" PRIu64 " of the checkpoint's tree",
            rg.first, rg.last, rg.from_b, rg.to_b);
        goto done;
    }
    if (rg.first > rg.from_b && !o.has_since)
        bad(&c, "export: seqs %" PRIu64 "-%" PRIu64 " are left out, and no period excludes them",
            rg.from_b, rg.first - 1);
    if (rg.last < rg.to_b && !o.has_until)
        bad(&c, "export: seqs %" PRIu64 "-%" PRIu64 " are left out, and no period excludes them",
            rg.last + 1, rg.to_b);
    range_proven(&rg);
    size_t nrec = json_array_size(recs);
    uint64_t want_n = rg.lo >= 1 && rg.lo <= rg.hi ? rg.hi - rg.lo + 1 : 0;
    if (rg.from_b > rg.to_b)
        want_n = 0;
    if (nrec != want_n) {
        bad(&c,
            "export: it holds %zu records, the range %" PRIu64 "-%" PRIu64 " has %" PRIu64
            " (records were removed or added)",
            nrec, rg.lo, rg.hi, want_n);
        goto done;
    }
    sum->records = nrec;
    json_t *h;
    size_t i;
    json_array_foreach(jp, i, h)
    {
        uint8_t b[32];
        if (!json_is_string(h) ||
            audit_unb64(json_string_value(h), json_string_length(h), b, 32, err) != 0 ||
            audit_hashes_push(&proof, b) != 0) {
            bad(&c, "export: range_proof[%zu] is not a base64 hash", i);
            goto done;
        }
    }
    if (nrec == 0) {
        if (cp.size != 0 && rg.from_b <= rg.to_b)
            bad(&c, "export: no records, but the range is not empty");
        goto done;
    }
    leaves = malloc(nrec * 32);
    if (leaves == NULL) {
        rc = kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
        goto done;
    }
    store_filter f = {.type_prefix = o.type_prefix, .source = o.source, .target = o.target};
    int64_t last_t = INT64_MIN;
    kabar_buf raw = {0};
    json_t *jr;
    json_array_foreach(recs, i, jr)
    {
        uint64_t seq = rg.lo + i;
        json_t *js = json_object_get(jr, "seq"), *jm = json_object_get(jr, "match");
        const char *rb = jstr(jr, "record");
        audit_rec r;
        kabar_event ev;
        kabar_error e = {0};
        memset(leaves[i], 0, 32);
        if (!json_is_integer(js) || (uint64_t)json_integer_value(js) != seq) {
            bad(&c,
                "seq %" PRIu64 ": the record in its place has seq %" PRId64
                " (records were removed, added or moved)",
                seq, json_is_integer(js) ? (int64_t)json_integer_value(js) : -1);
            continue;
        }
        if (!rb || audit_unb64_buf(rb, strlen(rb), &raw, &e) != 0 ||
            audit_rec_parse(raw.data, raw.len, seq, &r, &e) != 0) {
            bad(&c, "seq %" PRIu64 ": the record is malformed: %s", seq, e.message);
            continue;
        }
        merkle_leaf_hash(r.raw, r.raw_len, leaves[i]);
        if (r.received_at < last_t)
            bad(&c, "seq %" PRIu64 ": received before the record before it", seq);
        last_t = r.received_at;
        bool marked = json_is_true(jm);
        bool inside = seq >= rg.first && seq <= rg.last;
        if (!inside) {
            if (marked)
                bad(&c, "seq %" PRIu64 ": marked as matching, but outside the covered range", seq);
            if (seq < rg.first && (!o.has_since || r.received_at >= o.since))
                bad(&c,
                    "seq %" PRIu64 ": the record before the range is not before --since: "
                    "the range should start earlier",
                    seq);
            if (seq > rg.last && (!o.has_until || r.received_at < o.until))
                bad(&c,
                    "seq %" PRIu64 ": the record after the range is not at or after --until: "
                    "the range should end later",
                    seq);
            continue;
        }
        if (kabar_event_decode(NULL, r.event, r.event_len, &ev, &e) != 0) {
            bad(&c, "seq %" PRIu64 ": the event does not decode: %s", seq, e.message);
            continue;
        }
        bool match = store_filter_match(&f, &ev) && period_match(&o, r.received_at);
        if (match && !marked)
            bad(&c,
                "seq %" PRIu64 ": matches the filter but is not marked as matching (left "
                "out of the export)",
                seq);
        else if (!match && marked)
            bad(&c, "seq %" PRIu64 ": marked as matching, but does not match the filter", seq);
        if (!match)
            continue;
        sum->matching++;
        json_t *sig = json_object_get(jr, "signature");
        if (r.batch == 0)
            sum->unsigned_matching++;
        else if (!json_is_object(sig))
            bad(&c,
                "seq %" PRIu64 ": signed (batch %" PRIu64 "), but the export carries no "
                "signature proof",
                seq, r.batch);
        else
            check_signature(&c, sig, &r, &ev);
    }
    kabar_buf_free(&raw);
    uint8_t root[32];
    kabar_error e = {0};
    if (audit_range_root(rg.lo - 1, rg.hi - 1, cp.size, (const uint8_t(*)[32])leaves, &proof, root,
                         &e) != 0)
        bad(&c,
            "export: the range proof does not fit seqs %" PRIu64 "-%" PRIu64
            " of a tree of %" PRIu64 ": %s",
            rg.lo, rg.hi, cp.size, e.message);
    else if (sodium_memcmp(root, cp.root, 32) != 0)
        bad(&c, "export: the records and the range proof do not hash to the checkpoint's root: "
                "a record was changed, added or removed");
done:
    free(leaves);
    audit_hashes_free(&proof);
    json_decref(doc);
    return rc;
}
