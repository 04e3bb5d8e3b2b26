/*
 * client_test.c - the client (proto/client.c) against a scripted fake broker.
 *
 * The fake broker is a ROUTER in a thread of this process, speaking the
 * wire protocol with proto/wire.h's encoders. It stores events as opaque
 * frames (deduplicated by their bytes, like the real broker's (source, id)),
 * rejects frames that begin with "bad", stores batches in arrival order but
 * answers them out of order (a held batch is lost if it restarts first), can
 * restart (close and bind its socket again, forgetting every connection)
 * and serves a subscription of numbered records. The tests check what an
 * application sees: results in publishing order and each event stored
 * once across a broker restart, the window never exceeded, records in
 * order with credit granted back, and a prompt KABAR_CONNECT when no broker
 * is there.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <msgpack.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#include "batchsig.h"
#include "kabar.h"
#include "kkey.h"
#include "merkle.h"
#include "wire.h"

#define MAX_STORED  20000
#define SUB_RECORDS 3000

typedef struct fake {
    pthread_t thread;
    void *ctx, *sock;
    char endpoint[128];
    volatile int stop;
    volatile int restart; /* set: the thread closes and rebinds its socket */
    pthread_mutex_t mu;
    /* the log */
    char *stored[MAX_STORED];
    size_t stored_len[MAX_STORED];
    uint64_t nstored;
    uint64_t in_flight, max_in_flight; /* events received and not yet acked */
    /* a held batch, answered after the next one */
    zmq_msg_t held_rid;
    uint64_t held_id;
    zmq_msg_t held_frames[KABAR_MAX_BATCH];
    uint32_t held_n;
    bool holding;
    bool held_signed;
    uint8_t held_signer[32];
    /* the subscription */
    uint64_t sub_id;
    uint64_t sub_records;   /* records the subscription serves; 0: SUB_RECORDS */
    uint32_t sub_requested; /* the credit the SUB asked for */
    uint64_t sub_sent, sub_credit;
    bool sub_live;
    uint64_t credits_received;
    zmq_msg_t sub_rid;
    bool has_sub_rid;
    /* secure mode: CURVE with a ZAP handler that admits one client key */
    bool curve;
    kkey server;
    uint8_t admitted[32];    /* the admitted client's curve key */
    uint8_t admitted_ed[32]; /* ... and its Ed25519 form */
    void *zap;
    char user_id[64]; /* the User-Id of the last PUB */
    bool send_leaf;   /* ACKs carry leaf hashes (SHA-256(0x00 || event) here) */
    uint64_t signed_pubs, unsigned_pubs, bad_sigs;
    uint8_t stored_signer[MAX_STORED][32]; /* by seq - 1 */
    uint8_t first_sig[MAX_STORED][64];     /* by event number: the PUB it first came in */
    bool seen[MAX_STORED];
    uint64_t rearrivals, sig_changed; /* events sent again; ...in a differently signed PUB */
} fake;

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void send_reply(fake *f, zmq_msg_t *rid, const kabar_buf *hdr, const void *body, size_t n)
{
    zmq_msg_t copy;
    zmq_msg_init(&copy);
    zmq_msg_copy(&copy, rid);
    zmq_msg_send(&copy, f->sock, ZMQ_SNDMORE);
    zmq_send(f->sock, hdr->data, hdr->len, body ? ZMQ_SNDMORE : 0);
    if (body)
        zmq_send(f->sock, body, n, 0);
}

/* Store (or find) one event; seq, or 0 for a rejected one. */
static uint64_t store_event(fake *f, const void *p, size_t n, bool *dup)
{
    *dup = false;
    if (n >= 3 && memcmp(p, "bad", 3) == 0)
        return 0;
    for (uint64_t i = 0; i < f->nstored; i++)
        if (f->stored_len[i] == n && memcmp(f->stored[i], p, n) == 0) {
            *dup = true;
            return i + 1;
        }
    f->stored[f->nstored] = malloc(n);
    memcpy(f->stored[f->nstored], p, n);
    f->stored_len[f->nstored] = n;
    return ++f->nstored;
}

/* Store a batch (in arrival order, like kabard) and encode its ACK into b. */
static void store_batch(fake *f, kabar_buf *b, uint64_t id, zmq_msg_t *frames, uint32_t n,
                        const uint8_t *signer)
{
    pthread_mutex_lock(&f->mu);
    wire_enc_ack_begin(b, id, n);
    for (uint32_t i = 0; i < n; i++) {
        bool dup;
        uint64_t seq = store_event(f, zmq_msg_data(&frames[i]), zmq_msg_size(&frames[i]), &dup);
        uint8_t leaf[32];
        merkle_leaf_hash(zmq_msg_data(&frames[i]), zmq_msg_size(&frames[i]), leaf);
        if (seq && !dup && signer)
            memcpy(f->stored_signer[seq - 1], signer, 32);
        else if (seq && !dup)
            memset(f->stored_signer[seq - 1], 0, 32);
        if (seq)
            wire_enc_ack_ok(b, seq, dup, f->send_leaf ? leaf : NULL);
        else
            wire_enc_ack_fail(b, KABAR_BAD_VALUE, "body.present: more than total");
        zmq_msg_close(&frames[i]);
    }
    f->in_flight -= n;
    pthread_mutex_unlock(&f->mu);
}

