/*
 * json_test.c - the JSON form of events: every type round-trips
 * (JSON -> event -> JSON gives the same text), defaults and errors of
 * kabar_event_from_json name the field, kabar_event_to_json escapes and
 * orders as documented and is fast; and RFC 3339 instants (kabar_time_*).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "kabar.h"

/*
 * One event of each type in the output form: keys in kabar.h's order, body
 * keys in canonical order, instants in UTC.
 */
static const char *const ROUND_TRIP[] = {
    "{\"seq\":1,\"id\":\"vs-2022-001\",\"type\":\"visit.scheduled\",\"v\":1,\"source\":\"setda\","
    "\"targets\":[\"bappeda\"],\"occurred_at\":\"2022-03-28T02:00:00Z\",\"received_at\":"
    "\"2022-03-28T02:00:00.004Z\",\"corr\":\"V-2022-001\",\"body\":{\"agenda\":[\"Program "
    "priorities 2022\",\"Performance achievements\"],\"date\":\"2022-03-31\",\"host\":\"bappeda\","
    "\"program\":\"Kamis Berseri \xe2\x80\x94 pekan 1\",\"team\":\"Tim 1\",\"visit_id\":"
    "\"V-2022-001\",\"visitor\":\"Wali Kota\"}}",
    "{\"seq\":2,\"id\":\"vc-2022-001\",\"type\":\"visit.completed\",\"v\":1,\"source\":\"setda\","
    "\"targets\":[\"bappeda\"],\"occurred_at\":\"2022-03-31T06:00:00Z\",\"received_at\":"
    "\"2022-03-31T06:00:01.250Z\",\"corr\":\"V-2022-001\",\"body\":{\"achievements\":[{"
    "\"indicator\":\"RPJMD indicators on track (%)\",\"realised\":87.5,\"target\":90},{"
    "\"indicator\":\"Budget absorption\",\"realised\":0.1,\"target\":-2.25e-07}],\"attendance\":"
    "{\"present\":41,\"total\":45},\"date\":\"2022-03-31\",\"directives\":[\"Speed up the "
    "e-planning integration\"],\"host\":\"bappeda\",\"plans\":[\"Finish the 2023 RKPD draft\"],"
    "\"problems\":[\"Two vacant posts\\nand a \\\"broken\\\" server\\\\rack\\troom\"],"
    "\"programs\":[\"e-Planning\"],\"visit_id\":\"V-2022-001\"}}",
    "{\"seq\":42,\"id\":\"insp-2023-014\",\"type\":\"finding.raised\",\"v\":1,\"source\":"
    "\"inspektorat\",\"targets\":[\"dinkes\"],\"occurred_at\":\"2023-05-02T01:30:00Z\","
    "\"received_at\":\"2023-05-02T01:30:00.120Z\",\"corr\":\"F-2023-014\",\"body\":{"
    "\"amount_idr\":125000000,\"auditee\":\"dinkes\",\"auditor\":\"inspektorat\",\"cause\":"
    "\"No supervision\",\"condition\":\"Attendance register not kept at two Puskesmas\","
    "\"criterion\":\"Perwal 12/2021\",\"due\":\"2023-07-01\",\"effect\":\"Allowances paid "
    "without evidence\",\"finding_id\":\"F-2023-014\",\"group\":\"internal_control\","
    "\"recommendations\":[{\"rec_id\":\"R1\",\"text\":\"Introduce the electronic attendance "
    "register\"},{\"rec_id\":\"R2\",\"text\":\"Recover the allowances\"}],\"report_received\":"
    "\"2023-05-02\"}}",
    "{\"seq\":43,\"id\":\"dinkes-tl-0042\",\"type\":\"finding.responded\",\"v\":1,\"source\":"
    "\"dinkes\",\"targets\":[\"inspektorat\"],\"occurred_at\":\"2023-06-20T03:15:00.123456Z\","
    "\"received_at\":\"2023-06-20T03:15:00.123456789Z\",\"corr\":\"F-2023-014\",\"body\":{"
    "\"action\":\"Electronic register installed\",\"deposit_idr\":18446744073709551,"
    "\"evidence\":[\"BA-445/2023\"],\"finding_id\":\"F-2023-014\",\"rec_id\":\"R1\"}}",
    "{\"seq\":44,\"id\":\"insp-rv-088\",\"type\":\"finding.reviewed\",\"v\":1,\"source\":"
    "\"inspektorat\",\"targets\":[\"dinkes\"],\"occurred_at\":\"2023-07-05T02:00:00Z\","
    "\"received_at\":\"2023-07-05T02:00:00Z\",\"body\":{\"finding_id\":\"F-2023-014\",\"reason\":"
    "\"Register in use\",\"rec_id\":\"R1\",\"reviewer\":\"Irban II\",\"status\":\"TD\"}}",
    "{\"seq\":45,\"id\":\"setda-od-007\",\"type\":\"finding.overdue\",\"v\":1,\"source\":"
    "\"setda\",\"targets\":[\"dinkes\",\"inspektorat\"],\"occurred_at\":\"2023-07-02T00:00:00Z\","
    "\"received_at\":\"2023-07-02T00:00:00.001Z\",\"corr\":\"F-2023-015\",\"body\":{\"auditee\":"
    "\"dinkes\",\"days_overdue\":1,\"due\":\"2023-07-01\",\"finding_id\":\"F-2023-015\","
    "\"open_recs\":[\"R1\",\"R2\"]}}",
    "{\"seq\":46,\"id\":\"dinkes-ino-003\",\"type\":\"innovation.submitted\",\"v\":1,\"source\":"
    "\"dinkes\",\"occurred_at\":\"2022-04-11T01:00:00Z\",\"received_at\":\"2022-04-11T01:00:00Z\","
    "\"body\":{\"acronym\":\"BUAH SABAR\",\"category\":\"environment\",\"competition\":\"KIPP "
    "2022\",\"digital\":false,\"innovation_id\":\"INO-2022-003\",\"name\":\"Buang Air Limbah "
    "dengan Sarana Bersih\",\"owner\":\"dinkes\",\"sdgs\":[3,6,17],\"stage\":\"applied\","
    "\"started\":\"2020-02-01\",\"summary\":\"Rumah tangga \xe2\x9c\x93\",\"unit\":\"Puskesmas "
    "Ko'mara\"}}",
    "{\"seq\":47,\"id\":\"setda-adv-091\",\"type\":\"innovation.advanced\",\"v\":1,\"source\":"
    "\"setda\",\"targets\":[\"dinkes\"],\"occurred_at\":\"2022-06-15T04:00:00Z\",\"received_at\":"
    "\"2022-06-15T04:00:00Z\",\"body\":{\"competition\":\"KIPP 2022\",\"innovation_id\":"
    "\"INO-2022-003\",\"ref\":\"B/123/ORG/2022\",\"stage\":\"shortlisted\"}}",
    "{\"seq\":48,\"id\":\"setda-awd-012\",\"type\":\"innovation.awarded\",\"v\":1,\"source\":"
    "\"setda\",\"targets\":[\"dinkes\"],\"occurred_at\":\"2022-09-20T05:30:00Z\",\"received_at\":"
    "\"2022-09-20T05:30:00Z\",\"body\":{\"award\":\"Top 45\",\"competition\":\"KIPP 2022\","
    "\"decree\":\"KepMenPANRB 512/2022\",\"innovation_id\":\"INO-2022-003\",\"rank\":12}}",
    "{\"seq\":49,\"id\":\"dinkes-att-0426\",\"type\":\"attendance.reported\",\"v\":1,\"source\":"
    "\"dinkes\",\"targets\":[\"setda\"],\"occurred_at\":\"1969-12-31T23:59:59.500Z\","
    "\"received_at\":\"2023-04-26T01:30:00Z\",\"body\":{\"absent\":{\"leave\":2,\"sick\":3,"
    "\"unexplained\":1},\"agency\":\"dinkes\",\"date\":\"2023-04-26\",\"occasion\":\"first day "
    "after Eid 2023\",\"present\":112,\"total\":118}}",
};

