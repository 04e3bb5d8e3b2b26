/*
 * agentdb_test.c - the agent's store: outbox positions never reused, acks
 * delete, rejections are kept, dead letters move to retry and back, the
 * status adds up, and everything survives closing and reopening.
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

#include "agentdb.h"

static char dir[256];

static int setup(void **state)
{
    snprintf(dir, sizeof dir, "/tmp/agentdb-test-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int teardown(void **state)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

typedef struct seen {
    uint64_t pos[16];
    char bytes[16][16];
    size_t n;
} seen;

static int collect(void *arg, const agentdb_item *it)
{
    seen *s = arg;
    s->pos[s->n] = it->pos;
    snprintf(s->bytes[s->n], sizeof s->bytes[0], "%.*s", (int)it->len, (const char *)it->bytes);
    s->n++;
    return 0;
}

static void append3(agentdb *db, uint64_t *first)
{
    const uint8_t *b[3] = {(const uint8_t *)"one", (const uint8_t *)"two",
                           (const uint8_t *)"three"};
    size_t l[3] = {3, 3, 5};
    kabar_error e;
    assert_int_equal(agentdb_outbox_append(db, b, l, 3, 1000, first, &e), 0);
}

static void test_outbox(void **state)
{
    agentdb *db = NULL;
    kabar_error e;
    uint64_t first = 0;
    assert_int_equal(agentdb_open(&db, dir, false, &e), 0);
    append3(db, &first);
    assert_int_equal(first, 1);

    seen s = {0};
    size_t count = 0;
    assert_int_equal(agentdb_outbox_scan(db, 0, 10, collect, &s, &count, &e), 0);
    assert_int_equal(count, 3);
    assert_int_equal(s.pos[0], 1);
    assert_int_equal(s.pos[2], 3);
    assert_string_equal(s.bytes[2], "three");

    /* From position 2, at most 1. */
    memset(&s, 0, sizeof s);
    assert_int_equal(agentdb_outbox_scan(db, 2, 1, collect, &s, &count, &e), 0);
    assert_int_equal(count, 1);
    assert_int_equal(s.pos[0], 2);

    agentdb_result r[2] = {{.pos = 1, .seq = 10, .code = KABAR_OK},
                           {.pos = 2, .seq = 0, .code = KABAR_BAD_VALUE}};
    snprintf(r[1].message, sizeof r[1].message, "body.x: not allowed");
    assert_int_equal(agentdb_outbox_done(db, r, 2, 2000, &e), 0);
    assert_int_equal(agentdb_outbox_done(db, r, 2, 2000, &e), 0); /* twice: harmless */

    agentdb_status st;
    assert_int_equal(agentdb_status_get(db, &st, &e), 0);
    assert_int_equal(st.outbox_depth, 1);
    assert_int_equal(st.oldest_pos, 3);
    assert_int_equal(st.oldest_at, 1000);
    assert_int_equal(st.rejected, 1);
    assert_int_equal(st.last_acked_seq, 10);
    assert_int_equal(st.forwarded, 1);
    agentdb_close(&db);
    assert_null(db);

    /* Reopen: positions continue, never reused even when the outbox empties. */
    assert_int_equal(agentdb_open(&db, dir, false, &e), 0);
    agentdb_result r3 = {.pos = 3, .seq = 11, .code = KABAR_OK};
    assert_int_equal(agentdb_outbox_done(db, &r3, 1, 3000, &e), 0);
    append3(db, &first);
    assert_int_equal(first, 4);
    assert_int_equal(agentdb_status_get(db, &st, &e), 0);
    assert_int_equal(st.outbox_depth, 3);
    assert_int_equal(st.next_pos, 7);
    assert_int_equal(st.last_acked_seq, 11);
    agentdb_close(&db);
}

static int first_letter(void *arg, const agentdb_letter *l)
{
    agentdb_letter *out = arg;
    *out = *l;
    out->bytes = NULL;
    return 0;
}

static void test_rejected_list_keeps_event(void **state)
{
    agentdb *db = NULL;
    kabar_error e;
    uint64_t first;
    assert_int_equal(agentdb_open(&db, dir, false, &e), 0);
    append3(db, &first);
    agentdb_result r = {.pos = first + 2, .code = KABAR_UNKNOWN_TYPE};
    snprintf(r.message, sizeof r.message, "type: x.y is not registered");
    assert_int_equal(agentdb_outbox_done(db, &r, 1, 5000, &e), 0);
    agentdb_letter l = {0};
    assert_int_equal(agentdb_list_each(db, AGENTDB_REJECTED, first_letter, &l, &e), 0);
    assert_int_equal(l.key, first + 2);
    assert_string_equal(l.code, "UNKNOWN_TYPE");
    assert_string_equal(l.reason, "type: x.y is not registered");
    assert_int_equal(l.len, 5);
    assert_true(l.received_at == INT64_MIN);
    agentdb_close(&db);
}

