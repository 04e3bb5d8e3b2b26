/*
 * subs.c - peers, subscriptions and the relay (see subs.h).
 *
 * Design notes
 *
 * Two chained hash tables: peers by routing id (FNV-1a), subscriptions by
 * (peer pointer, sub id). Every subscription is also in an array, for the
 * relay's sweep and for O(1) removal (swap with the last), and in its
 * peer's list, so that a peer that goes away takes its subscriptions along
 * without a scan. Durable subscriptions with an unpersisted ack sit in a
 * small dirty array until the next commit.
 *
 * The relay is a cursor walk: `position` is the only state, and every
 * record sent moves it past that record's seq, whether the record came from
 * the log (store_iter from position) or from the turn's fresh records in
 * memory (indexed by seq - first fresh seq). Either way the next record
 * considered is the first seq >= position, so switching between the two
 * can neither skip nor repeat a record.
 */
#include "subs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "wire.h"

/* A packed filter: map header, three keys and three values at their maximum. */
#define FILTER_MAX (1 + 3 * 8 + KABAR_MAX_TYPE_LEN + 2 * KABAR_MAX_AGENCY_LEN + 3 * 2)

/* The pending position of a durable subscription removed before its commit. */
typedef struct orphan {
    char name[KABAR_MAX_ID_LEN + 1];
    uint64_t acked;
    uint8_t filter[FILTER_MAX];
    size_t filter_len; /* 0: keep the stored filter */
    char owner[KABAR_MAX_AGENCY_LEN + 1];
    bool has_owner; /* set with the filter: the consumer is new */
} orphan;

struct subs {
    peer **pb; /* peer buckets */
    size_t pnb;
    size_t npeers;
    sub **sb; /* subscription buckets */
    size_t snb;
    sub **all; /* every subscription; sub->index is its place */
    size_t n, cap;
    size_t ndurable;
    sub **db; /* durable-name buckets */
    size_t dnb;
    size_t cursor; /* where the next relay starts */
    sub **dirty;   /* durable subscriptions to persist */
    size_t ndirty, dirtycap;
    orphan *orphans; /* positions of removed ones, persisted first */
    size_t norphans, orphancap;
    kabar_buf evt; /* EVT payload being packed */
};

static uint64_t hash_bytes(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

static uint64_t hash_sub(const peer *p, uint64_t id)
{
    uint64_t h = (uint64_t)(uintptr_t)p * 0x9E3779B97F4A7C15ULL;
    return (h ^ (id + 0x632BE59BD9B4E019ULL + (h << 6) + (h >> 2))) * 0xff51afd7ed558ccdULL;
}

int subs_new(subs **out, kabar_error *err)
{
    subs *t = calloc(1, sizeof *t);
    if (t == NULL)
        goto fail;
    t->pnb = 64;
    t->snb = 64;
    t->dnb = 64;
    t->pb = calloc(t->pnb, sizeof *t->pb);
    t->sb = calloc(t->snb, sizeof *t->sb);
    t->db = calloc(t->dnb, sizeof *t->db);
    if (t->pb == NULL || t->sb == NULL || t->db == NULL)
        goto fail;
    *out = t;
    return 0;
fail:
    subs_destroy(&t);
    return kabar_error_set(err, KABAR_NO_MEMORY, "cannot allocate the subscription table");
}

void subs_destroy(subs **tp)
{
    subs *t = tp ? *tp : NULL;
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++)
        free(t->all[i]);
    for (size_t i = 0; t->pb != NULL && i < t->pnb; i++) {
        peer *p = t->pb[i];
        while (p != NULL) {
            peer *next = p->hnext;
            free(p);
            p = next;
        }
    }
    free(t->pb);
    free(t->sb);
    free(t->db);
    free(t->all);
    free(t->dirty);
    free(t->orphans);
    kabar_buf_free(&t->evt);
    free(t);
    *tp = NULL;
}

/* Double a bucket array when it is as full as it is long (chains stay short). */
static void grow_peers(subs *t)
{
    size_t nb = t->pnb * 2;
    peer **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return; /* longer chains, still correct */
    for (size_t i = 0; i < t->pnb; i++) {
        peer *p = t->pb[i];
        while (p != NULL) {
            peer *next = p->hnext;
            size_t k = hash_bytes(p->rid, p->rid_len) & (nb - 1);
            p->hnext = b[k];
            b[k] = p;
            p = next;
        }
    }
    free(t->pb);
    t->pb = b;
    t->pnb = nb;
}

