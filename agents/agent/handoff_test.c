/*
 * handoff_test.c - handing events to services: the JSON-lines file gets
 * one line per event; an exec handler gets the JSON on stdin and the
 * KABAR_* variables, and its exit status, a signal or a timeout are
 * failed tries with a message saying which.
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

#include "handoff.h"

static char dir[256];
static uint8_t *event;
static size_t event_len;

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/handoff-test-XXXXXX");
    assert_non_null(mkdtemp(dir));
    const char *json = "{\"id\":\"att-1\",\"type\":\"attendance.reported\",\"source\":\"dinkes\","
                       "\"body\":{\"agency\":\"dinkes\",\"date\":\"2023-04-26\",\"total\":120,"
                       "\"present\":97}}";
    kabar_error e;
    assert_int_equal(kabar_event_from_json(kabar_schema_default(&e), json, strlen(json), NULL,
                                           &event, &event_len, &e),
                     0);
    return 0;
}

static int teardown(void **state)
{
    free(event);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void test_jsonl(void **state)
{
    char path[300];
    snprintf(path, sizeof path, "%s/inbox.jsonl", dir);
    handoff *h = NULL;
    kabar_error e;
    handoff_opts o = {.jsonl_path = path, .agency = "dinkes"};
    assert_int_equal(handoff_open(&h, &o, &e), 0);
    assert_int_equal(handoff_try(h, 7, 0, event, event_len, 1, &e), 0);
    assert_int_equal(handoff_try(h, 8, 0, event, event_len, 1, &e), 0);
    assert_int_equal(handoff_sync(h, &e), 0);
    handoff_close(&h);
    assert_null(h);
    char *text = slurp(path);
    assert_non_null(text);
    assert_non_null(strstr(text, "{\"seq\":7,\"id\":\"att-1\""));
    char *second = strchr(text, '\n');
    assert_non_null(second);
    assert_non_null(strstr(second + 1, "{\"seq\":8,"));
    assert_int_equal(text[strlen(text) - 1], '\n');
}

static void test_exec_gets_json_and_env(void **state)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd,
             "cat > %s/in.json; echo \"$KABAR_SEQ $KABAR_TYPE $KABAR_ID $KABAR_SOURCE "
             "$KABAR_AGENCY $KABAR_TRY\" > %s/env",
             dir, dir);
    handoff *h = NULL;
    kabar_error e;
    handoff_opts o = {.exec_cmd = cmd, .agency = "dinkes"};
    assert_int_equal(handoff_open(&h, &o, &e), 0);
    assert_int_equal(handoff_try(h, 12, 0, event, event_len, 2, &e), 0);
    handoff_close(&h);
    char path[300];
    snprintf(path, sizeof path, "%s/env", dir);
    assert_string_equal(slurp(path), "12 attendance.reported att-1 dinkes dinkes 2\n");
    snprintf(path, sizeof path, "%s/in.json", dir);
    assert_non_null(strstr(slurp(path), "\"body\":{\"agency\":\"dinkes\""));
}

static void test_exec_failures(void **state)
{
    handoff *h = NULL;
    kabar_error e;
    handoff_opts o = {.exec_cmd = "exit 3", .agency = "dinkes"};
    assert_int_equal(handoff_open(&h, &o, &e), 0);
    assert_int_not_equal(handoff_try(h, 1, 0, event, event_len, 1, &e), 0);
    assert_non_null(strstr(e.message, "status 3"));
    handoff_close(&h);

    o.exec_cmd = "kill -9 $$";
    assert_int_equal(handoff_open(&h, &o, &e), 0);
    assert_int_not_equal(handoff_try(h, 1, 0, event, event_len, 1, &e), 0);
    assert_non_null(strstr(e.message, "signal 9"));
    handoff_close(&h);

    o.exec_cmd = "sleep 30";
    o.exec_timeout_ms = 200;
    assert_int_equal(handoff_open(&h, &o, &e), 0);
    assert_int_equal(handoff_try(h, 1, 0, event, event_len, 1, &e), KABAR_TIMEOUT);
    assert_non_null(strstr(e.message, "200 ms"));
    handoff_close(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_jsonl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_gets_json_and_env, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exec_failures, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