static int64_t parse_time(const char *s)
{
    int64_t ns;
    kabar_error e;
    if (kabar_time_parse(s, strlen(s), &ns, &e) != 0)
        fail_msg("%s: %s", s, e.message);
    return ns;
}

/* The seq and received_at of a round-trip text (what the log would hold). */
static void log_fields(const char *json, uint64_t *seq, int64_t *rx)
{
    *seq = strtoull(json + 7, NULL, 10);
    const char *r = strstr(json, "\"received_at\":\"") + 15;
    char t[64];
    snprintf(t, sizeof t, "%.*s", (int)(strchr(r, '"') - r), r);
    *rx = parse_time(t);
}

static void test_round_trip_every_type(void **state)
{
    for (size_t i = 0; i < sizeof ROUND_TRIP / sizeof ROUND_TRIP[0]; i++) {
        const char *in = ROUND_TRIP[i];
        uint8_t *ev = NULL;
        size_t n = 0;
        kabar_error e;
        if (kabar_event_from_json(kabar_schema_builtin(), in, strlen(in), NULL, &ev, &n, &e) != 0)
            fail_msg("event %zu: %s", i, e.message);
        uint64_t seq;
        int64_t rx;
        log_fields(in, &seq, &rx);
        kabar_buf out = {0};
        assert_int_equal(kabar_event_to_json(&out, seq, rx, ev, n, &e), 0);
        if (strcmp(out.data, in) != 0)
            fail_msg("event %zu:\n in:  %s\n out: %s", i, in, out.data);
        /* And the same event again gives the same bytes. */
        uint8_t *again = NULL;
        size_t n2 = 0;
        assert_int_equal(
            kabar_event_from_json(kabar_schema_builtin(), out.data, out.len, NULL, &again, &n2, &e),
            0);
        assert_int_equal(n2, n);
        assert_memory_equal(again, ev, n);
        free(again);
        free(ev);
        kabar_buf_free(&out);
    }
}

