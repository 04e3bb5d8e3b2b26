/*
 * event_test.c - kabar_event_decode: the ten event types valid and invalid,
 * every envelope rule, canonical form, limits and UTF-8, each with the code
 * and the message path a publisher would see; plus the error table.
 *
 * Test events are written as JSON and packed by pack_json below, which does
 * what it is told (keys in the given order unless asked to sort, strings
 * "ts:<RFC 3339>" as timestamps, "hex:<bytes>" as raw strings, "u8:<n>" as a
 * uint8), so that broken events can be built as easily as good ones.
 */
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

#include "kabar.h"
#include "mpr.h"

/* ------------------------------------------------------------------------ */
/* Building test events                                                     */

static int cmp_keys(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    return mpr_key_order(x, (uint32_t)strlen(x), y, (uint32_t)strlen(y));
}

static void pack_any(msgpack_packer *pk, json_t *v, bool sort, const char *key)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *keys[256];
        size_t n = 0;
        const char *k;
        json_t *val;
        json_object_foreach(v, k, val) keys[n++] = k;
        if (sort)
            qsort(keys, n, sizeof keys[0], cmp_keys);
        msgpack_pack_map(pk, n);
        for (size_t i = 0; i < n; i++) {
            msgpack_pack_str_with_body(pk, keys[i], strlen(keys[i]));
            pack_any(pk, json_object_get(v, keys[i]), sort, keys[i]);
        }
        break;
    }
    case JSON_ARRAY:
        msgpack_pack_array(pk, json_array_size(v));
        for (size_t i = 0; i < json_array_size(v); i++)
            pack_any(pk, json_array_get(v, i), sort, NULL);
        break;
    case JSON_STRING: {
        const char *s = json_string_value(v);
        if (strncmp(s, "ts:", 3) == 0 || (key && strcmp(key, "occurred_at") == 0)) {
            int64_t ns;
            kabar_error e;
            const char *t = strncmp(s, "ts:", 3) == 0 ? s + 3 : s;
            if (kabar_time_parse(t, strlen(t), &ns, &e) != 0)
                fail_msg("bad test time %s: %s", t, e.message);
            msgpack_timestamp ts = {ns / 1000000000, (uint32_t)(ns % 1000000000)};
            msgpack_pack_timestamp(pk, &ts);
        } else if (strncmp(s, "hex:", 4) == 0) {
            size_t n = strlen(s + 4) / 2;
            char buf[256];
            for (size_t i = 0; i < n; i++)
                sscanf(s + 4 + 2 * i, "%2hhx", (unsigned char *)&buf[i]);
            msgpack_pack_str_with_body(pk, buf, n);
        } else if (strncmp(s, "u8:", 3) == 0) {
            msgpack_pack_fix_uint8(pk, (uint8_t)atoi(s + 3));
        } else {
            msgpack_pack_str_with_body(pk, s, json_string_length(v));
        }
        break;
    }
    case JSON_INTEGER:
        msgpack_pack_int64(pk, json_integer_value(v));
        break;
    case JSON_REAL:
        msgpack_pack_double(pk, json_real_value(v));
        break;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        break;
    default:
        msgpack_pack_nil(pk);
    }
}

static msgpack_sbuffer sb;

