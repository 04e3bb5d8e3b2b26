/*
 * batchsig_test.c - signed batches (proto/batchsig.c): a known answer
 * computed independently (Python hashlib + cryptography's Ed25519), every
 * tampering an attacker or a bug could do is refused, and the inclusion
 * path of every event of batches of 1..70 events verifies against the
 * batch root (and fails for a neighbour's leaf).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "batchsig.h"

#define KAT_ROOT "bac99e6bfdc5a773e8a51708ae0399dfc49ecb2e1a4fdcb5883411622b3580ef"
#define KAT_MSG  "6b616261722d62617463682d76310a00000003" KAT_ROOT
#define KAT_SIG                                                                                    \
    "2a4f80b88434e4fbb185444c4d4094d5574527823d6053422951a89ebc20f982"                             \
    "9205aaa9c2bfc7b65c5f896b1625fea70bdbc2391f786cdcc3c68a7b9f48fe0b"

static void seed_key(kkey *k, uint8_t first)
{
    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)(first + i);
    assert_int_equal(kkey_from_seed(k, seed, NULL), 0);
}

static void leaves_of(uint8_t (*leaves)[32], uint32_t n, const char *fmt)
{
    for (uint32_t i = 0; i < n; i++) {
        char ev[64];
        int len = snprintf(ev, sizeof ev, fmt, i + 1);
        merkle_leaf_hash(ev, (size_t)len, leaves[i]);
    }
}

static void test_known_answer(void **state)
{
    (void)state;
    kkey k;
    uint8_t leaves[3][32], root[32], msg[BATCHSIG_MSG], sig[64];
    char hex[2 * BATCHSIG_MSG + 1];
    seed_key(&k, 0);
    leaves_of(leaves, 3, "event-%u");
    batchsig_root((const uint8_t(*)[32])leaves, 3, root);
    sodium_bin2hex(hex, sizeof hex, root, 32);
    assert_string_equal(hex, KAT_ROOT);
    batchsig_message(3, root, msg);
    sodium_bin2hex(hex, sizeof hex, msg, sizeof msg);
    assert_string_equal(hex, KAT_MSG);
    assert_int_equal(batchsig_sign(&k, (const uint8_t(*)[32])leaves, 3, sig), 0);
    char sighex[129];
    sodium_bin2hex(sighex, sizeof sighex, sig, 64);
    assert_string_equal(sighex, KAT_SIG);
    assert_int_equal(batchsig_verify(k.pk, sig, (const uint8_t(*)[32])leaves, 3, NULL), 0);

    /* One event: the root is its leaf hash; still signed. */
    batchsig_root((const uint8_t(*)[32])leaves, 1, root);
    assert_memory_equal(root, leaves[0], 32);
    assert_int_equal(batchsig_sign(&k, (const uint8_t(*)[32])leaves, 1, sig), 0);
    assert_int_equal(batchsig_verify(k.pk, sig, (const uint8_t(*)[32])leaves, 1, NULL), 0);
    assert_int_equal(batchsig_sign(&k, (const uint8_t(*)[32])leaves, 0, sig),
                     KABAR_INVALID_ARGUMENT);
}

static void expect_refused(const uint8_t pk[32], const uint8_t sig[64], const uint8_t (*leaves)[32],
                           uint32_t n)
{
    kabar_error err;
    char id[KKEY_ID_TEXT], want[64];
    assert_int_equal(batchsig_verify(pk, sig, leaves, n, &err), KABAR_BAD_SIGNATURE);
    kkey_id_text(pk, id);
    snprintf(want, sizeof want, "by key %s does not verify", id);
    assert_non_null(strstr(err.message, want));
}

