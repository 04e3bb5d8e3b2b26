/*
 * mpr_test.c - the strict msgpack reader: every kind, every canonical
 * violation, truncation at every offset, and agreement with what msgpack-c
 * writes (kabar's encoder), so that our own bytes always read back.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "mpr.h"

/* Read one item from bytes; the whole buffer must be consumed on success. */
static int read1(const void *b, size_t n, mpr_item *it, kabar_error *e)
{
    mpr r;
    mpr_init(&r, b, n);
    int rc = mpr_next(&r, it, e);
    if (rc == 0 && (it->kind != MPR_ARRAY && it->kind != MPR_MAP))
        assert_int_equal(mpr_left(&r), 0);
    return rc;
}

#define READ(it, ...)                                                                              \
    do {                                                                                           \
        static const uint8_t b_[] = {__VA_ARGS__};                                                 \
        kabar_error e_;                                                                            \
        int rc_ = read1(b_, sizeof b_, (it), &e_);                                                 \
        if (rc_ != 0)                                                                              \
            fail_msg("unexpected error %s: %s", kabar_errname(rc_), e_.message);                   \
    } while (0)

/* The bytes must fail with `code` and a message naming an offset. */
#define FAILS(want, ...)                                                                           \
    do {                                                                                           \
        static const uint8_t b_[] = {__VA_ARGS__};                                                 \
        kabar_error e_ = {0};                                                                      \
        mpr_item it_;                                                                              \
        int rc_ = read1(b_, sizeof b_, &it_, &e_);                                                 \
        if (rc_ != (want))                                                                         \
            fail_msg("expected %s, got %s (%s)", kabar_errname(want), kabar_errname(rc_),          \
                     e_.message);                                                                  \
        assert_int_equal(e_.code, (want));                                                         \
        assert_non_null(strstr(e_.message, "offset"));                                             \
    } while (0)

