/*
 * store.c - the broker's log in one LMDB environment (contract: store.h;
 * layout, durability and inspection: docs/STORAGE.md).
 *
 * Design notes
 *
 * The environment is the single file DIR/log.mdb (MDB_NOSUBDIR) with its
 * lock file DIR/log.mdb-lock. A writable store also holds an flock(2) on the
 * data file, so that a second kabard on the same directory fails at once
 * with KABAR_LOCKED instead of queueing behind LMDB's writer mutex.
 *
 * The environment is opened with MDB_NOTLS: read transactions belong to
 * store_reader objects, not to threads, so that one thread (the broker's
 * loop) can hold many readers at once.
 *
 * Map size. LMDB can only change the map while no transaction of this
 * process is using it. The store keeps a list of its readers; before it
 * remaps (growing after MDB_MAP_FULL in the writer, or following a map grown
 * by another process after MDB_MAP_RESIZED in a reader) it resets every live
 * reader's transaction and marks it stale. A stale reader renews itself on
 * its next use, so it moves to the newest snapshot; its iterators notice the
 * new generation and reposition at the seq they would have returned next.
 * This is why store.h says that records are valid only until the next
 * store_write in this process.
 *
 * Hot path. store_write runs one write transaction for a whole batch,
 * opens each database's cursor once, looks every (source, id) up in
 * `dedup` (which sees the batch's own earlier puts), appends the record with
 * MDB_APPEND|MDB_RESERVE (copied straight into the page, no malloc), and
 * adds the index entries with MDB_APPENDDUP (the new seq is always the
 * largest in its dup set). Only consumer updates use a scratch buffer, which
 * the store keeps.
 *
 * The Merkle tree. The writer keeps the tree's right edge in memory (a
 * merkle_frontier: the O(log n) complete subtrees whose sizes are the
 * binary digits of the head), loaded from `tree` at the first write. A new
 * leaf is pushed onto a copy of it (hot_push: merkle_frontier_push's
 * algorithm, which puts exactly the nodes merkle_append would), and every
 * node it completes at level >= 1 is put into `tree` in the same
 * transaction. So appending costs one leaf hash, on average one node hash
 * and one `tree` put, and no reads, whatever the size of the log; the copy
 * becomes the store's frontier only when the transaction commits. Leaf
 * hashes (level 0) are not stored: they are the hash of the `events` value.
 *
 * Hashing is merkle.c's (OpenSSL's SHA-256 with the CPU's SHA extensions,
 * proto/sha256.h); store_test checks the stored tree against merkle.c's
 * own append, node by node.
 *
 * Signed batches get their id (last_batch + 1, ...) the first time one of
 * their events is stored in a write; the id lives in the store_sigbatch
 * the entries share, reset to 0 at every attempt.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "checkpoint.h"
#include "mpr.h"
#include "sha256.h"
#include "store_internal.h"

#define DEDUP_KEY_MAX (KABAR_MAX_AGENCY_LEN + 1 + KABAR_MAX_ID_LEN)

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */

