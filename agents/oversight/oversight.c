/*
 * oversight.c - kabar-oversight: the secretariat's oversight agent.
 *
 *   broker --(durable subscription "oversight-AGENCY", every event)-->
 *     oapply (one LMDB transaction per batch, position included) --> ack
 *   every second and after each batch, once caught up with the log:
 *     overdue findings --(finding.overdue, id "overdue-FINDING")--> broker
 *     --> ack --> recorded in the state
 *
 * One thread, one poll loop. The phases of a turn: wait for records (at
 * most until the next check is due), apply the batch and commit it, ack
 * it, then check for overdue findings. SIGTERM/SIGINT only set a flag;
 * the turn in progress finishes (its batch committed and acked) and the
 * process exits 0.
 *
 * Exactly one finding.overdue per finding: the event's id is derived from
 * the finding, so the broker stores it once however many times it is sent
 * (after a crash between publishing and recording, it is sent again and
 * acked as a duplicate with the original seq). And the check runs only
 * when the state has caught up with the broker's head, so the agent never
 * publishes on a finding whose resolution is still waiting in the log.
 *
 * Trust: with --key the connection speaks CURVE and the finding.overdue
 * events are signed; the key must be registered for --agency with role
 * oversight (subscribing to every event needs it). A refusal of the key
 * (UNKNOWN_KEY, BAD_SIGNATURE, UNSIGNED, CANNOT_PUBLISH, NOT_OWN_SOURCE,
 * SIGNER_NOT_SOURCE) is a configuration problem: logged with what to do,
 * the finding is not marked refused, and the check backs off (1 s
 * doubling to 30 s) instead of publishing every second.
 *
 * Exit codes: 0 clean stop, 1 runtime failure, 2 bad usage or cannot start.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kabar.h"
#include "kkey.h"
#include "oapply.h"
#include "odate.h"
#include "dirlock.h"
#include "klog.h"
#include "opttab.h"
#include "ostate.h"
#include "overdue.h"

#define SUB_PREFIX         "oversight-"
#define BATCH_MAX          1024
#define CHECK_MS           1000
#define BACKOFF_MIN_MS     100
#define BACKOFF_MAX_MS     3000
#define KEY_BACKOFF_MAX_MS 30000
#define KILL_HOOK_ENV      "KABAR_OVERSIGHT_TEST_KILL_AFTER_PUBLISH"

typedef struct config {
    const char *agency;
    const char *data;
    const char *broker;
    const char *key;
    const char *server_key;
    bool insecure;
    const char *now;
    const char *tz;
    long timeout_ms;
    int log_level; /* a klog_level */
    bool help;
    bool version;
} config;

/* The configuration: one table, printed by --help (STYLE.md #13). */
#define F(field) offsetof(config, field)

static const opt_row rows[] = {
    OPT_ROW("agency", OPT_STRING, NULL, "KABAR_AGENCY", "ID",
            "the secretariat's agency: source of the finding.overdue events", F(agency)),
    OPT_ROW("data", OPT_STRING, NULL, "KABAR_OVERSIGHT_DATA", "DIR",
            "data directory: oversight.mdb (the state), oversight.lock", F(data)),
    OPT_ROW("broker", OPT_STRING, KABAR_DEFAULT_ENDPOINT, "KABAR_BROKER", "ENDPOINT", "the broker",
            F(broker)),
    OPT_ROW("key", OPT_STRING, NULL, "KABAR_KEY", "FILE",
            "the secretariat's secret key (kabar keygen; role oversight): CURVE, signed events",
            F(key)),
    OPT_ROW("server-key", OPT_STRING, NULL, "KABAR_SERVER_KEY", "KEY|FILE",
            "the broker's public key (ed25519:... or a file: DATA/broker.pub of kabard)",
            F(server_key)),
    OPT_ROW("insecure", OPT_SWITCH, NULL, NULL, NULL,
            "plaintext, unsigned, to a broker started with --insecure (no key needed)",
            F(insecure)),
    OPT_ROW("now", OPT_STRING, NULL, NULL, "TIME",
            "a fixed clock: RFC 3339 instant or date (00:00 in --tz); default: the real time",
            F(now)),
    OPT_ROW("tz", OPT_STRING, "+07:00", NULL, "ZONE",
            "the region's zone for days: +07:00, WIB, WITA or WIT", F(tz)),
    OPT_RANGE("timeout", "5000", NULL, "MS", "a broker silent this long is considered down",
              F(timeout_ms), 100, 3600000),
    OPT_ROW("log-level", OPT_LEVEL, "info", NULL, "LEVEL", "debug, info, warn or error",
            F(log_level)),
    OPT_ROW("help", OPT_SWITCH, NULL, NULL, NULL, "print this help", F(help)),
    OPT_ROW("version", OPT_SWITCH, NULL, NULL, NULL, "print the version", F(version)),
};

