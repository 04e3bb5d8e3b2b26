/*
 * bench.h - the parts of `kabar bench` (private to tools/cmd_bench.c and
 * tools/bench_*.c).
 *
 * cmd_bench.c is the command: options, the runs and the report;
 * bench_broker.c starts and stops the bench's own kabard (the broker under
 * test when no --broker is given); bench_publish.c makes the events and
 * publishes them from many connections; bench_replay.c replays the log (over
 * the wire and offline) and measures fan-out to many subscribers;
 * bench_secure.c registers the bench's keys and asks a broker who a key is.
 * The design notes are at the top of cmd_bench.c.
 */
#ifndef KABAR_BENCH_H
#define KABAR_BENCH_H

#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "kabar.h"
#include "kkey.h"

#define BENCH_WINDOW       256
#define BENCH_SUBSCRIBERS  50
#define BENCH_SUBS_PER_CON 10
#define BENCH_SUB_CREDIT   1024
#define BENCH_PAD_ITEM     120 /* padding text per array item, chars */
#define BENCH_STALL_NS     (30 * 1000000000LL)

/* Set by SIGINT/SIGTERM: every loop stops early. */
extern volatile sig_atomic_t bench_stop;

static inline int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void progress(const char *what)
{
    if (isatty(STDERR_FILENO))
        fprintf(stderr, "kabar bench: %s...\n", what);
}

/* Where the bench connects, and as whom. */
typedef struct bench_conn {
    const char *endpoint;
    const uint8_t *server_key; /* the broker's public key; NULL: plaintext, unsigned */
    const kkey *reader;        /* identity of the readers (replay, fan-out); NULL: plaintext */
} bench_conn;

/* A run's events, each encoded by kabar_event_from_json (malloc'd). */
typedef struct evset {
    uint8_t **bytes;
    size_t *len;
    size_t n;
    size_t total_bytes;
    const kkey *key; /* the publisher's identity, its source's key; NULL: plaintext */
} evset;

/* One publishing run, as the publishers saw it. */
typedef struct pub_result {
    uint64_t events; /* offered */
    uint64_t acked, duplicates, rejected;
    double seconds, per_sec;
    double p50_us, p99_us, max_us; /* ack latency of the first publisher */
    int64_t t_start, t_end;        /* monotonic ns: the barrier, the last flush */
    char first_reject[KABAR_ERROR_MESSAGE_MAX + 64];
} pub_result;

/* One replay: events and bytes read, and how fast. */
typedef struct rate {
    uint64_t events, bytes;
    double seconds, per_sec;
    bool done;
} rate;

/* One fan-out run: one publisher, BENCH_SUBSCRIBERS subscribers. */
typedef struct fan_result {
    uint64_t events, delivered, missed;
    int subscribers;
    double seconds, per_sec; /* publish start to last subscriber done */
    double publish_seconds;  /* publish start to last ack */
    double tail_ms;          /* last ack to last subscriber done */
    bool done;
    pub_result pub;
} fan_result;

/* bench_publish.c */

/*
 * Encode n events of about `size` bytes from `source`, ids "<tag>-<i>".
 * On success the caller frees *s with bench_evset_free.
 */
int bench_evset_make(evset *s, const char *tag, const char *source, size_t n, size_t size,
                     kabar_error *err);
void bench_evset_free(evset *s);
/*
 * Publish sets[0..n) from n connections at once with `window`, after
 * waiting on extra_go when not NULL. Fills *r; returns non-zero (with err)
 * when a connection failed.
 */
int bench_run_publish(const bench_conn *bc, const evset *sets, size_t n, uint32_t window,
                      pthread_barrier_t *extra_go, pub_result *r, kabar_error *err);

/* bench_replay.c */

/* Replay the whole log over the wire, one subscription up to the head. */
int bench_replay_wire(const bench_conn *bc, rate *r, kabar_error *err);
/* Read the whole log offline; with jsonl, also render it as `kabar replay --data` does. */
int bench_replay_offline(const char *data, bool jsonl, rate *r, kabar_error *err);
/*
 * Publish `set` from one connection while BENCH_SUBSCRIBERS bounded
 * subscriptions (from the next seq to the last one published) read it;
 * fills *r (r->missed: records a subscriber missed or got out of order).
 */
int bench_run_fanout(const bench_conn *bc, const evset *set, fan_result *r, kabar_error *err);

/* bench_secure.c */

/* One principal of the bench: an agency id and its generated key. */
typedef struct bench_principal {
    const char *id;
    const char *role; /* "agent" or "oversight" */
    kkey key;
} bench_principal;

/*
 * Generate a key for each of p[0..n) and register the agencies and keys in
 * the log in `data` (created), before the bench's kabard opens it. 0, or
 * an error saying what failed.
 */
int bench_register(const char *data, bench_principal *p, size_t n, kabar_error *err);

/*
 * Ask the broker at bc->endpoint who bc->reader is (CALL whoami): its agency
 * id (KABAR_MAX_AGENCY_LEN + 1 bytes) and role (16 bytes).
 */
int bench_whoami(const bench_conn *bc, char *agency, char *role, kabar_error *err);

/* bench_broker.c */

/* The broker under test: ours (pid > 0) or the user's --broker (all zero). */
typedef struct bench_broker {
    pid_t pid;               /* 0 when the broker is not ours */
    char dir[PATH_MAX - 64]; /* our temporary directory, "" when none */
    char data[PATH_MAX];     /* its log directory, "" when unknown */
    char log[PATH_MAX];      /* kabard's stderr */
    char endpoint[256];
} bench_broker;

/*
 * Start kabard (beside this binary, or $KABAR_KABARD) on a fresh log in a
 * new temporary directory, with --unsafe-nosync when nosync and --insecure
 * when plaintext; unless plaintext, with the principals p[0..np) given keys
 * and registered first (bench_register) and the broker's public key read
 * into server_pk. Waits up to 15 s for kabard's endpoint file, which fills
 * b->endpoint. On failure (err set; the end of kabard's log on stderr when
 * it ran) *b may still hold a directory or a process: call
 * bench_broker_stop all the same.
 */
int bench_broker_start(bench_broker *b, bool nosync, bool plaintext, bench_principal *p, size_t np,
                       uint8_t server_pk[32], kabar_error *err);
/*
 * Stop our kabard (SIGTERM; SIGKILL after 10 s; a warning and the end of
 * its log when it did not exit 0) and remove our directory. Does nothing
 * for a broker that is not ours (a zeroed *b); safe to call twice.
 */
void bench_broker_stop(bench_broker *b);

#endif /* KABAR_BENCH_H */
