/*
 * server_setup.c - making and unmaking kabard's server: the ROUTER socket
 * (CURVE with the broker's key, or plaintext with --insecure), the ZAP
 * handler's socket, the turn's arrays, and the getters of server.h. The
 * loop itself is in server.c.
 */
#include "server_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FRAME    (4 * KABAR_MAX_EVENT_BYTES) /* ZMQ_MAXMSGSIZE: larger drops the peer */
#define SNDHWM       (2 * SUBS_MAX_PER_PEER * SUBS_MAX_CREDIT)
#define RCVHWM       10000
#define LINGER_MS    1000
#define ZAP_ENDPOINT "inproc://zeromq.zap.01"

static int alloc_turn(server *sv)
{
    sv->frames = malloc(TURN_SLOTS * sizeof *sv->frames);
    sv->evs = malloc(TURN_SLOTS * sizeof *sv->evs);
    sv->entries = malloc(TURN_SLOTS * sizeof *sv->entries);
    sv->slots = malloc(TURN_SLOTS * sizeof *sv->slots);
    sv->leaves = malloc(TURN_SLOTS * sizeof *sv->leaves);
    sv->errs = malloc(TURN_SLOTS * sizeof *sv->errs);
    sv->pubs = malloc(TURN_SLOTS * sizeof *sv->pubs);
    sv->fresh = malloc(TURN_SLOTS * sizeof *sv->fresh);
    sv->ups = malloc(TURN_UPDATES * sizeof *sv->ups);
    return sv->frames && sv->evs && sv->entries && sv->slots && sv->leaves && sv->errs &&
                   sv->pubs && sv->fresh && sv->ups
               ? 0
               : KABAR_NO_MEMORY;
}

static int zerr(kabar_error *err, const char *what)
{
    return kabar_error_set(err, KABAR_IO, "cannot %s: %s", what, zmq_strerror(zmq_errno()));
}

static int set_opt(server *sv, int opt, int val, const char *name, kabar_error *err)
{
    if (zmq_setsockopt(sv->sock, opt, &val, sizeof val) == 0)
        return 0;
    return kabar_error_set(err, KABAR_IO, "cannot set %s on the socket: %s", name,
                           zmq_strerror(zmq_errno()));
}

/* CURVE server with the broker's key, ZAP domain "kabar", the handler bound first. */
static int set_curve(server *sv, const kkey *key, kabar_error *err)
{
    sv->zap = zmq_socket(sv->ctx, ZMQ_REP);
    if (sv->zap == NULL)
        return zerr(err, "create the ZAP socket");
    int linger = 0;
    zmq_setsockopt(sv->zap, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(sv->zap, ZAP_ENDPOINT) != 0)
        return zerr(err, "bind the ZAP handler at " ZAP_ENDPOINT);
    int one = 1;
    if (zmq_setsockopt(sv->sock, ZMQ_CURVE_SERVER, &one, sizeof one) != 0 ||
        zmq_setsockopt(sv->sock, ZMQ_CURVE_SECRETKEY, key->curve_sk, 32) != 0 ||
        zmq_setsockopt(sv->sock, ZMQ_ZAP_DOMAIN, "kabar", 5) != 0)
        return zerr(err, "make the socket a CURVE server (is libzmq built with libsodium?)");
    return 0;
}

static int open_socket(server *sv, const server_opts *o, kabar_error *err)
{
    int rc;
    sv->ctx = zmq_ctx_new();
    if (sv->ctx == NULL)
        return zerr(err, "create a ZeroMQ context");
    sv->sock = zmq_socket(sv->ctx, ZMQ_ROUTER);
    if (sv->sock == NULL)
        return zerr(err, "create the ROUTER socket");
    int64_t maxmsg = MAX_FRAME;
    if ((rc = set_opt(sv, ZMQ_SNDHWM, SNDHWM, "ZMQ_SNDHWM", err)) != 0 ||
        (rc = set_opt(sv, ZMQ_RCVHWM, RCVHWM, "ZMQ_RCVHWM", err)) != 0 ||
        (rc = set_opt(sv, ZMQ_LINGER, LINGER_MS, "ZMQ_LINGER", err)) != 0 ||
        (rc = set_opt(sv, ZMQ_ROUTER_MANDATORY, 0, "ZMQ_ROUTER_MANDATORY", err)) != 0)
        return rc;
    if (zmq_setsockopt(sv->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) != 0)
        return zerr(err, "set ZMQ_MAXMSGSIZE");
    if (sv->secure && (rc = set_curve(sv, o->key, err)) != 0)
        return rc;
    if (zmq_bind(sv->sock, o->listen) != 0)
        return kabar_error_set(err, KABAR_IO, "cannot listen on %s: %s (check --listen)", o->listen,
                               zmq_strerror(zmq_errno()));
    size_t len = sizeof sv->endpoint;
    if (zmq_getsockopt(sv->sock, ZMQ_LAST_ENDPOINT, sv->endpoint, &len) != 0)
        snprintf(sv->endpoint, sizeof sv->endpoint, "%s", o->listen);
    return 0;
}