/* A short write (EIO from LMDB) is how a nearly full disk often shows up. */
static bool disk_looks_full(const store *s)
{
    struct statvfs vfs;
    if (statvfs(s->dir, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < 4 * MIB)
        return true;
    struct rlimit rl;
    struct stat st;
    return getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
           fstat(s->data_fd, &st) == 0 && (uint64_t)st.st_size + 4 * MIB > rl.rlim_cur;
}

/* Translate an LMDB or errno code into a kabar error: "<what> log at DIR: <why>". */
int store__fail(const store *s, int rc, const char *what, kabar_error *err)
{
    if (rc == ENOSPC || rc == EFBIG || rc == EDQUOT || (rc == EIO && disk_looks_full(s)))
        return kabar_error_set(
            err, KABAR_DISK_FULL, "%s log at %s: %s (free disk space or raise --max-size)", what,
            s->dir, rc == EIO ? "short write (disk or file size limit full)" : mdb_strerror(rc));
    if (rc == STORE_BADREC)
        return kabar_error_set(err, KABAR_STORE,
                               "%s log at %s: a stored record is malformed (the log is damaged; "
                               "check it with kabar audit)",
                               what, s->dir);
    if (rc == MDB_PANIC)
        return kabar_error_set(err, KABAR_STORE,
                               "%s log at %s: %s (restart kabard; nothing acked was lost)", what,
                               s->dir, mdb_strerror(rc));
    return kabar_error_set(err, KABAR_STORE, "%s log at %s: %s", what, s->dir, mdb_strerror(rc));
}

/* ------------------------------------------------------------------------ */
/* Map size and transactions                                                */

/* Reset every live reader, then set the map size (0: as the file says). */
int store__remap(store *s, uint64_t size)
{
    for (store_reader *r = s->readers; r != NULL; r = r->next) {
        if (r->live) {
            mdb_txn_reset(r->txn);
            r->live = false;
        }
    }
    int rc = mdb_env_set_mapsize(s->env, (size_t)size);
    MDB_envinfo info;
    if (mdb_env_info(s->env, &info) == 0)
        s->mapsize = info.me_mapsize;
    return rc;
}

int store__txn_begin(store *s, unsigned flags, MDB_txn **txn)
{
    for (int tries = 0;; tries++) {
        int rc = mdb_txn_begin(s->env, NULL, flags, txn);
        if (rc != MDB_MAP_RESIZED || tries == 3)
            return rc;
        if ((rc = store__remap(s, 0)) != 0)
            return rc;
    }
}

static int grow(store *s, kabar_error *err)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t cur = s->mapsize, next = cur * 2;
    if (s->max_bytes != 0 && next > s->max_bytes)
        next = s->max_bytes / page * page;
    if (next <= cur)
        return kabar_error_set(err, KABAR_DISK_FULL,
                               "log at %s reached its size limit of %llu MiB (free disk space or "
                               "raise --max-size)",
                               s->dir, (unsigned long long)(cur / MIB));
    int rc = store__remap(s, next);
    if (rc != 0) {
        store__remap(s, cur);
        return kabar_error_set(err, KABAR_STORE,
                               "cannot grow the log at %s to %llu MiB: %s (the system refused "
                               "a larger memory map; set --max-size)",
                               s->dir, (unsigned long long)(next / MIB), mdb_strerror(rc));
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                  */

typedef struct wctx {
    store *s;
    MDB_txn *txn;
    MDB_cursor *cur[DB_COUNT]; /* events .. batches (the hot path's databases) */
    uint64_t head;
    int64_t at;
    uint64_t batch;     /* the last batch id assigned */
    merkle_frontier fr; /* the tree's right edge at head */
    kabar_error kerr;   /* a kabar error behind STORE_KERR */
} wctx;

#define HOT_FIRST DB_EVENTS
#define HOT_LAST  DB_BATCHES

static bool str_ok(kabar_str v, uint32_t max)
{
    return v.ptr != NULL && v.len > 0 && v.len <= max && memchr(v.ptr, 0, v.len) == NULL;
}

static int check_entry(const store_entry *e, size_t i, kabar_error *err)
{
    const kabar_event *ev = e->ev;
    const char *bad = NULL;
    if (ev == NULL || e->bytes == NULL || e->len == 0 || e->len > 16 * MIB)
        bad = "no event or bytes";
    else if (!str_ok(ev->source, KABAR_MAX_AGENCY_LEN))
        bad = "source";
    else if (!str_ok(ev->id, KABAR_MAX_ID_LEN))
        bad = "id";
    else if (!str_ok(ev->type, KABAR_MAX_TYPE_LEN))
        bad = "type";
    else if (ev->ntargets > KABAR_MAX_TARGETS)
        bad = "targets";
    for (uint32_t t = 0; bad == NULL && t < ev->ntargets; t++) {
        if (!str_ok(ev->targets[t], KABAR_MAX_AGENCY_LEN))
            bad = "targets";
    }
    if (bad != NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "store_write: entry %zu: %s empty, too long or missing", i, bad);
    const store_sigbatch *b = e->batch;
    if (b != NULL &&
        (b->n == 0 || b->n > STORE_BATCH_MAX || b->leaves == NULL || e->batch_index >= b->n))
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "store_write: entry %zu: signed batch of %u events%s with index %u "
                               "(1 to %d events, index below the count)",
                               i, b->n, b->leaves == NULL ? " without leaves" : "", e->batch_index,
                               STORE_BATCH_MAX);
    return 0;
}

/* An owner is "" (nobody) or an agency id. */
static bool owner_ok(const char *o)
{
    return o == NULL || o[0] == '\0' || kabar_agency_valid(o, strlen(o));
}

static int check_consumer(const store_consumer_update *c, size_t i, kabar_error *err)
{
    size_t n = c->name != NULL ? strlen(c->name) : 0;
    if (n == 0 || n > KABAR_MAX_ID_LEN)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "store_write: consumer %zu: name empty or longer than %d bytes", i,
                               KABAR_MAX_ID_LEN);
    if (!owner_ok(c->owner))
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "store_write: consumer %s: owner '%.40s' is not an agency id",
                               c->name, c->owner);
    if (c->filter == NULL)
        return 0;
    mpr r;
    mpr_item it;
    mpr_init(&r, c->filter, c->filter_len);
    r.canonical = false;
    bool ok = c->filter_len > 0 && mpr_next(&r, &it, NULL) == 0 && it.kind == MPR_MAP;
    if (ok) {
        mpr_init(&r, c->filter, c->filter_len);
        r.canonical = false;
        ok = mpr_skip(&r, KABAR_MAX_DEPTH, NULL) == 0 && mpr_left(&r) == 0;
    }
    if (!ok)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "store_write: consumer %s: filter is not one msgpack map", c->name);
    return 0;
}