static void ack_batch(fake *f, zmq_msg_t *rid, uint64_t id, zmq_msg_t *frames, uint32_t n,
                      const uint8_t *signer)
{
    kabar_buf b = {0};
    store_batch(f, &b, id, frames, n, signer);
    send_reply(f, rid, &b, NULL, 0);
    kabar_buf_free(&b);
}

static void release_held(fake *f)
{
    if (!f->holding)
        return;
    f->holding = false;
    ack_batch(f, &f->held_rid, f->held_id, f->held_frames, f->held_n,
              f->held_signed ? f->held_signer : NULL);
    zmq_msg_close(&f->held_rid);
}

/*
 * Check a PUB's signature as kabard does (once per PUB, over the leaf
 * hashes of its frames), and note for every "event-N" the signature it
 * came with the first time: a resend must carry the same one.
 */
static void check_signature(fake *f, const wire_header *h, zmq_msg_t *frames, uint32_t n)
{
    static uint8_t leaves[KABAR_MAX_BATCH][32];
    const uint8_t *pk, *sig;
    if (wire_pub_decode(h, &pk, &sig, NULL) != 0 || pk == NULL) {
        f->unsigned_pubs++;
        return;
    }
    f->signed_pubs++;
    for (uint32_t i = 0; i < n; i++)
        merkle_leaf_hash(zmq_msg_data(&frames[i]), zmq_msg_size(&frames[i]), leaves[i]);
    if (batchsig_verify(pk, sig, (const uint8_t(*)[32])leaves, n, NULL) != 0)
        f->bad_sigs++;
    for (uint32_t i = 0; i < n; i++) {
        unsigned long long k;
        char ev[32];
        size_t len = zmq_msg_size(&frames[i]) < 31 ? zmq_msg_size(&frames[i]) : 31;
        memcpy(ev, zmq_msg_data(&frames[i]), len);
        ev[len] = '\0';
        if (sscanf(ev, "event-%llu", &k) != 1 || k >= MAX_STORED)
            continue;
        if (!f->seen[k]) {
            f->seen[k] = true;
            memcpy(f->first_sig[k], sig, 64);
        } else {
            f->rearrivals++;
            if (memcmp(f->first_sig[k], sig, 64) != 0)
                f->sig_changed++;
        }
    }
}

/* PUB: hold every other batch, so that the client sees ACKs out of order. */
static void on_pub(fake *f, zmq_msg_t *rid, const wire_header *h, zmq_msg_t *hm)
{
    zmq_msg_t frames[KABAR_MAX_BATCH];
    const uint8_t *pk = NULL, *sig = NULL;
    uint8_t signer[32];
    uint32_t n = 0;
    int more = 1;
    const char *uid = zmq_msg_gets(hm, "User-Id");
    snprintf(f->user_id, sizeof f->user_id, "%s", uid ? uid : "");
    while (more && n < KABAR_MAX_BATCH) {
        zmq_msg_init(&frames[n]);
        zmq_msg_recv(&frames[n], f->sock, 0);
        more = zmq_msg_more(&frames[n]);
        n++;
    }
    check_signature(f, h, frames, n);
    if (wire_pub_decode(h, &pk, &sig, NULL) == 0 && pk)
        memcpy(signer, pk, 32);
    pthread_mutex_lock(&f->mu);
    f->in_flight += n;
    if (f->in_flight > f->max_in_flight)
        f->max_in_flight = f->in_flight;
    pthread_mutex_unlock(&f->mu);
    if (!f->holding) {
        f->holding = true;
        f->held_id = h->id;
        f->held_n = n;
        f->held_signed = pk != NULL;
        memcpy(f->held_signer, signer, 32);
        zmq_msg_init(&f->held_rid);
        zmq_msg_copy(&f->held_rid, rid);
        memcpy(f->held_frames, frames, n * sizeof frames[0]);
        return;
    }
    /* Both are stored in arrival order; the later batch's ACK goes first. */
    kabar_buf held = {0}, later = {0};
    f->holding = false;
    store_batch(f, &held, f->held_id, f->held_frames, f->held_n,
                f->held_signed ? f->held_signer : NULL);
    store_batch(f, &later, h->id, frames, n, pk ? signer : NULL);
    send_reply(f, rid, &later, NULL, 0);
    send_reply(f, &f->held_rid, &held, NULL, 0);
    zmq_msg_close(&f->held_rid);
    kabar_buf_free(&held);
    kabar_buf_free(&later);
}

/* Outstanding credit saturates at the protocol's maximum, as in kabard. */
static void add_credit(fake *f, uint64_t n)
{
    f->sub_credit = n >= KABAR_MAX_CREDIT || f->sub_credit + n > KABAR_MAX_CREDIT
                        ? KABAR_MAX_CREDIT
                        : f->sub_credit + n;
}

/* Send what the subscription's credit allows, then END. */
static void feed_sub(fake *f)
{
    kabar_buf hdr = {0}, body = {0};
    uint64_t total = f->sub_records ? f->sub_records : SUB_RECORDS;
    while (f->sub_live && f->sub_sent < total && f->sub_credit > 0) {
        uint32_t n = 0;
        body.len = 0;
        while (n < 100 && f->sub_sent < total && f->sub_credit > 0) {
            char ev[32];
            int len = snprintf(ev, sizeof ev, "record-%llu", (unsigned long long)f->sub_sent + 1);
            wire_enc_record(&body, f->sub_sent + 1, (int64_t)(f->sub_sent + 1) * 1000000000, ev,
                            (size_t)len);
            f->sub_sent++;
            f->sub_credit--;
            n++;
        }
        wire_enc_cmd1(&hdr, WIRE_EVT, f->sub_id, n);
        send_reply(f, &f->sub_rid, &hdr, body.data, body.len);
    }
    if (f->sub_live && f->sub_sent == total) {
        wire_enc_cmd1(&hdr, WIRE_END, f->sub_id, total);
        send_reply(f, &f->sub_rid, &hdr, NULL, 0);
        f->sub_live = false;
    }
    kabar_buf_free(&hdr);
    kabar_buf_free(&body);
}

