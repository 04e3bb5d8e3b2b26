/*
 * ostate_test.c - the oversight state machine: events applied through
 * oapply_record into a real LMDB state, and the overdue rule on it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "oapply.h"
#include "odate.h"
#include "ostate.h"
#include "overdue.h"

typedef struct fx {
    char dir[64];
    ostate *st;
    uint64_t seq;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    kabar_error e = {0};
    snprintf(f->dir, sizeof f->dir, "/tmp/ostate-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(ostate_open(&f->st, f->dir, false, &e), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    char p[128];
    ostate_close(&f->st);
    snprintf(p, sizeof p, "%s/" OSTATE_FILE, f->dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/" OSTATE_FILE "-lock", f->dir);
    unlink(p);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* Apply one JSON event as the record `seq`; returns the outcome. */
static oapply_outcome apply_at(fx *f, uint64_t seq, const char *json)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    kabar_error e = {0}, note = {0};
    ostate_txn *t = NULL;
    oapply_outcome out = OAPPLY_IGNORED;
    if (kabar_event_from_json(kabar_schema_builtin(), json, strlen(json), NULL, &bytes, &len, &e) !=
        0)
        fail_msg("bad test event: %s", e.message);
    assert_int_equal(ostate_begin(f->st, true, &t, &e), 0);
    assert_int_equal(oapply_record(t, seq, 0, bytes, len, &out, &note, &e), 0);
    assert_int_equal(ostate_commit(&t, &e), 0);
    free(bytes);
    return out;
}

static oapply_outcome apply(fx *f, const char *json)
{
    return apply_at(f, ++f->seq, json);
}

static json_t *get(fx *f, ostate_kind k, const char *key)
{
    ostate_txn *t = NULL;
    kabar_error e = {0};
    json_t *v = NULL;
    assert_int_equal(ostate_begin(f->st, false, &t, &e), 0);
    assert_int_equal(ostate_get(t, k, key, strlen(key), &v, &e), 0);
    ostate_abort(&t);
    return v;
}

static char *dump(fx *f)
{
    ostate_txn *t = NULL;
    kabar_error e = {0};
    kabar_buf b = {0};
    assert_int_equal(ostate_begin(f->st, false, &t, &e), 0);
    assert_int_equal(ostate_dump(t, &b, &e), 0);
    ostate_abort(&t);
    kabar_buf_append(&b, "", 1);
    return b.data;
}

static int64_t instant(const char *s)
{
    int64_t ns;
    assert_int_equal(kabar_time_parse(s, strlen(s), &ns, NULL), 0);
    return ns;
}

#define RAISED                                                                                     \
    "{\"type\":\"finding.raised\",\"id\":\"r1\",\"source\":\"inspektorat\","                       \
    "\"occurred_at\":\"2023-05-02T08:30:00+07:00\",\"body\":{\"finding_id\":\"F-1\","              \
    "\"auditee\":\"dinkes\",\"auditor\":\"inspektorat\",\"condition\":\"c\","                      \
    "\"recommendations\":[{\"rec_id\":\"R1\",\"text\":\"a\"},{\"rec_id\":\"R2\",\"text\":\"b\"}]," \
    "\"report_received\":\"2023-05-02\",\"due\":\"2023-07-01\"}}"

static char *review(char *buf, size_t cap, const char *id, const char *rec, const char *status,
                    const char *at)
{
    snprintf(buf, cap,
             "{\"type\":\"finding.reviewed\",\"id\":\"%s\",\"source\":\"inspektorat\","
             "\"occurred_at\":\"%s\",\"body\":{\"finding_id\":\"F-1\",\"rec_id\":\"%s\","
             "\"status\":\"%s\",\"reviewer\":\"Irban II\"}}",
             id, at, rec, status);
    return buf;
}

static const char *RESPONDED =
    "{\"type\":\"finding.responded\",\"id\":\"t1\",\"source\":\"dinkes\","
    "\"occurred_at\":\"2023-06-12T14:10:00+07:00\",\"body\":{\"finding_id\":\"F-1\","
    "\"rec_id\":\"R1\",\"action\":\"done\"}}";

