/*
 * store.h - the broker's log: one LMDB environment, append-only, and a
 * Merkle tree over it.
 *
 * The store is the only code that opens the log for writing. It holds, in
 * named databases of one environment (byte-exact layout in docs/STORAGE.md):
 *
 *   events      seq (8 bytes big-endian) -> record, format 2:
 *               u8 2 | received_at int64 ns BE (8) | batch id BE (8, 0 =
 *               unsigned) | index in the batch BE (4) | the event's bytes
 *               exactly as published (a 21-byte header)
 *   by_source   source agency id  -> seq (DUPSORT|DUPFIXED, 8 bytes BE)
 *   by_target   target agency id, or "*" for a broadcast -> seq (same)
 *   by_type     event type -> seq (same)
 *   dedup       source 0x00 id -> seq (8 bytes BE)
 *   consumers   durable consumer name -> msgpack map
 *               {"acked": uint, "created_at": timestamp, "filter": {...},
 *                "owner": str (absent: nobody's), "updated_at": timestamp}
 *   meta        "format" -> uint 2, "created_at" -> timestamp,
 *               "origin" -> str (the checkpoints' origin line)
 *   batches     batch id BE8 -> signer key (32) | signature (64) |
 *               n uint32 BE | n leaf hashes (32 each)
 *   tree        last leaf BE8 | level u8 (store_tree_key) -> the 32-byte hash of the complete
 *               subtree (level, index) of the log's Merkle tree, level >= 1
 *   checkpoints tree size BE8 -> the signed note (C2SP checkpoint)
 *   agencies    agency id -> msgpack {"created_at", "name", "org", "region", "role"}
 *   keys        Ed25519 public key (32) -> msgpack {"agency", "revoked_at"
 *               (absent while valid), "valid_from"}
 *
 * The Merkle log (RFC 9162, proto/merkle.h): leaf i (0-based) is seq i+1;
 * its hash is merkle_leaf_hash(the whole stored value of `events`), so the
 * receive time and the batch reference are committed too. The tree's size
 * is the head. store_write appends every new event's leaf in the same
 * transaction as the event (one leaf hash and on average one node hash and
 * one `tree` put per event, whatever the size of the log). Leaf hashes
 * (level 0) are not stored: they are recomputed from `events` when needed.
 *
 * Time lookups need no index of their own: the store keeps received_at
 * non-decreasing in seq (a clock that steps back is clamped to the last
 * value), so the first event received at or after T is a binary search
 * over `events`.
 *
 * Durability: store_write commits with LMDB's default full sync (never
 * MDB_NOSYNC or MDB_NOMETASYNC unless opts->nosync, which only the bench's
 * flag named --unsafe-nosync sets). When the map is full the store grows it
 * (doubling, up to opts->max_bytes) and redoes the transaction; a write that
 * cannot fit fails with KABAR_DISK_FULL and changes nothing. The registry
 * and checkpoint writes are durable transactions of their own, grown and
 * retried the same way (so, like store_write, they may move this process's
 * readers to the newest snapshot: see store_write).
 *
 * Readers (store_reader) see a consistent snapshot; several may live at
 * once, in this process or others (kabar replay --data while kabard runs).
 */
#ifndef KABAR_STORE_H
#define KABAR_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kabar.h"
#include "merkle.h"

typedef struct store store;

typedef struct store_opts {
    bool readonly;      /* open an existing log for reading only */
    uint64_t max_bytes; /* 0: no limit but the disk's */
    bool nosync;        /* benchmarks only: acks before the disk has it */
    /* The checkpoint origin, kept in meta "origin" when the log is created
     * (ignored for an existing log). NULL: "kabar/" + gethostname(). A C2SP
     * key name: 1 to 255 bytes, no space, control character or '+'. */
    const char *origin;
} store_opts;