static const opt_table table = {"kabar-oversight", rows, sizeof rows / sizeof rows[0]};

static void usage(FILE *f)
{
    fprintf(f, "usage: kabar-oversight --agency ID --data DIR --broker ENDPOINT\n"
               "                       (--key FILE --server-key KEY|FILE | --insecure)\n"
               "                       [--now TIME] [--tz ZONE] [options]\n\n"
               "Follows every event of the bus into the oversight state (findings, visits,\n"
               "innovations, attendance) and publishes finding.overdue, once per finding,\n"
               "when a finding's due date has passed with recommendations still open.\n"
               "Report: kabar oversight report --data DIR. See docs/OVERSIGHT.md.\n\n"
               "options:\n");
    opt_usage(&table, f);
}

/* 0 ok, 1 exit 0 (help/version), 2 usage error. */
static int parse_args(int argc, char **argv, config *c)
{
    kabar_error e = {0};
    if (opt_parse(&table, c, sizeof *c, argc, argv, opt_getenv, &e) != 0) {
        fprintf(stderr, "kabar-oversight: %s\n", e.message);
        return 2;
    }
    if (c->help) {
        usage(stdout);
        return 1;
    }
    if (c->version) {
        printf("kabar-oversight %s\n", kabar_version());
        return 1;
    }
    return 0;
}

/* The running agent. */
typedef struct ovs {
    config cfg;
    char dir[PATH_MAX];
    int lock_fd;
    int tz_s;
    bool fixed_clock;
    int64_t fixed_now;
    ostate *st;
    kabar_client *c;
    kabar_sub *sub;
    char name[KABAR_MAX_ID_LEN + 1];
    bool down_logged;
    bool caught_up_logged;
    int backoff_ms;
    int64_t next_check_ms;
    json_t *refused; /* finding ids whose finding.overdue the broker refused, this run */
    /* results of one overdue round */
    json_t *round;
    uint64_t *seqs;
    int *codes;
    bool *dups;
    bool secure; /* key and server_pk loaded */
    kkey key;
    uint8_t server_pk[KKEY_PUBLIC];
    char key_id[KKEY_ID_TEXT];
    bool key_problem; /* the last round's events were refused for the key */
    int key_backoff_ms;
} ovs;

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    got_signal = sig;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t clock_now(const ovs *o)
{
    return o->fixed_clock ? o->fixed_now : kabar_now();
}

