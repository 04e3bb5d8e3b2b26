/*
 * cmd_bench.c - `kabar bench`: how fast a kabar broker is, measured the way
 * a user of the client API sees it.
 *
 * Unless --broker is given, bench starts its own kabard (the binary beside
 * this one, or $KABAR_KABARD) on a fresh log in a temporary directory on
 * disk ($TMPDIR, else /var/tmp), listening on a loopback wildcard port, and
 * stops it (SIGTERM, wait) and removes the directory at the end
 * (bench_broker.c).
 *
 * This file is the command: options, who publishes and reads, the runs in
 * order, and the report (table or JSON) with the exit code. The parts are
 * listed in bench.h.
 *
 * Design notes
 *
 *  - Secure by default, as kabar is deployed: CURVE on the connection and
 *    every PUB batch signed by its source agency's key and verified by
 *    kabard. For its own kabard, bench registers one agent key per
 *    publishing agency and an oversight key for the readers in the fresh
 *    log before kabard starts (bench_secure.c), and pins the broker.pub
 *    kabard creates. Against --broker it runs as the user's --key (an
 *    oversight or admin principal; it publishes as that agency). --plaintext
 *    measures the old configuration: kabard --insecure, no keys, unsigned.
 *    The report says which configuration ran.
 *  - Every figure counts only what the broker acknowledged: an event is
 *    counted when its result callback says accepted, never when it was sent.
 *    By default kabard acks only after its LMDB transaction has been synced
 *    to disk; --unsafe-nosync runs kabard without the sync, and the report
 *    then says loudly that the acks were not durable.
 *  - Events are realistic (~300 bytes, finding.responded and visit.completed
 *    with Indonesian text, unique ids) and are encoded with
 *    kabar_event_from_json before the clock starts, so the figures measure
 *    the bus and not the JSON parser.
 *  - Publishers are separate client connections, one thread each (the
 *    client is single-threaded per object). They connect, then start
 *    together on a barrier; a run lasts from the barrier to the last flush.
 *  - Ack latency is the time from the kabar_client_publish call to that
 *    event's result callback. At window 256 it includes the wait for a free
 *    slot in the window: that is what a publisher experiences.
 *  - Fan-out: 50 bounded subscriptions (start at the next seq, until the
 *    last seq the publisher will produce), 10 per client connection, one
 *    thread per connection; every subscriber checks it saw every seq once,
 *    in order.
 *
 * Exit codes: 0 done; 1 the bench ran but the bus misbehaved (an event was
 * rejected, a subscriber missed an event); 2 bad usage or cannot run.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "bench.h"
#include "cli.h"
#include "kabar.h"
#include "store.h"

volatile sig_atomic_t bench_stop;

static void on_signal(int sig)
{
    (void)sig;
    bench_stop = 1;
}

/* ------------------------------------------------------------------------ */
/* The command                                                              */

typedef struct bench_opts {
    const char *broker; /* NULL: start our own kabard */
    const char *data;   /* the broker's log directory, for the offline figures */
    size_t events;
    size_t size;
    bool json;
    bool nosync;
    bool plaintext;
} bench_opts;

/* The bench's own principals: the publishing agencies, then the readers. */
enum { NPRINCIPALS = 7 };
static const char *const PRINCIPALS[NPRINCIPALS] = {
    "dinkes", "disdik", "bappeda", "kec-padang-barat", "bpkad", "dpupr", "bench-reader"};

