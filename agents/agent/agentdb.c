/*
 * agentdb.c - the agent's LMDB (layout and contracts in agentdb.h).
 *
 * Every public function is one transaction. Write helpers return LMDB codes
 * internally and are translated once, at the boundary, by lmdb_fail().
 */
#include "agentdb.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

struct agentdb {
    MDB_env *env;
    MDB_dbi outbox, rejected, dead, retry, meta;
    bool readonly;
    char path[4096];
};

/* ---- small codecs ---- */

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

static int lmdb_fail(kabar_error *err, int rc, const agentdb *db, const char *what)
{
    if (rc == MDB_MAP_FULL)
        return kabar_error_set(err, KABAR_DISK_FULL,
                               "agent store %s is full (%zu bytes) while %s: forward or remove "
                               "events before accepting more",
                               db->path, AGENTDB_MAP_BYTES, what);
    if (rc == ENOSPC)
        return kabar_error_set(err, KABAR_DISK_FULL, "agent store %s: disk full while %s", db->path,
                               what);
    return kabar_error_set(err, KABAR_STORE, "agent store %s: %s while %s", db->path,
                           mdb_strerror(rc), what);
}

static int meta_get_u64(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t *v)
{
    MDB_val k = {strlen(name), (void *)name}, d;
    int rc = mdb_get(txn, dbi, &k, &d);
    if (rc == MDB_NOTFOUND) {
        *v = 0;
        return 0;
    }
    if (rc == 0)
        *v = d.mv_size == 8 ? get_u64(d.mv_data) : 0;
    return rc;
}

static int meta_put_u64(MDB_txn *txn, MDB_dbi dbi, const char *name, uint64_t v)
{
    uint8_t b[8];
    put_u64(b, v);
    MDB_val k = {strlen(name), (void *)name}, d = {8, b};
    return mdb_put(txn, dbi, &k, &d, 0);
}

static int meta_get_i64(MDB_txn *txn, MDB_dbi dbi, const char *name, int64_t *v)
{
    MDB_val k = {strlen(name), (void *)name}, d;
    int rc = mdb_get(txn, dbi, &k, &d);
    *v = INT64_MIN;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc == 0 && d.mv_size == 8)
        *v = (int64_t)get_u64(d.mv_data);
    return rc;
}

static int meta_put_i64(MDB_txn *txn, MDB_dbi dbi, const char *name, int64_t v)
{
    return meta_put_u64(txn, dbi, name, (uint64_t)v);
}

static int meta_get_str(MDB_txn *txn, MDB_dbi dbi, const char *name, char *out, size_t cap)
{
    MDB_val k = {strlen(name), (void *)name}, d;
    out[0] = '\0';
    int rc = mdb_get(txn, dbi, &k, &d);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc == 0) {
        size_t n = d.mv_size < cap - 1 ? d.mv_size : cap - 1;
        memcpy(out, d.mv_data, n);
        out[n] = '\0';
    }
    return rc;
}

static int meta_put_str(MDB_txn *txn, MDB_dbi dbi, const char *name, const char *s)
{
    MDB_val k = {strlen(name), (void *)name}, d = {strlen(s), (void *)s};
    return mdb_put(txn, dbi, &k, &d, 0);
}

/* Letter layout (agentdb.h). */
#define LETTER_FIXED (8 + 8 + 4 + 1 + 2)

static size_t letter_size(const agentdb_letter *l)
{
    return LETTER_FIXED + strlen(l->code) + strlen(l->reason) + l->len;
}

static void letter_encode(uint8_t *p, const agentdb_letter *l)
{
    size_t cl = strlen(l->code), ml = strlen(l->reason);
    put_u64(p, (uint64_t)l->at);
    put_u64(p + 8, (uint64_t)l->received_at);
    p[16] = (uint8_t)(l->tries >> 24);
    p[17] = (uint8_t)(l->tries >> 16);
    p[18] = (uint8_t)(l->tries >> 8);
    p[19] = (uint8_t)l->tries;
    p[20] = (uint8_t)cl;
    memcpy(p + 21, l->code, cl);
    p += 21 + cl;
    p[0] = (uint8_t)(ml >> 8);
    p[1] = (uint8_t)ml;
    memcpy(p + 2, l->reason, ml);
    memcpy(p + 2 + ml, l->bytes, l->len);
}

