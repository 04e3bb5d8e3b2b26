/*
 * inbox.c - durable subscription -> hand-off (contract in inbox.h).
 */
#include "inbox.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "klog.h"

#define BACKOFF_FIRST_MS 200
#define BACKOFF_MAX_MS   5000

struct inbox {
    inbox_opts o;
    pthread_t th;
    char name[KABAR_MAX_ID_LEN + 1];
    kabar_client *c;
    kabar_sub *sub;
    bool lost;         /* a keep-alive failed: reconnect after the current event */
    uint64_t pos;      /* last seq recorded in the agent store */
    uint64_t pend_pos; /* last seq handed off, not yet recorded */
    uint64_t pend_n;
    uint64_t ack_pos; /* last seq to acknowledge to the broker */
    uint64_t acked;
    int64_t batch_ms;
    kabar_buf ev;    /* the current event, copied out of the subscription */
    kabar_buf retry; /* a re-queued dead letter's bytes */
};

enum { DELIVERED = 0, PARKED, STOPPED };

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Keep the broker hearing from us while a hand-off takes its time. */
static void keepalive(void *arg)
{
    inbox *in = arg;
    kabar_head h;
    kabar_error e = {0};
    if (in->c != NULL && !in->lost && kabar_client_head(in->c, &h, &e) != 0)
        in->lost = true;
}

static void nap(inbox *in, int ms)
{
    int64_t end = mono_ms() + ms, tick = mono_ms() + 1000;
    while (!atomic_load(in->o.stop) && mono_ms() < end) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (mono_ms() >= tick) {
            keepalive(in);
            tick = mono_ms() + 1000;
        }
    }
}

/* Record what was handed off, then acknowledge it to the broker. */
static void commit(inbox *in)
{
    kabar_error e = {0};
    if (in->pend_pos > in->pos) {
        if (handoff_sync(in->o.out, &e) != 0 ||
            agentdb_inbox_commit(in->o.db, in->pend_pos, in->pend_n, kabar_now(), &e) != 0) {
            klog(KLOG_ERROR, "KABAR-AGENT-INBOX-FAIL", "cannot record the inbox position: %s",
                 e.message);
            return;
        }
        in->pos = in->pend_pos;
        in->pend_n = 0;
    }
    if (in->ack_pos > in->pos)
        in->ack_pos = in->pos;
    if (in->sub != NULL && in->ack_pos > in->acked) {
        if (kabar_sub_ack(in->sub, in->ack_pos, &e) != 0)
            in->lost = true;
        else
            in->acked = in->ack_pos;
    }
    in->batch_ms = mono_ms();
}

/*
 * Try one event up to max_tries times. DELIVERED, STOPPED (stopping while
 * waiting to retry: nothing recorded), or PARKED after the last failure
 * with *last holding its reason.
 */
static int try_all(inbox *in, uint64_t seq, int64_t received_at, const uint8_t *ev, size_t len,
                   kabar_error *last)
{
    int backoff = BACKOFF_FIRST_MS;
    for (uint32_t attempt = 1; attempt <= in->o.max_tries; attempt++) {
        if (handoff_try(in->o.out, seq, received_at, ev, len, attempt, last) == 0)
            return DELIVERED;
        klog(KLOG_WARN, "KABAR-AGENT-HANDOFF-FAIL", "event seq %llu, try %u of %u: %s",
             (unsigned long long)seq, attempt, in->o.max_tries, last->message);
        if (attempt == in->o.max_tries)
            break;
        nap(in, backoff);
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
        if (atomic_load(in->o.stop))
            return STOPPED;
    }
    return PARKED;
}

