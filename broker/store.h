/*
 * store.h - the broker's log: one LMDB environment, append-only.
 *
 * The store is the only code that opens the log for writing. It holds, in
 * named databases of one environment (layout in docs/STORAGE.md):
 *
 *   events      seq (8 bytes big-endian) -> record: u8 format (1),
 *               received_at (int64 ns, 8 bytes big-endian), then the
 *               event's bytes exactly as published
 *   by_source   source agency id  -> seq (DUPSORT|DUPFIXED, 8 bytes BE)
 *   by_target   target agency id, or "*" for a broadcast -> seq (same)
 *   by_type     event type -> seq (same)
 *   dedup       source 0x00 id -> seq (8 bytes BE)
 *   consumers   durable consumer name -> msgpack map
 *               {"acked": uint, "created_at": timestamp, "filter": {...},
 *                "updated_at": timestamp}
 *   meta        "format" -> uint 1, "created_at" -> timestamp
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
 * cannot fit fails with KABAR_DISK_FULL and changes nothing.
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

typedef struct store store;

typedef struct store_opts {
    bool readonly;      /* open an existing log for reading only */
    uint64_t max_bytes; /* 0: no limit but the disk's */
    bool nosync;        /* benchmarks only: acks before the disk has it */
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
 * mdb_copy. A log of another format version is KABAR_STORE.
 */
int store_open(store **out, const char *dir, const store_opts *opts, kabar_error *err);
/* Close readers and iterators first; readers left open are detached (close them later). */
void store_close(store **s);

/* The last committed seq (0 when empty); as of the last write or refresh. */
uint64_t store_head(const store *s);
/* Size of the data file in bytes. */
uint64_t store_file_bytes(const store *s);

/* One event to append, with the store's answer. */
typedef struct store_entry {
    const kabar_event *ev; /* decoded view of bytes (ev->source, ev->id, ...) */
    const uint8_t *bytes;  /* the event exactly as published */
    size_t len;
    /* filled by store_write: */
    uint64_t seq; /* new seq, or the original one for a duplicate */
    bool duplicate;
    int64_t received_at; /* of the stored record (the original's for a duplicate) */
} store_entry;

/* A durable consumer's acked position to persist. */
typedef struct store_consumer_update {
    const char *name;
    uint64_t acked;
    const uint8_t *filter; /* msgpack map of the consumer's filter, NULL: keep */
    size_t filter_len;
} store_consumer_update;

/*
 * Append entries and persist consumer positions in one durable transaction.
 * received_at is `now` (clamped to be >= the last one). An entry whose
 * (source, id) is already in the log, or earlier in the same call, is not
 * stored: it gets the original seq and duplicate = true. On any error
 * nothing is written and the head is unchanged: KABAR_DISK_FULL when the
 * disk, a file size limit or opts->max_bytes is reached, KABAR_INVALID_ARGUMENT
 * for an entry without source, id or type (or one longer than kabar.h's
 * limits), KABAR_STORE otherwise. The entries' bytes and ev are only read
 * during the call.
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
} store_consumer;

/* 0, or KABAR_NOT_FOUND. */
int store_consumer_get(store_reader *r, const char *name, store_consumer *c, kabar_error *err);
/*
 * Call fn for each consumer in name order; stops early when fn returns
 * non-zero, and returns that value. Otherwise 0 or an error.
 */
int store_consumer_each(store_reader *r, int (*fn)(void *arg, const store_consumer *c), void *arg,
                        kabar_error *err);

#endif /* KABAR_STORE_H */
