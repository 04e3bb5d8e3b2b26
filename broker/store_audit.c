/*
 * store_audit.c - what the log keeps for auditors (contract: store.h): the
 * read side of the Merkle tree, signed batches, checkpoints, and raw access
 * to the databases for `kabar audit verify`. The tree is written by
 * store_write (store.c); its layout is in docs/STORAGE.md.
 *
 * The node store a reader offers (store_merkle) serves level 0 by hashing
 * the record in `events` (leaf hashes are not stored: they would double
 * the tree's size for nothing the records do not already say) and the
 * levels above from `tree`. A root or a proof reads O(log n) nodes, at most
 * a couple of them leaves.
 */
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "store_internal.h"

/* ------------------------------------------------------------------------ */
/* The Merkle tree                                                          */

void store_tree_key(uint8_t kb[STORE_TREE_KEY], unsigned level, uint64_t index)
{
    put_be64(kb, ((index + 1) << level) - 1);
    kb[8] = (uint8_t)level;
}

static int node_get(void *ctx, unsigned level, uint64_t index, uint8_t out[32], kabar_error *err)
{
    store_reader *r = ctx;
    int rc = store__reader_ready(r, err);
    if (rc != 0)
        return rc;
    uint8_t kb[TREE_KEY];
    MDB_val k, v;
    if (level == 0) {
        if (index >= r->head)
            return KABAR_NOT_FOUND;
        put_be64(kb, index + 1);
        k = (MDB_val){8, kb};
        rc = mdb_get(r->txn, r->s->dbi[DB_EVENTS], &k, &v);
    } else {
        if (level > 63)
            return KABAR_NOT_FOUND;
        store_tree_key(kb, level, index);
        k = (MDB_val){TREE_KEY, kb};
        rc = mdb_get(r->txn, r->s->dbi[DB_TREE], &k, &v);
        if (rc == 0 && v.mv_size != 32)
            rc = STORE_BADREC;
    }
    if (rc == MDB_NOTFOUND)
        return KABAR_NOT_FOUND; /* merkle.c names the node */
    if (rc != 0)
        return store__fail(r->s, rc, "cannot read", err);
    if (level == 0)
        merkle_leaf_hash(v.mv_data, v.mv_size, out);
    else
        memcpy(out, v.mv_data, 32);
    return 0;
}

merkle_store store_merkle(store_reader *r)
{
    return (merkle_store){.get = node_get, .put = NULL, .ctx = r};
}

int store_root(store_reader *r, uint64_t size, uint8_t root[32], kabar_error *err)
{
    if (r == NULL || root == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "store_root: no reader");
    int rc = store__reader_ready(r, err);
    if (rc != 0)
        return rc;
    if (size > r->head)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "no tree of %llu events: the log holds %llu",
                               (unsigned long long)size, (unsigned long long)r->head);
    merkle_store ms = store_merkle(r);
    return merkle_root(&ms, size, root, err);
}

int store_leaf_hash(store_reader *r, uint64_t seq, uint8_t out[32], kabar_error *err)
{
    if (out == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "store_leaf_hash: no output");
    store_record rec;
    int rc = store_get(r, seq, &rec, err);
    if (rc == 0)
        merkle_leaf_hash(rec.raw, rec.raw_len, out);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Signed batches                                                           */

int store_batch_get(store_reader *r, uint64_t id, store_batch *b, kabar_error *err)
{
    if (r == NULL || b == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "store_batch_get: no reader");
    int rc = store__reader_ready(r, err);
    if (rc != 0)
        return rc;
    uint8_t kb[8];
    put_be64(kb, id);
    MDB_val k = {8, kb}, v;
    rc = mdb_get(r->txn, r->s->dbi[DB_BATCHES], &k, &v);
    if (rc == MDB_NOTFOUND)
        return kabar_error_set(err, KABAR_NOT_FOUND, "no signed batch %llu in the log",
                               (unsigned long long)id);
    if (rc == 0 && v.mv_size < BATCH_HDR)
        rc = STORE_BADREC;
    if (rc != 0)
        return store__fail(r->s, rc, "cannot read", err);
    const uint8_t *p = v.mv_data;
    uint32_t n = get_be32(p + 96);
    if (n == 0 || n > STORE_BATCH_MAX || v.mv_size != BATCH_HDR + (size_t)n * 32)
        return kabar_error_set(err, KABAR_STORE,
                               "cannot read log at %s: signed batch %llu is malformed (%zu bytes "
                               "for %u leaves; the log is damaged, check it with kabar audit "
                               "verify)",
                               r->s->dir, (unsigned long long)id, v.mv_size, n);
    b->id = id;
    b->key = p;
    b->sig = p + 32;
    b->n = n;
    b->leaves = p + BATCH_HDR;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Checkpoints                                                              */

typedef struct cp_put {
    uint64_t size;
    const char *note;
    size_t len;
} cp_put;

static int checkpoint_txn(store *s, MDB_txn *txn, void *arg, kabar_error *err)
{
    (void)err;
    cp_put *c = arg;
    uint8_t kb[8];
    put_be64(kb, c->size);
    MDB_val k = {8, kb}, v = {c->len, (void *)c->note};
    return mdb_put(txn, s->dbi[DB_CHECKPOINTS], &k, &v, 0);
}

int store_checkpoint_put(store *s, uint64_t size, const char *note, size_t len, kabar_error *err)
{
    if (s == NULL || note == NULL || len == 0 || len > CHECKPOINT_NOTE_MAX)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "store_checkpoint_put: no note, or one longer than %d bytes",
                               CHECKPOINT_NOTE_MAX);
    if (size == 0 || size > s->head)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "cannot keep a checkpoint of %llu events: the log at %s holds "
                               "%llu (1 to the head)",
                               (unsigned long long)size, s->dir, (unsigned long long)s->head);
    cp_put c = {size, note, len};
    return store__update(s, checkpoint_txn, &c, err);
}

