/*
 * wire.c - kabar's wire messages: header frames, ACK results, SUB options,
 * EVT records (proto/wire.h, proto/PROTOCOL.md).
 *
 * Encoding uses msgpack-c's packer, which writes integers in their smallest
 * width, so every frame we send is canonical. Decoding uses the strict mpr
 * reader in its lenient mode: a header from a client in another language
 * need not be canonical, but it must be well formed, and anything missing
 * or of the wrong type is a KABAR_PROTOCOL error that names the element.
 */
#include "wire.h"

#include <msgpack.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mpr.h"

static const char *const cmd_names[] = {
    [WIRE_UNKNOWN] = "?",     [WIRE_PUB] = "PUB",       [WIRE_SUB] = "SUB",
    [WIRE_CREDIT] = "CREDIT", [WIRE_CACK] = "CACK",     [WIRE_UNSUB] = "UNSUB",
    [WIRE_HEAD] = "HEAD",     [WIRE_STATUS] = "STATUS", [WIRE_PING] = "PING",
    [WIRE_ACK] = "ACK",       [WIRE_SUBOK] = "SUBOK",   [WIRE_EVT] = "EVT",
    [WIRE_END] = "END",       [WIRE_HEADOK] = "HEADOK", [WIRE_STATUSOK] = "STATUSOK",
    [WIRE_PONG] = "PONG",     [WIRE_ERR] = "ERR",       [WIRE_CALL] = "CALL",
    [WIRE_RESULT] = "RESULT",
};

#define NCMDS (sizeof(cmd_names) / sizeof(cmd_names[0]))

const char *wire_cmd_name(wire_cmd cmd)
{
    return (unsigned)cmd < NCMDS ? cmd_names[cmd] : "?";
}

static wire_cmd cmd_lookup(const char *s, uint32_t len)
{
    for (size_t i = 1; i < NCMDS; i++) {
        if (strlen(cmd_names[i]) == len && memcmp(cmd_names[i], s, len) == 0)
            return (wire_cmd)i;
    }
    return WIRE_UNKNOWN;
}

/* Number of integer arguments after the id, per command. */
static int cmd_nargs(wire_cmd cmd)
{
    switch (cmd) {
    case WIRE_CREDIT:
    case WIRE_CACK:
    case WIRE_EVT:
    case WIRE_END:
        return 1;
    case WIRE_SUBOK:
        return 2;
    default:
        return 0;
    }
}

/* ------------------------------------------------------------------------ */
/* Header                                                                   */

static int read_uint(mpr *r, uint64_t *out, const char *what, kabar_error *err)
{
    mpr_item it;
    *out = 0;
    int rc = mpr_next(r, &it, err);
    if (rc != 0)
        return rc == KABAR_NOT_CANONICAL ? KABAR_PROTOCOL : rc;
    if (it.kind != MPR_UINT)
        return kabar_error_set(err, KABAR_PROTOCOL, "header: %s must be an unsigned integer", what);
    *out = it.u;
    return 0;
}