static void nap(int ms)
{
    int64_t end = mono_ms() + ms;
    while (!got_signal && mono_ms() < end) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* ---- the broker connection ---- */

static void drop(ovs *o)
{
    kabar_sub_close(&o->sub);
    kabar_client_destroy(&o->c);
}

static void broker_down(ovs *o, const char *why)
{
    drop(o);
    if (!o->down_logged)
        klog(KLOG_WARN, "KABAR-OVERSIGHT-BROKER-DOWN",
             "broker at %s unreachable: %s; reconnecting with backoff", o->cfg.broker, why);
    o->down_logged = true;
    nap(o->backoff_ms);
    o->backoff_ms = o->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : o->backoff_ms * 2;
}

/* A refusal that says the key or its role is wrong, not the event. */
static bool key_refusal(int code)
{
    switch (code) {
    case KABAR_UNKNOWN_KEY:
    case KABAR_BAD_SIGNATURE:
    case KABAR_UNSIGNED:
    case KABAR_CANNOT_PUBLISH:
    case KABAR_NOT_OWN_SOURCE:
    case KABAR_SIGNER_NOT_SOURCE:
        return true;
    default:
        return false;
    }
}

static bool attach(ovs *o)
{
    kabar_error e = {0};
    kabar_client_opts co = {.timeout_ms = (int)o->cfg.timeout_ms,
                            .window = 64,
                            .key = o->secure ? &o->key : NULL,
                            .server_key = o->secure ? o->server_pk : NULL};
    kabar_sub_opts so = {.durable = o->name, .start = KABAR_START_FIRST, .credit = BATCH_MAX};
    int rc = kabar_client_connect(&o->c, o->cfg.broker, &co, &e);
    if (rc == 0)
        rc = kabar_client_subscribe(o->c, &so, &o->sub, &e);
    if (rc != 0) {
        char why[KABAR_ERROR_MESSAGE_MAX + 256];
        if (rc == KABAR_NOT_OWN_TARGET)
            snprintf(why, sizeof why,
                     "%s (key %s: the broker does not give this key every event: register "
                     "agency %s with role oversight)",
                     e.message, o->key_id, o->cfg.agency);
        else if (rc == KABAR_NOT_OWN_CONSUMER)
            snprintf(why, sizeof why,
                     "%s (the durable consumer %s belongs to another agency: use another "
                     "--agency, or have the operator remove the consumer)",
                     e.message, o->name);
        else
            snprintf(why, sizeof why, "%s", e.message);
        if (rc == KABAR_NOT_OWN_TARGET || rc == KABAR_NOT_OWN_CONSUMER || key_refusal(rc)) {
            if (!o->down_logged)
                klog(KLOG_ERROR, "KABAR-OVERSIGHT-KEY-PROBLEM", "the broker refuses %s: %s: %s",
                     o->name, kabar_errname(rc), why);
            o->down_logged = true; /* not "unreachable": it answered */
        }
        broker_down(o, why);
        return false;
    }
    o->backoff_ms = BACKOFF_MIN_MS;
    o->down_logged = false;
    o->caught_up_logged = false;
    klog(KLOG_INFO, "KABAR-OVERSIGHT-BROKER-UP", "subscribed to every event at %s as %s",
         o->cfg.broker, o->name);
    return true;
}

/* ---- applying ---- */

/* The state's position, or UINT64_MAX when it cannot be read. */
static uint64_t state_position(ovs *o)
{
    ostate_txn *t = NULL;
    kabar_error e = {0};
    if (ostate_begin(o->st, false, &t, &e) != 0)
        return UINT64_MAX;
    uint64_t pos = ostate_position(t);
    ostate_abort(&t);
    return pos;
}

/*
 * The durable consumer resumed beyond the state's position (a new --data
 * for a consumer the broker already knows): read the missing seqs
 * [from, to] with a bounded subscription and apply them first. 0, or a
 * client or store error.
 */
static int fill_gap(ovs *o, uint64_t from, uint64_t to)
{
    kabar_sub *gap = NULL;
    kabar_error e = {0};
    kabar_sub_opts so = {.start = KABAR_START_SEQ, .seq = from, .until_seq = to, .credit = 4096};
    klog(KLOG_WARN, "KABAR-OVERSIGHT-GAP",
         "the broker resumed %s at seq %llu but the state is at %llu: reading seqs %llu to %llu "
         "from the log first",
         o->name, (unsigned long long)to + 1, (unsigned long long)from - 1,
         (unsigned long long)from, (unsigned long long)to);
    int rc = kabar_client_subscribe(o->c, &so, &gap, &e);
    while (rc == 0) {
        kabar_record rec;
        ostate_txn *t = NULL;
        oapply_outcome out;
        size_t n = 0;
        rc = kabar_sub_next(gap, &rec, (int)o->cfg.timeout_ms, &e);
        if (rc == 0)
            rc = ostate_begin(o->st, true, &t, &e);
        while (rc == 0) {
            rc = oapply_record(t, rec.seq, rec.received_at, rec.bytes, rec.len, &out, NULL, &e);
            if (rc != 0 || ++n >= BATCH_MAX || (rc = kabar_sub_next(gap, &rec, 0, &e)) != 0)
                break;
        }
        if (t != NULL && (rc == 0 || rc == KABAR_TIMEOUT || rc == KABAR_END)) {
            int crc = ostate_commit(&t, &e);
            rc = crc != 0 ? crc : rc;
        }
        ostate_abort(&t);
        if (rc == KABAR_TIMEOUT)
            rc = 0;
    }
    kabar_sub_close(&gap);
    if (rc == KABAR_END && state_position(o) >= to)
        return 0;
    klog(KLOG_ERROR, "KABAR-OVERSIGHT-GAP", "cannot read seqs %llu to %llu: %s",
         (unsigned long long)from, (unsigned long long)to, e.message);
    return rc == KABAR_END || rc == 0 ? KABAR_NOT_FOUND : rc;
}

/*
 * Apply `first` and whatever else is waiting (up to BATCH_MAX) in one
 * transaction, commit, ack. Returns 0, or the subscription's error met
 * after the batch (the batch is committed and acked first); a store
 * failure is logged and returned as KABAR_STORE (nothing acked).
 */
static int apply_batch(ovs *o, kabar_record rec)
{
    ostate_txn *t = NULL;
    kabar_error e = {0}, note = {0};
    uint64_t last = 0;
    size_t n = 0, stale = 0;
    int sub_rc = 0;
    uint64_t pos = state_position(o);
    if (pos != UINT64_MAX && rec.seq > pos + 1) {
        /* rec points into the subscription's buffer: keep a copy across the fill. */
        kabar_buf copy = {0};
        if (kabar_buf_append(&copy, rec.bytes, rec.len) != 0)
            return KABAR_STORE;
        int grc = fill_gap(o, pos + 1, rec.seq - 1);
        rec.bytes = (const uint8_t *)copy.data;
        int rc = grc != 0 ? grc : apply_batch(o, rec);
        kabar_buf_free(&copy);
        return rc == KABAR_NOT_FOUND ? KABAR_STORE : rc;
    }
    int rc = ostate_begin(o->st, true, &t, &e);
    while (rc == 0) {
        oapply_outcome out;
        rc = oapply_record(t, rec.seq, rec.received_at, rec.bytes, rec.len, &out, &note, &e);
        if (rc != 0)
            break;
        if (out == OAPPLY_IGNORED)
            klog(KLOG_WARN, "KABAR-OVERSIGHT-IGNORED", "%s", note.message);
        stale += out == OAPPLY_STALE;
        last = rec.seq;
        if (++n >= BATCH_MAX || got_signal)
            break;
        if ((sub_rc = kabar_sub_next(o->sub, &rec, 0, &note)) != 0)
            break;
    }
    if (rc == 0)
        rc = ostate_commit(&t, &e);
    ostate_abort(&t);
    if (rc != 0) {
        klog(KLOG_ERROR, "KABAR-OVERSIGHT-STORE-FAIL",
             "cannot record events in the state: %s (not acknowledged; the broker sends them "
             "again)",
             e.message);
        return KABAR_STORE;
    }
    klog(KLOG_DEBUG, "KABAR-OVERSIGHT-APPLIED", "%zu event(s) up to seq %llu (%zu already applied)",
         n, (unsigned long long)last, stale);
    if (kabar_sub_ack(o->sub, last, &e) != 0)
        klog(KLOG_WARN, "KABAR-OVERSIGHT-SUB-LOST", "ack of seq %llu: %s", (unsigned long long)last,
             e.message);
    return sub_rc == KABAR_TIMEOUT ? 0 : sub_rc;
}

/* ---- overdue ---- */

static void on_result(void *arg, const kabar_pub_result *r)
{
    ovs *o = arg;
    size_t i = (size_t)(uintptr_t)r->user;
    o->seqs[i] = r->seq;
    o->codes[i] = r->code;
    o->dups[i] = r->duplicate;
    if (r->code != KABAR_OK && key_refusal(r->code)) {
        if (!o->key_problem)
            klog(KLOG_ERROR, "KABAR-OVERSIGHT-KEY-PROBLEM",
                 "the broker refused finding.overdue signed by key %s: %s: %s; the key must be "
                 "a valid key of agency %s (role oversight): kabar agency show %s; retrying "
                 "with backoff",
                 o->secure ? o->key_id : "(none: --insecure)", kabar_errname(r->code), r->message,
                 o->cfg.agency, o->cfg.agency);
        o->key_problem = true;
    } else if (r->code != KABAR_OK) {
        const char *fid =
            json_string_value(json_object_get(json_array_get(o->round, i), "finding_id"));
        klog(KLOG_ERROR, "KABAR-OVERSIGHT-OVERDUE-REJECTED",
             "the broker refused finding.overdue for %s: %s: %s (not retried until a restart)", fid,
             kabar_errname(r->code), r->message);
    }
}

/* Publish one finding.overdue per body of o->round; 0, or a client error. */
static int publish_round(ovs *o, size_t n, kabar_error *e)
{
    int rc = 0;
    kabar_client_on_result(o->c, on_result, o);
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint8_t *bytes = NULL;
        size_t len = 0;
        o->codes[i] = -1;
        if (overdue_event(json_array_get(o->round, i), o->cfg.agency, clock_now(o), &bytes, &len,
                          e) != 0) {
            klog(KLOG_ERROR, "KABAR-OVERSIGHT-OVERDUE-REJECTED", "cannot build the event: %s",
                 e->message);
            continue;
        }
        rc = kabar_client_publish(o->c, bytes, len, (void *)(uintptr_t)i, e);
        free(bytes);
    }
    if (rc == 0)
        rc = kabar_client_flush(o->c, e);
    return rc;
}

