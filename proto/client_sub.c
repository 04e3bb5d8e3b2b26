/*
 * client_sub.c - the client's subscriptions (kabar.h "The client":
 * kabar_client_subscribe, kabar_sub_next, kabar_sub_ack, kabar_sub_close):
 * EVT frames queued as they arrive and read record by record, credit granted
 * back as records are consumed, durable acks. The design notes ("Sessions
 * and recovery", "Durable acks") are at the top of client.c.
 */
#include <stdlib.h>
#include <string.h>

#include "client_internal.h"

#define DEFAULT_CREDIT 1024
#define CLOSE_SYNC_MS  2000 /* kabar_sub_close waits at most this for its last CACK to be read */

/* ------------------------------------------------------------------------ */
/* Subscriptions                                                            */

kabar_sub *client__sub_find(kabar_client *c, uint64_t id)
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
void client__flush_ack(kabar_client *c, kabar_sub *s)
{
    if (!s->epoch_ok || s->acked <= s->acked_sent || !client__session_up(c))
        return;
    if (s->acked < s->epoch_first) {
        s->acked_sent = s->acked;
        return;
    }
    uint64_t seq = s->acked < s->epoch_last ? s->acked : s->epoch_last;
    if (seq <= s->acked_sent || seq < s->epoch_first)
        return;
    if (wire_enc_cmd1(&c->hdr, WIRE_CACK, s->id, seq) == 0 && client__send_msg(c, &c->hdr, 0) == 0)
        s->acked_sent = seq;
}

/* SUB, resuming after what was received when this is not the first one. */
void client__sub_send(kabar_client *c, kabar_sub *s)
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
    if (!client__session_up(c)) {
        s->need_send = true; /* at the next session */
        return;
    }
    s->epoch++;
    s->epoch_ok = false;
    s->epoch_last = 0;
    s->consumed = 0;
    s->need_send = false;
    if (wire_enc_sub(&c->hdr, s->id, &o) != 0 || client__send_msg(c, &c->hdr, 0) != 0)
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

void client__on_evt(kabar_client *c, kabar_sub *s, const wire_header *h, zmq_msg_t *body)
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
    client__flush_ack(c, s);
}

void client__on_sub_err(kabar_client *c, kabar_sub *s, int code, kabar_str text)
{
    if (code == KABAR_SHUTTING_DOWN || s->ended)
        return; /* the connection drops next and we subscribe again; or it is over */
    if (code == KABAR_UNKNOWN_SUBSCRIPTION && s->state == SUB_OK) {
        client__sub_send(c, s); /* the broker forgot us: resume */
        return;
    }
    sub_fail(s, code, text.ptr, text.len);
}

static void grant_credit(kabar_client *c, kabar_sub *s)
{
    uint32_t half = s->credit / 2 ? s->credit / 2 : 1;
    if (s->consumed < half || s->ended || !client__session_up(c))
        return;
    if (wire_enc_cmd1(&c->hdr, WIRE_CREDIT, s->id, s->consumed) == 0 &&
        client__send_msg(c, &c->hdr, 0) == 0)
        s->consumed = 0;
}

/* ------------------------------------------------------------------------ */
/* Public API                                                               */

void client__sub_free(kabar_sub *s)
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
        client__sub_free(s);
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    }
    if (s->opts.credit == 0)
        s->opts.credit = DEFAULT_CREDIT;
    /* The broker holds no more outstanding: granting back at half of a larger
     * nominal credit would never happen, and the subscription would stall. */
    if (s->opts.credit > KABAR_MAX_CREDIT)
        s->opts.credit = KABAR_MAX_CREDIT;
    s->credit = s->opts.credit;
    s->id = c->next_id++;
    s->state = SUB_WAITING;
    s->need_send = true;
    s->next = c->subs;
    c->subs = s;
    if (c->session)
        client__sub_send(c, s);

    int64_t deadline = now_ms() + c->timeout_ms;
    while (s->state == SUB_WAITING) {
        int left = left_ms(deadline);
        if (left == 0) {
            rc = kabar_error_set(err, KABAR_TIMEOUT, "the broker at %s did not answer SUB in %d ms",
                                 c->endpoint, c->timeout_ms);
            goto fail;
        }
        if ((rc = client__pump(c, left, err)) != 0)
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
    client__sub_free(s);
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
        if ((rc = client__pump(c, left, err)) != 0)
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
    client__flush_ack(s->c, s); /* now, or once a new session has delivered it again */
    return 0;
}

void kabar_sub_close(kabar_sub **sp)
{
    if (sp == NULL || *sp == NULL)
        return;
    kabar_sub *s = *sp;
    kabar_client *c = s->c;
    bool cacked = s->opts.durable != NULL && s->acked_sent > 0 && c->session;
    if (c->session && s->state == SUB_OK && !s->ended &&
        wire_enc_cmd(&c->hdr, WIRE_UNSUB, s->id) == 0)
        client__send_msg(c, &c->hdr, 0);
    sub_unlink(s); /* first: a reconnection during the wait below must not SUB it again */
    if (cacked) {
        /* A CACK has no reply, and a process that acks and exits at once
         * could close its socket before the CACK left it: the position
         * would be lost. The broker reads a peer's messages in order, so
         * once a HEAD sent after the CACK is answered, the broker has the
         * CACK and commits it with that turn. Best effort and bounded: a
         * broker gone by now had nothing to commit it to. */
        client__sync(c, CLOSE_SYNC_MS);
    }
    client__sub_free(s);
    *sp = NULL;
}
