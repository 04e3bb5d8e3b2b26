/*
 * client.c - the client side of kabar's wire protocol (kabar.h "The client").
 *
 * One client is one ZeroMQ context with one DEALER socket connected to the
 * broker's ROUTER. Publishing, any number of subscriptions and the HEAD /
 * STATUS requests share it; a single receive routine (pump) reads whatever
 * the broker sends and dispatches it by command and id. Every id the client
 * puts in a header (batch, subscription, request, ping) comes from one
 * counter, so an ERR can always be matched to what it answers.
 *
 * Design notes
 *
 * Publishing window. Events are copied into a ring of `window` slots:
 *
 *      tail            sent                 head
 *       |  in flight    |  queued, not sent  |   free ...
 *
 * Queued events go out as PUB batches when enough are queued (a quarter of
 * the window), when nothing is in flight (so a lone event is not delayed),
 * and whenever the application would block (full ring, flush). ACKs fill
 * the slots' results; results are handed to the callback strictly from
 * `tail` on, so they come out in publishing order even if the broker
 * answered batches out of order.
 *
 * Sessions and recovery. The broker keeps no state for a connection it has
 * lost, so the client tracks a "session": it begins when a PONG answers a
 * PING sent on a freshly made socket. A session ends when
 *  - the socket monitor reports the TCP/IPC connection dropped (a broker
 *    restart), or
 *  - nothing at all was heard for half of timeout_ms after a PING (a
 *    silent network).
 * Either way the DEALER is closed and made anew; ZeroMQ's own reconnection
 * is turned off (ZMQ_RECONNECT_IVL -1). That is what keeps a producer's
 * events in order across a broker restart: a socket that reconnected by
 * itself could carry a new batch to the new broker before the client knew
 * the old one had lost the batches before it, and the new batch would be
 * stored first. A socket the client made itself carries nothing of a
 * session until its PONG. While there is no session, a socket that got no
 * PONG is made anew after a backoff (RETRY_MIN_MS doubling to
 * RETRY_MAX_MS), so a broker that is down at first is found when it comes.
 * When the next session begins, every unacked event is sent again from
 * `tail` (the broker's idempotent publish acks a stored event with its
 * original seq; a result already known is kept) and every subscription is
 * made again from the record after the last one received (a durable one by
 * name; records it sends again are skipped here). A pending HEAD/STATUS is
 * asked again. Only when nothing has been heard for timeout_ms does a call
 * give up with KABAR_CONNECT. A broker that answers PINGs but has not
 * acked the oldest batch for timeout_ms makes publish/flush return
 * KABAR_TIMEOUT (the events stay queued; a later flush waits again).
 *
 * Durable acks. kabar_sub_ack records what the application handled; a
 * CACK goes out only for what the current session's broker has delivered
 * (a broker refuses an ack beyond that), so after a resubscription the ack
 * waits until the resumed stream has passed it again.
 *
 * Contracts beyond kabar.h: the result callback must not call back into the
 * client; kabar_client_destroy also frees the subscriptions still open
 * (their handles become invalid) and drops unflushed events (call
 * kabar_client_flush first).
 *
 * Liveness. While a call waits, a PING goes out every
 * KABAR_PING_INTERVAL_MS (every 100 ms while there is no session), which
 * also keeps the broker from forgetting the client. Any message counts as
 * an answer.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <zmq.h>

#include "kabar.h"
#include "mpr.h"
#include "wire.h"

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_WINDOW     256
#define DEFAULT_CREDIT     1024
#define RETRY_MIN_MS       250  /* a socket without a PONG is made anew after this... */
#define RETRY_MAX_MS       2000 /* ...doubling up to this */
#define RETRY_PING_MS      100  /* PING interval while there is no session */
#define LINGER_MS          200

typedef struct pub_slot {
    uint8_t *bytes; /* owned; capacity kept for reuse */
    size_t len, cap;
    void *user;
    bool done;
    uint64_t seq;
    bool duplicate;
    int code;
    char message[KABAR_ERROR_MESSAGE_MAX];
} pub_slot;

typedef struct pub_batch {
    uint64_t id;
    uint64_t first; /* ring position of its first event */
    uint32_t n;     /* 0: answered */
    int64_t sent_ms;
} pub_batch;

/* One EVT payload frame, read record by record. */
typedef struct evt_chunk {
    zmq_msg_t msg;
    const uint8_t *p, *end;
    uint64_t min_seq; /* records below this were received before: skip them */
    uint64_t epoch;   /* the subscription's session the credit belongs to */
    struct evt_chunk *next;
} evt_chunk;

enum sub_state { SUB_WAITING, SUB_OK, SUB_FAILED };

struct kabar_sub {
    kabar_client *c;
    kabar_sub *next;
    uint64_t id;
    kabar_sub_opts opts; /* strings point at the copies below */
    char *type_prefix, *source, *target, *durable;
    enum sub_state state;
    bool need_send; /* SUB must go out when the session is up */
    bool ended;
    uint64_t epoch;       /* incremented at every SUB sent */
    uint64_t first;       /* SUBOK's first seq */
    uint64_t head;        /* SUBOK's head (bounds until_head on a resubscription) */
    uint64_t last;        /* highest seq received */
    uint64_t acked;       /* acknowledged by the application */
    uint64_t acked_sent;  /* last CACK sent (or known to the broker) */
    bool epoch_ok;        /* SUBOK came for the latest SUB */
    uint64_t epoch_first; /* its first seq */
    uint64_t epoch_last;  /* highest seq received since the latest SUB */
    uint32_t credit;      /* as granted in SUB */
    uint32_t consumed;    /* records consumed since the last CREDIT */
    kabar_error error;
    evt_chunk *chunks, *chunks_tail;
};

