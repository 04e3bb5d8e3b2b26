/*
 * wire_test.c - round trips of every wire message through its encoder and
 * wire_header_decode, and the refusals a broker relies on for bad input.
 * The byte-exact test vectors (written by an independent msgpack
 * implementation) are checked in vectors_test.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "mpr.h"
#include "wire.h"

static void decode_ok(kabar_buf *b, wire_header *h)
{
    kabar_error err = {0};
    int rc = wire_header_decode(b->data, b->len, h, &err);
    if (rc != 0)
        fail_msg("decode failed: %s", err.message);
}

static void test_simple_commands(void **state)
{
    kabar_buf b = {0};
    wire_header h;
    wire_cmd cmds[] = {WIRE_PUB, WIRE_UNSUB, WIRE_HEAD, WIRE_STATUS, WIRE_PING, WIRE_PONG};
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
        assert_int_equal(wire_enc_cmd(&b, cmds[i], 1000000 + i), 0);
        decode_ok(&b, &h);
        assert_int_equal(h.cmd, cmds[i]);
        assert_int_equal(h.version, 1);
        assert_int_equal(h.id, 1000000 + i);
        assert_int_equal(h.nrest, 0);
    }
    wire_cmd one[] = {WIRE_CREDIT, WIRE_CACK, WIRE_EVT, WIRE_END};
    for (size_t i = 0; i < sizeof(one) / sizeof(one[0]); i++) {
        assert_int_equal(wire_enc_cmd1(&b, one[i], 7, UINT64_MAX - i), 0);
        decode_ok(&b, &h);
        assert_int_equal(h.cmd, one[i]);
        assert_int_equal(h.id, 7);
        assert_true(h.a == UINT64_MAX - i);
    }
    assert_int_equal(wire_enc_subok(&b, 3, 42, 99), 0);
    decode_ok(&b, &h);
    assert_int_equal(h.cmd, WIRE_SUBOK);
    assert_int_equal(h.a, 42);
    assert_int_equal(h.b, 99);
    kabar_buf_free(&b);
}

static void test_ping_bytes(void **state)
{
    /* [1, "PING", 5]: the smallest encodings, as PROTOCOL.md shows. */
    static const uint8_t want[] = {0x93, 0x01, 0xa4, 'P', 'I', 'N', 'G', 0x05};
    kabar_buf b = {0};
    assert_int_equal(wire_enc_cmd(&b, WIRE_PING, 5), 0);
    assert_int_equal(b.len, sizeof(want));
    assert_memory_equal(b.data, want, sizeof(want));
    kabar_buf_free(&b);
}