/* One index entry: key -> seq, appended at the end of key's dup set. */
static int put_index(MDB_cursor *cur, const char *key, size_t klen, MDB_val *seq)
{
    MDB_val k = {klen, (void *)key};
    return mdb_cursor_put(cur, &k, seq, MDB_APPENDDUP);
}

static bool seen_target(const kabar_event *ev, uint32_t t)
{
    for (uint32_t j = 0; j < t; j++) {
        if (ev->targets[j].len == ev->targets[t].len &&
            memcmp(ev->targets[j].ptr, ev->targets[t].ptr, ev->targets[t].len) == 0)
            return true;
    }
    return false;
}

/* Keep a completed node of level >= 1 in `tree`. */
static int tree_put(wctx *w, unsigned level, uint64_t index, const uint8_t hash[32])
{
    uint8_t kb[TREE_KEY];
    store_tree_key(kb, level, index);
    MDB_val k = {TREE_KEY, kb}, v = {32, (void *)hash};
    /* Keys grow with every node created (store_tree_key), so append. */
    return mdb_cursor_put(w->cur[DB_TREE], &k, &v, MDB_APPEND);
}

/*
 * Append a leaf to the frontier (merkle_frontier_push) and put every node
 * it completes into `tree`. On an error the frontier may be half-updated:
 * the caller drops it with the transaction.
 */
static int hot_push(wctx *w, const uint8_t leaf[32])
{
    merkle_frontier *f = &w->fr;
    if (f->size == UINT64_MAX)
        return ENOSPC;
    uint8_t h[32];
    uint64_t index = f->size;
    unsigned level = 0;
    memcpy(h, leaf, 32);
    while (index & 1) { /* a right child: its parent is now complete */
        merkle_node_hash(f->hash[level], h, h);
        index >>= 1;
        level++;
        int rc = tree_put(w, level, index, h);
        if (rc != 0)
            return rc;
    }
    memcpy(f->hash[level], h, 32);
    f->size++;
    return 0;
}

/* A node of the stored tree, read in the write transaction (level 0: a record's hash). */
static int node_get(wctx *w, unsigned level, uint64_t index, uint8_t out[32])
{
    uint8_t kb[TREE_KEY];
    MDB_val k, v;
    int rc;
    if (level == 0) {
        put_be64(kb, index + 1);
        k = (MDB_val){8, kb};
        if ((rc = mdb_get(w->txn, w->s->dbi[DB_EVENTS], &k, &v)) == 0)
            merkle_leaf_hash(v.mv_data, v.mv_size, out);
    } else {
        store_tree_key(kb, level, index);
        k = (MDB_val){TREE_KEY, kb};
        if ((rc = mdb_get(w->txn, w->s->dbi[DB_TREE], &k, &v)) == 0 && v.mv_size != 32)
            rc = STORE_BADREC;
        if (rc == 0)
            memcpy(out, v.mv_data, 32);
    }
    if (rc == MDB_NOTFOUND) {
        kabar_error_set(&w->kerr, KABAR_STORE,
                        "cannot write to log at %s: its Merkle tree lacks node (level %u, index "
                        "%llu) of a tree of %llu events (the log is damaged; check it with kabar "
                        "audit verify)",
                        w->s->dir, level, (unsigned long long)index,
                        (unsigned long long)w->s->head);
        return STORE_KERR;
    }
    return rc;
}