static void grow_subs(subs *t)
{
    size_t nb = t->snb * 2;
    sub **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return;
    for (size_t i = 0; i < t->snb; i++) {
        sub *s = t->sb[i];
        while (s != NULL) {
            sub *next = s->hnext;
            size_t k = hash_sub(s->peer, s->id) & (nb - 1);
            s->hnext = b[k];
            b[k] = s;
            s = next;
        }
    }
    free(t->sb);
    t->sb = b;
    t->snb = nb;
}

peer *subs_peer(subs *t, const void *rid, size_t rid_len, int64_t now_ms)
{
    if (rid_len == 0 || rid_len > SUBS_RID_MAX)
        return NULL;
    size_t k = hash_bytes(rid, rid_len) & (t->pnb - 1);
    for (peer *p = t->pb[k]; p != NULL; p = p->hnext) {
        if (p->rid_len == rid_len && memcmp(p->rid, rid, rid_len) == 0) {
            p->last_heard_ms = now_ms;
            return p;
        }
    }
    peer *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    memcpy(p->rid, rid, rid_len);
    p->rid_len = (uint8_t)rid_len;
    p->last_heard_ms = now_ms;
    p->hnext = t->pb[k];
    t->pb[k] = p;
    if (++t->npeers > t->pnb)
        grow_peers(t);
    return p;
}

size_t subs_peer_count(const subs *t)
{
    return t->npeers;
}

size_t subs_count(const subs *t)
{
    return t->n;
}

size_t subs_durable_count(const subs *t)
{
    return t->ndurable;
}

sub *subs_find(const subs *t, const peer *p, uint64_t id)
{
    size_t k = hash_sub(p, id) & (t->snb - 1);
    for (sub *s = t->sb[k]; s != NULL; s = s->hnext)
        if (s->peer == p && s->id == id)
            return s;
    return NULL;
}

sub *subs_find_durable(const subs *t, const char *name, size_t len)
{
    if (t->ndurable == 0 || len == 0 || len > KABAR_MAX_ID_LEN)
        return NULL;
    for (sub *s = t->db[hash_bytes(name, len) & (t->dnb - 1)]; s != NULL; s = s->dnext)
        if (strlen(s->durable) == len && memcmp(s->durable, name, len) == 0)
            return s;
    return NULL;
}

static void grow_durable(subs *t)
{
    size_t nb = t->dnb * 2;
    sub **b = calloc(nb, sizeof *b);
    if (b == NULL)
        return;
    for (size_t i = 0; i < t->dnb; i++) {
        sub *s = t->db[i];
        while (s != NULL) {
            sub *next = s->dnext;
            size_t k = hash_bytes(s->durable, strlen(s->durable)) & (nb - 1);
            s->dnext = b[k];
            b[k] = s;
            s = next;
        }
    }
    free(t->db);
    t->db = b;
    t->dnb = nb;
}

/* Copy a view into a fixed field; -1 when it does not fit or holds a NUL. */
static int copy_str(char *dst, size_t cap, kabar_str v)
{
    if (v.ptr == NULL || v.len == 0) {
        dst[0] = '\0';
        return 0;
    }
    if (v.len >= cap || memchr(v.ptr, '\0', v.len) != NULL)
        return -1;
    memcpy(dst, v.ptr, v.len);
    dst[v.len] = '\0';
    return 0;
}

static int mark_dirty(subs *t, sub *s)
{
    if (s->dirty)
        return 0;
    if (t->ndirty == t->dirtycap) {
        size_t cap = t->dirtycap ? t->dirtycap * 2 : 16;
        sub **d = realloc(t->dirty, cap * sizeof *d);
        if (d == NULL)
            return KABAR_NO_MEMORY;
        t->dirty = d;
        t->dirtycap = cap;
    }
    t->dirty[t->ndirty++] = s;
    s->dirty = true;
    return 0;
}