static void test_ack(void **state)
{
    kabar_buf b = {0};
    wire_header h;
    mpr r;
    uint32_t n;
    wire_ack_result res;
    kabar_error err = {0};
    uint8_t leaf[32];
    for (int i = 0; i < 32; i++)
        leaf[i] = (uint8_t)(0xa0 + i);
    assert_int_equal(wire_enc_ack_begin(&b, 9, 3), 0);
    assert_int_equal(wire_enc_ack_ok(&b, 41, false, NULL), 0);
    assert_int_equal(wire_enc_ack_fail(&b, KABAR_MISSING_FIELD, "body.due: required field missing"),
                     0);
    assert_int_equal(wire_enc_ack_ok(&b, 12, true, leaf), 0);
    decode_ok(&b, &h);
    assert_int_equal(h.cmd, WIRE_ACK);
    assert_int_equal(h.id, 9);
    assert_int_equal(wire_ack_begin(&h, &r, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(wire_ack_next(&r, &res, &err), 0);
    assert_int_equal(res.seq, 41);
    assert_false(res.duplicate);
    assert_int_equal(res.code, KABAR_OK);
    assert_false(res.has_leaf_hash); /* a version-1 broker's [seq, duplicate] */
    assert_null(res.leaf_hash);
    assert_int_equal(wire_ack_next(&r, &res, &err), 0);
    assert_int_equal(res.seq, 0);
    assert_int_equal(res.code, KABAR_MISSING_FIELD);
    assert_int_equal(res.text.len, strlen("body.due: required field missing"));
    assert_memory_equal(res.text.ptr, "body.due: required field missing", res.text.len);
    assert_int_equal(wire_ack_next(&r, &res, &err), 0);
    assert_int_equal(res.seq, 12);
    assert_true(res.duplicate);
    assert_true(res.has_leaf_hash);
    assert_memory_equal(res.leaf_hash, leaf, 32);
    assert_int_equal(mpr_left(&r), 0);
    kabar_buf_free(&b);
}

static void test_ack_extra_elements_ignored(void **state)
{
    /* A later version may append to a result; a 3rd element that is not a
     * 32-byte leaf hash is skipped, not taken for one. */
    kabar_buf b = {0};
    msgpack_packer pk;
    wire_header h;
    mpr r;
    uint32_t n;
    wire_ack_result res;
    assert_int_equal(wire_enc_ack_begin(&b, 1, 1), 0);
    wire_packer_init(&pk, &b);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_uint64(&pk, 5);
    msgpack_pack_true(&pk);
    msgpack_pack_bin(&pk, 2);
    msgpack_pack_bin_body(&pk, "ab", 2);
    decode_ok(&b, &h);
    assert_int_equal(wire_ack_begin(&h, &r, &n, NULL), 0);
    assert_int_equal(wire_ack_next(&r, &res, NULL), 0);
    assert_int_equal(res.seq, 5);
    assert_true(res.duplicate);
    assert_false(res.has_leaf_hash);
    assert_int_equal(mpr_left(&r), 0);
    kabar_buf_free(&b);
}

static void test_err(void **state)
{
    kabar_buf b = {0};
    wire_header h;
    int code;
    kabar_str text;
    assert_int_equal(wire_enc_err(&b, 77, KABAR_UNKNOWN_CONSUMER, "no consumer \"x\""), 0);
    decode_ok(&b, &h);
    assert_int_equal(h.cmd, WIRE_ERR);
    assert_int_equal(h.id, 77);
    assert_int_equal(wire_err_decode(&h, &code, &text, NULL), 0);
    assert_int_equal(code, KABAR_UNKNOWN_CONSUMER);
    assert_int_equal(text.len, strlen("no consumer \"x\""));
    kabar_buf_free(&b);
}

static void test_sub_round_trip(void **state)
{
    kabar_buf b = {0};
    wire_header h;
    wire_sub o;
    kabar_error err = {0};
    kabar_sub_opts in = {.type_prefix = "finding.",
                         .source = "inspektorat",
                         .target = "dinkes",
                         .start = KABAR_START_TIME,
                         .time = 1682994600123456789LL,
                         .durable = "dinkes-inbox",
                         .until_seq = 500,
                         .credit = 1024};
    assert_int_equal(wire_enc_sub(&b, 4, &in), 0);
    decode_ok(&b, &h);
    assert_int_equal(h.cmd, WIRE_SUB);
    assert_int_equal(h.id, 4);
    if (wire_sub_decode(&h, &o, &err) != 0)
        fail_msg("%s", err.message);
    assert_int_equal(o.type_prefix.len, 8);
    assert_memory_equal(o.type_prefix.ptr, "finding.", 8);
    assert_memory_equal(o.source.ptr, "inspektorat", o.source.len);
    assert_memory_equal(o.target.ptr, "dinkes", o.target.len);
    assert_int_equal(o.start, KABAR_START_TIME);
    assert_true(o.time == 1682994600123456789LL);
    assert_memory_equal(o.durable.ptr, "dinkes-inbox", o.durable.len);
    assert_int_equal(o.until_seq, 500);
    assert_false(o.until_head);
    assert_int_equal(o.credit, 1024);

    /* Pre-epoch instants survive too. */
    in.time = -1500000000LL;
    assert_int_equal(wire_enc_sub(&b, 4, &in), 0);
    decode_ok(&b, &h);
    assert_int_equal(wire_sub_decode(&h, &o, &err), 0);
    assert_true(o.time == -1500000000LL);

    kabar_sub_opts seq = {.start = KABAR_START_SEQ, .seq = 17, .until_head = true, .credit = 1};
    assert_int_equal(wire_enc_sub(&b, 5, &seq), 0);
    decode_ok(&b, &h);
    assert_int_equal(wire_sub_decode(&h, &o, &err), 0);
    assert_int_equal(o.start, KABAR_START_SEQ);
    assert_int_equal(o.seq, 17);
    assert_true(o.until_head);
    assert_null(o.source.ptr);
    kabar_buf_free(&b);
}

/* Build a SUB header with one option of our choosing. */
static void sub_with(kabar_buf *b, const char *key, const char *val)
{
    msgpack_packer pk;
    b->len = 0;
    wire_packer_init(&pk, b);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_str_with_body(&pk, "SUB", 3);
    msgpack_pack_uint64(&pk, 8);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, key, strlen(key));
    msgpack_pack_str_with_body(&pk, val, strlen(val));
}

static void test_sub_refusals(void **state)
{
    struct {
        const char *key, *val;
        int code;
    } cases[] = {
        {"source", "Dinkes", KABAR_BAD_VALUE}, /* uppercase is not an agency id */
        {"target", "d", KABAR_BAD_VALUE},      /* too short */
        {"start", "yesterday", KABAR_BAD_VALUE}, {"start", "seq", KABAR_MISSING_FIELD},
        {"start", "time", KABAR_MISSING_FIELD},  {"type", "finding raised", KABAR_BAD_VALUE},
        {"durable", "", KABAR_BAD_VALUE},        {"seq", "12", KABAR_WRONG_TYPE},
    };
    kabar_buf b = {0};
    wire_header h;
    wire_sub o;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        kabar_error err = {0};
        sub_with(&b, cases[i].key, cases[i].val);
        decode_ok(&b, &h);
        int rc = wire_sub_decode(&h, &o, &err);
        if (rc != cases[i].code)
            fail_msg("%s=%s: got %s (%s)", cases[i].key, cases[i].val, kabar_errname(rc),
                     err.message);
        assert_true(strlen(err.message) > 10);
    }
    /* An option from a later version is ignored. */
    sub_with(&b, "priority", "high");
    decode_ok(&b, &h);
    assert_int_equal(wire_sub_decode(&h, &o, NULL), 0);
    kabar_buf_free(&b);
}