/* CALL: whoami answers; agency.add is refused as for an agent; nothing else exists. */
static void on_call(fake *f, zmq_msg_t *rid, const wire_header *h)
{
    kabar_buf b = {0}, map = {0};
    kabar_str method;
    const uint8_t *params;
    size_t len;
    msgpack_packer pk;
    if (wire_call_decode(h, &method, &params, &len, NULL) != 0) {
        wire_enc_err(&b, h->id, KABAR_PROTOCOL, "bad CALL");
    } else if (method.len == 6 && memcmp(method.ptr, "whoami", 6) == 0) {
        wire_packer_init(&pk, &map);
        msgpack_pack_map(&pk, 2);
        msgpack_pack_str_with_body(&pk, "principal", 9);
        msgpack_pack_str_with_body(&pk, "dinkes", 6);
        msgpack_pack_str_with_body(&pk, "params", 6);
        kabar_buf_append(&map, params, len); /* echoed, to check what went out */
        wire_enc_result(&b, h->id, map.data, map.len);
    } else if (method.len == 10 && memcmp(method.ptr, "agency.add", 10) == 0) {
        wire_enc_err(&b, h->id, KABAR_ADMIN_ONLY,
                     "only an admin may change the registry (dinkes is an agent)");
    } else {
        wire_enc_err(&b, h->id, KABAR_UNKNOWN_METHOD, "no method \"nope\"");
    }
    send_reply(f, rid, &b, NULL, 0);
    kabar_buf_free(&b);
    kabar_buf_free(&map);
}

static void on_message(fake *f, zmq_msg_t *rid, zmq_msg_t *hm)
{
    wire_header h;
    kabar_buf b = {0};
    msgpack_packer pk;
    if (wire_header_decode(zmq_msg_data(hm), zmq_msg_size(hm), &h, NULL) != 0)
        return;
    switch (h.cmd) {
    case WIRE_PING:
        wire_enc_cmd(&b, WIRE_PONG, h.id);
        send_reply(f, rid, &b, NULL, 0);
        break;
    case WIRE_PUB:
        on_pub(f, rid, &h, hm);
        break;
    case WIRE_CALL:
        on_call(f, rid, &h);
        break;
    case WIRE_SUB: {
        wire_sub o;
        wire_sub_decode(&h, &o, NULL);
        f->sub_id = h.id;
        f->sub_requested = o.credit;
        f->sub_credit = 0;
        add_credit(f, o.credit);
        f->sub_sent = 0;
        f->sub_live = true;
        if (f->has_sub_rid)
            zmq_msg_close(&f->sub_rid);
        zmq_msg_init(&f->sub_rid);
        zmq_msg_copy(&f->sub_rid, rid);
        f->has_sub_rid = true;
        wire_enc_subok(&b, h.id, 1, f->sub_records ? f->sub_records : SUB_RECORDS);
        send_reply(f, rid, &b, NULL, 0);
        feed_sub(f);
        break;
    }
    case WIRE_CREDIT:
        add_credit(f, h.a);
        f->credits_received++;
        feed_sub(f);
        break;
    case WIRE_HEAD:
        wire_enc_cmd(&b, WIRE_HEADOK, h.id);
        b.data[0] = (char)0x94; /* the array gets a 4th element: the map */
        wire_packer_init(&pk, &b);
        msgpack_pack_map(&pk, 2);
        msgpack_pack_str_with_body(&pk, "count", 5);
        msgpack_pack_uint64(&pk, 41);
        msgpack_pack_str_with_body(&pk, "seq", 3);
        msgpack_pack_uint64(&pk, 42);
        send_reply(f, rid, &b, NULL, 0);
        break;
    default:
        break;
    }
    kabar_buf_free(&b);
}

static void fake_bind(fake *f)
{
    int zero = 0;
    f->sock = zmq_socket(f->ctx, ZMQ_ROUTER);
    zmq_setsockopt(f->sock, ZMQ_LINGER, &zero, sizeof zero);
    if (f->curve) {
        int one = 1;
        assert_int_equal(zmq_setsockopt(f->sock, ZMQ_CURVE_SERVER, &one, sizeof one), 0);
        assert_int_equal(zmq_setsockopt(f->sock, ZMQ_CURVE_SECRETKEY, f->server.curve_sk, 32), 0);
        assert_int_equal(zmq_setsockopt(f->sock, ZMQ_ZAP_DOMAIN, "kabar", 5), 0);
    }
    if (f->endpoint[0] == '\0') {
        assert_int_equal(zmq_bind(f->sock, "tcp://127.0.0.1:*"), 0);
        size_t n = sizeof f->endpoint;
        zmq_getsockopt(f->sock, ZMQ_LAST_ENDPOINT, f->endpoint, &n);
    } else {
        for (int i = 0; i < 100 && zmq_bind(f->sock, f->endpoint) != 0; i++)
            usleep(10000);
    }
}