static void record_round(ovs *o, size_t n)
{
    ostate_txn *t = NULL;
    kabar_error e = {0};
    int rc = ostate_begin(o->st, true, &t, &e);
    for (size_t i = 0; i < n && rc == 0; i++) {
        json_t *b = json_array_get(o->round, i);
        const char *fid = json_string_value(json_object_get(b, "finding_id"));
        if (o->codes[i] == KABAR_OK)
            rc = oapply_overdue_published(
                t, fid, o->seqs[i], json_integer_value(json_object_get(b, "days_overdue")), &e);
        else if (o->codes[i] > 0 && !key_refusal(o->codes[i]))
            json_object_set_new(o->refused, fid, json_true());
    }
    if (rc == 0)
        rc = ostate_commit(&t, &e);
    ostate_abort(&t);
    if (rc != 0) {
        klog(KLOG_ERROR, "KABAR-OVERSIGHT-STORE-FAIL",
             "cannot record the published finding.overdue events: %s (they will be sent again "
             "and stored once)",
             e.message);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *b = json_array_get(o->round, i);
        if (o->codes[i] == KABAR_OK)
            klog(KLOG_INFO, "KABAR-OVERSIGHT-OVERDUE",
                 "finding %s of %s is %lld day(s) past its due date %s: finding.overdue is seq "
                 "%llu%s",
                 json_string_value(json_object_get(b, "finding_id")),
                 json_string_value(json_object_get(b, "auditee")),
                 (long long)json_integer_value(json_object_get(b, "days_overdue")),
                 json_string_value(json_object_get(b, "due")), (unsigned long long)o->seqs[i],
                 o->dups[i] ? " (already in the log)" : "");
    }
}