static bool letter_decode(const MDB_val *k, const MDB_val *d, agentdb_letter *l)
{
    const uint8_t *p = d->mv_data, *end = p + d->mv_size;
    if (k->mv_size != 8 || d->mv_size < LETTER_FIXED)
        return false;
    l->key = get_u64(k->mv_data);
    l->at = (int64_t)get_u64(p);
    l->received_at = (int64_t)get_u64(p + 8);
    l->tries = (uint32_t)p[16] << 24 | (uint32_t)p[17] << 16 | (uint32_t)p[18] << 8 | p[19];
    size_t cl = p[20];
    if (cl > sizeof l->code - 1 || (size_t)(end - p) < 21 + cl + 2)
        return false;
    memcpy(l->code, p + 21, cl);
    l->code[cl] = '\0';
    p += 21 + cl;
    size_t ml = (size_t)p[0] << 8 | p[1];
    if ((size_t)(end - p) < 2 + ml)
        return false;
    size_t keep = ml < sizeof l->reason - 1 ? ml : sizeof l->reason - 1;
    memcpy(l->reason, p + 2, keep);
    l->reason[keep] = '\0';
    l->bytes = p + 2 + ml;
    l->len = (size_t)(end - l->bytes);
    return true;
}

/* Cap the fields so that the lengths fit their 1- and 2-byte prefixes. */
static void letter_clamp(agentdb_letter *l)
{
    l->code[sizeof l->code - 1] = '\0';
    l->reason[sizeof l->reason - 1] = '\0';
}

static int put_letter(MDB_txn *txn, MDB_dbi dbi, const agentdb_letter *l)
{
    uint8_t key[8];
    put_u64(key, l->key);
    MDB_val k = {8, key}, d = {letter_size(l), NULL};
    int rc = mdb_put(txn, dbi, &k, &d, MDB_RESERVE);
    if (rc == 0)
        letter_encode(d.mv_data, l);
    return rc;
}

/* ---- open / close ---- */

