/*
 * intake.c - the agent's local socket (protocol in intake.h).
 *
 * Design notes. One turn reads every request that is ready (up to
 * INTAKE_MAX_TURN), so that a burst of concurrent submitters costs one
 * fsync, not one each: invalid requests are answered at once, valid ones
 * are kept with their envelope frames until the outbox transaction has
 * committed, then answered in arrival order. A request is never answered
 * ok before its event is on disk.
 */
#include "intake.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "klog.h"

#define MAX_FRAMES 8 /* envelope frames echoed + the body */

typedef struct request {
    zmq_msg_t frames[MAX_FRAMES];
    int nframes; /* envelope = frames[0 .. nframes-2], body = last */
    uint8_t *event;
    size_t len;
    char id[KABAR_MAX_ID_LEN + 1];
} request;

struct intake {
    void *ctx;
    void *sock;
    char path[4096];
    intake_opts o;
    request *reqs; /* INTAKE_MAX_TURN */
    kabar_buf reply;
};

int intake_validate(const kabar_schema *schema, const char *agency, const void *req, size_t len,
                    uint8_t **out, size_t *outlen, char id_out[KABAR_MAX_ID_LEN + 1],
                    kabar_error *err)
{
    const char *p = req;
    size_t i = 0;
    while (i < len && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
        i++;
    if (len == 0)
        return kabar_error_set(err, KABAR_MALFORMED,
                               "empty request: send one event in JSON "
                               "or canonical msgpack");
    uint8_t *ev = NULL;
    size_t evlen = 0;
    int rc;
    if (i < len && p[i] == '{') {
        rc = kabar_event_from_json(schema, p, len, agency, &ev, &evlen, err);
        if (rc != 0)
            return rc;
    } else {
        if (len > KABAR_MAX_EVENT_BYTES)
            return kabar_error_set(err, KABAR_TOO_BIG, "event of %zu bytes is over the limit of %d",
                                   len, KABAR_MAX_EVENT_BYTES);
        kabar_event tmp;
        rc = kabar_event_decode(schema, req, len, &tmp, err);
        if (rc != 0)
            return rc;
        ev = malloc(len);
        if (ev == NULL)
            return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
        memcpy(ev, req, len);
        evlen = len;
    }
    kabar_event e;
    rc = kabar_event_decode(NULL, ev, evlen, &e, err);
    if (rc == 0 && (e.source.len != strlen(agency) || memcmp(e.source.ptr, agency, e.source.len)))
        rc = kabar_error_set(err, KABAR_BAD_VALUE,
                             "source: \"%.*s\" is not this agent's agency \"%s\" (an agent "
                             "publishes as its own agency only; omit source or use \"%s\")",
                             (int)e.source.len, e.source.ptr, agency, agency);
    if (rc == 0 && e.id.len > KABAR_MAX_ID_LEN)
        rc = kabar_error_set(err, KABAR_LIMIT, "id: longer than %d bytes", KABAR_MAX_ID_LEN);
    if (rc != 0) {
        free(ev);
        return rc;
    }
    memcpy(id_out, e.id.ptr, e.id.len);
    id_out[e.id.len] = '\0';
    *out = ev;
    *outlen = evlen;
    return 0;
}

int intake_reply(kabar_buf *out, const kabar_error *e, const char *id, uint64_t pos)
{
    json_t *o = json_object();
    if (o == NULL)
        return KABAR_NO_MEMORY;
    if (e == NULL || e->code == KABAR_OK) {
        json_object_set_new(o, "ok", json_true());
        json_object_set_new(o, "id", json_string(id));
        json_object_set_new(o, "pos", json_integer((json_int_t)pos));
    } else {
        json_object_set_new(o, "ok", json_false());
        json_object_set_new(o, "error", json_string(kabar_errname(e->code)));
        /* The codec's messages may quote bytes that are not UTF-8. */
        json_t *m = json_string(e->message);
        json_object_set_new(o, "message", m ? m : json_string(kabar_strerror(e->code)));
    }
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (s == NULL)
        return KABAR_NO_MEMORY;
    int rc = kabar_buf_append(out, s, strlen(s));
    free(s);
    return rc;
}

int intake_open(intake **out, const intake_opts *o, kabar_error *err)
{
    intake *in = calloc(1, sizeof *in);
    if (in != NULL)
        in->reqs = calloc(INTAKE_MAX_TURN, sizeof *in->reqs);
    if (in == NULL || in->reqs == NULL) {
        free(in);
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    }
    in->o = *o;
    int n = snprintf(in->path, sizeof in->path, "%s/agent.sock", o->dir);
    if (n >= 100) {
        free(in->reqs);
        free(in);
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "socket path %s/agent.sock is too long for a unix socket (at most "
                               "99 bytes): use a shorter --data",
                               o->dir);
    }
    unlink(in->path); /* stale from a crash; the data directory lock is ours */
    char ep[4200];
    snprintf(ep, sizeof ep, "ipc://%s", in->path);
    in->ctx = zmq_ctx_new();
    in->sock = in->ctx ? zmq_socket(in->ctx, ZMQ_ROUTER) : NULL;
    int linger = 1000, hwm = 100000;
    /* A JSON event may be larger than its msgpack form, but not by this much. */
    int64_t maxmsg = INTAKE_MAX_REQUEST;
    if (in->sock != NULL) {
        zmq_setsockopt(in->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
        zmq_setsockopt(in->sock, ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt(in->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
        zmq_setsockopt(in->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    }
    if (in->sock == NULL || zmq_bind(in->sock, ep) != 0) {
        int code = kabar_error_set(err, KABAR_IO, "cannot listen on %s: %s", ep,
                                   zmq_strerror(zmq_errno()));
        in->reqs = (free(in->reqs), NULL);
        if (in->sock)
            zmq_close(in->sock);
        if (in->ctx)
            zmq_ctx_term(in->ctx);
        free(in);
        return code;
    }
    *out = in;
    return 0;
}

void intake_close(intake **pin)
{
    if (pin == NULL || *pin == NULL)
        return;
    intake *in = *pin;
    zmq_close(in->sock);
    zmq_ctx_term(in->ctx);
    unlink(in->path);
    kabar_buf_free(&in->reply);
    free(in->reqs);
    free(in);
    *pin = NULL;
}

static void request_free(request *r)
{
    for (int i = 0; i < r->nframes; i++)
        zmq_msg_close(&r->frames[i]);
    r->nframes = 0;
    free(r->event);
    r->event = NULL;
}

/* Send the envelope of r and then `body`; a peer that left is not an error. */
static void send_reply(intake *in, request *r, const kabar_buf *body)
{
    for (int i = 0; i < r->nframes - 1; i++) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        zmq_msg_copy(&m, &r->frames[i]);
        if (zmq_msg_send(&m, in->sock, ZMQ_SNDMORE) < 0) {
            zmq_msg_close(&m);
            return;
        }
    }
    zmq_send(in->sock, body->data, body->len, 0);
}

static void answer(intake *in, request *r, const kabar_error *e, uint64_t pos)
{
    in->reply.len = 0;
    if (intake_reply(&in->reply, e, r->id, pos) == 0)
        send_reply(in, r, &in->reply);
}

/*
 * Read one whole message into r. 1: read; 0: nothing ready; <0: socket
 * error. A message with too many frames keeps its first MAX_FRAMES - 1
 * and its last; a message of one frame has no routing id and is dropped.
 */
static int read_request(intake *in, request *r)
{
    int more = 1;
    r->nframes = 0;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, in->sock, r->nframes == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            int e = zmq_errno();
            zmq_msg_close(&m);
            return (e == EAGAIN || e == EINTR) && r->nframes == 0 ? 0 : -1;
        }
        more = zmq_msg_more(&m);
        if (r->nframes < MAX_FRAMES - 1 || !more) {
            r->frames[r->nframes++] = m;
        } else {
            zmq_msg_close(&m);
        }
    }
    return 1;
}

/* Validate r: keep it (1) for the batch, or answer it now (0). */
static int take(intake *in, request *r)
{
    kabar_error e = {0};
    r->id[0] = '\0';
    if (r->nframes < 2) {
        request_free(r);
        return 0;
    }
    zmq_msg_t *body = &r->frames[r->nframes - 1];
    int rc = intake_validate(in->o.schema, in->o.agency, zmq_msg_data(body), zmq_msg_size(body),
                             &r->event, &r->len, r->id, &e);
    if (rc == 0)
        return 1;
    klog(KLOG_DEBUG, "KABAR-AGENT-INTAKE-REJECT", "%s: %s", kabar_errname(e.code), e.message);
    answer(in, r, &e, 0);
    request_free(r);
    return 0;
}

static void commit(intake *in, size_t n)
{
    const uint8_t *bytes[INTAKE_MAX_TURN];
    size_t lens[INTAKE_MAX_TURN];
    for (size_t i = 0; i < n; i++) {
        bytes[i] = in->reqs[i].event;
        lens[i] = in->reqs[i].len;
    }
    uint64_t first = 0;
    kabar_error e = {0};
    int rc = agentdb_outbox_append(in->o.db, bytes, lens, n, kabar_now(), &first, &e);
    if (rc != 0)
        klog(KLOG_ERROR, "KABAR-AGENT-OUTBOX-FAIL", "%zu events not accepted: %s", n, e.message);
    for (size_t i = 0; i < n; i++) {
        answer(in, &in->reqs[i], rc == 0 ? NULL : &e, first + i);
        request_free(&in->reqs[i]);
    }
    if (rc == 0 && in->o.on_stored != NULL)
        in->o.on_stored(in->o.arg);
}

int intake_turn(intake *in, int timeout_ms, kabar_error *err)
{
    zmq_pollitem_t it = {in->sock, 0, ZMQ_POLLIN, 0};
    int rc = zmq_poll(&it, 1, timeout_ms);
    if (rc < 0)
        return zmq_errno() == EINTR
                   ? 0
                   : kabar_error_set(err, KABAR_IO, "intake socket: %s", zmq_strerror(zmq_errno()));
    size_t n = 0;
    while (rc > 0 && n < INTAKE_MAX_TURN) {
        request *r = &in->reqs[n];
        int got = read_request(in, r);
        if (got < 0) {
            request_free(r);
            break;
        }
        if (got == 0)
            break;
        n += (size_t)take(in, r);
    }
    if (n > 0)
        commit(in, n);
    return 0;
}