static void test_scalars(void **state)
{
    mpr_item it;
    READ(&it, 0xc0);
    assert_int_equal(it.kind, MPR_NIL);
    READ(&it, 0xc3);
    assert_int_equal(it.kind, MPR_BOOL);
    assert_true(it.b);
    READ(&it, 0xc2);
    assert_false(it.b);
    READ(&it, 0x7f);
    assert_int_equal(it.kind, MPR_UINT);
    assert_int_equal(it.u, 127);
    READ(&it, 0xcc, 0x80);
    assert_int_equal(it.u, 128);
    READ(&it, 0xcd, 0x01, 0x00);
    assert_int_equal(it.u, 256);
    READ(&it, 0xce, 0x00, 0x01, 0x00, 0x00);
    assert_int_equal(it.u, 65536);
    READ(&it, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
    assert_true(it.u == UINT64_MAX);
    READ(&it, 0xff);
    assert_int_equal(it.kind, MPR_INT);
    assert_int_equal(it.i, -1);
    READ(&it, 0xe0);
    assert_int_equal(it.i, -32);
    READ(&it, 0xd0, 0xdf);
    assert_int_equal(it.i, -33);
    READ(&it, 0xd1, 0xff, 0x7f);
    assert_int_equal(it.i, -129);
    READ(&it, 0xd2, 0xff, 0xff, 0x7f, 0xff);
    assert_int_equal(it.i, -32769);
    READ(&it, 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0);
    assert_true(it.i == INT64_MIN);
    READ(&it, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0);
    assert_int_equal(it.kind, MPR_FLOAT);
    assert_true(it.f == 1.5);
}

static void test_containers_and_strings(void **state)
{
    mpr_item it;
    READ(&it, 0xa3, 'a', 'b', 'c');
    assert_int_equal(it.kind, MPR_STR);
    assert_int_equal(it.len, 3);
    assert_memory_equal(it.str, "abc", 3);
    READ(&it, 0xa0);
    assert_int_equal(it.len, 0);
    READ(&it, 0xc4, 2, 1, 2);
    assert_int_equal(it.kind, MPR_BIN);
    assert_int_equal(it.len, 2);
    READ(&it, 0x92, 1, 2);
    assert_int_equal(it.kind, MPR_ARRAY);
    assert_int_equal(it.count, 2);
    READ(&it, 0x81, 0xa1, 'a', 1);
    assert_int_equal(it.kind, MPR_MAP);
    assert_int_equal(it.count, 1);

    /* Long forms, built at their smallest legal sizes. */
    static uint8_t big[70000 + 8];
    mpr r;
    kabar_error e;
    big[0] = 0xd9, big[1] = 32;
    memset(big + 2, 'x', 32);
    mpr_init(&r, big, 34);
    assert_int_equal(mpr_next(&r, &it, &e), 0);
    assert_int_equal(it.len, 32);
    big[0] = 0xda, big[1] = 0x01, big[2] = 0x00;
    mpr_init(&r, big, 3 + 256);
    assert_int_equal(mpr_next(&r, &it, &e), 0);
    assert_int_equal(it.len, 256);
    big[0] = 0xdb, big[1] = 0, big[2] = 1, big[3] = 0, big[4] = 0;
    mpr_init(&r, big, 5 + 65536);
    assert_int_equal(mpr_next(&r, &it, &e), 0);
    assert_int_equal(it.len, 65536);
    big[0] = 0xdc, big[1] = 0, big[2] = 16;
    memset(big + 3, 0xc0, 16);
    mpr_init(&r, big, 3 + 16);
    assert_int_equal(mpr_next(&r, &it, &e), 0);
    assert_int_equal(it.count, 16);
    big[0] = 0xde;
    mpr_init(&r, big, 3 + 32);
    memset(big + 3, 0xc0, 32);
    assert_int_equal(mpr_next(&r, &it, &e), 0);
    assert_int_equal(it.kind, MPR_MAP);
    assert_int_equal(it.count, 16);
}

static void test_timestamps(void **state)
{
    mpr_item it;
    /* timestamp32: 2023-05-02T01:30:00Z = 1682991000 */
    READ(&it, 0xd6, 0xff, 0x64, 0x50, 0x67, 0x98);
    assert_int_equal(it.kind, MPR_TIMESTAMP);
    assert_true(it.i == 1682991000LL * 1000000000);
    /* timestamp64: nsec 120000000 << 34 | sec */
    uint64_t v = (uint64_t)120000000 << 34 | 1682991000ULL;
    uint8_t b[10] = {0xd7, 0xff};
    for (int i = 0; i < 8; i++)
        b[2 + i] = (uint8_t)(v >> (56 - 8 * i));
    mpr r;
    kabar_error e;
    mpr_init(&r, b, sizeof b);
    assert_int_equal(mpr_next(&r, &it, &e), 0);
    assert_true(it.i == 1682991000120000000LL);
    /* timestamp96: -1 s + 500 ns = -999999500 ns */
    READ(&it, 0xc7, 12, 0xff, 0, 0, 0x01, 0xf4, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
    assert_true(it.i == -999999500LL);
}

/* What msgpack-c writes (kabar's encoder) must read back as canonical. */
static void test_msgpack_c_agrees(void **state)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    static const int64_t ints[] = {
        0,         1,  127, 128, 255,  256,  65535,  65536,  4294967295,    4294967296,
        INT64_MAX, -1, -32, -33, -128, -129, -32768, -32769, -2147483648LL, -2147483649LL,
        INT64_MIN};
    static const int64_t times[] = {0,
                                    1682991000LL * 1000000000,
                                    1682991000120000000LL,
                                    4294967296LL * 1000000000,
                                    (1LL << 33) * 1000000000 + 1,
                                    -1,
                                    INT64_MIN,
                                    INT64_MAX};
    static const size_t strs[] = {0, 31, 32, 255, 256, 65535, 65536};
    static char text[65536];
    memset(text, 'k', sizeof text);
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        sb.size = 0;
        msgpack_pack_int64(&pk, ints[i]);
        mpr_item it;
        kabar_error e;
        assert_int_equal(read1(sb.data, sb.size, &it, &e), 0);
        if (ints[i] >= 0)
            assert_true(it.kind == MPR_UINT && it.u == (uint64_t)ints[i]);
        else
            assert_true(it.kind == MPR_INT && it.i == ints[i]);
    }
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        sb.size = 0;
        msgpack_timestamp ts = {times[i] / 1000000000, (uint32_t)(times[i] % 1000000000)};
        if (times[i] % 1000000000 < 0) {
            ts.tv_sec--;
            ts.tv_nsec = (uint32_t)(times[i] % 1000000000 + 1000000000);
        }
        msgpack_pack_timestamp(&pk, &ts);
        mpr_item it;
        kabar_error e;
        int rc = read1(sb.data, sb.size, &it, &e);
        if (rc != 0)
            fail_msg("time %lld: %s", (long long)times[i], e.message);
        assert_true(it.kind == MPR_TIMESTAMP && it.i == times[i]);
    }
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++) {
        sb.size = 0;
        msgpack_pack_str(&pk, strs[i]);
        msgpack_pack_str_body(&pk, text, strs[i]);
        mpr_item it;
        kabar_error e;
        assert_int_equal(read1(sb.data, sb.size, &it, &e), 0);
        assert_int_equal(it.len, strs[i]);
        sb.size = 0;
        msgpack_pack_array(&pk, (uint32_t)strs[i]);
        for (size_t k = 0; k < strs[i]; k++)
            msgpack_pack_nil(&pk);
        assert_int_equal(read1(sb.data, sb.size, &it, &e), 0);
        assert_int_equal(it.count, strs[i]);
    }
    sb.size = 0;
    msgpack_pack_double(&pk, 0.1);
    mpr_item it;
    kabar_error e;
    assert_int_equal(read1(sb.data, sb.size, &it, &e), 0);
    msgpack_sbuffer_destroy(&sb);
}