static void test_records(void **state)
{
    kabar_buf b = {0};
    static const uint8_t ev1[] = {0x81, 0xa1, 'a', 0x01};
    uint8_t ev2[300];
    memset(ev2, 0x7f, sizeof(ev2));
    assert_int_equal(wire_enc_record(&b, 1, 1682994600120000000LL, ev1, sizeof(ev1)), 0);
    assert_int_equal(wire_enc_record(&b, 2, 1682994600000000000LL, ev2, sizeof(ev2)), 0);
    const uint8_t *p = (const uint8_t *)b.data, *end = p + b.len;
    kabar_record rec;
    assert_int_equal(wire_dec_record(&p, end, &rec, NULL), 0);
    assert_int_equal(rec.seq, 1);
    assert_true(rec.received_at == 1682994600120000000LL);
    assert_int_equal(rec.len, sizeof(ev1));
    assert_memory_equal(rec.bytes, ev1, sizeof(ev1));
    assert_int_equal(wire_dec_record(&p, end, &rec, NULL), 0);
    assert_int_equal(rec.seq, 2);
    assert_int_equal(rec.len, sizeof(ev2));
    assert_ptr_equal(p, end);
    /* Truncated anywhere: an error or a clean stop, never a read past the end. */
    for (size_t cut = 0; cut < b.len; cut++) {
        const uint8_t *q = (const uint8_t *)b.data, *qend = q + cut;
        int rc = 0;
        while (rc == 0 && q < qend)
            rc = wire_dec_record(&q, qend, &rec, NULL);
        assert_true(q <= qend);
    }
    kabar_buf_free(&b);
}