typedef struct bench_report {
    bench_opts o;
    const char *endpoint;
    bench_conn conn;
    bench_principal who[NPRINCIPALS];
    uint8_t server_pk[32];
    const char *pub_src[4], *lat_src[1], *fan_src[1]; /* the source agencies of each run */
    char principal[KABAR_MAX_AGENCY_LEN + 1];         /* --broker, secure: who we are */
    double event_bytes;                               /* mean encoded size */
    pub_result pub1, pub4, lat1;
    rate wire, offline, jsonl;
    fan_result fan;
    long cores;
    char cpu[128];
} bench_report;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kabar bench [--broker EP] [--data DIR] [--events N] [--size BYTES] [--json]\n"
            "                   [--plaintext] [--unsafe-nosync] [--key FILE] [--server-key KEY]\n"
            "\n"
            "Measure a kabar broker: durable publish throughput with 1 and 4 publishers\n"
            "(window 256), ack latency at window 1 and 256, replay over the wire and offline\n"
            "(also to JSON Lines), and fan-out to 50 subscribers. Only acknowledged events\n"
            "count. Takes under a minute with the defaults; `kabar bench --events 2000` is\n"
            "a quick check.\n"
            "\n"
            "Secure by default, as kabar is deployed: CURVE encryption and every batch of\n"
            "events signed by its agency's key and verified by kabard. The bench's own\n"
            "kabard gets generated keys registered for its agencies.\n"
            "\n"
            "  --broker EP       measure this running broker instead of starting a kabard\n"
            "                    (it gets ~2.5 x N test events in its log)\n"
            "  --data DIR        that broker's log directory, for the offline replay figures\n"
            "  --events N        events per publish run (default 200000)\n"
            "  --size BYTES      approximate encoded size of each event (default 300)\n"
            "  --json            one JSON object on stdout instead of the table\n"
            "  --plaintext       the old configuration: kabard --insecure, no encryption,\n"
            "                    unsigned events (for comparison)\n"
            "  --key FILE        with --broker: your secret key (default $KABAR_KEY), an\n"
            "                    oversight or admin principal; bench publishes as its agency\n"
            "  --server-key KEY  with --broker: the broker's public key (default\n"
            "                    $KABAR_SERVER_KEY, or DIR/broker.pub with --data DIR)\n"
            "  --unsafe-nosync   run the bench's kabard without syncing commits to disk:\n"
            "                    acks are then NOT durable (for comparison only)\n"
            "\n"
            "Without --broker, bench runs the kabard beside this kabar binary (or\n"
            "$KABAR_KABARD) on a fresh log under $TMPDIR (default /var/tmp) and removes it\n"
            "afterwards. Exit status: 0 done, 1 an event was rejected or a subscriber missed\n"
            "one, 2 bad usage or the bench could not run.\n");
}

static int parse_size(const char *s, size_t lo, size_t hi, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || *s == '-' || v < lo || v > hi)
        return -1;
    *out = (size_t)v;
    return 0;
}

static int parse_opts(int argc, char **argv, bench_opts *o)
{
    static const struct option longopts[] = {{"broker", required_argument, NULL, 'b'},
                                             {"data", required_argument, NULL, 'd'},
                                             {"events", required_argument, NULL, 'n'},
                                             {"size", required_argument, NULL, 's'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"unsafe-nosync", no_argument, NULL, 'U'},
                                             {"plaintext", no_argument, NULL, 'P'},
                                             {"help", no_argument, NULL, 'h'},
                                             CLI_IDENTITY_LONGOPTS,
                                             {NULL, 0, NULL, 0}};
    *o = (bench_opts){.events = 200000, .size = 300};
    optind = 0; /* re-initialise getopt: the dispatcher may have used it */
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'b':
            o->broker = optarg;
            break;
        case 'd':
            o->data = optarg;
            break;
        case 'j':
            o->json = true;
            break;
        case 'U':
            o->nosync = true;
            break;
        case 'P':
            o->plaintext = true;
            break;
        case CLI_OPT_KEY:
        case CLI_OPT_SERVER_KEY:
            cli_identity_option(ch, optarg);
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'n':
            if (parse_size(optarg, 100, 100000000, &o->events) == 0)
                break;
            fprintf(stderr, "kabar bench: --events %s: expected a count from 100 to 100000000\n",
                    optarg);
            return 2;
        case 's':
            if (parse_size(optarg, 1, KABAR_MAX_EVENT_BYTES - 1024, &o->size) == 0)
                break;
            fprintf(stderr, "kabar bench: --size %s: expected bytes from 1 to %d\n", optarg,
                    KABAR_MAX_EVENT_BYTES - 1024);
            return 2;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "kabar bench: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (o->broker != NULL && o->nosync) {
        fprintf(stderr, "kabar bench: --unsafe-nosync applies to the kabard that bench starts; "
                        "with --broker the broker's own settings hold (drop one of the two)\n");
        return 2;
    }
    if (o->data != NULL && o->broker == NULL) {
        fprintf(stderr, "kabar bench: --data names the log of the broker given with --broker; "
                        "without --broker bench uses its own kabard's log\n");
        return 2;
    }
    return -1;
}

