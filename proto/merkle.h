/*
 * merkle.h - the RFC 9162 Merkle tree of kabar's log: hashing, an
 * incremental node store, inclusion and consistency proofs.
 *
 * Every committed event is a leaf of one Merkle tree, hashed exactly as
 * Certificate Transparency v2 does (RFC 9162 section 2.1), so that any
 * transparency-log tool can check kabar's proofs:
 *
 *     leaf hash  = SHA-256(0x00 || event bytes)
 *     node hash  = SHA-256(0x01 || left || right)
 *     MTH({})    = SHA-256("")
 *     MTH(D[n])  = node(MTH(D[0:k]), MTH(D[k:n])), k the largest power of
 *                  two smaller than n
 *
 * Design notes. The module owns no storage. It reads and writes the hashes
 * of COMPLETE subtrees through a merkle_store (two callbacks and a context),
 * so the broker keeps them in LMDB in the same transaction as the events,
 * and tests and tools keep them in memory (merkle_mem). A complete subtree
 * is named (level L, index i): it covers the 2^L leaves [i*2^L, (i+1)*2^L);
 * level 0 holds the leaf hashes. Nodes never change once written: the log
 * is append-only, and the hash of any tree size is a fold of O(log n)
 * complete subtrees (the binary digits of n):
 *
 *     size 6 = 4 + 2:       root(6) = node(N(2,0), N(1,2))
 *
 *                N(2,0)
 *              /        \
 *          N(1,0)      N(1,1)      N(1,2)
 *          /   \       /   \       /   \
 *        L0    L1    L2    L3    L4    L5        (N(0,i) = leaf hash i)
 *
 * Appending leaf n writes N(0,n) and then, while the new node is a right
 * child, its parent: one leaf hash and on average one node hash per event,
 * whatever the size of the log. Roots and proofs for any size n read
 * O(log n) stored nodes and hash O(log n) times.
 *
 * Proofs are lists of hashes in the order of RFC 9162 2.1.3.1 and 2.1.4.1
 * (from the leaf towards the root); the verifiers follow 2.1.3.2 and
 * 2.1.4.2 and need no store, only the proof, the sizes and the roots.
 *
 * Errors: KABAR_INVALID_ARGUMENT for an impossible request (a leaf outside
 * the tree, an old size larger than the new), KABAR_NOT_FOUND when the
 * store lacks a node it should hold (a damaged or incomplete store; the
 * message names the node), KABAR_BAD_VALUE when a proof does not verify,
 * and whatever code a store callback returns.
 */
#ifndef KABAR_MERKLE_H
#define KABAR_MERKLE_H

#include <stddef.h>
#include <stdint.h>

#include "kabar.h"

#define MERKLE_HASH_SIZE 32
/* The longest proof for any 64-bit tree size (64 levels plus the one
 * extra hash a consistency proof may start with). */
#define MERKLE_MAX_PROOF 65

/* ------------------------------------------------------------------------ */
/* Hashing                                                                  */

/* out = SHA-256(0x00 || data[0..len)). */
void merkle_leaf_hash(const void *data, size_t len, uint8_t out[MERKLE_HASH_SIZE]);
/* out = SHA-256(0x01 || left || right); out may alias left or right. */
void merkle_node_hash(const uint8_t left[MERKLE_HASH_SIZE], const uint8_t right[MERKLE_HASH_SIZE],
                      uint8_t out[MERKLE_HASH_SIZE]);
/* The root of the empty tree, SHA-256 of nothing. */
void merkle_empty_root(uint8_t out[MERKLE_HASH_SIZE]);

/* ------------------------------------------------------------------------ */
/* The node store                                                           */

/*
 * get: copy the hash of complete subtree (level, index) into out. Return 0,
 * KABAR_NOT_FOUND when the store does not hold it, or another kabar_err
 * (filling err) when the store fails.
 * put: keep the hash of complete subtree (level, index); the bytes are
 * copied. A node is put once, and only after all nodes to its left at its
 * level. Return 0 or a kabar_err (filling err).
 */
typedef int (*merkle_get_fn)(void *ctx, unsigned level, uint64_t index,
                             uint8_t out[MERKLE_HASH_SIZE], kabar_error *err);
typedef int (*merkle_put_fn)(void *ctx, unsigned level, uint64_t index,
                             const uint8_t hash[MERKLE_HASH_SIZE], kabar_error *err);

typedef struct merkle_store {
    merkle_get_fn get;
    merkle_put_fn put; /* may be NULL for a read-only store */
    void *ctx;
} merkle_store;

/*
 * Append the leaf with hash `leaf` at index `size` (the tree held `size`
 * leaves before; the caller keeps the size, the store does not know it).
 * Puts N(0,size) and every subtree it completes: 1 + (trailing one bits of
 * size) puts, that many minus one gets and node hashes. On failure the
 * nodes already put stay put; the caller's transaction undoes them.
 */
