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
 * This file holds the socket, the session and the receive loop; publishing
 * is in client_pub.c, subscriptions in client_sub.c (what they share:
 * client_internal.h).
 *
 * Design notes
 *
 * Publishing window. Events are copied into a ring of `window` slots:
 *
 *      tail            sent                 head
 *       |  in flight    |  queued, not sent  |   free ...
 *
 * Queued events go out as PUB batches when enough are queued (half the
 * window: each PUB costs one signature here and one verification in the
 * broker, about 50 us, so fewer and larger batches are cheaper; a quarter
 * measured 5-15 % slower with signatures), when nothing is in flight (so a lone event is not
 * delayed), and whenever the application would block (full ring, flush). ACKs fill the slots'
 * results; results are handed to the callback strictly from `tail` on, so they come out in
 * publishing order even if the broker answered batches out of order.
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
 * Security. With a key (kabar_client_opts.key) every DEALER the client
 * makes speaks CURVE: its keypair is the Curve25519 form of the client's
 * Ed25519 identity key, and the broker's public key is the Curve25519 form
 * of the pinned server key. A broker that does not admit the key (ZAP)
 * drops the handshake without a word, so a wrong key looks like no
 * broker: the KABAR_CONNECT message says to check both keys.
 *
 * Signed batches. While a signer is set (the client's key by default),
 * each event's leaf hash is computed once, at publish, and each PUB
 * carries one signature over its batch (proto/batchsig.h). A batch is
 * "formed" (its size fixed and signed) when it is first sent, or when the
 * signer changes (kabar_client_set_signer forms every queued event under
 * the old signer); the first slot of the batch keeps its size, key and
 * signature, so a resend after a reconnection sends exactly the same
 * batch. Slots [sent, formed) are formed but not sent (only after a
 * resync or a signer change).
 *
 * CALL. Like HEAD and STATUS, one request at a time; the header is kept
 * (req_msg) and asked again after a reconnection only when the method is
 * read-only; a registry change whose connection dropped fails with
 * KABAR_CONNECT rather than risk doing it twice.
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

#include "client_internal.h"
#include "kabar.h"
#include "kkey.h"
#include "mpr.h"
#include "wire.h"

#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_WINDOW     256
#define RETRY_MIN_MS       250  /* a socket without a PONG is made anew after this... */
#define RETRY_MAX_MS       2000 /* ...doubling up to this */
#define RETRY_PING_MS      100  /* PING interval while there is no session */
#define LINGER_MS          200

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
    if (c->curve && (zmq_setsockopt(c->sock, ZMQ_CURVE_SERVERKEY, c->server_curve, 32) != 0 ||
                     zmq_setsockopt(c->sock, ZMQ_CURVE_PUBLICKEY, c->key.curve_pk, 32) != 0 ||
                     zmq_setsockopt(c->sock, ZMQ_CURVE_SECRETKEY, c->key.curve_sk, 32) != 0)) {
        int e = errno;
        socket_close(c);
        return kabar_error_set(err, KABAR_IO,
                               "cannot set up CURVE encryption: %s (is libzmq built with "
                               "libsodium?)",
                               zmq_strerror(e));
    }

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
    c->sock_served = false;
    return 0;
}

/* Send one header frame (`more`: frames follow); 0, or -1 when it cannot go out now. */
int client__send_msg(kabar_client *c, const kabar_buf *hdr, int more)
{
    return zmq_send(c->sock, hdr->data, hdr->len, ZMQ_DONTWAIT | (more ? ZMQ_SNDMORE : 0)) < 0 ? -1
                                                                                               : 0;
}

static void send_ping(kabar_client *c, int64_t now)
{
    if (wire_enc_cmd(&c->hdr, WIRE_PING, c->next_id++) == 0)
        client__send_msg(c, &c->hdr, 0); /* EAGAIN: no connection yet; the next one will tell */
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
    if (c->req_state == REQ_WAITING) {
        if (!c->req_need_send && !c->req_resend_ok) {
            /* It went to the broker that is gone: done or not, we cannot tell. */
            kabar_error_set(&c->req_error, KABAR_CONNECT,
                            "the connection to the broker at %s dropped before it answered; "
                            "it may or may not have been done (check before repeating it)",
                            c->endpoint);
            c->req_state = REQ_FAILED;
        } else {
            c->req_need_send = true;
        }
    }
}