static void machine(bench_report *r)
{
    r->cores = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(r->cpu, sizeof r->cpu, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[256];
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) == 0 && colon != NULL) {
            snprintf(r->cpu, sizeof r->cpu, "%s", colon + 2);
            r->cpu[strcspn(r->cpu, "\n")] = '\0';
            break;
        }
    }
    if (f != NULL)
        fclose(f);
}

/* Make the events of one run: `nsets` publishers sharing `n` events. */
/* The identity that publishes as `source`: its registered key, or NULL (plaintext). */
static const kkey *key_of(const bench_report *r, const char *source)
{
    if (r->conn.server_key == NULL)
        return NULL;
    for (size_t i = 0; i < NPRINCIPALS; i++)
        if (r->who[i].id != NULL && strcmp(r->who[i].id, source) == 0)
            return &r->who[i].key;
    return r->conn.reader; /* --broker: the user's key publishes as its own agency */
}

static int make_sets(const bench_report *r, evset *sets, size_t nsets, const char *tag,
                     const char *run, const char *const *sources, size_t n, size_t size,
                     kabar_error *err)
{
    int rc = 0;
    for (size_t k = 0; k < nsets && rc == 0; k++) {
        char t[64];
        snprintf(t, sizeof t, "%s-%s%zu", tag, run, k);
        rc = bench_evset_make(&sets[k], t, sources[k], n / nsets + (k < n % nsets), size, err);
        sets[k].key = key_of(r, sources[k]);
    }
    return rc;
}

static void free_sets(evset *sets, size_t nsets)
{
    for (size_t k = 0; k < nsets; k++)
        bench_evset_free(&sets[k]);
}

static int run_publish_sets(bench_report *r, const char *tag, const char *run, size_t nsets,
                            const char *const *sources, size_t n, uint32_t window, pub_result *out,
                            kabar_error *err)
{
    evset sets[4] = {0};
    int rc = make_sets(r, sets, nsets, tag, run, sources, n, r->o.size, err);
    if (rc == 0) {
        if (r->event_bytes == 0 && sets[0].n > 0)
            r->event_bytes = (double)sets[0].total_bytes / (double)sets[0].n;
        rc = bench_run_publish(&r->conn, sets, nsets, window, NULL, out, err);
    }
    free_sets(sets, nsets);
    return rc;
}

