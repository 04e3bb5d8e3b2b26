/*
 * client_pub.c - the client's publishing window (kabar.h "The client":
 * kabar_client_publish, kabar_client_flush). Events wait in a ring of slots
 * until their ACK; results go to the callback in publishing order. The
 * design notes ("Publishing window", "Sessions and recovery", "Signed
 * batches") are at the top of client.c.
 */
#include <stdlib.h>
#include <string.h>

#include "batchsig.h"
#include "client_internal.h"
#include "merkle.h"
#include "mpr.h"

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
                              .message = s->message,
                              .has_leaf_hash = s->has_log_leaf};
        if (s->has_log_leaf)
            memcpy(r.leaf_hash, s->log_leaf, 32);
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
    s->has_log_leaf = false;
    s->code = code;
    if (len >= sizeof s->message)
        len = sizeof s->message - 1;
    memcpy(s->message, text, len);
    s->message[len] = '\0';
}

/*
 * Form the n events from `first` into one batch, signed by the current
 * signer when there is one: one Ed25519 signature over the batch tree of
 * the leaf hashes computed at publish (proto/batchsig.h).
 */
static void form_batch(kabar_client *c, uint64_t first, uint32_t n)
{
    pub_slot *s0 = slot_at(c, first);
    s0->batch_n = n;
    s0->batch_signed = c->signing;
    if (c->signing) {
        for (uint32_t i = 0; i < n; i++)
            memcpy(c->leaves[i], slot_at(c, first + i)->leaf, 32);
        batchsig_sign(&c->signer, (const uint8_t(*)[32])c->leaves, n, s0->sig);
        memcpy(s0->key, c->signer.pk, 32);
    }
    c->formed = first + n;
}

void client__form_all(kabar_client *c)
{
    if (c->formed < c->sent) /* cannot be (sent <= formed); keep the invariant anyway */
        c->formed = c->sent;
    while (c->formed < c->head) {
        uint64_t pending = c->head - c->formed;
        form_batch(c, c->formed, pending > KABAR_MAX_BATCH ? KABAR_MAX_BATCH : (uint32_t)pending);
    }
}

/* Send the formed batch that begins at `first` (n events). */
static int send_batch(kabar_client *c, uint64_t first, uint32_t n)
{
    uint64_t id = c->next_id++;
    pub_slot *s0 = slot_at(c, first);
    if (wire_enc_pub(&c->hdr, id, s0->batch_signed ? s0->key : NULL,
                     s0->batch_signed ? s0->sig : NULL) != 0 ||
        client__send_msg(c, &c->hdr, 1) != 0)
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
void client__send_pending(kabar_client *c, bool force)
{
    uint32_t threshold = c->window / 2 ? c->window / 2 : 1;
    if (threshold > KABAR_MAX_BATCH)
        threshold = KABAR_MAX_BATCH;
    while (c->sent < c->head && client__session_up(c)) {
        if (c->sent >= c->formed) { /* a new batch: form it when it is worth sending */
            uint64_t pending = c->head - c->sent;
            bool idle = c->sent == c->tail;
            if (!force && !idle && pending < threshold)
                break;
            form_batch(c, c->sent, pending > KABAR_MAX_BATCH ? KABAR_MAX_BATCH : (uint32_t)pending);
        }
        /* A formed batch goes out as it was formed (after a resync: the same bytes). */
        uint32_t n = slot_at(c, c->sent)->batch_n;
        if (n == 0 || c->sent + n > c->formed) /* cannot be: batches are acked whole */
            n = (uint32_t)(c->formed - c->sent);
        if (send_batch(c, c->sent, n) != 0)
            break;
        c->sent += n;
    }
}

pub_batch *client__batch_find(kabar_client *c, uint64_t id)
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
        s->has_log_leaf = res.has_leaf_hash;
        if (res.has_leaf_hash)
            memcpy(s->log_leaf, res.leaf_hash, 32);
    }
    return 0;
}

void client__on_ack(kabar_client *c, const wire_header *h)
{
    kabar_error e = {0};
    pub_batch *b = client__batch_find(c, h->id);
    if (b == NULL)
        return; /* a batch from before a resync: its events were sent again */
    if (ack_results(c, b, h, &e) != 0) {
        for (uint32_t i = 0; i < b->n; i++) /* what is left unanswered failed */
            slot_fail(slot_at(c, b->first + i), KABAR_PROTOCOL, e.message, strlen(e.message));
    }
    b->n = 0;
    deliver(c);
}

void client__on_batch_err(kabar_client *c, pub_batch *b, int code, kabar_str text)
{
    if (code == KABAR_SHUTTING_DOWN)
        return; /* the events go again to the broker that comes next */
    for (uint32_t i = 0; i < b->n; i++)
        slot_fail(slot_at(c, b->first + i), code, text.ptr, text.len);
    b->n = 0;
    deliver(c);
}

/* ------------------------------------------------------------------------ */
/* Public API                                                               */

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
    client__drain(c);
    while (c->head - c->tail >= c->window) {
        client__send_pending(c, true);
        if ((rc = client__pump(c, -1, err)) != 0 || (rc = check_ack_age(c, err)) != 0)
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
    s->has_log_leaf = false;
    s->batch_n = 0;
    s->batch_signed = false;
    if (c->signing) /* each event is hashed once, here */
        merkle_leaf_hash(bytes, len, s->leaf);
    c->head++;
    client__send_pending(c, false);
    return 0;
}

int kabar_client_set_signer(kabar_client *c, const kkey *k, kabar_error *err)
{
    if (c == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "set_signer: no client");
    client__form_all(c); /* what was published so far keeps its signer */
    if (k != NULL) {
        c->signer = *k;
        c->signing = true;
    } else if (c->curve) {
        c->signer = c->key;
        c->signing = true;
    } else {
        kkey_wipe(&c->signer);
        c->signing = false;
    }
    client__send_pending(c, false);
    return 0;
}

int kabar_client_flush(kabar_client *c, kabar_error *err)
{
    int rc;
    if (c == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "flush: no client");
    while (c->tail < c->head) {
        client__send_pending(c, true);
        if ((rc = client__pump(c, -1, err)) != 0 || (rc = check_ack_age(c, err)) != 0)
            return rc;
    }
    return 0;
}