static void drain_monitor(kabar_client *c);

/*
 * Is the session still up? Asked right before sending anything that belongs
 * to it (PUB, SUB, CREDIT, CACK), so that a dropped connection is noticed
 * before, not after, we hand the socket more work. (Order does not depend
 * on it: the socket never reconnects by itself; see Sessions.)
 */
bool client__session_up(kabar_client *c)
{
    drain_monitor(c);
    return c->session;
}

/* ------------------------------------------------------------------------ */
/* Receiving                                                                */

static void session_begins(kabar_client *c)
{
    c->session = true;
    c->sock_served = true;
    c->retry_ms = RETRY_MIN_MS;
    if (c->resync) {
        c->resync = false;
        c->nbatches = 0;
        c->batch0 = 0;
        c->sent = c->tail;
    }
    for (kabar_sub *s = c->subs; s; s = s->next)
        if (s->need_send)
            client__sub_send(c, s);
    if (c->req_state == REQ_WAITING && c->req_need_send && client__send_msg(c, &c->req_msg, 0) == 0)
        c->req_need_send = false;
    client__send_pending(c, true);
}

/* The reply each request expects. */
static wire_cmd reply_of(wire_cmd cmd)
{
    return cmd == WIRE_HEAD ? WIRE_HEADOK : cmd == WIRE_STATUS ? WIRE_STATUSOK : WIRE_RESULT;
}

static void on_reply(kabar_client *c, const wire_header *h)
{
    if (c->req_state != REQ_WAITING || h->id != c->req_id || h->cmd != reply_of(c->req_cmd))
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
    if ((b = client__batch_find(c, h->id)) != NULL) {
        client__on_batch_err(c, b, code, text);
    } else if ((s = client__sub_find(c, h->id)) != NULL) {
        client__on_sub_err(c, s, code, text);
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
        client__on_ack(c, &h);
        break;
    case WIRE_SUBOK:
        if ((s = client__sub_find(c, h.id)) == NULL)
            break;
        if (s->state == SUB_WAITING) {
            s->state = SUB_OK;
            s->first = h.a;
            s->head = h.b;
        }
        s->epoch_ok = true;
        s->epoch_first = h.a;
        client__flush_ack(c, s);
        break;
    case WIRE_EVT:
        if ((s = client__sub_find(c, h.id)) != NULL)
            client__on_evt(c, s, &h, body);
        break;
    case WIRE_END:
        if ((s = client__sub_find(c, h.id)) != NULL && s->state == SUB_OK)
            s->ended = true;
        break;
    case WIRE_HEADOK:
    case WIRE_STATUSOK:
    case WIRE_RESULT:
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
int client__drain(kabar_client *c)
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

/* ms to wait, from opened_ms, before the socket is made anew. */
static int64_t remake_after(const kabar_client *c)
{
    /* A connection that served a session and dropped (a broker restart) is
     * made anew at once. One that never got a PONG, whether silent or
     * dropped (a broker that refuses the key at the handshake drops it at
     * once), waits retry_ms, which doubles: never a reconnection storm. */
    return c->reopen && c->sock_served ? 0 : c->retry_ms;
}

/*
 * A new socket when the connection dropped, or when one without a session
 * got no PONG within its retry time. 0, or the error of making it.
 */
static int reconnect(kabar_client *c, int64_t now, kabar_error *err)
{
    if (c->session || now - c->opened_ms < remake_after(c))
        return 0;
    if (!c->sock_served) /* no answer on the last socket: wait longer next time */
        c->retry_ms = c->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : c->retry_ms * 2;
    kabar_error e;
    socket_close(c);
    if (socket_open(c, &e) != 0)
        return kabar_error_set(err, e.code, "%s", e.message);
    session_lost(c);
    send_ping(c, now);
    return 0;
}

/* KABAR_CONNECT: nothing heard for timeout_ms; what to check depends on the transport. */
static int no_answer(kabar_client *c, kabar_error *err)
{
    if (c->curve)
        return kabar_error_set(err, KABAR_CONNECT,
                               "no answer from %s within %d ms: is kabard running there, and are "
                               "--key and --server-key right (the broker drops clients whose key "
                               "it does not know)?",
                               c->endpoint, c->timeout_ms);
    return kabar_error_set(err, KABAR_CONNECT,
                           "no answer from %s within %d ms: is kabard running there (check "
                           "--broker / KABAR_BROKER)? A broker not started with --insecure "
                           "speaks only to clients with --key and --server-key",
                           c->endpoint, c->timeout_ms);
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
        return no_answer(c, err);
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
        int64_t remake = c->opened_ms + remake_after(c) - now;
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
int client__pump(kabar_client *c, int wait_ms, kabar_error *err)
{
    int rc;
    drain_monitor(c);
    bool got = client__drain(c) > 0;
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
    client__drain(c);
    return 0;
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
    if (opts && opts->key && opts->server_key == NULL) {
        free(c);
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "a client key needs the broker's public key to pin (--server-key "
                               "KEY|FILE or KABAR_SERVER_KEY; it is DATA/broker.pub on the "
                               "broker's host)");
    }
    if (opts && opts->key) {
        kabar_error e;
        if (kkey_curve_public(opts->server_key, c->server_curve, &e) != 0) {
            free(c);
            return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "the server key: %s", e.message);
        }
        c->curve = true;
        c->key = *opts->key;
        c->signer = c->key;
        c->signing = true;
    }
    c->timeout_ms = opts && opts->timeout_ms > 0 ? opts->timeout_ms : DEFAULT_TIMEOUT_MS;
    c->window = opts && opts->window > 0 ? opts->window : DEFAULT_WINDOW;
    c->next_id = 1;
    c->retry_ms = RETRY_MIN_MS;
    c->endpoint = strdup(endpoint);
    c->slots = calloc(c->window, sizeof *c->slots);
    c->batches = calloc(c->window, sizeof *c->batches);
    c->leaves = malloc(KABAR_MAX_BATCH * sizeof *c->leaves);
    c->ctx = zmq_ctx_new();
    if (c->endpoint == NULL || c->slots == NULL || c->batches == NULL || c->leaves == NULL ||
        c->ctx == NULL) {
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
            rc = no_answer(c, err);
            goto fail;
        }
        if ((rc = client__pump(c, left, err)) != 0)
            goto fail;
    }
    *out = c;
    return 0;
fail:
    kabar_client_destroy(&c);
    return rc;
}