static int fill(sub *s, const sub_spec *spec, kabar_error *err)
{
    if (copy_str(s->type_prefix, sizeof s->type_prefix, spec->type_prefix) != 0)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "type: longer than %d bytes or not a string", KABAR_MAX_TYPE_LEN);
    if (copy_str(s->source, sizeof s->source, spec->source) != 0)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "source: not an agency id");
    if (copy_str(s->target, sizeof s->target, spec->target) != 0)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "target: not an agency id");
    if (copy_str(s->durable, sizeof s->durable, spec->durable) != 0)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "durable: longer than %d bytes or holds a NUL", KABAR_MAX_ID_LEN);
    if (spec->durable.ptr != NULL && spec->durable.len == 0)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "durable: empty consumer name");
    s->position = spec->position ? spec->position : 1;
    s->bounded = spec->bounded;
    s->bound = spec->bound;
    s->credit = spec->credit ? spec->credit : SUBS_DEFAULT_CREDIT;
    if (s->credit > SUBS_MAX_CREDIT)
        s->credit = SUBS_MAX_CREDIT;
    s->acked = spec->acked;
    snprintf(s->owner, sizeof s->owner, "%s", spec->owner ? spec->owner : "");
    return 0;
}

int subs_add(subs *t, peer *p, uint64_t id, const sub_spec *spec, sub **out, kabar_error *err)
{
    if (subs_find(t, p, id) != NULL)
        return kabar_error_set(err, KABAR_PROTOCOL,
                               "subscription %llu already exists on this connection "
                               "(UNSUB it first or use another id)",
                               (unsigned long long)id);
    if (p->nsubs >= SUBS_MAX_PER_PEER)
        return kabar_error_set(err, KABAR_LIMIT, "at most %d subscriptions per connection",
                               SUBS_MAX_PER_PEER);
    if (t->n >= SUBS_MAX_TOTAL)
        return kabar_error_set(err, KABAR_LIMIT,
                               "the broker holds %d subscriptions, its maximum; try later",
                               SUBS_MAX_TOTAL);
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 64;
        sub **a = realloc(t->all, cap * sizeof *a);
        if (a == NULL)
            return kabar_error_set(err, KABAR_NO_MEMORY, "cannot add a subscription");
        t->all = a;
        t->cap = cap;
    }
    sub *s = calloc(1, sizeof *s);
    if (s == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "cannot add a subscription");
    int rc = fill(s, spec, err);
    s->filter_dirty = spec->dirty;
    if (rc == 0 && s->durable[0] != '\0' && spec->dirty && mark_dirty(t, s) != 0)
        rc = kabar_error_set(err, KABAR_NO_MEMORY, "cannot add a subscription");
    if (rc != 0) {
        free(s);
        return rc;
    }
    s->peer = p;
    s->id = id;
    s->index = t->n;
    t->all[t->n++] = s;
    size_t k = hash_sub(p, id) & (t->snb - 1);
    s->hnext = t->sb[k];
    t->sb[k] = s;
    s->pnext = p->subs;
    p->subs = s;
    p->nsubs++;
    if (s->durable[0] != '\0') {
        k = hash_bytes(s->durable, strlen(s->durable)) & (t->dnb - 1);
        s->dnext = t->db[k];
        t->db[k] = s;
        if (++t->ndurable > t->dnb)
            grow_durable(t);
    }
    if (t->n > t->snb)
        grow_subs(t);
    *out = s;
    return 0;
}

/*
 * A durable subscription that goes (UNSUB, takeover, silent peer) before
 * its last ack was committed: keep the ack, it is the consumer's word. Only
 * when out of memory is it lost, and then the consumer sees some events
 * again, which at-least-once delivery allows.
 */
static void keep_orphan(subs *t, const sub *s)
{
    if (t->norphans == t->orphancap) {
        size_t cap = t->orphancap ? t->orphancap * 2 : 8;
        orphan *o = realloc(t->orphans, cap * sizeof *o);
        if (o == NULL)
            return;
        t->orphans = o;
        t->orphancap = cap;
    }
    orphan *o = &t->orphans[t->norphans++];
    snprintf(o->name, sizeof o->name, "%s", s->durable);
    o->acked = s->acked;
    o->filter_len = 0;
    kabar_buf b = {0};
    if (s->filter_dirty && subs_filter_pack(s, &b) == 0 && b.len <= sizeof o->filter) {
        memcpy(o->filter, b.data, b.len);
        o->filter_len = b.len;
    }
    snprintf(o->owner, sizeof o->owner, "%s", s->owner);
    o->has_owner = s->filter_dirty;
    kabar_buf_free(&b);
}