enum req_state { REQ_NONE, REQ_WAITING, REQ_DONE, REQ_FAILED };

struct kabar_client {
    void *ctx, *sock, *mon;
    char *endpoint;
    int timeout_ms;
    uint32_t window;
    kabar_pub_cb cb;
    void *cb_arg;
    uint64_t next_id;
    unsigned mon_seq;
    kabar_buf hdr; /* scratch for outgoing headers */

    bool session;          /* the broker has answered since the last (re)connection */
    bool resync;           /* batches must be resent when the session begins */
    uint64_t session_ping; /* a PONG with an id >= this begins the session */
    int64_t last_ping_ms;  /* last PING attempt */
    int64_t unanswered_ms; /* first PING not answered yet, 0: none */
    bool reopen;           /* the connection dropped: make a new socket */
    int64_t opened_ms;     /* when the current socket was made */
    int retry_ms;          /* make a new one if no PONG within this */

    pub_slot *slots; /* `window` of them */
    uint64_t tail, sent, head;
    pub_batch *batches; /* ring of `window` */
    uint32_t batch0, nbatches;

    uint64_t req_id;
    wire_cmd req_cmd;
    enum req_state req_state;
    bool req_need_send;
    kabar_buf req_reply;
    kabar_error req_error;

    kabar_sub *subs;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------ */
/* Socket                                                                   */

static void socket_close(kabar_client *c)
{
    if (c->sock) {
        zmq_socket_monitor(c->sock, NULL, 0);
        zmq_close(c->sock);
        c->sock = NULL;
    }
    if (c->mon) {
        zmq_close(c->mon);
        c->mon = NULL;
    }
}

static int socket_open(kabar_client *c, kabar_error *err)
{
    int linger = LINGER_MS, one = 1, never = -1, zero = 0;
    char addr[96];

    c->sock = zmq_socket(c->ctx, ZMQ_DEALER);
    if (c->sock == NULL)
        return kabar_error_set(err, KABAR_IO, "cannot create a ZeroMQ socket: %s",
                               zmq_strerror(errno));
    zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(c->sock, ZMQ_IMMEDIATE, &one, sizeof one);
    zmq_setsockopt(c->sock, ZMQ_RECONNECT_IVL, &never, sizeof never); /* see Sessions */
    /* The window and the credit bound what is queued; never drop a frame. */
    zmq_setsockopt(c->sock, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(c->sock, ZMQ_RCVHWM, &zero, sizeof zero);

    snprintf(addr, sizeof addr, "inproc://kabar-client-monitor-%p-%u", (void *)c, c->mon_seq++);
    if (zmq_socket_monitor(c->sock, addr, ZMQ_EVENT_DISCONNECTED) != 0 ||
        (c->mon = zmq_socket(c->ctx, ZMQ_PAIR)) == NULL || zmq_connect(c->mon, addr) != 0) {
        int e = errno;
        socket_close(c);
        return kabar_error_set(err, KABAR_IO, "cannot monitor the ZeroMQ socket: %s",
                               zmq_strerror(e));
    }
    if (zmq_connect(c->sock, c->endpoint) != 0) {
        int e = errno;
        socket_close(c);
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "cannot connect to \"%s\": %s (an endpoint looks like "
                               "tcp://host:7450 or ipc:///path/to/socket)",
                               c->endpoint, zmq_strerror(e));
    }
    c->opened_ms = now_ms();
    c->reopen = false;
    return 0;
}

/* Send one header frame (`more`: frames follow); 0, or -1 when it cannot go out now. */
static int send_msg(kabar_client *c, const kabar_buf *hdr, int more)
{
    return zmq_send(c->sock, hdr->data, hdr->len, ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0)) < 0 ? -1
                                                                                               : 0;
}

static void send_ping(kabar_client *c, int64_t now)
{
    if (wire_enc_cmd(&c->hdr, WIRE_PING, c->next_id++) == 0)
        send_msg(c, &c->hdr, 0); /* EAGAIN: no connection yet; the next one will tell */
    c->last_ping_ms = now;
    if (c->unanswered_ms == 0)
        c->unanswered_ms = now;
}

/* The broker may have lost everything of ours: start over at the next PONG. */
static void session_lost(kabar_client *c)
{
    c->session = false;
    c->resync = true;
    c->session_ping = c->next_id;
    c->last_ping_ms = 0;
    for (kabar_sub *s = c->subs; s; s = s->next)
        if (s->state != SUB_FAILED && !s->ended)
            s->need_send = true;
    if (c->req_state == REQ_WAITING)
        c->req_need_send = true;
}

static void drain_monitor(kabar_client *c);

/*
 * Is the session still up? Asked right before sending anything that belongs
 * to it (PUB, SUB, CREDIT, CACK), so that a dropped connection is noticed
 * before, not after, we hand the socket more work. (Order does not depend
 * on it: the socket never reconnects by itself; see Sessions.)
 */
static bool session_up(kabar_client *c)
{
    drain_monitor(c);
    return c->session;
}

/* ------------------------------------------------------------------------ */
/* Publishing                                                               */

static pub_slot *slot_at(kabar_client *c, uint64_t pos)
{
    return &c->slots[pos % c->window];
}

static pub_batch *batch_at(kabar_client *c, uint32_t i)
{
    return &c->batches[(c->batch0 + i) % c->window];
}