static void test_bad_headers(void **state)
{
    struct {
        const char *name;
        const uint8_t *bytes;
        size_t len;
        int code;
    } cases[] = {
        {"empty", (const uint8_t *)"", 0, KABAR_MALFORMED},
        {"not an array", (const uint8_t *)"\xa3PUB", 4, KABAR_MALFORMED},
        {"too short", (const uint8_t *)"\x92\x01\xa3PUB", 6, KABAR_PROTOCOL},
        {"version 2", (const uint8_t *)"\x93\x02\xa4PING\x01", 8, KABAR_BAD_VERSION},
        {"unknown", (const uint8_t *)"\x93\x01\xa4NOPE\x01", 8, KABAR_UNKNOWN_COMMAND},
        {"id not int", (const uint8_t *)"\x93\x01\xa4PING\xa1x", 9, KABAR_PROTOCOL},
        {"CREDIT without n",
         (const uint8_t *)"\x93\x01\xa6"
                          "CREDIT\x01",
         10, KABAR_PROTOCOL},
        {"truncated", (const uint8_t *)"\x93\x01\xa4PI", 5, KABAR_PROTOCOL},
        {"reserved byte", (const uint8_t *)"\xc1", 1, KABAR_MALFORMED},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        wire_header h;
        kabar_error err = {0};
        int rc = wire_header_decode(cases[i].bytes, cases[i].len, &h, &err);
        if (rc != cases[i].code)
            fail_msg("%s: got %s (%s)", cases[i].name, kabar_errname(rc), err.message);
        assert_true(err.message[0] != '\0');
    }
    /* An unknown command still yields its id, so that ERR can carry it. */
    wire_header h;
    assert_int_equal(wire_header_decode("\x93\x01\xa4NOPE\x2a", 8, &h, NULL),
                     KABAR_UNKNOWN_COMMAND);
    assert_int_equal(h.id, 42);
}

static void test_to_json(void **state)
{
    kabar_buf b = {0}, out = {0};
    msgpack_packer pk;
    wire_packer_init(&pk, &b);
    msgpack_pack_map(&pk, 4);
    msgpack_pack_str_with_body(&pk, "head", 4);
    msgpack_pack_uint64(&pk, 42);
    msgpack_pack_str_with_body(&pk, "name", 4);
    msgpack_pack_str_with_body(&pk, "a\"b\n", 4);
    msgpack_pack_str_with_body(&pk, "at", 2);
    wire_pack_time(&pk, 1682991000120000000LL);
    msgpack_pack_str_with_body(&pk, "list", 4);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_true(&pk);
    msgpack_pack_int64(&pk, -3);
    assert_int_equal(wire_msgpack_to_json(&out, b.data, b.len, NULL), 0);
    assert_int_equal(kabar_buf_append(&out, "", 1), 0);
    assert_string_equal(out.data, "{\"head\":42,\"name\":\"a\\\"b\\u000a\","
                                  "\"at\":\"2023-05-02T01:30:00.120Z\",\"list\":[true,-3]}");
    kabar_buf_free(&b);
    kabar_buf_free(&out);
}