void kabar_client_destroy(kabar_client **cp)
{
    if (cp == NULL || *cp == NULL)
        return;
    kabar_client *c = *cp;
    while (c->subs) {
        kabar_sub *s = c->subs;
        c->subs = s->next;
        client__sub_free(s);
    }
    socket_close(c);
    if (c->ctx)
        zmq_ctx_term(c->ctx);
    if (c->slots)
        for (uint32_t i = 0; i < c->window; i++)
            free(c->slots[i].bytes);
    free(c->slots);
    free(c->batches);
    free(c->leaves);
    free(c->endpoint);
    kabar_buf_free(&c->hdr);
    kabar_buf_free(&c->req_reply);
    kabar_buf_free(&c->req_msg);
    kkey_wipe(&c->key);
    kkey_wipe(&c->signer);
    free(c);
    *cp = NULL;
}

void kabar_client_on_result(kabar_client *c, kabar_pub_cb cb, void *arg)
{
    c->cb = cb;
    c->cb_arg = arg;
}

/*
 * HEAD / STATUS / CALL, whose header (with id c->req_id) is in c->req_msg:
 * the reply's elements after the id are left in c->req_reply. A refusal
 * (ERR) returns its code: "CMD: text", or the broker's text alone for CALL.
 */
static int request_within(kabar_client *c, wire_cmd cmd, const char *what, int wait_ms,
                          kabar_error *err)
{
    int rc;
    c->req_cmd = cmd;
    c->req_state = REQ_WAITING;
    c->req_need_send = true;
    if (c->session && client__send_msg(c, &c->req_msg, 0) == 0)
        c->req_need_send = false;
    int64_t deadline = now_ms() + wait_ms;
    while (c->req_state == REQ_WAITING) {
        int left = left_ms(deadline);
        if (left == 0) {
            c->req_state = REQ_NONE;
            return kabar_error_set(err, KABAR_TIMEOUT,
                                   "the broker at %s did not answer %s in %d ms", c->endpoint, what,
                                   wait_ms);
        }
        if ((rc = client__pump(c, left, err)) != 0) {
            c->req_state = REQ_NONE;
            return rc;
        }
    }
    if (c->req_state == REQ_FAILED) {
        c->req_state = REQ_NONE;
        if (cmd == WIRE_CALL)
            return kabar_error_set(err, c->req_error.code, "%s", c->req_error.message);
        return kabar_error_set(err, c->req_error.code, "%s: %s", what, c->req_error.message);
    }
    c->req_state = REQ_NONE;
    return 0;
}