static void deliver(kabar_client *c)
{
    while (c->tail < c->head && slot_at(c, c->tail)->done) {
        pub_slot *s = slot_at(c, c->tail);
        kabar_pub_result r = {.user = s->user,
                              .seq = s->seq,
                              .duplicate = s->duplicate,
                              .code = s->code,
                              .message = s->message};
        c->tail++;
        if (c->sent < c->tail)
            c->sent = c->tail;
        if (c->cb)
            c->cb(c->cb_arg, &r);
    }
    while (c->nbatches > 0 && batch_at(c, 0)->n == 0) {
        c->batch0 = (c->batch0 + 1) % c->window;
        c->nbatches--;
    }
}

static void slot_fail(pub_slot *s, int code, const char *text, size_t len)
{
    if (s->done)
        return;
    s->done = true;
    s->seq = 0;
    s->duplicate = false;
    s->code = code;
    if (len >= sizeof s->message)
        len = sizeof s->message - 1;
    memcpy(s->message, text, len);
    s->message[len] = '\0';
}

static int send_batch(kabar_client *c, uint64_t first, uint32_t n)
{
    uint64_t id = c->next_id++;
    if (wire_enc_cmd(&c->hdr, WIRE_PUB, id) != 0 || send_msg(c, &c->hdr, 1) != 0)
        return -1;
    for (uint32_t i = 0; i < n; i++) {
        pub_slot *s = slot_at(c, first + i);
        int flags = ZMQ_DONTWAIT | (i + 1 < n ? ZMQ_SNDMORE : 0);
        zmq_send(c->sock, s->bytes, s->len, flags); /* atomic once the first frame is in */
    }
    pub_batch *b = batch_at(c, c->nbatches++);
    b->id = id;
    b->first = first;
    b->n = n;
    b->sent_ms = now_ms();
    return 0;
}

/* Send queued events as batches; `force` sends even a small tail. */
static void send_pending(kabar_client *c, bool force)
{
    uint32_t threshold = c->window / 4 ? c->window / 4 : 1;
    if (threshold > KABAR_MAX_BATCH)
        threshold = KABAR_MAX_BATCH;
    while (c->sent < c->head && session_up(c)) {
        uint64_t pending = c->head - c->sent;
        bool idle = c->sent == c->tail;
        if (!force && !idle && pending < threshold)
            break;
        uint32_t n = pending > KABAR_MAX_BATCH ? KABAR_MAX_BATCH : (uint32_t)pending;
        if (send_batch(c, c->sent, n) != 0)
            break;
        c->sent += n;
    }
}

static pub_batch *batch_find(kabar_client *c, uint64_t id)
{
    for (uint32_t i = 0; i < c->nbatches; i++) {
        pub_batch *b = batch_at(c, i);
        if (b->id == id && b->n > 0)
            return b;
    }
    return NULL;
}

/* Fill the batch's results from `r`; KABAR_PROTOCOL (in e) on a short or garbled ACK. */
static int ack_results(kabar_client *c, const pub_batch *b, const wire_header *h, kabar_error *e)
{
    mpr r;
    uint32_t n = 0;
    int rc = wire_ack_begin(h, &r, &n, e);
    if (rc != 0)
        return rc;
    if (n != b->n)
        return kabar_error_set(e, KABAR_PROTOCOL,
                               "the broker answered a batch of %u events with %u results", b->n, n);
    for (uint32_t i = 0; i < n; i++) {
        wire_ack_result res;
        if ((rc = wire_ack_next(&r, &res, e)) != 0)
            return rc;
        pub_slot *s = slot_at(c, b->first + i);
        if (s->done)
            continue; /* answered before a resync: keep the first answer */
        if (res.code != KABAR_OK) {
            slot_fail(s, res.code, res.text.ptr, res.text.len);
            continue;
        }
        s->done = true;
        s->seq = res.seq;
        s->duplicate = res.duplicate;
        s->code = KABAR_OK;
        s->message[0] = '\0';
    }
    return 0;
}

static void on_ack(kabar_client *c, const wire_header *h)
{
    kabar_error e = {0};
    pub_batch *b = batch_find(c, h->id);
    if (b == NULL)
        return; /* a batch from before a resync: its events were sent again */
    if (ack_results(c, b, h, &e) != 0) {
        for (uint32_t i = 0; i < b->n; i++) /* what is left unanswered failed */
            slot_fail(slot_at(c, b->first + i), KABAR_PROTOCOL, e.message, strlen(e.message));
    }
    b->n = 0;
    deliver(c);
}

static void on_batch_err(kabar_client *c, pub_batch *b, int code, kabar_str text)
{
    if (code == KABAR_SHUTTING_DOWN)
        return; /* the events go again to the broker that comes next */
    for (uint32_t i = 0; i < b->n; i++)
        slot_fail(slot_at(c, b->first + i), code, text.ptr, text.len);
    b->n = 0;
    deliver(c);
}

/* ------------------------------------------------------------------------ */
/* Subscriptions                                                            */

