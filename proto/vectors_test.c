/*
 * vectors_test.c - libkabar against the protocol test vectors.
 *
 * proto/vectors/{events,json,wire}.hex are written by scripts/gen-vectors with python-msgpack,
 * a msgpack implementation that shares no code with ours (format in
 * proto/PROTOCOL.md "Test vectors"). This test checks, byte for byte, that:
 *
 *  - every valid event decodes with kabar_event_decode, its envelope is the
 *    one its JSON form names, kabar_event_from_json of that JSON gives the
 *    identical bytes and kabar_event_to_json gives that JSON back;
 *  - every counter-example fails with exactly the error code named;
 *  - kabar_event_from_json reads the JSON variants of json.hex (offsets,
 *    nulls, added targets, any key order) to the exact bytes, and refuses
 *    the bad ones with the code named;
 *  - wire_header_decode reads every header to the expected command and
 *    arguments, refuses the bad ones with the named code, and the wire_enc_*
 *    encoders write byte-identical frames.
 *
 * A failure prints both byte strings from the first difference: a mismatch
 * between python-msgpack's canonical bytes and ours is a real finding.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <msgpack.h>

#include "mpr.h"
#include "wire.h"

/* ------------------------------------------------------------------------ */
/* Loading the vector files                                                 */

typedef struct vector {
    char name[64];
    char expect[32];
    uint8_t *bytes;
    size_t len;
    char *json; /* NULL when the line has no JSON form */
} vector;

typedef struct vectors {
    vector *v;
    size_t n;
} vectors;

static vectors events, wire, jsonv;

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Parse one line "NAME EXPECT HEX [JSON]" into *v; fails the test on a bad line. */
static void parse_line(const char *file, int lineno, char *line, vector *v)
{
    char *save = NULL;
    char *name = strtok_r(line, " ", &save);
    char *expect = strtok_r(NULL, " ", &save);
    char *hex = strtok_r(NULL, " ", &save);
    char *json = strtok_r(NULL, "", &save);
    size_t n = hex ? strlen(hex) : 0;
    if (!name || !expect || !hex || (n % 2 != 0 && strcmp(hex, "-") != 0) ||
        strlen(name) >= sizeof(v->name) || strlen(expect) >= sizeof(v->expect))
        fail_msg("%s:%d: expected NAME EXPECT HEX [JSON]", file, lineno);
    memset(v, 0, sizeof(*v));
    strcpy(v->name, name);
    strcpy(v->expect, expect);
    if (strcmp(hex, "-") == 0) /* no bytes: a vector that must fail */
        n = 0;
    v->len = n / 2;
    v->bytes = malloc(v->len ? v->len : 1);
    assert_non_null(v->bytes);
    for (size_t i = 0; i < v->len; i++) {
        int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            fail_msg("%s:%d: %s: not hex at character %zu", file, lineno, name, 2 * i);
        v->bytes[i] = (uint8_t)(hi << 4 | lo);
    }
    if (json && *json) {
        v->json = strdup(json);
        assert_non_null(v->json);
    }
}

