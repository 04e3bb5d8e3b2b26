/*
 * audit_log.c - a read-only view of a data directory (audit_log.h).
 */
#include "audit_log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "mpr.h"
#include "store.h"

static const char *const db_names[ADB_COUNT] = {
    "events", "by_source", "by_target",   "by_type", "dedup",    "consumers",
    "meta",   "tree",      "checkpoints", "batches", "agencies", "keys",
};

static uint64_t be64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static int lmdb_fail(const audit_log *l, int rc, const char *what, kabar_error *err)
{
    return kabar_error_set(err, KABAR_STORE, "%s %s/log.mdb: %s", what, l->dir, mdb_strerror(rc));
}

static void read_origin(audit_log *l)
{
    MDB_val k = {6, "origin"}, v;
    l->origin[0] = '\0';
    if (mdb_get(l->txn, l->dbi[ADB_META], &k, &v) != 0 || v.mv_size == 0)
        return;
    const uint8_t *p = v.mv_data;
    size_t n = v.mv_size;
    /* A msgpack str, or the raw bytes. */
    mpr r;
    mpr_item it;
    mpr_init(&r, p, n);
    if ((p[0] >= 0xa0 && p[0] <= 0xbf) || p[0] == 0xd9) {
        if (mpr_next(&r, &it, NULL) == 0 && it.kind == MPR_STR && mpr_left(&r) == 0) {
            p = (const uint8_t *)it.str;
            n = it.len;
        }
    }
    if (n >= sizeof l->origin)
        n = sizeof l->origin - 1;
    memcpy(l->origin, p, n);
    l->origin[n] = '\0';
}

int audit_log_open(audit_log *l, const char *dir, kabar_error *err)
{
    memset(l, 0, sizeof *l);
    snprintf(l->dir, sizeof l->dir, "%s", dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/log.mdb", dir);
    struct stat st;
    if (stat(path, &st) != 0)
        return kabar_error_set(err, errno == ENOENT ? KABAR_NOT_FOUND : KABAR_IO,
                               "no log at %s: %s (give the directory kabard was started with)",
                               path, strerror(errno));
    int rc = mdb_env_create(&l->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(l->env, 32);
    if (rc == 0)
        rc = mdb_env_set_maxreaders(l->env, 512);
    if (rc == 0)
        rc = mdb_env_open(l->env, path, MDB_NOSUBDIR | MDB_NOTLS | MDB_RDONLY, 0640);
    if (rc != 0) {
        int e = lmdb_fail(l, rc, "cannot open", err);
        if (rc == EACCES)
            kabar_error_set(err, KABAR_STORE,
                            "cannot open %s read-only: permission denied (run as kabard's user, "
                            "or audit a copy made with mdb_copy)",
                            path);
        audit_log_close(l);
        return e;
    }
    if ((rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, &l->txn)) != 0) {
        int e = lmdb_fail(l, rc, "cannot read", err);
        audit_log_close(l);
        return e;
    }
    for (int i = 0; i < ADB_COUNT; i++) {
        rc = mdb_dbi_open(l->txn, db_names[i], 0, &l->dbi[i]);
        if (rc == 0)
            l->has[i] = true;
        else if (rc != MDB_NOTFOUND) {
            int e = lmdb_fail(l, rc, db_names[i], err);
            audit_log_close(l);
            return e;
        }
    }
    if (!l->has[ADB_EVENTS] || !l->has[ADB_META]) {
        audit_log_close(l);
        return kabar_error_set(err, KABAR_STORE, "%s is not a kabar log (no events database)",
                               path);
    }
    MDB_val k = {6, "format"}, v = {0, NULL};
    rc = mdb_get(l->txn, l->dbi[ADB_META], &k, &v);
    if (rc != 0) {
        int e = rc == MDB_NOTFOUND
                    ? kabar_error_set(err, KABAR_STORE, "%s is not a kabar log: meta has no format",
                                      path)
                    : lmdb_fail(l, rc, "meta", err);
        audit_log_close(l);
        return e;
    }
    if (v.mv_size != 1 || ((const uint8_t *)v.mv_data)[0] != 2) {
        int f = (v.mv_size == 1) ? ((const uint8_t *)v.mv_data)[0] : -1;
        audit_log_close(l);
        return kabar_error_set(err, KABAR_STORE,
                               "%s is a log of format %d: kabar audit reads format 2 (a log "
                               "that predates signatures must be re-imported)",
                               path, f);
    }
    read_origin(l);
    MDB_stat ms;
    if (mdb_stat(l->txn, l->dbi[ADB_EVENTS], &ms) == 0)
        l->count = ms.ms_entries;
    MDB_cursor *c;
    if (mdb_cursor_open(l->txn, l->dbi[ADB_EVENTS], &c) == 0) {
        MDB_val ck, cv;
        if (mdb_cursor_get(c, &ck, &cv, MDB_LAST) == 0 && ck.mv_size == 8)
            l->head = be64(ck.mv_data);
        mdb_cursor_close(c);
    }
    return 0;
}

void audit_log_close(audit_log *l)
{
    if (l->txn)
        mdb_txn_abort(l->txn);
    if (l->env)
        mdb_env_close(l->env);
    l->txn = NULL;
    l->env = NULL;
}

int audit_rec_parse(const void *raw, size_t len, uint64_t seq, audit_rec *r, kabar_error *err)
{
    const uint8_t *p = raw;
    if (len < AUDIT_REC_HDR + 1)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "record of %zu bytes is shorter than its header", len);
    if (p[0] != 2)
        return kabar_error_set(err, KABAR_BAD_VALUE, "record format byte is %u, not 2", p[0]);
    r->seq = seq;
    r->received_at = (int64_t)be64(p + 1);
    r->batch = be64(p + 9);
    r->batch_index = be32(p + 17);
    r->raw = p;
    r->raw_len = len;
    r->event = p + AUDIT_REC_HDR;
    r->event_len = len - AUDIT_REC_HDR;
    return 0;
}