static void park(inbox *in, uint64_t seq, int64_t received_at, const uint8_t *ev, size_t len,
                 uint32_t tries, const kabar_error *why, bool from_retry)
{
    agentdb_letter l = {.key = seq, .at = kabar_now(), .received_at = received_at};
    l.tries = tries;
    snprintf(l.code, sizeof l.code, "HANDOFF");
    snprintf(l.reason, sizeof l.reason, "%s", why->message);
    l.bytes = ev;
    l.len = len;
    kabar_error e = {0};
    if (agentdb_dead_put(in->o.db, &l, from_retry ? 0 : seq, from_retry, &e) != 0) {
        klog(KLOG_ERROR, "KABAR-AGENT-INBOX-FAIL", "cannot park event seq %llu: %s",
             (unsigned long long)seq, e.message);
        in->lost = true; /* not recorded: have the broker send it again */
        return;
    }
    klog(KLOG_WARN, "KABAR-AGENT-DEAD-LETTER",
         "event seq %llu parked after %u tries: %s (see kabar agent inbox --dead)",
         (unsigned long long)seq, tries, why->message);
    if (!from_retry) {
        in->pos = in->pend_pos = seq;
        in->ack_pos = seq;
    }
}

/* One event from the subscription. */
static int deliver(inbox *in, uint64_t seq, int64_t received_at)
{
    const uint8_t *ev = (const uint8_t *)in->ev.data;
    size_t len = in->ev.len;
    if (seq <= in->pos) { /* handed off before a crash; only the ack was missing */
        in->ack_pos = seq;
        return DELIVERED;
    }
    kabar_error why = {0};
    int r = try_all(in, seq, received_at, ev, len, &why);
    if (r == DELIVERED) {
        in->pend_pos = seq;
        in->pend_n++;
        in->ack_pos = seq;
    } else if (r == PARKED) {
        commit(in); /* the events before it first */
        park(in, seq, received_at, ev, len, in->o.max_tries, &why, false);
    }
    return r;
}

/* Re-queued dead letters, oldest first. */
static void drain_retries(inbox *in)
{
    while (!atomic_load(in->o.stop)) {
        agentdb_letter l;
        bool found = false;
        kabar_error e = {0};
        if (agentdb_retry_first(in->o.db, &l, &in->retry, &found, &e) != 0) {
            klog(KLOG_ERROR, "KABAR-AGENT-INBOX-FAIL", "%s", e.message);
            return;
        }
        if (!found)
            return;
        kabar_error why = {0};
        int r = try_all(in, l.key, l.received_at, l.bytes, l.len, &why);
        if (r == STOPPED)
            return;
        if (r == DELIVERED) {
            if (handoff_sync(in->o.out, &e) != 0 || agentdb_retry_done(in->o.db, l.key, &e) != 0)
                klog(KLOG_ERROR, "KABAR-AGENT-INBOX-FAIL", "%s", e.message);
            else
                klog(KLOG_INFO, "KABAR-AGENT-RETRY-OK", "dead letter seq %llu delivered",
                     (unsigned long long)l.key);
        } else {
            park(in, l.key, l.received_at, l.bytes, l.len, l.tries + in->o.max_tries, &why, true);
        }
    }
}

static void disconnect(inbox *in)
{
    kabar_sub_close(&in->sub);
    kabar_client_destroy(&in->c);
    in->lost = false;
    /*
     * Acks only ever name seqs received on the current subscription (the
     * broker refuses an ack above what it sent); an ack that was lost is
     * made good when the broker sends the event again and it is skipped.
     */
    in->acked = in->ack_pos = 0;
}

/* What to do about a refusal of the subscription, or "". */
static const char *refusal_hint(int code)
{
    switch (code) {
    case KABAR_NOT_OWN_CONSUMER:
        return " (the durable consumer belongs to another principal: was this agency's inbox "
               "first created with another key's agency? the operator can remove the consumer)";
    case KABAR_NOT_OWN_TARGET:
        return " (the key is registered for another agency: give kabar-agent its own agency's "
               "key)";
    default:
        return "";
    }
}