/*
 * One ZAP request (RFC 27): version, request id, domain, address, routing
 * id, mechanism, client key. Admit only f->admitted, as user "dinkes/KEYID".
 */
static void zap_answer(fake *f)
{
    zmq_msg_t part[8];
    int n = 0, more = 1;
    while (more && n < 8) {
        zmq_msg_init(&part[n]);
        zmq_msg_recv(&part[n], f->zap, 0);
        more = zmq_msg_more(&part[n]);
        n++;
    }
    bool ok = n >= 7 && zmq_msg_size(&part[6]) == 32 &&
              memcmp(zmq_msg_data(&part[6]), f->admitted, 32) == 0;
    char user[64] = "";
    if (ok) {
        char id[KKEY_ID_TEXT];
        kkey_id_text(f->admitted_ed, id);
        snprintf(user, sizeof user, "dinkes/%s", id);
    }
    zmq_send(f->zap, "1.0", 3, ZMQ_SNDMORE);
    if (n >= 2)
        zmq_send(f->zap, zmq_msg_data(&part[1]), zmq_msg_size(&part[1]), ZMQ_SNDMORE);
    else
        zmq_send(f->zap, "", 0, ZMQ_SNDMORE);
    zmq_send(f->zap, ok ? "200" : "400", 3, ZMQ_SNDMORE);
    zmq_send(f->zap, ok ? "OK" : "unknown key", ok ? 2 : 11, ZMQ_SNDMORE);
    zmq_send(f->zap, user, strlen(user), ZMQ_SNDMORE);
    zmq_send(f->zap, "", 0, 0);
    for (int i = 0; i < n; i++)
        zmq_msg_close(&part[i]);
}

static void *fake_run(void *arg)
{
    fake *f = arg;
    int64_t last_msg = mono_ms();
    while (!f->stop) {
        if (f->restart) { /* forget every connection and what was in flight */
            if (f->holding) {
                for (uint32_t i = 0; i < f->held_n; i++)
                    zmq_msg_close(&f->held_frames[i]);
                zmq_msg_close(&f->held_rid);
                f->holding = false;
                f->in_flight = 0;
            }
            zmq_close(f->sock);
            usleep(300000);
            fake_bind(f);
            f->restart = 0;
        }
        zmq_pollitem_t items[2] = {{f->sock, 0, ZMQ_POLLIN, 0}, {f->zap, 0, ZMQ_POLLIN, 0}};
        zmq_poll(items, f->zap ? 2 : 1, 10);
        if (f->zap && (items[1].revents & ZMQ_POLLIN))
            zap_answer(f);
        if (!(items[0].revents & ZMQ_POLLIN)) {
            if (mono_ms() - last_msg > 20)
                release_held(f); /* a lone batch is answered too */
            continue;
        }
        zmq_msg_t rid, hm;
        zmq_msg_init(&rid);
        zmq_msg_init(&hm);
        zmq_msg_recv(&rid, f->sock, 0);
        zmq_msg_recv(&hm, f->sock, 0);
        last_msg = mono_ms();
        on_message(f, &rid, &hm);
        zmq_msg_close(&rid);
        zmq_msg_close(&hm);
    }
    release_held(f);
    return NULL;
}

static int fake_start(void **state)
{
    fake *f = calloc(1, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    f->ctx = zmq_ctx_new();
    fake_bind(f);
    pthread_create(&f->thread, NULL, fake_run, f);
    *state = f;
    return 0;
}

static void seed_key(kkey *k, uint8_t first)
{
    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)(first + i);
    assert_int_equal(kkey_from_seed(k, seed, NULL), 0);
}

/* The client's key (seed 0..31), another agency's (seed 100..), the broker's (seed 200..). */
static kkey client_key, other_key;

/* A fake broker with CURVE on, admitting only client_key through its ZAP handler. */
static int fake_start_secure(void **state)
{
    fake *f = calloc(1, sizeof *f);
    pthread_mutex_init(&f->mu, NULL);
    f->ctx = zmq_ctx_new();
    f->curve = true;
    f->send_leaf = true;
    seed_key(&client_key, 0);
    seed_key(&other_key, 100);
    seed_key(&f->server, 200);
    memcpy(f->admitted, client_key.curve_pk, 32);
    memcpy(f->admitted_ed, client_key.pk, 32);
    f->zap = zmq_socket(f->ctx, ZMQ_REP);
    assert_int_equal(zmq_bind(f->zap, "inproc://zeromq.zap.01"), 0);
    fake_bind(f);
    pthread_create(&f->thread, NULL, fake_run, f);
    *state = f;
    return 0;
}

static int fake_stop(void **state)
{
    fake *f = *state;
    f->stop = 1;
    pthread_join(f->thread, NULL);
    if (f->zap)
        zmq_close(f->zap);
    zmq_close(f->sock);
    zmq_ctx_term(f->ctx);
    for (uint64_t i = 0; i < f->nstored; i++)
        free(f->stored[i]);
    if (f->has_sub_rid)
        zmq_msg_close(&f->sub_rid);
    free(f);
    return 0;
}

/* ------------------------------------------------------------------------ */