/*
 * Open (creating when not readonly) the log in directory `dir` (created if
 * missing, unless readonly). *out set only on success. KABAR_NOT_FOUND when
 * readonly and there is no log; KABAR_STORE with LMDB's reason otherwise.
 *
 * The log is the file DIR/log.mdb with LMDB's lock file DIR/log.mdb-lock.
 * A writable open takes an exclusive flock(2) on log.mdb: a second writer
 * gets KABAR_LOCKED. A read-only open works while kabard writes; it needs
 * read access to log.mdb and write access to log.mdb-lock (LMDB's reader
 * table), i.e. the kabard user or root; anyone else reads a copy made with
 * mdb_copy. A log of another format version is KABAR_STORE (a format-1
 * log, written before signed events, is refused with a message saying it
 * must be re-imported).
 */
int store_open(store **out, const char *dir, const store_opts *opts, kabar_error *err);
/* Close readers and iterators first; readers left open are detached (close them later). */
void store_close(store **s);

/* The last committed seq (0 when empty); as of the last write or refresh. */
uint64_t store_head(const store *s);
/* Size of the data file in bytes. */
uint64_t store_file_bytes(const store *s);
/* The checkpoint origin of this log (meta "origin"); never NULL on an open store. */
const char *store_origin(const store *s);

/* The most events one signed batch may cover (KABAR_MAX_BATCH of a PUB). */
#define STORE_BATCH_MAX 1024

/*
 * A signed batch (proto/batchsig.h): the signer's Ed25519 key, its
 * signature, and the n leaf hashes of the batch tree (leaves[i] =
 * merkle_leaf_hash(event i's bytes), computed by the caller from the bytes
 * it verified). Several store_entry of one store_write point to the same
 * store_sigbatch.
 */
typedef struct store_sigbatch {
    uint8_t key[32];
    uint8_t sig[64];
    uint32_t n; /* 1..STORE_BATCH_MAX */
    const uint8_t (*leaves)[32];
    /* out: the batch id store_write assigned (1, 2, ...) when at least one
     * of its events was stored by this write; else 0. The store writes it
     * through the entries' const pointer: do not pass a const object. */
    uint64_t id;
} store_sigbatch;

/* One event to append, with the store's answer. */
typedef struct store_entry {
    const kabar_event *ev; /* decoded view of bytes (ev->source, ev->id, ...) */
    const uint8_t *bytes;  /* the event exactly as published */
    size_t len;
    /* filled by store_write: */
    uint64_t seq; /* new seq, or the original one for a duplicate */
    bool duplicate;
    int64_t received_at; /* of the stored record (the original's for a duplicate) */
    /* in: the signed batch this event belongs to and its index there (the
     * event is leaf batch_index of the batch tree); NULL: unsigned */
    const store_sigbatch *batch;
    uint32_t batch_index;
    /* out: the event's leaf hash in the log (the original's for a duplicate) */
    uint8_t leaf_hash[32];
    /* out: the batch id recorded with the event (the original's for a
     * duplicate; 0: unsigned). Same as batch->id for a new signed event. */
    uint64_t batch_id;
} store_entry;

/* A durable consumer's acked position to persist. */
typedef struct store_consumer_update {
    const char *name;
    uint64_t acked;
    const uint8_t *filter; /* msgpack map of the consumer's filter, NULL: keep */
    size_t filter_len;
    /* The principal (agency id) that owns the consumer: NULL keep, "" none. */
    const char *owner;
} store_consumer_update;

/*
 * Append entries and persist consumer positions in one durable transaction.
 * received_at is `now` (clamped to be >= the last one). An entry whose
 * (source, id) is already in the log, or earlier in the same call, is not
 * stored: it gets the original seq and duplicate = true. On any error
 * nothing is written and the head is unchanged: KABAR_DISK_FULL when the
 * disk, a file size limit or opts->max_bytes is reached, KABAR_INVALID_ARGUMENT
 * for an entry without source, id or type (or one longer than kabar.h's
 * limits), or with a batch that is not one (n of 0 or above
 * STORE_BATCH_MAX, no leaves, batch_index >= n), KABAR_STORE otherwise.
 * The entries' bytes, ev and batches are only read during the call.
 *
 * Every new event's leaf is appended to the Merkle tree in the same
 * transaction; its batch (once per store_sigbatch, when at least one of
 * its events is new) is put in `batches`. The store does not check the
 * signature nor that leaves[batch_index] is the event's hash: the caller
 * verified both (batchsig_verify) before calling.
 *
 * A write that has to grow the map first resets every reader of this
 * process: they move to the newest snapshot on their next use, so records
 * and consumers read before a store_write must not be used after it.
 */