static int run_all(bench_report *r, const char *data, kabar_error *err)
{
    char tag[48];
    /* ms since the epoch, in hex: ids stay unique on a broker benched twice */
    snprintf(tag, sizeof tag, "%llx", (unsigned long long)(kabar_now() / 1000000));
    size_t n = r->o.events;
    size_t nlat = n / 40 < 100 ? 100 : n / 40 > 5000 ? 5000 : n / 40;
    size_t nfan = n / 10 < 100 ? 100 : n / 10 > 20000 ? 20000 : n / 10;
    int rc;
    progress("publishing with 1 publisher");
    rc = run_publish_sets(r, tag, "a", 1, r->pub_src, n, BENCH_WINDOW, &r->pub1, err);
    if (rc == 0 && !bench_stop) {
        progress("publishing with 4 publishers");
        rc = run_publish_sets(r, tag, "b", 4, r->pub_src, n, BENCH_WINDOW, &r->pub4, err);
    }
    if (rc == 0 && !bench_stop) {
        progress("measuring ack latency at window 1");
        rc = run_publish_sets(r, tag, "c", 1, r->lat_src, nlat, 1, &r->lat1, err);
    }
    if (rc == 0 && !bench_stop) {
        progress("replaying over the wire");
        rc = bench_replay_wire(&r->conn, &r->wire, err);
    }
    if (rc == 0 && !bench_stop && data != NULL) {
        progress("replaying offline");
        rc = bench_replay_offline(data, false, &r->offline, err);
        if (rc == 0)
            rc = bench_replay_offline(data, true, &r->jsonl, err);
    }
    if (rc == 0 && !bench_stop) {
        progress("fan-out to 50 subscribers");
        evset set = {0};
        rc = make_sets(r, &set, 1, tag, "d", r->fan_src, nfan, r->o.size, err);
        if (rc == 0)
            rc = bench_run_fanout(&r->conn, &set, &r->fan, err);
        bench_evset_free(&set);
    }
    if (rc == 0 && bench_stop)
        rc = kabar_error_set(err, KABAR_SHUTTING_DOWN, "interrupted");
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Output                                                                   */

/* 1234567.8 -> "1,234,568" in buf. */
static const char *grouped(char *buf, size_t cap, double v)
{
    char raw[32];
    snprintf(raw, sizeof raw, "%.0f", v < 0 ? 0 : v);
    size_t len = strlen(raw), o = 0;
    for (size_t i = 0; i < len && o + 2 < cap; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = raw[i];
    }
    buf[o] = '\0';
    return buf;
}

static void row(const char *what, const char *events, const char *window, const char *result)
{
    printf("  %-34s %12s %8s   %s\n", what, events, window, result);
}

static void row_rate(const char *what, uint64_t events, const char *window, double per_sec,
                     const char *unit)
{
    char e[32], p[32], res[96];
    snprintf(res, sizeof res, "%s %s", grouped(p, sizeof p, per_sec), unit);
    row(what, grouped(e, sizeof e, (double)events), window, res);
}

static void row_latency(const char *what, const pub_result *r, const char *window)
{
    char e[32], res[96];
    snprintf(res, sizeof res, "p50 %.3f ms   p99 %.3f ms   max %.3f ms", r->p50_us / 1e3,
             r->p99_us / 1e3, r->max_us / 1e3);
    row(what, grouped(e, sizeof e, (double)r->events), window, res);
}

static const char *durability(const bench_report *r)
{
    if (r->o.broker != NULL)
        return "as configured on that broker (bench cannot see whether it syncs)";
    if (r->o.nosync)
        return "NOT DURABLE: kabard ran with --unsafe-nosync and acked before the disk had the "
               "events";
    return "durable: kabard acked each event only after its commit was synced to disk";
}

static const char *security(const bench_report *r)
{
    if (r->conn.server_key == NULL)
        return r->o.broker != NULL ? "plaintext: no encryption, events unsigned (--plaintext)"
                                   : "plaintext: kabard --insecure, no encryption, events "
                                     "unsigned (--plaintext)";
    return "secure: CURVE encryption, every PUB batch signed (Ed25519) by its agency's key and "
           "verified by kabard";
}

static void print_table(const bench_report *r)
{
    char w[16], ev[32], fan[128], credit[16];
    snprintf(w, sizeof w, "%d", BENCH_WINDOW);
    snprintf(credit, sizeof credit, "c %d", BENCH_SUB_CREDIT);
    const char *pub = r->o.nosync           ? "NOT DURABLE publish"
                      : r->o.broker != NULL ? "publish"
                                            : "durable publish";
    if (r->o.nosync)
        printf("\n  *** WARNING: --unsafe-nosync: acks were NOT durable. These figures are not "
               "what kabar promises. ***\n\n");
    printf("kabar bench: %s events per publish run, %.0f bytes each on average, window %d\n",
           grouped(ev, sizeof ev, (double)r->o.events), r->event_bytes, BENCH_WINDOW);
    printf("  acks:    %s\n", durability(r));
    printf("  config:  %s\n", security(r));
    if (r->principal[0] != '\0')
        printf("  as:      %s (every event published as this agency)\n", r->principal);
    printf("  broker:  %s%s\n", r->endpoint,
           r->o.broker != NULL ? "" : " (kabard started by bench)");
    printf("  machine: %ld cores, %s\n\n", r->cores, r->cpu);
    row("figure", "events", "window", "result");
    char label[64];
    snprintf(label, sizeof label, "%s, 1 publisher", pub);
    row_rate(label, r->pub1.acked, w, r->pub1.per_sec, "events/s acked");
    snprintf(label, sizeof label, "%s, 4 publishers", pub);
    row_rate(label, r->pub4.acked, w, r->pub4.per_sec, "events/s acked");
    row_latency("ack latency, window 1", &r->lat1, "1");
    row_latency("ack latency, window 256", &r->pub1, w);
    row_rate("replay over the wire", r->wire.events, credit, r->wire.per_sec, "events/s");
    if (r->offline.done) {
        row_rate("replay offline (store_iter)", r->offline.events, "-", r->offline.per_sec,
                 "events/s");
        snprintf(fan, sizeof fan, "events/s (%.0f MB/s of JSON)",
                 r->jsonl.seconds > 0 ? (double)r->jsonl.bytes / r->jsonl.seconds / 1e6 : 0);
        row_rate("replay offline to JSON Lines", r->jsonl.events, "-", r->jsonl.per_sec, fan);
    } else {
        row("replay offline", "-", "-", "skipped: pass --data DIR, the broker's log directory");
    }
    snprintf(label, sizeof label, "fan-out to %d subscribers", r->fan.subscribers);
    snprintf(ev, sizeof ev, "%" PRIu64 " x %d", r->fan.events, r->fan.subscribers);
    snprintf(fan, sizeof fan, "%s deliveries/s; all had everything %.1f ms after the last ack",
             grouped(credit, sizeof credit, r->fan.per_sec), r->fan.tail_ms);
    row(label, ev, w, fan);
    printf("\n  fan-out: publishing took %.3f s, the last subscriber finished %.3f s after the "
           "start\n",
           r->fan.publish_seconds, r->fan.seconds);
    if (r->o.nosync)
        printf("\n  *** WARNING: acks were NOT durable (--unsafe-nosync). ***\n");
}

static json_t *j_rate(const rate *r, const char *window_key, int window)
{
    return json_pack("{s:I, s:I, s:i, s:f, s:f}", "events", (json_int_t)r->events, "bytes",
                     (json_int_t)r->bytes, window_key, window, "seconds", r->seconds,
                     "events_per_s", r->per_sec);
}

static json_t *j_pub(const pub_result *r, int publishers, int window)
{
    return json_pack("{s:i, s:I, s:I, s:I, s:I, s:i, s:f, s:f, s:f, s:f, s:f}", "publishers",
                     publishers, "events", (json_int_t)r->events, "acked", (json_int_t)r->acked,
                     "rejected", (json_int_t)r->rejected, "duplicates", (json_int_t)r->duplicates,
                     "window", window, "seconds", r->seconds, "events_per_s", r->per_sec,
                     "latency_p50_ms", r->p50_us / 1e3, "latency_p99_ms", r->p99_us / 1e3,
                     "latency_max_ms", r->max_us / 1e3);
}

static void print_json(const bench_report *r)
{
    json_t *o =
        json_pack("{s:I, s:f, s:i, s:o, s:s, s:s, s:i, s:s, s:o, s:o, s:o, s:o}", "events",
                  (json_int_t)r->o.events, "event_bytes", r->event_bytes, "window", BENCH_WINDOW,
                  "durable", r->o.broker != NULL ? json_null() : json_boolean(!r->o.nosync),
                  "durability", durability(r), "broker", r->endpoint, "cores", (int)r->cores, "cpu",
                  r->cpu, "publish_1", j_pub(&r->pub1, 1, BENCH_WINDOW), "publish_4",
                  j_pub(&r->pub4, 4, BENCH_WINDOW), "latency_window_1", j_pub(&r->lat1, 1, 1),
                  "replay_wire", j_rate(&r->wire, "credit", BENCH_SUB_CREDIT));
    if (o == NULL)
        return;
    json_object_set_new(o, "secure", json_boolean(r->conn.server_key != NULL));
    json_object_set_new(o, "security", json_string(security(r)));
    if (r->principal[0] != '\0')
        json_object_set_new(o, "principal", json_string(r->principal));
    json_object_set_new(o, "replay_offline",
                        r->offline.done ? j_rate(&r->offline, "window", 0) : json_null());
    json_object_set_new(o, "replay_offline_jsonl",
                        r->jsonl.done ? j_rate(&r->jsonl, "window", 0) : json_null());
    json_object_set_new(o, "fanout",
                        json_pack("{s:i, s:I, s:I, s:I, s:i, s:f, s:f, s:f, s:f}", "subscribers",
                                  r->fan.subscribers, "events", (json_int_t)r->fan.events,
                                  "delivered", (json_int_t)r->fan.delivered, "missed",
                                  (json_int_t)r->fan.missed, "window", BENCH_WINDOW,
                                  "publish_seconds", r->fan.publish_seconds, "seconds",
                                  r->fan.seconds, "delivered_per_s", r->fan.per_sec,
                                  "last_done_after_ack_ms", r->fan.tail_ms));
    char *s = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(12));
    if (s != NULL)
        printf("%s\n", s);
    free(s);
    json_decref(o);
}