static void unlink_sub(subs *t, sub *s)
{
    sub **pp = &t->sb[hash_sub(s->peer, s->id) & (t->snb - 1)];
    while (*pp != s)
        pp = &(*pp)->hnext;
    *pp = s->hnext;
    pp = &s->peer->subs;
    while (*pp != s)
        pp = &(*pp)->pnext;
    *pp = s->pnext;
    s->peer->nsubs--;
    sub *last = t->all[--t->n];
    t->all[s->index] = last;
    last->index = s->index;
    if (s->dirty) {
        for (size_t i = 0; i < t->ndirty; i++) {
            if (t->dirty[i] == s) {
                memmove(&t->dirty[i], &t->dirty[i + 1], (t->ndirty - i - 1) * sizeof *t->dirty);
                t->ndirty--;
                break;
            }
        }
        keep_orphan(t, s);
    }
    if (s->durable[0] != '\0') {
        pp = &t->db[hash_bytes(s->durable, strlen(s->durable)) & (t->dnb - 1)];
        while (*pp != s)
            pp = &(*pp)->dnext;
        *pp = s->dnext;
        t->ndurable--;
    }
}

void subs_remove(subs *t, sub *s)
{
    if (s == NULL)
        return;
    unlink_sub(t, s);
    free(s);
}

size_t subs_drop_peers(subs *t, bool (*drop)(void *arg, const peer *p),
                       void (*gone)(void *arg, const peer *p, const sub *s), void *arg)
{
    size_t n = 0;
    for (size_t i = 0; i < t->pnb; i++) {
        for (peer *p = t->pb[i]; p != NULL; p = p->hnext) {
            if (p->subs == NULL || !drop(arg, p))
                continue;
            while (p->subs != NULL) {
                if (gone != NULL)
                    gone(arg, p, p->subs);
                subs_remove(t, p->subs);
                n++;
            }
        }
    }
    return n;
}

void subs_credit(sub *s, uint64_t n)
{
    s->credit =
        (n >= SUBS_MAX_CREDIT || s->credit + n > SUBS_MAX_CREDIT) ? SUBS_MAX_CREDIT : s->credit + n;
}

int subs_cack(subs *t, sub *s, uint64_t seq, kabar_error *err)
{
    if (s->durable[0] == '\0')
        return kabar_error_set(err, KABAR_UNKNOWN_CONSUMER,
                               "subscription %llu is not durable: only a durable consumer acks "
                               "(subscribe with a durable name)",
                               (unsigned long long)s->id);
    if (seq >= s->position)
        return kabar_error_set(err, KABAR_PROTOCOL,
                               "ack of seq %llu, but only seqs up to %llu were sent",
                               (unsigned long long)seq, (unsigned long long)(s->position - 1));
    if (seq <= s->acked)
        return 0;
    if (mark_dirty(t, s) != 0)
        return kabar_error_set(err, KABAR_NO_MEMORY, "cannot record the ack; send it again");
    s->acked = seq;
    return 0;
}

size_t subs_expire(subs *t, int64_t now_ms, int64_t timeout_ms,
                   void (*gone)(void *arg, const peer *p), void *arg)
{
    size_t dropped = 0;
    for (size_t i = 0; i < t->pnb; i++) {
        peer **pp = &t->pb[i];
        while (*pp != NULL) {
            peer *p = *pp;
            if (now_ms - p->last_heard_ms < timeout_ms) {
                pp = &p->hnext;
                continue;
            }
            if (gone != NULL)
                gone(arg, p);
            while (p->subs != NULL)
                subs_remove(t, p->subs);
            *pp = p->hnext;
            free(p);
            t->npeers--;
            dropped++;
        }
    }
    return dropped;
}