static void test_identity(void **state)
{
    agentdb *db = NULL;
    kabar_error e;
    assert_int_equal(agentdb_open(&db, dir, false, &e), 0);
    assert_int_equal(agentdb_set_identity(db, "dinkes", "tcp://x:1", &e), 0);
    assert_int_equal(agentdb_set_identity(db, "dinkes", "tcp://y:2", &e), 0);
    assert_int_equal(agentdb_set_identity(db, "bappeda", "tcp://y:2", &e), KABAR_BAD_VALUE);
    assert_non_null(strstr(e.message, "dinkes"));
    agentdb_status st;
    assert_int_equal(agentdb_status_get(db, &st, &e), 0);
    assert_string_equal(st.agency, "dinkes");
    assert_string_equal(st.broker, "tcp://y:2");
    agentdb_close(&db);
}

/* The forwarding problem shown by `kabar agent status`: set, kept across a reopen, cleared. */
static void test_problem(void **state)
{
    agentdb *db = NULL;
    kabar_error e;
    agentdb_status st;
    assert_int_equal(agentdb_open(&db, dir, false, &e), 0);
    assert_int_equal(agentdb_status_get(db, &st, &e), 0);
    assert_string_equal(st.problem_code, "");
    assert_true(st.problem_since == INT64_MIN);
    assert_int_equal(
        agentdb_set_problem(db, "UNKNOWN_KEY", "key 0123 revoked: register a new one", 77, &e), 0);
    agentdb_close(&db);
    assert_int_equal(agentdb_open(&db, dir, true, &e), 0);
    assert_int_equal(agentdb_status_get(db, &st, &e), 0);
    assert_string_equal(st.problem_code, "UNKNOWN_KEY");
    assert_string_equal(st.problem, "key 0123 revoked: register a new one");
    assert_true(st.problem_since == 77);
    agentdb_close(&db);
    assert_int_equal(agentdb_open(&db, dir, false, &e), 0);
    assert_int_equal(agentdb_set_problem(db, "", "ignored", 99, &e), 0);
    assert_int_equal(agentdb_status_get(db, &st, &e), 0);
    assert_string_equal(st.problem_code, "");
    assert_string_equal(st.problem, "");
    assert_true(st.problem_since == INT64_MIN);
    agentdb_close(&db);
}

static void test_dead_letters(void **state)
{
    agentdb *db = NULL;
    kabar_error e;
    assert_int_equal(agentdb_open(&db, dir, false, &e), 0);
    agentdb_letter l = {.key = 42, .at = 7, .received_at = 6, .tries = 5};
    snprintf(l.code, sizeof l.code, "HANDOFF");
    snprintf(l.reason, sizeof l.reason, "handler exited with status 1");
    l.bytes = (const uint8_t *)"event";
    l.len = 5;
    assert_int_equal(agentdb_dead_put(db, &l, 42, false, &e), 0);
    uint64_t pos;
    assert_int_equal(agentdb_inbox_pos(db, &pos, &e), 0);
    assert_int_equal(pos, 42);

    agentdb_letter got = {0};
    assert_int_equal(agentdb_list_each(db, AGENTDB_DEAD, first_letter, &got, &e), 0);
    assert_int_equal(got.key, 42);
    assert_int_equal(got.tries, 5);
    assert_int_equal(got.received_at, 6);
    assert_string_equal(got.reason, "handler exited with status 1");

    size_t moved = 99;
    assert_int_equal(agentdb_dead_requeue(db, 7, &moved, &e), KABAR_NOT_FOUND);
    assert_int_equal(agentdb_dead_requeue(db, 0, &moved, &e), 0);
    assert_int_equal(moved, 1);

    kabar_buf buf = {0};
    bool found = false;
    assert_int_equal(agentdb_retry_first(db, &got, &buf, &found, &e), 0);
    assert_true(found);
    assert_int_equal(got.key, 42);
    assert_memory_equal(got.bytes, "event", 5);

    /* Failing again parks it back, leaving the retry list. */
    got.tries += 5;
    assert_int_equal(agentdb_dead_put(db, &got, 0, true, &e), 0);
    agentdb_status st;
    assert_int_equal(agentdb_status_get(db, &st, &e), 0);
    assert_int_equal(st.dead, 1);
    assert_int_equal(st.retry, 0);

    assert_int_equal(agentdb_dead_requeue(db, 42, &moved, &e), 0);
    assert_int_equal(agentdb_retry_done(db, 42, &e), 0);
    assert_int_equal(agentdb_retry_first(db, &got, &buf, &found, &e), 0);
    assert_false(found);
    assert_int_equal(agentdb_status_get(db, &st, &e), 0);
    assert_int_equal(st.dead, 0);
    assert_int_equal(st.delivered, 1);
    kabar_buf_free(&buf);

    /* The inbox position only moves forward. */
    assert_int_equal(agentdb_inbox_commit(db, 40, 0, 1, &e), 0);
    assert_int_equal(agentdb_inbox_pos(db, &pos, &e), 0);
    assert_int_equal(pos, 42);
    agentdb_close(&db);
}

static void test_readonly_missing(void **state)
{
    agentdb *db = NULL;
    kabar_error e;
    char other[300];
    snprintf(other, sizeof other, "%s/none", dir);
    assert_int_equal(agentdb_open(&db, other, true, &e), KABAR_NOT_FOUND);
    assert_null(db);
    assert_non_null(strstr(e.message, "no agent store"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_outbox, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rejected_list_keeps_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_problem, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_letters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_readonly_missing, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
