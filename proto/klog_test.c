/*
 * klog_test.c - the shape of kabard's log lines and the rate limiter that
 * keeps bad input from flooding the log.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "klog.h"

static void test_line_format(void **state)
{
    char line[KLOG_LINE_MAX];
    klog_init("kabard", 2, KLOG_INFO);
    /* 2026-11-25T07:40:00.123Z */
    int64_t ns = 1795592400LL * 1000000000 + 123456789;
    int n = klog_format(line, ns, KLOG_INFO, "KABARD-READY", "listening on %s (head seq %d)",
                        "tcp://127.0.0.1:7450", 42);
    assert_string_equal(line, "2026-11-25T07:40:00.123Z kabard INFO KABARD-READY listening on "
                              "tcp://127.0.0.1:7450 (head seq 42)\n");
    assert_int_equal(n, (int)strlen(line));
}

static void test_one_line_always(void **state)
{
    char line[KLOG_LINE_MAX];
    /* A newline in peer-supplied text cannot start a forged line. */
    klog_format(line, 0, KLOG_WARN, "KABARD-BAD-MSG", "text\nkabard INFO KABARD-READY fake");
    assert_ptr_equal(strchr(line, '\n'), line + strlen(line) - 1);
    /* An over-long line is cut, still ends in a newline. */
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    int n = klog_format(line, 0, KLOG_INFO, "KABARD-X", "%s", big);
    assert_true(n < KLOG_LINE_MAX);
    assert_memory_equal(line + n - 4, "...\n", 4);
}

static void test_levels(void **state)
{
    assert_int_equal(klog_level_parse("debug"), KLOG_DEBUG);
    assert_int_equal(klog_level_parse("warn"), KLOG_WARN);
    assert_int_equal(klog_level_parse("WARN"), -1);
    assert_int_equal(klog_level_parse(NULL), -1);
    klog_init("kabard", 2, KLOG_WARN);
    assert_false(klog_enabled(KLOG_INFO));
    assert_true(klog_enabled(KLOG_ERROR));
}

static void test_rate_limit(void **state)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    klog_init("kabard", fds[1], KLOG_INFO);
    klog_limit l = {0};
    int written = 0;
    for (int i = 0; i < 1000; i++)
        written += klog_limited(&l, 10000, KLOG_INFO, "KABARD-BAD-MSG", "bad %d", i);
    assert_int_equal(written, KLOG_BURST);
    assert_true(l.suppressed == 1000 - KLOG_BURST);
    klog_limit_flush(&l, 10500); /* window not over: nothing yet */
    assert_true(l.suppressed == 1000 - KLOG_BURST);
    klog_limit_flush(&l, 11000);
    assert_true(l.suppressed == 0);
    close(fds[1]);
    char buf[8192];
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    close(fds[0]);
    assert_true(n > 0);
    buf[n] = '\0';
    int lines = 0;
    for (char *p = buf; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    assert_int_equal(lines, KLOG_BURST + 1);
    assert_non_null(strstr(buf, "995 more lines like this suppressed"));
    klog_init("kabard", 2, KLOG_INFO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_line_format),
        cmocka_unit_test(test_one_line_always),
        cmocka_unit_test(test_levels),
        cmocka_unit_test(test_rate_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