static int key_times(void *arg, const store_key *k)
{
    int64_t *t = arg;
    if (k->valid_from > *t)
        *t = k->valid_from;
    if (k->revoked_at != INT64_MAX && k->revoked_at > *t)
        *t = k->revoked_at;
    return 0;
}

/*
 * The clock floor across a restart (server.c, "Registry changes"): never
 * before the last received_at or any registry change, even if the wall
 * clock is now behind them, so a key revoked at T is not admitted again at
 * a clock before T, and no event is stamped before a key that signed it.
 */
static int clock_floor(server *sv, kabar_error *err)
{
    int64_t t = 0;
    store_record rec;
    uint64_t head = store_reader_head(sv->rd);
    if (head > 0 && store_get(sv->rd, head, &rec, err) == 0)
        t = rec.received_at;
    int rc = store_key_each(sv->rd, key_times, &t, err);
    sv->clock_min = t;
    return rc;
}

int server_new(server **out, const server_opts *opts, kabar_error *err)
{
    server *sv = calloc(1, sizeof *sv);
    if (sv == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "cannot allocate the server");
    int rc;
    sv->st = opts->store;
    sv->schema = opts->schema;
    sv->secure = !opts->insecure;
    sv->data_dir = opts->data_dir ? opts->data_dir : "";
    sv->started_ms = server_mono_ms();
    sv->next_timer_ms = sv->started_ms + TIMER_MS;
    if (alloc_turn(sv) != 0) {
        rc = kabar_error_set(err, KABAR_NO_MEMORY, "cannot allocate the server's turn buffers");
        goto fail;
    }
    if ((rc = subs_new(&sv->subs, err)) != 0 ||
        (rc = store_reader_open(sv->st, &sv->rd, err)) != 0 || (rc = auth_new(&sv->au, err)) != 0 ||
        (rc = auth_load(sv->au, sv->rd, err)) != 0 || (rc = clock_floor(sv, err)) != 0 ||
        (rc = ckpt_new(&sv->ck, opts->key, store_origin(sv->st), opts->checkpoint_interval_ms,
                       opts->checkpoint_events, sv->rd, sv->started_ms, err)) != 0 ||
        (rc = open_socket(sv, opts, err)) != 0)
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

size_t server_valid_keys(const server *sv)
{
    return auth_count_valid(sv->au, kabar_now());
}

const checkpoint_verifier *server_checkpoint_verifier(const server *sv)
{
    return ckpt_verifier(sv->ck);
}

void server_destroy(server **svp)
{
    server *sv = svp ? *svp : NULL;
    if (sv == NULL)
        return;
    if (sv->sock != NULL)
        zmq_close(sv->sock); /* ZMQ_LINGER gives queued replies their second */
    if (sv->zap != NULL)
        zmq_close(sv->zap);
    if (sv->ctx != NULL)
        zmq_ctx_term(sv->ctx);
    if (sv->deferred)
        zmq_msg_close(&sv->deferred_hdr);
    ckpt_destroy(&sv->ck);
    auth_destroy(&sv->au);
    store_reader_close(&sv->rd);
    subs_destroy(&sv->subs);
    free(sv->frames);
    free(sv->evs);
    free(sv->entries);
    free(sv->slots);
    free(sv->leaves);
    free(sv->errs);
    free(sv->pubs);
    free(sv->fresh);
    free(sv->ups);
    kabar_buf_free(&sv->filters);
    kabar_buf_free(&sv->out);
    free(sv);
    *svp = NULL;
}