int audit_log_record(audit_log *l, uint64_t seq, audit_rec *r, kabar_error *err)
{
    uint8_t kb[8];
    put_be64(kb, seq);
    MDB_val k = {8, kb}, v;
    int rc = mdb_get(l->txn, l->dbi[ADB_EVENTS], &k, &v);
    if (rc == MDB_NOTFOUND)
        return kabar_error_set(err, KABAR_NOT_FOUND, "seq %llu is not in the log",
                               (unsigned long long)seq);
    if (rc != 0)
        return lmdb_fail(l, rc, "cannot read", err);
    return audit_rec_parse(v.mv_data, v.mv_size, seq, r, err);
}

static int node_get(void *ctx, unsigned level, uint64_t index, uint8_t out[MERKLE_HASH_SIZE],
                    kabar_error *err)
{
    audit_log *l = ctx;
    if (level == 0) {
        audit_rec r;
        int rc = audit_log_record(l, index + 1, &r, err);
        if (rc != 0)
            return rc;
        merkle_leaf_hash(r.raw, r.raw_len, out);
        return 0;
    }
    if (!l->has[ADB_TREE])
        return kabar_error_set(err, KABAR_NOT_FOUND, "the log has no tree database");
    uint8_t kb[STORE_TREE_KEY];
    store_tree_key(kb, level, index);
    MDB_val k = {STORE_TREE_KEY, kb}, v;
    int rc = mdb_get(l->txn, l->dbi[ADB_TREE], &k, &v);
    if (rc == MDB_NOTFOUND)
        return kabar_error_set(err, KABAR_NOT_FOUND, "tree node (%u, %llu) is missing", level,
                               (unsigned long long)index);
    if (rc != 0)
        return lmdb_fail(l, rc, "cannot read", err);
    if (v.mv_size != MERKLE_HASH_SIZE)
        return kabar_error_set(err, KABAR_BAD_VALUE, "tree node (%u, %llu) has %zu bytes", level,
                               (unsigned long long)index, v.mv_size);
    memcpy(out, v.mv_data, MERKLE_HASH_SIZE);
    return 0;
}

merkle_store audit_log_merkle(audit_log *l)
{
    return (merkle_store){node_get, NULL, l};
}

int audit_log_checkpoint(audit_log *l, uint64_t size, const char **note, size_t *len,
                         uint64_t *size_out, kabar_error *err)
{
    if (!l->has[ADB_CHECKPOINTS])
        return kabar_error_set(err, KABAR_NOT_FOUND, "the log has no checkpoints yet");
    MDB_cursor *c;
    int rc = mdb_cursor_open(l->txn, l->dbi[ADB_CHECKPOINTS], &c);
    if (rc != 0)
        return lmdb_fail(l, rc, "cannot read", err);
    uint8_t kb[8];
    put_be64(kb, size);
    MDB_val k = {8, kb}, v;
    rc = mdb_cursor_get(c, &k, &v, size == 0 ? MDB_LAST : MDB_SET_KEY);
    mdb_cursor_close(c);
    if (rc == MDB_NOTFOUND) {
        if (size == 0)
            return kabar_error_set(err, KABAR_NOT_FOUND, "the log has no checkpoints yet");
        return kabar_error_set(err, KABAR_NOT_FOUND, "no checkpoint of size %llu is stored",
                               (unsigned long long)size);
    }
    if (rc != 0)
        return lmdb_fail(l, rc, "cannot read", err);
    if (k.mv_size != 8)
        return kabar_error_set(err, KABAR_BAD_VALUE, "a checkpoint key is not 8 bytes");
    *note = v.mv_data;
    *len = v.mv_size;
    *size_out = be64(k.mv_data);
    return 0;
}

