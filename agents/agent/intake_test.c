/*
 * intake_test.c - what the agent accepts from local services: JSON or
 * canonical msgpack, valid against the schema, published as its own agency
 * only; and the reply objects services read.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "intake.h"

#define ATTENDANCE(src)                                                                            \
    "{\"id\":\"att-1\",\"type\":\"attendance.reported\"," src "\"body\":{\"agency\":\"dinkes\","   \
    "\"date\":\"2023-04-26\",\"total\":120,\"present\":97}}"

static const kabar_schema *schema(void)
{
    kabar_error e;
    const kabar_schema *s = kabar_schema_default(&e);
    assert_non_null(s);
    return s;
}

static void test_json_without_source_gets_the_agency(void **state)
{
    const char *json = ATTENDANCE("");
    uint8_t *out = NULL;
    size_t len = 0;
    char id[KABAR_MAX_ID_LEN + 1];
    kabar_error e;
    assert_int_equal(intake_validate(schema(), "dinkes", json, strlen(json), &out, &len, id, &e),
                     0);
    assert_string_equal(id, "att-1");
    kabar_event ev;
    assert_int_equal(kabar_event_decode(schema(), out, len, &ev, &e), 0);
    assert_int_equal(ev.source.len, 6);
    assert_memory_equal(ev.source.ptr, "dinkes", 6);

    /* The same event as canonical msgpack is accepted as is. */
    uint8_t *again = NULL;
    size_t len2 = 0;
    assert_int_equal(intake_validate(schema(), "dinkes", out, len, &again, &len2, id, &e), 0);
    assert_int_equal(len2, len);
    assert_memory_equal(again, out, len);
    free(again);

    /* Truncated msgpack is refused with a code, not a crash. */
    for (size_t cut = 0; cut < len; cut += 7)
        assert_int_not_equal(intake_validate(schema(), "dinkes", out, cut, &again, &len2, id, &e),
                             0);
    free(out);
}

static void test_other_source_is_refused(void **state)
{
    const char *json = ATTENDANCE("\"source\":\"bappeda\",");
    uint8_t *out = NULL;
    size_t len = 0;
    char id[KABAR_MAX_ID_LEN + 1];
    kabar_error e;
    assert_int_equal(intake_validate(schema(), "dinkes", json, strlen(json), &out, &len, id, &e),
                     KABAR_BAD_VALUE);
    assert_null(out);
    assert_non_null(strstr(e.message, "bappeda"));
    assert_non_null(strstr(e.message, "dinkes"));
}

static void test_invalid_events(void **state)
{
    const char *bad[] = {
        "{\"type\":\"attendance.reported\",\"body\":{\"agency\":\"dinkes\",\"date\":\"2023-04-26\","
        "\"total\":120}}",
        "{\"type\":\"no.such\",\"body\":{}}",
        "{not json",
        "",
    };
    const int codes[] = {KABAR_MISSING_FIELD, KABAR_UNKNOWN_TYPE, KABAR_BAD_JSON, -1};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t *out = NULL;
        size_t len = 0;
        char id[KABAR_MAX_ID_LEN + 1];
        kabar_error e = {0};
        int rc = intake_validate(schema(), "dinkes", bad[i], strlen(bad[i]), &out, &len, id, &e);
        assert_int_not_equal(rc, 0);
        if (codes[i] >= 0)
            assert_int_equal(rc, codes[i]);
        assert_true(e.message[0] != '\0');
        assert_null(out);
    }
}

static void test_replies(void **state)
{
    kabar_buf b = {0};
    assert_int_equal(intake_reply(&b, NULL, "att-1", 42), 0);
    assert_int_equal(b.len, strlen("{\"ok\":true,\"id\":\"att-1\",\"pos\":42}"));
    assert_memory_equal(b.data, "{\"ok\":true,\"id\":\"att-1\",\"pos\":42}", b.len);
    b.len = 0;
    kabar_error e;
    kabar_error_set(&e, KABAR_MISSING_FIELD, "body.present: required \"field\" missing");
    assert_int_equal(intake_reply(&b, &e, "", 0), 0);
    const char *want = "{\"ok\":false,\"error\":\"MISSING_FIELD\",\"message\":\"body.present: "
                       "required \\\"field\\\" missing\"}";
    assert_int_equal(b.len, strlen(want));
    assert_memory_equal(b.data, want, b.len);
    kabar_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_without_source_gets_the_agency),
        cmocka_unit_test(test_other_source_is_refused),
        cmocka_unit_test(test_invalid_events),
        cmocka_unit_test(test_replies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