/* Input in any key order and with zone offsets gives the canonical bytes. */
static void test_from_json_canonicalises(void **state)
{
    const char *a = "{\"body\":{\"total\":10,\"present\":9,\"date\":\"2023-04-26\",\"agency\":"
                    "\"dinkes\"},\"v\":1,\"type\":\"attendance.reported\",\"source\":\"dinkes\","
                    "\"id\":\"x\",\"occurred_at\":\"2023-04-26T08:30:00+07:00\"}";
    const char *b = "{\"id\":\"x\",\"type\":\"attendance.reported\",\"source\":\"dinkes\","
                    "\"occurred_at\":\"2023-04-26T01:30:00.000Z\",\"body\":{\"agency\":\"dinkes\","
                    "\"date\":\"2023-04-26\",\"present\":9.0,\"total\":10}}";
    uint8_t *x, *y;
    size_t nx, ny;
    kabar_error e;
    assert_int_equal(kabar_event_from_json(kabar_schema_builtin(), a, strlen(a), NULL, &x, &nx, &e),
                     0);
    assert_int_equal(kabar_event_from_json(kabar_schema_builtin(), b, strlen(b), NULL, &y, &ny, &e),
                     0);
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, nx);
    kabar_buf out = {0};
    assert_int_equal(kabar_event_to_json(&out, 0, INT64_MIN, x, nx, &e), 0);
    assert_string_equal(out.data, "{\"id\":\"x\",\"type\":\"attendance.reported\",\"v\":1,"
                                  "\"source\":\"dinkes\",\"occurred_at\":\"2023-04-26T01:30:00Z\","
                                  "\"body\":{\"agency\":\"dinkes\",\"date\":\"2023-04-26\","
                                  "\"present\":9,\"total\":10}}");
    /* Appends: a second event goes after the first. */
    size_t first = out.len;
    assert_int_equal(kabar_event_to_json(&out, 7, INT64_MIN, x, nx, &e), 0);
    assert_int_equal(strncmp(out.data + first, "{\"seq\":7,\"id\"", 13), 0);
    kabar_buf_free(&out);
    free(x);
    free(y);
}