int agentdb_open(agentdb **out, const char *dir, bool readonly, kabar_error *err)
{
    agentdb *db = calloc(1, sizeof *db);
    if (db == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory opening the agent store");
    db->readonly = readonly;
    snprintf(db->path, sizeof db->path, "%s/%s", dir, AGENTDB_FILE);
    struct stat st;
    if (readonly && stat(db->path, &st) != 0) {
        int code = kabar_error_set(err, KABAR_NOT_FOUND,
                                   "no agent store at %s (is --data the agent's data directory?)",
                                   db->path);
        free(db);
        return code;
    }
    MDB_txn *txn = NULL;
    int rc = mdb_env_create(&db->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(db->env, 8);
    if (rc == 0)
        rc = mdb_env_set_mapsize(db->env, AGENTDB_MAP_BYTES);
    if (rc == 0)
        rc = mdb_env_open(db->env, db->path, MDB_NOSUBDIR | MDB_NOTLS | (readonly ? MDB_RDONLY : 0),
                          0644);
    if (rc == 0)
        rc = mdb_txn_begin(db->env, NULL, readonly ? MDB_RDONLY : 0, &txn);
    unsigned flags = readonly ? 0 : MDB_CREATE;
    const char *names[] = {"outbox", "rejected", "dead", "retry", "meta"};
    MDB_dbi *dbis[] = {&db->outbox, &db->rejected, &db->dead, &db->retry, &db->meta};
    for (int i = 0; rc == 0 && i < 5; i++) {
        rc = mdb_dbi_open(txn, names[i], flags, dbis[i]);
        if (rc == MDB_NOTFOUND && readonly) {
            /* A store written by an agent that never ran a write: treat as empty. */
            rc = 0;
            *dbis[i] = (MDB_dbi)-1;
        }
    }
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    else if (txn != NULL)
        mdb_txn_abort(txn);
    if (rc != 0) {
        int code = lmdb_fail(err, rc, db, "opening it");
        mdb_env_close(db->env);
        free(db);
        return code;
    }
    *out = db;
    return 0;
}

void agentdb_close(agentdb **pdb)
{
    if (pdb == NULL || *pdb == NULL)
        return;
    mdb_env_close((*pdb)->env);
    free(*pdb);
    *pdb = NULL;
}

static bool have(MDB_dbi dbi)
{
    return dbi != (MDB_dbi)-1;
}

/* ---- writes ---- */

static int write_begin(agentdb *db, MDB_txn **txn, kabar_error *err, const char *what)
{
    if (db->readonly)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "agent store %s opened read-only",
                               db->path);
    int rc = mdb_txn_begin(db->env, NULL, 0, txn);
    return rc == 0 ? 0 : lmdb_fail(err, rc, db, what);
}

/* Commit (or abort on rc != 0) and translate. */
static int write_end(agentdb *db, MDB_txn *txn, int rc, kabar_error *err, const char *what)
{
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    else
        mdb_txn_abort(txn);
    return rc == 0 ? 0 : lmdb_fail(err, rc, db, what);
}

int agentdb_set_identity(agentdb *db, const char *agency, const char *broker, kabar_error *err)
{
    MDB_txn *txn;
    int rc = write_begin(db, &txn, err, "recording the agency");
    if (rc != 0)
        return rc;
    char old[KABAR_MAX_AGENCY_LEN + 1];
    rc = meta_get_str(txn, db->meta, "agency", old, sizeof old);
    if (rc == 0 && old[0] != '\0' && strcmp(old, agency) != 0) {
        mdb_txn_abort(txn);
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "data directory %s belongs to agency \"%s\", not \"%s\" (use "
                               "another --data for this agency)",
                               db->path, old, agency);
    }
    if (rc == 0)
        rc = meta_put_str(txn, db->meta, "agency", agency);
    if (rc == 0)
        rc = meta_put_str(txn, db->meta, "broker", broker);
    return write_end(db, txn, rc, err, "recording the agency");
}

int agentdb_outbox_append(agentdb *db, const uint8_t *const *bytes, const size_t *lens, size_t n,
                          int64_t now, uint64_t *first_pos, kabar_error *err)
{
    MDB_txn *txn;
    int rc = write_begin(db, &txn, err, "storing events in the outbox");
    if (rc != 0)
        return rc;
    uint64_t next;
    rc = meta_get_u64(txn, db->meta, "next_pos", &next);
    if (next == 0)
        next = 1;
    uint64_t first = next;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        uint8_t key[8];
        put_u64(key, next++);
        MDB_val k = {8, key}, d = {8 + lens[i], NULL};
        rc = mdb_put(txn, db->outbox, &k, &d, MDB_RESERVE | MDB_APPEND);
        if (rc == 0) {
            put_u64(d.mv_data, (uint64_t)now);
            memcpy((uint8_t *)d.mv_data + 8, bytes[i], lens[i]);
        }
    }
    if (rc == 0)
        rc = meta_put_u64(txn, db->meta, "next_pos", next);
    rc = write_end(db, txn, rc, err, "storing events in the outbox");
    if (rc == 0)
        *first_pos = first;
    return rc;
}

