/*
 * store_internal.h - what the two halves of the log store share (private to
 * broker/store.c and broker/store_read.c; the contract is store.h).
 *
 * store.c opens the environment, maps it and writes; store_read.c holds the
 * read side: readers, filters and iterators, durable consumers. Both see the
 * store and reader structs and the few helpers below. The design notes are
 * at the top of store.c.
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

enum { DB_EVENTS, DB_SOURCE, DB_TARGET, DB_TYPE, DB_DEDUP, DB_CONSUMERS, DB_META, DB_COUNT };

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
/* Parse a consumer record: map {"acked", "created_at", "filter", "updated_at"}. */
int store__consumer_parse(const void *buf, size_t len, store_consumer *c);

#endif /* KABARD_STORE_INTERNAL_H */
