/*
 * blog_test.c - the shape of kabard's log lines and the rate limiter that
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

#include "blog.c"

static void test_line_format(void **state)
{
    char line[BLOG_LINE_MAX];
    /* 2026-11-25T07:40:00.123Z */
    int64_t ns = 1795592400LL * 1000000000 + 123456789;
    int n = blog_format(line, ns, BLOG_INFO, "KABARD-READY", "listening on %s (head seq %d)",
                        "tcp://127.0.0.1:7450", 42);
    assert_string_equal(line, "2026-11-25T07:40:00.123Z kabard INFO KABARD-READY listening on "
                              "tcp://127.0.0.1:7450 (head seq 42)\n");
    assert_int_equal(n, (int)strlen(line));
}

static void test_one_line_always(void **state)
{
    char line[BLOG_LINE_MAX];
    /* A newline in peer-supplied text cannot start a forged line. */
    blog_format(line, 0, BLOG_WARN, "KABARD-BAD-MSG", "text\nkabard INFO KABARD-READY fake");
    assert_ptr_equal(strchr(line, '\n'), line + strlen(line) - 1);
    /* An over-long line is cut, still ends in a newline. */
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    int n = blog_format(line, 0, BLOG_INFO, "KABARD-X", "%s", big);
    assert_true(n < BLOG_LINE_MAX);
    assert_memory_equal(line + n - 4, "...\n", 4);
}

static void test_levels(void **state)
{
    assert_int_equal(blog_level_parse("debug"), BLOG_DEBUG);
    assert_int_equal(blog_level_parse("warn"), BLOG_WARN);
    assert_int_equal(blog_level_parse("WARN"), -1);
    assert_int_equal(blog_level_parse(NULL), -1);
    blog_init(2, BLOG_WARN);
    assert_false(blog_enabled(BLOG_INFO));
    assert_true(blog_enabled(BLOG_ERROR));
}

static void test_rate_limit(void **state)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    blog_init(fds[1], BLOG_INFO);
    blog_limit l = {0};
    int written = 0;
    for (int i = 0; i < 1000; i++)
        written += blog_limited(&l, 10000, BLOG_INFO, "KABARD-BAD-MSG", "bad %d", i);
    assert_int_equal(written, BLOG_BURST);
    assert_true(l.suppressed == 1000 - BLOG_BURST);
    blog_limit_flush(&l, 10500); /* window not over: nothing yet */
    assert_true(l.suppressed == 1000 - BLOG_BURST);
    blog_limit_flush(&l, 11000);
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
    assert_int_equal(lines, BLOG_BURST + 1);
    assert_non_null(strstr(buf, "995 more lines like this suppressed"));
    blog_init(2, BLOG_INFO);
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