/* 0 when the bus did what it must; 1 (with a message) when it did not. */
static int check(const bench_report *r)
{
    const pub_result *runs[] = {&r->pub1, &r->pub4, &r->lat1, &r->fan.pub};
    int bad = 0;
    for (size_t k = 0; k < sizeof runs / sizeof runs[0]; k++) {
        if (runs[k]->rejected > 0 || runs[k]->duplicates > 0) {
            fprintf(stderr,
                    "kabar bench: %" PRIu64 " events rejected and %" PRIu64
                    " taken for duplicates (first rejection: %s)\n",
                    runs[k]->rejected, runs[k]->duplicates, runs[k]->first_reject);
            bad = 1;
        }
    }
    if (r->fan.missed > 0) {
        fprintf(stderr,
                "kabar bench: fan-out: subscribers missed or reordered %" PRIu64 " events\n",
                r->fan.missed);
        bad = 1;
    }
    return bad;
}

/*
 * Who publishes and reads. Our own kabard: the PRINCIPALS (keys made and
 * registered by bench_broker_start unless plaintext). --broker, secure: the user's
 * --key, which must be allowed to publish and to read everything.
 */
static int setup_identity(bench_report *r, kabar_error *err)
{
    for (size_t i = 0; i < 4; i++)
        r->pub_src[i] = PRINCIPALS[i];
    r->lat_src[0] = PRINCIPALS[4];
    r->fan_src[0] = PRINCIPALS[5];
    if (r->o.broker == NULL) {
        for (size_t i = 0; i < NPRINCIPALS; i++) {
            r->who[i].id = PRINCIPALS[i];
            r->who[i].role = i + 1 == NPRINCIPALS ? "oversight" : "agent";
        }
        if (!r->o.plaintext) {
            r->conn.server_key = r->server_pk;
            r->conn.reader = &r->who[NPRINCIPALS - 1].key;
        }
        return 0;
    }
    if (r->o.plaintext)
        return 0;
    kabar_client_opts co = {0};
    if (cli_identity("bench", r->o.data, &co) != CLI_OK)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "the key options are not usable");
    if (co.key == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "measuring --broker %s securely needs --key FILE (an oversight or "
                               "admin key registered there) and --server-key KEY|FILE; or pass "
                               "--plaintext for a kabard --insecure",
                               r->o.broker);
    r->conn.reader = co.key;
    r->conn.server_key = co.server_key;
    char role[16];
    int rc = bench_whoami(&r->conn, r->principal, role, err);
    if (rc != 0)
        return rc;
    if (strcmp(role, "oversight") != 0 && strcmp(role, "admin") != 0)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "--key is %s's key, role %s: bench publishes as the key's agency "
                               "and replays the whole log, which needs an oversight or admin key",
                               r->principal, role);
    for (size_t i = 0; i < 4; i++)
        r->pub_src[i] = r->principal;
    r->lat_src[0] = r->fan_src[0] = r->principal;
    return 0;
}