int agentdb_outbox_scan(agentdb *db, uint64_t from, size_t max,
                        int (*fn)(void *arg, const agentdb_item *it), void *arg, size_t *count,
                        kabar_error *err)
{
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    size_t seen = 0;
    int rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return lmdb_fail(err, rc, db, "reading the outbox");
    if (!have(db->outbox))
        goto done;
    rc = mdb_cursor_open(txn, db->outbox, &cur);
    uint8_t key[8];
    put_u64(key, from);
    MDB_val k = {8, key}, d;
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &d, MDB_SET_RANGE);
    while (rc == 0 && seen < max) {
        if (k.mv_size != 8 || d.mv_size < 8) {
            rc =
                kabar_error_set(err, KABAR_STORE, "agent store %s: damaged outbox entry", db->path);
            goto done;
        }
        agentdb_item it = {get_u64(k.mv_data), (int64_t)get_u64(d.mv_data),
                           (const uint8_t *)d.mv_data + 8, d.mv_size - 8};
        seen++;
        int stop = fn(arg, &it);
        if (stop != 0) {
            rc = stop;
            goto done;
        }
        rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT);
    }
    if (rc == MDB_NOTFOUND)
        rc = 0;
    if (rc != 0)
        rc = lmdb_fail(err, rc, db, "reading the outbox");
done:
    if (cur != NULL)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (count != NULL)
        *count = seen;
    return rc;
}

static int reject_one(agentdb *db, MDB_txn *txn, const agentdb_result *r, const MDB_val *d,
                      int64_t now)
{
    agentdb_letter l = {.key = r->pos, .at = now, .received_at = INT64_MIN, .tries = 1};
    snprintf(l.code, sizeof l.code, "%s", kabar_errname(r->code));
    snprintf(l.reason, sizeof l.reason, "%s", r->message);
    letter_clamp(&l);
    /* The value is only valid until the next update: copy it first. */
    uint8_t *copy = malloc(d->mv_size - 8 + 1);
    if (copy == NULL)
        return ENOMEM;
    memcpy(copy, (const uint8_t *)d->mv_data + 8, d->mv_size - 8);
    l.bytes = copy;
    l.len = d->mv_size - 8;
    int rc = put_letter(txn, db->rejected, &l);
    free(copy);
    return rc;
}

int agentdb_outbox_done(agentdb *db, const agentdb_result *r, size_t n, int64_t now,
                        kabar_error *err)
{
    MDB_txn *txn;
    int rc = write_begin(db, &txn, err, "recording the broker's acks");
    if (rc != 0)
        return rc;
    uint64_t last = 0, forwarded = 0;
    bool acked = false;
    rc = meta_get_u64(txn, db->meta, "last_acked_seq", &last);
    if (rc == 0)
        rc = meta_get_u64(txn, db->meta, "forwarded", &forwarded);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        uint8_t key[8];
        put_u64(key, r[i].pos);
        MDB_val k = {8, key}, d;
        rc = mdb_get(txn, db->outbox, &k, &d);
        if (rc == MDB_NOTFOUND) {
            rc = 0; /* applied before */
            continue;
        }
        if (rc == 0 && r[i].code != KABAR_OK && d.mv_size >= 8)
            rc = reject_one(db, txn, &r[i], &d, now);
        if (rc == 0)
            rc = mdb_del(txn, db->outbox, &k, NULL);
        if (rc == 0 && r[i].code == KABAR_OK) {
            forwarded++;
            acked = true;
            if (r[i].seq > last)
                last = r[i].seq;
        }
    }
    if (rc == 0 && acked) {
        rc = meta_put_u64(txn, db->meta, "last_acked_seq", last);
        if (rc == 0)
            rc = meta_put_u64(txn, db->meta, "forwarded", forwarded);
        if (rc == 0)
            rc = meta_put_i64(txn, db->meta, "last_acked_at", now);
    }
    return write_end(db, txn, rc, err, "recording the broker's acks");
}

int agentdb_set_connected(agentdb *db, bool connected, int64_t since, kabar_error *err)
{
    MDB_txn *txn;
    int rc = write_begin(db, &txn, err, "recording the connection state");
    if (rc != 0)
        return rc;
    uint8_t b = connected ? 1 : 0;
    MDB_val k = {9, "connected"}, d = {1, &b};
    rc = mdb_put(txn, db->meta, &k, &d, 0);
    if (rc == 0)
        rc = meta_put_i64(txn, db->meta, "connected_since", since);
    return write_end(db, txn, rc, err, "recording the connection state");
}