int store_write(store *s, store_entry *e, size_t n, const store_consumer_update *c, size_t nc,
                int64_t now, kabar_error *err);

/*
 * A consistent read snapshot (an LMDB read transaction, which holds one of
 * the environment's 512 reader slots while open). Also usable on a store
 * opened read-only in another process: when kabard has grown the map, the
 * reader follows it on open or refresh.
 */
typedef struct store_reader store_reader;
int store_reader_open(store *s, store_reader **out, kabar_error *err);
/* Move an open reader to the newest snapshot (cheap: mdb_txn_reset/renew). */
int store_reader_refresh(store_reader *r, kabar_error *err);
void store_reader_close(store_reader **r);
uint64_t store_reader_head(const store_reader *r);
uint64_t store_reader_count(const store_reader *r);

typedef struct store_record {
    uint64_t seq;
    int64_t received_at;
    /* valid until the reader is refreshed or closed, or the next store_write */
    const uint8_t *bytes;
    size_t len;
    uint64_t batch;       /* the signed batch's id (store_batch_get); 0: unsigned */
    uint32_t batch_index; /* the event's leaf index in that batch */
    /* The whole stored value (header and event): the input of the leaf
     * hash, merkle_leaf_hash(raw, raw_len). Valid like bytes. */
    const uint8_t *raw;
    size_t raw_len;
} store_record;

/* One event by seq: 0, or KABAR_NOT_FOUND. */
int store_get(store_reader *r, uint64_t seq, store_record *rec, kabar_error *err);

/*
 * The first seq whose received_at >= t, or head + 1 when there is none (or
 * when the log cannot be read). A binary search: O(log n) reads.
 */
uint64_t store_seq_at_time(store_reader *r, int64_t t);

/*
 * A filter over the log. All set conditions must hold. The iterator picks
 * an index (source, then target, then type) so that it does not scan
 * events that cannot match; remaining conditions are checked on the
 * decoded envelope. An empty string is the same as NULL.
 */
typedef struct store_filter {
    const char *type_prefix; /* byte prefix: "finding." matches every finding.* type; NULL any */
    const char *source;      /* NULL any */
    const char *target;      /* targets contain it, or the event is a broadcast */
    uint64_t from;           /* first seq, inclusive (0 = 1) */
    uint64_t to;             /* last seq, inclusive (0 = no bound) */
} store_filter;

/* Does this decoded event match the filter's type/source/target? */
bool store_filter_match(const store_filter *f, const kabar_event *ev);

/*
 * An iterator over one reader (the filter is copied). Close it before the
 * reader. When the reader is refreshed (or moved by a map growth), the
 * iterator goes on after the last seq it returned, on the new snapshot.
 */
typedef struct store_iter store_iter;
int store_iter_open(store_reader *r, const store_filter *f, store_iter **out, kabar_error *err);
/*
 * The next matching record in seq order: 0 with *rec set, KABAR_END when
 * done (reached `to` or the reader's head), or an error.
 */
int store_iter_next(store_iter *it, store_record *rec, kabar_error *err);
void store_iter_close(store_iter **it);

/* Durable consumers. */
typedef struct store_consumer {
    char name[KABAR_MAX_ID_LEN + 1];
    uint64_t acked;
    int64_t created_at;
    int64_t updated_at;
    const uint8_t *filter; /* msgpack map; valid like a record */
    size_t filter_len;
    char owner[KABAR_MAX_AGENCY_LEN + 1]; /* the owning principal's agency id; "" nobody's */
} store_consumer;