/* The findings to publish now, without those refused in this run. */
static int pending(ovs *o, uint64_t head, uint64_t *position, kabar_error *e)
{
    ostate_txn *t = NULL;
    json_t *all = NULL;
    int32_t today = odate_of_instant(clock_now(o), o->tz_s);
    int rc = ostate_begin(o->st, false, &t, e);
    if (rc == 0) {
        *position = ostate_position(t);
        if (*position >= head)
            rc = overdue_pending(t, today, o->tz_s, &all, e);
    }
    ostate_abort(&t);
    json_decref(o->round);
    o->round = json_array();
    size_t i;
    json_t *b;
    json_array_foreach(all, i, b)
    {
        if (json_object_get(o->refused, json_string_value(json_object_get(b, "finding_id"))) ==
            NULL)
            json_array_append(o->round, b);
    }
    json_decref(all);
    return rc;
}

static bool grow_results(ovs *o, size_t n)
{
    free(o->seqs);
    free(o->codes);
    free(o->dups);
    o->seqs = calloc(n + 1, sizeof *o->seqs);
    o->codes = calloc(n + 1, sizeof *o->codes);
    o->dups = calloc(n + 1, sizeof *o->dups);
    return o->seqs && o->codes && o->dups;
}

static void check_overdue(ovs *o)
{
    kabar_error e = {0};
    kabar_head h;
    uint64_t position = 0;
    o->next_check_ms = mono_ms() + CHECK_MS;
    if (o->c == NULL)
        return;
    if (kabar_client_head(o->c, &h, &e) != 0) {
        broker_down(o, e.message);
        return;
    }
    if (pending(o, h.seq, &position, &e) != 0) {
        klog(KLOG_ERROR, "KABAR-OVERSIGHT-STORE-FAIL", "reading the state: %s", e.message);
        return;
    }
    if (position < h.seq)
        return; /* still catching up: a later event may resolve a finding */
    size_t n = json_array_size(o->round);
    if (n > 0) {
        if (!grow_results(o, n)) {
            klog(KLOG_ERROR, "KABAR-OVERSIGHT-STORE-FAIL", "out of memory");
            return;
        }
        if (publish_round(o, n, &e) != 0) {
            broker_down(o, e.message);
            return;
        }
        if (getenv(KILL_HOOK_ENV) != NULL && strcmp(getenv(KILL_HOOK_ENV), "1") == 0)
            raise(SIGKILL); /* fault test: published and acked, not recorded */
        o->key_problem = false;
        for (size_t i = 0; i < n; i++)
            o->key_problem = o->key_problem || key_refusal(o->codes[i]);
        record_round(o, n);
        if (o->key_problem) {
            o->next_check_ms = mono_ms() + o->key_backoff_ms;
            o->key_backoff_ms = o->key_backoff_ms * 2 > KEY_BACKOFF_MAX_MS ? KEY_BACKOFF_MAX_MS
                                                                           : o->key_backoff_ms * 2;
            return;
        }
        o->key_backoff_ms = 1000;
    }
    if (!o->caught_up_logged) {
        klog(KLOG_INFO, "KABAR-OVERSIGHT-CAUGHT-UP",
             "state at seq %llu (the broker's head); %zu finding.overdue published in this check",
             (unsigned long long)position, n);
        o->caught_up_logged = true;
    }
}

