/*
 * server.c - kabard's poll loop (see server.h for the phases).
 *
 * Design notes
 *
 * Ownership of a published event. The event's bytes stay in the zmq_msg_t
 * they arrived in from the read phase until the end of the turn: the
 * decoded kabar_event, the store_entry handed to store_write and the fresh
 * record the relay sends from all point into that frame. Nothing is copied
 * and nothing is allocated per event: the turn's arrays are allocated once,
 * sized for TURN_SLOTS events.
 *
 * Order. Seqs are assigned by store_write in the order the events were
 * read; ACKs go out only after store_write returned (the transaction is on
 * disk); the relay runs after the acks and sends only what the store reader
 * or the turn's committed batch holds. A client therefore never sees an
 * event relayed that could still be lost, nor an ACK for one.
 *
 * One thread. Moving the commit (the fsync) to a writer thread so that the
 * loop reads turn N+1 while turn N syncs was considered and not done: a
 * publisher with a window of W unacked events sends nothing new until the
 * acks of the turn come back, so for one publisher there is nothing to
 * overlap; with many publishers, what arrives during the fsync queues in
 * ZeroMQ and becomes the next turn's group commit, which is what a writer
 * thread would achieve, without handing zmq messages across threads (the
 * socket is not thread-safe) or a second LMDB transaction in flight. The
 * cost of a turn is one fsync plus validation; the group grows with load.
 *
 * Back-pressure and memory. A turn reads at most TURN_EVENTS events (plus
 * one PUB's worth), TURN_MSGS messages and TURN_BYTES bytes, so one busy
 * publisher cannot starve the relay, and ZMQ_RCVHWM bounds what waits in
 * ZeroMQ. Replies use ZMQ_DONTWAIT on a ROUTER without ROUTER_MANDATORY:
 * a peer that is gone or whose queue is full loses the reply (it will time
 * out and retry), and the loop never blocks on one peer. Subscriptions
 * cannot overflow that queue: the credit a client grants (at most
 * SUBS_MAX_CREDIT per subscription) bounds the EVT messages in flight, and
 * ZMQ_SNDHWM is set above SUBS_MAX_PER_PEER * SUBS_MAX_CREDIT.
 */
#include "server.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <msgpack.h>
#include <zmq.h>

#include "klog.h"
#include "config.h"
#include "subs.h"
#include "wire.h"

#define TURN_EVENTS  4096                            /* events read per turn, then commit */
#define TURN_SLOTS   (TURN_EVENTS + KABAR_MAX_BATCH) /* a PUB is read whole */
#define TURN_MSGS    8192                            /* messages read per turn */
#define TURN_BYTES   (64u << 20)                     /* event bytes held per turn */
#define TURN_UPDATES 4096                            /* consumer positions per commit */
#define MAX_FRAME    (4 * KABAR_MAX_EVENT_BYTES)     /* ZMQ_MAXMSGSIZE: larger drops the peer */
#define SNDHWM       (2 * SUBS_MAX_PER_PEER * SUBS_MAX_CREDIT)
#define RCVHWM       10000
#define LINGER_MS    1000
#define TIMER_MS     1000

/* An event's outcome before the ACK: an entry of the commit, or a failure. */
typedef struct slot {
    int code; /* KABAR_OK: entries[ix]; else errs[ix] */
    uint32_t ix;
} slot;

/* A PUB message of the turn, waiting for its ACK. */
typedef struct pub {
    zmq_msg_t rid;
    uint64_t batch;
    uint32_t first; /* slots[first .. first+n) */
    uint32_t n;
} pub;

struct server {
    void *ctx;
    void *sock;
    char endpoint[256];
    const char *data_dir;
    store *st;
    store_reader *rd;
    bool rd_stale;
    const kabar_schema *schema;
    subs *subs;
    int64_t started_ms;
    int64_t next_timer_ms;
    server_stats stats;

    /* The turn. */
    zmq_msg_t *frames; /* frames[i] holds entries[i]'s bytes */
    kabar_event *evs;
    store_entry *entries;
    size_t nentries;
    slot *slots;
    size_t nslots;
    kabar_error *errs;
    size_t nerrs;
    pub *pubs;
    size_t npubs;
    size_t nmsgs;
    size_t nbytes;
    subs_fresh *fresh;
    size_t nfresh;
    store_consumer_update *ups;
    kabar_buf filters;
    kabar_error commit_err; /* code != 0: this turn's commit failed */
    kabar_buf out;          /* a reply being encoded */

    klog_limit lim_bad, lim_reject, lim_store, lim_relay;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The peer's routing id as hex for log lines (at most 16 bytes shown). */
static const char *hex_rid(const void *rid, size_t len, char out[40])
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *b = rid;
    size_t n = len < 16 ? len : 16, j = 0;
    for (size_t i = 0; i < n; i++) {
        out[j++] = digits[b[i] >> 4];
        out[j++] = digits[b[i] & 15];
    }
    if (n < len)
        out[j++] = '+';
    out[j] = '\0';
    return out;
}