/* The frontier of the stored tree of `head` leaves: its O(log n) complete subtrees. */
static int frontier_load(wctx *w)
{
    memset(&w->fr, 0, sizeof w->fr);
    uint64_t start = 0, head = w->s->head;
    for (int level = 63; level >= 0; level--) {
        uint64_t width = (uint64_t)1 << level;
        if (!(head & width))
            continue;
        int rc = node_get(w, (unsigned)level, start >> level, w->fr.hash[level]);
        if (rc != 0)
            return rc;
        start += width;
    }
    w->fr.size = head;
    return 0;
}

/* A signed batch's first stored event: give it the next id and keep it in `batches`. */
static int put_batch(wctx *w, store_sigbatch *b)
{
    uint8_t kb[8];
    put_be64(kb, w->batch + 1);
    MDB_val k = {8, kb}, v = {BATCH_HDR + (size_t)b->n * 32, NULL};
    int rc = mdb_cursor_put(w->cur[DB_BATCHES], &k, &v, MDB_APPEND | MDB_RESERVE);
    if (rc != 0)
        return rc;
    uint8_t *p = v.mv_data;
    memcpy(p, b->key, 32);
    memcpy(p + 32, b->sig, 64);
    put_be32(p + 96, b->n);
    memcpy(p + BATCH_HDR, b->leaves, (size_t)b->n * 32);
    b->id = ++w->batch;
    return 0;
}

static int put_entry(wctx *w, store_entry *e)
{
    const kabar_event *ev = e->ev;
    uint8_t dk[DEDUP_KEY_MAX];
    memcpy(dk, ev->source.ptr, ev->source.len);
    dk[ev->source.len] = 0;
    memcpy(dk + ev->source.len + 1, ev->id.ptr, ev->id.len);
    MDB_val k = {ev->source.len + 1 + ev->id.len, dk}, v;
    int rc = mdb_cursor_get(w->cur[DB_DEDUP], &k, &v, MDB_SET);
    if (rc == 0) {
        if (v.mv_size != 8)
            return STORE_BADREC;
        MDB_val sk = v, rv;
        store_record rec;
        if ((rc = mdb_cursor_get(w->cur[DB_EVENTS], &sk, &rv, MDB_SET)) != 0)
            return rc == MDB_NOTFOUND ? STORE_BADREC : rc;
        if ((rc = store__rec_parse(&sk, &rv, &rec)) != 0)
            return rc;
        e->seq = rec.seq;
        e->duplicate = true;
        e->received_at = rec.received_at;
        e->batch_id = rec.batch;
        merkle_leaf_hash(rec.raw, rec.raw_len, e->leaf_hash);
        return 0;
    }
    if (rc != MDB_NOTFOUND)
        return rc;
    uint64_t bid = 0;
    if (e->batch != NULL) {
        /* The caller's object; store.h says it must be writable. */
        store_sigbatch *b = (store_sigbatch *)e->batch;
        if (b->id == 0 && (rc = put_batch(w, b)) != 0)
            return rc;
        bid = b->id;
    }
    uint8_t sb[8];
    put_be64(sb, w->head + 1);
    MDB_val seq = {8, sb};
    if ((rc = mdb_cursor_put(w->cur[DB_DEDUP], &k, &seq, 0)) != 0)
        return rc;
    MDB_val rv = {REC_HDR + e->len, NULL};
    if ((rc = mdb_cursor_put(w->cur[DB_EVENTS], &seq, &rv, MDB_APPEND | MDB_RESERVE)) != 0)
        return rc;
    uint8_t *p = rv.mv_data;
    p[0] = STORE_FORMAT;
    put_be64(p + 1, (uint64_t)w->at);
    put_be64(p + 9, bid);
    put_be32(p + 17, bid != 0 ? e->batch_index : 0);
    memcpy(p + REC_HDR, e->bytes, e->len);
    merkle_leaf_hash(p, rv.mv_size, e->leaf_hash);
    if ((rc = hot_push(w, e->leaf_hash)) != 0)
        return rc;
    if ((rc = put_index(w->cur[DB_SOURCE], ev->source.ptr, ev->source.len, &seq)) != 0 ||
        (rc = put_index(w->cur[DB_TYPE], ev->type.ptr, ev->type.len, &seq)) != 0)
        return rc;
    if (ev->ntargets == 0)
        rc = put_index(w->cur[DB_TARGET], BROADCAST, 1, &seq);
    for (uint32_t t = 0; rc == 0 && t < ev->ntargets; t++) {
        if (!seen_target(ev, t))
            rc = put_index(w->cur[DB_TARGET], ev->targets[t].ptr, ev->targets[t].len, &seq);
    }
    if (rc != 0)
        return rc;
    w->head++;
    e->seq = w->head;
    e->duplicate = false;
    e->received_at = w->at;
    e->batch_id = bid;
    return 0;
}

