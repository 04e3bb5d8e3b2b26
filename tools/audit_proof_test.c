/*
 * audit_proof_test.c - the auditor's pure functions (tools/audit_proof.h):
 *
 *  - range proofs: for every tree size 1..40 and every range [lo, hi] in
 *    it, the proof built from the two inclusion paths has exactly the
 *    maximal subtrees outside the range (the count the recursion asks
 *    for), leads to the true root, and fails with any hash flipped, a hash
 *    missing or extra, a leaf changed, or a neighbouring range;
 *  - audit_path_root agrees with merkle_verify_inclusion for every leaf of
 *    sizes 1..64 and the CT test tree's published root;
 *  - proofs round-trip through the text and JSON forms byte for byte, and
 *    malformed text is refused with the line named.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

/* The CLI's sources are not a library: the test compiles the ones it tests. */
#include "audit_log.c"
#include "audit_proof.c"

#define MAXN 64

typedef struct tree {
    merkle_mem *mem;
    merkle_store st;
    uint8_t leaves[MAXN][32];
} tree;

static void build(tree *t)
{
    kabar_error err = {0};
    assert_int_equal(merkle_mem_new(&t->mem, &err), 0);
    t->st = merkle_mem_store(t->mem);
    for (unsigned i = 0; i < MAXN; i++) {
        char data[32];
        int n = snprintf(data, sizeof data, "event %u", i);
        merkle_leaf_hash(data, (size_t)n, t->leaves[i]);
        assert_int_equal(merkle_append(&t->st, i, t->leaves[i], &err), 0);
    }
}

static void range_proof(tree *t, uint64_t lo, uint64_t hi, uint64_t n, audit_hashes *out)
{
    merkle_proof plo, phi;
    kabar_error err = {0};
    assert_int_equal(merkle_inclusion_proof(&t->st, lo, n, &plo, &err), 0);
    assert_int_equal(merkle_inclusion_proof(&t->st, hi, n, &phi, &err), 0);
    out->len = 0;
    if (audit_range_from_paths(lo, hi, n, &plo, &phi, out, &err) != 0)
        fail_msg("range %u-%u of %u: %s", (unsigned)lo, (unsigned)hi, (unsigned)n, err.message);
}

/* The number of maximal subtrees outside [lo, hi] in the RFC 9162 recursion. */
static size_t outside(uint64_t a, uint64_t b, uint64_t lo, uint64_t hi)
{
    if (b <= lo || a > hi)
        return 1;
    if (lo <= a && b - 1 <= hi)
        return 0;
    uint64_t k = 1;
    while (k < b - a - k)
        k <<= 1;
    return outside(a, a + k, lo, hi) + outside(a + k, b, lo, hi);
}

static void test_every_range(void **state)
{
    (void)state;
    tree t;
    audit_hashes p = {0};
    kabar_error err = {0};
    build(&t);
    for (uint64_t n = 1; n <= 40; n++) {
        uint8_t root[32], got[32];
        assert_int_equal(merkle_root(&t.st, n, root, &err), 0);
        for (uint64_t lo = 0; lo < n; lo++)
            for (uint64_t hi = lo; hi < n; hi++) {
                range_proof(&t, lo, hi, n, &p);
                assert_int_equal(p.len, outside(0, n, lo, hi));
                const uint8_t(*lv)[32] = (const uint8_t(*)[32])t.leaves[lo];
                if (audit_range_root(lo, hi, n, lv, &p, got, &err) != 0)
                    fail_msg("range %u-%u of %u: %s", (unsigned)lo, (unsigned)hi, (unsigned)n,
                             err.message);
                assert_memory_equal(got, root, 32);
                /* A flipped proof hash. */
                for (size_t i = 0; i < p.len; i++) {
                    p.h[i][3] ^= 0x10;
                    assert_int_equal(audit_range_root(lo, hi, n, lv, &p, got, &err), 0);
                    assert_memory_not_equal(got, root, 32);
                    p.h[i][3] ^= 0x10;
                }
                /* A changed leaf. */
                uint8_t copy[MAXN][32];
                memcpy(copy, t.leaves[lo], (size_t)(hi - lo + 1) * 32);
                copy[hi - lo][0] ^= 1;
                assert_int_equal(
                    audit_range_root(lo, hi, n, (const uint8_t(*)[32])copy, &p, got, &err), 0);
                assert_memory_not_equal(got, root, 32);
                /* A hash too many or too few. */
                uint8_t extra[32] = {0};
                assert_int_equal(audit_hashes_push(&p, extra), 0);
                assert_int_equal(audit_range_root(lo, hi, n, lv, &p, got, &err), KABAR_BAD_VALUE);
                p.len--;
                if (p.len > 0) {
                    p.len--;
                    assert_int_equal(audit_range_root(lo, hi, n, lv, &p, got, &err),
                                     KABAR_BAD_VALUE);
                    p.len++;
                }
                /* The same leaves claimed one place to the right: fails unless the shape
                 * happens to fit, and then not to the root. */
                if (hi + 1 < n && audit_range_root(lo + 1, hi + 1, n, lv, &p, got, &err) == 0)
                    assert_memory_not_equal(got, root, 32);
            }
    }
    audit_hashes_free(&p);
    merkle_mem_destroy(&t.mem);
}

