/*
 * agent_client.c - the client of kabar-agent's intake socket (kabar_agent.h).
 *
 * A DEALER connected to ipc://DIR/agent.sock. Each request is two frames,
 * [tag, event], the tag an 8-byte counter that the agent echoes: a reply
 * that arrives after its request timed out carries an old tag and is
 * skipped, so one late answer can never be taken for the next one's.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <zmq.h>

#include "kabar_agent.h"

struct kabar_agent {
    void *ctx;
    void *sock;
    int timeout_ms;
    uint64_t tag;
    char endpoint[4200];
};

int kabar_agent_connect(kabar_agent **out, const char *dir, int timeout_ms, kabar_error *err)
{
    if (out == NULL || dir == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "kabar_agent_connect: NULL argument");
    char path[4096];
    snprintf(path, sizeof path, "%s/agent.sock", dir);
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISSOCK(st.st_mode))
        return kabar_error_set(err, KABAR_CONNECT,
                               "no agent socket at %s (is kabar-agent running with --data %s?)",
                               path, dir);
    kabar_agent *a = calloc(1, sizeof *a);
    if (a == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    a->timeout_ms = timeout_ms > 0 ? timeout_ms : 30000;
    snprintf(a->endpoint, sizeof a->endpoint, "ipc://%s", path);
    a->ctx = zmq_ctx_new();
    a->sock = a->ctx ? zmq_socket(a->ctx, ZMQ_DEALER) : NULL;
    int linger = 0;
    if (a->sock != NULL)
        zmq_setsockopt(a->sock, ZMQ_LINGER, &linger, sizeof linger);
    if (a->sock == NULL || zmq_connect(a->sock, a->endpoint) != 0) {
        int code = kabar_error_set(err, KABAR_CONNECT, "cannot connect to %s: %s", a->endpoint,
                                   zmq_strerror(zmq_errno()));
        kabar_agent_close(&a);
        return code;
    }
    *out = a;
    return 0;
}

void kabar_agent_close(kabar_agent **pa)
{
    if (pa == NULL || *pa == NULL)
        return;
    if ((*pa)->sock)
        zmq_close((*pa)->sock);
    if ((*pa)->ctx)
        zmq_ctx_term((*pa)->ctx);
    free(*pa);
    *pa = NULL;
}

/* A JSON event without "id" gets one; *json_out is malloc'd when changed. */
static int ensure_id(const char *json, size_t len, char **json_out, char id[KABAR_MAX_ID_LEN + 1],
                     kabar_error *err)
{
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return kabar_error_set(err, KABAR_BAD_JSON, "line %d column %d: %s", jerr.line, jerr.column,
                               jerr.text);
    if (!json_is_object(root)) {
        json_decref(root);
        return kabar_error_set(err, KABAR_BAD_JSON, "an event is a JSON object");
    }
    json_t *jid = json_object_get(root, "id");
    int rc = 0;
    if (json_is_string(jid)) {
        snprintf(id, KABAR_MAX_ID_LEN + 1, "%s", json_string_value(jid));
    } else if (jid == NULL || json_is_null(jid)) {
        char fresh[37];
        kabar_id_new(fresh);
        snprintf(id, KABAR_MAX_ID_LEN + 1, "%s", fresh);
        json_object_set_new(root, "id", json_string(fresh));
        *json_out = json_dumps(root, JSON_COMPACT);
        if (*json_out == NULL)
            rc = kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    } /* an id of the wrong type: the agent names the problem */
    json_decref(root);
    return rc;
}

static bool is_json(const void *event, size_t len)
{
    const char *p = event;
    for (size_t i = 0; i < len; i++) {
        if (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n')
            continue;
        return p[i] == '{';
    }
    return false;
}

/* Read the reply object into r or err. */
static int read_reply(const char *data, size_t len, kabar_agent_receipt *r, kabar_error *err)
{
    json_t *o = json_loadb(data, len, 0, NULL);
    if (!json_is_object(o)) {
        json_decref(o);
        return kabar_error_set(err, KABAR_PROTOCOL, "the agent sent an unreadable reply");
    }
    int rc;
    if (json_is_true(json_object_get(o, "ok"))) {
        const char *id = json_string_value(json_object_get(o, "id"));
        snprintf(r->id, sizeof r->id, "%s", id ? id : "");
        r->pos = (uint64_t)json_integer_value(json_object_get(o, "pos"));
        rc = 0;
    } else {
        const char *name = json_string_value(json_object_get(o, "error"));
        const char *msg = json_string_value(json_object_get(o, "message"));
        int code = name ? kabar_errcode(name) : -1;
        rc = kabar_error_set(err, code > 0 ? code : KABAR_PROTOCOL, "%s", msg ? msg : "rejected");
    }
    json_decref(o);
    return rc;
}

int kabar_agent_submit(kabar_agent *a, const void *event, size_t len, kabar_agent_receipt *r,
                       kabar_error *err)
{
    if (a == NULL || event == NULL || r == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "kabar_agent_submit: NULL argument");
    memset(r, 0, sizeof *r);
    char *rewritten = NULL;
    if (is_json(event, len)) {
        int rc = ensure_id(event, len, &rewritten, r->id, err);
        if (rc != 0)
            return rc;
        if (rewritten != NULL) {
            event = rewritten;
            len = strlen(rewritten);
        }
    }
    uint8_t tag[8];
    uint64_t t = ++a->tag;
    memcpy(tag, &t, 8);
    int rc = 0;
    if (zmq_send(a->sock, tag, 8, ZMQ_SNDMORE) != 8 || zmq_send(a->sock, event, len, 0) < 0)
        rc = kabar_error_set(err, KABAR_CONNECT, "cannot send to the agent at %s: %s", a->endpoint,
                             zmq_strerror(zmq_errno()));
    free(rewritten);
    if (rc != 0)
        return rc;
    zmq_pollitem_t it = {a->sock, 0, ZMQ_POLLIN, 0};
    int64_t deadline = kabar_now() / 1000000 + a->timeout_ms;
    for (;;) {
        int64_t left = deadline - kabar_now() / 1000000;
        if (left <= 0 || zmq_poll(&it, 1, (long)left) == 0)
            return kabar_error_set(err, KABAR_TIMEOUT,
                                   "the agent at %s did not answer within %d ms (is it "
                                   "running?); the event may be stored: submit it again with "
                                   "the same id to be sure",
                                   a->endpoint, a->timeout_ms);
        zmq_msg_t f[2];
        zmq_msg_init(&f[0]);
        zmq_msg_init(&f[1]);
        int n = 0;
        bool more = true;
        while (more) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, a->sock, 0) < 0) {
                zmq_msg_close(&m);
                if (zmq_errno() == EINTR && n == 0)
                    break;
                return kabar_error_set(err, KABAR_IO, "receiving from the agent: %s",
                                       zmq_strerror(zmq_errno()));
            }
            more = zmq_msg_more(&m);
            if (n < 2) {
                zmq_msg_close(&f[n]);
                f[n++] = m;
            } else {
                zmq_msg_close(&m);
            }
        }
        bool mine = n == 2 && zmq_msg_size(&f[0]) == 8 && memcmp(zmq_msg_data(&f[0]), tag, 8) == 0;
        if (mine)
            rc = read_reply(zmq_msg_data(&f[1]), zmq_msg_size(&f[1]), r, err);
        zmq_msg_close(&f[0]);
        zmq_msg_close(&f[1]);
        if (mine)
            return rc;
    }
}