int cmd_bench(int argc, char **argv)
{
    bench_report r = {0};
    int rc = parse_opts(argc, argv, &r.o);
    if (rc >= 0)
        return rc;
    rc = 0;
    machine(&r);
    struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);

    bench_broker b = {0};
    kabar_error err = {0};
    const char *data = r.o.data;
    r.conn.endpoint = r.endpoint = r.o.broker;
    if (r.o.broker != NULL) {
        rc = setup_identity(&r, &err);
    } else {
        progress("starting kabard");
        setup_identity(&r, &err);
        rc = bench_broker_start(&b, r.o.nosync, r.o.plaintext, r.who, NPRINCIPALS, r.server_pk,
                                &err);
        r.conn.endpoint = r.endpoint = b.endpoint;
        data = b.data;
        struct statfs fs;
        if (rc == 0 && statfs(b.data, &fs) == 0 && fs.f_type == 0x01021994 /* TMPFS_MAGIC */)
            fprintf(stderr,
                    "kabar bench: warning: %s is on tmpfs, where a sync does not reach a "
                    "disk; set TMPDIR to a directory on disk\n",
                    b.dir);
    }
    if (rc == 0)
        rc = run_all(&r, data, &err);
    bench_broker_stop(&b);
    for (size_t i = 0; i < NPRINCIPALS; i++)
        kkey_wipe(&r.who[i].key);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    if (rc != 0) {
        fprintf(stderr, "kabar bench: %s\n", err.message[0] ? err.message : kabar_strerror(rc));
        return 2;
    }
    if (r.o.json)
        print_json(&r);
    else
        print_table(&r);
    fflush(stdout);
    return check(&r);
}
