/*
 * audit_verify.c - `kabar audit verify` (audit_verify.h).
 */
#include "audit_verify.h"

#include <inttypes.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batchsig.h"
#include "kkey.h"
#include "mpr.h"
#include "store.h"

/* A longer run of missing seqs is taken for a damaged key. */
#define AUDIT_MAX_GAP (UINT64_C(1) << 24)

enum { FP_SOURCE, FP_TARGET, FP_TYPE, FP_DEDUP, FP_COUNT };
static const char *const fp_name[FP_COUNT] = {"by_source", "by_target", "by_type", "dedup"};
static const int fp_db[FP_COUNT] = {ADB_SOURCE, ADB_TARGET, ADB_TYPE, ADB_DEDUP};

typedef struct cpt {
    uint64_t size;
    char *note;
    size_t len;
    bool ok; /* signature verified and size agrees: root is valid */
    uint8_t root[32];
} cpt;

typedef struct vstate {
    audit_source *s;
    const audit_verify_opts *o;
    audit_verify_result *res;
    kabar_error *err;
    merkle_frontier f;
    uint64_t flagged; /* the highest seq a reported problem covers (0: none) */
    cpt *cps;
    size_t ncps, cap, next_cp;
    bool has_since;
    checkpoint since;
    /* the batch of the previous record */
    uint64_t batch_id;
    int batch_state; /* 0 ok, else a problem already described in batch_why */
    char batch_why[400];
    audit_batch batch;
    bool key_known;
    audit_key key;
    char key_id[KKEY_ID_TEXT];
    /* index fingerprints */
    unsigned char fpkey[crypto_shorthash_KEYBYTES];
    uint64_t fp_want[FP_COUNT], fp_have[FP_COUNT], n_want[FP_COUNT], n_have[FP_COUNT];
    kabar_buf fpbuf;
    int64_t last_received_at;
    uint64_t expected; /* the next seq */
} vstate;

