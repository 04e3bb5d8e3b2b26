/*
 * cmd_bench.c - `kabar bench`: how fast a kabar broker is, measured the way
 * a user of the client API sees it.
 *
 * Unless --broker is given, bench starts its own kabard (the binary beside
 * this one, or $KABAR_KABARD) on a fresh log in a temporary directory on
 * disk ($TMPDIR, else /var/tmp), listening on a loopback wildcard port, and
 * stops it (SIGTERM, wait) and removes the directory at the end.
 *
 * Design notes
 *
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
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "kabar.h"
#include "store.h"

#define BENCH_WINDOW       256
#define BENCH_SUBSCRIBERS  50
#define BENCH_SUBS_PER_CON 10
#define BENCH_SUB_CREDIT   1024
#define BENCH_PAD_ITEM     120 /* padding text per array item, chars */
#define BENCH_STALL_NS     (30 * 1000000000LL)

static volatile sig_atomic_t g_stop;

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void progress(const char *what)
{
    if (isatty(STDERR_FILENO))
        fprintf(stderr, "kabar bench: %s...\n", what);
}

/* ------------------------------------------------------------------------ */
/* The broker under test                                                    */

typedef struct bench_broker {
    pid_t pid;               /* 0 when the broker is not ours */
    char dir[PATH_MAX - 64]; /* our temporary directory, "" when none */
    char data[PATH_MAX];     /* its log directory, "" when unknown */
    char log[PATH_MAX];      /* kabard's stderr */
    char endpoint[256];
} bench_broker;

static int kabard_path(char out[PATH_MAX], size_t cap, kabar_error *err)
{
    const char *env = getenv("KABAR_KABARD");
    if (env != NULL && *env != '\0') {
        snprintf(out, cap, "%s", env);
    } else {
        char self[PATH_MAX - 16];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n < 0)
            return kabar_error_set(err, KABAR_IO,
                                   "cannot read /proc/self/exe: %s (set KABAR_KABARD)",
                                   strerror(errno));
        self[n] = '\0';
        char *slash = strrchr(self, '/');
        if (slash != NULL)
            *slash = '\0';
        snprintf(out, cap, "%s/kabard", self);
    }
    if (access(out, X_OK) != 0)
        return kabar_error_set(err, KABAR_NOT_FOUND,
                               "cannot run kabard at %s: %s (build it beside kabar, set "
                               "KABAR_KABARD, or pass --broker EP)",
                               out, strerror(errno));
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

/* Print the end of kabard's log to stderr, for a failure's context. */
static void print_log_tail(const bench_broker *b)
{
    FILE *f = fopen(b->log, "r");
    if (f == NULL)
        return;
    char buf[2048];
    if (fseek(f, 0, SEEK_END) == 0 && ftell(f) > (long)sizeof buf - 1)
        fseek(f, -(long)(sizeof buf - 1), SEEK_END);
    else
        fseek(f, 0, SEEK_SET);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    if (n > 0)
        fprintf(stderr, "kabar bench: end of kabard's log:\n%s", buf);
}

static void broker_stop(bench_broker *b)
{
    if (b->pid > 0) {
        kill(b->pid, SIGTERM);
        int status = 0;
        int64_t deadline = mono_ns() + 10 * 1000000000LL;
        while (waitpid(b->pid, &status, WNOHANG) == 0) {
            if (mono_ns() > deadline) {
                fprintf(stderr,
                        "kabar bench: kabard (pid %d) ignored SIGTERM for 10 s; killing it\n",
                        (int)b->pid);
                kill(b->pid, SIGKILL);
                waitpid(b->pid, &status, 0);
                break;
            }
            usleep(10000);
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "kabar bench: warning: kabard did not stop cleanly (status 0x%x)\n",
                    status);
            print_log_tail(b);
        }
        b->pid = 0;
    }
    if (b->dir[0] != '\0') {
        nftw(b->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        b->dir[0] = '\0';
    }
}

