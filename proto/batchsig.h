/*
 * batchsig.h - signed batches: one Ed25519 signature covers the n events
 * of a PUB (1 <= n <= KABAR_MAX_BATCH), so that the broker verifies once
 * per batch, and each stored event keeps what proves it was in the batch
 * (proto/PROTOCOL.md "Signed batches").
 *
 *   batch tree   the RFC 9162 Merkle tree (proto/merkle.h) of the n event
 *                frames' bytes, in order:
 *                    leaf_i = SHA-256(0x00 || event_i bytes)
 *                    R      = MTH(leaf_0 .. leaf_n-1)
 *   message      51 bytes: "kabar-batch-v1\n" (15 ASCII bytes) ||
 *                n as uint32 big-endian || R
 *   signature    pure Ed25519 (RFC 8032) of the message by the signer's
 *                identity key (proto/kkey.h)
 *
 * On the wire the PUB header carries [key bin(32), sig bin(64)] as its 4th
 * element (proto/wire.h). The broker keeps, per signed batch, the key, the
 * signature and the n leaf hashes, so an auditor re-checks the signature
 * from the stored log with any Ed25519 library, and checks one event with
 * its leaf hash and an inclusion path (batchsig_path).
 *
 * The callers hash each event once (merkle_leaf_hash) and pass the array
 * of leaf hashes; nothing here allocates.
 */
#ifndef KABAR_BATCHSIG_H
#define KABAR_BATCHSIG_H

#include <stdint.h>

#include "kabar.h"
#include "kkey.h"
#include "merkle.h"

#define BATCHSIG_MSG    51
#define BATCHSIG_PREFIX "kabar-batch-v1\n" /* 15 bytes, no NUL */

/* The 51-byte message that is signed. */
void batchsig_message(uint32_t n, const uint8_t root[32], uint8_t msg[BATCHSIG_MSG]);

/* The batch tree's root of leaves[0..n) (leaves[i] = merkle_leaf_hash(event i));
 * n = 0 gives SHA-256(""). */
void batchsig_root(const uint8_t (*leaves)[32], uint32_t n, uint8_t root[32]);

/* Sign the batch with k. 0, or KABAR_INVALID_ARGUMENT when n is 0. */
int batchsig_sign(const kkey *k, const uint8_t (*leaves)[32], uint32_t n, uint8_t sig[64]);

/*
 * 0 when `sig` is pk's signature of the batch of these leaves;
 * KABAR_BAD_SIGNATURE with the reason ("the batch signature by key KEYID
 * does not verify: ...") when not, or when n is 0 or pk is not a valid key.
 */
int batchsig_verify(const uint8_t pk[32], const uint8_t sig[64], const uint8_t (*leaves)[32],
                    uint32_t n, kabar_error *err);

/*
 * The inclusion path (RFC 9162 2.1.3.1, leaf to root) of leaf `index` in
 * the batch tree: merkle_verify_inclusion(index, n, leaves[index], out,
 * root) accepts it. KABAR_INVALID_ARGUMENT unless index < n.
 */
int batchsig_path(const uint8_t (*leaves)[32], uint32_t n, uint32_t index, merkle_proof *out,
                  kabar_error *err);

#endif /* KABAR_BATCHSIG_H */