static void test_tampering(void **state)
{
    (void)state;
    kkey k, other;
    uint8_t leaves[10][32], changed[10][32], sig[64], bad[64];
    seed_key(&k, 0);
    seed_key(&other, 100);
    leaves_of(leaves, 10, "finding-%u");
    assert_int_equal(batchsig_sign(&k, (const uint8_t(*)[32])leaves, 10, sig), 0);
    assert_int_equal(batchsig_verify(k.pk, sig, (const uint8_t(*)[32])leaves, 10, NULL), 0);

    /* One event changed. */
    memcpy(changed, leaves, sizeof leaves);
    merkle_leaf_hash("finding-7 (edited)", 18, changed[6]);
    expect_refused(k.pk, sig, (const uint8_t(*)[32])changed, 10);
    /* Two events swapped. */
    memcpy(changed, leaves, sizeof leaves);
    memcpy(changed[2], leaves[3], 32);
    memcpy(changed[3], leaves[2], 32);
    expect_refused(k.pk, sig, (const uint8_t(*)[32])changed, 10);
    /* An event dropped (n changed) or the batch cut short. */
    expect_refused(k.pk, sig, (const uint8_t(*)[32])leaves, 9);
    /* The same root with another n in the message cannot verify either. */
    uint8_t root[32], msg[BATCHSIG_MSG];
    batchsig_root((const uint8_t(*)[32])leaves, 10, root);
    batchsig_message(11, root, msg);
    assert_int_not_equal(crypto_sign_verify_detached(sig, msg, sizeof msg, k.pk), 0);
    /* Another key: its own signature, or ours claimed by it. */
    expect_refused(other.pk, sig, (const uint8_t(*)[32])leaves, 10);
    assert_int_equal(batchsig_sign(&other, (const uint8_t(*)[32])leaves, 10, bad), 0);
    expect_refused(k.pk, bad, (const uint8_t(*)[32])leaves, 10);
    /* A flipped bit in the signature. */
    memcpy(bad, sig, 64);
    bad[17] ^= 0x04;
    expect_refused(k.pk, bad, (const uint8_t(*)[32])leaves, 10);
    /* An empty batch. */
    assert_int_equal(batchsig_verify(k.pk, sig, (const uint8_t(*)[32])leaves, 0, NULL),
                     KABAR_BAD_SIGNATURE);
}

static void test_paths(void **state)
{
    (void)state;
    static uint8_t leaves[70][32];
    uint8_t root[32];
    merkle_proof proof;
    kabar_error err;
    leaves_of(leaves, 70, "event-%u");
    for (uint32_t n = 1; n <= 70; n++) {
        batchsig_root((const uint8_t(*)[32])leaves, n, root);
        for (uint32_t i = 0; i < n; i++) {
            assert_int_equal(batchsig_path((const uint8_t(*)[32])leaves, n, i, &proof, &err), 0);
            int rc = merkle_verify_inclusion(i, n, leaves[i], &proof, root, &err);
            if (rc != 0)
                fail_msg("batch of %u, event %u: %s", n, i, err.message);
            if (n > 1) /* the path is of this event, not of its neighbour */
                assert_int_not_equal(
                    merkle_verify_inclusion(i, n, leaves[(i + 1) % n], &proof, root, NULL), 0);
        }
        assert_int_equal(batchsig_path((const uint8_t(*)[32])leaves, n, n, &proof, &err),
                         KABAR_INVALID_ARGUMENT);
    }
    /* The batch root is the root merkle.c computes for the same leaves. */
    merkle_mem *m = NULL;
    assert_int_equal(merkle_mem_new(&m, NULL), 0);
    merkle_store st = merkle_mem_store(m);
    for (uint64_t i = 0; i < 70; i++)
        assert_int_equal(merkle_append(&st, i, leaves[i], NULL), 0);
    uint8_t want[32];
    assert_int_equal(merkle_root(&st, 70, want, NULL), 0);
    batchsig_root((const uint8_t(*)[32])leaves, 70, root);
    assert_memory_equal(root, want, 32);
    merkle_mem_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answer),
        cmocka_unit_test(test_tampering),
        cmocka_unit_test(test_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