int wire_header_decode(const void *frame, size_t len, wire_header *h, kabar_error *err)
{
    mpr r;
    mpr_item it;
    int rc;

    memset(h, 0, sizeof(*h));
    mpr_init(&r, frame, len);
    r.canonical = false;
    if (mpr_next(&r, &it, NULL) != 0 || it.kind != MPR_ARRAY)
        return kabar_error_set(err, KABAR_MALFORMED,
                               "header: the first frame must be a msgpack array "
                               "[version, command, id, ...]");
    if (it.count < 3)
        return kabar_error_set(err, KABAR_PROTOCOL,
                               "header: %u elements, need at least 3 [version, command, id]",
                               it.count);
    uint32_t left = it.count;
    uint64_t version = 0;
    if ((rc = read_uint(&r, &version, "element 0 (version)", err)) != 0)
        return rc;
    h->version = version > UINT32_MAX ? UINT32_MAX : (uint32_t)version;

    if (mpr_next(&r, &it, NULL) != 0 || it.kind != MPR_STR)
        return kabar_error_set(err, KABAR_PROTOCOL, "header: element 1 (command) must be a string");
    wire_cmd cmd = cmd_lookup(it.str, it.len);
    int cmdlen = it.len > 16 ? 16 : (int)it.len;
    const char *cmdstr = it.str;

    if ((rc = read_uint(&r, &h->id, "element 2 (id)", err)) != 0)
        return rc;
    left -= 3;
    if (h->version != KABAR_PROTOCOL_VERSION)
        return kabar_error_set(err, KABAR_BAD_VERSION,
                               "protocol version %u is not supported (this broker speaks %d)",
                               h->version, KABAR_PROTOCOL_VERSION);
    h->cmd = cmd;
    if (cmd == WIRE_UNKNOWN)
        return kabar_error_set(err, KABAR_UNKNOWN_COMMAND, "unknown command \"%.*s\"", cmdlen,
                               cmdstr);

    int nargs = cmd_nargs(cmd);
    if ((int)left < nargs)
        return kabar_error_set(err, KABAR_PROTOCOL, "%s needs %d more header element%s after id",
                               wire_cmd_name(cmd), nargs, nargs == 1 ? "" : "s");
    if (nargs >= 1 && (rc = read_uint(&r, &h->a, "element 3", err)) != 0)
        return rc;
    if (nargs >= 2 && (rc = read_uint(&r, &h->b, "element 4", err)) != 0)
        return rc;
    h->rest = r.p;
    h->rest_len = mpr_left(&r);
    h->nrest = left - (uint32_t)nargs;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Encoding                                                                 */

static int buf_write(void *data, const char *p, size_t n)
{
    return kabar_buf_append(data, p, n) == 0 ? 0 : -1;
}

void wire_packer_init(msgpack_packer *pk, kabar_buf *b)
{
    msgpack_packer_init(pk, b, buf_write);
}

static int pack_str(msgpack_packer *pk, const char *s, size_t n)
{
    if (msgpack_pack_str(pk, n) != 0)
        return -1;
    return msgpack_pack_str_body(pk, s, n);
}

static int pack_cstr(msgpack_packer *pk, const char *s)
{
    return pack_str(pk, s, strlen(s));
}

int wire_pack_time(msgpack_packer *pk, int64_t ns)
{
    msgpack_timestamp ts;
    int64_t nsec = ns % 1000000000;
    ts.tv_sec = ns / 1000000000;
    if (nsec < 0) {
        nsec += 1000000000;
        ts.tv_sec -= 1;
    }
    ts.tv_nsec = (uint32_t)nsec;
    return msgpack_pack_timestamp(pk, &ts);
}

/* [1, "CMD", id] with `extra` more elements to come. */
static int begin(kabar_buf *b, msgpack_packer *pk, wire_cmd cmd, uint64_t id, size_t extra)
{
    b->len = 0;
    wire_packer_init(pk, b);
    if (msgpack_pack_array(pk, 3 + extra) != 0 || msgpack_pack_uint64(pk, 1) != 0 ||
        pack_cstr(pk, wire_cmd_name(cmd)) != 0 || msgpack_pack_uint64(pk, id) != 0)
        return KABAR_NO_MEMORY;
    return 0;
}

static int done(int rc)
{
    return rc == 0 ? 0 : KABAR_NO_MEMORY;
}

int wire_enc_cmd(kabar_buf *b, wire_cmd cmd, uint64_t id)
{
    msgpack_packer pk;
    return begin(b, &pk, cmd, id, 0);
}

int wire_enc_cmd1(kabar_buf *b, wire_cmd cmd, uint64_t id, uint64_t a)
{
    msgpack_packer pk;
    if (begin(b, &pk, cmd, id, 1) != 0)
        return KABAR_NO_MEMORY;
    return done(msgpack_pack_uint64(&pk, a));
}

int wire_enc_subok(kabar_buf *b, uint64_t sub, uint64_t first, uint64_t head)
{
    msgpack_packer pk;
    if (begin(b, &pk, WIRE_SUBOK, sub, 2) != 0)
        return KABAR_NO_MEMORY;
    return done(msgpack_pack_uint64(&pk, first) | msgpack_pack_uint64(&pk, head));
}

int wire_enc_err(kabar_buf *b, uint64_t id, int code, const char *text)
{
    msgpack_packer pk;
    if (begin(b, &pk, WIRE_ERR, id, 2) != 0)
        return KABAR_NO_MEMORY;
    return done(pack_cstr(&pk, kabar_errname(code)) | pack_cstr(&pk, text ? text : ""));
}

int wire_enc_ack_begin(kabar_buf *b, uint64_t batch, uint32_t n)
{
    msgpack_packer pk;
    if (begin(b, &pk, WIRE_ACK, batch, 1) != 0)
        return KABAR_NO_MEMORY;
    return done(msgpack_pack_array(&pk, n));
}

int wire_enc_ack_ok(kabar_buf *b, uint64_t seq, bool duplicate, const uint8_t *leaf_hash)
{
    msgpack_packer pk;
    wire_packer_init(&pk, b);
    int rc = msgpack_pack_array(&pk, leaf_hash ? 3 : 2) | msgpack_pack_uint64(&pk, seq) |
             (duplicate ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk));
    if (leaf_hash)
        rc |= msgpack_pack_bin(&pk, 32) | msgpack_pack_bin_body(&pk, leaf_hash, 32);
    return done(rc);
}

