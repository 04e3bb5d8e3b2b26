/*
 * forward.c - outbox -> broker (contract in forward.h).
 *
 * Design notes. One round: read up to FORWARD_BATCH entries after the last
 * one sent on this connection, publish them (the client blocks while its
 * window is full, delivering results through on_result), flush, then apply
 * all results in one agent-store transaction. A crash anywhere in between
 * leaves acked events in the outbox; they are sent again after the restart
 * and the broker answers them as duplicates with their original seqs, so
 * the log gets each event once and in outbox order.
 *
 *     outbox:  [p1 p2 p3 p4 p5 ...]      next = first pos not yet sent
 *               \__ published, results pending __/
 *     results -> delete acked, move rejected, keep transient (resend from there)
 */
#include "forward.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "klog.h"
#include "kkey.h"
#include "mpr.h"

struct forward {
    forward_opts o;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t wakeups; /* under mu */
    kabar_client *c;
    bool up;       /* the state last recorded */
    bool reported; /* a down state was logged since the last up */
    uint64_t next; /* next outbox pos to send on this connection */
    bool lost;     /* the client gave up during this round */
    kabar_error lost_err;
    uint64_t transient_pos; /* first entry refused for a transient reason, 0: none */
    agentdb_result *res;
    size_t nres, capres;
    int64_t last_probe_ms;
    uint64_t last_head;
    char key_id[KKEY_ID_TEXT]; /* of o.key, "" without */
    /* a key/role problem met in this round (forward_key_problem), 0: none */
    int kp_code;
    char kp_message[KABAR_ERROR_MESSAGE_MAX];
    bool accepted; /* an event was accepted in this round */
    int kp_backoff;
    /* the problem recorded in the agent store, 0: none */
    int problem_code;
    char problem[KABAR_ERROR_MESSAGE_MAX];
};

bool forward_transient(int code)
{
    switch (code) {
    case KABAR_DISK_FULL:
    case KABAR_STORE:
    case KABAR_SHUTTING_DOWN:
    case KABAR_IO:
    case KABAR_NO_MEMORY:
    case KABAR_TIMEOUT:
    case KABAR_CONNECT:
    case KABAR_LOCKED:
        return true;
    default:
        return false;
    }
}