typedef struct results {
    uint64_t n;
    uint64_t next_user; /* results must come in publishing order */
    bool in_order;
    uint64_t seqs[MAX_STORED];
    int codes[MAX_STORED];
    char last_message[KABAR_ERROR_MESSAGE_MAX];
    bool has_leaf[MAX_STORED];
    uint8_t leaf[MAX_STORED][32];
} results;

static void on_result(void *arg, const kabar_pub_result *r)
{
    results *res = arg;
    uint64_t i = (uint64_t)(uintptr_t)r->user;
    if (i != res->next_user)
        res->in_order = false;
    res->next_user = i + 1;
    res->seqs[i] = r->seq;
    res->codes[i] = r->code;
    res->has_leaf[i] = r->has_leaf_hash;
    memcpy(res->leaf[i], r->leaf_hash, 32);
    if (r->code != KABAR_OK)
        snprintf(res->last_message, sizeof res->last_message, "%s", r->message);
    res->n++;
}

static void test_connect_without_broker(void **state)
{
    (void)state;
    kabar_client *c = NULL;
    kabar_error err;
    kabar_client_opts o = {.timeout_ms = 300};
    int64_t t0 = mono_ms();
    /* Port 1: nothing listens there. */
    int rc = kabar_client_connect(&c, "tcp://127.0.0.1:1", &o, &err);
    int64_t took = mono_ms() - t0;
    assert_int_equal(rc, KABAR_CONNECT);
    assert_null(c);
    assert_non_null(strstr(err.message, "tcp://127.0.0.1:1"));
    assert_true(took >= 250 && took < 2000);

    rc = kabar_client_connect(&c, "nonsense://x", &o, &err);
    assert_int_equal(rc, KABAR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "nonsense://x"));
}

static void publish_n(kabar_client *c, results *res, uint64_t from, uint64_t n)
{
    kabar_error err;
    for (uint64_t i = from; i < from + n; i++) {
        char ev[32];
        int len = snprintf(ev, sizeof ev, "%s-%llu", i % 97 == 5 ? "bad" : "event",
                           (unsigned long long)i);
        assert_int_equal(kabar_client_publish(c, ev, (size_t)len, (void *)(uintptr_t)i, &err), 0);
    }
}

static void test_publish_window_order(void **state)
{
    fake *f = *state;
    kabar_client *c = NULL;
    kabar_error err;
    results *res = calloc(1, sizeof *res);
    res->in_order = true;
    kabar_client_opts o = {.timeout_ms = 5000, .window = 64};
    assert_int_equal(kabar_client_connect(&c, f->endpoint, &o, &err), 0);
    kabar_client_on_result(c, on_result, res);
    publish_n(c, res, 0, 5000);
    assert_int_equal(kabar_client_flush(c, &err), 0);

    assert_int_equal(res->n, 5000);
    assert_true(res->in_order);
    assert_true(f->max_in_flight <= 64);
    uint64_t rejected = 0;
    for (uint64_t i = 0; i < 5000; i++) {
        char want[32];
        if (i % 97 == 5) {
            assert_int_equal(res->codes[i], KABAR_BAD_VALUE);
            assert_int_equal(res->seqs[i], 0);
            rejected++;
            continue;
        }
        /* The result names the seq under which the broker stored this very event. */
        int len = snprintf(want, sizeof want, "event-%llu", (unsigned long long)i);
        assert_int_equal(res->codes[i], KABAR_OK);
        assert_true(res->seqs[i] >= 1 && res->seqs[i] <= f->nstored);
        assert_int_equal(f->stored_len[res->seqs[i] - 1], (size_t)len);
        assert_memory_equal(f->stored[res->seqs[i] - 1], want, (size_t)len);
    }
    assert_string_equal(res->last_message, "body.present: more than total");
    assert_int_equal(f->nstored, 5000 - rejected);
    assert_int_equal(f->signed_pubs, 0); /* no key: nothing signed */
    assert_true(f->unsigned_pubs > 0);
    assert_false(res->has_leaf[0]); /* this broker sends no leaf hash */

    kabar_head h;
    assert_int_equal(kabar_client_head(c, &h, &err), 0);
    assert_int_equal(h.seq, 42);
    assert_int_equal(h.count, 41);
    assert_true(h.last_received_at == INT64_MIN);
    kabar_client_destroy(&c);
    assert_null(c);
    free(res);
}

static void test_publish_across_restart(void **state)
{
    fake *f = *state;
    kabar_client *c = NULL;
    kabar_error err;
    results *res = calloc(1, sizeof *res);
    res->in_order = true;
    kabar_client_opts o = {.timeout_ms = 5000, .window = 2048};
    assert_int_equal(kabar_client_connect(&c, f->endpoint, &o, &err), 0);
    kabar_client_on_result(c, on_result, res);
    publish_n(c, res, 0, 3000);
    f->restart = 1; /* loses the held batch; the client must send it again */
    publish_n(c, res, 3000, 3000);
    assert_int_equal(kabar_client_flush(c, &err), 0);

    assert_int_equal(res->n, 6000);
    assert_true(res->in_order);
    uint64_t rejected = 0;
    for (uint64_t i = 0; i < 6000; i++) {
        if (i % 97 == 5) {
            rejected++;
            continue;
        }
        char want[32];
        int len = snprintf(want, sizeof want, "event-%llu", (unsigned long long)i);
        assert_int_equal(res->codes[i], KABAR_OK);
        assert_true(res->seqs[i] >= 1 && res->seqs[i] <= f->nstored);
        assert_memory_equal(f->stored[res->seqs[i] - 1], want, (size_t)len);
    }
    assert_int_equal(f->nstored, 6000 - rejected); /* each stored once */
    kabar_client_destroy(&c);
    free(res);
}

