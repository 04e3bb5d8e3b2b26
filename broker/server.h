/*
 * server.h - kabard's poll loop: one ROUTER socket, one turn at a time.
 *
 * Each turn has five named phases (see the design notes in server.c):
 *
 *   read    answer ZAP handshakes; drain what is ready (bounded per turn):
 *           authorize each message by its principal (auth.h), verify and
 *           validate PUB events, answer HEAD / STATUS / PING / CALL, take
 *           SUB / CREDIT / CACK / UNSUB
 *   commit  one store_write: every valid event of the turn and every
 *           durable consumer position acked since the last commit
 *   ack     one ACK per PUB, in event order, only after the commit
 *   relay   EVT to subscriptions with credit, END to finished bounded ones
 *   timers  forget silent peers; flush rate-limited log summaries; sign a
 *           checkpoint when one is due (ckpt.h), and one at the stop
 *
 * The server borrows the store, the schema and the broker key (they must
 * outlive it) and owns its ZeroMQ context, its sockets (the ROUTER and,
 * in secure mode, the ZAP handler's REP) and the registry cache.
 */
#ifndef KABARD_SERVER_H
#define KABARD_SERVER_H

#include <signal.h>
#include <stdint.h>

#include "checkpoint.h"
#include "kabar.h"
#include "kkey.h"
#include "store.h"

typedef struct server server;

typedef struct server_opts {
    const char *listen;             /* ZeroMQ endpoint to bind; wildcard ports allowed */
    store *store;                   /* borrowed */
    const kabar_schema *schema;     /* borrowed; events are validated against it */
    const char *data_dir;           /* for log lines only */
    const kkey *key;                /* borrowed: the broker's key (CURVE server, checkpoints) */
    bool insecure;                  /* NULL mechanism, every peer anonymous (config checks where) */
    int64_t checkpoint_interval_ms; /* a checkpoint at least this often while the log grows */
    uint64_t checkpoint_events;     /* ... or after this many new events (0: no count) */
} server_opts;

/* What the server counted since it started (STATUS reports the same). */
typedef struct server_stats {
    uint64_t published;  /* new events committed */
    uint64_t duplicates; /* retried events acked with their original seq */
    uint64_t rejected;   /* events refused: invalid, or their commit failed */
    uint64_t bad_msgs;   /* messages answered with ERR */
} server_stats;

/*
 * Create the socket and bind it. KABAR_IO with ZeroMQ's reason (address in
 * use, bad endpoint, ...) naming the endpoint. *out set only on success.
 */
int server_new(server **out, const server_opts *opts, kabar_error *err);

/* The bound endpoint with the real port (ZMQ_LAST_ENDPOINT). */
const char *server_endpoint(const server *s);

/*
 * Run turns until *stop becomes non-zero (set by a signal handler). The
 * turn in progress is finished: its commit done, its acks sent, and a
 * checkpoint signed when the log grew since the last one. Returns 0,
 * or KABAR_IO when polling the socket fails for good (a runtime failure).
 */
int server_run(server *s, volatile sig_atomic_t *stop, kabar_error *err);

void server_get_stats(const server *s, server_stats *st);

/* Registered keys valid now (0 in secure mode: nobody can connect). */
size_t server_valid_keys(const server *s);
/* The verifier of the checkpoints this server signs (for DATA/broker.vkey). */
const checkpoint_verifier *server_checkpoint_verifier(const server *s);

/* Close the socket giving queued replies up to ~1 s to leave; NULL is fine. */
void server_destroy(server **s);

#endif /* KABARD_SERVER_H */
