/*
 * bench_replay.c - `kabar bench`'s readers: the whole log replayed over the
 * wire and offline, and fan-out to many bounded subscribers that each check
 * they saw every seq once, in order (bench.h; design notes at the top of
 * cmd_bench.c).
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "store.h"

/* ------------------------------------------------------------------------ */
/* Replay                                                                   */

/* Connect as the bench's reader (plaintext when bc has no server key). */
static int connect_reader(const bench_conn *bc, kabar_client **c, kabar_error *err)
{
    kabar_client_opts o = {.timeout_ms = 10000};
    if (bc->server_key != NULL) {
        o.key = bc->reader;
        o.server_key = bc->server_key;
    }
    return kabar_client_connect(c, bc->endpoint, &o, err);
}

static void rate_finish(rate *r, int64_t t0)
{
    r->seconds = (double)(mono_ns() - t0) / 1e9;
    r->per_sec = r->seconds > 0 ? (double)r->events / r->seconds : 0;
    r->done = true;
}

int bench_replay_wire(const bench_conn *bc, rate *r, kabar_error *err)
{
    kabar_client *c = NULL;
    kabar_sub *s = NULL;
    kabar_sub_opts o = {.start = KABAR_START_FIRST, .until_head = true, .credit = BENCH_SUB_CREDIT};
    int rc = connect_reader(bc, &c, err);
    int64_t t0 = mono_ns();
    if (rc == 0)
        rc = kabar_client_subscribe(c, &o, &s, err);
    kabar_record rec;
    while (rc == 0 && !bench_stop && (rc = kabar_sub_next(s, &rec, 10000, err)) == 0) {
        r->events++;
        r->bytes += rec.len;
    }
    if (rc == KABAR_END)
        rc = 0;
    if (rc == 0)
        rate_finish(r, t0);
    kabar_sub_close(&s);
    kabar_client_destroy(&c);
    return rc;
}