static void test_finding_lifecycle(void **state)
{
    fx *f = *state;
    char b[512];
    assert_int_equal(apply(f, RAISED), OAPPLY_APPLIED);
    assert_int_equal(apply(f, RESPONDED), OAPPLY_APPLIED);
    apply(f, review(b, sizeof b, "v1", "R1", "S", "2023-06-26T09:00:00+07:00"));
    apply(f, review(b, sizeof b, "v2", "R2", "BS", "2023-06-27T09:00:00+07:00"));
    json_t *fd = get(f, OSTATE_FINDINGS, "F-1");
    assert_non_null(fd);
    assert_string_equal(ojson_str(fd, "auditee"), "dinkes");
    assert_true(
        json_is_true(json_object_get(json_array_get(json_object_get(fd, "recs"), 0), "responded")));
    assert_true(ofinding_resolved_at(fd) == INT64_MIN);
    json_t *open = ofinding_open_recs(fd);
    assert_int_equal(json_array_size(open), 1);
    assert_string_equal(json_string_value(json_array_get(open, 0)), "R2");
    json_decref(open);
    json_decref(fd);

    /* The last open rec becomes TD: resolved at that review's time. */
    apply(f, review(b, sizeof b, "v3", "R2", "TD", "2023-07-10T23:30:00+07:00"));
    fd = get(f, OSTATE_FINDINGS, "F-1");
    assert_true(ofinding_resolved_at(fd) == instant("2023-07-10T23:30:00+07:00"));
    /* ... which is 10 July in WIB but 11 July in WIT. */
    assert_int_equal(odate_of_instant(ofinding_resolved_at(fd), ODATE_WIB),
                     odate_from_civil(2023, 7, 10));
    assert_int_equal(odate_of_instant(ofinding_resolved_at(fd), 9 * 3600),
                     odate_from_civil(2023, 7, 11));
    json_decref(fd);

    /* S -> TD keeps it closed since the first close; TD -> BS reopens. */
    apply(f, review(b, sizeof b, "v4", "R1", "TD", "2023-07-20T09:00:00+07:00"));
    fd = get(f, OSTATE_FINDINGS, "F-1");
    assert_true(ofinding_resolved_at(fd) == instant("2023-07-10T23:30:00+07:00"));
    json_decref(fd);
    apply(f, review(b, sizeof b, "v5", "R2", "BS", "2023-07-21T09:00:00+07:00"));
    fd = get(f, OSTATE_FINDINGS, "F-1");
    assert_true(ofinding_resolved_at(fd) == INT64_MIN);
    json_decref(fd);
}

static void test_idempotent(void **state)
{
    fx *f = *state;
    char b[512];
    const char *evs[] = {
        RAISED,
        RESPONDED,
        "{\"type\":\"visit.scheduled\",\"id\":\"vs\",\"source\":\"setda\",\"body\":{\"visit_id\":"
        "\"V-1\",\"host\":\"bappeda\",\"visitor\":\"Wali Kota\",\"date\":\"2023-04-27\"}}",
        "{\"type\":\"innovation.submitted\",\"id\":\"is\",\"source\":\"dinkes\",\"body\":{"
        "\"innovation_id\":\"I-1\",\"owner\":\"dinkes\",\"acronym\":\"BUAH SABAR\",\"name\":\"n\","
        "\"category\":\"health\",\"stage\":\"applied\",\"started\":\"2021-01-04\","
        "\"competition\":\"KIPP 2023\"}}",
        "{\"type\":\"innovation.advanced\",\"id\":\"ia\",\"source\":\"setda\",\"body\":{"
        "\"innovation_id\":\"I-1\",\"competition\":\"KIPP 2023\",\"stage\":\"shortlisted\"}}",
        "{\"type\":\"attendance.reported\",\"id\":\"at\",\"source\":\"bappeda\",\"body\":{"
        "\"agency\":\"bappeda\",\"date\":\"2023-04-26\",\"total\":64,\"present\":60}}",
        review(b, sizeof b, "v1", "R1", "S", "2023-06-26T09:00:00+07:00"),
    };
    size_t n = sizeof evs / sizeof evs[0];
    for (size_t i = 0; i < n; i++)
        assert_int_equal(apply(f, evs[i]), OAPPLY_APPLIED);
    char *before = dump(f);
    /* At-least-once delivery: the same records again change nothing. */
    for (size_t i = 0; i < n; i++)
        assert_int_equal(apply_at(f, i + 1, evs[i]), OAPPLY_STALE);
    char *after = dump(f);
    assert_string_equal(before, after);
    assert_non_null(strstr(before, "position 7\n"));
    assert_non_null(strstr(before, "agencies bappeda "));
    assert_non_null(strstr(before, "agencies setda "));
    json_t *inv = get(f, OSTATE_INNOVATIONS, "I-1");
    assert_int_equal(json_array_size(json_object_get(inv, "advanced")), 1);
    json_decref(inv);
    free(before);
    free(after);
}