/*
 * The broker restarts while a batch is in flight, and the application goes
 * on publishing without waiting: ZeroMQ has reconnected by then, but the
 * client must not send the later events before it has resent the lost
 * batch, or the new broker stores them out of publishing order.
 */
static void test_publish_order_after_silent_reconnect(void **state)
{
    fake *f = *state;
    kabar_client *c = NULL;
    kabar_error err;
    results *res = calloc(1, sizeof *res);
    res->in_order = true;
    kabar_client_opts o = {.timeout_ms = 5000, .window = 2048};
    assert_int_equal(kabar_client_connect(&c, f->endpoint, &o, &err), 0);
    kabar_client_on_result(c, on_result, res);
    publish_n(c, res, 0, 1);
    assert_int_equal(kabar_client_flush(c, &err), 0);
    publish_n(c, res, 1, 1);   /* goes out at once (nothing in flight); the fake holds it */
    f->restart = 1;            /* ... and forgets it */
    usleep(1000000);           /* the DEALER reconnects meanwhile; the client is not asked */
    publish_n(c, res, 2, 600); /* enough for a batch to go out on its own */
    assert_int_equal(kabar_client_flush(c, &err), 0);
    assert_int_equal(res->n, 602);
    assert_true(res->in_order);
    for (uint64_t i = 0, k = 0; i < 602; i++) {
        if (i % 97 == 5)
            continue;
        char want[32];
        int len = snprintf(want, sizeof want, "event-%llu", (unsigned long long)i);
        assert_int_equal(res->seqs[i], k + 1);
        assert_int_equal(f->stored_len[k], (size_t)len);
        assert_memory_equal(f->stored[k], want, (size_t)len); /* stored in publishing order */
        k++;
    }
    assert_int_equal(f->nstored, 602 - 7); /* 5, 102, ..., 587 are "bad" */
    kabar_client_destroy(&c);
    free(res);
}

/*
 * An event larger than KABAR_MAX_EVENT_BYTES is refused by the client itself,
 * as a TOO_BIG result in publishing order: sent, it would cost the connection
 * (kabard's ZMQ_MAXMSGSIZE) and go again at every reconnection, so flush
 * never returned.
 */
static void test_publish_too_big(void **state)
{
    fake *f = *state;
    kabar_client *c = NULL;
    kabar_error err;
    results *res = calloc(1, sizeof *res);
    res->in_order = true;
    kabar_client_opts o = {.timeout_ms = 5000, .window = 8};
    assert_int_equal(kabar_client_connect(&c, f->endpoint, &o, &err), 0);
    kabar_client_on_result(c, on_result, res);
    size_t big = 5 * KABAR_MAX_EVENT_BYTES;
    char *ev = malloc(big);
    memset(ev, 'x', big);
    memcpy(ev, "event-0", 7);
    assert_int_equal(kabar_client_publish(c, ev, 7, (void *)(uintptr_t)0, &err), 0);
    assert_int_equal(kabar_client_publish(c, ev, big, (void *)(uintptr_t)1, &err), 0);
    memcpy(ev, "event-2", 7);
    assert_int_equal(kabar_client_publish(c, ev, 7, (void *)(uintptr_t)2, &err), 0);
    assert_int_equal(kabar_client_flush(c, &err), 0);
    assert_int_equal(res->n, 3);
    assert_true(res->in_order);
    assert_int_equal(res->codes[0], KABAR_OK);
    assert_int_equal(res->codes[1], KABAR_TOO_BIG);
    assert_int_equal(res->seqs[1], 0);
    assert_non_null(strstr(res->last_message, "larger than the limit"));
    assert_int_equal(res->codes[2], KABAR_OK);
    assert_int_equal(f->nstored, 2); /* the big one never went out */
    kabar_client_destroy(&c);
    free(ev);
    free(res);
}

/*
 * Subscribe with `credit` and read every record the fake serves: in order,
 * each with its own bytes, then KABAR_END (a stall fails the test).
 */
static void subscribe_read_all(fake *f, uint32_t credit)
{
    kabar_client *c = NULL;
    kabar_sub *s = NULL;
    kabar_error err;
    kabar_record rec;
    kabar_client_opts o = {.timeout_ms = 5000};
    kabar_sub_opts so = {.start = KABAR_START_FIRST, .until_head = true, .credit = credit};
    uint64_t total = f->sub_records ? f->sub_records : SUB_RECORDS;
    assert_int_equal(kabar_client_connect(&c, f->endpoint, &o, &err), 0);
    assert_int_equal(kabar_client_subscribe(c, &so, &s, &err), 0);
    uint64_t n = 0;
    int rc;
    while ((rc = kabar_sub_next(s, &rec, 2000, &err)) == 0) {
        char want[32];
        int len = snprintf(want, sizeof want, "record-%llu", (unsigned long long)n + 1);
        assert_int_equal(rec.seq, n + 1);
        assert_int_equal(rec.len, (size_t)len);
        assert_memory_equal(rec.bytes, want, (size_t)len);
        n++;
    }
    if (rc != KABAR_END)
        fail_msg("stalled after %llu of %llu records: %s", (unsigned long long)n,
                 (unsigned long long)total, err.message);
    assert_int_equal(n, total);
    assert_int_equal(kabar_sub_next(s, &rec, 0, &err), KABAR_END);
    kabar_sub_close(&s);
    assert_null(s);
    kabar_client_destroy(&c);
}