/* ------------------------------------------------------------------------ */
/* Sending                                                                  */

/* Send [rid][header][payload?]; a failure means the peer loses this reply. */
static void send_to(server *sv, const void *rid, size_t rid_len, const kabar_buf *hdr,
                    const void *payload, size_t plen, bool has_payload)
{
    int more = has_payload ? ZMQ_SNDMORE : 0;
    if (zmq_send(sv->sock, rid, rid_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0)
        return;
    if (zmq_send(sv->sock, hdr->data, hdr->len, more | ZMQ_DONTWAIT) < 0)
        return;
    if (has_payload)
        zmq_send(sv->sock, payload, plen, ZMQ_DONTWAIT);
}

static void send_hdr(server *sv, const peer *p, const kabar_buf *hdr)
{
    send_to(sv, p->rid, p->rid_len, hdr, NULL, 0, false);
}

/* ERR [id, CODE, text] to a peer, and a rate-limited log line about it. */
static void send_err(server *sv, const peer *p, uint64_t id, const char *what, const kabar_error *e)
{
    char hex[40];
    sv->stats.bad_msgs++;
    klog_limited(&sv->lim_bad, mono_ms(), KLOG_INFO, "KABARD-BAD-MSG",
                 "peer %s: %s answered with ERR %s: %s", hex_rid(p->rid, p->rid_len, hex), what,
                 kabar_errname(e->code), e->message);
    if (wire_enc_err(&sv->out, id, e->code, e->message) == 0)
        send_hdr(sv, p, &sv->out);
}

static int sink_evt(void *arg, const sub *s, uint32_t count, const void *payload, size_t len)
{
    server *sv = arg;
    int rc = wire_enc_cmd1(&sv->out, WIRE_EVT, s->id, count);
    if (rc == 0)
        send_to(sv, s->peer->rid, s->peer->rid_len, &sv->out, payload, len, true);
    return rc;
}

static int sink_end(void *arg, const sub *s, uint64_t last)
{
    server *sv = arg;
    int rc = wire_enc_cmd1(&sv->out, WIRE_END, s->id, last);
    if (rc == 0)
        send_hdr(sv, s->peer, &sv->out);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Setup                                                                    */

static int alloc_turn(server *sv)
{
    sv->frames = malloc(TURN_SLOTS * sizeof *sv->frames);
    sv->evs = malloc(TURN_SLOTS * sizeof *sv->evs);
    sv->entries = malloc(TURN_SLOTS * sizeof *sv->entries);
    sv->slots = malloc(TURN_SLOTS * sizeof *sv->slots);
    sv->errs = malloc(TURN_SLOTS * sizeof *sv->errs);
    sv->pubs = malloc(TURN_SLOTS * sizeof *sv->pubs);
    sv->fresh = malloc(TURN_SLOTS * sizeof *sv->fresh);
    sv->ups = malloc(TURN_UPDATES * sizeof *sv->ups);
    return sv->frames && sv->evs && sv->entries && sv->slots && sv->errs && sv->pubs && sv->fresh &&
                   sv->ups
               ? 0
               : KABAR_NO_MEMORY;
}

static int set_opt(server *sv, int opt, int val, const char *name, kabar_error *err)
{
    if (zmq_setsockopt(sv->sock, opt, &val, sizeof val) == 0)
        return 0;
    return kabar_error_set(err, KABAR_IO, "cannot set %s on the socket: %s", name,
                           zmq_strerror(zmq_errno()));
}

static int open_socket(server *sv, const char *listen, kabar_error *err)
{
    int rc;
    sv->ctx = zmq_ctx_new();
    if (sv->ctx == NULL)
        return kabar_error_set(err, KABAR_IO, "cannot create a ZeroMQ context: %s",
                               zmq_strerror(zmq_errno()));
    sv->sock = zmq_socket(sv->ctx, ZMQ_ROUTER);
    if (sv->sock == NULL)
        return kabar_error_set(err, KABAR_IO, "cannot create the ROUTER socket: %s",
                               zmq_strerror(zmq_errno()));
    int64_t maxmsg = MAX_FRAME;
    if ((rc = set_opt(sv, ZMQ_SNDHWM, SNDHWM, "ZMQ_SNDHWM", err)) != 0 ||
        (rc = set_opt(sv, ZMQ_RCVHWM, RCVHWM, "ZMQ_RCVHWM", err)) != 0 ||
        (rc = set_opt(sv, ZMQ_LINGER, LINGER_MS, "ZMQ_LINGER", err)) != 0 ||
        (rc = set_opt(sv, ZMQ_ROUTER_MANDATORY, 0, "ZMQ_ROUTER_MANDATORY", err)) != 0)
        return rc;
    if (zmq_setsockopt(sv->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0)
        return kabar_error_set(err, KABAR_IO, "cannot set ZMQ_MAXMSGSIZE: %s",
                               zmq_strerror(zmq_errno()));
    if (zmq_bind(sv->sock, listen) != 0)
        return kabar_error_set(err, KABAR_IO, "cannot listen on %s: %s (check --listen)", listen,
                               zmq_strerror(zmq_errno()));
    size_t len = sizeof sv->endpoint;
    if (zmq_getsockopt(sv->sock, ZMQ_LAST_ENDPOINT, sv->endpoint, &len) != 0)
        snprintf(sv->endpoint, sizeof sv->endpoint, "%s", listen);
    return 0;
}

int server_new(server **out, const server_opts *opts, kabar_error *err)
{
    server *sv = calloc(1, sizeof *sv);
    if (sv == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "cannot allocate the server");
    int rc;
    sv->st = opts->store;
    sv->schema = opts->schema;
    sv->data_dir = opts->data_dir ? opts->data_dir : "";
    sv->started_ms = mono_ms();
    sv->next_timer_ms = sv->started_ms + TIMER_MS;
    if (alloc_turn(sv) != 0) {
        rc = kabar_error_set(err, KABAR_NO_MEMORY, "cannot allocate the server's turn buffers");
        goto fail;
    }
    if ((rc = subs_new(&sv->subs, err)) != 0 ||
        (rc = store_reader_open(sv->st, &sv->rd, err)) != 0 ||
        (rc = open_socket(sv, opts->listen, err)) != 0)
        goto fail;
    *out = sv;
    return 0;
fail:
    server_destroy(&sv);
    return rc;
}

const char *server_endpoint(const server *sv)
{
    return sv->endpoint;
}

void server_get_stats(const server *sv, server_stats *st)
{
    *st = sv->stats;
}

void server_destroy(server **svp)
{
    server *sv = svp ? *svp : NULL;
    if (sv == NULL)
        return;
    if (sv->sock != NULL)
        zmq_close(sv->sock); /* ZMQ_LINGER gives queued replies their second */
    if (sv->ctx != NULL)
        zmq_ctx_term(sv->ctx);
    store_reader_close(&sv->rd);
    subs_destroy(&sv->subs);
    free(sv->frames);
    free(sv->evs);
    free(sv->entries);
    free(sv->slots);
    free(sv->errs);
    free(sv->pubs);
    free(sv->fresh);
    free(sv->ups);
    kabar_buf_free(&sv->filters);
    kabar_buf_free(&sv->out);
    free(sv);
    *svp = NULL;
}

/* The read snapshot, moved to the newest commit when one happened since. */
static store_reader *reader(server *sv)
{
    if (sv->rd_stale) {
        kabar_error e;
        if (store_reader_refresh(sv->rd, &e) != 0) {
            klog_limited(&sv->lim_store, mono_ms(), KLOG_WARN, "KABARD-STORE-FAIL",
                         "cannot refresh the log reader: %s", e.message);
            return NULL;
        }
        sv->rd_stale = false;
    }
    return sv->rd;
}

/* ------------------------------------------------------------------------ */
/* Read phase: queries                                                      */

static int pack_key(msgpack_packer *pk, const char *k)
{
    return msgpack_pack_str_with_body(pk, k, strlen(k));
}

/* Start a reply header [1, CMD, id, <map follows>]; the caller packs the map. */
static int reply_begin(server *sv, msgpack_packer *pk, const char *cmd, uint64_t id)
{
    sv->out.len = 0;
    wire_packer_init(pk, &sv->out);
    int rc = msgpack_pack_array(pk, 4);
    rc = rc ? rc : msgpack_pack_uint64(pk, KABAR_PROTOCOL_VERSION);
    rc = rc ? rc : pack_key(pk, cmd);
    rc = rc ? rc : msgpack_pack_uint64(pk, id);
    return rc;
}

static void on_head(server *sv, peer *p, uint64_t id)
{
    store_reader *rd = reader(sv);
    kabar_error e;
    if (rd == NULL) {
        kabar_error_set(&e, KABAR_STORE, "cannot read the log; see the broker's log");
        send_err(sv, p, id, "HEAD", &e);
        return;
    }
    uint64_t head = store_reader_head(rd);
    store_record rec;
    bool has_last = head > 0 && store_get(rd, head, &rec, &e) == 0;
    msgpack_packer pk;
    int rc = reply_begin(sv, &pk, "HEADOK", id);
    rc = rc ? rc : msgpack_pack_map(&pk, has_last ? 3 : 2);
    rc = rc ? rc : pack_key(&pk, "count");
    rc = rc ? rc : msgpack_pack_uint64(&pk, store_reader_count(rd));
    if (has_last) {
        rc = rc ? rc : pack_key(&pk, "last_received_at");
        rc = rc ? rc : wire_pack_time(&pk, rec.received_at);
    }
    rc = rc ? rc : pack_key(&pk, "seq");
    rc = rc ? rc : msgpack_pack_uint64(&pk, head);
    if (rc == 0)
        send_hdr(sv, p, &sv->out);
}

typedef struct status_ctx {
    server *sv;
    msgpack_packer *pk;
    uint64_t head;
    uint32_t n;
    int rc;
} status_ctx;

static int count_consumer(void *arg, const store_consumer *c)
{
    ((status_ctx *)arg)->n++;
    return 0;
}

static int pack_consumer(void *arg, const store_consumer *c)
{
    status_ctx *x = arg;
    msgpack_packer *pk = x->pk;
    const sub *live = subs_find_durable(x->sv->subs, c->name, strlen(c->name));
    uint64_t acked = live != NULL && live->acked > c->acked ? live->acked : c->acked;
    int rc = msgpack_pack_map(pk, 4);
    rc = rc ? rc : pack_key(pk, "acked");
    rc = rc ? rc : msgpack_pack_uint64(pk, acked);
    rc = rc ? rc : pack_key(pk, "connected");
    rc = rc ? rc : (live != NULL ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
    rc = rc ? rc : pack_key(pk, "lag");
    rc = rc ? rc : msgpack_pack_uint64(pk, x->head > acked ? x->head - acked : 0);
    rc = rc ? rc : pack_key(pk, "name");
    rc = rc ? rc : pack_key(pk, c->name);
    x->rc = rc;
    return rc;
}

static void on_status(server *sv, peer *p, uint64_t id)
{
    store_reader *rd = reader(sv);
    kabar_error e;
    if (rd == NULL) {
        kabar_error_set(&e, KABAR_STORE, "cannot read the log; see the broker's log");
        send_err(sv, p, id, "STATUS", &e);
        return;
    }
    msgpack_packer pk;
    status_ctx x = {.sv = sv, .pk = &pk, .head = store_reader_head(rd)};
    if (store_consumer_each(rd, count_consumer, &x, &e) != 0) {
        send_err(sv, p, id, "STATUS", &e);
        return;
    }
    const server_stats *st = &sv->stats;
    int rc = reply_begin(sv, &pk, "STATUSOK", id);
    rc = rc ? rc : msgpack_pack_map(&pk, 11);
    rc = rc ? rc : pack_key(&pk, "consumers");
    rc = rc ? rc : msgpack_pack_array(&pk, x.n);
    if (rc == 0 && x.n > 0 && (store_consumer_each(rd, pack_consumer, &x, &e) != 0 || x.rc != 0))
        rc = -1;
    struct {
        const char *k;
        uint64_t v;
    } nums[] = {
        {"count", store_reader_count(rd)},
        {"duplicates", st->duplicates},
        {"head", x.head},
        {"log_bytes", store_file_bytes(sv->st)},
        {"peers", subs_peer_count(sv->subs)},
        {"published", st->published},
        {"rejected", st->rejected},
        {"subscriptions", subs_count(sv->subs)},
        {"uptime_s", (uint64_t)(mono_ms() - sv->started_ms) / 1000},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0] && rc == 0; i++) {
        rc = pack_key(&pk, nums[i].k);
        rc = rc ? rc : msgpack_pack_uint64(&pk, nums[i].v);
    }
    rc = rc ? rc : pack_key(&pk, "version");
    rc = rc ? rc : pack_key(&pk, kabar_version());
    if (rc == 0)
        send_hdr(sv, p, &sv->out);
}

/* ------------------------------------------------------------------------ */
/* Read phase: subscriptions                                                */

/* Where a new subscription starts, from its options and the log. */
static int resolve_start(server *sv, store_reader *rd, const wire_sub *o, uint64_t *pos,
                         kabar_error *err)
{
    uint64_t head = store_reader_head(rd);
    switch (o->start) {
    case KABAR_START_FIRST:
        *pos = 1;
        return 0;
    case KABAR_START_NOW:
        *pos = head + 1;
        return 0;
    case KABAR_START_SEQ:
        *pos = o->seq ? o->seq : 1;
        return 0;
    case KABAR_START_TIME:
        *pos = store_seq_at_time(rd, o->time);
        return 0;
    }
    return kabar_error_set(err, KABAR_BAD_VALUE, "start: unknown start");
}

/* The durable consumer's resume point: live holder (taken over), stored, or new. */
static int resolve_durable(server *sv, const peer *p, store_reader *rd, const wire_sub *o,
                           sub_spec *spec, kabar_error *err)
{
    char name[KABAR_MAX_ID_LEN + 1];
    if (o->durable.len == 0 || o->durable.len > KABAR_MAX_ID_LEN ||
        memchr(o->durable.ptr, '\0', o->durable.len) != NULL)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "durable: a consumer name is 1 to %d bytes without NUL",
                               KABAR_MAX_ID_LEN);
    memcpy(name, o->durable.ptr, o->durable.len);
    name[o->durable.len] = '\0';
    spec->dirty = true; /* the filter is replaced by this SUB's */
    sub *old = subs_find_durable(sv->subs, name, o->durable.len);
    if (old != NULL) {
        char hex[40];
        klog(KLOG_INFO, "KABARD-TAKEOVER",
             "durable consumer %s taken over by peer %s; its previous subscription ends", name,
             hex_rid(p->rid, p->rid_len, hex));
        spec->acked = old->acked;
        spec->position = old->acked + 1;
        sink_end(sv, old, old->position - 1);
        subs_remove(sv->subs, old);
        return 0;
    }
    store_consumer c;
    int rc = store_consumer_get(rd, name, &c, err);
    if (rc == 0) {
        spec->acked = c.acked;
        spec->position = c.acked + 1;
        return 0;
    }
    if (rc != KABAR_NOT_FOUND)
        return rc;
    spec->acked = spec->position - 1; /* new: created at its start */
    return 0;
}

static void on_sub(server *sv, peer *p, const wire_header *h)
{
    kabar_error e;
    wire_sub o;
    store_reader *rd = reader(sv);
    if (wire_sub_decode(h, &o, &e) != 0) {
        send_err(sv, p, h->id, "SUB", &e);
        return;
    }
    if (rd == NULL) {
        kabar_error_set(&e, KABAR_STORE, "cannot read the log; see the broker's log");
        send_err(sv, p, h->id, "SUB", &e);
        return;
    }
    if (subs_find(sv->subs, p, h->id) != NULL) {
        kabar_error_set(&e, KABAR_PROTOCOL,
                        "subscription %" PRIu64 " already exists on this connection "
                        "(UNSUB it first or use another id)",
                        h->id);
        send_err(sv, p, h->id, "SUB", &e);
        return;
    }
    /* Limits first: a SUB that cannot be added must not take a durable consumer over. */
    if (p->nsubs >= SUBS_MAX_PER_PEER || subs_count(sv->subs) >= SUBS_MAX_TOTAL) {
        kabar_error_set(&e, KABAR_LIMIT,
                        "too many subscriptions (at most %d per connection, %d in all); UNSUB "
                        "some first",
                        SUBS_MAX_PER_PEER, SUBS_MAX_TOTAL);
        send_err(sv, p, h->id, "SUB", &e);
        return;
    }
    uint64_t head = store_reader_head(rd);
    sub_spec spec = {
        .type_prefix = o.type_prefix, .source = o.source, .target = o.target, .credit = o.credit};
    if (o.until_seq > 0) {
        spec.bounded = true;
        spec.bound = o.until_seq;
    }
    if (o.until_head && (!spec.bounded || head < spec.bound)) {
        spec.bounded = true;
        spec.bound = head;
    }
    int rc = resolve_start(sv, rd, &o, &spec.position, &e);
    if (rc == 0 && o.durable.ptr != NULL) {
        spec.durable = o.durable;
        rc = resolve_durable(sv, p, rd, &o, &spec, &e);
    }
    sub *s = NULL;
    if (rc == 0)
        rc = subs_add(sv->subs, p, h->id, &spec, &s, &e);
    if (rc != 0) {
        send_err(sv, p, h->id, "SUB", &e);
        return;
    }
    if (wire_enc_subok(&sv->out, h->id, s->position, head) == 0)
        send_hdr(sv, p, &sv->out);
    klog(KLOG_DEBUG, "KABARD-SUB", "subscription %" PRIu64 " from seq %" PRIu64 "%s%s", h->id,
         s->position, s->durable[0] ? " durable " : "", s->durable);
}

static void on_sub_cmd(server *sv, peer *p, const wire_header *h)
{
    kabar_error e;
    sub *s = subs_find(sv->subs, p, h->id);
    if (s == NULL) {
        kabar_error_set(&e, KABAR_UNKNOWN_SUBSCRIPTION,
                        "no subscription %" PRIu64 " on this connection (ended, or forgotten "
                        "after %d s of silence: subscribe again)",
                        h->id, KABAR_PEER_TIMEOUT_MS / 1000);
        send_err(sv, p, h->id, wire_cmd_name(h->cmd), &e);
        return;
    }
    switch (h->cmd) {
    case WIRE_CREDIT:
        subs_credit(s, h->a);
        break;
    case WIRE_CACK:
        if (subs_cack(sv->subs, s, h->a, &e) != 0)
            send_err(sv, p, h->id, "CACK", &e);
        break;
    case WIRE_UNSUB:
        subs_remove(sv->subs, s);
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------------------ */
/* Read phase: messages                                                     */

/* Receive and drop what is left of a multipart message. */
static void drain(server *sv)
{
    int more = 1;
    size_t len = sizeof more;
    while (zmq_getsockopt(sv->sock, ZMQ_RCVMORE, &more, &len) == 0 && more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, sv->sock, 0) < 0) {
            zmq_msg_close(&m);
            return;
        }
        zmq_msg_close(&m);
    }
}

static bool has_more(server *sv)
{
    int more = 0;
    size_t len = sizeof more;
    return zmq_getsockopt(sv->sock, ZMQ_RCVMORE, &more, &len) == 0 && more;
}

/* Forget the events read so far of a PUB that turned out unreadable. */
static void undo_pub(server *sv, size_t slots0, size_t entries0, size_t errs0)
{
    while (sv->nentries > entries0) {
        sv->nentries--;
        sv->nbytes -= sv->entries[sv->nentries].len;
        zmq_msg_close(&sv->frames[sv->nentries]);
    }
    sv->nslots = slots0;
    sv->nerrs = errs0;
}

/* One event frame of a PUB: validate; keep it as an entry or record why not. */
static void read_event(server *sv, zmq_msg_t *m)
{
    slot *sl = &sv->slots[sv->nslots++];
    size_t len = zmq_msg_size(m);
    kabar_error *e = &sv->errs[sv->nerrs];
    int rc;
    if (len > KABAR_MAX_EVENT_BYTES)
        rc = kabar_error_set(e, KABAR_TOO_BIG, "event of %zu bytes, more than the %d allowed", len,
                             KABAR_MAX_EVENT_BYTES);
    else
        rc = kabar_event_decode(sv->schema, zmq_msg_data(m), len, &sv->evs[sv->nentries], e);
    if (rc != 0) {
        sl->code = rc;
        sl->ix = (uint32_t)sv->nerrs++;
        zmq_msg_close(m);
        return;
    }
    store_entry *en = &sv->entries[sv->nentries];
    memset(en, 0, sizeof *en);
    en->ev = &sv->evs[sv->nentries];
    en->bytes = zmq_msg_data(m);
    en->len = len;
    sl->code = KABAR_OK;
    sl->ix = (uint32_t)sv->nentries++;
    sv->nbytes += len;
}

/* A PUB: every event frame becomes a slot; the routing id waits for the ACK. */
static void read_pub(server *sv, peer *p, zmq_msg_t *rid, const wire_header *h)
{
    size_t slots0 = sv->nslots, entries0 = sv->nentries, errs0 = sv->nerrs;
    kabar_error e;
    while (has_more(sv)) {
        if (sv->nslots - slots0 == KABAR_MAX_BATCH) {
            drain(sv);
            undo_pub(sv, slots0, entries0, errs0);
            kabar_error_set(&e, KABAR_LIMIT, "PUB carries more than %d events; split the batch",
                            KABAR_MAX_BATCH);
            send_err(sv, p, h->id, "PUB", &e);
            return;
        }
        zmq_msg_t *m = &sv->frames[sv->nentries];
        zmq_msg_init(m);
        if (zmq_msg_recv(m, sv->sock, 0) < 0) {
            zmq_msg_close(m);
            break;
        }
        read_event(sv, m);
    }
    if (sv->nslots == slots0) {
        kabar_error_set(&e, KABAR_PROTOCOL,
                        "PUB carries no events (one frame per event "
                        "after the header)");
        send_err(sv, p, h->id, "PUB", &e);
        return;
    }
    pub *pb = &sv->pubs[sv->npubs++];
    zmq_msg_init(&pb->rid);
    zmq_msg_move(&pb->rid, rid);
    pb->batch = h->id;
    pb->first = (uint32_t)slots0;
    pb->n = (uint32_t)(sv->nslots - slots0);
}

/* A header whose command is for the broker; `rid` may be taken (PUB). */
static void dispatch(server *sv, peer *p, zmq_msg_t *rid, const wire_header *h)
{
    kabar_error e;
    if (h->cmd == WIRE_PUB) {
        read_pub(sv, p, rid, h);
        return;
    }
    if (has_more(sv)) {
        drain(sv);
        kabar_error_set(&e, KABAR_PROTOCOL, "%s takes no frames after its header",
                        wire_cmd_name(h->cmd));
        send_err(sv, p, h->id, wire_cmd_name(h->cmd), &e);
        return;
    }
    switch (h->cmd) {
    case WIRE_SUB:
        on_sub(sv, p, h);
        break;
    case WIRE_CREDIT:
    case WIRE_CACK:
    case WIRE_UNSUB:
        on_sub_cmd(sv, p, h);
        break;
    case WIRE_HEAD:
        on_head(sv, p, h->id);
        break;
    case WIRE_STATUS:
        on_status(sv, p, h->id);
        break;
    case WIRE_PING:
        if (wire_enc_cmd(&sv->out, WIRE_PONG, h->id) == 0)
            send_hdr(sv, p, &sv->out);
        break;
    default:
        kabar_error_set(&e, KABAR_UNKNOWN_COMMAND, "%s is sent by the broker, not to it",
                        wire_cmd_name(h->cmd));
        send_err(sv, p, h->id, wire_cmd_name(h->cmd), &e);
        break;
    }
}

/* One message: [rid][header][frames...]. */
static void read_message(server *sv, zmq_msg_t *rid, int64_t now)
{
    kabar_error e;
    peer *p = subs_peer(sv->subs, zmq_msg_data(rid), zmq_msg_size(rid), now);
    if (p == NULL || !zmq_msg_more(rid)) {
        drain(sv); /* cannot answer: no memory for the peer, or no header */
        return;
    }
    zmq_msg_t hdr;
    zmq_msg_init(&hdr);
    if (zmq_msg_recv(&hdr, sv->sock, 0) < 0) {
        zmq_msg_close(&hdr);
        return;
    }
    size_t len = zmq_msg_size(&hdr);
    wire_header h;
    memset(&h, 0, sizeof h);
    int rc;
    if (len > KABAR_MAX_HEADER_BYTES)
        rc = kabar_error_set(&e, KABAR_LIMIT, "header frame of %zu bytes, more than %d", len,
                             KABAR_MAX_HEADER_BYTES);
    else
        rc = wire_header_decode(zmq_msg_data(&hdr), len, &h, &e);
    if (rc != 0) {
        drain(sv);
        send_err(sv, p, rc == KABAR_UNKNOWN_COMMAND ? h.id : 0, "header", &e);
    } else {
        dispatch(sv, p, rid, &h);
    }
    zmq_msg_close(&hdr);
}

/* Phase 1. Returns true when it stopped on a cap (more may be waiting). */
static bool phase_read(server *sv, volatile sig_atomic_t *stop, int *fatal)
{
    int64_t now = mono_ms();
    while (!*stop) {
        if (sv->nslots >= TURN_EVENTS || sv->nmsgs >= TURN_MSGS || sv->nbytes >= TURN_BYTES)
            return true;
        zmq_msg_t rid;
        zmq_msg_init(&rid);
        if (zmq_msg_recv(&rid, sv->sock, ZMQ_DONTWAIT) < 0) {
            int en = zmq_errno();
            zmq_msg_close(&rid);
            if (en != EAGAIN && en != EINTR)
                *fatal = en;
            return false;
        }
        sv->nmsgs++;
        read_message(sv, &rid, now);
        zmq_msg_close(&rid); /* a no-op when a PUB took it */
    }
    return false;
}

/* ------------------------------------------------------------------------ */
/* Commit, ack, relay                                                       */

static void phase_commit(server *sv)
{
    sv->commit_err.code = 0;
    sv->nfresh = 0;
    size_t nup = subs_updates(sv->subs, sv->ups, TURN_UPDATES, &sv->filters);
    if (sv->nentries == 0 && nup == 0)
        return;
    uint64_t head0 = store_head(sv->st);
    int rc =
        store_write(sv->st, sv->entries, sv->nentries, sv->ups, nup, kabar_now(), &sv->commit_err);
    subs_updates_done(sv->subs, nup, rc == 0);
    if (rc != 0) {
        sv->commit_err.code = rc;
        sv->stats.rejected += sv->nentries;
        const char *code = rc == KABAR_DISK_FULL ? "KABARD-DISK-FULL" : "KABARD-STORE-FAIL";
        klog_limited(&sv->lim_store, mono_ms(), KLOG_WARN, code,
                     "commit of %zu events and %zu consumer positions failed, nothing stored "
                     "(publishers get %s): %s",
                     sv->nentries, nup, kabar_errname(rc), sv->commit_err.message);
        return;
    }
    sv->rd_stale = true;
    for (size_t i = 0; i < sv->nentries; i++) {
        const store_entry *en = &sv->entries[i];
        if (en->duplicate) {
            sv->stats.duplicates++;
            continue;
        }
        sv->stats.published++;
        sv->fresh[sv->nfresh++] =
            (subs_fresh){en->seq, en->received_at, en->bytes, en->len, en->ev};
    }
    /* The in-memory relay needs exactly head0+1 .. head; anything else goes by the log. */
    if (sv->nfresh > 0 &&
        (sv->fresh[0].seq != head0 + 1 || sv->fresh[sv->nfresh - 1].seq != head0 + sv->nfresh ||
         sv->fresh[sv->nfresh - 1].seq != store_head(sv->st)))
        sv->nfresh = 0;
}

static void phase_ack(server *sv)
{
    int64_t now = mono_ms();
    for (size_t i = 0; i < sv->npubs; i++) {
        pub *pb = &sv->pubs[i];
        kabar_buf *b = &sv->out;
        int rc = wire_enc_ack_begin(b, pb->batch, pb->n);
        for (uint32_t j = 0; j < pb->n && rc == 0; j++) {
            const slot *sl = &sv->slots[pb->first + j];
            if (sl->code != KABAR_OK) {
                const kabar_error *e = &sv->errs[sl->ix];
                sv->stats.rejected++;
                klog_limited(&sv->lim_reject, now, KLOG_INFO, "KABARD-REJECT",
                             "event %u of batch %" PRIu64 " rejected: %s: %s", j, pb->batch,
                             kabar_errname(e->code), e->message);
                rc = wire_enc_ack_fail(b, sl->code, e->message);
            } else if (sv->commit_err.code != 0) {
                rc = wire_enc_ack_fail(b, sv->commit_err.code, sv->commit_err.message);
            } else {
                const store_entry *en = &sv->entries[sl->ix];
                rc = wire_enc_ack_ok(b, en->seq, en->duplicate);
            }
        }
        if (rc == 0)
            send_to(sv, zmq_msg_data(&pb->rid), zmq_msg_size(&pb->rid), b, NULL, 0, false);
    }
}

static bool phase_relay(server *sv)
{
    /*
     * Move the reader to the new snapshot even when nobody subscribes: an
     * LMDB reader left on an old snapshot keeps every page freed since from
     * being reused, and the log file would grow by the copied-on-write
     * pages of every commit (tens of KiB each) until someone subscribes.
     */
    store_reader *rd = reader(sv);
    if (subs_count(sv->subs) == 0)
        return false;
    subs_relay_in in = {.reader = rd, .fresh = sv->fresh, .nfresh = sv->nfresh};
    in.head = in.reader != NULL ? store_reader_head(in.reader) : store_head(sv->st);
    if (in.reader == NULL && sv->nfresh == 0)
        return false;
    subs_sink sink = {sink_evt, sink_end, sv};
    bool more = false;
    kabar_error e;
    if (subs_relay(sv->subs, &in, &sink, &more, &e) != 0)
        klog_limited(&sv->lim_relay, mono_ms(), KLOG_WARN, "KABARD-RELAY-FAIL",
                     "cannot read the log for a subscriber: %s: %s", kabar_errname(e.code),
                     e.message);
    return more;
}

/* End of turn: release the frames and routing ids the turn held. */
static void turn_reset(server *sv)
{
    for (size_t i = 0; i < sv->nentries; i++)
        zmq_msg_close(&sv->frames[i]);
    for (size_t i = 0; i < sv->npubs; i++)
        zmq_msg_close(&sv->pubs[i].rid);
    sv->nentries = sv->nslots = sv->nerrs = sv->npubs = sv->nmsgs = sv->nbytes = 0;
    sv->nfresh = 0;
}

static void peer_gone(void *arg, const peer *p)
{
    char hex[40];
    klog(KLOG_DEBUG, "KABARD-PEER-GONE",
         "peer %s silent for %d s, forgetting it and its %u "
         "subscriptions",
         hex_rid(p->rid, p->rid_len, hex), KABAR_PEER_TIMEOUT_MS / 1000, p->nsubs);
}

static void phase_timers(server *sv, int64_t now)
{
    if (now < sv->next_timer_ms)
        return;
    sv->next_timer_ms = now + TIMER_MS;
    subs_expire(sv->subs, now, KABAR_PEER_TIMEOUT_MS, peer_gone, sv);
    klog_limit_flush(&sv->lim_bad, now);
    klog_limit_flush(&sv->lim_reject, now);
    klog_limit_flush(&sv->lim_store, now);
    klog_limit_flush(&sv->lim_relay, now);
}

int server_run(server *sv, volatile sig_atomic_t *stop, kabar_error *err)
{
    long timeout = 0;
    while (!*stop) {
        zmq_pollitem_t item = {sv->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, timeout) < 0 && zmq_errno() != EINTR)
            return kabar_error_set(err, KABAR_IO, "cannot poll the socket: %s",
                                   zmq_strerror(zmq_errno()));
        int fatal = 0;
        bool capped = phase_read(sv, stop, &fatal);
        phase_commit(sv);
        phase_ack(sv);
        bool more = phase_relay(sv);
        turn_reset(sv);
        int64_t now = mono_ms();
        phase_timers(sv, now);
        if (fatal != 0)
            return kabar_error_set(err, KABAR_IO, "cannot read from the socket: %s",
                                   zmq_strerror(fatal));
        timeout = (capped || more) ? 0 : (long)(sv->next_timer_ms - now);
        if (timeout < 0)
            timeout = 0;
    }
    return 0;
}