static void test_from_json_defaults(void **state)
{
    const char *j = "{\"type\":\"visit.scheduled\",\"seq\":99,\"received_at\":\"x\",\"body\":{"
                    "\"visit_id\":\"V-7\",\"host\":\"dinkes\",\"visitor\":\"Sekda\",\"date\":"
                    "\"2023-05-04\"},\"corr\":null}";
    uint8_t *ev;
    size_t n;
    kabar_error e;
    assert_int_equal(kabar_event_from_json(kabar_schema_builtin(), j, strlen(j), NULL, &ev, &n, &e),
                     KABAR_MISSING_FIELD);
    assert_string_equal(e.message, "source: required field missing (the publishing agency's id)");
    int64_t before = kabar_now();
    if (kabar_event_from_json(kabar_schema_builtin(), j, strlen(j), "setda", &ev, &n, &e) != 0)
        fail_msg("%s", e.message);
    int64_t after = kabar_now();
    kabar_event d;
    assert_int_equal(kabar_event_decode(kabar_schema_builtin(), ev, n, &d, &e), 0);
    assert_int_equal(d.id.len, 36); /* a UUIDv7 */
    assert_int_equal(d.id.ptr[14], '7');
    assert_memory_equal(d.source.ptr, "setda", 5);
    assert_int_equal(d.v, 1);
    assert_true(d.has_occurred_at && d.occurred_at >= before && d.occurred_at <= after);
    assert_int_equal(d.ntargets, 1); /* the host is a target */
    assert_memory_equal(d.targets[0].ptr, "dinkes", 6);
    assert_null(d.corr.ptr);
    free(ev);
    /* A host already in targets is not added twice; others stay in order. */
    const char *k = "{\"type\":\"visit.scheduled\",\"source\":\"setda\",\"targets\":[\"bappeda\","
                    "\"dinkes\"],\"body\":{\"visit_id\":\"V-7\",\"host\":\"dinkes\",\"visitor\":"
                    "\"Sekda\",\"date\":\"2023-05-04\"}}";
    assert_int_equal(kabar_event_from_json(kabar_schema_builtin(), k, strlen(k), NULL, &ev, &n, &e),
                     0);
    assert_int_equal(kabar_event_decode(kabar_schema_builtin(), ev, n, &d, &e), 0);
    assert_int_equal(d.ntargets, 2);
    free(ev);
    char id1[37], id2[37];
    kabar_id_new(id1);
    kabar_id_new(id2);
    assert_int_equal(strlen(id1), 36);
    assert_string_not_equal(id1, id2);
    assert_true(id1[19] == '8' || id1[19] == '9' || id1[19] == 'a' || id1[19] == 'b');
}

#define FROM_JSON_FAILS(json, code, msg)                                                           \
    do {                                                                                           \
        uint8_t *ev_ = NULL;                                                                       \
        size_t n_ = 0;                                                                             \
        kabar_error e_ = {0};                                                                      \
        int rc_ = kabar_event_from_json(kabar_schema_builtin(), json, strlen(json), "setda", &ev_, \
                                        &n_, &e_);                                                 \
        if (rc_ != (code) || strncmp(e_.message, msg, strlen(msg)) != 0)                           \
            fail_msg("%s\n expected %s \"%s\", got %s \"%s\"", json, kabar_errname(code), msg,     \
                     kabar_errname(rc_), e_.message);                                              \
        assert_null(ev_);                                                                          \
    } while (0)