/* ---- start, run, stop ---- */

static int start(ovs *o)
{
    kabar_error e = {0};
    ostate_txn *t = NULL;
    char have[KABAR_MAX_AGENCY_LEN + 1];
    int rc = ostate_open(&o->st, o->dir, false, &e);
    if (rc == 0)
        rc = ostate_begin(o->st, true, &t, &e);
    if (rc == 0)
        rc = ostate_meta_get(t, "agency", have, sizeof have, &e);
    if (rc == 0 && have[0] != '\0' && strcmp(have, o->cfg.agency) != 0)
        rc = kabar_error_set(&e, KABAR_BAD_VALUE,
                             "%s holds the oversight state of agency \"%s\", not \"%s\"; use "
                             "another --data",
                             o->dir, have, o->cfg.agency);
    if (rc == 0 && have[0] == '\0')
        rc = ostate_meta_put(t, "agency", o->cfg.agency, &e);
    if (rc == 0)
        rc = ostate_commit(&t, &e);
    ostate_abort(&t);
    if (rc != 0)
        klog(KLOG_ERROR, "KABAR-OVERSIGHT-START-FAIL", "%s", e.message);
    return rc;
}

static int run(ovs *o)
{
    o->next_check_ms = mono_ms();
    while (!got_signal) {
        if (o->sub == NULL && !attach(o))
            continue;
        int64_t wait = o->next_check_ms - mono_ms();
        kabar_record rec;
        kabar_error e = {0};
        int rc = kabar_sub_next(o->sub, &rec, wait < 0 ? 0 : (int)wait, &e);
        if (rc == 0)
            rc = apply_batch(o, rec);
        if (rc == KABAR_STORE) {
            drop(o); /* unacked: the broker sends the batch again after the backoff */
            nap(BACKOFF_MAX_MS);
            continue;
        }
        if (rc != 0 && rc != KABAR_TIMEOUT) {
            klog(KLOG_WARN, "KABAR-OVERSIGHT-SUB-LOST", "subscription %s lost: %s: %s", o->name,
                 kabar_errname(rc), e.message);
            broker_down(o, e.message);
            continue;
        }
        if (got_signal)
            break;
        if (rc == 0 || mono_ms() >= o->next_check_ms)
            check_overdue(o);
    }
    return 0;
}