static void load(const char *base, vectors *out)
{
    const char *src = getenv("KABAR_SOURCE_DIR");
    if (src == NULL)
        fail_msg("KABAR_SOURCE_DIR is not set (run through ctest, or set it to the source tree)");
    char path[4096];
    snprintf(path, sizeof(path), "%s/proto/vectors/%s", src, base);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("cannot open %s (generate it with scripts/gen-vectors)", path);
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int lineno = 0;
    out->v = NULL;
    out->n = 0;
    while ((got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
            line[--got] = '\0';
        if (got == 0 || line[0] == '#')
            continue;
        out->v = realloc(out->v, (out->n + 1) * sizeof(*out->v));
        assert_non_null(out->v);
        parse_line(path, lineno, line, &out->v[out->n++]);
    }
    free(line);
    fclose(f);
    if (out->n == 0)
        fail_msg("%s holds no vectors", path);
}

static void unload(vectors *vs)
{
    for (size_t i = 0; i < vs->n; i++) {
        free(vs->v[i].bytes);
        free(vs->v[i].json);
    }
    free(vs->v);
    vs->v = NULL;
    vs->n = 0;
}

static int setup(void **state)
{
    load("events.hex", &events);
    load("wire.hex", &wire);
    load("json.hex", &jsonv);
    return 0;
}

static int teardown(void **state)
{
    unload(&events);
    unload(&wire);
    unload(&jsonv);
    return 0;
}

static const vector *find(const vectors *vs, const char *name)
{
    for (size_t i = 0; i < vs->n; i++)
        if (strcmp(vs->v[i].name, name) == 0)
            return &vs->v[i];
    fail_msg("no vector named %s", name);
    return NULL;
}

/* Fail with both byte strings from the first difference on. */
static void bytes_equal(const char *what, const void *got, size_t glen, const void *want,
                        size_t wlen)
{
    const uint8_t *g = got, *w = want;
    size_t i = 0;
    while (i < glen && i < wlen && g[i] == w[i])
        i++;
    if (i == glen && i == wlen)
        return;
    char gh[97] = "", wh[97] = "";
    for (size_t k = 0; k < 48 && i + k < glen; k++)
        sprintf(gh + 2 * k, "%02x", g[i + k]);
    for (size_t k = 0; k < 48 && i + k < wlen; k++)
        sprintf(wh + 2 * k, "%02x", w[i + k]);
    fail_msg("%s: bytes differ at offset %zu (ours %zu bytes, vector %zu bytes)\n"
             "  ours:   ...%s\n  vector: ...%s",
             what, i, glen, wlen, gh, wh);
}

/* ------------------------------------------------------------------------ */
/* Events                                                                   */

static bool str_is(kabar_str s, const char *c)
{
    return c != NULL && s.ptr != NULL && s.len == strlen(c) && memcmp(s.ptr, c, s.len) == 0;
}

/* The decoded envelope must be the one the JSON form names. */
static void check_envelope(const vector *v, const kabar_event *ev)
{
    json_error_t jerr;
    json_t *j = json_loads(v->json, 0, &jerr);
    if (j == NULL)
        fail_msg("%s: the vector's JSON does not parse: %s", v->name, jerr.text);
    const char *fields[] = {"id", "type", "source"};
    const kabar_str got[] = {ev->id, ev->type, ev->source};
    for (int i = 0; i < 3; i++)
        if (!str_is(got[i], json_string_value(json_object_get(j, fields[i]))))
            fail_msg("%s: decoded %s is \"%.*s\"", v->name, fields[i], (int)got[i].len, got[i].ptr);
    assert_int_equal(ev->v, json_integer_value(json_object_get(j, "v")));
    json_t *corr = json_object_get(j, "corr");
    if (corr ? !str_is(ev->corr, json_string_value(corr)) : ev->corr.ptr != NULL)
        fail_msg("%s: decoded corr differs from the JSON form", v->name);
    json_t *targets = json_object_get(j, "targets");
    assert_int_equal(ev->ntargets, json_array_size(targets));
    for (uint32_t i = 0; i < ev->ntargets; i++)
        assert_true(str_is(ev->targets[i], json_string_value(json_array_get(targets, i))));
    const char *at = json_string_value(json_object_get(j, "occurred_at"));
    assert_non_null(at);
    int64_t ns;
    assert_int_equal(kabar_time_parse(at, strlen(at), &ns, NULL), 0);
    assert_true(ev->has_occurred_at);
    assert_true(ev->occurred_at == ns);
    /* The body points into the event's bytes, right after its key: "body"
     * sorts first of the envelope's keys. */
    assert_true(ev->body > v->bytes && ev->body + ev->body_len <= v->bytes + v->len);
    assert_int_equal(ev->body[-5], 0xa4); /* fixstr "body" precedes it */
    assert_memory_equal(ev->body - 4, "body", 4);
    json_decref(j);
}

static void test_valid_events_decode(void **state)
{
    const kabar_schema *schema = kabar_schema_builtin();
    size_t nvalid = 0;
    for (size_t i = 0; i < events.n; i++) {
        const vector *v = &events.v[i];
        if (strcmp(v->expect, "OK") != 0)
            continue;
        nvalid++;
        kabar_event ev;
        kabar_error err = {0};
        int rc = kabar_event_decode(schema, v->bytes, v->len, &ev, &err);
        if (rc != 0)
            fail_msg("%s: kabar_event_decode failed with %s: %s", v->name, kabar_errname(rc),
                     err.message);
        /* Without a schema only the envelope is checked: still valid. */
        assert_int_equal(kabar_event_decode(NULL, v->bytes, v->len, &ev, NULL), 0);
        if (v->json)
            check_envelope(v, &ev);
        else if (strcmp(v->name, "innovation-advanced") == 0)
            assert_false(ev.has_occurred_at); /* optional: absent stays absent */
    }
    assert_true(nvalid >= 10);
}

static void test_valid_events_from_json(void **state)
{
    const kabar_schema *schema = kabar_schema_builtin();
    for (size_t i = 0; i < events.n; i++) {
        const vector *v = &events.v[i];
        if (strcmp(v->expect, "OK") != 0 || v->json == NULL)
            continue;
        uint8_t *out = NULL;
        size_t outlen = 0;
        kabar_error err = {0};
        int rc = kabar_event_from_json(schema, v->json, strlen(v->json), NULL, &out, &outlen, &err);
        if (rc != 0)
            fail_msg("%s: kabar_event_from_json failed with %s: %s", v->name, kabar_errname(rc),
                     err.message);
        char what[128];
        snprintf(what, sizeof(what), "%s: kabar_event_from_json", v->name);
        bytes_equal(what, out, outlen, v->bytes, v->len);
        free(out);
    }
}

static void test_valid_events_to_json(void **state)
{
    for (size_t i = 0; i < events.n; i++) {
        const vector *v = &events.v[i];
        if (strcmp(v->expect, "OK") != 0 || v->json == NULL)
            continue;
        kabar_buf out = {0};
        kabar_error err = {0};
        int rc = kabar_event_to_json(&out, 0, INT64_MIN, v->bytes, v->len, &err);
        if (rc != 0)
            fail_msg("%s: kabar_event_to_json failed with %s: %s", v->name, kabar_errname(rc),
                     err.message);
        if (out.len != strlen(v->json) || memcmp(out.data, v->json, out.len) != 0)
            fail_msg("%s: kabar_event_to_json wrote\n  %s\nthe vector's JSON form is\n  %s",
                     v->name, out.data, v->json);
        kabar_buf_free(&out);
    }
}

static void test_counter_examples(void **state)
{
    const kabar_schema *schema = kabar_schema_builtin();
    size_t nbad = 0, nfail = 0;
    for (size_t i = 0; i < events.n; i++) {
        const vector *v = &events.v[i];
        if (strcmp(v->expect, "OK") == 0)
            continue;
        int want = kabar_errcode(v->expect);
        if (want <= 0)
            fail_msg("%s: %s is not an error code of this library", v->name, v->expect);
        nbad++;
        kabar_event ev;
        kabar_error err = {0};
        int rc = kabar_event_decode(schema, v->bytes, v->len, &ev, &err);
        if (rc != want) {
            /* Report every mismatch before failing, so one run shows them all. */
            print_error("%s: expected %s, kabar_event_decode returned %s (%s)\n", v->name,
                        v->expect, kabar_errname(rc), rc ? err.message : "accepted");
            nfail++;
        } else if (err.code != want || err.message[0] == '\0') {
            print_error("%s: err not filled (code %s, message \"%s\")\n", v->name,
                        kabar_errname(err.code), err.message);
            nfail++;
        }
    }
    assert_true(nbad >= 20);
    if (nfail)
        fail_msg("%zu of %zu counter-examples did not fail as the vectors say", nfail, nbad);
}

/* json.hex: reading JSON beyond the plain JSON form (PROTOCOL.md "JSON form"). */
static void test_json_reading(void **state)
{
    const kabar_schema *schema = kabar_schema_builtin();
    size_t nok = 0, nbad = 0;
    for (size_t i = 0; i < jsonv.n; i++) {
        const vector *v = &jsonv.v[i];
        if (v->json == NULL)
            fail_msg("%s: no JSON on the line", v->name);
        uint8_t *out = NULL;
        size_t outlen = 0;
        kabar_error err = {0};
        int rc = kabar_event_from_json(schema, v->json, strlen(v->json), NULL, &out, &outlen, &err);
        if (strcmp(v->expect, "OK") == 0) {
            if (rc != 0)
                fail_msg("%s: kabar_event_from_json failed with %s: %s", v->name, kabar_errname(rc),
                         err.message);
            char what[128];
            snprintf(what, sizeof(what), "%s: kabar_event_from_json", v->name);
            bytes_equal(what, out, outlen, v->bytes, v->len);
            free(out);
            nok++;
            continue;
        }
        int want = kabar_errcode(v->expect);
        if (want <= 0)
            fail_msg("%s: %s is not an error code of this library", v->name, v->expect);
        if (rc != want)
            fail_msg("%s: expected %s, kabar_event_from_json returned %s (%s)", v->name, v->expect,
                     kabar_errname(rc), rc ? err.message : "accepted");
        assert_true(err.code == want && err.message[0] != '\0');
        nbad++;
    }
    assert_true(nok >= 8 && nbad >= 8);
}

/* ------------------------------------------------------------------------ */
/* Wire headers                                                             */

/* What each header vector must decode to. Every header vector is listed. */
typedef struct hdr_expect {
    const char *name;
    wire_cmd cmd;
    uint64_t id, a, b;
    uint32_t nrest;
} hdr_expect;

static const hdr_expect headers[] = {
    {"pub/0", WIRE_PUB, 7, 0, 0, 0},
    {"ack/0", WIRE_ACK, 7, 0, 0, 1},
    {"ack-duplicate/0", WIRE_ACK, 8, 0, 0, 1},
    {"sub/0", WIRE_SUB, 3, 0, 0, 1},
    {"sub-durable/0", WIRE_SUB, 4, 0, 0, 1},
    {"sub-time/0", WIRE_SUB, 5, 0, 0, 1},
    {"sub-now/0", WIRE_SUB, 6, 0, 0, 1},
    {"subok/0", WIRE_SUBOK, 3, 40, 57, 0},
    {"credit/0", WIRE_CREDIT, 3, 128, 0, 0},
    {"evt/0", WIRE_EVT, 3, 2, 0, 0},
    {"end/0", WIRE_END, 3, 57, 0, 0},
    {"cack/0", WIRE_CACK, 4, 41, 0, 0},
    {"unsub/0", WIRE_UNSUB, 5, 0, 0, 0},
    {"head/0", WIRE_HEAD, 9, 0, 0, 0},
    {"headok/0", WIRE_HEADOK, 9, 0, 0, 1},
    {"status/0", WIRE_STATUS, 10, 0, 0, 0},
    {"ping/0", WIRE_PING, 11, 0, 0, 0},
    {"pong/0", WIRE_PONG, 11, 0, 0, 0},
    {"err/0", WIRE_ERR, 12, 0, 0, 2},
    {"err-unreadable/0", WIRE_ERR, 0, 0, 0, 2},
    {"ping-extra/0", WIRE_PING, 13, 0, 0, 1},
    {"sub-extra-option/0", WIRE_SUB, 14, 0, 0, 1},
    {"ping-lenient/0", WIRE_PING, 15, 0, 0, 0},
};

#define NHEADERS (sizeof(headers) / sizeof(headers[0]))

static const hdr_expect *header_expect(const char *name)
{
    for (size_t i = 0; i < NHEADERS; i++)
        if (strcmp(headers[i].name, name) == 0)
            return &headers[i];
    return NULL;
}

static void decode_header(const vector *v, wire_header *h)
{
    kabar_error err = {0};
    int rc = wire_header_decode(v->bytes, v->len, h, &err);
    if (rc != 0)
        fail_msg("%s: wire_header_decode failed with %s: %s", v->name, kabar_errname(rc),
                 err.message);
}

/* The command named `name`, or WIRE_UNKNOWN ("END" is both a command and an error name). */
static wire_cmd cmd_named(const char *name)
{
    for (int c = WIRE_PUB; c <= WIRE_ERR; c++)
        if (strcmp(wire_cmd_name((wire_cmd)c), name) == 0)
            return (wire_cmd)c;
    return WIRE_UNKNOWN;
}

static void test_headers_decode(void **state)
{
    size_t checked = 0;
    for (size_t i = 0; i < wire.n; i++) {
        const vector *v = &wire.v[i];
        if (strcmp(v->expect, "EVENT") == 0 || strcmp(v->expect, "RECORDS") == 0)
            continue;
        wire_header h;
        kabar_error err = {0};
        int code = kabar_errcode(v->expect);
        if (cmd_named(v->expect) == WIRE_UNKNOWN) { /* a header that must be refused */
            if (code <= 0)
                fail_msg("%s: %s is neither a command nor an error name", v->name, v->expect);
            int rc = wire_header_decode(v->bytes, v->len, &h, &err);
            if (rc != code)
                fail_msg("%s: expected %s, wire_header_decode returned %s (%s)", v->name, v->expect,
                         kabar_errname(rc), err.message);
            assert_true(err.code == code && err.message[0] != '\0');
            if (code == KABAR_UNKNOWN_COMMAND)
                assert_int_equal(h.id, 17); /* so that the ERR can carry it */
            checked++;
            continue;
        }
        const hdr_expect *x = header_expect(v->name);
        if (x == NULL)
            fail_msg("%s: header vector not listed in vectors_test.c headers[]", v->name);
        decode_header(v, &h);
        if (strcmp(wire_cmd_name(h.cmd), v->expect) != 0 || h.cmd != x->cmd)
            fail_msg("%s: decoded as %s, expected %s", v->name, wire_cmd_name(h.cmd), v->expect);
        assert_int_equal(h.version, 1);
        assert_true(h.id == x->id);
        assert_true(h.a == x->a);
        assert_true(h.b == x->b);
        assert_int_equal(h.nrest, x->nrest);
        assert_true(h.rest >= v->bytes && h.rest + h.rest_len == v->bytes + v->len);
        checked++;
    }
    assert_true(checked >= NHEADERS + 5);
}

/* ------------------------------------------------------------------------ */
/* Wire encoders: byte-identical frames                                     */

static void same(const char *name, const kabar_buf *b)
{
    const vector *v = find(&wire, name);
    char what[96];
    snprintf(what, sizeof(what), "%s: encoder output", name);
    bytes_equal(what, b->data, b->len, v->bytes, v->len);
}

static void test_encode_simple(void **state)
{
    kabar_buf b = {0};
    assert_int_equal(wire_enc_cmd(&b, WIRE_PUB, 7), 0);
    same("pub/0", &b);
    assert_int_equal(wire_enc_cmd(&b, WIRE_UNSUB, 5), 0);
    same("unsub/0", &b);
    assert_int_equal(wire_enc_cmd(&b, WIRE_HEAD, 9), 0);
    same("head/0", &b);
    assert_int_equal(wire_enc_cmd(&b, WIRE_STATUS, 10), 0);
    same("status/0", &b);
    assert_int_equal(wire_enc_cmd(&b, WIRE_PING, 11), 0);
    same("ping/0", &b);
    assert_int_equal(wire_enc_cmd(&b, WIRE_PONG, 11), 0);
    same("pong/0", &b);
    assert_int_equal(wire_enc_cmd1(&b, WIRE_CREDIT, 3, 128), 0);
    same("credit/0", &b);
    assert_int_equal(wire_enc_cmd1(&b, WIRE_CACK, 4, 41), 0);
    same("cack/0", &b);
    assert_int_equal(wire_enc_cmd1(&b, WIRE_EVT, 3, 2), 0);
    same("evt/0", &b);
    assert_int_equal(wire_enc_cmd1(&b, WIRE_END, 3, 57), 0);
    same("end/0", &b);
    assert_int_equal(wire_enc_subok(&b, 3, 40, 57), 0);
    same("subok/0", &b);
    assert_int_equal(
        wire_enc_err(&b, 12, KABAR_UNKNOWN_SUBSCRIPTION, "no subscription 12 on this connection"),
        0);
    same("err/0", &b);
    assert_int_equal(wire_enc_err(&b, 0, KABAR_MALFORMED,
                                  "header: the first frame must be a msgpack array "
                                  "[version, command, id, ...]"),
                     0);
    same("err-unreadable/0", &b);
    kabar_buf_free(&b);
}

static void test_encode_ack(void **state)
{
    kabar_buf b = {0};
    assert_int_equal(wire_enc_ack_begin(&b, 7, 2), 0);
    assert_int_equal(wire_enc_ack_ok(&b, 42, false, NULL), 0);
    assert_int_equal(wire_enc_ack_fail(&b, KABAR_MISSING_FIELD, "body.due: required field missing"),
                     0);
    same("ack/0", &b);
    assert_int_equal(wire_enc_ack_begin(&b, 8, 1), 0);
    assert_int_equal(wire_enc_ack_ok(&b, 42, true, NULL), 0);
    same("ack-duplicate/0", &b);
    kabar_buf_free(&b);
}

/* 2023-05-01T00:00:00Z and the EVT records' received_at, in ns. */
#define T_MAY1      (INT64_C(1682899200) * 1000000000)
#define T_REC40     (INT64_C(1682991000) * 1000000000 + 120000000)
#define T_REC41     (INT64_C(1682991067) * 1000000000)
#define T_HEAD_LAST T_REC41

static void test_encode_sub(void **state)
{
    kabar_buf b = {0};
    kabar_sub_opts o = {.type_prefix = "finding.",
                        .target = "dinkes",
                        .start = KABAR_START_SEQ,
                        .seq = 40,
                        .until_seq = 57,
                        .credit = 256};
    assert_int_equal(wire_enc_sub(&b, 3, &o), 0);
    same("sub/0", &b);
    o = (kabar_sub_opts){.durable = "setda-oversight", .start = KABAR_START_FIRST, .credit = 1024};
    assert_int_equal(wire_enc_sub(&b, 4, &o), 0);
    same("sub-durable/0", &b);
    o = (kabar_sub_opts){.source = "inspektorat",
                         .start = KABAR_START_TIME,
                         .time = T_MAY1,
                         .until_head = true,
                         .credit = 64};
    assert_int_equal(wire_enc_sub(&b, 5, &o), 0);
    same("sub-time/0", &b);
    o = (kabar_sub_opts){.start = KABAR_START_NOW, .credit = 16};
    assert_int_equal(wire_enc_sub(&b, 6, &o), 0);
    same("sub-now/0", &b);
    kabar_buf_free(&b);
}

static void test_encode_records(void **state)
{
    const vector *e1 = find(&wire, "pub/1"), *e2 = find(&wire, "pub/2");
    kabar_buf b = {0};
    assert_int_equal(wire_enc_record(&b, 40, T_REC40, e1->bytes, e1->len), 0);
    assert_int_equal(wire_enc_record(&b, 41, T_REC41, e2->bytes, e2->len), 0);
    same("evt/1", &b);
    kabar_buf_free(&b);
}

/* HEADOK is built by the broker with msgpack-c's packer and wire_pack_time. */
static void test_encode_headok(void **state)
{
    kabar_buf b = {0};
    msgpack_packer pk;
    wire_packer_init(&pk, &b);
    assert_int_equal(msgpack_pack_array(&pk, 4), 0);
    assert_int_equal(msgpack_pack_uint64(&pk, 1), 0);
    assert_int_equal(msgpack_pack_str_with_body(&pk, "HEADOK", 6), 0);
    assert_int_equal(msgpack_pack_uint64(&pk, 9), 0);
    assert_int_equal(msgpack_pack_map(&pk, 3), 0);
    assert_int_equal(msgpack_pack_str_with_body(&pk, "count", 5), 0);
    assert_int_equal(msgpack_pack_uint64(&pk, 57), 0);
    assert_int_equal(msgpack_pack_str_with_body(&pk, "last_received_at", 16), 0);
    assert_int_equal(wire_pack_time(&pk, T_HEAD_LAST), 0);
    assert_int_equal(msgpack_pack_str_with_body(&pk, "seq", 3), 0);
    assert_int_equal(msgpack_pack_uint64(&pk, 57), 0);
    same("headok/0", &b);
    kabar_buf_free(&b);
}

/* ------------------------------------------------------------------------ */
/* Wire payloads: ACK results, SUB options, EVT records, ERR, HEADOK        */

static void test_decode_ack(void **state)
{
    wire_header h;
    mpr r;
    uint32_t n;
    wire_ack_result res;
    kabar_error err = {0};
    decode_header(find(&wire, "ack/0"), &h);
    assert_int_equal(wire_ack_begin(&h, &r, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(wire_ack_next(&r, &res, &err), 0);
    assert_true(res.seq == 42 && !res.duplicate && res.code == KABAR_OK);
    assert_int_equal(wire_ack_next(&r, &res, &err), 0);
    assert_true(res.seq == 0 && !res.duplicate);
    assert_int_equal(res.code, KABAR_MISSING_FIELD);
    assert_true(str_is(res.text, "body.due: required field missing"));
    assert_int_equal(mpr_left(&r), 0);

    decode_header(find(&wire, "ack-duplicate/0"), &h);
    assert_int_equal(wire_ack_begin(&h, &r, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(wire_ack_next(&r, &res, &err), 0);
    assert_true(res.seq == 42 && res.duplicate && res.code == KABAR_OK);
}

static void sub_decode(const char *name, wire_sub *o)
{
    wire_header h;
    kabar_error err = {0};
    decode_header(find(&wire, name), &h);
    int rc = wire_sub_decode(&h, o, &err);
    if (rc != 0)
        fail_msg("%s: wire_sub_decode failed with %s: %s", name, kabar_errname(rc), err.message);
}

static void test_decode_sub(void **state)
{
    wire_sub o;
    sub_decode("sub/0", &o);
    assert_true(str_is(o.type_prefix, "finding.") && str_is(o.target, "dinkes"));
    assert_null(o.source.ptr);
    assert_null(o.durable.ptr);
    assert_int_equal(o.start, KABAR_START_SEQ);
    assert_true(o.seq == 40 && o.until_seq == 57 && !o.until_head);
    assert_int_equal(o.credit, 256);

    sub_decode("sub-durable/0", &o);
    assert_true(str_is(o.durable, "setda-oversight"));
    assert_int_equal(o.start, KABAR_START_FIRST);
    assert_int_equal(o.credit, 1024);

    sub_decode("sub-time/0", &o);
    assert_true(str_is(o.source, "inspektorat"));
    assert_int_equal(o.start, KABAR_START_TIME);
    assert_true(o.time == T_MAY1 && o.until_head);
    assert_int_equal(o.credit, 64);

    sub_decode("sub-now/0", &o);
    assert_int_equal(o.start, KABAR_START_NOW);
    assert_int_equal(o.credit, 16);

    sub_decode("sub-extra-option/0", &o); /* "zone" is ignored */
    assert_int_equal(o.start, KABAR_START_FIRST);
    assert_int_equal(o.credit, 8);
}

static void test_decode_records(void **state)
{
    const vector *payload = find(&wire, "evt/1");
    const vector *ev[2] = {find(&wire, "pub/1"), find(&wire, "pub/2")};
    const uint64_t seqs[2] = {40, 41};
    const int64_t at[2] = {T_REC40, T_REC41};
    const uint8_t *p = payload->bytes, *end = payload->bytes + payload->len;
    for (int i = 0; i < 2; i++) {
        kabar_record rec;
        kabar_event e;
        kabar_error err = {0};
        assert_int_equal(wire_dec_record(&p, end, &rec, &err), 0);
        assert_true(rec.seq == seqs[i] && rec.received_at == at[i]);
        bytes_equal("evt/1 record", rec.bytes, rec.len, ev[i]->bytes, ev[i]->len);
        assert_int_equal(kabar_event_decode(kabar_schema_builtin(), rec.bytes, rec.len, &e, &err),
                         0);
    }
    assert_true(p == end);
}

static void test_decode_err_and_headok(void **state)
{
    wire_header h;
    int code;
    kabar_str text;
    kabar_error err = {0};
    decode_header(find(&wire, "err/0"), &h);
    assert_int_equal(wire_err_decode(&h, &code, &text, &err), 0);
    assert_int_equal(code, KABAR_UNKNOWN_SUBSCRIPTION);
    assert_true(str_is(text, "no subscription 12 on this connection"));

    decode_header(find(&wire, "headok/0"), &h);
    kabar_buf json = {0};
    assert_int_equal(wire_msgpack_to_json(&json, h.rest, h.rest_len, &err), 0);
    assert_string_equal(json.data,
                        "{\"count\":57,\"last_received_at\":\"2023-05-02T01:31:07Z\",\"seq\":57}");
    kabar_buf_free(&json);
}

/* The event frames of PUB are valid events, and the same bytes as events.hex. */
static void test_pub_events(void **state)
{
    const char *frames[2] = {"pub/1", "pub/2"};
    const char *names[2] = {"finding-raised", "visit-scheduled"};
    for (int i = 0; i < 2; i++) {
        const vector *w = find(&wire, frames[i]), *e = find(&events, names[i]);
        kabar_event ev;
        assert_int_equal(kabar_event_decode(kabar_schema_builtin(), w->bytes, w->len, &ev, NULL),
                         0);
        bytes_equal(frames[i], w->bytes, w->len, e->bytes, e->len);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_events_decode),
        cmocka_unit_test(test_valid_events_from_json),
        cmocka_unit_test(test_valid_events_to_json),
        cmocka_unit_test(test_counter_examples),
        cmocka_unit_test(test_json_reading),
        cmocka_unit_test(test_headers_decode),
        cmocka_unit_test(test_encode_simple),
        cmocka_unit_test(test_encode_ack),
        cmocka_unit_test(test_encode_sub),
        cmocka_unit_test(test_encode_records),
        cmocka_unit_test(test_encode_headok),
        cmocka_unit_test(test_decode_ack),
        cmocka_unit_test(test_decode_sub),
        cmocka_unit_test(test_decode_records),
        cmocka_unit_test(test_decode_err_and_headok),
        cmocka_unit_test(test_pub_events),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