static void problem(vstate *v, uint64_t covers, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void problem(vstate *v, uint64_t covers, const char *fmt, ...)
{
    uint64_t max = v->o->max_problems ? v->o->max_problems : 1000;
    if (covers > v->flagged)
        v->flagged = covers;
    if (v->res->problems++ >= max)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(v->o->out, fmt, ap);
    va_end(ap);
    fputc('\n', v->o->out);
}

static void time_text(int64_t ns, char out[KABAR_TIME_MAX])
{
    if (ns == INT64_MAX)
        snprintf(out, KABAR_TIME_MAX, "never");
    else
        kabar_time_format(ns, out);
}

/* ------------------------------------------------------------------------ */
/* Checkpoints                                                              */

static int cp_collect(void *arg, uint64_t size, const char *note, size_t len)
{
    vstate *v = arg;
    if (v->ncps == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 16;
        cpt *n = realloc(v->cps, cap * sizeof *n);
        if (n == NULL)
            return kabar_error_set(v->err, KABAR_NO_MEMORY, "out of memory");
        v->cps = n;
        v->cap = cap;
    }
    cpt *c = &v->cps[v->ncps];
    memset(c, 0, sizeof *c);
    c->note = malloc(len + 1);
    if (c->note == NULL)
        return kabar_error_set(v->err, KABAR_NO_MEMORY, "out of memory");
    memcpy(c->note, note, len);
    c->note[len] = '\0';
    c->len = len;
    c->size = size;
    v->ncps++;
    return 0;
}

static void cp_open_all(vstate *v)
{
    for (size_t i = 0; i < v->ncps; i++) {
        cpt *c = &v->cps[i];
        checkpoint cp;
        kabar_error e = {0};
        if (c->size == UINT64_MAX) {
            problem(v, 0, "checkpoint: a stored checkpoint has a damaged key or note");
            continue;
        }
        if (checkpoint_open(&cp, c->note, c->len, v->o->log_key, &e) != 0) {
            problem(v, 0,
                    "seq %" PRIu64 ": the checkpoint of size %" PRIu64
                    " does not verify with the log key: %s",
                    c->size, c->size, e.message);
            continue;
        }
        if (cp.size != c->size) {
            problem(v, 0,
                    "seq %" PRIu64 ": the checkpoint stored under size %" PRIu64
                    " says size %" PRIu64,
                    c->size, c->size, cp.size);
            continue;
        }
        memcpy(c->root, cp.root, 32);
        c->ok = true;
    }
}

static void cp_check_at(vstate *v, const uint8_t root[32])
{
    uint64_t n = v->f.size;
    while (v->next_cp < v->ncps && v->cps[v->next_cp].size <= n) {
        cpt *c = &v->cps[v->next_cp++];
        if (c->size != n || !c->ok)
            continue;
        v->res->checkpoints++;
        if (sodium_memcmp(c->root, root, 32) != 0)
            problem(v, 0,
                    "seq %" PRIu64 ": the checkpoint of size %" PRIu64 " has another root than "
                    "the %" PRIu64 " events hash to: the checkpoint was replaced, or the log was "
                    "changed at or before seq %" PRIu64,
                    n, n, n, n);
    }
    if (v->has_since && v->since.size == n && sodium_memcmp(v->since.root, root, 32) != 0)
        problem(v, 0,
                "seq %" PRIu64 ": the log no longer extends the saved checkpoint of size %" PRIu64
                ": its first %" PRIu64 " events hash to another root (the log was rewritten)",
                n, n, n);
}

/* ------------------------------------------------------------------------ */
/* The tree                                                                 */

static int visit(void *ctx, unsigned level, uint64_t index, const uint8_t hash[32],
                 kabar_error *err)
{
    vstate *v = ctx;
    audit_log *l = v->s->log;
    if (level == 0 || l == NULL)
        return 0;
    uint64_t lo = (index << level) + 1, hi = (index + 1) << level;
    uint8_t kb[STORE_TREE_KEY];
    store_tree_key(kb, level, index);
    MDB_val k = {STORE_TREE_KEY, kb}, val;
    int rc = l->has[ADB_TREE] ? mdb_get(l->txn, l->dbi[ADB_TREE], &k, &val) : MDB_NOTFOUND;
    if (rc == 0 && val.mv_size == 32 && memcmp(val.mv_data, hash, 32) == 0)
        return 0;
    if (v->flagged >= lo)
        return 0; /* explained by a problem already reported in [lo, hi] */
    if (rc == MDB_NOTFOUND)
        problem(v, hi,
                "seq %" PRIu64 ": the tree node (level %u, index %" PRIu64 ") over seqs %" PRIu64
                "-%" PRIu64 " is missing",
                lo, level, index, lo, hi);
    else if (rc != 0)
        return kabar_error_set(err, KABAR_STORE, "cannot read the tree: %s", mdb_strerror(rc));
    else if (level == 1)
        problem(v, hi,
                "seq %" PRIu64 ": the record of seq %" PRIu64 " or seq %" PRIu64 " was changed: "
                "they no longer hash to the stored tree node (level 1, index %" PRIu64 ")",
                lo, lo, hi, index);
    else
        problem(v, hi,
                "seq %" PRIu64 ": the stored tree node (level %u, index %" PRIu64
                ") over seqs %" PRIu64 "-%" PRIu64 " differs from the one the records hash to",
                lo, level, index, lo, hi);
    return 0;
}

static int push_leaf(vstate *v, const uint8_t leaf[32])
{
    int rc = merkle_frontier_push(&v->f, leaf, v->s->log ? visit : NULL, v, v->err);
    if (rc != 0)
        return rc;
    if (v->next_cp < v->ncps || v->has_since) {
        uint8_t root[32];
        if ((v->next_cp < v->ncps && v->cps[v->next_cp].size == v->f.size) ||
            (v->has_since && v->since.size == v->f.size)) {
            merkle_frontier_root(&v->f, root);
            cp_check_at(v, root);
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Signatures                                                               */

static void load_batch(vstate *v, uint64_t id)
{
    kabar_error e = {0};
    v->batch_id = id;
    v->batch_state = 0;
    v->key_known = false;
    int rc = audit_source_batch(v->s, id, &v->batch, &e);
    if (rc != 0) {
        v->batch_state = 1;
        snprintf(v->batch_why, sizeof v->batch_why,
                 "its signed batch %" PRIu64 " cannot be read: %s", id, e.message);
        return;
    }
    v->res->batches++;
    kkey_id_text(v->batch.key, v->key_id);
    if (batchsig_verify(v->batch.key, v->batch.sig, v->batch.leaves, v->batch.n, &e) != 0) {
        v->batch_state = 1;
        snprintf(v->batch_why, sizeof v->batch_why,
                 "the signature of its batch %" PRIu64 " by key %s does not verify", id, v->key_id);
        return;
    }
    rc = audit_source_key(v->s, v->batch.key, &v->key, &e);
    if (rc == 0)
        v->key_known = true;
    else if (rc == KABAR_NOT_FOUND) {
        v->batch_state = 1;
        snprintf(v->batch_why, sizeof v->batch_why,
                 "its batch %" PRIu64 " was signed by key %s, which is not in the registry", id,
                 v->key_id);
    } else {
        v->batch_state = 1;
        snprintf(v->batch_why, sizeof v->batch_why, "the registry cannot be read: %s", e.message);
    }
}

static void check_signature(vstate *v, const audit_rec *r, const kabar_event *ev)
{
    if (r->batch == 0) {
        v->res->unsigned_events++;
        return;
    }
    v->res->signed_events++;
    if (r->batch != v->batch_id)
        load_batch(v, r->batch);
    if (v->batch_state != 0) {
        problem(v, r->seq, "seq %" PRIu64 ": %s", r->seq, v->batch_why);
        return;
    }
    uint8_t leaf[32];
    merkle_leaf_hash(r->event, r->event_len, leaf);
    if (r->batch_index >= v->batch.n) {
        problem(v, r->seq,
                "seq %" PRIu64 ": index %u is outside its batch %" PRIu64 " of %u events", r->seq,
                r->batch_index, r->batch, v->batch.n);
        return;
    }
    if (memcmp(leaf, v->batch.leaves[r->batch_index], 32) != 0) {
        problem(v, r->seq,
                "seq %" PRIu64 ": the event's bytes differ from what key %s signed (leaf %u of "
                "batch %" PRIu64 "): the event was changed",
                r->seq, v->key_id, r->batch_index, r->batch);
        return;
    }
    char a[KABAR_TIME_MAX], b[KABAR_TIME_MAX], t[KABAR_TIME_MAX];
    if (!kkey_valid_at(v->key.valid_from, v->key.revoked_at, r->received_at)) {
        time_text(r->received_at, t);
        time_text(v->key.valid_from, a);
        time_text(v->key.revoked_at, b);
        problem(v, r->seq,
                "seq %" PRIu64 ": signed by key %s, which was not valid when the event was "
                "received (%s; valid from %s until %s)",
                r->seq, v->key_id, t, a, b);
    }
    if (ev && (ev->source.len != strlen(v->key.agency) ||
               memcmp(ev->source.ptr, v->key.agency, ev->source.len) != 0))
        problem(v, r->seq, "seq %" PRIu64 ": signed by key %s of agency %s, but its source is %.*s",
                r->seq, v->key_id, v->key.agency, (int)ev->source.len, ev->source.ptr);
}

/* ------------------------------------------------------------------------ */
/* Index fingerprints                                                       */

static uint64_t fp_entry(vstate *v, int which, const void *key, size_t klen, const uint8_t seq[8])
{
    kabar_buf *b = &v->fpbuf;
    b->len = 0;
    uint8_t w = (uint8_t)which;
    kabar_buf_append(b, &w, 1);
    kabar_buf_append(b, key, klen);
    kabar_buf_append(b, seq, 8);
    uint8_t h[8];
    crypto_shorthash(h, (const unsigned char *)b->data, b->len, v->fpkey);
    uint64_t x;
    memcpy(&x, h, 8);
    return x;
}

static void want(vstate *v, int which, const void *key, size_t klen, const uint8_t seq[8])
{
    v->fp_want[which] += fp_entry(v, which, key, klen, seq);
    v->n_want[which]++;
}

static void seq_be(uint64_t s, uint8_t out[8])
{
    for (int i = 7; i >= 0; i--, s >>= 8)
        out[i] = (uint8_t)s;
}

static uint64_t be64(const void *p)
{
    const uint8_t *q = p;
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x = (x << 8) | q[i];
    return x;
}

static bool str_eq(kabar_str a, kabar_str b)
{
    return a.len == b.len && memcmp(a.ptr, b.ptr, a.len) == 0;
}

/*
 * The dedup entry of the event must point at its own seq: looked up inline
 * (one B-tree descent per event) because it names the seq of an event that
 * was moved or swapped before the tree does (the tree only knows a pair).
 */
static void check_dedup(vstate *v, uint64_t seq, const kabar_event *ev)
{
    audit_log *l = v->s->log;
    char dk[2 * KABAR_MAX_ID_LEN + 72];
    if (!l->has[ADB_DEDUP] || ev->source.len + 1 + ev->id.len > sizeof dk)
        return;
    memcpy(dk, ev->source.ptr, ev->source.len);
    dk[ev->source.len] = '\0';
    memcpy(dk + ev->source.len + 1, ev->id.ptr, ev->id.len);
    MDB_val k = {ev->source.len + 1 + ev->id.len, dk}, dv;
    int rc = mdb_get(l->txn, l->dbi[ADB_DEDUP], &k, &dv);
    if (rc != 0)
        problem(v, seq, "seq %" PRIu64 ": the dedup entry for its source and id is missing", seq);
    else if (dv.mv_size != 8 || be64(dv.mv_data) != seq)
        problem(v, seq,
                "seq %" PRIu64
                ": the dedup entry for its source %.*s and id %.*s points at seq %" PRIu64
                ": the event was moved here from there, or changed",
                seq, (int)ev->source.len, ev->source.ptr, (int)ev->id.len, ev->id.ptr,
                dv.mv_size == 8 ? be64(dv.mv_data) : 0);
}

static void want_indexes(vstate *v, uint64_t seq, const kabar_event *ev)
{
    uint8_t sb[8];
    seq_be(seq, sb);
    want(v, FP_SOURCE, ev->source.ptr, ev->source.len, sb);
    want(v, FP_TYPE, ev->type.ptr, ev->type.len, sb);
    if (ev->ntargets == 0)
        want(v, FP_TARGET, "*", 1, sb);
    for (uint32_t i = 0; i < ev->ntargets; i++) {
        bool dup = false;
        for (uint32_t j = 0; j < i && !dup; j++)
            dup = str_eq(ev->targets[i], ev->targets[j]);
        if (!dup)
            want(v, FP_TARGET, ev->targets[i].ptr, ev->targets[i].len, sb);
    }
    char dk[2 * KABAR_MAX_ID_LEN + 72];
    if (ev->source.len + 1 + ev->id.len <= sizeof dk) {
        memcpy(dk, ev->source.ptr, ev->source.len);
        dk[ev->source.len] = '\0';
        memcpy(dk + ev->source.len + 1, ev->id.ptr, ev->id.len);
        want(v, FP_DEDUP, dk, ev->source.len + 1 + ev->id.len, sb);
    }
}

static int scan_fingerprints(vstate *v)
{
    audit_log *l = v->s->log;
    for (int w = 0; w < FP_COUNT; w++) {
        if (!l->has[fp_db[w]])
            continue;
        MDB_cursor *c;
        int rc = mdb_cursor_open(l->txn, l->dbi[fp_db[w]], &c);
        if (rc != 0)
            return kabar_error_set(v->err, KABAR_STORE, "cannot read %s: %s", fp_name[w],
                                   mdb_strerror(rc));
        MDB_val k, val;
        for (int op = MDB_FIRST; mdb_cursor_get(c, &k, &val, op) == 0; op = MDB_NEXT) {
            uint8_t sb[8] = {0};
            if (val.mv_size == 8)
                memcpy(sb, val.mv_data, 8);
            else
                sb[0] = 0xff; /* damaged: cannot match any wanted entry */
            v->fp_have[w] += fp_entry(v, w, k.mv_data, k.mv_size, sb);
            v->n_have[w]++;
        }
        mdb_cursor_close(c);
    }
    return 0;
}

/* An index (or dedup) differs: look at every entry, and every event's entries. */
static int deep_index(vstate *v, int w)
{
    audit_log *l = v->s->log;
    MDB_cursor *c;
    MDB_val k, val;
    int rc;
    if (!l->has[fp_db[w]]) {
        problem(v, 0, "%s: the database is missing", fp_name[w]);
        return 0;
    }
    /* Entries -> events. */
    if ((rc = mdb_cursor_open(l->txn, l->dbi[fp_db[w]], &c)) != 0)
        return kabar_error_set(v->err, KABAR_STORE, "cannot read %s: %s", fp_name[w],
                               mdb_strerror(rc));
    for (int op = MDB_FIRST; mdb_cursor_get(c, &k, &val, op) == 0; op = MDB_NEXT) {
        int kl = (int)(k.mv_size > 200 ? 200 : k.mv_size);
        const char *ks = k.mv_data;
        char shown[210]; /* the key as text: dedup's "source\0id" as "source/id" */
        memcpy(shown, ks, (size_t)kl);
        for (int j = 0; j < kl; j++)
            if (shown[j] == '\0')
                shown[j] = '/';
        if (val.mv_size != 8) {
            problem(v, 0, "%s: the entry \"%.*s\" holds %zu bytes, not a seq", fp_name[w], kl,
                    shown, val.mv_size);
            continue;
        }
        uint64_t seq = be64(val.mv_data);
        audit_rec r;
        kabar_event ev;
        kabar_error e;
        if (audit_log_record(l, seq, &r, &e) != 0) {
            problem(v, seq, "seq %" PRIu64 ": the %s entry \"%.*s\" points at this seq, which %s",
                    seq, fp_name[w], kl, shown,
                    e.code == KABAR_NOT_FOUND ? "is not in the log" : "is damaged");
            continue;
        }
        if (kabar_event_decode(NULL, r.event, r.event_len, &ev, &e) != 0)
            continue; /* reported by the main pass */
        bool ok = false;
        kabar_str key = {ks, (uint32_t)k.mv_size};
        switch (w) {
        case FP_SOURCE:
            ok = str_eq(key, ev.source);
            break;
        case FP_TYPE:
            ok = str_eq(key, ev.type);
            break;
        case FP_TARGET:
            ok = ev.ntargets == 0 && k.mv_size == 1 && ks[0] == '*';
            for (uint32_t i = 0; i < ev.ntargets && !ok; i++)
                ok = str_eq(key, ev.targets[i]);
            break;
        case FP_DEDUP:
            ok = k.mv_size == ev.source.len + 1u + ev.id.len &&
                 memcmp(ks, ev.source.ptr, ev.source.len) == 0 && ks[ev.source.len] == '\0' &&
                 memcmp(ks + ev.source.len + 1, ev.id.ptr, ev.id.len) == 0;
            break;
        }
        if (!ok) {
            /* A dedup key is "source\0id"; LMDB keys need not hold a NUL at all. */
            const char *nul = w == FP_DEDUP ? memchr(ks, '\0', k.mv_size) : NULL;
            if (w == FP_DEDUP && nul == NULL)
                problem(v, seq,
                        "seq %" PRIu64 ": the dedup entry \"%.*s\" points at this seq, but is "
                        "malformed (no NUL byte between source and id); its event is source "
                        "%.*s, id %.*s",
                        seq, kl, shown, (int)ev.source.len, ev.source.ptr, (int)ev.id.len,
                        ev.id.ptr);
            else if (w == FP_DEDUP) {
                size_t sl = (size_t)(nul - ks), il = k.mv_size - sl - 1;
                problem(v, seq,
                        "seq %" PRIu64 ": the dedup entry for source %.*s, id %.*s points at "
                        "this seq, but its event is source %.*s, id %.*s",
                        seq, (int)(sl > 200 ? 200 : sl), ks, (int)(il > 200 ? 200 : il), nul + 1,
                        (int)ev.source.len, ev.source.ptr, (int)ev.id.len, ev.id.ptr);
            } else
                problem(v, seq,
                        "seq %" PRIu64 ": the %s entry \"%.*s\" points at this seq, but its "
                        "event has no such %s",
                        seq, fp_name[w], kl, ks,
                        w == FP_SOURCE ? "source"
                        : w == FP_TYPE ? "type"
                                       : "target");
        }
    }
    mdb_cursor_close(c);
    if (w == FP_DEDUP)
        return 0; /* events -> dedup: checked inline (check_dedup) */
    /* Events -> entries. */
    MDB_cursor *ev_c, *ix;
    if ((rc = mdb_cursor_open(l->txn, l->dbi[ADB_EVENTS], &ev_c)) != 0 ||
        (rc = mdb_cursor_open(l->txn, l->dbi[fp_db[w]], &ix)) != 0)
        return kabar_error_set(v->err, KABAR_STORE, "cannot read the log: %s", mdb_strerror(rc));
    for (int op = MDB_FIRST; mdb_cursor_get(ev_c, &k, &val, op) == 0; op = MDB_NEXT) {
        if (k.mv_size != 8)
            continue;
        uint64_t seq = be64(k.mv_data);
        audit_rec r;
        kabar_event ev;
        if (audit_rec_parse(val.mv_data, val.mv_size, seq, &r, NULL) != 0 ||
            kabar_event_decode(NULL, r.event, r.event_len, &ev, NULL) != 0)
            continue;
        MDB_val sv = {8, k.mv_data};
        kabar_str keys[KABAR_MAX_TARGETS + 1];
        uint32_t nk = 0;
        if (w == FP_SOURCE)
            keys[nk++] = ev.source;
        else if (w == FP_TYPE)
            keys[nk++] = ev.type;
        else if (w == FP_TARGET) {
            if (ev.ntargets == 0)
                keys[nk++] = (kabar_str){"*", 1};
            for (uint32_t i = 0; i < ev.ntargets; i++)
                keys[nk++] = ev.targets[i];
        }
        for (uint32_t i = 0; i < nk; i++) {
            MDB_val ik = {keys[i].len, (void *)keys[i].ptr}, iv = sv;
            if (mdb_cursor_get(ix, &ik, &iv, MDB_GET_BOTH) != 0)
                problem(v, seq, "seq %" PRIu64 ": the event is missing from %s under \"%.*s\"", seq,
                        fp_name[w], (int)keys[i].len, keys[i].ptr);
        }
        /* dedup: checked inline by the main pass (check_dedup) */
    }
    mdb_cursor_close(ix);
    mdb_cursor_close(ev_c);
    return 0;
}

static void check_consumers(vstate *v)
{
    audit_log *l = v->s->log;
    if (!l->has[ADB_CONSUMERS])
        return;
    MDB_cursor *c;
    if (mdb_cursor_open(l->txn, l->dbi[ADB_CONSUMERS], &c) != 0)
        return;
    MDB_val k, val;
    for (int op = MDB_FIRST; mdb_cursor_get(c, &k, &val, op) == 0; op = MDB_NEXT) {
        mpr r;
        mpr_item m, key, it;
        bool found = false;
        uint64_t acked = 0;
        mpr_init(&r, val.mv_data, val.mv_size);
        r.canonical = false;
        if (mpr_next(&r, &m, NULL) == 0 && m.kind == MPR_MAP) {
            for (uint32_t i = 0; i < m.count; i++) {
                if (mpr_next(&r, &key, NULL) != 0)
                    break;
                if (key.kind == MPR_STR && key.len == 5 && memcmp(key.str, "acked", 5) == 0) {
                    if (mpr_next(&r, &it, NULL) == 0 && it.kind == MPR_UINT) {
                        acked = it.u;
                        found = true;
                    }
                    break;
                }
                if (mpr_skip(&r, 16, NULL) != 0)
                    break;
            }
        }
        int kl = (int)(k.mv_size > 100 ? 100 : k.mv_size);
        if (!found)
            problem(v, 0, "consumer %.*s: its record is damaged (no acked position)", kl,
                    (const char *)k.mv_data);
        else if (acked > v->res->head)
            problem(v, 0, "consumer %.*s: acked %" PRIu64 " is past the head %" PRIu64, kl,
                    (const char *)k.mv_data, acked, v->res->head);
    }
    mdb_cursor_close(c);
}

/* ------------------------------------------------------------------------ */
/* The pass                                                                 */

static int one_record(vstate *v, uint64_t seq, const void *raw, size_t len)
{
    audit_rec r;
    kabar_event ev;
    kabar_error e = {0};
    int rc;
    if (seq < v->expected) {
        problem(v, seq, "seq %" PRIu64 ": stored out of order", seq);
        return 0;
    }
    if (seq - v->expected > AUDIT_MAX_GAP) {
        /* A damaged key, not a gap to fill with placeholder leaves. */
        problem(v, 0,
                "seq %" PRIu64 ": a record is stored under this seq, %" PRIu64
                " past the previous one (%" PRIu64 "): a damaged key",
                seq, seq - v->expected + 1, v->expected - 1);
        return 0;
    }
    if (seq > v->expected) {
        uint64_t a = v->expected, b = seq - 1;
        if (a == b)
            problem(v, b,
                    "seq %" PRIu64 ": missing (the log goes from seq %" PRIu64 " to %" PRIu64 ")",
                    a, a - 1, seq);
        else
            problem(v, b,
                    "seq %" PRIu64 ": missing, and every seq up to %" PRIu64 " (%" PRIu64
                    " events)",
                    a, b, b - a + 1);
        static const uint8_t zero[32];
        for (uint64_t s = a; s <= b; s++)
            if ((rc = push_leaf(v, zero)) != 0)
                return rc;
    }
    v->expected = seq + 1;
    v->res->events++;
    uint8_t leaf[32];
    merkle_leaf_hash(raw, len, leaf);
    if (audit_rec_parse(raw, len, seq, &r, &e) != 0) {
        problem(v, seq, "seq %" PRIu64 ": the record is damaged: %s", seq, e.message);
        return push_leaf(v, leaf);
    }
    if (r.received_at < v->last_received_at) {
        char a[KABAR_TIME_MAX], b[KABAR_TIME_MAX];
        kabar_time_format(r.received_at, a);
        kabar_time_format(v->last_received_at, b);
        problem(v, seq, "seq %" PRIu64 ": received at %s, before the previous event (%s)", seq, a,
                b);
    }
    v->last_received_at = r.received_at;
    bool decoded = kabar_event_decode(NULL, r.event, r.event_len, &ev, &e) == 0;
    if (!decoded)
        problem(v, seq, "seq %" PRIu64 ": the event does not decode: %s", seq, e.message);
    check_signature(v, &r, decoded ? &ev : NULL);
    if (decoded && v->s->log) {
        check_dedup(v, seq, &ev);
        want_indexes(v, seq, &ev);
    }
    return push_leaf(v, leaf);
}

static void progress(vstate *v, bool last)
{
    static const char *const fmt = "\rkabar audit verify: %" PRIu64 " of %" PRIu64 " events";
    fprintf(stderr, fmt, v->res->events, v->res->head);
    if (last)
        fputc('\n', stderr);
}

static int pass_offline(vstate *v)
{
    audit_log *l = v->s->log;
    MDB_cursor *c;
    MDB_val k, val;
    int rc = mdb_cursor_open(l->txn, l->dbi[ADB_EVENTS], &c);
    if (rc != 0)
        return kabar_error_set(v->err, KABAR_STORE, "cannot read the log: %s", mdb_strerror(rc));
    for (int op = MDB_FIRST; (rc = mdb_cursor_get(c, &k, &val, op)) == 0; op = MDB_NEXT) {
        if (k.mv_size != 8) {
            problem(v, 0, "events: a key of %zu bytes is not a seq", k.mv_size);
            continue;
        }
        if ((rc = one_record(v, be64(k.mv_data), val.mv_data, val.mv_size)) != 0)
            break;
        if (v->o->progress && (v->res->events & 0xffff) == 0)
            progress(v, false);
    }
    mdb_cursor_close(c);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc > 0 && rc < KABAR_ERR_COUNT_
                   ? rc
                   : kabar_error_set(v->err, KABAR_STORE, "cannot read the log: %s",
                                     mdb_strerror(rc));
    return 0;
}

static int pass_online(vstate *v)
{
    for (uint64_t seq = 1; seq <= v->s->head; seq++) {
        audit_rec r;
        int rc = audit_source_record(v->s, seq, &r, v->err);
        if (rc == KABAR_NOT_FOUND) {
            problem(v, seq, "seq %" PRIu64 ": missing (the broker has no record for it)", seq);
            continue;
        }
        if (rc != 0)
            return rc;
        if ((rc = one_record(v, seq, r.raw, r.raw_len)) != 0)
            return rc;
        if (v->o->progress && (v->res->events & 0xffff) == 0)
            progress(v, false);
    }
    return 0;
}

int audit_verify(audit_source *s, const audit_verify_opts *o, audit_verify_result *res,
                 kabar_error *err)
{
    vstate *v = calloc(1, sizeof *v);
    struct timespec t0, t1;
    int rc;
    if (v == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    clock_gettime(CLOCK_MONOTONIC, &t0);
    memset(res, 0, sizeof *res);
    v->s = s;
    v->o = o;
    v->res = res;
    v->err = err;
    v->expected = 1;
    v->last_received_at = INT64_MIN;
    res->head = s->head;
    crypto_shorthash_keygen(v->fpkey);
    if ((rc = audit_source_checkpoints(s, cp_collect, v, err)) != 0)
        goto done;
    /* Online the log grows meanwhile: verify up to a head that every
     * checkpoint just listed is within. */
    if ((rc = audit_source_refresh_head(s, err)) != 0)
        goto done;
    res->head = s->head;
    cp_open_all(v);
    if (o->since_note) {
        kabar_error e = {0};
        if (checkpoint_open(&v->since, o->since_note, o->since_len, o->log_key, &e) != 0) {
            rc = kabar_error_set(err, KABAR_VERIFY_FAILED,
                                 "--since-checkpoint: the saved checkpoint does not verify with "
                                 "the log key: %s",
                                 e.message);
            goto done;
        }
        v->has_since = true;
    }
    uint8_t root[32];
    merkle_empty_root(root);
    cp_check_at(v, root); /* size-0 checkpoints */
    rc = s->log ? pass_offline(v) : pass_online(v);
    if (rc != 0)
        goto done;
    if (o->progress && res->events > 0)
        progress(v, true);
    res->head = v->expected - 1;
    merkle_frontier_root(&v->f, res->root);
    /* Checkpoints past the end: events were removed from the end. */
    for (; v->next_cp < v->ncps; v->next_cp++) {
        cpt *c = &v->cps[v->next_cp];
        if (c->ok)
            problem(v, 0,
                    "seq %" PRIu64 ": missing: the checkpoint of size %" PRIu64 " says the log "
                    "had %" PRIu64 " events, it has %" PRIu64 " (events were removed from its end)",
                    res->head + 1, c->size, c->size, res->head);
    }
    if (v->has_since && v->since.size > res->head)
        problem(v, 0,
                "seq %" PRIu64 ": missing: the saved checkpoint says the log had %" PRIu64
                " events, it has %" PRIu64 " (the log was cut or rewritten)",
                res->head + 1, v->since.size, res->head);
    if (s->log) {
        audit_log *l = s->log;
        MDB_stat st;
        uint64_t want_nodes = res->head - (uint64_t)__builtin_popcountll(res->head);
        if (l->has[ADB_TREE] && mdb_stat(l->txn, l->dbi[ADB_TREE], &st) == 0 &&
            st.ms_entries != want_nodes)
            problem(v, 0,
                    "tree: it holds %zu nodes, a log of %" PRIu64 " events has %" PRIu64
                    " (nodes past the head: events were removed from its end)",
                    st.ms_entries, res->head, want_nodes);
        if ((rc = scan_fingerprints(v)) != 0)
            goto done;
        for (int w = 0; w < FP_COUNT; w++)
            if (v->fp_want[w] != v->fp_have[w] || v->n_want[w] != v->n_have[w])
                if ((rc = deep_index(v, w)) != 0)
                    goto done;
        check_consumers(v);
    }
done:
    clock_gettime(CLOCK_MONOTONIC, &t1);
    res->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    for (size_t i = 0; i < v->ncps; i++)
        free(v->cps[i].note);
    free(v->cps);
    kabar_buf_free(&v->fpbuf);
    free(v);
    return rc;
}