static void test_pub_signature(void **state)
{
    kabar_buf b = {0};
    wire_header h;
    kabar_error err = {0};
    const uint8_t *pk, *sig;
    uint8_t key[32], sg[64];
    msgpack_packer mp;
    memset(key, 0x11, sizeof key);
    memset(sg, 0x22, sizeof sg);

    /* Unsigned: exactly the version-1 header. */
    kabar_buf plain = {0};
    assert_int_equal(wire_enc_pub(&b, 7, NULL, NULL), 0);
    assert_int_equal(wire_enc_cmd(&plain, WIRE_PUB, 7), 0);
    assert_int_equal(b.len, plain.len);
    assert_memory_equal(b.data, plain.data, b.len);
    decode_ok(&b, &h);
    assert_int_equal(wire_pub_decode(&h, &pk, &sig, &err), 0);
    assert_null(pk);
    assert_null(sig);

    /* Signed: [1, "PUB", 7, [bin32, bin64]], the views point at the bytes. */
    assert_int_equal(wire_enc_pub(&b, 7, key, sg), 0);
    static const uint8_t head[] = {0x94, 0x01, 0xa3, 'P', 'U', 'B', 0x07, 0x92, 0xc4, 0x20};
    assert_memory_equal(b.data, head, sizeof head);
    assert_int_equal(b.len, sizeof head + 32 + 2 + 64);
    decode_ok(&b, &h);
    assert_int_equal(h.cmd, WIRE_PUB);
    assert_int_equal(h.id, 7);
    assert_int_equal(h.nrest, 1);
    assert_int_equal(wire_pub_decode(&h, &pk, &sig, &err), 0);
    assert_memory_equal(pk, key, 32);
    assert_memory_equal(sig, sg, 64);
    assert_true((const char *)pk > b.data && (const char *)sig < b.data + b.len);

    /* nil is unsigned; anything else in element 3 is a protocol error. */
    assert_int_equal(wire_enc_cmd(&b, WIRE_PUB, 8), 0);
    b.data[0] = (char)0x94;
    wire_packer_init(&mp, &b);
    msgpack_pack_nil(&mp);
    decode_ok(&b, &h);
    assert_int_equal(wire_pub_decode(&h, &pk, &sig, &err), 0);
    assert_null(pk);

    for (int bad = 0; bad < 4; bad++) {
        assert_int_equal(wire_enc_cmd(&b, WIRE_PUB, 9), 0);
        b.data[0] = (char)0x94;
        wire_packer_init(&mp, &b);
        if (bad == 0) { /* a short key */
            msgpack_pack_array(&mp, 2);
            msgpack_pack_bin_with_body(&mp, key, 31);
            msgpack_pack_bin_with_body(&mp, sg, 64);
        } else if (bad == 1) { /* a short signature */
            msgpack_pack_array(&mp, 2);
            msgpack_pack_bin_with_body(&mp, key, 32);
            msgpack_pack_bin_with_body(&mp, sg, 63);
        } else if (bad == 2) { /* the signature alone */
            msgpack_pack_array(&mp, 1);
            msgpack_pack_bin_with_body(&mp, sg, 64);
        } else { /* text instead of bytes */
            msgpack_pack_array(&mp, 2);
            msgpack_pack_str_with_body(&mp, key, 32);
            msgpack_pack_bin_with_body(&mp, sg, 64);
        }
        decode_ok(&b, &h);
        assert_int_equal(wire_pub_decode(&h, &pk, &sig, &err), KABAR_PROTOCOL);
        assert_non_null(strstr(err.message, "[key bin(32), sig bin(64)]"));
        assert_null(pk);
    }
    kabar_buf_free(&b);
    kabar_buf_free(&plain);
}