/* Parse a consumer record: map {"acked", "created_at", "filter", "owner", "updated_at"}. */
int store__consumer_parse(const void *buf, size_t len, store_consumer *c)
{
    mpr r;
    mpr_item it, key;
    mpr_init(&r, buf, len);
    r.canonical = false;
    if (mpr_next(&r, &it, NULL) != 0 || it.kind != MPR_MAP)
        return STORE_BADREC;
    c->acked = 0;
    c->created_at = c->updated_at = 0;
    c->filter = (const uint8_t *)"\x80";
    c->filter_len = 1;
    c->owner[0] = '\0';
    for (uint32_t i = 0, n = it.count; i < n; i++) {
        if (mpr_next(&r, &key, NULL) != 0 || key.kind != MPR_STR)
            return STORE_BADREC;
        size_t at = mpr_offset(&r);
        int rc = 0;
#define KEY_IS(s) (key.len == sizeof(s) - 1 && memcmp(key.str, s, key.len) == 0)
        if (KEY_IS("filter")) {
            rc = mpr_skip(&r, KABAR_MAX_DEPTH + 1, NULL);
            c->filter = (const uint8_t *)buf + at;
            c->filter_len = mpr_offset(&r) - at;
        } else if (KEY_IS("acked")) {
            rc = mpr_next(&r, &it, NULL) != 0 || it.kind != MPR_UINT;
            c->acked = it.u;
        } else if (KEY_IS("created_at") || KEY_IS("updated_at")) {
            rc = mpr_next(&r, &it, NULL) != 0 || it.kind != MPR_TIMESTAMP;
            *(KEY_IS("created_at") ? &c->created_at : &c->updated_at) = it.i;
        } else if (KEY_IS("owner")) {
            rc =
                mpr_next(&r, &it, NULL) != 0 || it.kind != MPR_STR || it.len > KABAR_MAX_AGENCY_LEN;
            if (rc == 0) {
                memcpy(c->owner, it.str, it.len);
                c->owner[it.len] = '\0';
            }
        } else {
            rc = mpr_skip(&r, KABAR_MAX_DEPTH + 1, NULL);
        }
#undef KEY_IS
        if (rc != 0)
            return STORE_BADREC;
    }
    return 0;
}

static int put_consumer(wctx *w, const store_consumer_update *u, int64_t now)
{
    store *s = w->s;
    MDB_val k = {strlen(u->name), (void *)u->name}, v;
    store_consumer old = {.created_at = now, .filter = (const uint8_t *)"\x80", .filter_len = 1};
    int rc = mdb_get(w->txn, s->dbi[DB_CONSUMERS], &k, &v);
    if (rc == 0 && (rc = store__consumer_parse(v.mv_data, v.mv_size, &old)) != 0)
        return rc;
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    if (u->filter != NULL) {
        old.filter = u->filter;
        old.filter_len = u->filter_len;
    }
    if (u->owner != NULL)
        snprintf(old.owner, sizeof old.owner, "%s", u->owner);
    size_t olen = strlen(old.owner);
    msgpack_sbuffer_clear(&s->scratch);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s->scratch, msgpack_sbuffer_write);
    if (msgpack_pack_map(&pk, olen > 0 ? 5 : 4) != 0 ||
        msgpack_pack_str_with_body(&pk, "acked", 5) != 0 ||
        msgpack_pack_uint64(&pk, u->acked) != 0 ||
        msgpack_pack_str_with_body(&pk, "created_at", 10) != 0 ||
        store__ts_pack(&pk, old.created_at) != 0 ||
        msgpack_pack_str_with_body(&pk, "filter", 6) != 0 ||
        msgpack_sbuffer_write(&s->scratch, (const char *)old.filter, old.filter_len) != 0)
        return ENOMEM;
    if (olen > 0 && (msgpack_pack_str_with_body(&pk, "owner", 5) != 0 ||
                     msgpack_pack_str_with_body(&pk, old.owner, olen) != 0))
        return ENOMEM;
    if (msgpack_pack_str_with_body(&pk, "updated_at", 10) != 0 || store__ts_pack(&pk, now) != 0)
        return ENOMEM;
    v = (MDB_val){s->scratch.size, s->scratch.data};
    return mdb_put(w->txn, s->dbi[DB_CONSUMERS], &k, &v, 0);
}

