/*
 * report_test.c - the report's figures: median (odd, even, none), the
 * attendance rate's rounding, empty states and empty periods, and a small
 * state whose figures are worked out by hand; the report of one agency;
 * the charts' data (days to resolve, visits per week, innovations by stage)
 * and the options as a person types them.
 */
#include <setjmp.h>
#include <stdbool.h>
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
#include "report.h"

static void test_median(void **state)
{
    int64_t odd[] = {30, 10, 20};
    int64_t even[] = {15, 10, 40, 20};
    int64_t one[] = {7};
    assert_int_equal(report_median2(odd, 3), 40);  /* 20 */
    assert_int_equal(report_median2(even, 4), 35); /* (15 + 20) / 2 = 17.5 */
    assert_int_equal(report_median2(one, 1), 14);
    assert_int_equal(report_median2(NULL, 0), -1);
    assert_int_equal(odd[0], 10); /* sorted in place */
}

static void test_rate(void **state)
{
    assert_int_equal(report_rate_tenths(60, 64), 938); /* 93.75 rounds half up */
    assert_int_equal(report_rate_tenths(2, 3), 667);   /* 66.666... */
    assert_int_equal(report_rate_tenths(1, 3), 333);
    assert_int_equal(report_rate_tenths(64, 64), 1000);
    assert_int_equal(report_rate_tenths(0, 10), 0);
    assert_int_equal(report_rate_tenths(0, 0), -1);
}