/* Read the whole log offline; with jsonl, also render it as `kabar replay --data` does. */
int bench_replay_offline(const char *data, bool jsonl, rate *r, kabar_error *err)
{
    store *st = NULL;
    store_reader *rd = NULL;
    store_iter *it = NULL;
    store_opts so = {.readonly = true};
    store_filter f = {0};
    kabar_buf out = {0};
    int64_t t0 = mono_ns();
    int rc = store_open(&st, data, &so, err);
    if (rc == 0)
        rc = store_reader_open(st, &rd, err);
    if (rc == 0)
        rc = store_iter_open(rd, &f, &it, err);
    store_record rec;
    while (rc == 0 && !bench_stop && (rc = store_iter_next(it, &rec, err)) == 0) {
        r->events++;
        if (!jsonl) {
            r->bytes += rec.len;
            continue;
        }
        size_t before = out.len;
        rc = kabar_event_to_json(&out, rec.seq, rec.received_at, rec.bytes, rec.len, err);
        if (rc == 0)
            rc = kabar_buf_append(&out, "\n", 1);
        r->bytes += out.len - before;
        if (out.len > (1u << 20)) /* as if written out */
            out.len = 0;
    }
    if (rc == KABAR_END)
        rc = 0;
    if (rc == 0)
        rate_finish(r, t0);
    kabar_buf_free(&out);
    store_iter_close(&it);
    store_reader_close(&rd);
    store_close(&st);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Fan-out                                                                  */

typedef struct fanjob {
    const bench_conn *bc;
    int nsubs;
    uint64_t first, last; /* the seqs every subscriber must see */
    pthread_barrier_t *go;
    uint64_t delivered, missed;
    int64_t t_done;
    int rc;
    kabar_error err;
} fanjob;

/* Take one record (or the end) from sub k; returns 1 on progress, 0 none, <0 error. */
static int fan_take(fanjob *j, kabar_sub *s, uint64_t *next, bool *done, int timeout_ms)
{
    kabar_record rec;
    int rc = kabar_sub_next(s, &rec, timeout_ms, &j->err);
    if (rc == KABAR_TIMEOUT)
        return 0;
    if (rc == KABAR_END) {
        if (*next <= j->last)
            j->missed += j->last + 1 - *next;
        *done = true;
        return 1;
    }
    if (rc != 0)
        return -(j->rc = rc);
    if (rec.seq != *next)
        j->missed++;
    *next = rec.seq + 1;
    j->delivered++;
    return 1;
}

static void fan_loop(fanjob *j, kabar_sub **subs, uint64_t *next, bool *done)
{
    int left = j->nsubs;
    int64_t last_progress = mono_ns();
    while (left > 0 && j->rc == 0 && !bench_stop) {
        int progressed = 0, first_open = -1;
        for (int k = 0; k < j->nsubs && j->rc == 0; k++) {
            if (done[k])
                continue;
            first_open = first_open < 0 ? k : first_open;
            int got;
            while ((got = fan_take(j, subs[k], &next[k], &done[k], 0)) == 1 && !done[k])
                progressed++;
            if (got == 1) {
                progressed++;
                left--;
            }
        }
        if (progressed > 0) {
            last_progress = mono_ns();
        } else if (first_open >= 0 && j->rc == 0) {
            if (fan_take(j, subs[first_open], &next[first_open], &done[first_open], 2) == 1) {
                last_progress = mono_ns();
                left -= done[first_open] ? 1 : 0;
            } else if (mono_ns() - last_progress > BENCH_STALL_NS) {
                j->rc = kabar_error_set(&j->err, KABAR_TIMEOUT,
                                        "a subscriber received nothing for 30 s");
            }
        }
    }
}

static void *fan_thread(void *arg)
{
    fanjob *j = arg;
    kabar_client *c = NULL;
    kabar_sub *subs[BENCH_SUBS_PER_CON] = {0};
    uint64_t next[BENCH_SUBS_PER_CON];
    bool done[BENCH_SUBS_PER_CON] = {0};
    kabar_sub_opts o = {.start = KABAR_START_SEQ,
                        .seq = j->first,
                        .until_seq = j->last,
                        .credit = BENCH_SUB_CREDIT};
    j->rc = connect_reader(j->bc, &c, &j->err);
    for (int k = 0; k < j->nsubs && j->rc == 0; k++) {
        j->rc = kabar_client_subscribe(c, &o, &subs[k], &j->err);
        next[k] = j->first;
    }
    pthread_barrier_wait(j->go);
    if (j->rc == 0)
        fan_loop(j, subs, next, done);
    j->t_done = mono_ns();
    for (int k = 0; k < j->nsubs; k++)
        kabar_sub_close(&subs[k]);
    kabar_client_destroy(&c);
    return NULL;
}

int bench_run_fanout(const bench_conn *bc, const evset *set, fan_result *r, kabar_error *err)
{
    enum { NCON = (BENCH_SUBSCRIBERS + BENCH_SUBS_PER_CON - 1) / BENCH_SUBS_PER_CON };
    fanjob jobs[NCON];
    pthread_t tid[NCON];
    pthread_barrier_t go;
    kabar_client *c = NULL;
    kabar_head h = {0};
    int rc = connect_reader(bc, &c, err);
    if (rc == 0)
        rc = kabar_client_head(c, &h, err);
    kabar_client_destroy(&c);
    if (rc != 0)
        return rc;
    memset(r, 0, sizeof *r);
    pthread_barrier_init(&go, NULL, NCON + 1);
    int nthreads = 0;
    for (int k = 0; k < NCON; k++) {
        int left = BENCH_SUBSCRIBERS - k * BENCH_SUBS_PER_CON;
        jobs[k] = (fanjob){.bc = bc,
                           .nsubs = left < BENCH_SUBS_PER_CON ? left : BENCH_SUBS_PER_CON,
                           .first = h.seq + 1,
                           .last = h.seq + set->n,
                           .go = &go};
        if (pthread_create(&tid[k], NULL, fan_thread, &jobs[k]) != 0)
            break;
        nthreads++;
    }
    for (int k = nthreads; k < NCON; k++) { /* release the barrier for threads never made */
        jobs[k].rc = kabar_error_set(&jobs[k].err, KABAR_NO_MEMORY, "cannot start a thread");
        pthread_barrier_wait(&go);
    }
    /* The publisher's own barrier opens once every subscriber is subscribed. */
    int prc = bench_run_publish(bc, set, 1, BENCH_WINDOW, &go, &r->pub, err);
    int64_t t_last = 0;
    for (int k = 0; k < nthreads; k++)
        pthread_join(tid[k], NULL);
    for (int k = 0; k < NCON; k++) {
        if (jobs[k].rc != 0 && rc == 0)
            rc = kabar_error_set(err, jobs[k].rc, "subscriber connection %d: %s", k + 1,
                                 jobs[k].err.message);
        r->delivered += jobs[k].delivered;
        r->missed += jobs[k].missed;
        t_last = jobs[k].t_done > t_last ? jobs[k].t_done : t_last;
    }
    pthread_barrier_destroy(&go);
    if (rc == 0)
        rc = prc;
    r->events = set->n;
    r->subscribers = BENCH_SUBSCRIBERS;
    r->publish_seconds = r->pub.seconds;
    r->seconds = (double)(t_last - r->pub.t_start) / 1e9;
    r->tail_ms = (double)(t_last - r->pub.t_end) / 1e6;
    r->per_sec = r->seconds > 0 ? (double)r->delivered / r->seconds : 0;
    r->done = rc == 0;
    return rc;
}