int agentdb_set_broker_head(agentdb *db, uint64_t head, int64_t at, kabar_error *err)
{
    MDB_txn *txn;
    int rc = write_begin(db, &txn, err, "recording the broker's head");
    if (rc != 0)
        return rc;
    rc = meta_put_u64(txn, db->meta, "broker_head", head);
    if (rc == 0)
        rc = meta_put_i64(txn, db->meta, "broker_head_at", at);
    return write_end(db, txn, rc, err, "recording the broker's head");
}

int agentdb_set_problem(agentdb *db, const char *code, const char *message, int64_t since,
                        kabar_error *err)
{
    MDB_txn *txn;
    int rc = write_begin(db, &txn, err, "recording the forwarding problem");
    if (rc != 0)
        return rc;
    rc = meta_put_str(txn, db->meta, "problem_code", code);
    if (rc == 0)
        rc = meta_put_str(txn, db->meta, "problem", code[0] ? message : "");
    if (rc == 0)
        rc = meta_put_i64(txn, db->meta, "problem_since", code[0] ? since : INT64_MIN);
    return write_end(db, txn, rc, err, "recording the forwarding problem");
}

int agentdb_inbox_pos(agentdb *db, uint64_t *pos, kabar_error *err)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn);
    if (rc == 0) {
        rc = have(db->meta) ? meta_get_u64(txn, db->meta, "inbox_pos", pos) : 0;
        mdb_txn_abort(txn);
    }
    return rc == 0 ? 0 : lmdb_fail(err, rc, db, "reading the inbox position");
}

/* inbox_pos only moves forward; delivered counts up. */
static int inbox_advance(agentdb *db, MDB_txn *txn, uint64_t pos, uint64_t delivered, int64_t now)
{
    uint64_t old, count;
    int rc = meta_get_u64(txn, db->meta, "inbox_pos", &old);
    if (rc == 0 && pos > old)
        rc = meta_put_u64(txn, db->meta, "inbox_pos", pos);
    if (rc == 0)
        rc = meta_get_u64(txn, db->meta, "delivered", &count);
    if (rc == 0)
        rc = meta_put_u64(txn, db->meta, "delivered", count + delivered);
    if (rc == 0)
        rc = meta_put_i64(txn, db->meta, "inbox_at", now);
    return rc;
}

int agentdb_inbox_commit(agentdb *db, uint64_t pos, uint64_t delivered, int64_t now,
                         kabar_error *err)
{
    MDB_txn *txn;
    int rc = write_begin(db, &txn, err, "recording the inbox position");
    if (rc != 0)
        return rc;
    rc = inbox_advance(db, txn, pos, delivered, now);
    return write_end(db, txn, rc, err, "recording the inbox position");
}

int agentdb_dead_put(agentdb *db, const agentdb_letter *l, uint64_t inbox_pos, bool from_retry,
                     kabar_error *err)
{
    MDB_txn *txn;
    int rc = write_begin(db, &txn, err, "parking a dead letter");
    if (rc != 0)
        return rc;
    agentdb_letter c = *l;
    letter_clamp(&c);
    rc = put_letter(txn, db->dead, &c);
    if (rc == 0 && inbox_pos != 0)
        rc = inbox_advance(db, txn, inbox_pos, 0, c.at);
    if (rc == 0 && from_retry) {
        uint8_t key[8];
        put_u64(key, l->key);
        MDB_val k = {8, key};
        rc = mdb_del(txn, db->retry, &k, NULL);
        if (rc == MDB_NOTFOUND)
            rc = 0;
    }
    return write_end(db, txn, rc, err, "parking a dead letter");
}

static MDB_dbi list_dbi(agentdb *db, agentdb_list list)
{
    return list == AGENTDB_REJECTED ? db->rejected : list == AGENTDB_DEAD ? db->dead : db->retry;
}