int wire_enc_pub(kabar_buf *b, uint64_t batch, const uint8_t *pk_, const uint8_t *sig)
{
    msgpack_packer pk;
    bool signed_ = pk_ != NULL && sig != NULL;
    if (begin(b, &pk, WIRE_PUB, batch, signed_ ? 1 : 0) != 0)
        return KABAR_NO_MEMORY;
    if (!signed_)
        return 0;
    return done(msgpack_pack_array(&pk, 2) | msgpack_pack_bin(&pk, 32) |
                msgpack_pack_bin_body(&pk, pk_, 32) | msgpack_pack_bin(&pk, 64) |
                msgpack_pack_bin_body(&pk, sig, 64));
}

#define MAX_METHOD_LEN 64

int wire_enc_call(kabar_buf *b, uint64_t req, const char *method, const void *params, size_t len)
{
    msgpack_packer pk;
    size_t mlen = method ? strlen(method) : 0;
    if (mlen == 0 || mlen > MAX_METHOD_LEN)
        return KABAR_INVALID_ARGUMENT;
    if (begin(b, &pk, WIRE_CALL, req, 2) != 0 || pack_str(&pk, method, mlen) != 0)
        return KABAR_NO_MEMORY;
    if (params == NULL || len == 0)
        return done(msgpack_pack_map(&pk, 0));
    return kabar_buf_append(b, params, len);
}

int wire_enc_result(kabar_buf *b, uint64_t req, const void *map, size_t len)
{
    msgpack_packer pk;
    if (begin(b, &pk, WIRE_RESULT, req, 1) != 0)
        return KABAR_NO_MEMORY;
    if (map == NULL || len == 0)
        return done(msgpack_pack_map(&pk, 0));
    return kabar_buf_append(b, map, len);
}

int wire_enc_ack_fail(kabar_buf *b, int code, const char *text)
{
    msgpack_packer pk;
    wire_packer_init(&pk, b);
    return done(msgpack_pack_array(&pk, 4) | msgpack_pack_uint64(&pk, 0) | msgpack_pack_false(&pk) |
                pack_cstr(&pk, kabar_errname(code)) | pack_cstr(&pk, text ? text : ""));
}

/* ------------------------------------------------------------------------ */
/* ACK and ERR                                                              */

int wire_ack_begin(const wire_header *h, mpr *r, uint32_t *n, kabar_error *err)
{
    mpr_item it;
    mpr_init(r, h->rest, h->rest_len);
    r->canonical = false;
    if (h->nrest < 1 || mpr_next(r, &it, NULL) != 0 || it.kind != MPR_ARRAY)
        return kabar_error_set(err, KABAR_PROTOCOL, "ACK: element 3 must be the results array");
    *n = it.count;
    return 0;
}