/* 0, or KABAR_NOT_FOUND. */
int store_consumer_get(store_reader *r, const char *name, store_consumer *c, kabar_error *err);
/*
 * Call fn for each consumer in name order; stops early when fn returns
 * non-zero, and returns that value. Otherwise 0 or an error.
 */
int store_consumer_each(store_reader *r, int (*fn)(void *arg, const store_consumer *c), void *arg,
                        kabar_error *err);

/* ------------------------------------------------------------------------ */
/* The Merkle log (issue 5; docs/STORAGE.md, docs/MERKLE.md)                */

/*
 * The root hash of the log's tree of the first `size` leaves (seqs
 * 1..size), as of the reader's snapshot: 0..store_reader_head(r), 0 giving
 * SHA-256(""). KABAR_INVALID_ARGUMENT when size is past the head;
 * KABAR_NOT_FOUND (naming the node) or KABAR_STORE when the tree is damaged.
 */
int store_root(store_reader *r, uint64_t size, uint8_t root[32], kabar_error *err);

/* The leaf hash of event `seq` (SHA-256(0x00 || its stored value)); KABAR_NOT_FOUND. */
int store_leaf_hash(store_reader *r, uint64_t seq, uint8_t out[32], kabar_error *err);

/*
 * A read-only node store over the reader's snapshot, for merkle_root,
 * merkle_inclusion_proof and merkle_consistency_proof (leaf index = seq - 1,
 * tree size <= the reader's head). Level 0 is computed from `events`,
 * levels >= 1 read from `tree`. Valid while the reader is open; it follows
 * the reader's refreshes.
 */
merkle_store store_merkle(store_reader *r);

/* A stored signed batch; the pointers are valid like a record's bytes. */
typedef struct store_batch {
    uint64_t id;
    const uint8_t *key;    /* 32 bytes: the signer's Ed25519 public key */
    const uint8_t *sig;    /* 64 bytes: Ed25519 over batchsig_message(n, root) */
    uint32_t n;            /* events in the signed batch */
    const uint8_t *leaves; /* n * 32 bytes: the batch tree's leaf hashes */
} store_batch;

/* Batch `id` (a store_record's batch): 0, or KABAR_NOT_FOUND. */
int store_batch_get(store_reader *r, uint64_t id, store_batch *b, kabar_error *err);

/*
 * Keep a signed checkpoint note of the tree of `size` leaves (1..head; one
 * per size, a second put of a size replaces the first). A durable
 * transaction of its own. The store does not read the note: the caller made
 * it with checkpoint_sign over store_root(size). Readers opened before see
 * it after store_reader_refresh.
 */
int store_checkpoint_put(store *s, uint64_t size, const char *note, size_t len, kabar_error *err);
/*
 * Append to *note the checkpoint of tree size `size` (0: the latest, the
 * largest size) and set *size_out (may be NULL) to its size. KABAR_NOT_FOUND
 * when there is none; KABAR_NO_MEMORY.
 */
int store_checkpoint_get(store_reader *r, uint64_t size, kabar_buf *note, uint64_t *size_out,
                         kabar_error *err);
/*
 * Call fn for every stored checkpoint, oldest (smallest size) first; the
 * note is valid during the call only. Stops when fn returns non-zero and
 * returns that value; otherwise 0 or an error.
 */
int store_checkpoint_each(store_reader *r,
                          int (*fn)(void *arg, uint64_t size, const char *note, size_t len),
                          void *arg, kabar_error *err);

/* ------------------------------------------------------------------------ */
/* The registry (issue 4): agencies and their keys                          */

/* Roles: "agent", "oversight", "auditor", "admin". */
typedef struct store_agency {
    char id[KABAR_MAX_AGENCY_LEN + 1]; /* an agency slug (kabar_agency_valid) */
    char name[129];
    char region[33];
    char org[65];
    char role[16];
    int64_t created_at; /* ns; 0 on put: now for a new agency, else kept */
} store_agency;

/*
 * Add or update an agency (every field but created_at replaced). A durable
 * transaction. KABAR_INVALID_ARGUMENT (naming the field) for an id that is
 * not a slug, an empty name, a role not in the list, or a string without its
 * NUL within its array.
 */