int audit_batch_parse(const void *v, size_t len, uint64_t id, audit_batch *b, kabar_error *err)
{
    const uint8_t *p = v;
    if (len < 100)
        return kabar_error_set(err, KABAR_BAD_VALUE, "batch %llu: %zu bytes, too short",
                               (unsigned long long)id, len);
    uint32_t n = be32(p + 96);
    if (n == 0 || (size_t)n * 32 != len - 100)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "batch %llu: %zu bytes do not hold the %u leaves it announces",
                               (unsigned long long)id, len, n);
    b->id = id;
    b->key = p;
    b->sig = p + 32;
    b->n = n;
    b->leaves = (const uint8_t(*)[32])(p + 100);
    return 0;
}

int audit_log_batch(audit_log *l, uint64_t id, audit_batch *b, kabar_error *err)
{
    if (!l->has[ADB_BATCHES])
        return kabar_error_set(err, KABAR_NOT_FOUND, "the log has no batches database");
    uint8_t kb[8];
    put_be64(kb, id);
    MDB_val k = {8, kb}, v;
    int rc = mdb_get(l->txn, l->dbi[ADB_BATCHES], &k, &v);
    if (rc == MDB_NOTFOUND)
        return kabar_error_set(err, KABAR_NOT_FOUND, "batch %llu is not stored",
                               (unsigned long long)id);
    if (rc != 0)
        return lmdb_fail(l, rc, "cannot read", err);
    return audit_batch_parse(v.mv_data, v.mv_size, id, b, err);
}

int audit_key_parse(const void *v, size_t len, const uint8_t pk[32], audit_key *k, kabar_error *err)
{
    mpr r;
    mpr_item it, val;
    int rc;
    memset(k, 0, sizeof *k);
    memcpy(k->pk, pk, 32);
    k->valid_from = INT64_MIN;
    k->revoked_at = INT64_MAX;
    mpr_init(&r, v, len);
    r.canonical = false;
    if ((rc = mpr_expect(&r, MPR_MAP, &it, "key record", err)) != 0)
        return rc;
    for (uint32_t i = 0; i < it.count; i++) {
        mpr_item key;
        if ((rc = mpr_expect(&r, MPR_STR, &key, "key record field", err)) != 0 ||
            (rc = mpr_next(&r, &val, err)) != 0)
            return rc;
        if (val.kind == MPR_ARRAY || val.kind == MPR_MAP)
            return kabar_error_set(err, KABAR_BAD_VALUE, "key record: nested value");
        if (key.len == 6 && memcmp(key.str, "agency", 6) == 0 && val.kind == MPR_STR &&
            val.len < sizeof k->agency) {
            memcpy(k->agency, val.str, val.len);
            k->agency[val.len] = '\0';
        } else if (key.len == 10 && memcmp(key.str, "valid_from", 10) == 0) {
            k->valid_from = val.kind == MPR_TIMESTAMP ? val.i : (int64_t)val.u;
        } else if (key.len == 10 && memcmp(key.str, "revoked_at", 10) == 0 && val.kind != MPR_NIL) {
            k->revoked_at = val.kind == MPR_TIMESTAMP ? val.i : (int64_t)val.u;
        }
    }
    if (k->agency[0] == '\0')
        return kabar_error_set(err, KABAR_BAD_VALUE, "key record without agency");
    return 0;
}

int audit_log_key(audit_log *l, const uint8_t pk[32], audit_key *k, kabar_error *err)
{
    if (!l->has[ADB_KEYS])
        return kabar_error_set(err, KABAR_NOT_FOUND, "the log has no key registry");
    MDB_val key = {32, (void *)pk}, v;
    int rc = mdb_get(l->txn, l->dbi[ADB_KEYS], &key, &v);
    if (rc == MDB_NOTFOUND)
        return kabar_error_set(err, KABAR_NOT_FOUND, "key not in the registry");
    if (rc != 0)
        return lmdb_fail(l, rc, "cannot read", err);
    return audit_key_parse(v.mv_data, v.mv_size, pk, k, err);
}

int audit_read_file(const char *path, kabar_buf *b, kabar_error *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return kabar_error_set(err, errno == ENOENT ? KABAR_NOT_FOUND : KABAR_IO,
                               "cannot read %s: %s", path, strerror(errno));
    char chunk[65536];
    size_t n;
    int rc = 0;
    b->len = 0;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (kabar_buf_append(b, chunk, n) != 0) {
            rc = kabar_error_set(err, KABAR_NO_MEMORY, "out of memory reading %s", path);
            break;
        }
    if (rc == 0 && ferror(f))
        rc = kabar_error_set(err, KABAR_IO, "cannot read %s: %s", path, strerror(errno));
    fclose(f);
    if (rc == 0 && kabar_buf_append(b, "", 1) != 0)
        rc = kabar_error_set(err, KABAR_NO_MEMORY, "out of memory reading %s", path);
    if (rc == 0)
        b->len--;
    return rc;
}