static void test_out_of_order(void **state)
{
    fx *f = *state;
    char b[512];
    /* A review logged before its finding: recorded, resolved once raised. */
    apply(f, review(b, sizeof b, "v1", "R1", "S", "2023-06-26T09:00:00+07:00"));
    apply(f, review(b, sizeof b, "v2", "R2", "S", "2023-06-28T09:00:00+07:00"));
    apply(f, review(b, sizeof b, "v3", "R9", "BD", "2023-06-28T09:00:00+07:00"));
    json_t *fd = get(f, OSTATE_FINDINGS, "F-1");
    assert_false(ofinding_raised(fd));
    assert_true(ofinding_resolved_at(fd) == INT64_MIN);
    json_decref(fd);
    apply(f, RAISED);
    fd = get(f, OSTATE_FINDINGS, "F-1");
    assert_true(ofinding_raised(fd));
    /* R9 is not one of the finding's recommendations: it does not hold it open. */
    assert_true(ofinding_resolved_at(fd) == instant("2023-06-28T09:00:00+07:00"));
    json_decref(fd);
}

static json_t *pending(fx *f, int32_t today)
{
    ostate_txn *t = NULL;
    kabar_error e = {0};
    json_t *list = NULL;
    assert_int_equal(ostate_begin(f->st, false, &t, &e), 0);
    assert_int_equal(overdue_pending(t, today, ODATE_WIB, &list, &e), 0);
    ostate_abort(&t);
    return list;
}

static void test_overdue_rule(void **state)
{
    fx *f = *state;
    char b[512];
    kabar_error e = {0};
    apply(f, RAISED);
    apply(f, review(b, sizeof b, "v1", "R1", "S", "2023-06-26T09:00:00+07:00"));
    /* Due 2023-07-01: not late on the day itself, 1 day late the day after. */
    json_t *l = pending(f, odate_from_civil(2023, 7, 1));
    assert_int_equal(json_array_size(l), 0);
    json_decref(l);
    l = pending(f, odate_from_civil(2023, 7, 2));
    assert_int_equal(json_array_size(l), 1);
    json_t *body = json_array_get(l, 0);
    assert_int_equal(ojson_int(body, "days_overdue", 0), 1);
    assert_string_equal(json_string_value(json_array_get(json_object_get(body, "open_recs"), 0)),
                        "R2");

    /* The event the agent publishes: deterministic id, valid against the schema. */
    uint8_t *bytes = NULL;
    size_t len = 0;
    kabar_event ev;
    assert_int_equal(
        overdue_event(body, "setda", instant("2023-07-02T08:00:00+07:00"), &bytes, &len, &e), 0);
    assert_int_equal(kabar_event_decode(kabar_schema_builtin(), bytes, len, &ev, &e), 0);
    assert_int_equal(ev.id.len, strlen("overdue-F-1"));
    assert_memory_equal(ev.id.ptr, "overdue-F-1", ev.id.len);
    assert_int_equal(ev.ntargets, 1);
    assert_memory_equal(ev.targets[0].ptr, "dinkes", 6);
    json_decref(l);

    /* Recorded from the broker's ack: never pending again. */
    ostate_txn *t = NULL;
    assert_int_equal(ostate_begin(f->st, true, &t, &e), 0);
    assert_int_equal(oapply_overdue_published(t, "F-1", 42, 1, &e), 0);
    assert_int_equal(ostate_commit(&t, &e), 0);
    l = pending(f, odate_from_civil(2023, 9, 1));
    assert_int_equal(json_array_size(l), 0);
    json_decref(l);
    /* The event itself coming back through the log changes nothing. */
    assert_int_equal(ostate_begin(f->st, true, &t, &e), 0);
    oapply_outcome out;
    assert_int_equal(oapply_record(t, 43, 0, bytes, len, &out, NULL, &e), 0);
    assert_int_equal(ostate_commit(&t, &e), 0);
    json_t *fd = get(f, OSTATE_FINDINGS, "F-1");
    assert_int_equal(ojson_int(fd, "overdue_seq", 0), 42);
    json_decref(fd);
    free(bytes);
}

