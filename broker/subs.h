/*
 * subs.h - the broker's peers and subscriptions, and the relay of the log
 * to subscribers.
 *
 * A peer is one client connection, known by its ZeroMQ routing id; the
 * broker forgets it (and its subscriptions) after KABAR_PEER_TIMEOUT_MS of
 * silence. A subscription is keyed by (peer, sub id) and is nothing but a
 * cursor over the log: a filter, the next seq to look at (`position`),
 * the credit the client granted, an optional bound and an optional durable
 * consumer name. There is no queue: the log is the queue, so a consumer that
 * stops reading costs the broker only this fixed-size struct.
 *
 * Durable consumers: the acked position lives in the log's `consumers`
 * database; a CACK sets `acked` here and marks the sub dirty, and the
 * broker's next commit persists every dirty position (subs_updates /
 * subs_updates_done), so acks are coalesced to one write per consumer per
 * turn.
 *
 * Relay (subs_relay): for each subscription with credit whose position is
 * at or below the head, read matching records from the log (or, for a
 * subscription that is caught up, from the turn's just-committed events in
 * memory: same positions, so no gap or duplicate) and hand them to the
 * sink packed as EVT payloads. Bounded subscriptions get END once past
 * their last seq, and are dropped.
 *
 * This module does no I/O of its own: the sink sends, the caller owns the
 * store reader. Not thread-safe.
 */
#ifndef KABARD_SUBS_H
#define KABARD_SUBS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kabar.h"
#include "store.h"
#include "wire.h"

#define SUBS_MAX_PER_PEER   64               /* subscriptions one peer may hold */
#define SUBS_MAX_TOTAL      100000           /* subscriptions in all */
#define SUBS_DEFAULT_CREDIT 1024             /* when SUB gives none */
#define SUBS_MAX_CREDIT     KABAR_MAX_CREDIT /* outstanding credit of one subscription */
#define SUBS_EVT_RECORDS    1024             /* records in one EVT message, at most */
#define SUBS_EVT_BYTES      (1u << 20)       /* payload of one EVT message, about */
#define SUBS_TURN_RECORDS   4096             /* records for one subscription per turn */
#define SUBS_TURN_BYTES     (4u << 20)
#define SUBS_RELAY_RECORDS  65536 /* records for all subscriptions per turn */
#define SUBS_RID_MAX        255   /* ZeroMQ routing ids are 1..255 bytes */

#define SUBS_USER_ID_MAX (KABAR_MAX_AGENCY_LEN + 1 + 16 + 1) /* "AGENCY/KEYID" + NUL */

typedef struct peer {
    uint8_t rid[SUBS_RID_MAX];
    uint8_t rid_len;
    /* The User-Id of the peer's last message ("AGENCY/KEYID", "" under
     * --insecure): whose key its subscriptions were made with, so that they
     * can be ended when that key stops being valid (subs_drop_peers). */
    char user_id[SUBS_USER_ID_MAX];
    int64_t last_heard_ms; /* monotonic */
    uint32_t nsubs;
    struct sub *subs;   /* this peer's subscriptions, linked by pnext */
    struct peer *hnext; /* hash chain */
} peer;

typedef struct sub {
    peer *peer;
    uint64_t id;
    char type_prefix[KABAR_MAX_TYPE_LEN + 1]; /* "" = any */
    char source[KABAR_MAX_AGENCY_LEN + 1];
    char target[KABAR_MAX_AGENCY_LEN + 1];
    uint64_t position; /* next seq to look at */
    uint64_t credit;   /* records the client still accepts */
    bool bounded;
    uint64_t bound;                       /* last seq, when bounded */
    char durable[KABAR_MAX_ID_LEN + 1];   /* "" = not durable */
    uint64_t acked;                       /* durable: last acked seq */
    char owner[KABAR_MAX_AGENCY_LEN + 1]; /* durable: owning agency, "" nobody's */
    bool dirty;                           /* durable: acked not yet persisted */
    bool filter_dirty;                    /* durable: filter not yet persisted */
    uint64_t sent;                        /* records sent, for statistics */
    struct sub *hnext;                    /* hash chain */
    struct sub *pnext;                    /* next of the same peer */
    struct sub *dnext;                    /* durable-name hash chain */
    bool ended;                           /* END sent; removed at the end of the relay */
    size_t index;                         /* in the table's array */
} sub;

/* What a new subscription starts with; strings are views (copied). */
typedef struct sub_spec {
    kabar_str type_prefix; /* .ptr NULL or len 0: any */
    kabar_str source;
    kabar_str target;
    kabar_str durable; /* .ptr NULL: not durable */
    uint64_t position; /* first seq to send (>= 1) */
    bool bounded;
    uint64_t bound;
    uint64_t credit;   /* 0: SUBS_DEFAULT_CREDIT */
    uint64_t acked;    /* durable: last acked (position - 1 for a new consumer) */
    bool dirty;        /* durable: persist it in the next commit */
    const char *owner; /* durable: the owning agency id (NULL or "": nobody's); copied */
} sub_spec;