/* A string element of an array, as a view. */
static int read_str(mpr *r, kabar_str *out, const char *what, kabar_error *err)
{
    mpr_item it;
    out->ptr = NULL;
    out->len = 0;
    if (mpr_next(r, &it, NULL) != 0 || it.kind != MPR_STR)
        return kabar_error_set(err, KABAR_PROTOCOL, "%s must be a string", what);
    out->ptr = it.str;
    out->len = it.len;
    return 0;
}

/* The code of a wire error name; unknown names (a newer broker) are PROTOCOL. */
static int code_of(kabar_str name)
{
    char tmp[64];
    if (name.len == 0 || name.len >= sizeof(tmp))
        return KABAR_PROTOCOL;
    memcpy(tmp, name.ptr, name.len);
    tmp[name.len] = '\0';
    int code = kabar_errcode(tmp);
    return code < 0 ? KABAR_PROTOCOL : code;
}

int wire_ack_next(mpr *r, wire_ack_result *res, kabar_error *err)
{
    mpr_item it;
    int rc;
    memset(res, 0, sizeof(*res));
    if (mpr_next(r, &it, NULL) != 0 || it.kind != MPR_ARRAY || it.count < 2)
        return kabar_error_set(err, KABAR_PROTOCOL,
                               "ACK: each result must be an array [seq, duplicate, ...]");
    uint32_t count = it.count;
    if ((rc = read_uint(r, &res->seq, "ACK result seq", err)) != 0)
        return rc;
    if (mpr_next(r, &it, NULL) != 0 || it.kind != MPR_BOOL)
        return kabar_error_set(err, KABAR_PROTOCOL, "ACK: result element 1 must be a boolean");
    res->duplicate = it.b;
    count -= 2;
    if (res->seq != 0 && count > 0) { /* the leaf hash; anything else is left to the loop below */
        mpr peek = *r;
        if (mpr_next(&peek, &it, NULL) == 0 && it.kind == MPR_BIN && it.len == 32) {
            res->leaf_hash = (const uint8_t *)it.str;
            res->has_leaf_hash = true;
            *r = peek;
            count--;
        }
    }
    if (res->seq == 0) {
        kabar_str code = {0};
        if (count < 2)
            return kabar_error_set(err, KABAR_PROTOCOL,
                                   "ACK: a rejected result must be [0, false, code, text]");
        if ((rc = read_str(r, &code, "ACK result code", err)) != 0 ||
            (rc = read_str(r, &res->text, "ACK result text", err)) != 0)
            return rc;
        res->code = code_of(code);
        if (res->code == KABAR_OK)
            res->code = KABAR_PROTOCOL;
        count -= 2;
    }
    for (; count > 0; count--) /* elements a later version adds */
        if ((rc = mpr_skip(r, KABAR_MAX_DEPTH, err)) != 0)
            return rc;
    return 0;
}

int wire_pub_decode(const wire_header *h, const uint8_t **pk, const uint8_t **sig, kabar_error *err)
{
    mpr r;
    mpr_item it;
    *pk = NULL;
    *sig = NULL;
    if (h->nrest < 1)
        return 0;
    mpr_init(&r, h->rest, h->rest_len);
    r.canonical = false;
    if (mpr_next(&r, &it, NULL) != 0)
        return kabar_error_set(err, KABAR_PROTOCOL, "PUB: unreadable element 3 (the signature)");
    if (it.kind == MPR_NIL)
        return 0;
    const uint8_t *k = NULL;
    if (it.kind != MPR_ARRAY || it.count != 2 || mpr_next(&r, &it, NULL) != 0 ||
        it.kind != MPR_BIN || it.len != 32 || (k = (const uint8_t *)it.str) == NULL ||
        mpr_next(&r, &it, NULL) != 0 || it.kind != MPR_BIN || it.len != 64)
        return kabar_error_set(err, KABAR_PROTOCOL,
                               "PUB: element 3 must be the signature [key bin(32), sig bin(64)]");
    *pk = k;
    *sig = (const uint8_t *)it.str;
    return 0;
}

