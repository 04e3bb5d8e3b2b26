/*
 * audit_log.h - a read-only view of a kabar data directory for the audit
 * tools: the raw LMDB databases of docs/STORAGE.md (record format 2), read
 * with plain cursors in one read transaction.
 *
 * `kabar audit` must check the store without trusting the code that wrote
 * it, and fast: so it does not go through broker/store.c's iterators but
 * reads the byte formats of /work design section 5 itself:
 *
 *   events       seq BE8 -> u8 2 | received_at BE8 | batch BE8 | index BE4 | event
 *   tree         level u8 | index BE8 -> 32-byte hash (level >= 1)
 *   checkpoints  size BE8 -> signed note
 *   batches      id BE8 -> key(32) | sig(64) | n BE4 | n leaf hashes
 *   keys         pk(32) -> msgpack {"agency", "valid_from", "revoked_at"?}
 *   by_source, by_target, by_type (DUPSORT seq BE8), dedup, consumers, meta
 *
 * The view opens DIR/log.mdb with MDB_RDONLY (it works while kabard runs,
 * like `kabar replay --data`) and holds one snapshot until closed. Every
 * pointer it hands out is valid until audit_log_close.
 */
#ifndef KABAR_AUDIT_LOG_H
#define KABAR_AUDIT_LOG_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#include "kabar.h"
#include "merkle.h"

#define AUDIT_REC_HDR 21 /* format 2 record header */

enum {
    ADB_EVENTS,
    ADB_SOURCE,
    ADB_TARGET,
    ADB_TYPE,
    ADB_DEDUP,
    ADB_CONSUMERS,
    ADB_META,
    ADB_TREE,
    ADB_CHECKPOINTS,
    ADB_BATCHES,
    ADB_AGENCIES,
    ADB_KEYS,
    ADB_COUNT
};

typedef struct audit_log {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi[ADB_COUNT];
    bool has[ADB_COUNT]; /* the database exists */
    char dir[4096];
    char origin[256]; /* meta "origin", "" when absent */
    uint64_t head;    /* last seq, 0 when empty */
    uint64_t count;   /* entries in events */
} audit_log;

/* A parsed format-2 record (pointers into the snapshot). */
typedef struct audit_rec {
    uint64_t seq;
    int64_t received_at;
    uint64_t batch; /* 0: unsigned */
    uint32_t batch_index;
    const uint8_t *raw; /* the whole stored value: the leaf input */
    size_t raw_len;
    const uint8_t *event; /* the event bytes */
    size_t event_len;
} audit_rec;

/* A stored signed batch. */
typedef struct audit_batch {
    uint64_t id;
    const uint8_t *key; /* 32 */
    const uint8_t *sig; /* 64 */
    uint32_t n;
    const uint8_t (*leaves)[32];
} audit_batch;

/* A registry key. */
typedef struct audit_key {
    uint8_t pk[32];
    char agency[64];
    int64_t valid_from;
    int64_t revoked_at; /* INT64_MAX when valid */
} audit_key;

/* Open DIR read-only. KABAR_NOT_FOUND when there is no log there. */
int audit_log_open(audit_log *l, const char *dir, kabar_error *err);
void audit_log_close(audit_log *l);

/* Parse a stored value into *r (seq set by the caller). KABAR_BAD_VALUE with the reason. */
int audit_rec_parse(const void *raw, size_t len, uint64_t seq, audit_rec *r, kabar_error *err);

/* One record: 0, KABAR_NOT_FOUND, or KABAR_BAD_VALUE for a damaged one. */
int audit_log_record(audit_log *l, uint64_t seq, audit_rec *r, kabar_error *err);

/* A read-only node store: level 0 is hashed from the records, levels >= 1 read from `tree`. */
merkle_store audit_log_merkle(audit_log *l);

/* The stored checkpoint of `size` (0: the latest): its note bytes (not NUL-terminated). */
int audit_log_checkpoint(audit_log *l, uint64_t size, const char **note, size_t *len,
                         uint64_t *size_out, kabar_error *err);

int audit_log_batch(audit_log *l, uint64_t id, audit_batch *b, kabar_error *err);
/* Parse a batches value (also the online audit.batch answer is turned into one). */
int audit_batch_parse(const void *v, size_t len, uint64_t id, audit_batch *b, kabar_error *err);

int audit_log_key(audit_log *l, const uint8_t pk[32], audit_key *k, kabar_error *err);
/* Parse a keys value. */
int audit_key_parse(const void *v, size_t len, const uint8_t pk[32], audit_key *k,
                    kabar_error *err);

/* Read a whole small file into b (NUL-terminated; b->len excludes the NUL). */
int audit_read_file(const char *path, kabar_buf *b, kabar_error *err);

#endif