#define REVIEW(body)                                                                               \
    "{\"type\":\"finding.reviewed\",\"body\":{\"finding_id\":\"F-1\",\"rec_id\":\"R1\","           \
    "\"reviewer\":\"Irban\",\"status\":\"S\"" body "}}"

static void test_from_json_errors(void **state)
{
    FROM_JSON_FAILS("{\"type\":", KABAR_BAD_JSON, "line 1 column");
    FROM_JSON_FAILS("[1]", KABAR_BAD_JSON, "an event is a JSON object; found an array");
    FROM_JSON_FAILS("{\"type\":\"a\",\"type\":\"b\"}", KABAR_BAD_JSON, "line 1");
    FROM_JSON_FAILS("{\"body\":{}}", KABAR_MISSING_FIELD, "type: required field missing");
    FROM_JSON_FAILS("{\"type\":\"visit.cancelled\",\"body\":{}}", KABAR_UNKNOWN_TYPE,
                    "type: \"visit.cancelled\" is not a registered event type");
    FROM_JSON_FAILS("{\"type\":\"finding.reviewed\"}", KABAR_MISSING_FIELD,
                    "body: required field missing");
    FROM_JSON_FAILS("{\"type\":\"finding.reviewed\",\"body\":[]}", KABAR_WRONG_TYPE,
                    "body: expected an object, found an array");
    FROM_JSON_FAILS("{\"type\":7,\"body\":{}}", KABAR_WRONG_TYPE, "type: expected a string");
    FROM_JSON_FAILS("{\"type\":\"finding.reviewed\",\"v\":\"1\",\"body\":{}}", KABAR_WRONG_TYPE,
                    "v: expected an integer, found a string");
    FROM_JSON_FAILS("{\"type\":\"finding.reviewed\",\"v\":3,\"body\":{}}", KABAR_UNKNOWN_VERSION,
                    "v: finding.reviewed has no version 3 (newest: 1)");
    FROM_JSON_FAILS("{\"type\":\"finding.reviewed\",\"priority\":1,\"body\":{}}",
                    KABAR_UNKNOWN_FIELD, "priority: unknown envelope field");
    FROM_JSON_FAILS("{\"type\":\"finding.reviewed\",\"targets\":\"dinkes\",\"body\":{}}",
                    KABAR_WRONG_TYPE, "targets: expected an array of agency ids, found a string");
    FROM_JSON_FAILS("{\"type\":\"finding.reviewed\",\"targets\":[\"dinkes\",7],\"body\":{}}",
                    KABAR_WRONG_TYPE, "targets[1]: expected an agency id string, found an integer");
    FROM_JSON_FAILS("{\"type\":\"finding.reviewed\",\"occurred_at\":\"2023-05-02 08:30\","
                    "\"body\":{}}",
                    KABAR_BAD_VALUE, "occurred_at: not a valid instant");
    FROM_JSON_FAILS("{\"type\":\"finding.reviewed\",\"occurred_at\":1683000000,\"body\":{}}",
                    KABAR_WRONG_TYPE, "occurred_at: expected an RFC 3339 string");
    FROM_JSON_FAILS(REVIEW(",\"statuss\":\"S\""), KABAR_UNKNOWN_FIELD,
                    "body.statuss: unknown field");
    FROM_JSON_FAILS(REVIEW(",\"reason\":42"), KABAR_WRONG_TYPE,
                    "body.reason: expected a string, found an integer");
    FROM_JSON_FAILS("{\"type\":\"finding.raised\",\"body\":{\"recommendations\":[{\"rec_id\":1}]}}",
                    KABAR_WRONG_TYPE,
                    "body.recommendations[0].rec_id: expected a string, found an integer");
    FROM_JSON_FAILS("{\"type\":\"finding.raised\",\"body\":{\"recommendations\":[{\"rec_id\":"
                    "\"R1\",\"txt\":\"x\"}]}}",
                    KABAR_UNKNOWN_FIELD, "body.recommendations[0].txt: unknown field");
    FROM_JSON_FAILS("{\"type\":\"finding.overdue\",\"body\":{\"days_overdue\":1.5}}",
                    KABAR_WRONG_TYPE, "body.days_overdue: expected an integer, found a number");
    FROM_JSON_FAILS("{\"type\":\"innovation.submitted\",\"body\":{\"digital\":1}}",
                    KABAR_WRONG_TYPE, "body.digital: expected true or false");
    /* What only the decoder can tell is reported by it, with the same paths. */
    FROM_JSON_FAILS(REVIEW(",\"status\":\"X\""), KABAR_BAD_JSON, "line");
    FROM_JSON_FAILS("{\"type\":\"finding.reviewed\",\"body\":{\"finding_id\":\"F-1\",\"rec_id\":"
                    "\"R1\",\"status\":\"S\"}}",
                    KABAR_MISSING_FIELD, "body.reviewer: required field missing");
    FROM_JSON_FAILS("{\"type\":\"finding.reviewed\",\"source\":\"Dinkes\",\"body\":{}}",
                    KABAR_BAD_VALUE, "source: \"Dinkes\" is not an agency id");
    FROM_JSON_FAILS(REVIEW(",\"reason\":\"a\\u0007b\""), KABAR_BAD_VALUE,
                    "body.reason: control character U+0007");
}