/* The bytes of the one msgpack value at `p`: *len set, 0 or KABAR_PROTOCOL. */
static int value_span(const uint8_t *p, size_t avail, mpr_kind want, size_t *len, const char *what,
                      kabar_error *err)
{
    mpr r;
    mpr_item it;
    mpr_init(&r, p, avail);
    r.canonical = false;
    if (mpr_next(&r, &it, NULL) != 0 || it.kind != want)
        return kabar_error_set(err, KABAR_PROTOCOL, "%s", what);
    uint32_t n = want == MPR_MAP ? it.count * 2 : 0;
    for (uint32_t i = 0; i < n; i++)
        if (mpr_skip(&r, KABAR_MAX_DEPTH * 2, NULL) != 0)
            return kabar_error_set(err, KABAR_PROTOCOL, "%s (unreadable)", what);
    *len = (size_t)(r.p - p);
    return 0;
}

int wire_call_decode(const wire_header *h, kabar_str *method, const uint8_t **params,
                     size_t *params_len, kabar_error *err)
{
    mpr r;
    int rc;
    mpr_init(&r, h->rest, h->rest_len);
    r.canonical = false;
    if (h->nrest < 2)
        return kabar_error_set(err, KABAR_PROTOCOL,
                               "CALL needs [1, \"CALL\", req, method, params]");
    if ((rc = read_str(&r, method, "CALL method", err)) != 0)
        return rc;
    if (method->len == 0 || method->len > MAX_METHOD_LEN)
        return kabar_error_set(err, KABAR_PROTOCOL, "CALL method must be 1 to %d bytes",
                               MAX_METHOD_LEN);
    *params = r.p;
    return value_span(r.p, mpr_left(&r), MPR_MAP, params_len, "CALL params must be a map", err);
}

int wire_result_decode(const wire_header *h, const uint8_t **map, size_t *len, kabar_error *err)
{
    if (h->nrest < 1)
        return kabar_error_set(err, KABAR_PROTOCOL, "RESULT needs [1, \"RESULT\", req, map]");
    *map = h->rest;
    return value_span(h->rest, h->rest_len, MPR_MAP, len, "RESULT: element 3 must be a map", err);
}