static int check_config(ovs *o)
{
    const config *c = &o->cfg;
    kabar_error e = {0};
    if (c->agency == NULL || !kabar_agency_valid(c->agency, strlen(c->agency))) {
        fprintf(stderr,
                "kabar-oversight: --agency %s: need an agency id like \"setda\" "
                "(a-z, 0-9 and '-', 2 to 32 characters)\n",
                c->agency ? c->agency : "(missing)");
        return 2;
    }
    if (c->data == NULL || c->data[0] == '\0') {
        fprintf(stderr, "kabar-oversight: --data DIR is required (the agent's own directory)\n");
        return 2;
    }
    if (c->insecure) {
        if (c->key != NULL || c->server_key != NULL)
            fprintf(stderr, "kabar-oversight: --insecure: not using --key/--server-key (or "
                            "KABAR_KEY/KABAR_SERVER_KEY): plaintext, unsigned events\n");
    } else if (c->key == NULL || c->key[0] == '\0') {
        fprintf(stderr, "kabar-oversight: --key FILE is required: the secretariat's secret key "
                        "(make one with `kabar keygen --out FILE` and have the broker's operator "
                        "register FILE.pub with `kabar agency add ... --role oversight`); or "
                        "--insecure for a broker started with --insecure\n");
        return 2;
    } else if (c->server_key == NULL || c->server_key[0] == '\0') {
        fprintf(stderr, "kabar-oversight: --server-key KEY|FILE is required: the broker's public "
                        "key (its DATA/broker.pub, from the operator); or --insecure for a broker "
                        "started with --insecure\n");
        return 2;
    } else if (kkey_load_identity(&o->key, o->server_pk, c->key, c->server_key, &e) != 0) {
        fprintf(stderr, "kabar-oversight: %s\n", e.message);
        return 2;
    } else {
        kkey_id_text(o->key.pk, o->key_id);
        o->secure = true;
    }
    if (!odate_tz_parse(c->tz, &o->tz_s)) {
        fprintf(stderr,
                "kabar-oversight: --tz %s: use +07:00 (WIB), +08:00 (WITA), +09:00 "
                "(WIT) or another +HH:MM\n",
                c->tz);
        return 2;
    }
    if (c->now != NULL) {
        if (odate_parse_time(c->now, o->tz_s, &o->fixed_now, &e) != 0) {
            fprintf(stderr, "kabar-oversight: --now: %s\n", e.message);
            return 2;
        }
        o->fixed_clock = true;
    }
    return 0;
}

int main(int argc, char **argv)
{
    ovs o = {.lock_fd = -1, .backoff_ms = BACKOFF_MIN_MS, .key_backoff_ms = 1000};
    int rc = parse_args(argc, argv, &o.cfg);
    if (rc != 0)
        return rc == 1 ? 0 : 2;
    if ((rc = check_config(&o)) != 0)
        return rc;
    klog_init("kabar-oversight", 2, (klog_level)o.cfg.log_level);
    if (mkdir(o.cfg.data, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "kabar-oversight: cannot create data directory %s: %s\n", o.cfg.data,
                strerror(errno));
        return 2;
    }
    if (realpath(o.cfg.data, o.dir) == NULL) {
        fprintf(stderr, "kabar-oversight: data directory %s: %s\n", o.cfg.data, strerror(errno));
        return 2;
    }
    kabar_error e = {0};
    if (kabar_schema_default(&e) == NULL) {
        fprintf(stderr, "kabar-oversight: %s\n", e.message);
        return 2;
    }
    if (dirlock_take(o.dir, "oversight.lock", "kabar-oversight", &o.lock_fd, &e) != 0) {
        fprintf(stderr, "kabar-oversight: %s\n", e.message);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal; /* no SA_RESTART: a wait returns early */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    snprintf(o.name, sizeof o.name, "%s%s", SUB_PREFIX, o.cfg.agency);
    o.refused = json_object();
    if (start(&o) != 0) {
        close(o.lock_fd);
        return 2;
    }
    char now[KABAR_TIME_MAX], tz[ODATE_TZ_MAX];
    kabar_time_format(clock_now(&o), now);
    odate_tz_format(o.tz_s, tz);
    klog(KLOG_INFO, "KABAR-OVERSIGHT-READY",
         "agency %s, state %s, broker %s (%s%s), zone %s, clock %s%s", o.cfg.agency,
         ostate_path(o.st), o.cfg.broker,
         o.secure ? "CURVE, events signed by key " : "plaintext, unsigned: --insecure",
         o.secure ? o.key_id : "", tz, o.fixed_clock ? "fixed at " : "real time, now ", now);
    rc = run(&o);
    drop(&o);
    ostate_close(&o.st);
    json_decref(o.refused);
    json_decref(o.round);
    free(o.seqs);
    free(o.codes);
    free(o.dups);
    close(o.lock_fd);
    kkey_wipe(&o.key);
    klog(KLOG_INFO, "KABAR-OVERSIGHT-STOP", "stopped%s", got_signal ? " on signal" : "");
    return rc;
}
