/*
 * schema_test.c - the schema registry: the built-in file implements the
 * EVENTS.md catalogue, a bad registry file is rejected with the JSON Pointer
 * of the problem, KABAR_SCHEMA replaces the built-in registry, and a new
 * event type needs nothing but a registry entry.
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
#include <msgpack.h>

#include "kabar.h"

static void test_builtin_has_the_catalogue(void **state)
{
    const kabar_schema *s = kabar_schema_builtin();
    assert_non_null(s);
    static const char *const want[] = {
        "attendance.reported", "finding.overdue",     "finding.raised",     "finding.responded",
        "finding.reviewed",    "innovation.advanced", "innovation.awarded", "innovation.submitted",
        "visit.completed",     "visit.scheduled",
    };
    assert_int_equal(kabar_schema_count(s), 10);
    for (size_t i = 0; i < 10; i++)
        assert_string_equal(kabar_schema_type_name(s, i), want[i]);
    assert_null(kabar_schema_type_name(s, 10));
}

/* The file in the source tree is the one compiled in, and it loads. */
static void test_source_file_loads(void **state)
{
    const char *src = getenv("KABAR_SOURCE_DIR");
    if (src == NULL)
        skip();
    char path[1024];
    snprintf(path, sizeof path, "%s/proto/schema/events.json", src);
    kabar_schema *s = NULL;
    kabar_error e;
    if (kabar_schema_load(&s, path, &e) != 0)
        fail_msg("%s", e.message);
    assert_int_equal(kabar_schema_count(s), 10);
    kabar_schema_destroy(&s);
    assert_null(s);
    kabar_schema_destroy(&s); /* NULL is fine */
    kabar_schema_destroy(NULL);
}

static void test_load_missing_file(void **state)
{
    kabar_schema *s = NULL;
    kabar_error e;
    assert_int_equal(kabar_schema_load(&s, "/nonexistent/kabar.json", &e), KABAR_IO);
    assert_null(s);
    assert_non_null(strstr(e.message, "/nonexistent/kabar.json"));
}

/* A registry with one type whose "body" fields are `fields` (a JSON text). */
static int parse_with(const char *fields, const char *extra, kabar_error *e)
{
    char json[2048];
    snprintf(json, sizeof json,
             "{\"format\":1,\"types\":{\"x.y\":{\"versions\":{\"1\":{\"fields\":{%s}%s}}}}}",
             fields, extra ? extra : "");
    kabar_schema *s = NULL;
    int rc = kabar_schema_parse(&s, json, strlen(json), e);
    if (rc == 0)
        assert_non_null(s);
    else
        assert_null(s);
    kabar_schema_destroy(&s);
    return rc;
}

#define BAD(fields, extra, where)                                                                  \
    do {                                                                                           \
        kabar_error e_ = {0};                                                                      \
        int rc_ = parse_with(fields, extra, &e_);                                                  \
        if (rc_ != KABAR_BAD_SCHEMA || strstr(e_.message, where) == NULL)                          \
            fail_msg("%s: expected BAD_SCHEMA at %s, got %s: %s", fields, where,                   \
                     kabar_errname(rc_), e_.message);                                              \
    } while (0)