static void test_not_canonical(void **state)
{
    const int NC = KABAR_NOT_CANONICAL;
    FAILS(NC, 0xcc, 0x7f);                                  /* uint8 for a fixint */
    FAILS(NC, 0xcd, 0x00, 0xff);                            /* uint16 for a uint8 */
    FAILS(NC, 0xce, 0x00, 0x00, 0xff, 0xff);                /* uint32 for a uint16 */
    FAILS(NC, 0xcf, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff);    /* uint64 for a uint32 */
    FAILS(NC, 0xd0, 0x05);                                  /* int8 for a non-negative value */
    FAILS(NC, 0xd0, 0xe0);                                  /* int8 for a negative fixint */
    FAILS(NC, 0xd1, 0xff, 0x80);                            /* int16 for an int8 */
    FAILS(NC, 0xd2, 0xff, 0xff, 0x80, 0x00);                /* int32 for an int16 */
    FAILS(NC, 0xd3, 0xff, 0xff, 0xff, 0xff, 0x80, 0, 0, 0); /* int64 for an int32 */
    FAILS(NC, 0xd3, 0, 0, 0, 0, 0, 0, 0, 1);                /* int64 for a positive value */
    FAILS(NC, 0xd9, 1, 'a');                                /* str8 for a fixstr */
    FAILS(NC, 0xda, 0, 1, 'a');                             /* str16 for a fixstr */
    FAILS(NC, 0xdb, 0, 0, 0, 1, 'a');                       /* str32 */
    FAILS(NC, 0xc5, 0, 1, 'a');                             /* bin16 for a bin8 */
    FAILS(NC, 0xc6, 0, 0, 0, 1, 'a');                       /* bin32 */
    FAILS(NC, 0xdc, 0, 1, 0xc0);                            /* array16 for a fixarray */
    FAILS(NC, 0xdd, 0, 0, 0, 1, 0xc0);                      /* array32 */
    FAILS(NC, 0xde, 0, 1, 0xa1, 'a', 0xc0);                 /* map16 for a fixmap */
    FAILS(NC, 0xdf, 0, 0, 0, 1, 0xa1, 'a', 0xc0);           /* map32 */
    FAILS(NC, 0xca, 0x3f, 0xc0, 0, 0);                      /* float32 */
    FAILS(NC, 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0);          /* NaN */
    FAILS(NC, 0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0);          /* +Inf */
    FAILS(NC, 0xcb, 0xff, 0xf0, 0, 0, 0, 0, 0, 0);          /* -Inf */
    FAILS(NC, 0xcb, 0x40, 0x00, 0, 0, 0, 0, 0, 0);          /* 2.0: integral */
    FAILS(NC, 0xcb, 0x80, 0x00, 0, 0, 0, 0, 0, 0);          /* -0.0: integral */
    FAILS(NC, 0xd4, 0x01, 0x00);                            /* ext other than timestamp */
    FAILS(NC, 0xc7, 1, 0x05, 0x00);
    /* timestamp64 for what timestamp32 holds (nsec 0, sec 1) */
    FAILS(NC, 0xd7, 0xff, 0, 0, 0, 0, 0, 0, 0, 1);
    /* timestamp96 for what timestamp32 holds */
    FAILS(NC, 0xc7, 12, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1);
    /* timestamp96 in an ext16 header */
    FAILS(NC, 0xc8, 0, 12, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);

    /* A 2^63 float is integral but outside int64: canonical as a float. */
    mpr_item it;
    READ(&it, 0xcb, 0x43, 0xe0, 0, 0, 0, 0, 0, 0);
    assert_true(it.f == 9223372036854775808.0);

    /* With canonical off, the same bytes read fine. */
    static const uint8_t lax[] = {0xcc, 0x01};
    mpr r;
    mpr_init(&r, lax, sizeof lax);
    r.canonical = false;
    kabar_error e;
    assert_int_equal(mpr_next(&r, &it, &e), 0);
    assert_int_equal(it.u, 1);
    static const uint8_t ext[] = {0xd4, 0x05, 0x07};
    mpr_init(&r, ext, sizeof ext);
    r.canonical = false;
    assert_int_equal(mpr_next(&r, &it, &e), 0);
    assert_int_equal(it.kind, MPR_EXT);
    assert_int_equal(it.ext_type, 5);
}

