/*
 * server_internal.h - what the two halves of kabard's loop share (private
 * to broker/server*.c).
 *
 *   server.c        setup, the read phase of PUB and the dispatch of other
 *                   commands, commit, ack, relay, timers, the loop
 *   server_query.c  replies (ERR, refusals) and the requests answered in the
 *                   read phase: HEAD, STATUS, SUB and its follow-ups
 *                   (CREDIT, CACK, UNSUB), CALL
 *
 * Authorization (auth.h) is applied where each command is handled, from
 * the principal of the message (server.c looks it up from the message's
 * User-Id before dispatching).
 */
#ifndef KABARD_SERVER_INTERNAL_H
#define KABARD_SERVER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include <zmq.h>

#include "auth.h"
#include "ckpt.h"
#include "kabar.h"
#include "klog.h"
#include "server.h"
#include "store.h"
#include "subs.h"
#include "wire.h"

#define TURN_EVENTS  4096                            /* events read per turn, then commit */
#define TURN_SLOTS   (TURN_EVENTS + KABAR_MAX_BATCH) /* a PUB is read whole */
#define TURN_MSGS    8192                            /* messages read per turn */
#define TURN_BYTES   (64u << 20)                     /* event bytes held per turn */
#define TURN_UPDATES 4096                            /* consumer positions per commit */
#define TIMER_MS     1000                            /* the timers phase runs this often */

/* An event's outcome before the ACK: an entry of the commit, or a failure. */
typedef struct slot {
    int code; /* KABAR_OK: entries[ix]; else errs[ix] */
    uint32_t ix;
} slot;

/* A PUB message of the turn, waiting for its ACK. */
typedef struct pub {
    zmq_msg_t rid;
    uint64_t batch;
    uint32_t first; /* slots[first .. first+n) */
    uint32_t n;
    store_sigbatch sb; /* the entries' batch when signed (leaves: leaves[first..]) */
} pub;

struct server {
    void *ctx;
    void *sock;
    void *zap; /* ZAP handler (REP), NULL under --insecure */
    bool secure;
    char endpoint[256];
    const char *data_dir;
    store *st;
    store_reader *rd;
    bool rd_stale;
    const kabar_schema *schema;
    subs *subs;
    auth *au;
    ckpt *ck;
    int64_t started_ms;
    int64_t next_timer_ms;
    int64_t now;         /* wall clock (ns) of the turn: key validity (server_now) */
    int64_t clock_min;   /* server_now is never before this: the last registry change's time */
    bool registry_stale; /* a registry change is stored but the cache is empty: reload */

    /* A registry-changing CALL that arrived while the turn held events: it
     * runs after their commit and ack (server.c, "Registry changes"). */
    bool deferred;
    zmq_msg_t deferred_hdr;
    uint8_t deferred_rid[SUBS_RID_MAX];
    size_t deferred_rid_len;
    server_stats stats;

    /* The turn. */
    zmq_msg_t *frames; /* frames[i] holds entries[i]'s bytes */
    kabar_event *evs;
    store_entry *entries;
    size_t nentries;
    slot *slots;
    size_t nslots;
    uint8_t (*leaves)[32]; /* batch tree leaf of slots[i], for signed PUBs */
    kabar_error *errs;
    size_t nerrs;
    pub *pubs;
    size_t npubs;
    size_t nmsgs;
    size_t nbytes;
    subs_fresh *fresh;
    size_t nfresh;
    store_consumer_update *ups;
    kabar_buf filters;
    kabar_error commit_err; /* code != 0: this turn's commit failed */
    kabar_buf out;          /* a reply being encoded */

    klog_limit lim_bad, lim_reject, lim_store, lim_relay;
};

/* server.c */
int64_t server_mono_ms(void);
void server_send_hdr(server *sv, const peer *p, const kabar_buf *hdr);
int server_sink_end(void *arg, const sub *s, uint64_t last);
/* The read snapshot, moved to the newest commit when one happened since; NULL on failure. */
store_reader *server_reader(server *sv);
/* The wall clock (ns), never before sv->clock_min. */
int64_t server_now(const server *sv);
/*
 * After a registry change at `at` (calls_env.changed_at): no key check nor
 * commit happens before `at` any more, and the subscriptions of every peer
 * whose key is no longer valid end at once (ERR UNKNOWN_KEY, logged).
 */
void server_registry_changed(server *sv, int64_t at);

/* server_query.c */
const char *server_hex_rid(const void *rid, size_t len, char out[40]);
/* ERR [id, CODE, text] to a peer, and a rate-limited log line about it. */
void server_send_err(server *sv, const peer *p, uint64_t id, const char *what,
                     const kabar_error *e);
/* A refusal by an authorization rule: counted, logged (auth_refused), answered with ERR. */
void server_refuse(server *sv, const peer *p, const auth_principal *who, uint64_t id,
                   const char *what, const kabar_error *e);
void query_head(server *sv, peer *p, uint64_t id);
void query_status(server *sv, peer *p, uint64_t id);
void query_sub(server *sv, peer *p, const wire_header *h, const auth_principal *who);
void query_sub_cmd(server *sv, peer *p, const wire_header *h, const auth_principal *who);
void query_call(server *sv, peer *p, const wire_header *h, const auth_principal *who);

#endif /* KABARD_SERVER_INTERNAL_H */