static void test_call_result(void **state)
{
    kabar_buf b = {0}, params = {0};
    wire_header h;
    kabar_error err = {0};
    kabar_str method;
    const uint8_t *p;
    size_t len;
    msgpack_packer mp;

    /* CALL with params {"id": "dinkes"}. */
    wire_packer_init(&mp, &params);
    msgpack_pack_map(&mp, 1);
    msgpack_pack_str_with_body(&mp, "id", 2);
    msgpack_pack_str_with_body(&mp, "dinkes", 6);
    assert_int_equal(wire_enc_call(&b, 21, "agency.show", params.data, params.len), 0);
    decode_ok(&b, &h);
    assert_int_equal(h.cmd, WIRE_CALL);
    assert_int_equal(h.id, 21);
    assert_int_equal(wire_call_decode(&h, &method, &p, &len, &err), 0);
    assert_int_equal(method.len, 11);
    assert_memory_equal(method.ptr, "agency.show", 11);
    assert_int_equal(len, params.len);
    assert_memory_equal(p, params.data, len);

    /* No params: an empty map. A trailing element a later version adds is not part of it. */
    assert_int_equal(wire_enc_call(&b, 22, "whoami", NULL, 0), 0);
    static const uint8_t whoami[] = {0x95, 0x01, 0xa4, 'C', 'A', 'L', 'L', 0x16,
                                     0xa6, 'w',  'h',  'o', 'a', 'm', 'i', 0x80};
    assert_int_equal(b.len, sizeof whoami);
    assert_memory_equal(b.data, whoami, sizeof whoami);
    b.data[0] = (char)0x96;
    kabar_buf_append(&b, "\xc3", 1);
    decode_ok(&b, &h);
    assert_int_equal(wire_call_decode(&h, &method, &p, &len, &err), 0);
    assert_int_equal(len, 1);
    assert_int_equal(p[0], 0x80);

    /* Refusals: no method, params not a map, no params. */
    assert_int_equal(wire_enc_call(&b, 23, "", NULL, 0), KABAR_INVALID_ARGUMENT);
    assert_int_equal(wire_enc_call(&b, 23, "x", "\x91\x01", 2), 0);
    decode_ok(&b, &h);
    assert_int_equal(wire_call_decode(&h, &method, &p, &len, &err), KABAR_PROTOCOL);
    assert_non_null(strstr(err.message, "params must be a map"));
    assert_int_equal(wire_enc_cmd(&b, WIRE_CALL, 24), 0);
    decode_ok(&b, &h);
    assert_int_equal(wire_call_decode(&h, &method, &p, &len, &err), KABAR_PROTOCOL);
    /* A map cut short. */
    assert_int_equal(wire_enc_call(&b, 25, "whoami", "\x81\xa1k", 3), 0);
    decode_ok(&b, &h);
    assert_int_equal(wire_call_decode(&h, &method, &p, &len, &err), KABAR_PROTOCOL);

    /* RESULT carries the map as is. */
    assert_int_equal(wire_enc_result(&b, 21, params.data, params.len), 0);
    decode_ok(&b, &h);
    assert_int_equal(h.cmd, WIRE_RESULT);
    assert_int_equal(h.id, 21);
    assert_int_equal(wire_result_decode(&h, &p, &len, &err), 0);
    assert_int_equal(len, params.len);
    assert_memory_equal(p, params.data, len);
    assert_int_equal(wire_enc_result(&b, 22, NULL, 0), 0);
    decode_ok(&b, &h);
    assert_int_equal(wire_result_decode(&h, &p, &len, &err), 0);
    assert_int_equal(len, 1);
    assert_int_equal(wire_enc_cmd(&b, WIRE_RESULT, 26), 0);
    decode_ok(&b, &h);
    assert_int_equal(wire_result_decode(&h, &p, &len, &err), KABAR_PROTOCOL);
    assert_string_equal(wire_cmd_name(WIRE_CALL), "CALL");
    assert_string_equal(wire_cmd_name(WIRE_RESULT), "RESULT");
    kabar_buf_free(&b);
    kabar_buf_free(&params);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple_commands),
        cmocka_unit_test(test_ping_bytes),
        cmocka_unit_test(test_ack),
        cmocka_unit_test(test_ack_extra_elements_ignored),
        cmocka_unit_test(test_err),
        cmocka_unit_test(test_pub_signature),
        cmocka_unit_test(test_call_result),
        cmocka_unit_test(test_sub_round_trip),
        cmocka_unit_test(test_sub_refusals),
        cmocka_unit_test(test_records),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_to_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