static void test_subscribe_credit_end(void **state)
{
    fake *f = *state;
    subscribe_read_all(f, 256);
    assert_true(f->credits_received >= SUB_RECORDS / 256); /* credit came back in chunks */
}

/*
 * A subscription opened with more credit than the protocol allows: the
 * broker holds at most KABAR_MAX_CREDIT outstanding, so a client that waited
 * to consume half of its nominal credit before granting more would stall
 * after KABAR_MAX_CREDIT records. It must get every record.
 */
static void test_subscribe_credit_above_max(void **state)
{
    fake *f = *state;
    f->sub_records = 2 * KABAR_MAX_CREDIT + 500;
    subscribe_read_all(f, 100000);
    assert_true(f->sub_requested <= KABAR_MAX_CREDIT); /* SUB asks for what it can get */
}

/* ------------------------------------------------------------------------ */
/* Secure mode: CURVE, signed batches, CALL                                  */

static void connect_secure(fake *f, kabar_client **c, const kkey *key, uint32_t window)
{
    kabar_error err;
    kabar_client_opts o = {
        .timeout_ms = 5000, .window = window, .key = key, .server_key = f->server.pk};
    int rc = kabar_client_connect(c, f->endpoint, &o, &err);
    if (rc != 0)
        fail_msg("connect: %s", err.message);
}

/*
 * Every PUB is signed by the client's key and verifies; the broker knows
 * the client by its key (User-Id); across a broker restart the lost batch
 * is sent again with the very signature it had; results carry the leaf hash.
 */
static void test_secure_publish_signed(void **state)
{
    fake *f = *state;
    kabar_client *c = NULL;
    kabar_error err;
    results *res = calloc(1, sizeof *res);
    res->in_order = true;
    connect_secure(f, &c, &client_key, 512);
    kabar_client_on_result(c, on_result, res);
    publish_n(c, res, 0, 3000);
    assert_int_equal(kabar_client_flush(c, &err), 0);
    publish_n(c, res, 3000, 1); /* goes out alone; the fake holds it... */
    for (int i = 0; i < 1000 && !f->holding; i++)
        usleep(1000);
    f->restart = 1; /* ...and forgets it */
    for (int i = 0; i < 2000 && f->restart; i++)
        usleep(1000);
    publish_n(c, res, 3001, 2999);
    assert_int_equal(kabar_client_flush(c, &err), 0);

    assert_int_equal(res->n, 6000);
    assert_true(res->in_order);
    assert_true(f->signed_pubs > 0);
    assert_int_equal(f->unsigned_pubs, 0);
    assert_int_equal(f->bad_sigs, 0);
    assert_true(f->rearrivals > 0);      /* the held batch was lost and sent again... */
    assert_int_equal(f->sig_changed, 0); /* ...as it was */
    char id[KKEY_ID_TEXT], want[64];
    kkey_id_text(client_key.pk, id);
    snprintf(want, sizeof want, "dinkes/%s", id);
    assert_string_equal(f->user_id, want);
    for (uint64_t i = 0; i < 6000; i++) {
        if (i % 97 == 5) {
            assert_int_equal(res->codes[i], KABAR_BAD_VALUE);
            assert_false(res->has_leaf[i]);
            continue;
        }
        char ev[32];
        uint8_t leaf[32];
        int len = snprintf(ev, sizeof ev, "event-%llu", (unsigned long long)i);
        merkle_leaf_hash(ev, (size_t)len, leaf);
        assert_int_equal(res->codes[i], KABAR_OK);
        assert_true(res->has_leaf[i]);
        assert_memory_equal(res->leaf[i], leaf, 32);
        assert_memory_equal(f->stored_signer[res->seqs[i] - 1], client_key.pk, 32);
    }
    kabar_client_destroy(&c);
    free(res);
}

/* set_signer: each event is signed by the signer current when it was published. */
static void test_secure_set_signer(void **state)
{
    fake *f = *state;
    kabar_client *c = NULL;
    kabar_error err;
    results *res = calloc(1, sizeof *res);
    res->in_order = true;
    connect_secure(f, &c, &client_key, 256);
    kabar_client_on_result(c, on_result, res);
    publish_n(c, res, 0, 150);
    assert_int_equal(kabar_client_set_signer(c, &other_key, &err), 0);
    publish_n(c, res, 150, 1); /* a lone event is signed too */
    publish_n(c, res, 151, 149);
    assert_int_equal(kabar_client_set_signer(c, NULL, &err), 0); /* back to the client's own */
    publish_n(c, res, 300, 100);
    assert_int_equal(kabar_client_flush(c, &err), 0);
    assert_int_equal(res->n, 400);
    assert_true(res->in_order);
    assert_int_equal(f->bad_sigs, 0);
    assert_int_equal(f->unsigned_pubs, 0);
    for (uint64_t i = 0; i < 400; i++) {
        if (i % 97 == 5)
            continue;
        const kkey *want = i >= 150 && i < 300 ? &other_key : &client_key;
        assert_int_equal(res->codes[i], KABAR_OK);
        if (memcmp(f->stored_signer[res->seqs[i] - 1], want->pk, 32) != 0)
            fail_msg("event %llu was not signed by the signer set when it was published",
                     (unsigned long long)i);
    }
    kabar_client_destroy(&c);
    free(res);
}