static kabar_sub *sub_find(kabar_client *c, uint64_t id)
{
    for (kabar_sub *s = c->subs; s; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

/*
 * CACK what the application acknowledged, as far as this session's broker
 * has delivered it: an ack beyond that would be refused (PROTOCOL), and one
 * below the session's first seq is already in the broker's log.
 */
static void flush_ack(kabar_client *c, kabar_sub *s)
{
    if (!s->epoch_ok || s->acked <= s->acked_sent || !session_up(c))
        return;
    if (s->acked < s->epoch_first) {
        s->acked_sent = s->acked;
        return;
    }
    uint64_t seq = s->acked < s->epoch_last ? s->acked : s->epoch_last;
    if (seq <= s->acked_sent || seq < s->epoch_first)
        return;
    if (wire_enc_cmd1(&c->hdr, WIRE_CACK, s->id, seq) == 0 && send_msg(c, &c->hdr, 0) == 0)
        s->acked_sent = seq;
}

/* SUB, resuming after what was received when this is not the first one. */
static void sub_send(kabar_client *c, kabar_sub *s)
{
    kabar_sub_opts o = s->opts;
    if (s->state == SUB_OK && o.until_head) { /* bounded by the head of the first SUB */
        o.until_head = false;
        if (o.until_seq == 0 || o.until_seq > s->head)
            o.until_seq = s->head;
        if (o.until_seq == 0 || s->last >= o.until_seq) {
            s->ended = true; /* everything there was to get has arrived */
            s->need_send = false;
            return;
        }
    }
    if (s->state == SUB_OK && o.durable == NULL) {
        uint64_t from = s->last + 1 > s->first ? s->last + 1 : s->first;
        o.start = KABAR_START_SEQ;
        o.seq = from ? from : 1;
    }
    if (!session_up(c)) {
        s->need_send = true; /* at the next session */
        return;
    }
    s->epoch++;
    s->epoch_ok = false;
    s->epoch_last = 0;
    s->consumed = 0;
    s->need_send = false;
    if (wire_enc_sub(&c->hdr, s->id, &o) != 0 || send_msg(c, &c->hdr, 0) != 0)
        s->need_send = true;
}

static void chunk_free(evt_chunk *k)
{
    zmq_msg_close(&k->msg);
    free(k);
}

static void sub_fail(kabar_sub *s, int code, const char *text, size_t len)
{
    s->state = SUB_FAILED;
    kabar_error_set(&s->error, code, "%.*s", (int)len, text);
}

static void on_evt(kabar_client *c, kabar_sub *s, const wire_header *h, zmq_msg_t *body)
{
    if (s->state != SUB_OK || body == NULL)
        return;
    const uint8_t *p = zmq_msg_data(body), *end = p + zmq_msg_size(body);
    uint64_t top = 0; /* the chunk's highest seq */
    kabar_error e;
    for (uint64_t i = 0; i < h->a; i++) {
        kabar_record rec;
        if (wire_dec_record(&p, end, &rec, &e) != 0) {
            sub_fail(s, e.code, e.message, strlen(e.message));
            return;
        }
        if (rec.seq > top)
            top = rec.seq;
    }
    if (p != end) {
        static const char msg[] = "EVT: the record count does not match the payload";
        sub_fail(s, KABAR_PROTOCOL, msg, sizeof msg - 1);
        return;
    }
    evt_chunk *k = malloc(sizeof *k);
    if (k == NULL) {
        static const char msg[] = "out of memory buffering received events";
        sub_fail(s, KABAR_NO_MEMORY, msg, sizeof msg - 1);
        return;
    }
    zmq_msg_init(&k->msg);
    zmq_msg_move(&k->msg, body);
    k->p = zmq_msg_data(&k->msg);
    k->end = k->p + zmq_msg_size(&k->msg);
    k->min_seq = s->last + 1;
    k->epoch = s->epoch;
    k->next = NULL;
    if (s->chunks_tail)
        s->chunks_tail->next = k;
    else
        s->chunks = k;
    s->chunks_tail = k;
    if (top > s->last)
        s->last = top;
    if (top > s->epoch_last)
        s->epoch_last = top;
    flush_ack(c, s);
}

static void on_sub_err(kabar_client *c, kabar_sub *s, int code, kabar_str text)
{
    if (code == KABAR_SHUTTING_DOWN || s->ended)
        return; /* the connection drops next and we subscribe again; or it is over */
    if (code == KABAR_UNKNOWN_SUBSCRIPTION && s->state == SUB_OK) {
        sub_send(c, s); /* the broker forgot us: resume */
        return;
    }
    sub_fail(s, code, text.ptr, text.len);
}

static void grant_credit(kabar_client *c, kabar_sub *s)
{
    uint32_t half = s->credit / 2 ? s->credit / 2 : 1;
    if (s->consumed < half || s->ended || !session_up(c))
        return;
    if (wire_enc_cmd1(&c->hdr, WIRE_CREDIT, s->id, s->consumed) == 0 &&
        send_msg(c, &c->hdr, 0) == 0)
        s->consumed = 0;
}

/* ------------------------------------------------------------------------ */
/* Receiving                                                                */

static void session_begins(kabar_client *c)
{
    c->session = true;
    c->retry_ms = RETRY_MIN_MS;
    if (c->resync) {
        c->resync = false;
        c->nbatches = 0;
        c->batch0 = 0;
        c->sent = c->tail;
    }
    for (kabar_sub *s = c->subs; s; s = s->next)
        if (s->need_send)
            sub_send(c, s);
    if (c->req_state == REQ_WAITING && c->req_need_send) {
        if (wire_enc_cmd(&c->hdr, c->req_cmd, c->req_id) == 0 && send_msg(c, &c->hdr, 0) == 0)
            c->req_need_send = false;
    }
    send_pending(c, true);
}

static void on_reply(kabar_client *c, const wire_header *h)
{
    if (c->req_state != REQ_WAITING || h->id != c->req_id)
        return;
    c->req_reply.len = 0;
    if (kabar_buf_append(&c->req_reply, h->rest, h->rest_len) != 0) {
        kabar_error_set(&c->req_error, KABAR_NO_MEMORY, "out of memory reading the reply");
        c->req_state = REQ_FAILED;
        return;
    }
    c->req_state = REQ_DONE;
}

static void on_err(kabar_client *c, const wire_header *h)
{
    int code;
    kabar_str text;
    pub_batch *b;
    kabar_sub *s;
    if (wire_err_decode(h, &code, &text, NULL) != 0 || h->id == 0)
        return;
    if ((b = batch_find(c, h->id)) != NULL) {
        on_batch_err(c, b, code, text);
    } else if ((s = sub_find(c, h->id)) != NULL) {
        on_sub_err(c, s, code, text);
    } else if (c->req_state == REQ_WAITING && h->id == c->req_id) {
        kabar_error_set(&c->req_error, code, "%.*s", (int)text.len, text.ptr);
        c->req_state = REQ_FAILED;
    }
}

static void dispatch(kabar_client *c, zmq_msg_t *hdr, zmq_msg_t *body)
{
    wire_header h;
    kabar_sub *s;
    const uint8_t *frame = zmq_msg_data(hdr);
    size_t len = zmq_msg_size(hdr);
    if (wire_header_decode(frame, len, &h, NULL) != 0)
        return; /* a newer broker's message, or garbage: nothing to act on */
    switch (h.cmd) {
    case WIRE_PONG:
        if (!c->session && h.id >= c->session_ping)
            session_begins(c);
        break;
    case WIRE_ACK:
        on_ack(c, &h);
        break;
    case WIRE_SUBOK:
        if ((s = sub_find(c, h.id)) == NULL)
            break;
        if (s->state == SUB_WAITING) {
            s->state = SUB_OK;
            s->first = h.a;
            s->head = h.b;
        }
        s->epoch_ok = true;
        s->epoch_first = h.a;
        flush_ack(c, s);
        break;
    case WIRE_EVT:
        if ((s = sub_find(c, h.id)) != NULL)
            on_evt(c, s, &h, body);
        break;
    case WIRE_END:
        if ((s = sub_find(c, h.id)) != NULL && s->state == SUB_OK)
            s->ended = true;
        break;
    case WIRE_HEADOK:
    case WIRE_STATUSOK:
        on_reply(c, &h);
        break;
    case WIRE_ERR:
        on_err(c, &h);
        break;
    default:
        break;
    }
}

static void drain_monitor(kabar_client *c)
{
    for (;;) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, c->mon, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&m);
            return;
        }
        bool first = zmq_msg_size(&m) >= 2;
        uint16_t event = 0;
        if (first)
            memcpy(&event, zmq_msg_data(&m), 2);
        int more = zmq_msg_more(&m);
        zmq_msg_close(&m);
        while (more) { /* the endpoint frame */
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, c->mon, 0) < 0) {
                zmq_msg_close(&m);
                break;
            }
            more = zmq_msg_more(&m);
            zmq_msg_close(&m);
        }
        if (first && event == ZMQ_EVENT_DISCONNECTED) {
            session_lost(c);
            c->reopen = true;
        }
    }
}