int merkle_append(const merkle_store *s, uint64_t size, const uint8_t leaf[MERKLE_HASH_SIZE],
                  kabar_error *err);

/* The root hash of the tree of the first `size` leaves (any size, 0 too). */
int merkle_root(const merkle_store *s, uint64_t size, uint8_t out[MERKLE_HASH_SIZE],
                kabar_error *err);

/* ------------------------------------------------------------------------ */
/* Proofs                                                                   */

/* A proof: `len` hashes in RFC 9162 order. */
typedef struct merkle_proof {
    size_t len;
    uint8_t hash[MERKLE_MAX_PROOF][MERKLE_HASH_SIZE];
} merkle_proof;

/*
 * The inclusion proof (RFC 9162 2.1.3.1, PATH) of leaf `index` in the tree
 * of the first `size` leaves; KABAR_INVALID_ARGUMENT unless index < size.
 */
int merkle_inclusion_proof(const merkle_store *s, uint64_t index, uint64_t size, merkle_proof *out,
                           kabar_error *err);

/*
 * The consistency proof (RFC 9162 2.1.4.1, PROOF) that the tree of size
 * `old_size` is a prefix of the tree of size `new_size`; empty when
 * old_size is 0 or equals new_size. KABAR_INVALID_ARGUMENT when
 * old_size > new_size.
 */
int merkle_consistency_proof(const merkle_store *s, uint64_t old_size, uint64_t new_size,
                             merkle_proof *out, kabar_error *err);

/*
 * Verify that `leaf` (a leaf hash) is leaf `index` of the tree of `size`
 * leaves whose root is `root` (RFC 9162 2.1.3.2). 0 when it is;
 * KABAR_BAD_VALUE, with the reason, when not.
 */
int merkle_verify_inclusion(uint64_t index, uint64_t size, const uint8_t leaf[MERKLE_HASH_SIZE],
                            const merkle_proof *proof, const uint8_t root[MERKLE_HASH_SIZE],
                            kabar_error *err);

/*
 * Verify that the tree of `old_size` leaves with root `old_root` is a
 * prefix of the tree of `new_size` leaves with root `new_root` (RFC 9162
 * 2.1.4.2). Equal sizes need an empty proof and equal roots; old_size 0
 * needs an empty proof and old_root = SHA-256(""). 0 when consistent;
 * KABAR_BAD_VALUE, with the reason, when not.
 */
int merkle_verify_consistency(uint64_t old_size, uint64_t new_size,
                              const uint8_t old_root[MERKLE_HASH_SIZE],
                              const uint8_t new_root[MERKLE_HASH_SIZE], const merkle_proof *proof,
                              kabar_error *err);

/* ------------------------------------------------------------------------ */
/* The frontier: the tree's right edge, without a store                     */

/*
 * The hashes of the O(log n) complete subtrees that make up a tree of any
 * size: enough to append and to compute the root, in 2 KiB, with no store.
 * `kabar audit verify` streams every event through one to recompute the
 * root at SHA-256 speed. Zero-initialise for the empty tree.
 */
typedef struct merkle_frontier {
    uint64_t size;
    uint8_t hash[64][MERKLE_HASH_SIZE]; /* hash[L] = the subtree of 2^L leaves, when bit L of size
                                           is set */
} merkle_frontier;

/*
 * Append a leaf hash. When `visit` is not NULL it is called with every
 * node the append completes, (0, index) first and then upwards, exactly
 * the nodes merkle_append would put: a verifier compares them with a
 * store's. A non-zero return from visit stops and is returned (the
 * frontier is then unchanged). KABAR_LIMIT when the tree is full.
 */
int merkle_frontier_push(merkle_frontier *f, const uint8_t leaf[MERKLE_HASH_SIZE],
                         merkle_put_fn visit, void *ctx, kabar_error *err);
/* The root of the frontier's tree (SHA-256("") when empty). */
void merkle_frontier_root(const merkle_frontier *f, uint8_t out[MERKLE_HASH_SIZE]);

/* ------------------------------------------------------------------------ */
/* An in-memory node store, for tests and tools                             */

typedef struct merkle_mem merkle_mem;

/* A new empty store in *out; KABAR_NO_MEMORY. */
int merkle_mem_new(merkle_mem **out, kabar_error *err);
/* Frees the store and sets *m to NULL; accepts NULL. */
void merkle_mem_destroy(merkle_mem **m);
/* The store interface of m, valid until m is destroyed. put accepts a node
 * at any index up to the level's count (replacing one is how tests corrupt
 * a tree) and refuses a gap with KABAR_INVALID_ARGUMENT. */
merkle_store merkle_mem_store(merkle_mem *m);

#endif