bool forward_key_problem(int code)
{
    switch (code) {
    case KABAR_UNKNOWN_KEY:
    case KABAR_BAD_SIGNATURE:
    case KABAR_UNSIGNED:
    case KABAR_CANNOT_PUBLISH:
        return true;
    default:
        return false;
    }
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sleep up to ms, in small steps, returning early when stopping. */
static void nap(forward *f, int ms)
{
    int64_t end = mono_ms() + ms;
    while (!atomic_load(f->o.stop) && mono_ms() < end) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Record the condition for `kabar agent status` when it changed; code 0 clears it. */
static void set_problem(forward *f, int code, const char *message)
{
    kabar_error e = {0};
    if (code == f->problem_code && (code == 0 || strcmp(message, f->problem) == 0))
        return;
    if (agentdb_set_problem(f->o.db, code ? kabar_errname(code) : "", code ? message : "",
                            kabar_now(), &e) != 0) {
        klog(KLOG_ERROR, "KABAR-AGENT-STORE-FAIL", "%s", e.message);
        return;
    }
    f->problem_code = code;
    snprintf(f->problem, sizeof f->problem, "%s", code ? message : "");
}

/* A key/role refusal of the whole batch: what it means and what to do. */
static void key_problem_text(const forward *f, int code, const char *said, char *out, size_t cap)
{
    /* The instructions first: a long broker text is what gets cut. */
    switch (code) {
    case KABAR_UNKNOWN_KEY:
        snprintf(out, cap,
                 "key %s of %s is not valid at the broker (revoked?): have the operator register "
                 "a new key (kabar agency rotate-key %s --key NEW.pub) and restart kabar-agent "
                 "with it; broker: %s",
                 f->key_id, f->o.agency, f->o.agency, said);
        break;
    case KABAR_BAD_SIGNATURE:
        snprintf(out, cap,
                 "the batch signature by key %s does not verify at the broker: check that --key "
                 "is %s's registered key; broker: %s",
                 f->key_id, f->o.agency, said);
        break;
    case KABAR_UNSIGNED:
        snprintf(out, cap,
                 "the broker requires signed events: run kabar-agent with --key and "
                 "--server-key, not --insecure; broker: %s",
                 said);
        break;
    default:
        snprintf(out, cap,
                 "key %s may not publish: it must be registered for %s with role agent or "
                 "oversight (kabar agency show %s); broker: %s",
                 f->key_id[0] ? f->key_id : "(none)", f->o.agency, f->o.agency, said);
        break;
    }
}

static void on_result(void *arg, const kabar_pub_result *r)
{
    forward *f = arg;
    uint64_t pos = (uint64_t)(uintptr_t)r->user;
    if (r->code == KABAR_OK)
        f->accepted = true;
    if (r->code != KABAR_OK && forward_key_problem(r->code)) {
        if (f->transient_pos == 0 || pos < f->transient_pos)
            f->transient_pos = pos;
        if (f->kp_code == 0) {
            f->kp_code = r->code;
            key_problem_text(f, r->code, r->message ? r->message : "", f->kp_message,
                             sizeof f->kp_message);
        }
        return;
    }
    if (r->code != KABAR_OK && forward_transient(r->code)) {
        if (f->transient_pos == 0 || pos < f->transient_pos)
            f->transient_pos = pos;
        klog(KLOG_WARN, "KABAR-AGENT-FORWARD-RETRY", "outbox event %llu refused for now: %s: %s",
             (unsigned long long)pos, kabar_errname(r->code), r->message);
        return;
    }
    if (f->nres == f->capres) {
        size_t cap = f->capres ? f->capres * 2 : FORWARD_BATCH;
        agentdb_result *n = realloc(f->res, cap * sizeof *n);
        if (n == NULL) {
            /* Not recorded: the entry stays in the outbox and is sent again. */
            return;
        }
        f->res = n;
        f->capres = cap;
    }
    agentdb_result *x = &f->res[f->nres++];
    x->pos = pos;
    x->seq = r->seq;
    x->code = r->code;
    snprintf(x->message, sizeof x->message, "%s", r->message ? r->message : "");
    if (r->code != KABAR_OK)
        klog(KLOG_WARN, "KABAR-AGENT-REJECTED",
             "the broker rejected outbox event %llu: %s: %s (kept in the rejected list)",
             (unsigned long long)pos, kabar_errname(r->code), x->message);
}

static void set_state(forward *f, bool up, const char *why)
{
    kabar_error e = {0};
    if (up) {
        klog(KLOG_INFO, "KABAR-AGENT-BROKER-UP", "connected to the broker at %s", f->o.endpoint);
        f->reported = false;
    } else if (!f->reported) {
        klog(KLOG_WARN, "KABAR-AGENT-BROKER-DOWN",
             "broker at %s unreachable: %s; events stay in the outbox, reconnecting with backoff",
             f->o.endpoint, why);
        f->reported = true;
    }
    if (up != f->up && agentdb_set_connected(f->o.db, up, kabar_now(), &e) != 0)
        klog(KLOG_ERROR, "KABAR-AGENT-STORE-FAIL", "%s", e.message);
    f->up = up;
}

static void drop(forward *f, const char *why)
{
    kabar_client_destroy(&f->c);
    set_state(f, false, why);
}

static int publish_one(void *arg, const agentdb_item *it)
{
    forward *f = arg;
    if (atomic_load(f->o.stop))
        return 1;
    kabar_error e = {0};
    if (kabar_client_publish(f->c, it->bytes, it->len, (void *)(uintptr_t)it->pos, &e) != 0) {
        f->lost = true;
        f->lost_err = e;
        return 2;
    }
    f->next = it->pos + 1;
    return 0;
}

static void apply_results(forward *f)
{
    kabar_error e = {0};
    if (f->nres == 0)
        return;
    if (agentdb_outbox_done(f->o.db, f->res, f->nres, kabar_now(), &e) != 0)
        klog(KLOG_ERROR, "KABAR-AGENT-STORE-FAIL", "recording acks: %s (will resend)", e.message);
    f->nres = 0;
}

static void probe(forward *f)
{
    kabar_head h;
    kabar_error e = {0};
    f->last_probe_ms = mono_ms();
    if (kabar_client_head(f->c, &h, &e) != 0) {
        drop(f, e.message);
        return;
    }
    if (h.seq != f->last_head) {
        f->last_head = h.seq;
        if (agentdb_set_broker_head(f->o.db, h.seq, kabar_now(), &e) != 0)
            klog(KLOG_ERROR, "KABAR-AGENT-STORE-FAIL", "%s", e.message);
    }
}

/* Wait for a wake-up or the probe interval. */
static void idle(forward *f, uint64_t *seen)
{
    pthread_mutex_lock(&f->mu);
    if (f->wakeups == *seen && !atomic_load(f->o.stop)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += (long)FORWARD_PROBE_MS % 1000 * 1000000;
        ts.tv_sec += FORWARD_PROBE_MS / 1000 + ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&f->cv, &f->mu, &ts);
    }
    *seen = f->wakeups;
    pthread_mutex_unlock(&f->mu);
}

/* The answer to CALL whoami. */
typedef struct whoami {
    char principal[KABAR_MAX_AGENCY_LEN + 1];
    char role[16];
} whoami;

static void copy_str(char *out, size_t cap, const mpr_item *it)
{
    size_t n = it->len < cap - 1 ? it->len : cap - 1;
    memcpy(out, it->str, n);
    out[n] = '\0';
}

static int parse_whoami(const kabar_buf *b, whoami *w, kabar_error *err)
{
    mpr r;
    mpr_item it, v;
    mpr_init(&r, b->data, b->len);
    r.canonical = false;
    memset(w, 0, sizeof *w);
    int rc = mpr_expect(&r, MPR_MAP, &it, "whoami result", err);
    for (uint32_t i = 0; rc == 0 && i < it.count; i++) {
        mpr_item k;
        rc = mpr_expect(&r, MPR_STR, &k, "whoami key", err);
        if (rc != 0)
            break;
        bool principal = k.len == 9 && memcmp(k.str, "principal", 9) == 0;
        bool role = k.len == 4 && memcmp(k.str, "role", 4) == 0;
        if (!principal && !role) {
            rc = mpr_skip(&r, 8, err);
            continue;
        }
        rc = mpr_expect(&r, MPR_STR, &v, "whoami value", err);
        if (rc == 0)
            copy_str(principal ? w->principal : w->role,
                     principal ? sizeof w->principal : sizeof w->role, &v);
    }
    return rc;
}

/*
 * With a key: is the principal the broker sees this agent's agency, in a
 * role that may publish? 0 yes (or the broker cannot say), KABAR_CONNECT
 * when the call failed (a connection problem), or the refusal code with
 * *problem filled.
 */
static int check_principal(forward *f, char *problem, size_t cap)
{
    kabar_buf out = {0};
    kabar_error e = {0};
    whoami w;
    if (f->o.key == NULL)
        return 0;
    int rc = kabar_client_call(f->c, "whoami", NULL, 0, &out, &e);
    if (rc == KABAR_UNKNOWN_METHOD) {
        kabar_buf_free(&out);
        return 0; /* an older broker: the results will tell */
    }
    if (rc != 0) {
        kabar_buf_free(&out);
        if (forward_key_problem(rc)) {
            key_problem_text(f, rc, e.message, problem, cap);
            return rc;
        }
        snprintf(problem, cap, "%s", e.message);
        return KABAR_CONNECT;
    }
    rc = parse_whoami(&out, &w, &e);
    kabar_buf_free(&out);
    if (rc != 0)
        return 0; /* unreadable: let the results tell */
    if (strcmp(w.principal, f->o.agency) != 0) {
        snprintf(problem, cap,
                 "key %s is registered for agency \"%s\", not \"%s\": start kabar-agent with "
                 "%s's own key (events stay in the outbox)",
                 f->key_id, w.principal, f->o.agency, f->o.agency);
        return KABAR_NOT_OWN_SOURCE;
    }
    if (strcmp(w.role, "agent") != 0 && strcmp(w.role, "oversight") != 0) {
        snprintf(problem, cap,
                 "agency %s has role %s, which may not publish its own events: the operator "
                 "registers an agency's agent with --role agent (events stay in the outbox)",
                 f->o.agency, w.role);
        return KABAR_CANNOT_PUBLISH;
    }
    return 0;
}

static void backoff_next(int *backoff, int max)
{
    *backoff = *backoff * 2 > max ? max : *backoff * 2;
}

static bool connect_broker(forward *f, int *backoff)
{
    kabar_client_opts co = {.timeout_ms = f->o.timeout_ms,
                            .window = f->o.window,
                            .key = f->o.key,
                            .server_key = f->o.server_key};
    kabar_error e = {0};
    char problem[KABAR_ERROR_MESSAGE_MAX];
    if (kabar_client_connect(&f->c, f->o.endpoint, &co, &e) != 0) {
        set_state(f, false, e.message);
        set_problem(f, KABAR_CONNECT, e.message);
        nap(f, *backoff);
        backoff_next(backoff, FORWARD_BACKOFF_MAX_MS);
        return false;
    }
    int who = check_principal(f, problem, sizeof problem);
    if (who == KABAR_CONNECT) {
        kabar_client_destroy(&f->c);
        set_state(f, false, problem);
        set_problem(f, KABAR_CONNECT, problem);
        nap(f, *backoff);
        backoff_next(backoff, FORWARD_BACKOFF_MAX_MS);
        return false;
    }
    if (who != 0) {
        kabar_client_destroy(&f->c);
        if (f->problem_code != who)
            klog(KLOG_ERROR, "KABAR-AGENT-KEY-PROBLEM", "%s", problem);
        set_problem(f, who, problem);
        nap(f, f->kp_backoff);
        backoff_next(&f->kp_backoff, FORWARD_PROBLEM_BACKOFF_MAX_MS);
        return false;
    }
    set_problem(f, 0, "");
    *backoff = 100;
    kabar_client_on_result(f->c, on_result, f);
    f->next = 0; /* everything still in the outbox goes again */
    f->last_probe_ms = 0;
    set_state(f, true, NULL);
    probe(f);
    return f->c != NULL;
}

/* One round; returns the number of entries published. */
static size_t round_once(forward *f)
{
    size_t count = 0;
    kabar_error e = {0};
    f->lost = false;
    f->transient_pos = 0;
    f->kp_code = 0;
    f->accepted = false;
    int rc = agentdb_outbox_scan(f->o.db, f->next, FORWARD_BATCH, publish_one, f, &count, &e);
    if (rc != 0 && rc != 1 && rc != 2)
        klog(KLOG_ERROR, "KABAR-AGENT-STORE-FAIL", "reading the outbox: %s", e.message);
    if (count > 0 && !f->lost && kabar_client_flush(f->c, &e) != 0) {
        f->lost = true;
        f->lost_err = e;
    }
    apply_results(f);
    if (f->kp_code != 0) {
        /* Logged when it first appears, and then at most every backoff. */
        klog(KLOG_ERROR, "KABAR-AGENT-KEY-PROBLEM", "%s; retrying in %d s", f->kp_message,
             f->kp_backoff / 1000);
        set_problem(f, f->kp_code, f->kp_message);
    } else if (f->accepted && f->problem_code != 0) {
        set_problem(f, 0, "");
        f->kp_backoff = 1000;
    }
    if (f->lost) {
        drop(f, f->lost_err.message);
    } else if (f->kp_code != 0) {
        f->next = f->transient_pos;
        nap(f, f->kp_backoff);
        backoff_next(&f->kp_backoff, FORWARD_PROBLEM_BACKOFF_MAX_MS);
    } else if (f->transient_pos != 0) {
        f->next = f->transient_pos;
        nap(f, FORWARD_BACKOFF_MAX_MS);
    }
    return count;
}

static void *run(void *arg)
{
    forward *f = arg;
    int backoff = 100;
    uint64_t seen = 0;
    while (!atomic_load(f->o.stop)) {
        if (f->c == NULL && !connect_broker(f, &backoff))
            continue;
        size_t n = round_once(f);
        if (f->c == NULL || n > 0 || atomic_load(f->o.stop))
            continue;
        idle(f, &seen);
        if (f->c != NULL && mono_ms() - f->last_probe_ms >= FORWARD_PROBE_MS)
            probe(f);
    }
    kabar_client_destroy(&f->c);
    return NULL;
}

int forward_start(forward **out, const forward_opts *o, kabar_error *err)
{
    forward *f = calloc(1, sizeof *f);
    if (f == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    f->o = *o;
    f->up = false; /* as agent.c records at start */
    f->kp_backoff = 1000;
    f->problem_code = -1; /* unknown: the first set_problem writes */
    if (o->key != NULL)
        kkey_id_text(o->key->pk, f->key_id);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    if (pthread_create(&f->th, NULL, run, f) != 0) {
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->cv);
        free(f);
        return kabar_error_set(err, KABAR_NO_MEMORY, "cannot start the forwarding thread");
    }
    *out = f;
    return 0;
}

void forward_notify(forward *f)
{
    pthread_mutex_lock(&f->mu);
    f->wakeups++;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

void forward_join(forward **pf)
{
    if (pf == NULL || *pf == NULL)
        return;
    forward *f = *pf;
    forward_notify(f);
    pthread_join(f->th, NULL);
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f->res);
    free(f);
    *pf = NULL;
}