static void test_bad_schemas_name_the_place(void **state)
{
    kabar_error e;
    assert_int_equal(parse_with("\"a\":{\"type\":\"string\"}", NULL, &e), 0);
    BAD("\"a\":{\"type\":\"strng\"}", NULL, "/types/x.y/versions/1/fields/a/type");
    BAD("\"a\":{\"type\":\"string\",\"maxlen\":5}", NULL, "/fields/a/maxlen");
    BAD("\"a\":{\"type\":\"string\",\"max_len\":-1}", NULL, "/fields/a/max_len");
    BAD("\"a\":{\"type\":\"string\",\"min_len\":9,\"max_len\":5}", NULL, "/fields/a");
    BAD("\"a\":{\"type\":\"int\",\"min\":9,\"max\":5}", NULL, "/fields/a");
    BAD("\"a\":{\"type\":\"int\",\"min\":\"0\"}", NULL, "/fields/a/min");
    BAD("\"a\":{\"type\":\"enum\"}", NULL, "/fields/a/values");
    BAD("\"a\":{\"type\":\"enum\",\"values\":[\"x\",\"x\"]}", NULL, "/fields/a/values");
    BAD("\"a\":{\"type\":\"enum\",\"values\":[\"x\",3]}", NULL, "/fields/a/values/1");
    BAD("\"a\":{\"type\":\"array\"}", NULL, "/fields/a/items");
    BAD("\"a\":{\"type\":\"array\",\"items\":{\"type\":\"int\"},\"min_items\":3,\"max_items\":2}",
        NULL, "/fields/a");
    BAD("\"a\":{\"type\":\"object\",\"fields\":{\"h\":{\"type\":\"agency\",\"target\":true,"
        "\"required\":true}}}",
        NULL, "/fields/a/fields/h");
    BAD("\"h\":{\"type\":\"agency\",\"target\":true}", NULL, "/fields/h"); /* not required */
    BAD("\"h\":{\"type\":\"string\",\"target\":true}", NULL, "/fields/h/target");
    BAD("\"A\":{\"type\":\"string\"}", NULL, "/fields/A");
    BAD("\"a\":{\"type\":\"int\"}", ",\"rules\":[{\"le\":[\"a\",\"b\"]}]", "/rules/0");
    BAD("\"a\":{\"type\":\"int\"},\"b\":{\"type\":\"string\"}",
        ",\"rules\":[{\"le\":[\"a\",\"b\"]}]", "/rules/0");
    BAD("\"a\":{\"type\":\"int\"},\"b\":{\"type\":\"date\"}", ",\"rules\":[{\"le\":[\"a\",\"b\"]}]",
        "/rules/0");
    BAD("\"a\":{\"type\":\"int\"}", ",\"rulez\":[]", "/versions/1/rulez");
    /* Nesting: body (level 2) + 6 containers is the limit of 8 levels. */
    const char *deep =
        "\"a\":{\"type\":\"array\",\"items\":{\"type\":\"array\",\"items\":{\"type\":"
        "\"array\",\"items\":{\"type\":\"array\",\"items\":{\"type\":\"array\","
        "\"items\":{\"type\":\"array\",\"items\":{\"type\":\"int\"}}}}}}}";
    assert_int_equal(parse_with(deep, NULL, &e), 0);
    BAD("\"a\":{\"type\":\"array\",\"items\":{\"type\":\"array\",\"items\":{\"type\":"
        "\"array\",\"items\":{\"type\":\"array\",\"items\":{\"type\":\"array\","
        "\"items\":{\"type\":\"array\",\"items\":{\"type\":\"array\",\"items\":{\"type\":\"int\"}}}"
        "}}}}}",
        NULL, "/items/items/items/items/items/items");
}