int agentdb_list_each(agentdb *db, agentdb_list list, int (*fn)(void *arg, const agentdb_letter *l),
                      void *arg, kabar_error *err)
{
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    MDB_dbi dbi = list_dbi(db, list);
    int rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return lmdb_fail(err, rc, db, "reading a list");
    if (!have(dbi))
        goto done;
    rc = mdb_cursor_open(txn, dbi, &cur);
    MDB_val k, d;
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST);
    while (rc == 0) {
        agentdb_letter l;
        if (!letter_decode(&k, &d, &l)) {
            rc = kabar_error_set(err, KABAR_STORE, "agent store %s: damaged list entry", db->path);
            goto done;
        }
        int stop = fn(arg, &l);
        if (stop != 0) {
            rc = stop;
            goto done;
        }
        rc = mdb_cursor_get(cur, &k, &d, MDB_NEXT);
    }
    rc = rc == MDB_NOTFOUND ? 0 : lmdb_fail(err, rc, db, "reading a list");
done:
    if (cur != NULL)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

int agentdb_dead_requeue(agentdb *db, uint64_t seq, size_t *moved, kabar_error *err)
{
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    size_t n = 0;
    int rc = write_begin(db, &txn, err, "re-queueing dead letters");
    if (rc != 0)
        return rc;
    uint8_t key[8];
    put_u64(key, seq);
    MDB_val k = {8, key}, d;
    rc = mdb_cursor_open(txn, db->dead, &cur);
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &d, seq == 0 ? MDB_FIRST : MDB_SET_KEY);
    if (rc == MDB_NOTFOUND && seq != 0) {
        if (cur != NULL)
            mdb_cursor_close(cur);
        mdb_txn_abort(txn);
        return kabar_error_set(err, KABAR_NOT_FOUND,
                               "seq %llu is not a dead letter (list them with --dead)",
                               (unsigned long long)seq);
    }
    kabar_buf copy = {0};
    while (rc == 0) {
        /* Values from the map are only valid until the next update: copy. */
        uint8_t kb[8];
        memcpy(kb, k.mv_data, 8);
        copy.len = 0;
        if (kabar_buf_append(&copy, d.mv_data, d.mv_size) != 0) {
            rc = ENOMEM;
            break;
        }
        rc = mdb_cursor_del(cur, 0);
        MDB_val nk = {8, kb}, nd = {copy.len, copy.data};
        if (rc == 0)
            rc = mdb_put(txn, db->retry, &nk, &nd, 0);
        if (rc == 0)
            n++;
        if (rc == 0 && seq != 0)
            break;
        if (rc == 0)
            rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST);
    }
    if (rc == MDB_NOTFOUND)
        rc = 0;
    kabar_buf_free(&copy);
    if (cur != NULL)
        mdb_cursor_close(cur);
    rc = write_end(db, txn, rc, err, "re-queueing dead letters");
    if (rc == 0 && moved != NULL)
        *moved = n;
    return rc;
}

int agentdb_retry_first(agentdb *db, agentdb_letter *l, kabar_buf *buf, bool *found,
                        kabar_error *err)
{
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    *found = false;
    int rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return lmdb_fail(err, rc, db, "reading the retry list");
    MDB_val k, d;
    rc = mdb_cursor_open(txn, db->retry, &cur);
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST);
    if (rc == 0) {
        if (!letter_decode(&k, &d, l)) {
            rc = kabar_error_set(err, KABAR_STORE, "agent store %s: damaged retry entry", db->path);
        } else {
            buf->len = 0;
            rc = kabar_buf_append(buf, l->bytes, l->len);
            if (rc != 0)
                rc = kabar_error_set(err, rc, "out of memory reading the retry list");
            l->bytes = (const uint8_t *)buf->data;
            *found = rc == 0;
        }
    } else {
        rc = rc == MDB_NOTFOUND ? 0 : lmdb_fail(err, rc, db, "reading the retry list");
    }
    if (cur != NULL)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