/* Dispatch every message waiting on the socket; returns how many there were. */
static int drain(kabar_client *c)
{
    int n = 0;
    for (;;) {
        zmq_msg_t hdr, body, extra;
        zmq_msg_init(&hdr);
        if (zmq_msg_recv(&hdr, c->sock, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&hdr);
            return n;
        }
        n++;
        zmq_msg_init(&body);
        bool has_body = false;
        if (zmq_msg_more(&hdr) && zmq_msg_recv(&body, c->sock, 0) >= 0) {
            has_body = true;
            int more = zmq_msg_more(&body);
            while (more) { /* frames a later version adds */
                zmq_msg_init(&extra);
                if (zmq_msg_recv(&extra, c->sock, 0) < 0)
                    more = 0;
                else
                    more = zmq_msg_more(&extra);
                zmq_msg_close(&extra);
            }
        }
        c->unanswered_ms = 0;
        dispatch(c, &hdr, has_body ? &body : NULL);
        zmq_msg_close(&hdr);
        zmq_msg_close(&body);
    }
}

/*
 * A new socket when the connection dropped, or when one without a session
 * got no PONG within its retry time. 0, or the error of making it.
 */
static int reconnect(kabar_client *c, int64_t now, kabar_error *err)
{
    if (c->session || (!c->reopen && now - c->opened_ms < c->retry_ms))
        return 0;
    if (!c->reopen) /* no answer on the last socket: wait longer next time */
        c->retry_ms = c->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : c->retry_ms * 2;
    kabar_error e;
    socket_close(c);
    if (socket_open(c, &e) != 0)
        return kabar_error_set(err, e.code, "%s", e.message);
    session_lost(c);
    send_ping(c, now);
    return 0;
}

/* Pings, and what silence means. KABAR_CONNECT when the broker is gone. */
static int tick(kabar_client *c, int64_t now, kabar_error *err)
{
    int rc;
    if ((rc = reconnect(c, now, err)) != 0)
        return rc;
    int interval = c->session ? KABAR_PING_INTERVAL_MS : RETRY_PING_MS;
    if (now - c->last_ping_ms >= interval)
        send_ping(c, now);
    if (c->unanswered_ms == 0)
        return 0;
    int64_t quiet = now - c->unanswered_ms;
    if (quiet >= c->timeout_ms) {
        c->unanswered_ms = 0;
        session_lost(c);
        c->reopen = true;
        return kabar_error_set(err, KABAR_CONNECT,
                               "no answer from the broker at %s for %d ms (is kabard running? "
                               "check --broker / KABAR_BROKER)",
                               c->endpoint, c->timeout_ms);
    }
    if (c->session && quiet >= c->timeout_ms / 2) { /* a silent network */
        session_lost(c);
        c->reopen = true;
        return reconnect(c, now, err);
    }
    return 0;
}