typedef struct subs subs;

int subs_new(subs **out, kabar_error *err);
/* Frees every peer and subscription. */
void subs_destroy(subs **t);

/*
 * The peer with this routing id, created when new, its last_heard_ms set to
 * now_ms. NULL only when out of memory or rid_len is 0 or > SUBS_RID_MAX.
 */
peer *subs_peer(subs *t, const void *rid, size_t rid_len, int64_t now_ms);
size_t subs_peer_count(const subs *t);
size_t subs_count(const subs *t);
size_t subs_durable_count(const subs *t);

/*
 * Add a subscription. KABAR_PROTOCOL when (peer, id) exists, KABAR_LIMIT
 * past SUBS_MAX_PER_PEER / SUBS_MAX_TOTAL, KABAR_INVALID_ARGUMENT for a
 * string too long, KABAR_NO_MEMORY. The durable name must not be held by
 * another live subscription (see subs_find_durable). *out is owned by `t`.
 */
int subs_add(subs *t, peer *p, uint64_t id, const sub_spec *spec, sub **out, kabar_error *err);
sub *subs_find(const subs *t, const peer *p, uint64_t id);
/* The live subscription holding durable consumer `name`, or NULL. */
sub *subs_find_durable(const subs *t, const char *name, size_t len);
/*
 * Remove and free a subscription. A durable one's ack not yet committed is
 * kept and goes out with the next subs_updates.
 */
void subs_remove(subs *t, sub *s);

/*
 * For every peer holding subscriptions, ask drop(arg, peer); when it says
 * true, call gone(arg, peer, sub) for each of the peer's subscriptions (may
 * be NULL; to tell the client) and remove them all (the peer stays: it may
 * still send, and be refused). Returns how many subscriptions were removed.
 */
size_t subs_drop_peers(subs *t, bool (*drop)(void *arg, const peer *p),
                       void (*gone)(void *arg, const peer *p, const sub *s), void *arg);

/* CREDIT: add n, saturating at SUBS_MAX_CREDIT. */
void subs_credit(sub *s, uint64_t n);
/*
 * CACK: KABAR_UNKNOWN_CONSUMER when not durable, KABAR_PROTOCOL when seq was
 * not reached yet (seq >= position); an ack at or below the last one is
 * accepted and changes nothing.
 */
int subs_cack(subs *t, sub *s, uint64_t seq, kabar_error *err);

/*
 * Forget peers silent for timeout_ms or more, with their subscriptions.
 * Calls gone(arg, peer) before freeing each (arg may be NULL).
 * Returns how many peers were dropped.
 */
size_t subs_expire(subs *t, int64_t now_ms, int64_t timeout_ms,
                   void (*gone)(void *arg, const peer *p), void *arg);

/*
 * Durable positions to persist: fills up[] (at most max) with those of
 * removed subscriptions, then the dirty subscriptions' name, acked, owner and filter (packed into
 * filters, which must live until the write is done; it is cleared first; a filter is included only
 * when it changed). Returns the count n. After the write, subs_updates_done(t, n, ok): on success
 * those n are clean; on failure they stay dirty and are retried in the next commit.
 */
size_t subs_updates(subs *t, store_consumer_update *up, size_t max, kabar_buf *filters);
void subs_updates_done(subs *t, size_t n, bool ok);

/* Pack the filter as the msgpack map the consumers database keeps. */
int subs_filter_pack(const sub *s, kabar_buf *out);

/* A record committed this turn, in seq order, for the in-memory relay. */
typedef struct subs_fresh {
    uint64_t seq;
    int64_t received_at;
    const uint8_t *bytes;
    size_t len;
    const kabar_event *ev;
} subs_fresh;

typedef struct subs_sink {
    /* Send one EVT with `count` records packed in payload. */
    int (*evt)(void *arg, const sub *s, uint32_t count, const void *payload, size_t len);
    /* Send END: the bounded subscription is complete up to `last`. */
    int (*end)(void *arg, const sub *s, uint64_t last);
    void *arg;
} subs_sink;

typedef struct subs_relay_in {
    store_reader *reader;    /* refreshed to `head`; NULL: fresh records only */
    uint64_t head;           /* last committed seq */
    const subs_fresh *fresh; /* the consecutive seqs head-nfresh+1 .. head, or NULL */
    size_t nfresh;
} subs_relay_in;

/*
 * One relay turn over the subscriptions. *more is set when some
 * subscription still has records it could send (it used its turn's
 * budget, or the turn's SUBS_RELAY_RECORDS ran out before its turn came:
 * the next call starts where this one stopped), so the caller should not
 * sleep. Returns 0 or the first store
 * error met (the other subscriptions are still served).
 */
int subs_relay(subs *t, const subs_relay_in *in, const subs_sink *sink, bool *more,
               kabar_error *err);

#endif /* KABARD_SUBS_H */