int subs_filter_pack(const sub *s, kabar_buf *out)
{
    msgpack_packer pk;
    wire_packer_init(&pk, out);
    const char *keys[3] = {"source", "target", "type"}; /* canonical order */
    const char *vals[3] = {s->source, s->target, s->type_prefix};
    uint32_t n = 0;
    for (int i = 0; i < 3; i++)
        n += vals[i][0] != '\0';
    int rc = msgpack_pack_map(&pk, n);
    for (int i = 0; i < 3 && rc == 0; i++) {
        if (vals[i][0] == '\0')
            continue;
        rc = msgpack_pack_str_with_body(&pk, keys[i], strlen(keys[i]));
        if (rc == 0)
            rc = msgpack_pack_str_with_body(&pk, vals[i], strlen(vals[i]));
    }
    return rc == 0 ? 0 : KABAR_NO_MEMORY;
}

/*
 * A sub's acked must be recorded even when its filter cannot be packed (out
 * of memory): then it goes without one (NULL: keep the stored filter), which
 * loses nothing but the filter's refresh.
 */
size_t subs_updates(subs *t, store_consumer_update *up, size_t max, kabar_buf *filters)
{
    size_t no = t->norphans < max ? t->norphans : max;
    for (size_t i = 0; i < no; i++) {
        const orphan *o = &t->orphans[i];
        up[i] = (store_consumer_update){o->name, o->acked, o->filter_len ? o->filter : NULL,
                                        o->filter_len, o->has_owner ? o->owner : NULL};
    }
    up += no;
    max -= no;
    size_t n = t->ndirty < max ? t->ndirty : max;
    /* Reserve first, so that the pointers handed out stay put. */
    filters->len = 0;
    bool room = true;
    if (filters->cap < n * FILTER_MAX) {
        static const char zero[FILTER_MAX];
        for (size_t i = 0; i < n && room; i++)
            room = kabar_buf_append(filters, zero, FILTER_MAX) == 0;
    }
    filters->len = 0;
    for (size_t i = 0; i < n; i++) {
        const sub *s = t->dirty[i];
        up[i].name = s->durable;
        up[i].acked = s->acked;
        up[i].filter = NULL;
        up[i].filter_len = 0;
        up[i].owner = s->filter_dirty ? s->owner : NULL; /* with the filter: at creation */
        size_t off = filters->len;
        if (room && s->filter_dirty && subs_filter_pack(s, filters) == 0) {
            up[i].filter = (const uint8_t *)filters->data + off;
            up[i].filter_len = filters->len - off;
        }
    }
    return no + n;
}

void subs_updates_done(subs *t, size_t n, bool ok)
{
    if (!ok || n == 0)
        return;
    size_t no = n < t->norphans ? n : t->norphans;
    if (no > 0) {
        memmove(t->orphans, t->orphans + no, (t->norphans - no) * sizeof *t->orphans);
        t->norphans -= no;
    }
    n -= no;
    if (n > t->ndirty)
        n = t->ndirty;
    for (size_t i = 0; i < n; i++) {
        t->dirty[i]->dirty = false;
        t->dirty[i]->filter_dirty = false;
    }
    if (n > 0)
        memmove(t->dirty, t->dirty + n, (t->ndirty - n) * sizeof *t->dirty);
    t->ndirty -= n;
}

/* ------------------------------------------------------------------------ */
/* Relay                                                                    */

/* One subscription's relay turn: the EVT being packed and the turn's budget. */
typedef struct relay_run {
    subs *t;
    sub *s;
    const subs_sink *sink;
    uint32_t count;   /* records in t->evt */
    uint32_t records; /* sent this turn */
    size_t bytes;
} relay_run;

static int flush_evt(relay_run *r)
{
    if (r->count == 0)
        return 0;
    int rc = r->sink->evt(r->sink->arg, r->s, r->count, r->t->evt.data, r->t->evt.len);
    r->t->evt.len = 0;
    r->count = 0;
    return rc;
}

/* Pack one record; the caller has checked credit and the filter. */
static int put(relay_run *r, uint64_t seq, int64_t received_at, const void *ev, size_t len)
{
    int rc = wire_enc_record(&r->t->evt, seq, received_at, ev, len);
    if (rc != 0)
        return rc;
    r->s->position = seq + 1;
    r->s->credit--;
    r->s->sent++;
    r->count++;
    r->records++;
    r->bytes += len;
    if (r->count >= SUBS_EVT_RECORDS || r->t->evt.len >= SUBS_EVT_BYTES)
        return flush_evt(r);
    return 0;
}

static bool budget_left(const relay_run *r)
{
    return r->s->credit > 0 && r->records < SUBS_TURN_RECORDS && r->bytes < SUBS_TURN_BYTES;
}