/* ms until tick has something to do. */
static int next_timer(const kabar_client *c, int64_t now)
{
    int interval = c->session ? KABAR_PING_INTERVAL_MS : RETRY_PING_MS;
    int64_t t = c->last_ping_ms + interval - now;
    if (!c->session) {
        int64_t remake = c->reopen ? 0 : c->opened_ms + c->retry_ms - now;
        if (remake < t)
            t = remake;
    }
    if (c->unanswered_ms) {
        int64_t give_up = c->unanswered_ms + c->timeout_ms - now;
        int64_t silent = c->unanswered_ms + c->timeout_ms / 2 - now;
        if (give_up < t)
            t = give_up;
        if (c->session && silent < t)
            t = silent;
    }
    return t < 0 ? 0 : (int)t;
}

/*
 * Process what has arrived, then wait up to wait_ms (-1: until a timer is
 * due) for more. 0, or KABAR_CONNECT / KABAR_IO.
 */
static int pump(kabar_client *c, int wait_ms, kabar_error *err)
{
    int rc;
    drain_monitor(c);
    bool got = drain(c) > 0;
    int64_t now = now_ms();
    if ((rc = tick(c, now, err)) != 0)
        return rc;
    if (got)
        return 0; /* let the caller look at what came before waiting */
    int t = next_timer(c, now);
    if (wait_ms >= 0 && wait_ms < t)
        t = wait_ms;
    if (t == 0)
        return 0;
    zmq_pollitem_t items[2] = {{c->sock, 0, ZMQ_POLLIN, 0}, {c->mon, 0, ZMQ_POLLIN, 0}};
    if (zmq_poll(items, 2, t) < 0) {
        if (errno == EINTR)
            return 0;
        return kabar_error_set(err, KABAR_IO, "waiting for the broker: %s", zmq_strerror(errno));
    }
    drain_monitor(c);
    drain(c);
    return 0;
}

/* ms left before `deadline` (-1: none), at least 0. */
static int left_ms(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t t = deadline - now_ms();
    return t < 0 ? 0 : (int)(t > 1000000 ? 1000000 : t);
}

/* ------------------------------------------------------------------------ */
/* Public API                                                               */

int kabar_client_connect(kabar_client **out, const char *endpoint, const kabar_client_opts *opts,
                         kabar_error *err)
{
    int rc;
    if (out == NULL || endpoint == NULL || endpoint[0] == '\0')
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "no broker endpoint given");
    kabar_client *c = calloc(1, sizeof *c);
    if (c == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    c->timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    c->window = opts && opts->window > 0 ? opts->window : DEFAULT_WINDOW;
    c->next_id = 1;
    c->retry_ms = RETRY_MIN_MS;
    c->endpoint = strdup(endpoint);
    c->slots = calloc(c->window, sizeof *c->slots);
    c->batches = calloc(c->window, sizeof *c->batches);
    c->ctx = zmq_ctx_new();
    if (c->endpoint == NULL || c->slots == NULL || c->batches == NULL || c->ctx == NULL) {
        rc = kabar_error_set(err, KABAR_NO_MEMORY, "out of memory setting up the client");
        goto fail;
    }
    if ((rc = socket_open(c, err)) != 0)
        goto fail;

    int64_t deadline = now_ms() + c->timeout_ms;
    session_lost(c);
    c->resync = false;
    while (!c->session) {
        int left = left_ms(deadline);
        if (left == 0) {
            rc = kabar_error_set(err, KABAR_CONNECT,
                                 "no broker answered at %s within %d ms (is kabard running? "
                                 "check --broker / KABAR_BROKER)",
                                 endpoint, c->timeout_ms);
            goto fail;
        }
        if ((rc = pump(c, left, err)) != 0)
            goto fail;
    }
    *out = c;
    return 0;
fail:
    kabar_client_destroy(&c);
    return rc;
}

static void sub_free(kabar_sub *s)
{
    while (s->chunks) {
        evt_chunk *k = s->chunks;
        s->chunks = k->next;
        chunk_free(k);
    }
    free(s->type_prefix);
    free(s->source);
    free(s->target);
    free(s->durable);
    free(s);
}

void kabar_client_destroy(kabar_client **cp)
{
    if (cp == NULL || *cp == NULL)
        return;
    kabar_client *c = *cp;
    while (c->subs) {
        kabar_sub *s = c->subs;
        c->subs = s->next;
        sub_free(s);
    }
    socket_close(c);
    if (c->ctx)
        zmq_ctx_term(c->ctx);
    if (c->slots)
        for (uint32_t i = 0; i < c->window; i++)
            free(c->slots[i].bytes);
    free(c->slots);
    free(c->batches);
    free(c->endpoint);
    kabar_buf_free(&c->hdr);
    kabar_buf_free(&c->req_reply);
    free(c);
    *cp = NULL;
}

void kabar_client_on_result(kabar_client *c, kabar_pub_cb cb, void *arg)
{
    c->cb = cb;
    c->cb_arg = arg;
}

/* KABAR_TIMEOUT when the oldest batch has waited timeout_ms for its ACK. */
static int check_ack_age(kabar_client *c, kabar_error *err)
{
    if (!c->session || c->nbatches == 0)
        return 0;
    int64_t age = now_ms() - batch_at(c, 0)->sent_ms;
    if (age < c->timeout_ms)
        return 0;
    batch_at(c, 0)->sent_ms = now_ms(); /* report once per timeout_ms */
    return kabar_error_set(err, KABAR_TIMEOUT,
                           "the broker at %s answers but has not acknowledged events sent %d ms "
                           "ago (is its disk stalled? see kabard's log)",
                           c->endpoint, (int)age);
}