/* Every batch an entry points to is unassigned (before an attempt, and after a failed one). */
static void batches_reset(store_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (e[i].batch != NULL)
            ((store_sigbatch *)e[i].batch)->id = 0;
    }
}

/* One attempt at the whole write. *full: the map was too small. */
static int write_once(store *s, store_entry *e, size_t n, const store_consumer_update *c, size_t nc,
                      int64_t now, bool *full, kabar_error *err)
{
    wctx *w = calloc(1, sizeof *w); /* 2 KiB of frontier: not on the broker's stack */
    if (w == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    w->s = s;
    w->head = s->head;
    w->batch = s->last_batch;
    w->at = now < s->last_received_at ? s->last_received_at : now;
    batches_reset(e, n);
    int rc = store__txn_begin(s, 0, &w->txn);
    for (int i = HOT_FIRST; rc == 0 && i <= HOT_LAST; i++)
        rc = mdb_cursor_open(w->txn, s->dbi[i], &w->cur[i]);
    if (rc == 0 && n > 0) {
        if (s->have_frontier && s->frontier.size == s->head)
            w->fr = s->frontier;
        else
            rc = frontier_load(w);
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = put_entry(w, &e[i]);
    for (size_t i = 0; rc == 0 && i < nc; i++)
        rc = put_consumer(w, &c[i], now);
    for (int i = HOT_FIRST; i <= HOT_LAST; i++) {
        if (w->cur[i] != NULL)
            mdb_cursor_close(w->cur[i]);
    }
    if (rc == 0) {
        rc = mdb_txn_commit(w->txn);
        w->txn = NULL;
    }
    if (rc != 0) {
        if (w->txn != NULL)
            mdb_txn_abort(w->txn);
        batches_reset(e, n);
        if (rc == MDB_MAP_FULL)
            *full = true;
        else if (rc == STORE_KERR)
            rc = kabar_error_set(err, w->kerr.code, "%s", w->kerr.message);
        else
            rc = store__fail(s, rc, "cannot write to", err);
        free(w);
        return *full ? 0 : rc;
    }
    if (w->head != s->head)
        s->last_received_at = w->at;
    s->head = w->head;
    s->last_batch = w->batch;
    if (n > 0) {
        s->frontier = w->fr;
        s->have_frontier = true;
    }
    free(w);
    return 0;
}

int store_write(store *s, store_entry *e, size_t n, const store_consumer_update *c, size_t nc,
                int64_t now, kabar_error *err)
{
    if (s == NULL || (n > 0 && e == NULL) || (nc > 0 && c == NULL))
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "store_write: missing argument");
    if (s->readonly)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "store_write: the log at %s is open read-only", s->dir);
    int rc;
    for (size_t i = 0; i < n; i++) {
        if ((rc = check_entry(&e[i], i, err)) != 0)
            return rc;
    }
    for (size_t i = 0; i < nc; i++) {
        if ((rc = check_consumer(&c[i], i, err)) != 0)
            return rc;
    }
    if (n == 0 && nc == 0)
        return 0;
    for (;;) {
        bool full = false;
        if ((rc = write_once(s, e, n, c, nc, now, &full, err)) != 0 || !full)
            return rc;
        if ((rc = grow(s, err)) != 0)
            return rc;
    }
}

/* ------------------------------------------------------------------------ */
/* Other write transactions: registry, checkpoints                          */

int store__update(store *s, int (*fn)(store *s, MDB_txn *txn, void *arg, kabar_error *err),
                  void *arg, kabar_error *err)
{
    if (s->readonly)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "the log at %s is open read-only",
                               s->dir);
    for (;;) {
        MDB_txn *txn;
        kabar_error e = {0};
        int rc = store__txn_begin(s, 0, &txn);
        if (rc == 0) {
            rc = fn(s, txn, arg, &e);
            if (rc == 0)
                rc = mdb_txn_commit(txn);
            else
                mdb_txn_abort(txn);
        }
        if (rc == STORE_KERR) {
            if (err != NULL)
                *err = e;
            return e.code;
        }
        if (rc == MDB_MAP_FULL) {
            if ((rc = grow(s, err)) != 0)
                return rc;
            continue;
        }
        return rc != 0 ? store__fail(s, rc, "cannot write to", err) : 0;
    }
}
