/*
 * bench_publish.c - `kabar bench`'s events and publishers: realistic events
 * encoded before the clock starts, published from many connections at once,
 * counting only what the broker acknowledged (bench.h; design notes at the
 * top of cmd_bench.c).
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include "bench.h"

/* ------------------------------------------------------------------------ */
/* Events                                                                   */

void bench_evset_free(evset *s)
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
 * On success the caller frees *s with bench_evset_free.
 */
int bench_evset_make(evset *s, const char *tag, const char *source, size_t n, size_t size,
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
        bench_evset_free(s);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Publishing                                                               */

typedef struct pubjob {
    const bench_conn *bc;
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
    if (j->bc->server_key != NULL) { /* secure: CURVE as the source, PUB batches signed */
        o.key = j->set->key;
        o.server_key = j->bc->server_key;
    }
    if (j->rc == 0)
        j->rc = kabar_client_connect(&c, j->bc->endpoint, &o, &j->err);
    if (c != NULL)
        kabar_client_on_result(c, on_result, j);
    pthread_barrier_wait(j->go);
    for (size_t i = 0; j->rc == 0 && i < j->set->n && !bench_stop; i++) {
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
int bench_run_publish(const bench_conn *bc, const evset *sets, size_t n, uint32_t window,
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
        *j = (pubjob){.bc = bc, .window = window, .set = &sets[k], .go = &go};
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
        bench_stop = 1;
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