int kabar_client_publish(kabar_client *c, const void *bytes, size_t len, void *user,
                         kabar_error *err)
{
    int rc;
    if (c == NULL || bytes == NULL || len == 0)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "publish: no event bytes given");
    if (len > KABAR_MAX_EVENT_BYTES) {
        /*
         * The broker would refuse it, and a frame past its ZMQ_MAXMSGSIZE
         * costs the connection: the event would be sent again at every
         * reconnection and never answered. Refuse it here, as a result in
         * publishing order (after those of the events before it).
         */
        if ((rc = kabar_client_flush(c, err)) != 0)
            return rc;
        char msg[96];
        snprintf(msg, sizeof msg, "event of %zu bytes is larger than the limit of %d bytes", len,
                 KABAR_MAX_EVENT_BYTES);
        kabar_pub_result r = {.user = user, .code = KABAR_TOO_BIG, .message = msg};
        if (c->cb)
            c->cb(c->cb_arg, &r);
        return 0;
    }
    drain(c);
    while (c->head - c->tail >= c->window) {
        send_pending(c, true);
        if ((rc = pump(c, -1, err)) != 0 || (rc = check_ack_age(c, err)) != 0)
            return rc;
    }
    pub_slot *s = slot_at(c, c->head);
    if (len > s->cap) {
        uint8_t *p = realloc(s->bytes, len);
        if (p == NULL)
            return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory queueing an event");
        s->bytes = p;
        s->cap = len;
    }
    memcpy(s->bytes, bytes, len);
    s->len = len;
    s->user = user;
    s->done = false;
    s->code = KABAR_OK;
    s->message[0] = '\0';
    c->head++;
    send_pending(c, false);
    return 0;
}

int kabar_client_flush(kabar_client *c, kabar_error *err)
{
    int rc;
    if (c == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "flush: no client");
    while (c->tail < c->head) {
        send_pending(c, true);
        if ((rc = pump(c, -1, err)) != 0 || (rc = check_ack_age(c, err)) != 0)
            return rc;
    }
    return 0;
}

/* HEAD / STATUS: the reply's map is left in c->req_reply. */
static int request(kabar_client *c, wire_cmd cmd, kabar_error *err)
{
    int rc;
    c->req_id = c->next_id++;
    c->req_cmd = cmd;
    c->req_state = REQ_WAITING;
    c->req_need_send = true;
    if (c->session && wire_enc_cmd(&c->hdr, cmd, c->req_id) == 0 && send_msg(c, &c->hdr, 0) == 0)
        c->req_need_send = false;
    int64_t deadline = now_ms() + c->timeout_ms;
    while (c->req_state == REQ_WAITING) {
        int left = left_ms(deadline);
        if (left == 0) {
            c->req_state = REQ_NONE;
            return kabar_error_set(err, KABAR_TIMEOUT,
                                   "the broker at %s did not answer %s in %d ms", c->endpoint,
                                   wire_cmd_name(cmd), c->timeout_ms);
        }
        if ((rc = pump(c, left, err)) != 0) {
            c->req_state = REQ_NONE;
            return rc;
        }
    }
    if (c->req_state == REQ_FAILED) {
        c->req_state = REQ_NONE;
        return kabar_error_set(err, c->req_error.code, "%s: %s", wire_cmd_name(cmd),
                               c->req_error.message);
    }
    c->req_state = REQ_NONE;
    return 0;
}

static int head_field(mpr *r, const mpr_item *k, kabar_head *h)
{
    mpr_item v;
    int rc = mpr_next(r, &v, NULL);
    if (rc != 0)
        return rc;
    if (k->len == 3 && memcmp(k->str, "seq", 3) == 0 && v.kind == MPR_UINT)
        h->seq = v.u;
    else if (k->len == 5 && memcmp(k->str, "count", 5) == 0 && v.kind == MPR_UINT)
        h->count = v.u;
    else if (k->len == 16 && memcmp(k->str, "last_received_at", 16) == 0 && v.kind == MPR_TIMESTAMP)
        h->last_received_at = v.i;
    else if (v.kind == MPR_ARRAY || v.kind == MPR_MAP) {
        uint32_t n = v.kind == MPR_MAP ? v.count * 2 : v.count;
        for (uint32_t i = 0; i < n && rc == 0; i++)
            rc = mpr_skip(r, KABAR_MAX_DEPTH, NULL);
    }
    return rc;
}

int kabar_client_head(kabar_client *c, kabar_head *h, kabar_error *err)
{
    int rc;
    mpr r;
    mpr_item it, k;
    if (c == NULL || h == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "head: no client");
    if ((rc = request(c, WIRE_HEAD, err)) != 0)
        return rc;
    memset(h, 0, sizeof *h);
    h->last_received_at = INT64_MIN;
    mpr_init(&r, c->req_reply.data, c->req_reply.len);
    r.canonical = false;
    if (mpr_next(&r, &it, NULL) != 0 || it.kind != MPR_MAP)
        return kabar_error_set(err, KABAR_PROTOCOL, "HEADOK: element 3 must be a map");
    for (uint32_t i = 0; i < it.count; i++) {
        if (mpr_next(&r, &k, NULL) != 0 || k.kind != MPR_STR || head_field(&r, &k, h) != 0)
            return kabar_error_set(err, KABAR_PROTOCOL, "HEADOK: unreadable map");
    }
    return 0;
}

