/*
 * config_test.c - kabard's configuration table: defaults, environment,
 * flags, and the messages a person gets for a mistake.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "config.c"

static const char *fake_env_vals[][2] = {
    {"KABAR_DATA", "/env/data"},
    {"KABAR_LISTEN", "tcp://0.0.0.0:9000"},
    {"KABAR_SCHEMA", "/env/schema.json"},
};

static const char *fake_env(const char *name)
{
    for (size_t i = 0; i < sizeof fake_env_vals / sizeof fake_env_vals[0]; i++)
        if (strcmp(fake_env_vals[i][0], name) == 0)
            return fake_env_vals[i][1];
    return NULL;
}

#define PARSE(c, e, env, ...)                                                                      \
    ({                                                                                             \
        char *argv_[] = {"kabard", __VA_ARGS__};                                                   \
        config_parse(c, (int)(sizeof argv_ / sizeof argv_[0]), argv_, env, e);                     \
    })

static void test_defaults(void **state)
{
    kabard_config c;
    kabar_error e = {0};
    char *argv[] = {"kabard"};
    assert_int_equal(config_parse(&c, 1, argv, NULL, &e), 0);
    assert_null(c.data);
    assert_string_equal(c.listen, "tcp://127.0.0.1:7450");
    assert_false(c.insecure);
    assert_null(c.schema);
    assert_int_equal(c.max_size, 0);
    assert_false(c.unsafe_nosync);
    assert_int_equal(c.log_level, KLOG_INFO);
    assert_null(c.origin);
    assert_int_equal(c.checkpoint_interval, 60);
    assert_int_equal(c.checkpoint_events, 10000);
    assert_int_equal(config_check(&c, &e), KABAR_INVALID_ARGUMENT);
    assert_non_null(strstr(e.message, "--data"));
    assert_non_null(strstr(e.message, "KABAR_DATA"));
}

static void test_env_then_flags(void **state)
{
    kabard_config c;
    kabar_error e = {0};
    assert_int_equal(PARSE(&c, &e, fake_env, "--insecure"), 0);
    assert_string_equal(c.data, "/env/data");
    assert_string_equal(c.listen, "tcp://0.0.0.0:9000");
    assert_string_equal(c.schema, "/env/schema.json");
    assert_true(c.insecure);
    /* Plaintext on every interface is refused, naming the endpoint and the way out. */
    assert_int_equal(config_check(&c, &e), KABAR_INVALID_ARGUMENT);
    assert_non_null(strstr(e.message, "tcp://0.0.0.0:9000"));
    assert_non_null(strstr(e.message, "loopback"));
    assert_int_equal(PARSE(&c, &e, fake_env, "--insecure", "--listen", "ipc:///tmp/k.sock"), 0);
    assert_int_equal(config_check(&c, &e), 0);
    /* Without --insecure (secure by default) any endpoint is fine. */
    assert_int_equal(PARSE(&c, &e, fake_env), 0);
    assert_false(c.insecure);
    assert_int_equal(config_check(&c, &e), 0);

    /* A flag beats its variable; both --name VALUE and --name=VALUE work. */
    assert_int_equal(PARSE(&c, &e, fake_env, "--data", "/flag/data", "--listen=tcp://127.0.0.1:*",
                           "--max-size", "64G", "--log-level=debug", "--unsafe-nosync"),
                     0);
    assert_string_equal(c.data, "/flag/data");
    assert_string_equal(c.listen, "tcp://127.0.0.1:*");
    assert_true(c.max_size == 64ULL << 30);
    assert_int_equal(c.log_level, KLOG_DEBUG);
    assert_true(c.unsafe_nosync);
}

static void test_mistakes(void **state)
{
    kabard_config c;
    kabar_error e = {0};
    assert_int_equal(PARSE(&c, &e, NULL, "--bogus"), KABAR_INVALID_ARGUMENT);
    assert_non_null(strstr(e.message, "unknown option --bogus"));
    assert_int_equal(PARSE(&c, &e, NULL, "--data"), KABAR_INVALID_ARGUMENT);
    assert_non_null(strstr(e.message, "--data needs a value"));
    assert_int_equal(PARSE(&c, &e, NULL, "--max-size", "lots"), KABAR_INVALID_ARGUMENT);
    assert_non_null(strstr(e.message, "\"lots\" is not a size"));
    assert_int_equal(PARSE(&c, &e, NULL, "--log-level", "chatty"), KABAR_INVALID_ARGUMENT);
    assert_non_null(strstr(e.message, "debug, info, warn or error"));
    assert_int_equal(PARSE(&c, &e, NULL, "--insecure=yes"), KABAR_INVALID_ARGUMENT);
    assert_non_null(strstr(e.message, "--insecure takes no value"));
    assert_int_equal(PARSE(&c, &e, NULL, "data"), KABAR_INVALID_ARGUMENT);
    assert_non_null(strstr(e.message, "unexpected argument"));
    assert_int_equal(PARSE(&c, &e, NULL, "--data="), KABAR_INVALID_ARGUMENT);
    /* --help works without the required settings. */
    assert_int_equal(PARSE(&c, &e, NULL, "--help"), 0);
    assert_true(c.help);
}

