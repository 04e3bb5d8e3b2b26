/*
 * store_read.c - the read side of the broker's log (contract: store.h):
 * readers and their snapshots, filters and iterators over the indexes, and
 * durable consumers. The environment, the map and writing are in store.c,
 * whose design notes explain why a reader can be reset under its user.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mpr.h"
#include "store_internal.h"

/* ------------------------------------------------------------------------ */
/* Readers                                                                  */

static int reader_load(store_reader *r)
{
    MDB_cursor *cur;
    MDB_val k, v;
    MDB_stat st;
    int rc = mdb_cursor_open(r->txn, r->s->dbi[DB_EVENTS], &cur);
    if (rc != 0)
        return rc;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND) {
        r->head = 0;
    } else if (rc != 0) {
        return rc;
    } else if (k.mv_size != 8) {
        return STORE_BADREC;
    } else {
        r->head = get_be64(k.mv_data);
    }
    if ((rc = mdb_stat(r->txn, r->s->dbi[DB_EVENTS], &st)) != 0)
        return rc;
    r->count = st.ms_entries;
    if (r->s->readonly && r->head > r->s->head)
        r->s->head = r->head;
    return 0;
}

/* Make sure r holds a snapshot: renew it when it was reset (refresh or remap). */
int store__reader_ready(store_reader *r, kabar_error *err)
{
    if (r->s == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "store reader used after its store "
                               "was closed");
    if (r->live)
        return 0;
    int rc;
    for (int tries = 0;; tries++) {
        rc = mdb_txn_renew(r->txn);
        if (rc != MDB_MAP_RESIZED || tries == 3)
            break;
        if ((rc = store__remap(r->s, 0)) != 0)
            break;
    }
    if (rc == 0) {
        r->live = true;
        r->gen++;
        if ((rc = reader_load(r)) == 0)
            return 0;
        mdb_txn_reset(r->txn);
        r->live = false;
    }
    return store__fail(r->s, rc, "cannot read", err);
}

