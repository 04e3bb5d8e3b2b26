/*
 * batchsig.c - signed batches (proto/batchsig.h): the batch tree, the
 * signed message, signing, verifying and inclusion paths.
 *
 * The batch tree is small (at most KABAR_MAX_BATCH leaves), so MTH and
 * PATH follow RFC 9162 2.1.1 and 2.1.3.1 literally, by recursion on the
 * leaf array: depth at most 11, n - 1 node hashes for a root.
 */
#include "batchsig.h"

#include <string.h>

#include <sodium.h>

void batchsig_message(uint32_t n, const uint8_t root[32], uint8_t msg[BATCHSIG_MSG])
{
    memcpy(msg, BATCHSIG_PREFIX, 15);
    msg[15] = (uint8_t)(n >> 24);
    msg[16] = (uint8_t)(n >> 16);
    msg[17] = (uint8_t)(n >> 8);
    msg[18] = (uint8_t)n;
    memcpy(msg + 19, root, 32);
}

/* The largest power of two smaller than n (n >= 2). */
static uint32_t split(uint32_t n)
{
    uint32_t k = 1;
    while (k * 2 < n)
        k *= 2;
    return k;
}

/* MTH(leaves[0..n)), n >= 1. */
static void mth(const uint8_t (*leaves)[32], uint32_t n, uint8_t out[32])
{
    if (n == 1) {
        memcpy(out, leaves[0], 32);
        return;
    }
    uint8_t left[32], right[32];
    uint32_t k = split(n);
    mth(leaves, k, left);
    mth(leaves + k, n - k, right);
    merkle_node_hash(left, right, out);
}

void batchsig_root(const uint8_t (*leaves)[32], uint32_t n, uint8_t root[32])
{
    if (n == 0)
        merkle_empty_root(root);
    else
        mth(leaves, n, root);
}

int batchsig_sign(const kkey *k, const uint8_t (*leaves)[32], uint32_t n, uint8_t sig[64])
{
    uint8_t root[32], msg[BATCHSIG_MSG];
    if (k == NULL || n == 0)
        return KABAR_INVALID_ARGUMENT;
    batchsig_root(leaves, n, root);
    batchsig_message(n, root, msg);
    crypto_sign_detached(sig, NULL, msg, sizeof msg, k->sk);
    return 0;
}

int batchsig_verify(const uint8_t pk[32], const uint8_t sig[64], const uint8_t (*leaves)[32],
                    uint32_t n, kabar_error *err)
{
    uint8_t root[32], msg[BATCHSIG_MSG];
    char id[KKEY_ID_TEXT];
    if (n == 0)
        return kabar_error_set(err, KABAR_BAD_SIGNATURE, "a signed batch must hold an event");
    batchsig_root(leaves, n, root);
    batchsig_message(n, root, msg);
    if (sodium_init() < 0 || crypto_sign_verify_detached(sig, msg, sizeof msg, pk) != 0) {
        kkey_id_text(pk, id);
        return kabar_error_set(err, KABAR_BAD_SIGNATURE,
                               "the batch signature by key %s does not verify: an event was "
                               "changed, or it was signed with another key",
                               id);
    }
    return 0;
}

/* PATH(m, leaves[0..n)) appended to out (RFC 9162 2.1.3.1). */
static void path(const uint8_t (*leaves)[32], uint32_t n, uint32_t m, merkle_proof *out)
{
    if (n <= 1)
        return;
    uint32_t k = split(n);
    if (m < k) {
        path(leaves, k, m, out);
        mth(leaves + k, n - k, out->hash[out->len++]);
    } else {
        path(leaves + k, n - k, m - k, out);
        mth(leaves, k, out->hash[out->len++]);
    }
}

int batchsig_path(const uint8_t (*leaves)[32], uint32_t n, uint32_t index, merkle_proof *out,
                  kabar_error *err)
{
    if (index >= n)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "event %u is not in a batch of %u events", index, n);
    out->len = 0;
    path(leaves, n, index, out);
    return 0;
}