int wire_err_decode(const wire_header *h, int *code, kabar_str *text, kabar_error *err)
{
    mpr r;
    kabar_str name = {0};
    int rc;
    mpr_init(&r, h->rest, h->rest_len);
    r.canonical = false;
    if (h->nrest < 2)
        return kabar_error_set(err, KABAR_PROTOCOL, "ERR needs [1, \"ERR\", id, code, text]");
    if ((rc = read_str(&r, &name, "ERR code", err)) != 0 ||
        (rc = read_str(&r, text, "ERR text", err)) != 0)
        return rc;
    *code = code_of(name);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* SUB options                                                              */

static const char *const start_names[] = {
    [KABAR_START_FIRST] = "first",
    [KABAR_START_NOW] = "now",
    [KABAR_START_SEQ] = "seq",
    [KABAR_START_TIME] = "time",
};

int wire_enc_sub(kabar_buf *b, uint64_t sub, const kabar_sub_opts *o)
{
    msgpack_packer pk;
    size_t n = 2; /* credit, start */
    n += o->durable != NULL;
    n += o->start == KABAR_START_SEQ;
    n += o->source != NULL;
    n += o->target != NULL;
    n += o->start == KABAR_START_TIME;
    n += o->type_prefix != NULL;
    n += o->until_seq != 0;
    n += o->until_head;
    if ((unsigned)o->start > KABAR_START_TIME)
        return KABAR_INVALID_ARGUMENT;
    if (begin(b, &pk, WIRE_SUB, sub, 1) != 0)
        return KABAR_NO_MEMORY;
    /* Keys in canonical (byte) order. */
    int rc = msgpack_pack_map(&pk, n);
    rc |= pack_cstr(&pk, "credit") | msgpack_pack_uint32(&pk, o->credit);
    if (o->durable)
        rc |= pack_cstr(&pk, "durable") | pack_cstr(&pk, o->durable);
    if (o->start == KABAR_START_SEQ)
        rc |= pack_cstr(&pk, "seq") | msgpack_pack_uint64(&pk, o->seq);
    if (o->source)
        rc |= pack_cstr(&pk, "source") | pack_cstr(&pk, o->source);
    rc |= pack_cstr(&pk, "start") | pack_cstr(&pk, start_names[o->start]);
    if (o->target)
        rc |= pack_cstr(&pk, "target") | pack_cstr(&pk, o->target);
    if (o->start == KABAR_START_TIME)
        rc |= pack_cstr(&pk, "time") | wire_pack_time(&pk, o->time);
    if (o->type_prefix)
        rc |= pack_cstr(&pk, "type") | pack_cstr(&pk, o->type_prefix);
    if (o->until_seq)
        rc |= pack_cstr(&pk, "until") | msgpack_pack_uint64(&pk, o->until_seq);
    if (o->until_head)
        rc |= pack_cstr(&pk, "until_head") | msgpack_pack_true(&pk);
    return done(rc);
}

static bool agency_ok(kabar_str s)
{
    return kabar_agency_valid(s.ptr, s.len);
}

/* A type prefix or durable name: printable ASCII of [A-Za-z0-9._-], 1..max bytes. */
static bool name_ok(kabar_str s, uint32_t max)
{
    if (s.len < 1 || s.len > max)
        return false;
    for (uint32_t i = 0; i < s.len; i++) {
        char c = s.ptr[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

static bool key_is(const mpr_item *k, const char *name)
{
    return k->len == strlen(name) && memcmp(k->str, name, k->len) == 0;
}

/* Read a string option into *out, checking it with `ok` (may be NULL). */
static int opt_str(mpr *r, const char *key, kabar_str *out, bool (*ok)(kabar_str), uint32_t max,
                   kabar_error *err)
{
    mpr_item v;
    if (mpr_next(r, &v, NULL) != 0 || v.kind != MPR_STR)
        return kabar_error_set(err, KABAR_WRONG_TYPE, "SUB option \"%s\" must be a string", key);
    out->ptr = v.str;
    out->len = v.len;
    if (ok ? !ok(*out) : !name_ok(*out, max))
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "SUB option \"%s\": \"%.*s\" is not a valid %s", key,
                               (int)(v.len > 64 ? 64 : v.len), v.str,
                               ok ? "agency id (lowercase letters, digits, '-'; 2-32 chars)"
                                  : "name ([A-Za-z0-9._-])");
    return 0;
}

static int opt_uint(mpr *r, const char *key, uint64_t *out, kabar_error *err)
{
    mpr_item v;
    if (mpr_next(r, &v, NULL) != 0 || v.kind != MPR_UINT)
        return kabar_error_set(err, KABAR_WRONG_TYPE,
                               "SUB option \"%s\" must be an unsigned integer", key);
    *out = v.u;
    return 0;
}

static int sub_option(mpr *r, const mpr_item *k, wire_sub *o, bool *has_seq, bool *has_time,
                      kabar_error *err)
{
    mpr_item v;
    uint64_t u = 0;
    int rc = 0;
    if (key_is(k, "type"))
        return opt_str(r, "type", &o->type_prefix, NULL, KABAR_MAX_TYPE_LEN, err);
    if (key_is(k, "source"))
        return opt_str(r, "source", &o->source, agency_ok, 0, err);
    if (key_is(k, "target"))
        return opt_str(r, "target", &o->target, agency_ok, 0, err);
    if (key_is(k, "durable"))
        return opt_str(r, "durable", &o->durable, NULL, KABAR_MAX_ID_LEN, err);
    if (key_is(k, "seq")) {
        *has_seq = true;
        return opt_uint(r, "seq", &o->seq, err);
    }
    if (key_is(k, "until"))
        return opt_uint(r, "until", &o->until_seq, err);
    if (key_is(k, "credit")) {
        if ((rc = opt_uint(r, "credit", &u, err)) != 0)
            return rc;
        o->credit = u > UINT32_MAX ? UINT32_MAX : (uint32_t)u;
        return 0;
    }
    if (key_is(k, "start")) {
        if (mpr_next(r, &v, NULL) != 0 || v.kind != MPR_STR)
            return kabar_error_set(err, KABAR_WRONG_TYPE, "SUB option \"start\" must be a string");
        for (int i = 0; i <= KABAR_START_TIME; i++)
            if (v.len == strlen(start_names[i]) && memcmp(v.str, start_names[i], v.len) == 0) {
                o->start = (kabar_start)i;
                return 0;
            }
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "SUB option \"start\" must be one of first, now, seq, time");
    }
    if (key_is(k, "time")) {
        if (mpr_next(r, &v, NULL) != 0 || v.kind != MPR_TIMESTAMP)
            return kabar_error_set(err, KABAR_WRONG_TYPE,
                                   "SUB option \"time\" must be a msgpack timestamp");
        o->time = v.i;
        *has_time = true;
        return 0;
    }
    if (key_is(k, "until_head")) {
        if (mpr_next(r, &v, NULL) != 0 || v.kind != MPR_BOOL)
            return kabar_error_set(err, KABAR_WRONG_TYPE,
                                   "SUB option \"until_head\" must be a boolean");
        o->until_head = v.b;
        return 0;
    }
    return mpr_skip(r, KABAR_MAX_DEPTH, err); /* a later version's option */
}

int wire_sub_decode(const wire_header *h, wire_sub *o, kabar_error *err)
{
    mpr r;
    mpr_item it, k;
    bool has_seq = false, has_time = false;
    int rc;

    memset(o, 0, sizeof(*o));
    o->start = KABAR_START_FIRST;
    mpr_init(&r, h->rest, h->rest_len);
    r.canonical = false;
    if (h->nrest < 1 || mpr_next(&r, &it, NULL) != 0 || it.kind != MPR_MAP)
        return kabar_error_set(err, KABAR_PROTOCOL, "SUB: element 3 must be the options map");
    for (uint32_t i = 0; i < it.count; i++) {
        if (mpr_next(&r, &k, NULL) != 0 || k.kind != MPR_STR)
            return kabar_error_set(err, KABAR_PROTOCOL, "SUB: option names must be strings");
        if ((rc = sub_option(&r, &k, o, &has_seq, &has_time, err)) != 0)
            return rc;
    }
    if (o->start == KABAR_START_SEQ && !has_seq)
        return kabar_error_set(err, KABAR_MISSING_FIELD,
                               "SUB: start \"seq\" needs the option \"seq\"");
    if (o->start == KABAR_START_TIME && !has_time)
        return kabar_error_set(err, KABAR_MISSING_FIELD,
                               "SUB: start \"time\" needs the option \"time\"");
    if (o->start == KABAR_START_SEQ && o->seq == 0)
        return kabar_error_set(err, KABAR_BAD_VALUE, "SUB: seq starts at 1");
    return 0;
}

/* ------------------------------------------------------------------------ */
/* EVT records                                                              */

int wire_enc_record(kabar_buf *b, uint64_t seq, int64_t received_at, const void *ev, size_t len)
{
    msgpack_packer pk;
    wire_packer_init(&pk, b);
    return done(msgpack_pack_array(&pk, 3) | msgpack_pack_uint64(&pk, seq) |
                wire_pack_time(&pk, received_at) | msgpack_pack_bin(&pk, len) |
                msgpack_pack_bin_body(&pk, ev, len));
}

int wire_dec_record(const uint8_t **p, const uint8_t *end, kabar_record *rec, kabar_error *err)
{
    mpr r;
    mpr_item it;
    mpr_init(&r, *p, (size_t)(end - *p));
    r.canonical = false;
    if (mpr_next(&r, &it, NULL) != 0 || it.kind != MPR_ARRAY || it.count != 3)
        return kabar_error_set(err, KABAR_PROTOCOL,
                               "EVT: a record must be [seq, received_at, event]");
    if (mpr_next(&r, &it, NULL) != 0 || it.kind != MPR_UINT)
        return kabar_error_set(err, KABAR_PROTOCOL, "EVT: record seq must be an unsigned integer");
    rec->seq = it.u;
    if (mpr_next(&r, &it, NULL) != 0 || it.kind != MPR_TIMESTAMP)
        return kabar_error_set(err, KABAR_PROTOCOL, "EVT: record received_at must be a timestamp");
    rec->received_at = it.i;
    if (mpr_next(&r, &it, NULL) != 0 || it.kind != MPR_BIN)
        return kabar_error_set(err, KABAR_PROTOCOL, "EVT: record event must be bin");
    rec->bytes = (const uint8_t *)it.str;
    rec->len = it.len;
    *p = r.p;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* msgpack -> JSON (for STATUS and HEAD replies shown to people)            */

static int json_str(kabar_buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    int rc = kabar_buf_append(out, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        rc |= kabar_buf_append(out, s + run, i - run);
        run = i + 1;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            rc |= kabar_buf_append(out, esc, 2);
        } else {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            rc |= kabar_buf_append(out, esc, 6);
        }
    }
    rc |= kabar_buf_append(out, s + run, n - run);
    rc |= kabar_buf_append(out, "\"", 1);
    return rc ? KABAR_NO_MEMORY : 0;
}

static int to_json(kabar_buf *out, mpr *r, int depth, kabar_error *err)
{
    mpr_item it;
    char tmp[64];
    int rc, n = 0;
    if (depth > KABAR_MAX_DEPTH * 2)
        return kabar_error_set(err, KABAR_LIMIT, "msgpack nested too deeply to show as JSON");
    if ((rc = mpr_next(r, &it, err)) != 0)
        return rc;
    switch (it.kind) {
    case MPR_NIL:
        return kabar_buf_append(out, "null", 4);
    case MPR_BOOL:
        return it.b ? kabar_buf_append(out, "true", 4) : kabar_buf_append(out, "false", 5);
    case MPR_UINT:
        n = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)it.u);
        return kabar_buf_append(out, tmp, (size_t)n);
    case MPR_INT:
        n = snprintf(tmp, sizeof(tmp), "%lld", (long long)it.i);
        return kabar_buf_append(out, tmp, (size_t)n);
    case MPR_FLOAT:
        n = snprintf(tmp, sizeof(tmp), "%.17g", it.f);
        return kabar_buf_append(out, tmp, (size_t)n);
    case MPR_STR:
        return json_str(out, it.str, it.len);
    case MPR_TIMESTAMP:
        n = (int)kabar_time_format(it.i, tmp);
        return json_str(out, tmp, (size_t)n);
    case MPR_BIN:
    case MPR_EXT: {
        size_t cap = sodium_base64_encoded_len(it.len, sodium_base64_VARIANT_ORIGINAL);
        char *b64 = malloc(cap);
        if (!b64)
            return KABAR_NO_MEMORY;
        sodium_bin2base64(b64, cap, (const unsigned char *)it.str, it.len,
                          sodium_base64_VARIANT_ORIGINAL);
        rc = json_str(out, b64, strlen(b64));
        free(b64);
        return rc;
    }
    case MPR_ARRAY:
        rc = kabar_buf_append(out, "[", 1);
        for (uint32_t i = 0; i < it.count && rc == 0; i++) {
            if (i > 0)
                rc = kabar_buf_append(out, ",", 1);
            if (rc == 0)
                rc = to_json(out, r, depth + 1, err);
        }
        return rc ? rc : kabar_buf_append(out, "]", 1);
    case MPR_MAP:
        rc = kabar_buf_append(out, "{", 1);
        for (uint32_t i = 0; i < it.count && rc == 0; i++) {
            mpr_item k;
            if (i > 0)
                rc = kabar_buf_append(out, ",", 1);
            if (rc == 0 && (mpr_next(r, &k, NULL) != 0 || k.kind != MPR_STR))
                return kabar_error_set(err, KABAR_PROTOCOL, "map keys must be strings");
            rc = rc ? rc : json_str(out, k.str, k.len);
            rc = rc ? rc : kabar_buf_append(out, ":", 1);
            rc = rc ? rc : to_json(out, r, depth + 1, err);
        }
        return rc ? rc : kabar_buf_append(out, "}", 1);
    }
    return kabar_error_set(err, KABAR_PROTOCOL, "unexpected msgpack item");
}

int wire_msgpack_to_json(kabar_buf *out, const void *p, size_t len, kabar_error *err)
{
    mpr r;
    mpr_init(&r, p, len);
    r.canonical = false;
    return to_json(out, &r, 0, err);
}