/* Escaping, numbers and the omission rules of kabar_event_to_json. */
static void test_to_json_writer(void **state)
{
    /* An event with no schema behind it: any body values. */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    msgpack_pack_str_with_body(&pk, "body", 4);
    msgpack_pack_map(&pk, 5);
    msgpack_pack_str_with_body(&pk, "a", 1);
    msgpack_pack_str_with_body(&pk, "\x01\x1f\"\\/\b\f\xc3\xa9\x7f", 10);
    msgpack_pack_str_with_body(&pk, "b", 1);
    msgpack_pack_int64(&pk, INT64_MIN);
    msgpack_pack_str_with_body(&pk, "c", 1);
    msgpack_pack_nil(&pk);
    msgpack_pack_str_with_body(&pk, "d", 1);
    msgpack_pack_double(&pk, 1e300);
    msgpack_pack_str_with_body(&pk, "e", 1);
    msgpack_pack_array(&pk, 0);
    static const char *const kv[] = {"id", "i", "source", "setda", "type", "t"};
    for (int i = 0; i < 6; i++)
        msgpack_pack_str_with_body(&pk, kv[i], strlen(kv[i]));
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_uint8(&pk, 3);
    kabar_buf out = {0};
    kabar_error e;
    assert_int_equal(kabar_event_to_json(&out, UINT64_MAX, INT64_MIN, sb.data, sb.size, &e), 0);
    assert_string_equal(out.data,
                        "{\"seq\":18446744073709551615,\"id\":\"i\",\"type\":\"t\",\"v\":3,"
                        "\"source\":\"setda\",\"body\":{\"a\":\"\\u0001\\u001f\\\"\\\\/"
                        "\\b\\f\xc3\xa9\x7f\",\"b\":-9223372036854775808,\"c\":null,"
                        "\"d\":1e+300,\"e\":[]}}");
    /* A broken event is refused and the buffer left as it was. */
    size_t len = out.len;
    assert_int_equal(kabar_event_to_json(&out, 1, 0, sb.data, sb.size - 1, &e), KABAR_MALFORMED);
    assert_int_equal(out.len, len);
    kabar_buf_free(&out);
    msgpack_sbuffer_destroy(&sb);
}

/* ------------------------------------------------------------------------ */
/* Instants                                                                 */