static void to_filter(const sub *s, store_filter *f)
{
    f->type_prefix = s->type_prefix[0] ? s->type_prefix : NULL;
    f->source = s->source[0] ? s->source : NULL;
    f->target = s->target[0] ? s->target : NULL;
}

/* From the turn's fresh records: s->position is within them. */
static int relay_fresh(relay_run *r, const subs_relay_in *in, uint64_t last)
{
    sub *s = r->s;
    store_filter f = {0};
    to_filter(s, &f);
    uint64_t first = in->fresh[0].seq;
    for (size_t i = (size_t)(s->position - first); i < in->nfresh && budget_left(r); i++) {
        const subs_fresh *x = &in->fresh[i];
        if (x->seq > last)
            break;
        if (store_filter_match(&f, x->ev)) {
            int rc = put(r, x->seq, x->received_at, x->bytes, x->len);
            if (rc != 0)
                return rc;
        } else {
            s->position = x->seq + 1;
        }
    }
    return 0;
}

static int relay_log(relay_run *r, const subs_relay_in *in, uint64_t last, kabar_error *err)
{
    sub *s = r->s;
    store_filter f = {0};
    to_filter(s, &f);
    f.from = s->position;
    f.to = last;
    store_iter *it = NULL;
    int rc = store_iter_open(in->reader, &f, &it, err);
    while (rc == 0 && budget_left(r)) {
        store_record rec;
        rc = store_iter_next(it, &rec, err);
        if (rc == KABAR_END) {
            s->position = last + 1;
            rc = 0;
            break;
        }
        if (rc == 0)
            rc = put(r, rec.seq, rec.received_at, rec.bytes, rec.len);
    }
    store_iter_close(&it);
    return rc;
}

/* Serve one subscription; *more when it stopped on its budget, not its credit. */
static int relay_one(subs *t, sub *s, const subs_relay_in *in, const subs_sink *sink, bool *more,
                     kabar_error *err)
{
    uint64_t last = s->bounded && s->bound < in->head ? s->bound : in->head;
    relay_run r = {.t = t, .s = s, .sink = sink};
    t->evt.len = 0;
    int rc = 0;
    bool in_fresh = in->nfresh > 0 && s->position >= in->fresh[0].seq &&
                    s->position <= in->fresh[in->nfresh - 1].seq;
    if (in_fresh)
        rc = relay_fresh(&r, in, last);
    else if (in->reader != NULL)
        rc = relay_log(&r, in, last, err);
    int frc = flush_evt(&r);
    if (rc == 0)
        rc = frc;
    /* Progress made and more to do: come back without sleeping. */
    if (rc == 0 && r.records > 0 && s->credit > 0 && s->position <= last)
        *more = true;
    return rc;
}

static bool has_work(const sub *s, uint64_t head)
{
    return s->credit > 0 && s->position <= head && (!s->bounded || s->position <= s->bound);
}

int subs_relay(subs *t, const subs_relay_in *in, const subs_sink *sink, bool *more,
               kabar_error *err)
{
    int first_rc = 0;
    bool any_ended = false;
    uint64_t sent = 0;
    size_t n = t->n, start = n ? t->cursor % n : 0;
    *more = false;
    /* Indices stay put during the sweep: ended subscriptions are removed after it. */
    for (size_t k = 0; k < n; k++) {
        sub *s = t->all[(start + k) % n];
        if (sent >= SUBS_RELAY_RECORDS) {
            t->cursor = (start + k) % n; /* the next turn begins here */
            *more = true;
            break;
        }
        if (has_work(s, in->head)) {
            kabar_error e;
            uint64_t before = s->sent;
            int rc = relay_one(t, s, in, sink, more, &e);
            sent += s->sent - before;
            if (rc != 0 && first_rc == 0) {
                first_rc = rc;
                if (err != NULL)
                    *err = e;
            }
        }
        if (s->bounded && s->position > s->bound) {
            sink->end(sink->arg, s, s->bound);
            s->ended = any_ended = true;
        }
    }
    for (size_t i = 0; any_ended && i < t->n;) {
        if (t->all[i]->ended)
            subs_remove(t, t->all[i]); /* the last one moves to i */
        else
            i++;
    }
    return first_rc;
}