int agentdb_retry_done(agentdb *db, uint64_t seq, kabar_error *err)
{
    MDB_txn *txn;
    int rc = write_begin(db, &txn, err, "removing a re-delivered letter");
    if (rc != 0)
        return rc;
    uint8_t key[8];
    put_u64(key, seq);
    MDB_val k = {8, key};
    rc = mdb_del(txn, db->retry, &k, NULL);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    uint64_t count;
    if (rc == 0)
        rc = meta_get_u64(txn, db->meta, "delivered", &count);
    if (rc == 0)
        rc = meta_put_u64(txn, db->meta, "delivered", count + 1);
    return write_end(db, txn, rc, err, "removing a re-delivered letter");
}

/* ---- status ---- */

static uint64_t entries(MDB_txn *txn, MDB_dbi dbi)
{
    MDB_stat st;
    if (!have(dbi) || mdb_stat(txn, dbi, &st) != 0)
        return 0;
    return st.ms_entries;
}

static int read_status(agentdb *db, MDB_txn *txn, agentdb_status *st)
{
    MDB_dbi m = db->meta;
    int rc = meta_get_str(txn, m, "agency", st->agency, sizeof st->agency);
    if (rc == 0)
        rc = meta_get_str(txn, m, "broker", st->broker, sizeof st->broker);
    if (rc == 0)
        rc = meta_get_str(txn, m, "problem_code", st->problem_code, sizeof st->problem_code);
    if (rc == 0)
        rc = meta_get_str(txn, m, "problem", st->problem, sizeof st->problem);
    MDB_val k = {9, "connected"}, d;
    if (rc == 0) {
        rc = mdb_get(txn, m, &k, &d);
        st->connected = rc == 0 && d.mv_size == 1 && *(uint8_t *)d.mv_data == 1;
        if (rc == MDB_NOTFOUND)
            rc = 0;
    }
    struct {
        const char *name;
        uint64_t *u;
        int64_t *i;
    } f[] = {
        {"connected_since", NULL, &st->connected_since},
        {"next_pos", &st->next_pos, NULL},
        {"last_acked_seq", &st->last_acked_seq, NULL},
        {"last_acked_at", NULL, &st->last_acked_at},
        {"forwarded", &st->forwarded, NULL},
        {"inbox_pos", &st->inbox_pos, NULL},
        {"inbox_at", NULL, &st->inbox_at},
        {"delivered", &st->delivered, NULL},
        {"broker_head", &st->broker_head, NULL},
        {"broker_head_at", NULL, &st->broker_head_at},
        {"problem_since", NULL, &st->problem_since},
    };
    for (size_t i = 0; rc == 0 && i < sizeof f / sizeof f[0]; i++)
        rc = f[i].u ? meta_get_u64(txn, m, f[i].name, f[i].u)
                    : meta_get_i64(txn, m, f[i].name, f[i].i);
    return rc;
}

int agentdb_status_get(agentdb *db, agentdb_status *st, kabar_error *err)
{
    MDB_txn *txn;
    memset(st, 0, sizeof *st);
    st->connected_since = st->oldest_at = st->last_acked_at = INT64_MIN;
    st->inbox_at = st->broker_head_at = st->problem_since = INT64_MIN;
    int rc = mdb_txn_begin(db->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return lmdb_fail(err, rc, db, "reading the status");
    if (have(db->meta))
        rc = read_status(db, txn, st);
    st->outbox_depth = entries(txn, db->outbox);
    st->rejected = entries(txn, db->rejected);
    st->dead = entries(txn, db->dead);
    st->retry = entries(txn, db->retry);
    if (rc == 0 && st->outbox_depth > 0) {
        MDB_cursor *cur;
        MDB_val k, d;
        rc = mdb_cursor_open(txn, db->outbox, &cur);
        if (rc == 0) {
            rc = mdb_cursor_get(cur, &k, &d, MDB_FIRST);
            if (rc == 0 && k.mv_size == 8 && d.mv_size >= 8) {
                st->oldest_pos = get_u64(k.mv_data);
                st->oldest_at = (int64_t)get_u64(d.mv_data);
            }
            if (rc == MDB_NOTFOUND)
                rc = 0;
            mdb_cursor_close(cur);
        }
    }
    mdb_txn_abort(txn);
    return rc == 0 ? 0 : lmdb_fail(err, rc, db, "reading the status");
}
