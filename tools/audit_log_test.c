/*
 * audit_log_test.c - opening a data directory that is not a good kabar log
 * (tools/audit_log.h): each refusal names what is wrong.
 *
 *  - meta without "format" (the value was read uninitialised before):
 *    "not a kabar log: meta has no format";
 *  - format 1 (predates signatures): named, with "re-imported";
 *  - no events database: "not a kabar log";
 *  - format 2 with no events opens, head 0.
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

/* The CLI's sources are not a library: the test compiles the one it tests. */
#include "audit_log.c"

typedef struct fixture {
    char dir[256];
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    const char *base = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/audit_log_test.XXXXXX", base ? base : "/tmp");
    if (mkdtemp(f->dir) == NULL) {
        snprintf(f->dir, sizeof f->dir, "/tmp/audit_log_test.XXXXXX");
        assert_non_null(mkdtemp(f->dir));
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    char p[300];
    snprintf(p, sizeof p, "%s/log.mdb", f->dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/log.mdb-lock", f->dir);
    unlink(p);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* A log.mdb with the named databases; meta "format" = format (< 0: absent). */
static void make_log(const fixture *f, bool with_events, int format)
{
    char path[300];
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi meta, events;
    snprintf(path, sizeof path, "%s/log.mdb", f->dir);
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
    assert_int_equal(mdb_env_open(env, path, MDB_NOSUBDIR, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", MDB_CREATE, &meta), 0);
    if (with_events)
        assert_int_equal(mdb_dbi_open(txn, "events", MDB_CREATE, &events), 0);
    MDB_val k = {6, "origin"}, v = {8, "test/log"};
    assert_int_equal(mdb_put(txn, meta, &k, &v, 0), 0);
    if (format >= 0) {
        uint8_t b = (uint8_t)format;
        MDB_val fk = {6, "format"}, fv = {1, &b};
        assert_int_equal(mdb_put(txn, meta, &fk, &fv, 0), 0);
    }
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void test_meta_without_format(void **state)
{
    fixture *f = *state;
    audit_log l;
    kabar_error err = {0};
    make_log(f, true, -1);
    assert_int_equal(audit_log_open(&l, f->dir, &err), KABAR_STORE);
    assert_non_null(strstr(err.message, "is not a kabar log: meta has no format"));
}

static void test_format_1(void **state)
{
    fixture *f = *state;
    audit_log l;
    kabar_error err = {0};
    make_log(f, true, 1);
    assert_int_equal(audit_log_open(&l, f->dir, &err), KABAR_STORE);
    assert_non_null(strstr(err.message, "is a log of format 1"));
    assert_non_null(strstr(err.message, "re-imported"));
}

static void test_no_events(void **state)
{
    fixture *f = *state;
    audit_log l;
    kabar_error err = {0};
    make_log(f, false, 2);
    assert_int_equal(audit_log_open(&l, f->dir, &err), KABAR_STORE);
    assert_non_null(strstr(err.message, "is not a kabar log"));
}

static void test_empty_format_2(void **state)
{
    fixture *f = *state;
    audit_log l;
    kabar_error err = {0};
    make_log(f, true, 2);
    assert_int_equal(audit_log_open(&l, f->dir, &err), 0);
    assert_int_equal(l.head, 0);
    assert_string_equal(l.origin, "test/log");
    audit_log_close(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_meta_without_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_format_1, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_format_2, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