static void test_overdue_from_log_and_resolved(void **state)
{
    fx *f = *state;
    char b[512];
    apply(f, RAISED);
    apply(f, review(b, sizeof b, "v1", "R1", "S", "2023-06-26T09:00:00+07:00"));
    apply(f, review(b, sizeof b, "v2", "R2", "S", "2023-08-01T09:00:00+07:00"));
    /* Resolved (late): nothing to publish now. */
    json_t *l = pending(f, odate_from_civil(2023, 9, 1));
    assert_int_equal(json_array_size(l), 0);
    json_decref(l);
    /* ... but on 15 July it was overdue, by 14 days (the report's view). */
    json_t *fd = get(f, OSTATE_FINDINGS, "F-1");
    int64_t days = 0;
    assert_true(overdue_on(fd, odate_from_civil(2023, 7, 15), ODATE_WIB, false, &days));
    assert_int_equal(days, 14);
    assert_false(overdue_on(fd, odate_from_civil(2023, 8, 1), ODATE_WIB, false, &days));
    assert_false(overdue_on(fd, odate_from_civil(2023, 7, 15), ODATE_WIB, true, &days));
    json_decref(fd);
}

static void test_ignored_and_attendance(void **state)
{
    fx *f = *state;
    kabar_error e = {0};
    ostate_txn *t = NULL;
    oapply_outcome out;
    kabar_error note = {0};
    const uint8_t junk[] = {0xc1, 0x00};
    assert_int_equal(ostate_begin(f->st, true, &t, &e), 0);
    assert_int_equal(oapply_record(t, 1, 0, junk, sizeof junk, &out, &note, &e), 0);
    assert_int_equal(out, OAPPLY_IGNORED);
    assert_true(strlen(note.message) > 0);
    assert_int_equal(ostate_position(t), 1);
    assert_int_equal(ostate_commit(&t, &e), 0);
    f->seq = 1;
    apply(f, "{\"type\":\"attendance.reported\",\"id\":\"a1\",\"source\":\"dinkes\",\"body\":{"
             "\"agency\":\"dinkes\",\"date\":\"2023-04-26\",\"total\":100,\"present\":80}}");
    apply(f, "{\"type\":\"attendance.reported\",\"id\":\"a2\",\"source\":\"dinkes\",\"body\":{"
             "\"agency\":\"dinkes\",\"date\":\"2023-04-26\",\"total\":100,\"present\":90}}");
    char *d = dump(f);
    /* The later report for the same (agency, date) replaces the earlier one. */
    assert_non_null(strstr(d, "\"present\":90"));
    assert_null(strstr(d, "\"present\":80"));
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_finding_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overdue_rule, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overdue_from_log_and_resolved, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ignored_and_attendance, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