static void test_bad_registry_files(void **state)
{
    static const struct {
        const char *json, *where;
    } cases[] = {
        {"{\"format\":1,\"types\":{", "line 1"},
        {"[]", "schema /"},
        {"{\"format\":2,\"types\":{}}", "/format"},
        {"{\"format\":1,\"types\":{}}", "/types"},
        {"{\"format\":1,\"typos\":{}}", "/typos"},
        {"{\"format\":1,\"types\":{\"Bad Type\":{\"versions\":{\"1\":{\"fields\":{}}}}}}",
         "/types/Bad Type"},
        {"{\"format\":1,\"types\":{\"a.b\":{\"versions\":{\"0\":{\"fields\":{}}}}}}",
         "/types/a.b/versions/0"},
        {"{\"format\":1,\"types\":{\"a.b\":{\"versions\":{\"v1\":{\"fields\":{}}}}}}",
         "/versions/v1"},
        {"{\"format\":1,\"types\":{\"a.b\":{\"versions\":{}}}}", "/types/a.b/versions"},
        {"{\"format\":1,\"types\":{\"a.b\":{\"versions\":{\"1\":{}}}}}", "/versions/1/fields"},
        {"{\"format\":1,\"format\":1,\"types\":{}}", "duplicate"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kabar_schema *s = NULL;
        kabar_error e = {0};
        int rc = kabar_schema_parse(&s, cases[i].json, strlen(cases[i].json), &e);
        if (rc != KABAR_BAD_SCHEMA || strstr(e.message, cases[i].where) == NULL)
            fail_msg("case %zu: expected BAD_SCHEMA naming %s, got %s: %s", i, cases[i].where,
                     kabar_errname(rc), e.message);
        assert_null(s);
    }
}

/* Adding a type is a registry change only: no code knows "permit.issued". */
static void test_new_type_from_data_only(void **state)
{
    const char *reg = "{\"format\":1,\"types\":{\"permit.issued\":{\"versions\":{"
                      "\"1\":{\"fields\":{\"permit_id\":{\"type\":\"string\",\"required\":true}}},"
                      "\"2\":{\"fields\":{\"permit_id\":{\"type\":\"string\",\"required\":true},"
                      "\"holder\":{\"type\":\"agency\",\"required\":true,\"target\":true},"
                      "\"valid_until\":{\"type\":\"instant\"}}}}}}}";
    kabar_schema *s = NULL;
    kabar_error e;
    if (kabar_schema_parse(&s, reg, strlen(reg), &e) != 0)
        fail_msg("%s", e.message);
    const char *ev = "{\"id\":\"p1\",\"type\":\"permit.issued\",\"source\":\"dpmptsp\","
                     "\"occurred_at\":\"2024-01-02T03:04:05Z\",\"body\":{\"permit_id\":\"IMB-7\","
                     "\"holder\":\"dinkes\",\"valid_until\":\"2025-01-01T00:00:00+07:00\"}}";
    uint8_t *bytes = NULL;
    size_t n = 0;
    if (kabar_event_from_json(s, ev, strlen(ev), NULL, &bytes, &n, &e) != 0)
        fail_msg("%s", e.message);
    kabar_event d;
    assert_int_equal(kabar_event_decode(s, bytes, n, &d, &e), 0);
    assert_int_equal(d.v, 2); /* the newest version by default */
    assert_int_equal(d.ntargets, 1);
    assert_memory_equal(d.targets[0].ptr, "dinkes", 6);
    kabar_buf b = {0};
    assert_int_equal(kabar_event_to_json(&b, 0, INT64_MIN, bytes, n, &e), 0);
    assert_non_null(strstr(b.data, "\"valid_until\":\"2024-12-31T17:00:00Z\""));
    /* The built-in registry does not know the type. */
    assert_int_equal(kabar_event_decode(kabar_schema_builtin(), bytes, n, &d, &e),
                     KABAR_UNKNOWN_TYPE);
    kabar_buf_free(&b);
    free(bytes);
    kabar_schema_destroy(&s);
}

/* KABAR_SCHEMA names the registry of the process (read once). */
static void test_default_honours_env(void **state)
{
    char path[] = "/tmp/kabar-schema-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *reg =
        "{\"format\":1,\"types\":{\"only.one\":{\"versions\":{\"1\":{\"fields\":{}}}}}}";
    assert_int_equal(write(fd, reg, strlen(reg)), (ssize_t)strlen(reg));
    close(fd);
    setenv("KABAR_SCHEMA", path, 1);
    kabar_error e;
    const kabar_schema *s = kabar_schema_default(&e);
    unlink(path);
    assert_non_null(s);
    assert_int_equal(kabar_schema_count(s), 1);
    assert_string_equal(kabar_schema_type_name(s, 0), "only.one");
    assert_ptr_equal(kabar_schema_default(&e), s);
    unsetenv("KABAR_SCHEMA");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        /* First: kabar_schema_default reads the environment once per process. */
        cmocka_unit_test(test_default_honours_env),
        cmocka_unit_test(test_builtin_has_the_catalogue),
        cmocka_unit_test(test_source_file_loads),
        cmocka_unit_test(test_load_missing_file),
        cmocka_unit_test(test_bad_schemas_name_the_place),
        cmocka_unit_test(test_bad_registry_files),
        cmocka_unit_test(test_new_type_from_data_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