int store_agency_put(store *s, const store_agency *a, kabar_error *err);
/* 0, or KABAR_NOT_FOUND. */
int store_agency_get(store_reader *r, const char *id, store_agency *a, kabar_error *err);
/* fn for every agency in id order; stops on non-zero and returns it; else 0 or an error. */
int store_agency_each(store_reader *r, int (*fn)(void *arg, const store_agency *a), void *arg,
                      kabar_error *err);

/* A key is valid at time t iff valid_from <= t < revoked_at. */
typedef struct store_key {
    uint8_t pk[32]; /* Ed25519 public key */
    char agency[KABAR_MAX_AGENCY_LEN + 1];
    int64_t valid_from;
    int64_t revoked_at; /* INT64_MAX while valid */
} store_key;

/*
 * Add a key, or revoke a stored one (same pk, agency and valid_from, a
 * revoked_at < INT64_MAX). A durable transaction. KABAR_NOT_FOUND when the
 * agency is not registered; KABAR_INVALID_ARGUMENT when the key belongs to
 * another agency, would change its valid_from, would be un-revoked or
 * revoked at another time than it already was, or revoked_at < valid_from.
 * Putting exactly what is stored changes nothing and is 0.
 */
int store_key_put(store *s, const store_key *k, kabar_error *err);
/* 0, or KABAR_NOT_FOUND. */
int store_key_get(store_reader *r, const uint8_t pk[32], store_key *k, kabar_error *err);
/* fn for every key in public key byte order; stops on non-zero; else 0 or an error. */
int store_key_each(store_reader *r, int (*fn)(void *arg, const store_key *k), void *arg,
                   kabar_error *err);

/*
 * One registry change in ONE durable transaction: the agency `a` (NULL:
 * none; put as store_agency_put does) and then keys[0..n) in order (each
 * put as store_key_put does: added, or revoked). Either all of it is stored
 * or, on any error, none of it: an agency is never left without the key it
 * was added with, nor a new key added while the old one it replaces stays
 * valid. The errors of store_agency_put and store_key_put (the first one
 * met); KABAR_INVALID_ARGUMENT also for nothing to do, the same key twice,
 * or more than STORE_REGISTRY_APPLY_MAX keys.
 */
#define STORE_REGISTRY_APPLY_MAX 16
int store_registry_apply(store *s, const store_agency *a, const store_key *keys, size_t n,
                         kabar_error *err);

/* ------------------------------------------------------------------------ */
/* Raw access, for `kabar audit verify`                                     */

/*
 * A verifier that must read the databases byte by byte (the indexes,
 * dedup, `tree`) may open the environment itself, read-only, in a process
 * that does not also store_open it (docs/STORAGE.md says how). With the
 * store open, it uses LMDB directly on a reader's snapshot instead (a
 * second mdb_env_open of the same file in one process is not allowed by
 * LMDB): store_reader_txn is the reader's read transaction (renewed if it
 * was reset; NULL with err set on failure), store_dbi the handle of a
 * database by the name docs/STORAGE.md gives. Read only: do not commit,
 * abort, reset or renew the transaction, and close the cursors before the
 * reader is refreshed or closed.
 */
struct MDB_txn *store_reader_txn(store_reader *r, kabar_error *err);
/* 0 with *dbi set, or KABAR_NOT_FOUND for a name that is not a database of the log. */
int store_dbi(const store *s, const char *name, unsigned int *dbi);

/*
 * The `tree` key of complete subtree (level, index): the index of its last
 * leaf, ((index + 1) << level) - 1, as uint64 BE, then the level (9 bytes).
 * Nodes are created in that order, so the writer appends (MDB_APPEND) and
 * fills pages in sequence instead of touching one page per level per commit.
 */
#define STORE_TREE_KEY 9
void store_tree_key(uint8_t kb[STORE_TREE_KEY], unsigned level, uint64_t index);

#endif /* KABAR_STORE_H */