static void test_path_root(void **state)
{
    (void)state;
    tree t;
    kabar_error err = {0};
    build(&t);
    for (uint64_t n = 1; n <= MAXN; n++) {
        uint8_t root[32], got[32];
        assert_int_equal(merkle_root(&t.st, n, root, &err), 0);
        for (uint64_t i = 0; i < n; i++) {
            merkle_proof p;
            assert_int_equal(merkle_inclusion_proof(&t.st, i, n, &p, &err), 0);
            assert_int_equal(audit_path_root(i, n, t.leaves[i], &p, got, &err), 0);
            assert_memory_equal(got, root, 32);
            assert_int_equal(merkle_verify_inclusion(i, n, t.leaves[i], &p, got, &err), 0);
            if (p.len > 0) {
                p.len--;
                assert_int_equal(audit_path_root(i, n, t.leaves[i], &p, got, &err),
                                 KABAR_BAD_VALUE);
            }
        }
    }
    merkle_mem_destroy(&t.mem);
}

static void test_mth_ct_tree(void **state)
{
    (void)state;
    static const char *const hex[8] = {"",
                                       "00",
                                       "10",
                                       "2021",
                                       "3031",
                                       "40414243",
                                       "5051525354555657",
                                       "606162636465666768696a6b6c6d6e6f"};
    uint8_t leaves[8][32], data[16], root[32];
    for (int i = 0; i < 8; i++) {
        size_t n = strlen(hex[i]) / 2;
        for (size_t j = 0; j < n; j++)
            sscanf(hex[i] + 2 * j, "%2hhx", &data[j]);
        merkle_leaf_hash(data, n, leaves[i]);
    }
    audit_mth((const uint8_t(*)[32])leaves, 8, root);
    char b64[AUDIT_B64_HASH];
    audit_b64(root, 32, b64, sizeof b64);
    /* 5dc9da79...604328 (docs/MERKLE.md) in base64 */
    assert_string_equal(b64, "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=");
}

static void roundtrip(const audit_proof *p, bool json)
{
    kabar_buf a = {0}, b = {0};
    kabar_error err = {0};
    audit_proof q;
    assert_int_equal(audit_proof_format(p, json, &a, &err), 0);
    if (audit_proof_parse(&q, a.data, a.len, &err) != 0)
        fail_msg("%s: %s", json ? "json" : "text", err.message);
    assert_int_equal(audit_proof_format(&q, json, &b, &err), 0);
    assert_int_equal(a.len, b.len);
    assert_memory_equal(a.data, b.data, a.len);
    assert_int_equal(q.kind, p->kind);
    assert_int_equal(q.hashes.len, p->hashes.len);
    assert_memory_equal(q.hashes.hash, p->hashes.hash, p->hashes.len * 32);
    audit_proof_free(&q);
    kabar_buf_free(&a);
    kabar_buf_free(&b);
}

static void test_formats(void **state)
{
    (void)state;
    audit_proof p = {.kind = AUDIT_INCLUSION, .size = 300, .seq = 42, .has_root = true};
    snprintf(p.origin, sizeof p.origin, "kabar.padang.go.id/log");
    for (int i = 0; i < 9; i++)
        memset(p.hashes.hash[p.hashes.len++], i + 1, 32);
    memset(p.leaf_hash, 0xab, 32);
    memset(p.root, 0xcd, 32);
    p.has_record = true;
    assert_int_equal(kabar_buf_append(&p.record, "\x02record bytes", 13), 0);
    roundtrip(&p, false);
    roundtrip(&p, true);

    kabar_buf t = {0};
    kabar_error err = {0};
    assert_int_equal(audit_proof_format(&p, false, &t, &err), 0);
    assert_int_equal(kabar_buf_append(&t, "", 1), 0);
    assert_non_null(strstr(t.data, "kabar-proof inclusion\norigin kabar.padang.go.id/log\n"
                                   "size 300\nseq 42\nleaf-hash q6ur"));
    kabar_buf_free(&t);
    audit_proof_free(&p);

    audit_proof c = {.kind = AUDIT_CONSISTENCY, .old_size = 6, .new_size = 8};
    snprintf(c.origin, sizeof c.origin, "o");
    memset(c.hashes.hash[c.hashes.len++], 7, 32);
    roundtrip(&c, false);
    roundtrip(&c, true);

    audit_proof q;
    static const char bad1[] = "kabar-proof inclusion\norigin o\nsize 3\nseq 1\nleaf-hash abc\n";
    assert_int_equal(audit_proof_parse(&q, bad1, sizeof bad1 - 1, &err), KABAR_BAD_VALUE);
    assert_non_null(strstr(err.message, "line 5"));
    audit_proof_free(&q);
    static const char bad2[] = "kabar-proof inclusion\norigin o\nsize 3\n";
    assert_int_equal(audit_proof_parse(&q, bad2, sizeof bad2 - 1, &err), KABAR_BAD_VALUE);
    audit_proof_free(&q);
    static const char bad3[] = "something else\n";
    assert_int_equal(audit_proof_parse(&q, bad3, sizeof bad3 - 1, &err), KABAR_BAD_VALUE);
    audit_proof_free(&q);
    static const char bad4[] = "kabar-proof inclusion\nsize 007\n";
    assert_int_equal(audit_proof_parse(&q, bad4, sizeof bad4 - 1, &err), KABAR_BAD_VALUE);
    audit_proof_free(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_range),
        cmocka_unit_test(test_path_root),
        cmocka_unit_test(test_mth_ct_tree),
        cmocka_unit_test(test_formats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