/* Pack a JSON text into sb (owned by this file; valid until the next call). */
static void pack_json(const char *json, bool sort)
{
    json_error_t je;
    json_t *root = json_loads(json, 0, &je);
    if (root == NULL)
        fail_msg("test JSON: %s in %s", je.text, json);
    msgpack_sbuffer_clear(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_any(&pk, root, sort, NULL);
    json_decref(root);
}

/* Replace the first `from` in `s` by `to` (the test's own copy). */
static const char *edit(const char *s, const char *from, const char *to)
{
    static char out[8192];
    const char *at = strstr(s, from);
    if (at == NULL)
        fail_msg("edit: %s not found in %s", from, s);
    snprintf(out, sizeof out, "%.*s%s%s", (int)(at - s), s, to, at + strlen(from));
    return out;
}

static void expect_ok(const char *json)
{
    pack_json(json, true);
    kabar_event ev;
    kabar_error e = {0};
    int rc = kabar_event_decode(kabar_schema_builtin(), sb.data, sb.size, &ev, &e);
    if (rc != 0)
        fail_msg("expected a valid event, got %s: %s\n  in %s", kabar_errname(rc), e.message, json);
}

/* Decoding must fail with `code` and a message starting with `prefix`. */
static void expect_fail_bytes(const kabar_schema *s, int code, const char *prefix)
{
    kabar_event ev;
    kabar_error e = {0};
    int rc = kabar_event_decode(s, sb.data, sb.size, &ev, &e);
    if (rc != code || e.code != code || strncmp(e.message, prefix, strlen(prefix)) != 0)
        fail_msg("expected %s \"%s...\", got %s \"%s\"", kabar_errname(code), prefix,
                 kabar_errname(rc), e.message);
}

static void expect_fail(const char *json, int code, const char *prefix)
{
    pack_json(json, true);
    expect_fail_bytes(kabar_schema_builtin(), code, prefix);
}

/* ------------------------------------------------------------------------ */
/* The ten types                                                            */

static const char *const VISIT_SCHEDULED =
    "{\"id\":\"vs-2022-001\",\"type\":\"visit.scheduled\",\"v\":1,\"source\":\"setda\","
    "\"targets\":[\"bappeda\"],\"occurred_at\":\"2022-03-28T02:00:00Z\",\"corr\":\"V-2022-001\","
    "\"body\":{\"agenda\":[\"Program priorities 2022\",\"Performance achievements\"],"
    "\"date\":\"2022-03-31\",\"host\":\"bappeda\",\"program\":\"Kamis Berseri \u2014 pekan 1\","
    "\"team\":\"Tim 1\",\"visit_id\":\"V-2022-001\",\"visitor\":\"Wali Kota\"}}";
static const char *const VISIT_COMPLETED =
    "{\"id\":\"vc-2022-001\",\"type\":\"visit.completed\",\"v\":1,\"source\":\"setda\","
    "\"targets\":[\"bappeda\"],\"occurred_at\":\"2022-03-31T06:00:00Z\",\"corr\":\"V-2022-001\","
    "\"body\":{\"achievements\":[{\"indicator\":\"RPJMD indicators on track (%)\",\"realised\":"
    "87.5,\"target\":90}],\"attendance\":{\"present\":41,\"total\":45},\"date\":\"2022-03-31\","
    "\"directives\":[\"Speed up the e-planning integration\"],\"host\":\"bappeda\",\"plans\":["
    "\"Finish the 2023 RKPD draft by May\"],\"problems\":[\"Two vacant functional posts\"],"
    "\"programs\":[\"e-Planning\"],\"visit_id\":\"V-2022-001\"}}";
static const char *const FINDING_RAISED =
    "{\"id\":\"insp-2023-014\",\"type\":\"finding.raised\",\"v\":1,\"source\":\"inspektorat\","
    "\"targets\":[\"dinkes\"],\"occurred_at\":\"2023-05-02T01:30:00Z\",\"corr\":\"F-2023-014\","
    "\"body\":{\"amount_idr\":125000000,\"auditee\":\"dinkes\",\"auditor\":\"inspektorat\","
    "\"cause\":\"No supervision\",\"condition\":\"Attendance register not kept at two "
    "Puskesmas\",\"criterion\":\"Perwal 12/2021\",\"due\":\"2023-07-01\",\"effect\":\"Allowances "
    "paid without evidence\",\"finding_id\":\"F-2023-014\",\"group\":\"internal_control\","
    "\"recommendations\":[{\"rec_id\":\"R1\",\"text\":\"Introduce the electronic attendance "
    "register\"}],\"report_received\":\"2023-05-02\"}}";
static const char *const FINDING_RESPONDED =
    "{\"id\":\"dinkes-tl-0042\",\"type\":\"finding.responded\",\"v\":1,\"source\":\"dinkes\","
    "\"targets\":[\"inspektorat\"],\"occurred_at\":\"2023-06-20T03:15:00Z\",\"corr\":\"F-2023-"
    "014\","
    "\"body\":{\"action\":\"Electronic register installed\",\"deposit_idr\":0,\"evidence\":["
    "\"BA-445/2023\"],\"finding_id\":\"F-2023-014\",\"rec_id\":\"R1\"}}";
static const char *const FINDING_REVIEWED =
    "{\"id\":\"insp-rv-088\",\"type\":\"finding.reviewed\",\"v\":1,\"source\":\"inspektorat\","
    "\"targets\":[\"dinkes\"],\"occurred_at\":\"2023-07-05T02:00:00Z\",\"body\":{\"finding_id\":"
    "\"F-2023-014\",\"reason\":\"Register in use\",\"rec_id\":\"R1\",\"reviewer\":\"Irban II\","
    "\"status\":\"S\"}}";
static const char *const FINDING_OVERDUE =
    "{\"id\":\"setda-od-007\",\"type\":\"finding.overdue\",\"v\":1,\"source\":\"setda\","
    "\"targets\":[\"dinkes\"],\"occurred_at\":\"2023-07-02T00:00:00Z\",\"body\":{\"auditee\":"
    "\"dinkes\",\"days_overdue\":1,\"due\":\"2023-07-01\",\"finding_id\":\"F-2023-015\","
    "\"open_recs\":[\"R1\",\"R2\"]}}";
static const char *const INNOVATION_SUBMITTED =
    "{\"id\":\"dinkes-ino-003\",\"type\":\"innovation.submitted\",\"v\":1,\"source\":\"dinkes\","
    "\"occurred_at\":\"2022-04-11T01:00:00Z\",\"body\":{\"acronym\":\"BUAH SABAR\",\"category\":"
    "\"environment\",\"competition\":\"KIPP 2022\",\"digital\":false,\"innovation_id\":"
    "\"INO-2022-003\",\"name\":\"Buang Air Limbah dengan Sarana Bersih\",\"owner\":\"dinkes\","
    "\"sdgs\":[3,6],\"stage\":\"applied\",\"started\":\"2020-02-01\",\"unit\":\"Puskesmas "
    "Ko'mara\"}}";
static const char *const INNOVATION_ADVANCED =
    "{\"id\":\"setda-adv-091\",\"type\":\"innovation.advanced\",\"v\":1,\"source\":\"setda\","
    "\"targets\":[\"dinkes\"],\"occurred_at\":\"2022-06-15T04:00:00Z\",\"body\":{\"competition\":"
    "\"KIPP 2022\",\"innovation_id\":\"INO-2022-003\",\"ref\":\"B/123/ORG/2022\",\"stage\":"
    "\"shortlisted\"}}";
static const char *const INNOVATION_AWARDED =
    "{\"id\":\"setda-awd-012\",\"type\":\"innovation.awarded\",\"v\":1,\"source\":\"setda\","
    "\"targets\":[\"dinkes\"],\"occurred_at\":\"2022-09-20T05:30:00Z\",\"body\":{\"award\":"
    "\"Top 45\",\"competition\":\"KIPP 2022\",\"innovation_id\":\"INO-2022-003\",\"rank\":12}}";
static const char *const ATTENDANCE_REPORTED =
    "{\"id\":\"dinkes-att-0426\",\"type\":\"attendance.reported\",\"v\":1,\"source\":\"dinkes\","
    "\"occurred_at\":\"2023-04-26T01:30:00Z\",\"body\":{\"absent\":{\"leave\":2,\"sick\":3,"
    "\"unexplained\":1},\"agency\":\"dinkes\",\"date\":\"2023-04-26\",\"occasion\":\"first day "
    "after Eid 2023\",\"present\":112,\"total\":118}}";

static void test_all_types_valid(void **state)
{
    const char *all[] = {VISIT_SCHEDULED,      VISIT_COMPLETED,     FINDING_RAISED,
                         FINDING_RESPONDED,    FINDING_REVIEWED,    FINDING_OVERDUE,
                         INNOVATION_SUBMITTED, INNOVATION_ADVANCED, INNOVATION_AWARDED,
                         ATTENDANCE_REPORTED};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        expect_ok(all[i]);
    /* Only the required fields. */
    expect_ok(
        "{\"id\":\"a\",\"type\":\"innovation.awarded\",\"v\":1,\"source\":\"setda\",\"body\":"
        "{\"award\":\"Juara 1\",\"competition\":\"KOINYANLIK 2022\",\"innovation_id\":\"I\"}}");
}

static void test_decoded_fields(void **state)
{
    pack_json(FINDING_RAISED, true);
    kabar_event ev;
    kabar_error e;
    assert_int_equal(kabar_event_decode(kabar_schema_builtin(), sb.data, sb.size, &ev, &e), 0);
    assert_int_equal(ev.id.len, 13);
    assert_memory_equal(ev.id.ptr, "insp-2023-014", 13);
    assert_memory_equal(ev.type.ptr, "finding.raised", ev.type.len);
    assert_int_equal(ev.v, 1);
    assert_memory_equal(ev.source.ptr, "inspektorat", ev.source.len);
    assert_int_equal(ev.ntargets, 1);
    assert_memory_equal(ev.targets[0].ptr, "dinkes", 6);
    assert_true(ev.has_occurred_at);
    assert_true(ev.occurred_at == 1682991000LL * 1000000000);
    assert_memory_equal(ev.corr.ptr, "F-2023-014", 10);
    /* The body is the exact bytes of the body map, at the start (key "body" first). */
    assert_ptr_equal(ev.body, (const uint8_t *)sb.data + 6);
    assert_true(ev.body[0] == 0x8c); /* fixmap of 12 entries */
    pack_json(INNOVATION_SUBMITTED, true);
    assert_int_equal(kabar_event_decode(kabar_schema_builtin(), sb.data, sb.size, &ev, &e), 0);
    assert_int_equal(ev.ntargets, 0);
    assert_null(ev.corr.ptr);
}

static void test_each_type_invalid(void **state)
{
    expect_fail(edit(VISIT_SCHEDULED, "2022-03-31", "2022-02-30"), KABAR_BAD_VALUE,
                "body.date: \"2022-02-30\" is not a valid date");
    expect_fail(edit(VISIT_SCHEDULED, "\"visitor\":\"Wali Kota\"", "\"visitr\":\"Wali Kota\""),
                KABAR_UNKNOWN_FIELD, "body.visitr: unknown field");
    expect_fail(edit(VISIT_COMPLETED, "\"present\":41", "\"present\":46"), KABAR_BAD_VALUE,
                "body.attendance.present: must not be more than total");
    expect_fail(edit(VISIT_COMPLETED, "\"realised\":87.5", "\"realised\":\"87.5\""),
                KABAR_WRONG_TYPE, "body.achievements[0].realised: expected a number");
    expect_fail(edit(FINDING_RAISED, "\"rec_id\":\"R1\",", ""), KABAR_MISSING_FIELD,
                "body.recommendations[0].rec_id: required field missing");
    expect_fail(edit(FINDING_RAISED, "internal_control", "other"), KABAR_BAD_VALUE,
                "body.group: \"other\" is not one of: compliance, internal_control, 3e");
    expect_fail(edit(FINDING_RAISED, "125000000", "-5"), KABAR_BAD_VALUE,
                "body.amount_idr: out of range");
    expect_fail(edit(FINDING_RAISED, "\"due\":\"2023-07-01\"", "\"due\":\"2023-04-01\""),
                KABAR_BAD_VALUE, "body.report_received: must not be after due");
    expect_fail(edit(FINDING_RAISED, "\"targets\":[\"dinkes\"]", "\"targets\":[\"bappeda\"]"),
                KABAR_BAD_VALUE, "targets: must include \"dinkes\" (body.auditee");
    expect_fail(edit(FINDING_RAISED, "\"targets\":[\"dinkes\"],", ""), KABAR_BAD_VALUE,
                "targets: must include \"dinkes\"");
    expect_fail(edit(FINDING_RESPONDED, "[\"BA-445/2023\"]", "\"BA-445/2023\""), KABAR_WRONG_TYPE,
                "body.evidence: expected an array, found a string");
    expect_fail(edit(FINDING_REVIEWED, "\"status\":\"S\"", "\"status\":\"OK\""), KABAR_BAD_VALUE,
                "body.status: \"OK\" is not one of: S, BS, BD, TD");
    expect_fail(edit(FINDING_OVERDUE, "[\"R1\",\"R2\"]", "[]"), KABAR_BAD_VALUE,
                "body.open_recs: needs at least 1 item");
    expect_fail(edit(FINDING_OVERDUE, "\"days_overdue\":1", "\"days_overdue\":\"1\""),
                KABAR_WRONG_TYPE, "body.days_overdue: expected an integer, found a string");
    expect_fail(edit(INNOVATION_SUBMITTED, "[3,6]", "[3,18]"), KABAR_BAD_VALUE,
                "body.sdgs[1]: out of range (expected 1 to 17)");
    expect_fail(edit(INNOVATION_SUBMITTED, "\"digital\":false", "\"digital\":\"no\""),
                KABAR_WRONG_TYPE, "body.digital: expected true or false");
    expect_fail(edit(INNOVATION_SUBMITTED, "\"owner\":\"dinkes\"", "\"owner\":\"Dinas Kesehatan\""),
                KABAR_BAD_VALUE, "body.owner: \"Dinas Kesehatan\" is not an agency id");
    expect_fail(edit(INNOVATION_ADVANCED, "shortlisted", "won"), KABAR_BAD_VALUE,
                "body.stage: \"won\" is not one of");
    expect_fail(edit(INNOVATION_AWARDED, "\"rank\":12", "\"rank\":0"), KABAR_BAD_VALUE,
                "body.rank: out of range (expected at least 1)");
    expect_fail(edit(INNOVATION_AWARDED, "\"award\":\"Top 45\",", ""), KABAR_MISSING_FIELD,
                "body.award: required field missing");
    expect_fail(edit(ATTENDANCE_REPORTED, "\"present\":112", "\"present\":119"), KABAR_BAD_VALUE,
                "body.present: must not be more than total");
    expect_fail(edit(ATTENDANCE_REPORTED, "\"sick\":3", "\"vacation\":3"), KABAR_UNKNOWN_FIELD,
                "body.absent.vacation: unknown field");
    expect_fail(edit(ATTENDANCE_REPORTED, "\"total\":118", "\"total\":118.5"), KABAR_WRONG_TYPE,
                "body.total: expected an integer, found a float");
    /* Date rules: leap years. */
    expect_ok(edit(ATTENDANCE_REPORTED, "2023-04-26\",\"occasion", "2024-02-29\",\"occasion"));
    expect_fail(edit(ATTENDANCE_REPORTED, "2023-04-26\",\"occasion", "2023-02-29\",\"occasion"),
                KABAR_BAD_VALUE, "body.date:");
    expect_fail(edit(ATTENDANCE_REPORTED, "2023-04-26\",\"occasion", "1900-02-29\",\"occasion"),
                KABAR_BAD_VALUE, "body.date:");
    expect_ok(edit(ATTENDANCE_REPORTED, "2023-04-26\",\"occasion", "2000-02-29\",\"occasion"));
    expect_fail(edit(ATTENDANCE_REPORTED, "2023-04-26\",\"occasion", "2023-4-26\",\"occasion"),
                KABAR_BAD_VALUE, "body.date:");
}

/* ------------------------------------------------------------------------ */
/* The envelope                                                             */

#define ENV(extra_before_body, rest)                                                               \
    "{" extra_before_body "\"body\":{\"award\":\"Top 45\",\"competition\":\"KIPP\","               \
    "\"innovation_id\":\"I-1\"}" rest "}"

static void test_envelope_rules(void **state)
{
    const char *ok = ENV("", ",\"id\":\"a-1\",\"source\":\"setda\",\"type\":\"innovation.awarded\","
                             "\"v\":1");
    expect_ok(ok);
    expect_fail(edit(ok, "\"id\":\"a-1\",", ""), KABAR_MISSING_FIELD, "id: required field missing");
    expect_fail(edit(ok, "\"body\":", "\"bodi\":"), KABAR_UNKNOWN_FIELD,
                "event: unknown envelope field \"bodi\"");
    expect_fail(edit(ok, "\"id\":\"a-1\"", "\"id\":\"\""), KABAR_BAD_VALUE,
                "id: must not be empty");
    expect_fail(edit(ok, "\"id\":\"a-1\"", "\"id\":\"a\\u0001\""), KABAR_BAD_VALUE,
                "id: control character U+0001");
    char longid[300];
    memset(longid, 0, sizeof longid);
    strcpy(longid, "\"id\":\"");
    memset(longid + 6, 'x', 129);
    strcat(longid, "\"");
    expect_fail(edit(ok, "\"id\":\"a-1\"", longid), KABAR_LIMIT, "id: 129 bytes is longer");
    longid[6 + 128] = '"', longid[6 + 129] = '\0';
    expect_ok(edit(ok, "\"id\":\"a-1\"", longid));
    expect_fail(edit(ok, "\"id\":\"a-1\"", "\"id\":7"), KABAR_WRONG_TYPE,
                "id: expected a string, found an integer");
    expect_fail(edit(ok, "innovation.awarded", "innovation.awardd"), KABAR_UNKNOWN_TYPE,
                "type: \"innovation.awardd\" is not a registered event type");
    expect_fail(edit(ok, "\"v\":1", "\"v\":2"), KABAR_UNKNOWN_VERSION,
                "v: innovation.awarded has no version 2");
    expect_fail(edit(ok, "\"v\":1", "\"v\":0"), KABAR_BAD_VALUE, "v: 0 is not a schema version");
    expect_fail(edit(ok, "\"v\":1", "\"v\":-1"), KABAR_WRONG_TYPE, "v: expected a positive");
    expect_fail(edit(ok, "\"v\":1", "\"v\":\"1\""), KABAR_WRONG_TYPE, "v: expected");
    expect_fail(edit(ok, "\"setda\"", "\"Setda\""), KABAR_BAD_VALUE,
                "source: \"Setda\" is not an agency id");
    expect_fail(edit(ok, "\"setda\"", "\"-setda\""), KABAR_BAD_VALUE, "source:");
    expect_fail(edit(ok, "\"setda\"", "\"s\""), KABAR_BAD_VALUE, "source:");
    expect_fail(edit(ok, "\"setda\"", "\"a23456789012345678901234567890123\""), KABAR_BAD_VALUE,
                "source:");
    expect_ok(edit(ok, "\"setda\"", "\"kec-padang-barat\""));
    expect_fail(edit(ok, "\"setda\",", "\"setda\",\"targets\":[\"dinkes\",\"dinkes\"],"),
                KABAR_BAD_VALUE, "targets[1]: \"dinkes\" is listed twice");
    expect_fail(edit(ok, "\"setda\",", "\"setda\",\"targets\":\"dinkes\","), KABAR_WRONG_TYPE,
                "targets: expected an array");
    expect_fail(edit(ok, "\"setda\",", "\"setda\",\"targets\":[\"ok\",\"NO\"],"), KABAR_BAD_VALUE,
                "targets[1]:");
    /* A broadcast has one encoding: no targets key; `targets: []` is refused. */
    expect_fail(edit(ok, "\"setda\",", "\"setda\",\"targets\":[],"), KABAR_NOT_CANONICAL,
                "targets: an empty array is not canonical: omit targets for a broadcast");
    char many[2048] = "\"setda\",\"targets\":[";
    for (int i = 0; i < 65; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s\"ag-%d\"", i ? "," : "", i);
    strcat(many, "],");
    expect_fail(edit(ok, "\"setda\",", many), KABAR_LIMIT, "targets: 65 targets");
    expect_fail(edit(ok, "\"id\"", "\"occurred_at\":7,\"id\""), KABAR_WRONG_TYPE,
                "occurred_at: expected a timestamp");
}

/* corr (may be empty) and occurred_at are optional; body is required. */
static void test_envelope_optional(void **state)
{
    const char *ok =
        ENV("", ",\"corr\":\"\",\"id\":\"a-1\",\"occurred_at\":\"2023-01-01T00:00:00Z\","
                "\"source\":\"setda\",\"type\":\"innovation.awarded\",\"v\":1");
    expect_ok(ok);
    expect_fail(edit(ok,
                     "\"body\":{\"award\":\"Top 45\",\"competition\":\"KIPP\","
                     "\"innovation_id\":\"I-1\"}",
                     "\"body\":[]"),
                KABAR_WRONG_TYPE, "body: expected a map, found an array");
    expect_fail(edit(ok,
                     "\"body\":{\"award\":\"Top 45\",\"competition\":\"KIPP\","
                     "\"innovation_id\":\"I-1\"},",
                     ""),
                KABAR_MISSING_FIELD, "body: required field missing");
}

/*
 * A broadcast has exactly one encoding, no targets key: `targets: []` in
 * msgpack is refused, with or without a schema, while the JSON form may say
 * "targets": [] and becomes the same bytes as an event without targets.
 */
static void test_broadcast_one_encoding(void **state)
{
    const char *with_empty =
        ENV("", ",\"id\":\"a-1\",\"occurred_at\":\"ts:2023-01-01T00:00:00Z\","
                "\"source\":\"setda\",\"targets\":[],\"type\":\"innovation.awarded\",\"v\":1");
    const char *msg = "targets: an empty array is not canonical: omit targets for a broadcast";
    expect_fail(with_empty, KABAR_NOT_CANONICAL, msg);
    expect_fail_bytes(NULL, KABAR_NOT_CANONICAL, msg);
    expect_ok(edit(with_empty, "\"targets\":[],", ""));

    const char *js = "{\"id\":\"a-1\",\"type\":\"innovation.awarded\",\"source\":\"setda\","
                     "\"occurred_at\":\"2023-01-01T00:00:00Z\",%s\"body\":{\"award\":\"Top 45\","
                     "\"competition\":\"KIPP\",\"innovation_id\":\"I-1\"}}";
    char a[512], b[512];
    snprintf(a, sizeof a, js, "\"targets\":[],");
    snprintf(b, sizeof b, js, "");
    uint8_t *ea = NULL, *eb = NULL;
    size_t na = 0, nb = 0;
    kabar_error e = {0};
    const kabar_schema *s = kabar_schema_builtin();
    assert_int_equal(kabar_event_from_json(s, a, strlen(a), NULL, &ea, &na, &e), 0);
    assert_int_equal(kabar_event_from_json(s, b, strlen(b), NULL, &eb, &nb, &e), 0);
    assert_int_equal(na, nb);
    assert_memory_equal(ea, eb, na);
    kabar_event ev;
    assert_int_equal(kabar_event_decode(s, ea, na, &ev, &e), 0);
    assert_int_equal(ev.ntargets, 0);
    free(ea);
    free(eb);
}

static void test_canonical_order_and_duplicates(void **state)
{
    /* Envelope keys out of order. */
    pack_json("{\"id\":\"a\",\"body\":{},\"source\":\"setda\",\"type\":\"x\",\"v\":1}", false);
    expect_fail_bytes(NULL, KABAR_NOT_CANONICAL, "event: keys not in canonical order at offset");
    /* Body keys out of order. */
    pack_json("{\"body\":{\"innovation_id\":\"I\",\"award\":\"A\",\"competition\":\"C\"},\"id\":"
              "\"a\",\"source\":\"setda\",\"type\":\"innovation.awarded\",\"v\":1}",
              false);
    expect_fail_bytes(kabar_schema_builtin(), KABAR_NOT_CANONICAL,
                      "body: keys not in canonical order at offset");
    /* Duplicate body key, written by hand (JSON parsers merge duplicates). */
    msgpack_sbuffer_clear(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    msgpack_pack_str_with_body(&pk, "body", 4);
    msgpack_pack_map(&pk, 2);
    for (int i = 0; i < 2; i++) {
        msgpack_pack_str_with_body(&pk, "award", 5);
        msgpack_pack_str_with_body(&pk, "A", 1);
    }
    static const char *const kv[] = {"id", "a", "source", "setda", "type", "innovation.awarded"};
    for (int i = 0; i < 6; i++)
        msgpack_pack_str_with_body(&pk, kv[i], strlen(kv[i]));
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_uint8(&pk, 1);
    expect_fail_bytes(kabar_schema_builtin(), KABAR_NOT_CANONICAL,
                      "body: duplicate key \"award\" at offset 15");
    /* A non-canonical integer inside the body names its field. */
    expect_fail(edit(FINDING_RESPONDED, "\"deposit_idr\":0", "\"deposit_idr\":\"u8:5\""),
                KABAR_NOT_CANONICAL, "body.deposit_idr: integer not in its smallest encoding");
    /* An integral float is not canonical. */
    expect_fail(edit(VISIT_COMPLETED, "\"target\":90", "\"target\":90.0"), KABAR_NOT_CANONICAL,
                "body.achievements[0].target: integral float");
    /* Trailing bytes. */
    pack_json(FINDING_OVERDUE, true);
    msgpack_sbuffer_write(&sb, "\xc0", 1);
    expect_fail_bytes(kabar_schema_builtin(), KABAR_MALFORMED, "event: 1 trailing bytes");
    /* Not a map at all; nothing at all. */
    pack_json("[1,2]", false);
    expect_fail_bytes(NULL, KABAR_WRONG_TYPE, "event: an event is a msgpack map");
    sb.size = 0;
    expect_fail_bytes(NULL, KABAR_MALFORMED, "event: truncated msgpack at offset 0");
}

static void test_truncation_everywhere(void **state)
{
    pack_json(VISIT_COMPLETED, true);
    size_t n = sb.size;
    char *copy = malloc(n);
    memcpy(copy, sb.data, n);
    for (size_t cut = 0; cut < n; cut++) {
        kabar_error e;
        kabar_event ev;
        int rc = kabar_event_decode(kabar_schema_builtin(), copy, cut, &ev, &e);
        if (rc != KABAR_MALFORMED)
            fail_msg("cut at %zu of %zu: expected MALFORMED, got %s: %s", cut, n, kabar_errname(rc),
                     e.message);
    }
    free(copy);
}

static void test_limits(void **state)
{
    static char big[KABAR_MAX_EVENT_BYTES + 1];
    kabar_error e;
    assert_int_equal(kabar_event_decode(kabar_schema_builtin(), big, sizeof big, NULL, &e),
                     KABAR_TOO_BIG);
    assert_non_null(strstr(e.message, "65536"));
    /* Nesting deeper than 8 levels, even when the body is not checked. */
    pack_json("{\"body\":{\"a\":[[[[[[[1]]]]]]]},\"id\":\"a\",\"source\":\"setda\",\"type\":\"x\","
              "\"v\":1}",
              false);
    expect_fail_bytes(NULL, KABAR_LIMIT, "body: nested deeper than 8 levels");
    pack_json("{\"body\":{\"a\":[[[[[[1]]]]]]},\"id\":\"a\",\"source\":\"setda\",\"type\":\"x\","
              "\"v\":1}",
              false);
    assert_int_equal(kabar_event_decode(NULL, sb.data, sb.size, NULL, NULL), 0);
    /* A body map of 65 entries. */
    char json[4096] = "{\"body\":{";
    for (int i = 0; i < 65; i++)
        snprintf(json + strlen(json), sizeof json - strlen(json), "%s\"k%03d\":1", i ? "," : "", i);
    strcat(json, "},\"id\":\"a\",\"source\":\"setda\",\"type\":\"innovation.awarded\",\"v\":1}");
    pack_json(json, false);
    expect_fail_bytes(kabar_schema_builtin(), KABAR_LIMIT, "body: map of 65 entries");
    /* A string over its schema limit (rec_id: 32 bytes). */
    expect_fail(edit(FINDING_REVIEWED, "\"rec_id\":\"R1\"",
                     "\"rec_id\":\"R23456789012345678901234567890123\""),
                KABAR_LIMIT, "body.rec_id: string of 33 bytes is longer than the limit of 32");
    expect_fail(edit(FINDING_REVIEWED, "\"reason\":\"Register in use\"", "\"reason\":\"\""),
                KABAR_BAD_VALUE, "body.reason: must not be empty");
}

static void test_utf8(void **state)
{
    const char *base = FINDING_REVIEWED;
    static const struct {
        const char *hex;
        bool ok;
    } cases[] = {
        {"4b6f276d617261", true},          /* Ko'mara */
        {"c3a9", true},                    /* é */
        {"e29c93", true},                  /* ✓ */
        {"f09f9880", true},                /* emoji, 4 bytes */
        {"0a09", true},                    /* line feed, tab */
        {"c0af", false},                   /* overlong '/' */
        {"e08080", false},                 /* overlong 3-byte */
        {"eda080", false},                 /* surrogate U+D800 */
        {"f4908080", false},               /* beyond U+10FFFF */
        {"e282", false},                   /* truncated */
        {"ff", false},                     /* never valid */
        {"80", false},                     /* lone continuation */
        {"41414141414141414141c3", false}, /* truncated after the fast path */
        {"01", false},                     /* control character */
        {"00", false},                     /* NUL */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char to[128];
        snprintf(to, sizeof to, "\"reason\":\"hex:%s\"", cases[i].hex);
        const char *json = edit(base, "\"reason\":\"Register in use\"", to);
        if (cases[i].ok)
            expect_ok(json);
        else
            expect_fail(json, KABAR_BAD_VALUE, "body.reason: ");
    }
    /* Keys too: an unknown key with invalid UTF-8 is reported quoted and escaped. */
    pack_json("{\"body\":{\"\\u0001x\":1},\"id\":\"a\",\"source\":\"setda\",\"type\":"
              "\"innovation.awarded\",\"v\":1}",
              false);
    expect_fail_bytes(kabar_schema_builtin(), KABAR_UNKNOWN_FIELD,
                      "body: unknown field \"\\x01x\"");
}

/* With no schema only the envelope is checked (events already in the log). */
static void test_no_schema_skips_body(void **state)
{
    pack_json("{\"body\":{\"anything\":[1,2,{\"x\":true}]},\"id\":\"a\",\"source\":\"setda\","
              "\"type\":\"not.registered\",\"v\":9}",
              false);
    kabar_event ev;
    kabar_error e;
    assert_int_equal(kabar_event_decode(NULL, sb.data, sb.size, &ev, &e), 0);
    assert_int_equal(ev.v, 9);
    assert_ptr_equal(ev.body, (const uint8_t *)sb.data + 6);
    assert_memory_equal(ev.body + ev.body_len, "\xa2id", 3);
    expect_fail_bytes(kabar_schema_builtin(), KABAR_UNKNOWN_TYPE, "type:");
}

/* ------------------------------------------------------------------------ */
/* The error table                                                          */

static void test_errors(void **state)
{
    assert_string_equal(kabar_errname(KABAR_OK), "OK");
    assert_string_equal(kabar_errname(KABAR_MISSING_FIELD), "MISSING_FIELD");
    assert_string_equal(kabar_strerror(KABAR_MISSING_FIELD), "required field missing");
    assert_string_equal(kabar_errname(-1), "UNKNOWN");
    assert_string_equal(kabar_errname(KABAR_ERR_COUNT_), "UNKNOWN");
    assert_non_null(kabar_strerror(9999));
    for (int i = 0; i < KABAR_ERR_COUNT_; i++)
        assert_int_equal(kabar_errcode(kabar_errname(i)), i);
    assert_int_equal(kabar_errcode("NO_SUCH_CODE"), -1);
    assert_int_equal(kabar_errcode(NULL), -1);
    kabar_error e;
    assert_int_equal(kabar_error_set(&e, KABAR_BAD_VALUE, "body.due: %s", "not a date"),
                     KABAR_BAD_VALUE);
    assert_int_equal(e.code, KABAR_BAD_VALUE);
    assert_string_equal(e.message, "body.due: not a date");
    assert_int_equal(kabar_error_set(NULL, KABAR_IO, "x"), KABAR_IO);
    char longer[1000];
    memset(longer, 'y', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    kabar_error_set(&e, KABAR_IO, "%s", longer);
    assert_int_equal(strlen(e.message), KABAR_ERROR_MESSAGE_MAX - 1);
}

static int setup(void **state)
{
    msgpack_sbuffer_init(&sb);
    return 0;
}

static int teardown(void **state)
{
    msgpack_sbuffer_destroy(&sb);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_types_valid),
        cmocka_unit_test(test_decoded_fields),
        cmocka_unit_test(test_each_type_invalid),
        cmocka_unit_test(test_envelope_rules),
        cmocka_unit_test(test_envelope_optional),
        cmocka_unit_test(test_broadcast_one_encoding),
        cmocka_unit_test(test_canonical_order_and_duplicates),
        cmocka_unit_test(test_truncation_everywhere),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_no_schema_skips_body),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