static void test_insecure_endpoints(void **state)
{
    const char *local[] = {"ipc:///run/kabar/kabard.sock",
                           "tcp://127.0.0.1:7450",
                           "tcp://127.0.0.1:*",
                           "tcp://127.1.2.3:9",
                           "tcp://localhost:7450",
                           "tcp://[::1]:7450"};
    const char *remote[] = {"tcp://0.0.0.0:7450",        "tcp://*:7450",
                            "tcp://10.0.0.5:7450",       "tcp://eth0:7450",
                            "tcp://128.0.0.1:7450",      "tcp://127.0.0.1.evil:1",
                            "tcp://[::]:7450",           "tcp://localhost.x:1",
                            "pgm://eth0;239.1.1.1:5555", "tcp://1.2.3.4;127.0.0.1:7450"};
    for (size_t i = 0; i < sizeof local / sizeof local[0]; i++)
        assert_true(config_endpoint_local(local[i]));
    for (size_t i = 0; i < sizeof remote / sizeof remote[0]; i++)
        assert_false(config_endpoint_local(remote[i]));
}

static void test_checkpoint_flags(void **state)
{
    kabard_config c;
    kabar_error e = {0};
    assert_int_equal(PARSE(&c, &e, NULL, "--checkpoint-interval", "5", "--checkpoint-events=100",
                           "--origin", "kabar.padang.go.id/log"),
                     0);
    assert_int_equal(c.checkpoint_interval, 5);
    assert_int_equal(c.checkpoint_events, 100);
    assert_string_equal(c.origin, "kabar.padang.go.id/log");
    assert_int_equal(PARSE(&c, &e, NULL, "--checkpoint-interval", "0"), KABAR_INVALID_ARGUMENT);
    assert_non_null(strstr(e.message, "--checkpoint-interval"));
}

static void test_bytes(void **state)
{
    uint64_t v = 99;
    assert_int_equal(opt_parse_bytes("0", &v), 0);
    assert_true(v == 0);
    assert_int_equal(opt_parse_bytes("1073741824", &v), 0);
    assert_true(v == 1073741824ULL);
    assert_int_equal(opt_parse_bytes("512M", &v), 0);
    assert_true(v == 512ULL << 20);
    assert_int_equal(opt_parse_bytes("2GiB", &v), 0);
    assert_true(v == 2ULL << 30);
    assert_int_equal(opt_parse_bytes("1T", &v), 0);
    assert_true(v == 1ULL << 40);
    assert_int_equal(opt_parse_bytes("100B", &v), 0);
    assert_true(v == 100);
    assert_int_equal(opt_parse_bytes("-1", &v), -1);
    assert_int_equal(opt_parse_bytes("1X", &v), -1);
    assert_int_equal(opt_parse_bytes("", &v), -1);
    assert_int_equal(opt_parse_bytes("99999999999999999999", &v), -1);
    assert_int_equal(opt_parse_bytes("20000000T", &v), -1); /* overflows 64 bits */
}

static void test_usage_lists_every_row(void **state)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    config_usage(f);
    fclose(f);
    for (size_t i = 0; i < table.nrows; i++) {
        char flag[64];
        snprintf(flag, sizeof flag, "--%s", rows[i].name);
        assert_non_null(strstr(text, flag));
        if (rows[i].env != NULL)
            assert_non_null(strstr(text, rows[i].env));
    }
    assert_non_null(strstr(text, "[default: tcp://127.0.0.1:7450]"));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_env_then_flags),
        cmocka_unit_test(test_mistakes),
        cmocka_unit_test(test_bytes),
        cmocka_unit_test(test_insecure_endpoints),
        cmocka_unit_test(test_checkpoint_flags),
        cmocka_unit_test(test_usage_lists_every_row),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