static void test_time_parse(void **state)
{
    assert_true(parse_time("1970-01-01T00:00:00Z") == 0);
    assert_true(parse_time("2023-05-02T08:30:00+07:00") == 1682991000LL * 1000000000);
    assert_true(parse_time("2023-05-02T09:30:00+08:00") == 1682991000LL * 1000000000);
    assert_true(parse_time("2023-05-01T22:30:00-03:00") == 1682991000LL * 1000000000);
    assert_true(parse_time("2023-05-02t01:30:00z") == 1682991000LL * 1000000000);
    assert_true(parse_time("2023-05-02T01:30:00.12Z") == 1682991000120000000LL);
    assert_true(parse_time("2023-05-02T01:30:00.123456789Z") == 1682991000123456789LL);
    assert_true(parse_time("2024-02-29T00:00:00Z") == 1709164800LL * 1000000000);
    assert_true(parse_time("2000-02-29T12:00:00Z") == 951825600LL * 1000000000);
    assert_true(parse_time("1969-12-31T23:59:59.5Z") == -500000000LL);
    assert_true(parse_time("2262-04-11T23:47:16.854775807Z") == INT64_MAX);
    assert_true(parse_time("1677-09-21T00:12:43.145224192Z") == INT64_MIN);
    static const char *const bad[] = {
        "2023-02-29T00:00:00Z",            /* not a leap year */
        "1900-02-29T00:00:00Z",            /* century, not a leap year */
        "2023-04-31T00:00:00Z",            /* April has 30 days */
        "2023-13-01T00:00:00Z",            /* month 13 */
        "2023-00-10T00:00:00Z",            /* month 0 */
        "2023-05-02T24:00:00Z",            /* hour 24 */
        "2023-05-02T23:60:00Z",            /* minute 60 */
        "2023-12-31T23:59:60Z",            /* leap second */
        "2023-05-02T01:30:00",             /* no zone */
        "2023-05-02T01:30Z",               /* no seconds */
        "2023-05-02 01:30:00Z",            /* space */
        "2023-05-02T01:30:00.Z",           /* empty fraction */
        "2023-05-02T01:30:00.1234567891Z", /* 10 fraction digits */
        "2023-05-02T01:30:00+0700",        /* offset without colon */
        "2023-05-02T01:30:00+24:00",       /* offset hour */
        "2023-05-02T01:30:00Zjunk",        /* trailing */
        "2262-04-11T23:47:16.854775808Z",  /* one ns past int64 */
        "9999-12-31T23:59:59Z",
        "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int64_t ns;
        kabar_error e = {0};
        if (kabar_time_parse(bad[i], strlen(bad[i]), &ns, &e) != KABAR_BAD_VALUE)
            fail_msg("%s was accepted", bad[i]);
        assert_int_equal(e.code, KABAR_BAD_VALUE);
    }
}

static void test_time_format(void **state)
{
    static const struct {
        int64_t ns;
        const char *text;
    } cases[] = {
        {0, "1970-01-01T00:00:00Z"},
        {1682991000LL * 1000000000, "2023-05-02T01:30:00Z"},
        {1682991000120000000LL, "2023-05-02T01:30:00.120Z"},
        {1682991000123456000LL, "2023-05-02T01:30:00.123456Z"},
        {1682991000000000001LL, "2023-05-02T01:30:00.000000001Z"},
        {-1, "1969-12-31T23:59:59.999999999Z"},
        {1709164800LL * 1000000000, "2024-02-29T00:00:00Z"},
        {INT64_MAX, "2262-04-11T23:47:16.854775807Z"},
        {INT64_MIN, "1677-09-21T00:12:43.145224192Z"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[KABAR_TIME_MAX];
        size_t n = kabar_time_format(cases[i].ns, out);
        assert_string_equal(out, cases[i].text);
        assert_int_equal(n, strlen(cases[i].text));
        assert_true(parse_time(out) == cases[i].ns);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_every_type),
        cmocka_unit_test(test_from_json_canonicalises),
        cmocka_unit_test(test_from_json_defaults),
        cmocka_unit_test(test_from_json_errors),
        cmocka_unit_test(test_to_json_writer),
        cmocka_unit_test(test_time_parse),
        cmocka_unit_test(test_time_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