int store_reader_open(store *s, store_reader **out, kabar_error *err)
{
    if (s == NULL || out == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "store_reader_open: no store");
    store_reader *r = calloc(1, sizeof *r);
    if (r == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    r->s = s;
    int rc = store__txn_begin(s, MDB_RDONLY, &r->txn);
    if (rc == 0) {
        r->live = true;
        if ((rc = reader_load(r)) != 0)
            mdb_txn_abort(r->txn);
    }
    if (rc != 0) {
        free(r);
        return store__fail(s, rc,
                           rc == MDB_READERS_FULL ? "too many readers of the" : "cannot read", err);
    }
    r->next = s->readers;
    if (s->readers != NULL)
        s->readers->prev = r;
    s->readers = r;
    *out = r;
    return 0;
}

int store_reader_refresh(store_reader *r, kabar_error *err)
{
    if (r == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "store_reader_refresh: no reader");
    if (r->live) {
        mdb_txn_reset(r->txn);
        r->live = false;
    }
    return store__reader_ready(r, err);
}

void store_reader_close(store_reader **rp)
{
    if (rp == NULL || *rp == NULL)
        return;
    store_reader *r = *rp;
    if (r->s != NULL) {
        mdb_txn_abort(r->txn);
        if (r->prev != NULL)
            r->prev->next = r->next;
        else
            r->s->readers = r->next;
        if (r->next != NULL)
            r->next->prev = r->prev;
    }
    free(r);
    *rp = NULL;
}

uint64_t store_reader_head(const store_reader *r)
{
    return r != NULL ? r->head : 0;
}

uint64_t store_reader_count(const store_reader *r)
{
    return r != NULL ? r->count : 0;
}

int store_get(store_reader *r, uint64_t seq, store_record *rec, kabar_error *err)
{
    if (r == NULL || rec == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "store_get: no reader");
    int rc = store__reader_ready(r, err);
    if (rc != 0)
        return rc;
    uint8_t kb[8];
    put_be64(kb, seq);
    MDB_val k = {8, kb}, v;
    rc = mdb_get(r->txn, r->s->dbi[DB_EVENTS], &k, &v);
    if (rc == MDB_NOTFOUND)
        return kabar_error_set(err, KABAR_NOT_FOUND,
                               "no event with seq %llu in the log (head %llu)",
                               (unsigned long long)seq, (unsigned long long)r->head);
    if (rc == 0)
        rc = store__rec_parse(&k, &v, rec);
    return rc != 0 ? store__fail(r->s, rc, "cannot read", err) : 0;
}

/* received_at of seq, or INT64_MIN when it cannot be read. */
static int64_t time_of(store_reader *r, uint64_t seq)
{
    uint8_t kb[8];
    put_be64(kb, seq);
    MDB_val k = {8, kb}, v;
    store_record rec;
    if (mdb_get(r->txn, r->s->dbi[DB_EVENTS], &k, &v) != 0 || store__rec_parse(&k, &v, &rec) != 0)
        return INT64_MIN;
    return rec.received_at;
}

uint64_t store_seq_at_time(store_reader *r, int64_t t)
{
    if (r == NULL || store__reader_ready(r, NULL) != 0)
        return r != NULL ? r->head + 1 : 1;
    uint64_t lo = 1, hi = r->head + 1; /* answer in [lo, hi] */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int64_t at = time_of(r, mid);
        if (at == INT64_MIN)
            return r->head + 1;
        if (at >= t)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* ------------------------------------------------------------------------ */
/* Filters and iterators                                                    */

static bool has(const char *s)
{
    return s != NULL && s[0] != '\0';
}

static bool str_eq(kabar_str a, const char *b)
{
    size_t n = strlen(b);
    return a.len == n && memcmp(a.ptr, b, n) == 0;
}

bool store_filter_match(const store_filter *f, const kabar_event *ev)
{
    if (f == NULL)
        return true;
    if (has(f->type_prefix)) {
        size_t n = strlen(f->type_prefix);
        if (ev->type.len < n || memcmp(ev->type.ptr, f->type_prefix, n) != 0)
            return false;
    }
    if (has(f->source) && !str_eq(ev->source, f->source))
        return false;
    if (has(f->target) && ev->ntargets > 0) {
        for (uint32_t i = 0; i < ev->ntargets; i++) {
            if (str_eq(ev->targets[i], f->target))
                return true;
        }
        return false;
    }
    return true;
}

enum { IDX_NONE = -1 };

/* One dup set of an index (key -> seqs), walked in seq order. */
typedef struct stream {
    MDB_cursor *cur;
    size_t klen;
    uint8_t key[KEY_MAX];
    uint64_t seq; /* current; 0 when done */
} stream;

struct store_iter {
    store_reader *r;
    store_filter f; /* strings point into fbuf */
    char *fbuf;
    int index;  /* DB_SOURCE, DB_TARGET, DB_TYPE or IDX_NONE (walk events) */
    bool check; /* conditions left for the decoded envelope */
    uint64_t gen, next, bound;
    bool started; /* IDX_NONE: events cursor positioned */
    MDB_cursor *ev;
    stream *st;
    size_t ns, cap;
};

static void iter_clear(store_iter *it)
{
    for (size_t i = 0; i < it->ns; i++)
        mdb_cursor_close(it->st[i].cur);
    it->ns = 0;
    if (it->ev != NULL)
        mdb_cursor_close(it->ev);
    it->ev = NULL;
}

/* Add a stream over key's dup set, positioned at the first seq >= it->next. */
static int stream_add(store_iter *it, const void *key, size_t klen)
{
    if (klen > KEY_MAX)
        return STORE_BADREC;
    if (it->ns == it->cap) {
        size_t cap = it->cap ? it->cap * 2 : 4;
        stream *st = realloc(it->st, cap * sizeof *st);
        if (st == NULL)
            return ENOMEM;
        it->st = st;
        it->cap = cap;
    }
    stream *s = &it->st[it->ns];
    int rc = mdb_cursor_open(it->r->txn, it->r->s->dbi[it->index], &s->cur);
    if (rc != 0)
        return rc;
    it->ns++;
    memcpy(s->key, key, klen);
    s->klen = klen;
    uint8_t sb[8];
    put_be64(sb, it->next);
    MDB_val k = {klen, s->key}, v = {8, sb};
    rc = mdb_cursor_get(s->cur, &k, &v, MDB_GET_BOTH_RANGE);
    s->seq = 0;
    if (rc == 0 && v.mv_size == 8)
        s->seq = get_be64(v.mv_data);
    return rc == 0 && v.mv_size != 8 ? STORE_BADREC : rc == MDB_NOTFOUND ? 0 : rc;
}

/* Every by_type key that starts with the prefix. */
static int type_streams(store_iter *it)
{
    MDB_cursor *cur;
    size_t n = strlen(it->f.type_prefix);
    int rc = mdb_cursor_open(it->r->txn, it->r->s->dbi[DB_TYPE], &cur);
    if (rc != 0)
        return rc;
    MDB_val k = {n, (void *)it->f.type_prefix}, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (rc == 0 && k.mv_size >= n && memcmp(k.mv_data, it->f.type_prefix, n) == 0) {
        if ((rc = stream_add(it, k.mv_data, k.mv_size)) != 0)
            break;
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT_NODUP);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* (Re)build the iterator's cursors on the reader's current snapshot. */
static int iter_build(store_iter *it)
{
    iter_clear(it);
    it->gen = it->r->gen;
    it->started = false;
    it->bound = it->f.to != 0 && it->f.to < it->r->head ? it->f.to : it->r->head;
    int rc = mdb_cursor_open(it->r->txn, it->r->s->dbi[DB_EVENTS], &it->ev);
    if (rc != 0) {
        it->ev = NULL;
        return rc;
    }
    if (it->index == DB_SOURCE)
        return stream_add(it, it->f.source, strlen(it->f.source));
    if (it->index == DB_TARGET) {
        rc = stream_add(it, it->f.target, strlen(it->f.target));
        if (rc == 0 && strcmp(it->f.target, BROADCAST) != 0)
            rc = stream_add(it, BROADCAST, 1);
        return rc;
    }
    if (it->index == DB_TYPE)
        return type_streams(it);
    return 0;
}

static char *copy_str(char **p, const char *s)
{
    if (!has(s))
        return NULL;
    char *d = *p;
    size_t n = strlen(s) + 1;
    memcpy(d, s, n);
    *p += n;
    return d;
}

int store_iter_open(store_reader *r, const store_filter *f, store_iter **out, kabar_error *err)
{
    if (r == NULL || out == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "store_iter_open: no reader");
    int rc = store__reader_ready(r, err);
    if (rc != 0)
        return rc;
    store_filter none = {0};
    if (f == NULL)
        f = &none;
    size_t need = 3;
    need += has(f->type_prefix) ? strlen(f->type_prefix) : 0;
    need += has(f->source) ? strlen(f->source) : 0;
    need += has(f->target) ? strlen(f->target) : 0;
    store_iter *it = calloc(1, sizeof *it);
    char *p = it != NULL ? malloc(need) : NULL;
    if (p == NULL) {
        free(it);
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    }
    it->r = r;
    it->fbuf = p;
    it->f.type_prefix = copy_str(&p, f->type_prefix);
    it->f.source = copy_str(&p, f->source);
    it->f.target = copy_str(&p, f->target);
    it->f.to = f->to;
    it->next = f->from != 0 ? f->from : 1;
    int conds = (it->f.type_prefix != NULL) + (it->f.source != NULL) + (it->f.target != NULL);
    it->index = it->f.source        ? DB_SOURCE
                : it->f.target      ? DB_TARGET
                : it->f.type_prefix ? DB_TYPE
                                    : IDX_NONE;
    it->check = conds > 1;
    if ((rc = iter_build(it)) != 0) {
        store_iter_close(&it);
        return store__fail(r->s, rc, "cannot read", err);
    }
    *out = it;
    return 0;
}

/* The next candidate seq, from the events walk or the merged streams; 0 at the end. */
static int iter_candidate(store_iter *it, uint64_t *seq, MDB_val *k, MDB_val *v)
{
    int rc;
    if (it->index == IDX_NONE) {
        uint8_t kb[8];
        put_be64(kb, it->next);
        *k = (MDB_val){8, kb};
        rc = mdb_cursor_get(it->ev, k, v, it->started ? MDB_NEXT : MDB_SET_RANGE);
        it->started = true;
        if (rc == 0 && k->mv_size != 8)
            return STORE_BADREC;
        *seq = rc == 0 ? get_be64(k->mv_data) : 0;
        return rc == MDB_NOTFOUND ? 0 : rc;
    }
    uint64_t min = 0;
    for (size_t i = 0; i < it->ns; i++) {
        if (it->st[i].seq != 0 && (min == 0 || it->st[i].seq < min))
            min = it->st[i].seq;
    }
    *seq = min;
    if (min == 0 || min > it->bound)
        return 0;
    for (size_t i = 0; i < it->ns; i++) {
        stream *s = &it->st[i];
        if (s->seq != min)
            continue;
        MDB_val dk, dv;
        rc = mdb_cursor_get(s->cur, &dk, &dv, MDB_NEXT_DUP);
        if (rc == 0 && dv.mv_size != 8)
            return STORE_BADREC;
        if (rc != 0 && rc != MDB_NOTFOUND)
            return rc;
        s->seq = rc == 0 ? get_be64(dv.mv_data) : 0;
    }
    uint8_t kb[8];
    put_be64(kb, min);
    *k = (MDB_val){8, kb};
    rc = mdb_cursor_get(it->ev, k, v, MDB_SET_KEY);
    return rc == MDB_NOTFOUND ? STORE_BADREC : rc;
}

int store_iter_next(store_iter *it, store_record *rec, kabar_error *err)
{
    if (it == NULL || rec == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "store_iter_next: no iterator");
    int rc = store__reader_ready(it->r, err);
    if (rc != 0)
        return rc;
    if (it->gen != it->r->gen && (rc = iter_build(it)) != 0)
        return store__fail(it->r->s, rc, "cannot read", err);
    for (;;) {
        uint64_t seq;
        MDB_val k, v;
        if (it->next > it->bound)
            return KABAR_END;
        if ((rc = iter_candidate(it, &seq, &k, &v)) != 0)
            return store__fail(it->r->s, rc, "cannot read", err);
        if (seq == 0 || seq > it->bound) {
            it->next = it->bound + 1;
            return KABAR_END;
        }
        if ((rc = store__rec_parse(&k, &v, rec)) != 0)
            return store__fail(it->r->s, rc, "cannot read", err);
        it->next = seq + 1;
        if (!it->check)
            return 0;
        kabar_event ev;
        kabar_error derr;
        if (kabar_event_decode(NULL, rec->bytes, rec->len, &ev, &derr) != 0)
            return kabar_error_set(err, KABAR_STORE,
                                   "cannot read log at %s: event %llu does not decode: %s (check "
                                   "the log with kabar audit)",
                                   it->r->s->dir, (unsigned long long)seq, derr.message);
        if (store_filter_match(&it->f, &ev))
            return 0;
    }
}

void store_iter_close(store_iter **itp)
{
    if (itp == NULL || *itp == NULL)
        return;
    store_iter *it = *itp;
    /* Read-only cursors may be closed after their transaction ended. */
    iter_clear(it);
    free(it->st);
    free(it->fbuf);
    free(it);
    *itp = NULL;
}

/* ------------------------------------------------------------------------ */
/* Durable consumers                                                        */

static int consumer_fill(const MDB_val *k, const MDB_val *v, store_consumer *c)
{
    if (k->mv_size == 0 || k->mv_size > KABAR_MAX_ID_LEN)
        return STORE_BADREC;
    int rc = store__consumer_parse(v->mv_data, v->mv_size, c);
    memcpy(c->name, k->mv_data, k->mv_size);
    c->name[k->mv_size] = '\0';
    return rc;
}

int store_consumer_get(store_reader *r, const char *name, store_consumer *c, kabar_error *err)
{
    if (r == NULL || name == NULL || c == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "store_consumer_get: no reader");
    int rc = store__reader_ready(r, err);
    if (rc != 0)
        return rc;
    size_t n = strlen(name);
    if (n == 0 || n > KABAR_MAX_ID_LEN)
        return kabar_error_set(err, KABAR_NOT_FOUND, "no durable consumer named '%.*s'",
                               KABAR_MAX_ID_LEN, name);
    MDB_val k = {n, (void *)name}, v;
    rc = mdb_get(r->txn, r->s->dbi[DB_CONSUMERS], &k, &v);
    if (rc == MDB_NOTFOUND)
        return kabar_error_set(err, KABAR_NOT_FOUND, "no durable consumer named '%s'", name);
    if (rc == 0)
        rc = consumer_fill(&k, &v, c);
    return rc != 0 ? store__fail(r->s, rc, "cannot read", err) : 0;
}

int store_consumer_each(store_reader *r, int (*fn)(void *arg, const store_consumer *c), void *arg,
                        kabar_error *err)
{
    if (r == NULL || fn == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "store_consumer_each: no reader");
    int rc = store__reader_ready(r, err);
    if (rc != 0)
        return rc;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(r->txn, r->s->dbi[DB_CONSUMERS], &cur)) != 0)
        return store__fail(r->s, rc, "cannot read", err);
    MDB_val k, v;
    int stop = 0;
    while (stop == 0 && (rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        store_consumer c;
        if ((rc = consumer_fill(&k, &v, &c)) != 0)
            break;
        stop = fn(arg, &c);
    }
    mdb_cursor_close(cur);
    if (stop != 0)
        return stop;
    return rc != MDB_NOTFOUND ? store__fail(r->s, rc, "cannot read", err) : 0;
}