static void test_malformed(void **state)
{
    const int M = KABAR_MALFORMED;
    FAILS(M, 0xc1);
    FAILS(M, 0x92, 0x01);                         /* array claims 2, 1 byte left */
    FAILS(M, 0x81, 0xa1);                         /* map claims 1 entry: needs 2 bytes */
    FAILS(M, 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0); /* four billion items */
    FAILS(M, 0xdf, 0x7f, 0xff, 0xff, 0xff, 0xc0);
    FAILS(M, 0xa5, 'a', 'b');                    /* str payload truncated */
    FAILS(M, 0xdb, 0xff, 0xff, 0xff, 0xff, 'a'); /* str32 claims 4 GB */
    FAILS(M, 0xd5, 0xff, 0, 0);                  /* timestamp of 2 bytes */
    FAILS(M, 0xd8, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0); /* 16 bytes */
    /* timestamp64 with nsec = 10^9 */
    FAILS(M, 0xd7, 0xff, 0xee, 0x6b, 0x28, 0x00, 0, 0, 0, 1);
    /* timestamp96 with sec far beyond int64 ns */
    FAILS(M, 0xc7, 12, 0xff, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
    kabar_error e;
    mpr_item it;
    mpr r;
    mpr_init(&r, "", 0);
    assert_int_equal(mpr_next(&r, &it, &e), M);
    assert_non_null(strstr(e.message, "offset 0"));
}

/* Cut a valid message at every offset: each prefix fails, never crashes. */
static void test_truncation_everywhere(void **state)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    msgpack_pack_str_with_body(&pk, "a", 1);
    msgpack_pack_array(&pk, 4);
    msgpack_pack_uint64(&pk, 70000);
    msgpack_pack_int64(&pk, -40000);
    msgpack_pack_double(&pk, 2.5);
    msgpack_timestamp ts = {1682991000, 5};
    msgpack_pack_timestamp(&pk, &ts);
    msgpack_pack_str_with_body(&pk, "b", 1);
    msgpack_pack_str_with_body(&pk, "a string of forty bytes, more or less..", 40);
    msgpack_pack_str_with_body(&pk, "c", 1);
    msgpack_pack_bin_with_body(&pk, "xyz", 3);
    kabar_error e;
    mpr r;
    mpr_init(&r, sb.data, sb.size);
    assert_int_equal(mpr_skip(&r, 4, &e), 0);
    assert_int_equal(mpr_left(&r), 0);
    for (size_t cut = 0; cut < sb.size; cut++) {
        mpr_init(&r, sb.data, cut);
        int rc = mpr_skip(&r, 4, &e);
        if (rc != KABAR_MALFORMED)
            fail_msg("cut at %zu: expected MALFORMED, got %s", cut, kabar_errname(rc));
    }
    msgpack_sbuffer_destroy(&sb);
}

static void test_skip_depth(void **state)
{
    static const uint8_t nested[] = {0x91, 0x91, 0x91, 0x90};
    mpr r;
    kabar_error e;
    mpr_init(&r, nested, sizeof nested);
    assert_int_equal(mpr_skip(&r, 4, &e), 0);
    mpr_init(&r, nested, sizeof nested);
    assert_int_equal(mpr_skip(&r, 3, &e), KABAR_LIMIT);
}

static void test_key_order_and_expect(void **state)
{
    assert_true(mpr_key_order("a", 1, "b", 1) < 0);
    assert_true(mpr_key_order("ab", 2, "a", 1) > 0);
    assert_true(mpr_key_order("a", 1, "ab", 2) < 0);
    assert_int_equal(mpr_key_order("v", 1, "v", 1), 0);
    assert_true(mpr_key_order("type", 4, "v", 1) < 0);
    assert_true(mpr_key_order("Z", 1, "a", 1) < 0); /* bytes, not locale */

    static const uint8_t b[] = {0x05, 0xa1, 'x'};
    mpr r;
    mpr_item it;
    kabar_error e;
    mpr_init(&r, b, sizeof b);
    assert_int_equal(mpr_expect(&r, MPR_INT, &it, "count", &e), 0);
    assert_int_equal(it.i, 5);
    assert_int_equal(mpr_expect(&r, MPR_MAP, &it, "body", &e), KABAR_WRONG_TYPE);
    assert_non_null(strstr(e.message, "body"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scalars),
        cmocka_unit_test(test_containers_and_strings),
        cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_msgpack_c_agrees),
        cmocka_unit_test(test_not_canonical),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_truncation_everywhere),
        cmocka_unit_test(test_skip_depth),
        cmocka_unit_test(test_key_order_and_expect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