static int read_endpoint(bench_broker *b)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/kabard.endpoint", b->data);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(b->endpoint, 1, sizeof b->endpoint - 1, f);
    fclose(f);
    while (n > 0 && (b->endpoint[n - 1] == '\n' || b->endpoint[n - 1] == '\r'))
        n--;
    b->endpoint[n] = '\0';
    return n > 0 ? 0 : -1;
}

static void exec_kabard(const char *exe, const bench_broker *b, bool nosync)
{
    int fd = open(b->log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd >= 0) {
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
    }
    char *args[] = {(char *)"kabard",
                    (char *)"--data",
                    (char *)b->data,
                    (char *)"--listen",
                    (char *)"tcp://127.0.0.1:*",
                    (char *)"--insecure",
                    nosync ? (char *)"--unsafe-nosync" : NULL,
                    NULL};
    execv(exe, args);
    fprintf(stderr, "kabar bench: cannot run %s: %s\n", exe, strerror(errno));
    _exit(127);
}

static int broker_start(bench_broker *b, bool nosync, kabar_error *err)
{
    char exe[PATH_MAX];
    int rc = kabard_path(exe, sizeof exe, err);
    if (rc != 0)
        return rc;
    const char *tmp = getenv("TMPDIR");
    snprintf(b->dir, sizeof b->dir, "%s/kabar-bench-XXXXXX",
             tmp != NULL && *tmp != '\0' ? tmp : "/var/tmp");
    if (mkdtemp(b->dir) == NULL) {
        rc = kabar_error_set(err, KABAR_IO,
                             "cannot create a temporary directory %s: %s (set TMPDIR)", b->dir,
                             strerror(errno));
        b->dir[0] = '\0';
        return rc;
    }
    snprintf(b->data, sizeof b->data, "%s/data", b->dir);
    snprintf(b->log, sizeof b->log, "%s/kabard.log", b->dir);
    fflush(NULL);
    b->pid = fork();
    if (b->pid < 0) {
        b->pid = 0;
        return kabar_error_set(err, KABAR_IO, "cannot start kabard: fork: %s", strerror(errno));
    }
    if (b->pid == 0)
        exec_kabard(exe, b, nosync);

    int64_t deadline = mono_ns() + 15 * 1000000000LL;
    while (read_endpoint(b) != 0) {
        int status;
        if (waitpid(b->pid, &status, WNOHANG) == b->pid) {
            b->pid = 0;
            print_log_tail(b);
            return kabar_error_set(err, KABAR_CONNECT,
                                   "kabard (%s) exited with status 0x%x before it was ready", exe,
                                   status);
        }
        if (mono_ns() > deadline || g_stop) {
            print_log_tail(b);
            return kabar_error_set(err, KABAR_TIMEOUT,
                                   "kabard (%s) did not write %s/kabard.endpoint within 15 s", exe,
                                   b->data);
        }
        usleep(5000);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Events                                                                   */

/* A run's events, each encoded by kabar_event_from_json (malloc'd). */
typedef struct evset {
    uint8_t **bytes;
    size_t *len;
    size_t n;
    size_t total_bytes;
} evset;

static void evset_free(evset *s)
{
    for (size_t i = 0; s->bytes != NULL && i < s->n; i++)
        free(s->bytes[i]);
    free(s->bytes);
    free(s->len);
    memset(s, 0, sizeof *s);
}

static const char *const ACTIONS[] = {
    "Kelebihan bayar perjalanan dinas telah disetor ke Kas Daerah",
    "Puskesmas telah memakai daftar hadir elektronik sejak Mei",
    "PPK telah ditegur tertulis dan addendum kontrak ditandatangani",
    "Aset tetap yang belum tercatat telah dimasukkan ke dalam KIB",
};
static const char *const PROBLEMS[] = {
    "Dana BOK terlambat cair",
    "Bidan di pustu kurang",
    "Internet kelurahan putus",
};
static const char PAD_TEXT[] =
    "Dokumen pendukung telah diunggah ke aplikasi SIPD dan diverifikasi oleh tim Inspektorat "
    "bersama Bagian Organisasi Setda sebelum batas waktu enam puluh hari sejak laporan diterima. ";

/* Append `chars` of padding as JSON string items (with a leading comma). */
static int append_pad(kabar_buf *j, size_t chars)
{
    int rc = 0;
    while (chars > 0 && rc == 0) {
        size_t n = chars > BENCH_PAD_ITEM ? BENCH_PAD_ITEM : chars;
        rc = kabar_buf_append(j, ",\"", 2);
        if (rc == 0)
            rc = kabar_buf_append(j, PAD_TEXT, n);
        if (rc == 0)
            rc = kabar_buf_append(j, "\"", 1);
        chars -= n;
    }
    return rc;
}

/* The JSON of event i of a run: even i finding.responded, odd visit.completed. */
static int event_json(kabar_buf *j, const char *tag, const char *source, size_t i, size_t pad)
{
    char head[1024];
    j->len = 0;
    if (i % 2 == 0) {
        snprintf(head, sizeof head,
                 "{\"id\":\"%s-%zu\",\"type\":\"finding.responded\",\"source\":\"%s\","
                 "\"targets\":[\"inspektorat\"],\"corr\":\"F-2024-%03zu\",\"body\":{"
                 "\"finding_id\":\"F-2024-%03zu\",\"rec_id\":\"R%zu\",\"action\":\"%s\","
                 "\"deposit_idr\":%zu,\"evidence\":[\"STS-2024-%05zu.pdf\"",
                 tag, i, source, i % 997, i % 997, 1 + i % 3, ACTIONS[i / 2 % 4],
                 1250000 + (i % 89) * 25000, i);
    } else {
        snprintf(head, sizeof head,
                 "{\"id\":\"%s-%zu\",\"type\":\"visit.completed\",\"source\":\"%s\","
                 "\"corr\":\"V-2024-%03zu\",\"body\":{\"visit_id\":\"V-2024-%03zu\","
                 "\"host\":\"%s\",\"date\":\"2024-%02zu-%02zu\",\"attendance\":{\"present\":%zu,"
                 "\"total\":92},\"programs\":[\"Kamis Berseri\"],\"problems\":[\"%s\"],"
                 "\"plans\":[\"Percepatan serapan anggaran\"",
                 tag, i, source, i % 997, i % 997, source, 1 + i % 12, 1 + i % 28, 80 + i % 12,
                 PROBLEMS[i / 2 % 3]);
    }
    int rc = kabar_buf_append(j, head, strlen(head));
    if (rc == 0)
        rc = append_pad(j, pad);
    if (rc == 0)
        rc = kabar_buf_append(j, "]}}", 3);
    return rc;
}

/* Padding (chars) that brings event kind i%2 from `base` bytes to about `size`. */
static size_t pad_for(size_t base, size_t size)
{
    if (size <= base + 3)
        return 0;
    size_t want = size - base, chars = 0;
    while (want > 3) { /* each item costs its text plus ~3 bytes (header, JSON comma) */
        size_t n = want - 3 > BENCH_PAD_ITEM ? BENCH_PAD_ITEM : want - 3;
        chars += n;
        want -= n + (n > 31 ? 2 : 1);
    }
    return chars;
}

static int encode_one(const kabar_schema *schema, kabar_buf *j, const char *tag, const char *source,
                      size_t i, size_t pad, uint8_t **out, size_t *len, kabar_error *err)
{
    if (event_json(j, tag, source, i, pad) != 0)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory building bench events");
    kabar_error e = {0};
    int rc = kabar_event_from_json(schema, j->data, j->len, NULL, out, len, &e);
    if (rc != 0)
        return kabar_error_set(err, rc, "cannot encode a bench event (%.*s...): %s", 60, j->data,
                               e.message);
    return 0;
}

/*
 * Encode n events of about `size` bytes from `source`, ids "<tag>-<i>".
 * On success the caller frees *s with evset_free.
 */
static int evset_make(evset *s, const char *tag, const char *source, size_t n, size_t size,
                      kabar_error *err)
{
    const kabar_schema *schema = kabar_schema_default(err);
    if (schema == NULL)
        return err != NULL ? err->code : KABAR_BAD_SCHEMA;
    kabar_buf j = {0};
    size_t pad[2] = {0, 0};
    int rc = 0;
    for (size_t k = 0; k < 2 && rc == 0; k++) { /* measure each kind without padding */
        uint8_t *b = NULL;
        size_t len = 0;
        rc = encode_one(schema, &j, tag, source, k, 0, &b, &len, err);
        free(b);
        pad[k] = pad_for(len, size);
    }
    memset(s, 0, sizeof *s);
    s->bytes = rc == 0 ? calloc(n ? n : 1, sizeof *s->bytes) : NULL;
    s->len = rc == 0 ? calloc(n ? n : 1, sizeof *s->len) : NULL;
    if (rc == 0 && (s->bytes == NULL || s->len == NULL))
        rc = kabar_error_set(err, KABAR_NO_MEMORY, "out of memory for %zu bench events", n);
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = encode_one(schema, &j, tag, source, i, pad[i % 2], &s->bytes[i], &s->len[i], err);
        if (rc == 0) {
            s->n = i + 1;
            s->total_bytes += s->len[i];
        }
    }
    kabar_buf_free(&j);
    if (rc != 0)
        evset_free(s);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Publishing                                                               */

typedef struct pubjob {
    const char *endpoint;
    uint32_t window;
    const evset *set;
    pthread_barrier_t *go;
    int64_t *sent_at; /* per event: when kabar_client_publish was called */
    int64_t *lat;     /* per event: publish call to result callback, -1 none */
    uint64_t acked, duplicates, rejected;
    char first_reject[KABAR_ERROR_MESSAGE_MAX + 64];
    int64_t t_end;
    int rc;
    kabar_error err;
} pubjob;

static void on_result(void *arg, const kabar_pub_result *r)
{
    pubjob *j = arg;
    size_t i = (size_t)(uintptr_t)r->user;
    if (i < j->set->n)
        j->lat[i] = mono_ns() - j->sent_at[i];
    if (r->code != KABAR_OK) {
        if (j->rejected++ == 0)
            snprintf(j->first_reject, sizeof j->first_reject, "%s: %s", kabar_errname(r->code),
                     r->message != NULL ? r->message : "");
    } else if (r->duplicate) {
        j->duplicates++;
    } else {
        j->acked++;
    }
}

static void *pub_thread(void *arg)
{
    pubjob *j = arg;
    kabar_client_opts o = {.timeout_ms = 10000, .window = j->window};
    kabar_client *c = NULL;
    if (j->rc == 0)
        j->rc = kabar_client_connect(&c, j->endpoint, &o, &j->err);
    if (c != NULL)
        kabar_client_on_result(c, on_result, j);
    pthread_barrier_wait(j->go);
    for (size_t i = 0; j->rc == 0 && i < j->set->n && !g_stop; i++) {
        j->sent_at[i] = mono_ns();
        j->rc = kabar_client_publish(c, j->set->bytes[i], j->set->len[i], (void *)(uintptr_t)i,
                                     &j->err);
    }
    if (j->rc == 0)
        j->rc = kabar_client_flush(c, &j->err);
    j->t_end = mono_ns();
    kabar_client_destroy(&c);
    return NULL;
}

typedef struct pub_result {
    uint64_t events; /* offered */
    uint64_t acked, duplicates, rejected;
    double seconds, per_sec;
    double p50_us, p99_us, max_us; /* ack latency of the first publisher */
    int64_t t_start, t_end;        /* monotonic ns: the barrier, the last flush */
    char first_reject[KABAR_ERROR_MESSAGE_MAX + 64];
} pub_result;

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static void latency_stats(pub_result *r, int64_t *lat, size_t n)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (lat[i] >= 0)
            lat[m++] = lat[i];
    if (m == 0)
        return;
    qsort(lat, m, sizeof *lat, cmp_i64);
    r->p50_us = (double)lat[(m - 1) / 2] / 1e3;
    r->p99_us = (double)lat[(size_t)((double)(m - 1) * 0.99)] / 1e3;
    r->max_us = (double)lat[m - 1] / 1e3;
}

/*
 * Publish sets[0..n) from n connections at once with `window`, after
 * waiting on extra_go when not NULL. Fills *r; returns non-zero (with err)
 * when a connection failed.
 */
static int run_publish(const char *endpoint, const evset *sets, size_t n, uint32_t window,
                       pthread_barrier_t *extra_go, pub_result *r, kabar_error *err)
{
    static const evset no_events = {0};
    pubjob *jobs = calloc(n, sizeof *jobs);
    pthread_t *tid = calloc(n, sizeof *tid);
    pthread_barrier_t go;
    int rc = 0;
    memset(r, 0, sizeof *r);
    if (extra_go != NULL)
        pthread_barrier_wait(extra_go);
    if (jobs == NULL || tid == NULL) {
        free(jobs);
        free(tid);
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    }
    pthread_barrier_init(&go, NULL, (unsigned)n + 1);
    size_t started = 0;
    for (size_t k = 0; k < n; k++) {
        pubjob *j = &jobs[k];
        *j = (pubjob){.endpoint = endpoint, .window = window, .set = &sets[k], .go = &go};
        j->sent_at = malloc((sets[k].n ? sets[k].n : 1) * sizeof *j->sent_at);
        j->lat = malloc((sets[k].n ? sets[k].n : 1) * sizeof *j->lat);
        if (j->sent_at == NULL || j->lat == NULL) {
            j->rc = kabar_error_set(&j->err, KABAR_NO_MEMORY, "out of memory");
            j->set = &no_events;
        }
        for (size_t i = 0; j->lat != NULL && i < sets[k].n; i++)
            j->lat[i] = -1;
    }
    for (; started < n; started++)
        if (pthread_create(&tid[started], NULL, pub_thread, &jobs[started]) != 0)
            break;
    if (started < n) { /* cannot happen in practice; release the barrier by hand */
        rc = kabar_error_set(err, KABAR_NO_MEMORY, "cannot start publisher threads");
        g_stop = 1;
        for (size_t k = started; k < n; k++)
            pthread_barrier_wait(&go);
    }
    pthread_barrier_wait(&go);
    int64_t t0 = mono_ns(), t_end = t0;
    for (size_t k = 0; k < started; k++)
        pthread_join(tid[k], NULL);
    for (size_t k = 0; k < n; k++) {
        pubjob *j = &jobs[k];
        if (j->rc != 0 && rc == 0)
            rc = kabar_error_set(err, j->rc, "publisher %zu: %s", k + 1, j->err.message);
        r->events += sets[k].n;
        r->acked += j->acked;
        r->duplicates += j->duplicates;
        r->rejected += j->rejected;
        if (j->rejected > 0 && r->first_reject[0] == '\0')
            memcpy(r->first_reject, j->first_reject, sizeof r->first_reject);
        if (j->t_end > t_end)
            t_end = j->t_end;
    }
    r->t_start = t0;
    r->t_end = t_end;
    r->seconds = (double)(t_end - t0) / 1e9;
    r->per_sec = r->seconds > 0 ? (double)r->acked / r->seconds : 0;
    if (n > 0 && jobs[0].lat != NULL)
        latency_stats(r, jobs[0].lat, sets[0].n);
    for (size_t k = 0; k < n; k++) {
        free(jobs[k].sent_at);
        free(jobs[k].lat);
    }
    pthread_barrier_destroy(&go);
    free(jobs);
    free(tid);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Replay                                                                   */

typedef struct rate {
    uint64_t events, bytes;
    double seconds, per_sec;
    bool done;
} rate;

static void rate_finish(rate *r, int64_t t0)
{
    r->seconds = (double)(mono_ns() - t0) / 1e9;
    r->per_sec = r->seconds > 0 ? (double)r->events / r->seconds : 0;
    r->done = true;
}

static int replay_wire(const char *endpoint, rate *r, kabar_error *err)
{
    kabar_client *c = NULL;
    kabar_sub *s = NULL;
    kabar_sub_opts o = {.start = KABAR_START_FIRST, .until_head = true, .credit = BENCH_SUB_CREDIT};
    int rc = kabar_client_connect(&c, endpoint, NULL, err);
    int64_t t0 = mono_ns();
    if (rc == 0)
        rc = kabar_client_subscribe(c, &o, &s, err);
    kabar_record rec;
    while (rc == 0 && !g_stop && (rc = kabar_sub_next(s, &rec, 10000, err)) == 0) {
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
static int replay_offline(const char *data, bool jsonl, rate *r, kabar_error *err)
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
    while (rc == 0 && !g_stop && (rc = store_iter_next(it, &rec, err)) == 0) {
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
    const char *endpoint;
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
    while (left > 0 && j->rc == 0 && !g_stop) {
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
    j->rc = kabar_client_connect(&c, j->endpoint, NULL, &j->err);
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

typedef struct fan_result {
    uint64_t events, delivered, missed;
    int subscribers;
    double seconds, per_sec; /* publish start to last subscriber done */
    double publish_seconds;  /* publish start to last ack */
    double tail_ms;          /* last ack to last subscriber done */
    bool done;
    pub_result pub;
} fan_result;

static int run_fanout(const char *endpoint, const evset *set, fan_result *r, kabar_error *err)
{
    enum { NCON = (BENCH_SUBSCRIBERS + BENCH_SUBS_PER_CON - 1) / BENCH_SUBS_PER_CON };
    fanjob jobs[NCON];
    pthread_t tid[NCON];
    pthread_barrier_t go;
    kabar_client *c = NULL;
    kabar_head h = {0};
    int rc = kabar_client_connect(&c, endpoint, NULL, err);
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
        jobs[k] = (fanjob){.endpoint = endpoint,
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
    int prc = run_publish(endpoint, set, 1, BENCH_WINDOW, &go, &r->pub, err);
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

/* ------------------------------------------------------------------------ */
/* The command                                                              */

typedef struct bench_opts {
    const char *broker; /* NULL: start our own kabard */
    const char *data;   /* the broker's log directory, for the offline figures */
    size_t events;
    size_t size;
    bool json;
    bool nosync;
} bench_opts;

typedef struct bench_report {
    bench_opts o;
    const char *endpoint;
    double event_bytes; /* mean encoded size */
    pub_result pub1, pub4, lat1;
    rate wire, offline, jsonl;
    fan_result fan;
    long cores;
    char cpu[128];
} bench_report;

static const char *const AGENCIES[] = {"dinkes", "disdik", "bappeda", "kec-padang-barat"};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: kabar bench [--broker EP] [--data DIR] [--events N] [--size BYTES] [--json]\n"
            "                   [--unsafe-nosync]\n"
            "\n"
            "Measure a kabar broker: durable publish throughput with 1 and 4 publishers\n"
            "(window 256), ack latency at window 1 and 256, replay over the wire and offline\n"
            "(also to JSON Lines), and fan-out to 50 subscribers. Only acknowledged events\n"
            "count. Takes under a minute with the defaults; `kabar bench --events 2000` is\n"
            "a quick check.\n"
            "\n"
            "  --broker EP       measure this running broker instead of starting a kabard\n"
            "                    (it gets ~2.5 x N test events in its log)\n"
            "  --data DIR        that broker's log directory, for the offline replay figures\n"
            "  --events N        events per publish run (default 200000)\n"
            "  --size BYTES      approximate encoded size of each event (default 300)\n"
            "  --json            one JSON object on stdout instead of the table\n"
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
    static const struct option longopts[] = {
        {"broker", required_argument, NULL, 'b'}, {"data", required_argument, NULL, 'd'},
        {"events", required_argument, NULL, 'n'}, {"size", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},         {"unsafe-nosync", no_argument, NULL, 'U'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
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
static int make_sets(evset *sets, size_t nsets, const char *tag, const char *run,
                     const char *const *sources, size_t n, size_t size, kabar_error *err)
{
    int rc = 0;
    for (size_t k = 0; k < nsets && rc == 0; k++) {
        char t[64];
        snprintf(t, sizeof t, "%s-%s%zu", tag, run, k);
        rc = evset_make(&sets[k], t, sources[k], n / nsets + (k < n % nsets), size, err);
    }
    return rc;
}

static void free_sets(evset *sets, size_t nsets)
{
    for (size_t k = 0; k < nsets; k++)
        evset_free(&sets[k]);
}

static int run_publish_sets(bench_report *r, const char *tag, const char *run, size_t nsets,
                            const char *const *sources, size_t n, uint32_t window, pub_result *out,
                            kabar_error *err)
{
    evset sets[4] = {0};
    int rc = make_sets(sets, nsets, tag, run, sources, n, r->o.size, err);
    if (rc == 0) {
        if (r->event_bytes == 0 && sets[0].n > 0)
            r->event_bytes = (double)sets[0].total_bytes / (double)sets[0].n;
        rc = run_publish(r->endpoint, sets, nsets, window, NULL, out, err);
    }
    free_sets(sets, nsets);
    return rc;
}

static int run_all(bench_report *r, const char *data, kabar_error *err)
{
    static const char *const lat_src[] = {"bpkad"}, *const fan_src[] = {"dpupr"};
    char tag[48];
    /* ms since the epoch, in hex: ids stay unique on a broker benched twice */
    snprintf(tag, sizeof tag, "%llx", (unsigned long long)(kabar_now() / 1000000));
    size_t n = r->o.events;
    size_t nlat = n / 40 < 100 ? 100 : n / 40 > 5000 ? 5000 : n / 40;
    size_t nfan = n / 10 < 100 ? 100 : n / 10 > 20000 ? 20000 : n / 10;
    int rc;
    progress("publishing with 1 publisher");
    rc = run_publish_sets(r, tag, "a", 1, AGENCIES, n, BENCH_WINDOW, &r->pub1, err);
    if (rc == 0 && !g_stop) {
        progress("publishing with 4 publishers");
        rc = run_publish_sets(r, tag, "b", 4, AGENCIES, n, BENCH_WINDOW, &r->pub4, err);
    }
    if (rc == 0 && !g_stop) {
        progress("measuring ack latency at window 1");
        rc = run_publish_sets(r, tag, "c", 1, lat_src, nlat, 1, &r->lat1, err);
    }
    if (rc == 0 && !g_stop) {
        progress("replaying over the wire");
        rc = replay_wire(r->endpoint, &r->wire, err);
    }
    if (rc == 0 && !g_stop && data != NULL) {
        progress("replaying offline");
        rc = replay_offline(data, false, &r->offline, err);
        if (rc == 0)
            rc = replay_offline(data, true, &r->jsonl, err);
    }
    if (rc == 0 && !g_stop) {
        progress("fan-out to 50 subscribers");
        evset set = {0};
        rc = make_sets(&set, 1, tag, "d", fan_src, nfan, r->o.size, err);
        if (rc == 0)
            rc = run_fanout(r->endpoint, &set, &r->fan, err);
        evset_free(&set);
    }
    if (rc == 0 && g_stop)
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
    if (r.o.broker != NULL) {
        r.endpoint = r.o.broker;
    } else {
        progress("starting kabard");
        rc = broker_start(&b, r.o.nosync, &err);
        r.endpoint = b.endpoint;
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
    broker_stop(&b);
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