int store_checkpoint_get(store_reader *r, uint64_t size, kabar_buf *note, uint64_t *size_out,
                         kabar_error *err)
{
    if (r == NULL || note == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "store_checkpoint_get: no reader");
    int rc = store__reader_ready(r, err);
    if (rc != 0)
        return rc;
    uint8_t kb[8];
    put_be64(kb, size);
    MDB_val k = {8, kb}, v;
    if (size != 0) {
        rc = mdb_get(r->txn, r->s->dbi[DB_CHECKPOINTS], &k, &v);
    } else {
        MDB_cursor *cur;
        if ((rc = mdb_cursor_open(r->txn, r->s->dbi[DB_CHECKPOINTS], &cur)) == 0) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
            mdb_cursor_close(cur);
        }
    }
    if (rc == MDB_NOTFOUND)
        return size != 0 ? kabar_error_set(err, KABAR_NOT_FOUND, "no checkpoint of tree size %llu",
                                           (unsigned long long)size)
                         : kabar_error_set(err, KABAR_NOT_FOUND, "no checkpoint in the log yet");
    if (rc == 0 && k.mv_size != 8)
        rc = STORE_BADREC;
    if (rc != 0)
        return store__fail(r->s, rc, "cannot read", err);
    if (kabar_buf_append(note, v.mv_data, v.mv_size) != 0)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    if (size_out != NULL)
        *size_out = get_be64(k.mv_data);
    return 0;
}

int store_checkpoint_each(store_reader *r,
                          int (*fn)(void *arg, uint64_t size, const char *note, size_t len),
                          void *arg, kabar_error *err)
{
    if (r == NULL || fn == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "store_checkpoint_each: no reader");
    int rc = store__reader_ready(r, err);
    if (rc != 0)
        return rc;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(r->txn, r->s->dbi[DB_CHECKPOINTS], &cur)) != 0)
        return store__fail(r->s, rc, "cannot read", err);
    MDB_val k, v;
    int stop = 0;
    while (stop == 0 && (rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        if (k.mv_size != 8) {
            rc = STORE_BADREC;
            break;
        }
        stop = fn(arg, get_be64(k.mv_data), v.mv_data, v.mv_size);
    }
    mdb_cursor_close(cur);
    if (stop != 0)
        return stop;
    return rc != MDB_NOTFOUND ? store__fail(r->s, rc, "cannot read", err) : 0;
}

/* ------------------------------------------------------------------------ */
/* Raw access                                                               */

MDB_txn *store_reader_txn(store_reader *r, kabar_error *err)
{
    if (r == NULL) {
        kabar_error_set(err, KABAR_INVALID_ARGUMENT, "store_reader_txn: no reader");
        return NULL;
    }
    return store__reader_ready(r, err) == 0 ? r->txn : NULL;
}

int store_dbi(const store *s, const char *name, unsigned int *dbi)
{
    for (int i = 0; s != NULL && name != NULL && i < DB_COUNT; i++) {
        if (strcmp(store__db_names[i], name) == 0) {
            *dbi = s->dbi[i];
            return 0;
        }
    }
    return KABAR_NOT_FOUND;
}