int kabar_client_status(kabar_client *c, kabar_buf *json_out, kabar_error *err)
{
    int rc;
    if (c == NULL || json_out == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "status: no client");
    if ((rc = request(c, WIRE_STATUS, err)) != 0)
        return rc;
    if (c->req_reply.len == 0)
        return kabar_error_set(err, KABAR_PROTOCOL, "STATUSOK carries no map");
    return wire_msgpack_to_json(json_out, c->req_reply.data, c->req_reply.len, err);
}

static int dup_opt(const char *in, char **copy, const char **view)
{
    if (in == NULL)
        return 0;
    if ((*copy = strdup(in)) == NULL)
        return -1;
    *view = *copy;
    return 0;
}

static void sub_unlink(kabar_sub *s)
{
    kabar_sub **pp = &s->c->subs;
    while (*pp && *pp != s)
        pp = &(*pp)->next;
    if (*pp)
        *pp = s->next;
}

int kabar_client_subscribe(kabar_client *c, const kabar_sub_opts *opts, kabar_sub **out,
                           kabar_error *err)
{
    int rc;
    if (c == NULL || opts == NULL || out == NULL || (unsigned)opts->start > KABAR_START_TIME)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "subscribe: bad arguments");
    if (opts->start == KABAR_START_SEQ && opts->seq == 0)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "subscribe: seq starts at 1");
    kabar_sub *s = calloc(1, sizeof *s);
    if (s == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    s->c = c;
    s->opts = *opts;
    s->opts.type_prefix = s->opts.source = s->opts.target = s->opts.durable = NULL;
    if (dup_opt(opts->type_prefix, &s->type_prefix, &s->opts.type_prefix) != 0 ||
        dup_opt(opts->source, &s->source, &s->opts.source) != 0 ||
        dup_opt(opts->target, &s->target, &s->opts.target) != 0 ||
        dup_opt(opts->durable, &s->durable, &s->opts.durable) != 0) {
        sub_free(s);
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    }
    if (s->opts.credit == 0)
        s->opts.credit = DEFAULT_CREDIT;
    s->credit = s->opts.credit;
    s->id = c->next_id++;
    s->state = SUB_WAITING;
    s->need_send = true;
    s->next = c->subs;
    c->subs = s;
    if (c->session)
        sub_send(c, s);

    int64_t deadline = now_ms() + c->timeout_ms;
    while (s->state == SUB_WAITING) {
        int left = left_ms(deadline);
        if (left == 0) {
            rc = kabar_error_set(err, KABAR_TIMEOUT, "the broker at %s did not answer SUB in %d ms",
                                 c->endpoint, c->timeout_ms);
            goto fail;
        }
        if ((rc = pump(c, left, err)) != 0)
            goto fail;
    }
    if (s->state == SUB_FAILED) {
        rc = kabar_error_set(err, s->error.code, "subscribe: %s", s->error.message);
        goto fail;
    }
    *out = s;
    return 0;
fail:
    sub_unlink(s);
    sub_free(s);
    return rc;
}

int kabar_sub_next(kabar_sub *s, kabar_record *rec, int timeout_ms, kabar_error *err)
{
    int rc;
    if (s == NULL || rec == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "sub_next: no subscription");
    kabar_client *c = s->c;
    int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    for (;;) {
        while (s->chunks) {
            evt_chunk *k = s->chunks;
            if (k->p < k->end) {
                const uint8_t *p = k->p;
                if (wire_dec_record(&p, k->end, rec, err) != 0)
                    return KABAR_PROTOCOL; /* checked on arrival: cannot happen */
                k->p = p;
                if (k->epoch == s->epoch) {
                    s->consumed++;
                    grant_credit(c, s);
                }
                if (rec->seq >= k->min_seq)
                    return 0;
                continue;
            }
            /* Exhausted: the record returned last time is no longer promised. */
            s->chunks = k->next;
            if (s->chunks == NULL)
                s->chunks_tail = NULL;
            chunk_free(k);
        }
        if (s->state == SUB_FAILED)
            return kabar_error_set(err, s->error.code, "%s", s->error.message);
        if (s->ended)
            return kabar_error_set(err, KABAR_END, "end of the requested range");
        int left = left_ms(deadline);
        if (left == 0)
            return kabar_error_set(err, KABAR_TIMEOUT, "no event within %d ms", timeout_ms);
        if ((rc = pump(c, left, err)) != 0)
            return rc;
    }
}

int kabar_sub_ack(kabar_sub *s, uint64_t seq, kabar_error *err)
{
    if (s == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "ack: no subscription");
    if (s->opts.durable == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "ack: only a durable subscription can acknowledge");
    if (seq > s->last)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "ack: seq %llu was not received yet (last %llu)",
                               (unsigned long long)seq, (unsigned long long)s->last);
    if (seq > s->acked)
        s->acked = seq;
    flush_ack(s->c, s); /* now, or once a new session has delivered it again */
    return 0;
}

void kabar_sub_close(kabar_sub **sp)
{
    if (sp == NULL || *sp == NULL)
        return;
    kabar_sub *s = *sp;
    kabar_client *c = s->c;
    if (c->session && s->state == SUB_OK && !s->ended &&
        wire_enc_cmd(&c->hdr, WIRE_UNSUB, s->id) == 0)
        send_msg(c, &c->hdr, 0);
    sub_unlink(s);
    sub_free(s);
    *sp = NULL;
}