static void expect_no_entry(fake *f, const kkey *key, const uint8_t *server_key)
{
    kabar_client *c = NULL;
    kabar_error err;
    kabar_client_opts o = {.timeout_ms = 600, .key = key, .server_key = server_key};
    int64_t t0 = mono_ms();
    int rc = kabar_client_connect(&c, f->endpoint, &o, &err);
    int64_t took = mono_ms() - t0;
    assert_int_equal(rc, KABAR_CONNECT);
    assert_null(c);
    assert_non_null(strstr(err.message, f->endpoint));
    assert_non_null(strstr(err.message, "--key and --server-key"));
    assert_true(took >= 550 && took < 3000);
}

/* A key the broker does not admit, the wrong server key, or no key at all: no entry. */
static void test_secure_refused(void **state)
{
    fake *f = *state;
    kabar_client *c = NULL;
    kabar_error err;
    expect_no_entry(f, &other_key, f->server.pk);  /* not registered */
    expect_no_entry(f, &client_key, other_key.pk); /* not the broker's key */
    expect_no_entry(f, NULL, NULL);                /* plaintext to a CURVE broker */
    kabar_client_opts o = {.timeout_ms = 600, .key = &client_key};
    assert_int_equal(kabar_client_connect(&c, f->endpoint, &o, &err), KABAR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "--server-key"));
    uint8_t bad[32];
    memset(bad, 0xff, sizeof bad); /* not a point of the curve */
    o.server_key = bad;
    assert_int_equal(kabar_client_connect(&c, f->endpoint, &o, &err), KABAR_INVALID_ARGUMENT);
    assert_null(c);
    assert_int_equal(f->nstored, 0);
    /* The right keys still get in. */
    connect_secure(f, &c, &client_key, 16);
    kabar_client_destroy(&c);
}

static void test_call(void **state)
{
    fake *f = *state;
    kabar_client *c = NULL;
    kabar_error err;
    kabar_buf out = {0}, params = {0};
    msgpack_packer pk;
    connect_secure(f, &c, &client_key, 16);

    /* No params: {} goes out; the RESULT map comes back whole. */
    assert_int_equal(kabar_client_call(c, "whoami", NULL, 0, &out, &err), 0);
    kabar_buf json = {0};
    assert_int_equal(wire_msgpack_to_json(&json, out.data, out.len, &err), 0);
    kabar_buf_append(&json, "", 1);
    assert_string_equal(json.data, "{\"principal\":\"dinkes\",\"params\":{}}");

    /* Params go out as given; the output is appended to. */
    wire_packer_init(&pk, &params);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_str_with_body(&pk, "bpk", 3);
    size_t before = out.len;
    assert_int_equal(kabar_client_call(c, "whoami", params.data, params.len, &out, &err), 0);
    json.len = 0;
    assert_int_equal(wire_msgpack_to_json(&json, out.data + before, out.len - before, &err), 0);
    kabar_buf_append(&json, "", 1);
    assert_string_equal(json.data, "{\"principal\":\"dinkes\",\"params\":{\"id\":\"bpk\"}}");

    /* Refusals: the rule's code and the broker's text, as is. */
    out.len = 0;
    assert_int_equal(kabar_client_call(c, "agency.add", params.data, params.len, &out, &err),
                     KABAR_ADMIN_ONLY);
    assert_string_equal(err.message, "only an admin may change the registry (dinkes is an agent)");
    assert_int_equal(out.len, 0);
    assert_int_equal(kabar_client_call(c, "nope", NULL, 0, &out, &err), KABAR_UNKNOWN_METHOD);
    /* Bad params never leave the client. */
    assert_int_equal(kabar_client_call(c, "whoami", "\x91\x01", 2, &out, &err),
                     KABAR_INVALID_ARGUMENT);
    assert_int_equal(kabar_client_call(c, "", NULL, 0, &out, &err), KABAR_INVALID_ARGUMENT);
    /* The session is still fine. */
    assert_int_equal(kabar_client_call(c, "whoami", NULL, 0, &out, &err), 0);
    kabar_buf_free(&out);
    kabar_buf_free(&params);
    kabar_buf_free(&json);
    kabar_client_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_without_broker),
        cmocka_unit_test_setup_teardown(test_publish_window_order, fake_start, fake_stop),
        cmocka_unit_test_setup_teardown(test_publish_across_restart, fake_start, fake_stop),
        cmocka_unit_test_setup_teardown(test_publish_order_after_silent_reconnect, fake_start,
                                        fake_stop),
        cmocka_unit_test_setup_teardown(test_publish_too_big, fake_start, fake_stop),
        cmocka_unit_test_setup_teardown(test_subscribe_credit_end, fake_start, fake_stop),
        cmocka_unit_test_setup_teardown(test_subscribe_credit_above_max, fake_start, fake_stop),
        cmocka_unit_test_setup_teardown(test_secure_publish_signed, fake_start_secure, fake_stop),
        cmocka_unit_test_setup_teardown(test_secure_set_signer, fake_start_secure, fake_stop),
        cmocka_unit_test_setup_teardown(test_secure_refused, fake_start_secure, fake_stop),
        cmocka_unit_test_setup_teardown(test_call, fake_start_secure, fake_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
