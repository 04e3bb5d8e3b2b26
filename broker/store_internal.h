/*
 * store_internal.h - what the two halves of the log store share (private to
 * broker/store.c and broker/store_read.c; the contract is store.h).
 *
 * store.c opens the environment, maps it and writes events; store_read.c
 * holds the read side: readers, filters and iterators, durable consumers;
 * store_audit.c the Merkle tree's read side, batches, checkpoints and raw
 * access; store_registry.c the agencies and keys. They see the store and
 * reader structs and the few helpers below. The design notes are at the top
 * of store.c.
 */
#ifndef KABARD_STORE_INTERNAL_H
#define KABARD_STORE_INTERNAL_H

#include <lmdb.h>
#include <msgpack.h>

#include "store.h"

#define BROADCAST "*"
#define KEY_MAX   512 /* above LMDB's default 511-byte key limit */

/* A record or consumer in the log that does not parse: the log is damaged. */
#define STORE_BADREC (-30000)
/* Not an LMDB code: a kabar error already filled in err (its code kept aside). */
#define STORE_KERR (-30001)

#define STORE_FORMAT 2
#define REC_HDR      21 /* u8 format | received_at BE8 | batch BE8 | index BE4 */
#define MIB          (1ull << 20)
#define TREE_KEY     STORE_TREE_KEY /* store_tree_key(): last leaf BE8 | level u8 */
#define BATCH_HDR    100            /* key 32 | sig 64 | n BE4 */

/* DB_META first: a log's format is checked before the other databases are looked for. */
enum {
    DB_META,
    DB_EVENTS,
    DB_SOURCE,
    DB_TARGET,
    DB_TYPE,
    DB_DEDUP,
    DB_TREE,
    DB_BATCHES,
    DB_CONSUMERS,
    DB_CHECKPOINTS,
    DB_AGENCIES,
    DB_KEYS,
    DB_COUNT
};

extern const char *const store__db_names[DB_COUNT];

struct store {
    MDB_env *env;
    MDB_dbi dbi[DB_COUNT];
    char *dir;
    bool readonly;
    uint64_t max_bytes;
    uint64_t mapsize;
    uint64_t head;
    int64_t last_received_at;
    int data_fd;           /* log.mdb: flock for writers, fstat for the size */
    store_reader *readers; /* every open reader, for remapping */
    msgpack_sbuffer scratch;
    uint64_t last_batch;      /* the largest batch id in `batches` */
    bool have_frontier;       /* frontier holds the tree's right edge (writer only) */
    merkle_frontier frontier; /* valid when have_frontier and frontier.size == head */
    char origin[256];
};

struct store_reader {
    store *s;
    MDB_txn *txn;
    bool live;    /* txn holds a snapshot (else reset: renew before use) */
    uint64_t gen; /* bumped at every renew */
    uint64_t head, count;
    store_reader *prev, *next;
};

static inline void put_be64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static inline void put_be32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static inline uint32_t get_be32(const void *q)
{
    const uint8_t *p = q;
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static inline uint64_t get_be64(const void *q)
{
    const uint8_t *p = q;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Translate an LMDB or errno code into a kabar error: "<what> log at DIR: <why>". */
int store__fail(const store *s, int rc, const char *what, kabar_error *err);
/* Reset every live reader, then set the map size (0: as the file says). */
int store__remap(store *s, uint64_t size);
/* mdb_txn_begin, following a map grown by another process (MDB_MAP_RESIZED). */
int store__txn_begin(store *s, unsigned flags, MDB_txn **txn);
/* The record at cursor position: seq key and header; STORE_BADREC when damaged. */
int store__rec_parse(const MDB_val *k, const MDB_val *v, store_record *rec);
/* Parse a consumer record: map {"acked", "created_at", "filter", "owner", "updated_at"}. */
int store__consumer_parse(const void *buf, size_t len, store_consumer *c);
/* Make sure r holds a snapshot (renew it after a refresh or remap); 0 or a kabar error. */
int store__reader_ready(store_reader *r, kabar_error *err);
/*
 * Run fn(s, txn, arg, err) in a write transaction and commit it durably;
 * when the map is full, grow it and run fn again. fn returns 0, an LMDB or
 * errno code, STORE_BADREC, or STORE_KERR after filling err (never NULL
 * there) with a kabar error. Nothing is written when fn or the commit
 * fails. Returns 0 or a kabar code.
 */
int store__update(store *s, int (*fn)(store *s, MDB_txn *txn, void *arg, kabar_error *err),
                  void *arg, kabar_error *err);
/* msgpack timestamp of ns since the epoch. */
int store__ts_pack(msgpack_packer *pk, int64_t ns);

#endif /* KABARD_STORE_INTERNAL_H */