static int request(kabar_client *c, wire_cmd cmd, const char *what, kabar_error *err)
{
    return request_within(c, cmd, what, c->timeout_ms, err);
}

int client__sync(kabar_client *c, int wait_ms)
{
    if (c->req_state != REQ_NONE || !c->session) /* inside another request: do not clobber it */
        return -1;
    kabar_error e;
    c->req_id = c->next_id++;
    c->req_resend_ok = false; /* an answer on a new session says nothing of the old one */
    if (wire_enc_cmd(&c->req_msg, WIRE_HEAD, c->req_id) != 0)
        return -1;
    return request_within(c, WIRE_HEAD, "HEAD", wait_ms < c->timeout_ms ? wait_ms : c->timeout_ms,
                          &e) == 0
               ? 0
               : -1;
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
    c->req_id = c->next_id++;
    c->req_resend_ok = true;
    if (wire_enc_cmd(&c->req_msg, WIRE_HEAD, c->req_id) != 0)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    if ((rc = request(c, WIRE_HEAD, "HEAD", err)) != 0)
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
    c->req_id = c->next_id++;
    c->req_resend_ok = true;
    if (wire_enc_cmd(&c->req_msg, WIRE_STATUS, c->req_id) != 0)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    if ((rc = request(c, WIRE_STATUS, "STATUS", err)) != 0)
        return rc;
    if (c->req_reply.len == 0)
        return kabar_error_set(err, KABAR_PROTOCOL, "STATUSOK carries no map");
    return wire_msgpack_to_json(json_out, c->req_reply.data, c->req_reply.len, err);
}

/* Methods that change nothing, safe to ask twice. */
static bool read_only(const char *method)
{
    return strcmp(method, "whoami") == 0 || strcmp(method, "agency.list") == 0 ||
           strcmp(method, "agency.show") == 0 ||
           strncmp(method, "audit.", 6) == 0; /* a second fresh checkpoint does no harm */
}

/* Is p[0..len) exactly one msgpack map? */
static bool one_map(const void *p, size_t len)
{
    mpr r;
    mpr_item it;
    mpr_init(&r, p, len);
    r.canonical = false;
    if (mpr_next(&r, &it, NULL) != 0 || it.kind != MPR_MAP)
        return false;
    for (uint32_t i = 0; i < it.count * 2; i++)
        if (mpr_skip(&r, KABAR_MAX_DEPTH * 2, NULL) != 0)
            return false;
    return mpr_left(&r) == 0;
}

int kabar_client_call(kabar_client *c, const char *method, const void *params, size_t len,
                      kabar_buf *out, kabar_error *err)
{
    int rc;
    wire_header h = {0};
    const uint8_t *map;
    size_t maplen;
    if (c == NULL || out == NULL || method == NULL || method[0] == '\0' || strlen(method) > 64)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "call: a client, a method name (1-64 bytes) and an output buffer "
                               "are needed");
    if (params != NULL && len > 0 && !one_map(params, len))
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "call %s: the params must be one msgpack map", method);
    c->req_id = c->next_id++;
    c->req_resend_ok = read_only(method);
    if (wire_enc_call(&c->req_msg, c->req_id, method, params, len) != 0)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    if ((rc = request(c, WIRE_CALL, method, err)) != 0)
        return rc;
    /* req_reply holds what followed the id: the map (and what a later version adds). */
    h.rest = (const uint8_t *)c->req_reply.data;
    h.rest_len = c->req_reply.len;
    h.nrest = 1;
    if (wire_result_decode(&h, &map, &maplen, err) != 0)
        return kabar_error_set(err, KABAR_PROTOCOL, "the broker's RESULT for %s carries no map",
                               method);
    if (kabar_buf_append(out, map, maplen) != 0)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    return 0;
}
