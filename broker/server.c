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
 *
 * Trust (PROTOCOL.md "Principals"). Each message's principal comes from
 * the User-Id ZeroMQ attaches to it after the ZAP handler (auth.c) admitted
 * the connection's CURVE key; it is looked up in the in-memory registry at
 * every message, so a key revoked while connected stops working with its
 * next message. A signed PUB costs one Ed25519 verification whatever its
 * size: every event frame is hashed once (the batch tree's leaf), the root
 * is checked against the signature, and the leaves go to the store with
 * the entries (store_sigbatch), which keeps them as the batch's proof.
 *
 * Registry changes (CALL agency.add / revoke_key / rotate_key). Events are
 * checked against the keys at sv->now, the start of the read phase, but
 * get their received_at at the commit, later. A revocation made in the
 * read phase after a PUB of that key was checked would be stamped before
 * that PUB's received_at, and `kabar audit verify` would report those
 * events for ever. So a registry-changing CALL that arrives while the turn
 * holds events ends the read phase and waits (sv->deferred) until those
 * events are committed and acked; it then runs at calls_change_time,
 * strictly after every received_at in the log. From then on server_now
 * never goes below that time (sv->clock_min), so no later event is
 * received, and no key checked, before the change, even if the wall clock
 * steps back: a new key's valid_from is at or before the received_at of
 * every event it signs, and a revoked key's events are all received before
 * its revoked_at. After the change the subscriptions of every peer whose
 * key is no longer valid end at once (server_registry_changed), before the
 * relay of the turn: a revoked subscriber gets nothing more even if it
 * stays silent.
 */
#include "server_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "batchsig.h"
#include "calls.h"
#include "klog.h"
#include "merkle.h"

int64_t server_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

void server_send_hdr(server *sv, const peer *p, const kabar_buf *hdr)
{
    send_to(sv, p->rid, p->rid_len, hdr, NULL, 0, false);
}

static int sink_evt(void *arg, const sub *s, uint32_t count, const void *payload, size_t len)
{
    server *sv = arg;
    int rc = wire_enc_cmd1(&sv->out, WIRE_EVT, s->id, count);
    if (rc == 0)
        send_to(sv, s->peer->rid, s->peer->rid_len, &sv->out, payload, len, true);
    return rc;
}

int server_sink_end(void *arg, const sub *s, uint64_t last)
{
    server *sv = arg;
    int rc = wire_enc_cmd1(&sv->out, WIRE_END, s->id, last);
    if (rc == 0)
        server_send_hdr(sv, s->peer, &sv->out);
    return rc;
}

int64_t server_now(const server *sv)
{
    int64_t t = kabar_now();
    return t < sv->clock_min ? sv->clock_min : t;
}

static bool peer_key_gone(void *arg, const peer *p)
{
    server *sv = arg;
    const auth_principal *who = auth_by_user_id(sv->au, p->user_id, strlen(p->user_id));
    if (who != NULL && auth_valid(who, sv->now) && who->role != AUTH_NONE)
        return false;
    char hex[40];
    klog(KLOG_INFO, "KABARD-KEY-GONE",
         "peer %s (%s): its key is no longer valid; its %u subscriptions end now",
         server_hex_rid(p->rid, p->rid_len, hex), p->user_id[0] ? p->user_id : "no key", p->nsubs);
    return true;
}

static void sub_key_gone(void *arg, const peer *p, const sub *s)
{
    server *sv = arg;
    char msg[160];
    snprintf(msg, sizeof msg,
             "subscription %" PRIu64 " ended: your key is no longer valid (revoked); ask the "
             "operator",
             s->id);
    if (wire_enc_err(&sv->out, s->id, KABAR_UNKNOWN_KEY, msg) == 0)
        server_send_hdr(sv, p, &sv->out);
}

void server_registry_changed(server *sv, int64_t at)
{
    if (at > sv->clock_min)
        sv->clock_min = at;
    if (sv->now < sv->clock_min)
        sv->now = sv->clock_min;
    if (sv->secure)
        subs_drop_peers(sv->subs, peer_key_gone, sub_key_gone, sv);
}

store_reader *server_reader(server *sv)
{
    if (sv->rd_stale) {
        kabar_error e;
        if (store_reader_refresh(sv->rd, &e) != 0) {
            klog_limited(&sv->lim_store, server_mono_ms(), KLOG_WARN, "KABARD-STORE-FAIL",
                         "cannot refresh the log reader: %s", e.message);
            return NULL;
        }
        sv->rd_stale = false;
    }
    return sv->rd;
}

/* ------------------------------------------------------------------------ */
/* Read phase: PUB                                                          */

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

/* What holds for every event of a PUB: its principal, its signature. */
typedef struct pub_check {
    const auth_principal *who;    /* NULL: the connection's key is unknown or revoked */
    const auth_principal *signer; /* NULL: unsigned */
    kabar_error all;              /* code != 0: every event is refused with it */
} pub_check;

/*
 * The PUB-wide verdict: the sender may publish, and the batch's signature
 * (over leaves[0..n), the event frames' hashes) holds. One verification.
 */
static void check_pub(server *sv, pub_check *c, const uint8_t *pk, const uint8_t *sig,
                      const uint8_t (*leaves)[32], uint32_t n)
{
    c->all.code = 0;
    char kid[KKEY_ID_TEXT];
    if (c->who == NULL) {
        kabar_error_set(&c->all, KABAR_UNKNOWN_KEY,
                        "your key is not registered or was revoked; ask the operator");
    } else if (auth_check_publish(c->who) != 0) {
        kabar_error_set(&c->all, KABAR_CANNOT_PUBLISH, "role %s may not publish",
                        auth_role_name(c->who->role));
    } else if (pk == NULL) {
        if (sv->secure)
            kabar_error_set(&c->all, KABAR_UNSIGNED,
                            "this broker accepts signed batches only: publish with your key");
    } else if ((c->signer = auth_by_pk(sv->au, pk)) == NULL || !auth_valid(c->signer, sv->now)) {
        kkey_id_text(pk, kid);
        kabar_error_set(&c->all, KABAR_UNKNOWN_KEY,
                        "the batch is signed by key %s, which is not registered or not valid "
                        "now",
                        kid);
        c->signer = NULL;
    } else if (batchsig_verify(pk, sig, leaves, n, &c->all) != 0) {
        c->signer = NULL;
    }
}

/* One event frame of a PUB: validate; keep it as an entry or record why not. */
static void read_event(server *sv, zmq_msg_t *m, const pub_check *c, pub *pb, uint32_t k)
{
    slot *sl = &sv->slots[sv->nslots++];
    size_t len = zmq_msg_size(m);
    kabar_event *ev = &sv->evs[sv->nentries];
    kabar_error *e = &sv->errs[sv->nerrs];
    int rc = c->all.code;
    if (rc != 0)
        *e = c->all;
    else if (len > KABAR_MAX_EVENT_BYTES)
        rc = kabar_error_set(e, KABAR_TOO_BIG, "event of %zu bytes, more than the %d allowed", len,
                             KABAR_MAX_EVENT_BYTES);
    else if ((rc = kabar_event_decode(sv->schema, zmq_msg_data(m), len, ev, e)) != 0)
        ;
    else if ((rc = auth_check_source(c->who, ev->source)) != 0)
        kabar_error_set(e, rc, "%s may publish only as %s, not as %.*s", c->who->user_id,
                        c->who->agency, (int)ev->source.len, ev->source.ptr);
    else if (c->signer != NULL && (rc = auth_check_signer(c->signer, ev->source)) != 0)
        kabar_error_set(e, rc, "signed by key %s of %s, but the event's source is %.*s",
                        c->signer->key_id, c->signer->agency, (int)ev->source.len, ev->source.ptr);
    if (rc != 0) {
        if (rc >= KABAR_UNSIGNED && rc <= KABAR_NOT_OWN_CONSUMER)
            auth_refused(sv->au, c->who ? c->who : &auth_anonymous, rc, "PUB", server_mono_ms());
        sl->code = rc;
        sl->ix = (uint32_t)sv->nerrs++;
        zmq_msg_close(m);
        zmq_msg_init(m); /* empty, so that an accepted event can be moved here */
        return;
    }
    zmq_msg_t *dst = &sv->frames[sv->nentries];
    if (dst != m)
        zmq_msg_move(dst, m); /* compact: frames[i] holds entries[i]'s bytes; m is left empty */
    store_entry *en = &sv->entries[sv->nentries];
    memset(en, 0, sizeof *en);
    en->ev = ev;
    en->bytes = zmq_msg_data(dst);
    en->len = len;
    en->batch = c->signer != NULL ? &pb->sb : NULL;
    en->batch_index = k;
    sl->code = KABAR_OK;
    sl->ix = (uint32_t)sv->nentries++;
    sv->nbytes += len;
}

/*
 * A PUB: its event frames are received first (into frames[nentries..]), so
 * that the signature can be checked over all of them; then each becomes a
 * slot, the accepted ones compacted into the entries. The routing id waits
 * for the ACK.
 */
static void read_pub(server *sv, peer *p, zmq_msg_t *rid, const wire_header *h,
                     const auth_principal *who)
{
    size_t base = sv->nentries, slots0 = sv->nslots;
    uint32_t n = 0;
    kabar_error e;
    const uint8_t *pk = NULL, *sig = NULL;
    while (n < KABAR_MAX_BATCH && has_more(sv)) {
        zmq_msg_t *m = &sv->frames[base + n];
        zmq_msg_init(m);
        if (zmq_msg_recv(m, sv->sock, 0) < 0) {
            zmq_msg_close(m);
            break;
        }
        n++;
    }
    int rc;
    if (n == 0)
        rc = kabar_error_set(&e, KABAR_PROTOCOL,
                             "PUB carries no events (one frame per event after the header)");
    else if (has_more(sv))
        rc = kabar_error_set(&e, KABAR_LIMIT, "PUB carries more than %d events; split the batch",
                             KABAR_MAX_BATCH);
    else
        rc = wire_pub_decode(h, &pk, &sig, &e);
    if (rc != 0) {
        drain(sv);
        for (uint32_t k = 0; k < n; k++)
            zmq_msg_close(&sv->frames[base + k]);
        server_send_err(sv, p, h->id, "PUB", &e);
        return;
    }
    uint8_t(*leaves)[32] = &sv->leaves[slots0];
    if (pk != NULL && who != NULL)
        for (uint32_t k = 0; k < n; k++)
            merkle_leaf_hash(zmq_msg_data(&sv->frames[base + k]),
                             zmq_msg_size(&sv->frames[base + k]), leaves[k]);
    pub_check c = {.who = who};
    check_pub(sv, &c, pk, sig, (const uint8_t(*)[32])leaves, n);
    pub *pb = &sv->pubs[sv->npubs++];
    memset(&pb->sb, 0, sizeof pb->sb);
    if (c.signer != NULL) {
        memcpy(pb->sb.key, pk, 32);
        memcpy(pb->sb.sig, sig, 64);
        pb->sb.n = n;
        pb->sb.leaves = (const uint8_t(*)[32])leaves;
    }
    for (uint32_t k = 0; k < n; k++)
        read_event(sv, &sv->frames[base + k], &c, pb, k);
    zmq_msg_init(&pb->rid);
    zmq_msg_move(&pb->rid, rid);
    pb->batch = h->id;
    pb->first = (uint32_t)slots0;
    pb->n = n;
}

/* ------------------------------------------------------------------------ */
/* Read phase: dispatch                                                     */

/*
 * The message's principal: the anonymous one under --insecure; else the
 * registry entry of the User-Id the ZAP handler gave the connection (read
 * from the header frame: every frame carries the connection's metadata,
 * the routing id frame ROUTER makes up does not always), NULL
 * when that key is no longer registered or valid (revoked while connected).
 */
static const auth_principal *principal(server *sv, zmq_msg_t *m)
{
    if (!sv->secure)
        return &auth_anonymous;
    const char *uid = zmq_msg_gets(m, "User-Id");
    const auth_principal *who = uid ? auth_by_user_id(sv->au, uid, strlen(uid)) : NULL;
    return who != NULL && auth_valid(who, sv->now) && who->role != AUTH_NONE ? who : NULL;
}

/* A header whose command is for the broker; `rid` may be taken (PUB). */
static void dispatch(server *sv, peer *p, zmq_msg_t *rid, const wire_header *h,
                     const auth_principal *who)
{
    kabar_error e;
    const char *name = wire_cmd_name(h->cmd);
    /* Revoked while connected: its subscriptions end with its next message (a
     * client PINGs every second); a silent one is forgotten with its peer. */
    while (who == NULL && p->subs != NULL)
        subs_remove(sv->subs, p->subs);
    if (h->cmd == WIRE_PUB) {
        read_pub(sv, p, rid, h, who);
        return;
    }
    if (has_more(sv)) {
        drain(sv);
        kabar_error_set(&e, KABAR_PROTOCOL, "%s takes no frames after its header", name);
        server_send_err(sv, p, h->id, name, &e);
        return;
    }
    if (who == NULL) {
        kabar_error_set(&e, KABAR_UNKNOWN_KEY,
                        "your key is not registered or was revoked; ask the operator");
        server_refuse(sv, p, &auth_anonymous, h->id, name, &e);
        return;
    }
    switch (h->cmd) {
    case WIRE_SUB:
        query_sub(sv, p, h, who);
        break;
    case WIRE_CREDIT:
    case WIRE_CACK:
    case WIRE_UNSUB:
        query_sub_cmd(sv, p, h, who);
        break;
    case WIRE_HEAD:
        query_head(sv, p, h->id);
        break;
    case WIRE_STATUS:
        query_status(sv, p, h->id);
        break;
    case WIRE_CALL:
        query_call(sv, p, h, who);
        break;
    case WIRE_PING:
        if (wire_enc_cmd(&sv->out, WIRE_PONG, h->id) == 0)
            server_send_hdr(sv, p, &sv->out);
        break;
    default:
        kabar_error_set(&e, KABAR_UNKNOWN_COMMAND, "%s is sent by the broker, not to it", name);
        server_send_err(sv, p, h->id, name, &e);
        break;
    }
}

/* Remember whose key the peer speaks with (its subscriptions end with that key). */
static void note_user_id(peer *p, zmq_msg_t *m)
{
    const char *uid = zmq_msg_gets(m, "User-Id");
    if (uid == NULL)
        uid = "";
    if (strcmp(p->user_id, uid) != 0)
        snprintf(p->user_id, sizeof p->user_id, "%s", uid);
}

/* A registry change while the turn holds events waits for their commit. */
static bool must_wait(server *sv, const wire_header *h, const auth_principal *who)
{
    kabar_str method;
    const uint8_t *params;
    size_t plen;
    /* Only a call that may change the registry waits: anyone else's is
     * refused at once, so a stream of refused calls cannot cut every turn
     * short (one commit each). */
    bool may_change = who != NULL && (!sv->secure || who->role == AUTH_ADMIN);
    return h->cmd == WIRE_CALL && may_change && sv->nentries > 0 && !has_more(sv) &&
           wire_call_decode(h, &method, &params, &plen, NULL) == 0 &&
           calls_changes_registry(method.ptr, method.len);
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
    if (sv->secure)
        note_user_id(p, &hdr);
    const auth_principal *who = rc == 0 ? principal(sv, &hdr) : NULL; /* once per message */
    if (rc != 0) {
        drain(sv);
        server_send_err(sv, p, rc == KABAR_UNKNOWN_COMMAND ? h.id : 0, "header", &e);
    } else if (must_wait(sv, &h, who)) {
        zmq_msg_init(&sv->deferred_hdr);
        zmq_msg_move(&sv->deferred_hdr, &hdr);
        memcpy(sv->deferred_rid, zmq_msg_data(rid), zmq_msg_size(rid));
        sv->deferred_rid_len = zmq_msg_size(rid);
        sv->deferred = true; /* ends the read phase; run_deferred after the ack */
    } else {
        dispatch(sv, p, rid, &h, who);
    }
    zmq_msg_close(&hdr);
}

/* A registry-changing CALL after the commit of the turn's events (see the top). */
static void run_deferred(server *sv)
{
    if (!sv->deferred)
        return;
    sv->deferred = false;
    sv->now = server_now(sv);
    peer *p = subs_peer(sv->subs, sv->deferred_rid, sv->deferred_rid_len, server_mono_ms());
    wire_header h;
    memset(&h, 0, sizeof h);
    kabar_error e;
    if (p != NULL && wire_header_decode(zmq_msg_data(&sv->deferred_hdr),
                                        zmq_msg_size(&sv->deferred_hdr), &h, &e) == 0) {
        const auth_principal *who = principal(sv, &sv->deferred_hdr);
        if (who == NULL) {
            while (p->subs != NULL)
                subs_remove(sv->subs, p->subs);
            kabar_error_set(&e, KABAR_UNKNOWN_KEY,
                            "your key is not registered or was revoked; ask the operator");
            server_refuse(sv, p, &auth_anonymous, h.id, "CALL", &e);
        } else {
            query_call(sv, p, &h, who);
        }
    }
    zmq_msg_close(&sv->deferred_hdr);
}

/* Phase 1. Returns true when it stopped on a cap (more may be waiting). */
static bool phase_read(server *sv, volatile sig_atomic_t *stop, int *fatal)
{
    int64_t now = server_mono_ms();
    sv->now = server_now(sv);
    while (!*stop) {
        if (sv->nslots >= TURN_EVENTS || sv->nmsgs >= TURN_MSGS || sv->nbytes >= TURN_BYTES ||
            sv->deferred)
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
    int rc = store_write(sv->st, sv->entries, sv->nentries, sv->ups, nup, server_now(sv),
                         &sv->commit_err);
    subs_updates_done(sv->subs, nup, rc == 0);
    if (rc != 0) {
        sv->commit_err.code = rc;
        sv->stats.rejected += sv->nentries;
        const char *code = rc == KABAR_DISK_FULL ? "KABARD-DISK-FULL" : "KABARD-STORE-FAIL";
        klog_limited(&sv->lim_store, server_mono_ms(), KLOG_WARN, code,
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
    int64_t now = server_mono_ms();
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
                rc = wire_enc_ack_ok(b, en->seq, en->duplicate, en->leaf_hash);
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
    store_reader *rd = server_reader(sv);
    if (subs_count(sv->subs) == 0)
        return false;
    subs_relay_in in = {.reader = rd, .fresh = sv->fresh, .nfresh = sv->nfresh};
    in.head = in.reader != NULL ? store_reader_head(in.reader) : store_head(sv->st);
    if (in.reader == NULL && sv->nfresh == 0)
        return false;
    subs_sink sink = {sink_evt, server_sink_end, sv};
    bool more = false;
    kabar_error e;
    if (subs_relay(sv->subs, &in, &sink, &more, &e) != 0)
        klog_limited(&sv->lim_relay, server_mono_ms(), KLOG_WARN, "KABARD-RELAY-FAIL",
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
         server_hex_rid(p->rid, p->rid_len, hex), KABAR_PEER_TIMEOUT_MS / 1000, p->nsubs);
}

/* The registry cache was emptied after a failed reload (fail closed): try again. */
static void retry_registry(server *sv, int64_t now)
{
    if (!sv->registry_stale)
        return;
    kabar_error e;
    sv->rd_stale = true;
    store_reader *rd = server_reader(sv);
    if (rd == NULL || auth_load(sv->au, rd, &e) != 0) {
        klog_limited(&sv->lim_store, now, KLOG_ERROR, "KABARD-REGISTRY-FAIL",
                     "the registry still cannot be reloaded (%s): nobody is admitted",
                     rd ? e.message : "the log cannot be read");
        return;
    }
    sv->registry_stale = false;
    klog(KLOG_WARN, "KABARD-REGISTRY", "registry reloaded after a failure: %zu keys",
         auth_count(sv->au));
}

static void phase_timers(server *sv, int64_t now)
{
    if (now < sv->next_timer_ms)
        return;
    sv->next_timer_ms = now + TIMER_MS;
    retry_registry(sv, now);
    subs_expire(sv->subs, now, KABAR_PEER_TIMEOUT_MS, peer_gone, sv);
    klog_limit_flush(&sv->lim_bad, now);
    klog_limit_flush(&sv->lim_reject, now);
    klog_limit_flush(&sv->lim_store, now);
    klog_limit_flush(&sv->lim_relay, now);
    auth_flush(sv->au, now);
}

/* A checkpoint of the tree at the head, when the policy (or `force`) says so. */
static void make_checkpoint(server *sv, int64_t now, bool force)
{
    uint64_t head = store_head(sv->st), size = 0;
    if (force ? head <= ckpt_last_size(sv->ck) : !ckpt_due(sv->ck, head, now))
        return;
    store_reader *rd = server_reader(sv);
    kabar_error e;
    if (rd == NULL || ckpt_make(sv->ck, sv->st, rd, now, NULL, &size, &e) != 0) {
        klog_limited(&sv->lim_store, now, KLOG_WARN, "KABARD-CHECKPOINT-FAIL",
                     "cannot make the checkpoint of size %" PRIu64 ": %s", head,
                     rd ? e.message : "the log cannot be read");
        return;
    }
    sv->rd_stale = true; /* readers see the new checkpoint after a refresh */
    klog(KLOG_DEBUG, "KABARD-CHECKPOINT", "signed checkpoint of tree size %" PRIu64, size);
}

/* Answer every ZAP request waiting (handshakes of new connections). */
static int zap_phase(server *sv)
{
    int rc;
    if (sv->zap == NULL)
        return 0;
    int64_t now = server_now(sv), mono = server_mono_ms();
    while ((rc = auth_zap_handle(sv->au, sv->zap, now, mono)) == 1)
        ;
    return rc;
}

int server_run(server *sv, volatile sig_atomic_t *stop, kabar_error *err)
{
    long timeout = 0;
    while (!*stop) {
        zmq_pollitem_t items[2] = {{sv->sock, 0, ZMQ_POLLIN, 0}, {sv->zap, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(items, sv->zap ? 2 : 1, timeout) < 0 && zmq_errno() != EINTR)
            return kabar_error_set(err, KABAR_IO, "cannot poll the socket: %s",
                                   zmq_strerror(zmq_errno()));
        if (zap_phase(sv) != 0)
            return kabar_error_set(err, KABAR_IO, "the ZAP handler's socket failed: %s",
                                   zmq_strerror(zmq_errno()));
        int fatal = 0;
        bool capped = phase_read(sv, stop, &fatal);
        phase_commit(sv);
        phase_ack(sv);
        run_deferred(sv);
        bool more = phase_relay(sv);
        turn_reset(sv);
        int64_t now = server_mono_ms();
        phase_timers(sv, now);
        make_checkpoint(sv, now, false);
        if (fatal != 0)
            return kabar_error_set(err, KABAR_IO, "cannot read from the socket: %s",
                                   zmq_strerror(fatal));
        timeout = (capped || more) ? 0 : (long)(sv->next_timer_ms - now);
        if (timeout < 0)
            timeout = 0;
    }
    make_checkpoint(sv, server_mono_ms(), true); /* the stop's: an auditor can start from it */
    return 0;
}