static bool attach(inbox *in, int *backoff)
{
    kabar_error e = {0};
    kabar_client_opts co = {.timeout_ms = in->o.timeout_ms,
                            .window = 16,
                            .key = in->o.key,
                            .server_key = in->o.server_key};
    int rc = 0;
    if (in->c == NULL)
        rc = kabar_client_connect(&in->c, in->o.endpoint, &co, &e);
    if (rc == 0) {
        kabar_sub_opts so = {.target = in->o.agency,
                             .durable = in->name,
                             .start = KABAR_START_FIRST,
                             .credit = INBOX_BATCH};
        rc = kabar_client_subscribe(in->c, &so, &in->sub, &e);
        if (rc != 0)
            klog(rc == KABAR_NOT_OWN_CONSUMER || rc == KABAR_NOT_OWN_TARGET ? KLOG_ERROR
                                                                            : KLOG_WARN,
                 "KABAR-AGENT-INBOX-FAIL", "cannot subscribe as %s: %s: %s%s", in->name,
                 kabar_errname(rc), e.message, refusal_hint(rc));
    }
    if (rc != 0) {
        disconnect(in);
        nap(in, *backoff);
        *backoff = *backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : *backoff * 2;
        return false;
    }
    *backoff = BACKOFF_FIRST_MS;
    klog(KLOG_INFO, "KABAR-AGENT-INBOX-UP",
         "inbox subscribed as %s (target %s, handed off up to seq %llu)", in->name, in->o.agency,
         (unsigned long long)in->pos);
    return true;
}

static void *run(void *arg)
{
    inbox *in = arg;
    int backoff = BACKOFF_FIRST_MS;
    in->batch_ms = mono_ms();
    while (!atomic_load(in->o.stop)) {
        if (in->sub == NULL && !attach(in, &backoff))
            continue;
        drain_retries(in);
        kabar_record rec;
        kabar_error e = {0};
        int rc = kabar_sub_next(in->sub, &rec, 1000, &e);
        if (rc == KABAR_TIMEOUT) {
            commit(in);
            continue;
        }
        if (rc != 0) {
            commit(in);
            klog(KLOG_WARN, "KABAR-AGENT-INBOX-LOST",
                 "inbox subscription lost: %s: %s; resubscribing", kabar_errname(rc), e.message);
            disconnect(in);
            continue;
        }
        in->ev.len = 0;
        if (kabar_buf_append(&in->ev, rec.bytes, rec.len) != 0) {
            klog(KLOG_ERROR, "KABAR-AGENT-INBOX-FAIL", "out of memory copying an event");
            disconnect(in);
            nap(in, BACKOFF_MAX_MS);
            continue;
        }
        if (deliver(in, rec.seq, rec.received_at) == STOPPED)
            break;
        if (in->pend_n >= INBOX_BATCH || mono_ms() - in->batch_ms >= 1000)
            commit(in);
        if (in->lost) {
            commit(in);
            disconnect(in);
        }
    }
    commit(in);
    disconnect(in);
    return NULL;
}

int inbox_start(inbox **out, const inbox_opts *o, kabar_error *err)
{
    inbox *in = calloc(1, sizeof *in);
    if (in == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    in->o = *o;
    if (in->o.max_tries < 1)
        in->o.max_tries = 1;
    snprintf(in->name, sizeof in->name, "%s%s", INBOX_PREFIX, o->agency);
    int rc = agentdb_inbox_pos(o->db, &in->pos, err);
    if (rc != 0) {
        free(in);
        return rc;
    }
    in->pend_pos = in->pos;
    handoff_set_tick(o->out, keepalive, in);
    if (pthread_create(&in->th, NULL, run, in) != 0) {
        free(in);
        return kabar_error_set(err, KABAR_NO_MEMORY, "cannot start the inbox thread");
    }
    *out = in;
    return 0;
}

void inbox_join(inbox **pin)
{
    if (pin == NULL || *pin == NULL)
        return;
    inbox *in = *pin;
    pthread_join(in->th, NULL);
    kabar_buf_free(&in->ev);
    kabar_buf_free(&in->retry);
    free(in);
    *pin = NULL;
}