typedef struct fx {
    char dir[64];
    ostate *st;
    uint64_t seq;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "/tmp/report-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(ostate_open(&f->st, f->dir, false, NULL), 0);
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

static void apply(fx *f, const char *json)
{
    uint8_t *bytes = NULL;
    size_t len = 0;
    kabar_error e = {0};
    ostate_txn *t = NULL;
    oapply_outcome out;
    if (kabar_event_from_json(kabar_schema_builtin(), json, strlen(json), NULL, &bytes, &len, &e) !=
        0)
        fail_msg("bad test event: %s", e.message);
    assert_int_equal(ostate_begin(f->st, true, &t, &e), 0);
    assert_int_equal(oapply_record(t, ++f->seq, 0, bytes, len, &out, NULL, &e), 0);
    assert_int_equal(out, OAPPLY_APPLIED);
    assert_int_equal(ostate_commit(&t, &e), 0);
    free(bytes);
}

static int32_t day(const char *s)
{
    int32_t d;
    assert_true(odate_parse(s, strlen(s), &d));
    return d;
}

static json_t *build_opts(fx *f, const char *since, const char *until, const char *today,
                          const char *only, bool charts)
{
    report_opts o = {.since = since ? day(since) : ODATE_NONE,
                     .until = until ? day(until) : ODATE_NONE,
                     .today = day(today),
                     .tz_s = ODATE_WIB,
                     .agency = only,
                     .charts = charts};
    ostate_txn *t = NULL;
    json_t *m = NULL;
    kabar_error e = {0};
    assert_int_equal(ostate_begin(f->st, false, &t, &e), 0);
    assert_int_equal(report_build(t, &o, &m, &e), 0);
    ostate_abort(&t);
    return m;
}

static json_t *build(fx *f, const char *since, const char *until, const char *today)
{
    return build_opts(f, since, until, today, NULL, false);
}

static json_t *agency(json_t *m, const char *id)
{
    json_t *a;
    size_t i;
    json_array_foreach(json_object_get(m, "agencies"), i, a)
    {
        if (strcmp(ojson_str(a, "agency"), id) == 0)
            return a;
    }
    fail_msg("agency %s not in the report", id);
    return NULL;
}

static void test_empty_state(void **state)
{
    fx *f = *state;
    json_t *m = build(f, NULL, NULL, "2023-09-01");
    assert_int_equal(json_array_size(json_object_get(m, "agencies")), 0);
    assert_int_equal(json_array_size(json_object_get(m, "agencies_without_visit")), 0);
    assert_int_equal(json_array_size(json_object_get(m, "findings_overdue")), 0);
    json_t *tot = json_object_get(m, "totals");
    assert_int_equal(ojson_int(tot, "findings_raised", -1), 0);
    assert_true(json_is_null(json_object_get(tot, "median_days_to_resolve")));
    assert_true(json_is_null(json_object_get(tot, "attendance_rate")));
    assert_string_equal(ojson_str(m, "as_of"), "2023-09-01");
    assert_string_equal(ojson_str(m, "zone"), "+07:00");
    /* Every format renders an empty report. */
    FILE *devnull = fopen("/dev/null", "w");
    for (int fmt = REPORT_TEXT; fmt <= REPORT_JSON; fmt++)
        assert_int_equal(report_write(devnull, m, (report_format)fmt, NULL), 0);
    fclose(devnull);
    json_decref(m);
}

static void finding(fx *f, const char *id, const char *auditee, const char *received,
                    const char *due)
{
    char b[1024];
    snprintf(b, sizeof b,
             "{\"type\":\"finding.raised\",\"id\":\"r-%s\",\"source\":\"inspektorat\",\"body\":{"
             "\"finding_id\":\"%s\",\"auditee\":\"%s\",\"auditor\":\"inspektorat\","
             "\"condition\":\"c\",\"recommendations\":[{\"rec_id\":\"R1\",\"text\":\"a\"}],"
             "\"report_received\":\"%s\",\"due\":\"%s\"}}",
             id, id, auditee, received, due);
    apply(f, b);
}

static void resolve(fx *f, const char *id, const char *at)
{
    char b[1024];
    snprintf(b, sizeof b,
             "{\"type\":\"finding.reviewed\",\"id\":\"v-%s\",\"source\":\"inspektorat\","
             "\"occurred_at\":\"%s\",\"body\":{\"finding_id\":\"%s\",\"rec_id\":\"R1\","
             "\"status\":\"S\",\"reviewer\":\"r\"}}",
             id, at, id);
    apply(f, b);
}

/*
 * dinkes: F1 received 05-01 resolved 05-11 (10 days), F2 received 05-01
 * resolved 05-16 (15 days), F3 received 05-10 due 06-01 never resolved.
 * bappeda: a visit on 05-04, attendance 60/64 and 30/36 in May.
 */
static void scenario(fx *f)
{
    finding(f, "F1", "dinkes", "2023-05-01", "2023-06-30");
    finding(f, "F2", "dinkes", "2023-05-01", "2023-06-30");
    finding(f, "F3", "dinkes", "2023-05-10", "2023-06-01");
    resolve(f, "F1", "2023-05-11T10:00:00+07:00");
    resolve(f, "F2", "2023-05-16T23:59:00+07:00");
    apply(f, "{\"type\":\"visit.scheduled\",\"id\":\"vs\",\"source\":\"setda\",\"body\":{"
             "\"visit_id\":\"V1\",\"host\":\"bappeda\",\"visitor\":\"Wali Kota\","
             "\"date\":\"2023-05-04\"}}");
    apply(f, "{\"type\":\"attendance.reported\",\"id\":\"a1\",\"source\":\"bappeda\",\"body\":{"
             "\"agency\":\"bappeda\",\"date\":\"2023-05-02\",\"total\":64,\"present\":60}}");
    apply(f, "{\"type\":\"attendance.reported\",\"id\":\"a2\",\"source\":\"bappeda\",\"body\":{"
             "\"agency\":\"bappeda\",\"date\":\"2023-05-03\",\"total\":36,\"present\":30}}");
}

static void test_figures(void **state)
{
    fx *f = *state;
    scenario(f);
    json_t *m = build(f, "2023-05-01", "2023-06-01", "2023-09-01");
    json_t *d = agency(m, "dinkes"), *b = agency(m, "bappeda");
    assert_int_equal(ojson_int(d, "findings_raised", -1), 3);
    assert_int_equal(ojson_int(d, "findings_resolved", -1), 2);
    assert_int_equal(ojson_int(d, "findings_open", -1), 1);
    assert_int_equal(ojson_int(d, "findings_overdue", -1), 0); /* due 06-01 is not before 05-31 */
    assert_true(json_real_value(json_object_get(d, "median_days_to_resolve")) == 12.5);
    assert_int_equal(ojson_int(b, "visits_scheduled", -1), 1);
    assert_true(json_real_value(json_object_get(b, "attendance_rate")) == 90.0);
    assert_string_equal(ojson_str(m, "as_of"), "2023-05-31");
    /* Agencies seen but not visited: dinkes, inspektorat, setda (sorted). */
    json_t *nv = json_object_get(m, "agencies_without_visit");
    assert_int_equal(json_array_size(nv), 3);
    assert_string_equal(json_string_value(json_array_get(nv, 0)), "dinkes");
    json_decref(m);

    /* All dates, as of 2023-09-01: F3 is 92 days past its due date. */
    m = build(f, NULL, NULL, "2023-09-01");
    json_t *od = json_object_get(m, "findings_overdue");
    assert_int_equal(json_array_size(od), 1);
    assert_string_equal(ojson_str(json_array_get(od, 0), "finding_id"), "F3");
    assert_int_equal(ojson_int(json_array_get(od, 0), "days_overdue", -1), 92);
    assert_false(json_is_true(json_object_get(json_array_get(od, 0), "notified")));
    assert_int_equal(ojson_int(agency(m, "dinkes"), "findings_overdue", -1), 1);
    json_decref(m);
}

static void test_empty_periods(void **state)
{
    fx *f = *state;
    scenario(f);
    /* A period of no days, and one before anything happened. */
    const char *periods[][2] = {{"2023-05-10", "2023-05-10"}, {"2020-01-01", "2021-01-01"}};
    for (int i = 0; i < 2; i++) {
        json_t *m = build(f, periods[i][0], periods[i][1], "2023-09-01");
        json_t *tot = json_object_get(m, "totals");
        assert_int_equal(ojson_int(tot, "findings_raised", -1), 0);
        assert_int_equal(ojson_int(tot, "findings_resolved", -1), 0);
        assert_int_equal(ojson_int(tot, "visits_scheduled", -1), 0);
        assert_true(json_is_null(json_object_get(tot, "median_days_to_resolve")));
        assert_true(json_is_null(json_object_get(tot, "attendance_rate")));
        /* Every agency seen is unvisited in such a period. */
        assert_int_equal(json_array_size(json_object_get(m, "agencies_without_visit")),
                         json_array_size(json_object_get(m, "agencies")));
        json_decref(m);
    }
    /* The empty period 05-10..05-10 ends on 05-09: F1, F2 and F3 were received
       by then only in part (F3 on 05-10 was not), none resolved yet. */
    json_t *m = build(f, "2023-05-10", "2023-05-10", "2023-09-01");
    assert_int_equal(ojson_int(agency(m, "dinkes"), "findings_open", -1), 2);
    json_decref(m);
}

static void test_one_agency(void **state)
{
    fx *f = *state;
    scenario(f);
    json_t *all = build(f, NULL, NULL, "2023-09-01");
    json_t *m = build_opts(f, NULL, NULL, "2023-09-01", "dinkes", false);
    assert_string_equal(ojson_str(m, "agency"), "dinkes");
    assert_false(json_object_get(all, "agency") != NULL); /* the oversight JSON is unchanged */
    assert_false(json_object_get(all, "charts") != NULL);
    json_t *ags = json_object_get(m, "agencies");
    assert_int_equal(json_array_size(ags), 1);
    /* Its figures are the full report's, and the totals are its own. */
    assert_true(json_equal(json_array_get(ags, 0), agency(all, "dinkes")));
    json_t *tot = json_deep_copy(json_array_get(ags, 0));
    json_object_del(tot, "agency");
    assert_true(json_equal(tot, json_object_get(m, "totals")));
    json_decref(tot);
    assert_int_equal(json_array_size(json_object_get(m, "findings_overdue")), 1);
    json_decref(m);

    /* bappeda has no finding past due, and was visited. */
    m = build_opts(f, NULL, NULL, "2023-09-01", "bappeda", false);
    assert_int_equal(json_array_size(json_object_get(m, "findings_overdue")), 0);
    assert_int_equal(json_array_size(json_object_get(m, "agencies_without_visit")), 0);
    json_decref(m);

    /* An agency the log never names: one row of zeros, unvisited. */
    m = build_opts(f, NULL, NULL, "2023-09-01", "dishub", false);
    ags = json_object_get(m, "agencies");
    assert_int_equal(json_array_size(ags), 1);
    assert_string_equal(ojson_str(json_array_get(ags, 0), "agency"), "dishub");
    assert_int_equal(ojson_int(json_object_get(m, "totals"), "findings_raised", -1), 0);
    assert_int_equal(json_array_size(json_object_get(m, "agencies_without_visit")), 1);
    json_decref(m);
    json_decref(all);

    /* Not an agency id: refused with a message. */
    report_opts o = {
        .since = ODATE_NONE, .until = ODATE_NONE, .today = day("2023-09-01"), .agency = ""};
    ostate_txn *t = NULL;
    kabar_error e = {0};
    assert_int_equal(ostate_begin(f->st, false, &t, &e), 0);
    assert_int_equal(report_build(t, &o, &m, &e), KABAR_BAD_VALUE);
    assert_non_null(strstr(e.message, "agency id"));
    ostate_abort(&t);
}

static json_t *chart(json_t *m, const char *name)
{
    json_t *c = json_object_get(json_object_get(m, "charts"), name);
    assert_true(json_is_array(c));
    return c;
}

static void innovation(fx *f, const char *id, const char *owner, const char *stage, const char *at)
{
    char b[1024];
    snprintf(b, sizeof b,
             "{\"type\":\"innovation.submitted\",\"id\":\"i-%s\",\"source\":\"%s\","
             "\"occurred_at\":\"%s\",\"body\":{\"innovation_id\":\"%s\",\"owner\":\"%s\","
             "\"acronym\":\"A\",\"name\":\"N\",\"category\":\"health\",\"stage\":\"%s\","
             "\"started\":\"2022-01-01\",\"competition\":\"KIPP 2023\"}}",
             id, owner, at, id, owner, stage);
    apply(f, b);
}

static void step(fx *f, const char *type, const char *id, const char *field, const char *value,
                 const char *at)
{
    char b[1024];
    static int n;
    snprintf(b, sizeof b,
             "{\"type\":\"%s\",\"id\":\"s-%d\",\"source\":\"setda\",\"occurred_at\":\"%s\","
             "\"body\":{\"innovation_id\":\"%s\",\"competition\":\"KIPP 2023\",\"%s\":\"%s\"}}",
             type, ++n, at, id, field, value);
    apply(f, b);
}

static void visit(fx *f, const char *id, const char *host, const char *date, bool done)
{
    char b[1024];
    snprintf(b, sizeof b,
             "{\"type\":\"visit.%s\",\"id\":\"%s-%s\",\"source\":\"setda\",\"body\":{"
             "\"visit_id\":\"%s\",\"host\":\"%s\",%s\"date\":\"%s\"}}",
             done ? "completed" : "scheduled", id, done ? "c" : "s", id, host,
             done ? "" : "\"visitor\":\"Wali Kota\",", date);
    apply(f, b);
}

static void test_charts(void **state)
{
    fx *f = *state;
    scenario(f); /* F1 10 days, F2 15 days; a visit on Thursday 2023-05-04 */
    visit(f, "V2", "dinkes", "2023-05-15", false); /* a Monday */
    visit(f, "V2", "dinkes", "2023-05-21", true);  /* the Sunday of the same week */
    visit(f, "V3", "dinkes", "2023-06-05", false); /* after the period */
    innovation(f, "I1", "dinkes", "trial", "2023-05-02T09:00:00+07:00");
    innovation(f, "I2", "dinkes", "applied", "2023-05-02T09:00:00+07:00");
    innovation(f, "I3", "bappeda", "applied", "2023-05-03T09:00:00+07:00");
    innovation(f, "I4", "bappeda", "initiative", "2023-07-01T09:00:00+07:00"); /* after L */
    step(f, "innovation.advanced", "I1", "stage", "admin_passed", "2023-05-10T09:00:00+07:00");
    step(f, "innovation.advanced", "I1", "stage", "shortlisted", "2023-05-20T09:00:00+07:00");
    step(f, "innovation.advanced", "I2", "stage", "rejected", "2023-05-20T09:00:00+07:00");
    step(f, "innovation.advanced", "I3", "stage", "finalist", "2023-05-25T09:00:00+07:00");
    step(f, "innovation.awarded", "I3", "award", "Top 45", "2023-06-15T09:00:00+07:00");

    json_t *m = build_opts(f, "2023-05-01", "2023-06-01", "2023-09-01", NULL, true);
    /* Days to resolve: 10 and 15 fall in 8-14 and 15-30. */
    json_t *h = chart(m, "days_to_resolve");
    assert_int_equal(json_array_size(h), 7);
    assert_int_equal(ojson_int(json_array_get(h, 0), "from", -1), 0);
    assert_int_equal(ojson_int(json_array_get(h, 0), "to", -1), 7);
    assert_int_equal(ojson_int(json_array_get(h, 1), "count", -1), 1);
    assert_int_equal(ojson_int(json_array_get(h, 2), "count", -1), 1);
    assert_true(json_is_null(json_object_get(json_array_get(h, 6), "to")));
    int64_t sum = 0;
    for (size_t i = 0; i < json_array_size(h); i++)
        sum += ojson_int(json_array_get(h, i), "count", 0);
    assert_int_equal(sum, ojson_int(json_object_get(m, "totals"), "findings_resolved", -1));

    /* Visits per week: every Monday from the week of 05-01 to that of 05-31. */
    json_t *w = chart(m, "visits_per_week");
    assert_int_equal(json_array_size(w), 5);
    assert_string_equal(ojson_str(json_array_get(w, 0), "week"), "2023-05-01");
    assert_int_equal(ojson_int(json_array_get(w, 0), "scheduled", -1), 1); /* V1 on 05-04 */
    assert_string_equal(ojson_str(json_array_get(w, 2), "week"), "2023-05-15");
    assert_int_equal(ojson_int(json_array_get(w, 2), "scheduled", -1), 1);
    assert_int_equal(ojson_int(json_array_get(w, 2), "completed", -1), 1);
    assert_string_equal(ojson_str(json_array_get(w, 4), "week"), "2023-05-29");
    assert_int_equal(ojson_int(json_array_get(w, 4), "scheduled", -1), 0);

    /* Innovations by stage on L = 05-31: I1 shortlisted, I2 rejected, I3 finalist
       (awarded only in June), I4 not yet submitted. */
    json_t *st = chart(m, "innovations_by_stage"), *e;
    size_t i;
    int64_t total = 0;
    json_array_foreach(st, i, e)
    {
        const char *s = ojson_str(e, "stage");
        int64_t n = ojson_int(e, "count", -1);
        total += n;
        if (strcmp(s, "shortlisted") == 0 || strcmp(s, "rejected") == 0 ||
            strcmp(s, "finalist") == 0)
            assert_int_equal(n, 1);
        else
            assert_int_equal(n, 0);
    }
    assert_int_equal(total, 3);
    assert_string_equal(ojson_str(json_array_get(st, 0), "stage"), "initiative");
    json_decref(m);

    /* As of 09-01 over all time: I3 awarded, I4 at its submitted stage. */
    m = build_opts(f, NULL, NULL, "2023-09-01", "bappeda", true);
    json_array_foreach(chart(m, "innovations_by_stage"), i, e)
    {
        const char *s = ojson_str(e, "stage");
        bool one = strcmp(s, "awarded") == 0 || strcmp(s, "initiative") == 0;
        assert_int_equal(ojson_int(e, "count", -1), one ? 1 : 0);
    }
    /* Open period: the weeks from the first visit to the last (bappeda: one). */
    w = chart(m, "visits_per_week");
    assert_int_equal(json_array_size(w), 1);
    assert_string_equal(ojson_str(json_array_get(w, 0), "week"), "2023-05-01");
    json_decref(m);

    /* A period too long for weekly bars: the span of the visits instead. */
    m = build_opts(f, "2000-01-01", "2030-01-01", "2023-09-01", NULL, true);
    w = chart(m, "visits_per_week");
    assert_int_equal(json_array_size(w), 6); /* 05-01 .. 06-05 */
    assert_string_equal(ojson_str(json_array_get(w, 5), "week"), "2023-06-05");
    json_decref(m);
}

static void test_opts_parse(void **state)
{
    report_opts r = {0};
    kabar_error e = {0};
    assert_int_equal(report_opts_parse(&r, "2023-04-01", "2023-05-01", "2023-05-10", "WITA", &e),
                     0);
    assert_int_equal(r.since, day("2023-04-01"));
    assert_int_equal(r.until, day("2023-05-01"));
    assert_int_equal(r.today, day("2023-05-10"));
    assert_int_equal(r.tz_s, 8 * 3600);
    assert_int_equal(report_opts_parse(&r, NULL, NULL, NULL, NULL, &e), 0);
    assert_int_equal(r.since, ODATE_NONE);
    assert_int_equal(r.tz_s, ODATE_WIB);
    assert_int_equal(report_opts_parse(&r, "2023-02-30", NULL, NULL, NULL, &e), KABAR_BAD_VALUE);
    assert_non_null(strstr(e.message, "--since"));
    assert_int_equal(report_opts_parse(&r, "2023-05-01", "2023-04-01", NULL, NULL, &e),
                     KABAR_BAD_VALUE);
    assert_non_null(strstr(e.message, "before --since"));
    assert_int_equal(report_opts_parse(&r, NULL, NULL, NULL, "Mars", &e), KABAR_BAD_VALUE);
    assert_non_null(strstr(e.message, "--tz"));
    assert_int_equal(report_opts_parse(&r, NULL, NULL, "yesterday", NULL, &e), KABAR_BAD_VALUE);
    assert_non_null(strstr(e.message, "--now"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_median),
        cmocka_unit_test(test_rate),
        cmocka_unit_test_setup_teardown(test_empty_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_figures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_periods, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_agency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_charts, setup, teardown),
        cmocka_unit_test(test_opts_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
