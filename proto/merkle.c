/*
 * merkle.c - RFC 9162 Merkle tree hashing, incremental append over a node
 * store, inclusion and consistency proofs and their verification.
 *
 * Design notes: see merkle.h. The one idea everything here rests on: every
 * range of leaves the RFC's recursion ever hashes, [start, start+size), has
 * `start` aligned to the largest power of two in `size`, so its hash is the
 * right fold of the complete subtrees named by the binary digits of `size`
 * (range_hash). Proof generation walks the RFC recursion top-down
 * iteratively, collecting the sibling hashes, and emits them bottom-up.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h> /* sodium_memcmp */

#include "merkle.h"
#include "sha256.h"

#define HS MERKLE_HASH_SIZE

/* ------------------------------------------------------------------------ */
/* Hashing                                                                  */

void merkle_leaf_hash(const void *data, size_t len, uint8_t out[HS])
{
    static const uint8_t prefix = 0x00;
    kabar_sha256_2(&prefix, 1, data, len, out);
}

void merkle_node_hash(const uint8_t left[HS], const uint8_t right[HS], uint8_t out[HS])
{
    uint8_t buf[1 + 2 * HS];
    buf[0] = 0x01;
    memcpy(buf + 1, left, HS);
    memcpy(buf + 1 + HS, right, HS);
    kabar_sha256(buf, sizeof(buf), out);
}

void merkle_empty_root(uint8_t out[HS])
{
    kabar_sha256("", 0, out);
}

/* The largest power of two strictly smaller than n (n >= 2): RFC 9162's k. */
static uint64_t split(uint64_t n)
{
    uint64_t k = 1;
    while (k < n - k)
        k <<= 1;
    return k;
}

/* ------------------------------------------------------------------------ */
/* Reading nodes                                                            */

static int get_node(const merkle_store *s, unsigned level, uint64_t index, uint8_t out[HS],
                    kabar_error *err)
{
    int rc = s->get(s->ctx, level, index, out, err);
    if (rc == KABAR_NOT_FOUND)
        return kabar_error_set(err, KABAR_NOT_FOUND,
                               "merkle: node (level %u, index %" PRIu64
                               ") is missing from the node store (a damaged or incomplete "
                               "tree; rebuild it from the events)",
                               level, index);
    return rc;
}

/*
 * The hash of leaves [start, start+size), size >= 1, start a multiple of
 * the largest power of two in size: fold the complete subtrees of size's
 * binary digits, largest first, from the right.
 */
static int range_hash(const merkle_store *s, uint64_t start, uint64_t size, uint8_t out[HS],
                      kabar_error *err)
{
    uint8_t piece[64][HS];
    int count = 0, rc;
    for (int level = 63; level >= 0; level--) {
        uint64_t width = (uint64_t)1 << level;
        if (!(size & width))
            continue;
        if ((rc = get_node(s, (unsigned)level, start >> level, piece[count], err)) != 0)
            return rc;
        start += width;
        count++;
    }
    memcpy(out, piece[count - 1], HS);
    for (int i = count - 2; i >= 0; i--)
        merkle_node_hash(piece[i], out, out);
    return 0;
}

int merkle_root(const merkle_store *s, uint64_t size, uint8_t out[HS], kabar_error *err)
{
    if (size == 0) {
        merkle_empty_root(out);
        return 0;
    }
    return range_hash(s, 0, size, out, err);
}

/* ------------------------------------------------------------------------ */
/* Appending                                                                */

int merkle_append(const merkle_store *s, uint64_t size, const uint8_t leaf[HS], kabar_error *err)
{
    if (!s->put)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "merkle: the node store is read-only");
    if (size == UINT64_MAX)
        return kabar_error_set(err, KABAR_LIMIT, "merkle: the tree is full (2^64-1 leaves)");
    uint8_t h[HS], left[HS];
    int rc;
    if ((rc = s->put(s->ctx, 0, size, leaf, err)) != 0)
        return rc;
    memcpy(h, leaf, HS);
    uint64_t index = size;
    unsigned level = 0;
    while (index & 1) { /* a right child: its parent is now complete */
        if ((rc = get_node(s, level, index - 1, left, err)) != 0)
            return rc;
        merkle_node_hash(left, h, h);
        index >>= 1;
        level++;
        if ((rc = s->put(s->ctx, level, index, h, err)) != 0)
            return rc;
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Proofs                                                                   */

/* Reverse the `n` top-down hashes of `top` onto the end of `out`. */
static void emit_reversed(merkle_proof *out, uint8_t top[][HS], size_t n)
{
    for (size_t i = 0; i < n; i++)
        memcpy(out->hash[out->len++], top[n - 1 - i], HS);
}

int merkle_inclusion_proof(const merkle_store *s, uint64_t index, uint64_t size, merkle_proof *out,
                           kabar_error *err)
{
    out->len = 0;
    if (index >= size)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "merkle: leaf %" PRIu64 " is not in a tree of %" PRIu64 " leaves",
                               index, size);
    uint8_t top[MERKLE_MAX_PROOF][HS];
    size_t n = 0;
    uint64_t lo = 0;
    int rc;
    while (size > 1) { /* PATH(index, D[lo:lo+size]) */
        uint64_t k = split(size);
        if (index < k) {
            rc = range_hash(s, lo + k, size - k, top[n++], err);
            size = k;
        } else {
            rc = range_hash(s, lo, k, top[n++], err);
            lo += k;
            index -= k;
            size -= k;
        }
        if (rc != 0)
            return rc;
    }
    emit_reversed(out, top, n);
    return 0;
}

int merkle_consistency_proof(const merkle_store *s, uint64_t old_size, uint64_t new_size,
                             merkle_proof *out, kabar_error *err)
{
    out->len = 0;
    if (old_size > new_size)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "merkle: no consistency proof from %" PRIu64 " to %" PRIu64
                               " leaves: the old size is larger than the new",
                               old_size, new_size);
    if (old_size == 0 || old_size == new_size)
        return 0;
    uint8_t top[MERKLE_MAX_PROOF][HS];
    size_t n = 0;
    uint64_t lo = 0, m = old_size, size = new_size;
    bool whole = true; /* SUBPROOF's b: D[lo:lo+m] is the whole old tree */
    int rc;
    while (m != size) { /* SUBPROOF(m, D[lo:lo+size], whole), m < size */
        uint64_t k = split(size);
        if (m <= k) {
            rc = range_hash(s, lo + k, size - k, top[n++], err);
            size = k;
        } else {
            rc = range_hash(s, lo, k, top[n++], err);
            lo += k;
            m -= k;
            size -= k;
            whole = false;
        }
        if (rc != 0)
            return rc;
    }
    if (!whole) {
        if ((rc = range_hash(s, lo, m, out->hash[0], err)) != 0)
            return rc;
        out->len = 1;
    }
    emit_reversed(out, top, n);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Verification (RFC 9162 2.1.3.2 and 2.1.4.2), no store needed             */

static int verify_fail(kabar_error *err, const char *what)
{
    return kabar_error_set(err, KABAR_BAD_VALUE, "merkle: %s", what);
}

int merkle_verify_inclusion(uint64_t index, uint64_t size, const uint8_t leaf[HS],
                            const merkle_proof *proof, const uint8_t root[HS], kabar_error *err)
{
    if (index >= size)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "merkle: inclusion proof names leaf %" PRIu64
                               ", which is not in a tree of %" PRIu64 " leaves",
                               index, size);
    if (proof->len > MERKLE_MAX_PROOF)
        return verify_fail(err, "inclusion proof is longer than any tree needs");
    uint64_t fn = index, sn = size - 1;
    uint8_t r[HS];
    memcpy(r, leaf, HS);
    for (size_t i = 0; i < proof->len; i++) {
        if (sn == 0)
            return verify_fail(err, "inclusion proof has more hashes than the tree has levels");
        if ((fn & 1) || fn == sn) {
            merkle_node_hash(proof->hash[i], r, r);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            merkle_node_hash(r, proof->hash[i], r);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0)
        return verify_fail(err, "inclusion proof has fewer hashes than the tree has levels");
    if (sodium_memcmp(r, root, HS) != 0)
        return verify_fail(err, "inclusion proof does not lead to the root: the leaf, the "
                                "proof or the root was changed");
    return 0;
}

/* The consistency check proper, for 0 < old_size < new_size. */
static int verify_consistency_path(uint64_t old_size, uint64_t new_size, const uint8_t old_root[HS],
                                   const uint8_t new_root[HS], const merkle_proof *proof,
                                   kabar_error *err)
{
    const uint8_t(*path)[HS] = proof->hash;
    size_t len = proof->len, i = 0;
    uint8_t fr[HS], sr[HS];
    /* Step 2: a power-of-two old tree is itself a node of the new one, and
     * the proof leaves its hash out: start from old_root. */
    bool prepend = (old_size & (old_size - 1)) == 0;
    uint64_t fn = old_size - 1, sn = new_size - 1;
    while (fn & 1) {
        fn >>= 1;
        sn >>= 1;
    }
    memcpy(fr, prepend ? old_root : path[i++], HS);
    memcpy(sr, fr, HS);
    for (; i < len; i++) {
        if (sn == 0)
            return verify_fail(err, "consistency proof has more hashes than the tree needs");
        if ((fn & 1) || fn == sn) {
            merkle_node_hash(path[i], fr, fr);
            merkle_node_hash(path[i], sr, sr);
            while (!(fn & 1) && fn != 0) {
                fn >>= 1;
                sn >>= 1;
            }
        } else {
            merkle_node_hash(sr, path[i], sr);
        }
        fn >>= 1;
        sn >>= 1;
    }
    if (sn != 0)
        return verify_fail(err, "consistency proof has fewer hashes than the tree needs");
    if (sodium_memcmp(fr, old_root, HS) != 0)
        return verify_fail(err, "consistency proof does not lead to the old root: the old tree "
                                "is not a prefix of the new one (the log was rewritten) or "
                                "the proof is wrong");
    if (sodium_memcmp(sr, new_root, HS) != 0)
        return verify_fail(err, "consistency proof does not lead to the new root: the new tree "
                                "does not extend the old one (the log was rewritten) or the "
                                "proof is wrong");
    return 0;
}

int merkle_verify_consistency(uint64_t old_size, uint64_t new_size, const uint8_t old_root[HS],
                              const uint8_t new_root[HS], const merkle_proof *proof,
                              kabar_error *err)
{
    if (old_size > new_size)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "merkle: a tree of %" PRIu64 " leaves cannot extend one of %" PRIu64
                               " (the log shrank)",
                               new_size, old_size);
    if (proof->len > MERKLE_MAX_PROOF)
        return verify_fail(err, "consistency proof is longer than any tree needs");
    if (old_size == new_size) {
        if (proof->len != 0)
            return verify_fail(err, "consistency proof between equal sizes must be empty");
        if (sodium_memcmp(old_root, new_root, HS) != 0)
            return verify_fail(err, "two different roots for the same tree size: the log was "
                                    "rewritten");
        return 0;
    }
    if (old_size == 0) {
        uint8_t empty[HS];
        merkle_empty_root(empty);
        if (proof->len != 0)
            return verify_fail(err, "consistency proof from the empty tree must be empty");
        if (sodium_memcmp(old_root, empty, HS) != 0)
            return verify_fail(err, "the root of the empty tree is not SHA-256 of nothing");
        return 0;
    }
    if (proof->len == 0) /* step 1 */
        return verify_fail(err, "consistency proof is empty");
    return verify_consistency_path(old_size, new_size, old_root, new_root, proof, err);
}

/* ------------------------------------------------------------------------ */
/* The frontier                                                             */

int merkle_frontier_push(merkle_frontier *f, const uint8_t leaf[HS], merkle_put_fn visit, void *ctx,
                         kabar_error *err)
{
    if (f->size == UINT64_MAX)
        return kabar_error_set(err, KABAR_LIMIT, "merkle: the tree is full (2^64-1 leaves)");
    uint8_t h[HS];
    uint64_t index = f->size;
    unsigned level = 0;
    int rc;
    memcpy(h, leaf, HS);
    if (visit && (rc = visit(ctx, 0, index, h, err)) != 0)
        return rc;
    while (index & 1) {
        merkle_node_hash(f->hash[level], h, h);
        index >>= 1;
        level++;
        if (visit && (rc = visit(ctx, level, index, h, err)) != 0)
            return rc;
    }
    /* The levels below `level` are now inside h; their slots are stale but
     * unused, as their bits of size are clear. */
    memcpy(f->hash[level], h, HS);
    f->size++;
    return 0;
}

void merkle_frontier_root(const merkle_frontier *f, uint8_t out[HS])
{
    if (f->size == 0) {
        merkle_empty_root(out);
        return;
    }
    bool have = false;
    for (unsigned level = 0; level < 64; level++) {
        if (!(f->size & ((uint64_t)1 << level)))
            continue;
        if (have) {
            merkle_node_hash(f->hash[level], out, out);
        } else {
            memcpy(out, f->hash[level], HS);
            have = true;
        }
    }
}

/* ------------------------------------------------------------------------ */
/* The in-memory store                                                      */

typedef struct mem_level {
    uint8_t (*hash)[HS];
    uint64_t count, cap;
} mem_level;

struct merkle_mem {
    mem_level level[64];
};

int merkle_mem_new(merkle_mem **out, kabar_error *err)
{
    merkle_mem *m = calloc(1, sizeof(*m));
    if (!m)
        return kabar_error_set(err, KABAR_NO_MEMORY, "merkle: out of memory for a node store");
    *out = m;
    return 0;
}

void merkle_mem_destroy(merkle_mem **pm)
{
    if (!pm || !*pm)
        return;
    for (int i = 0; i < 64; i++)
        free((*pm)->level[i].hash);
    free(*pm);
    *pm = NULL;
}

static int mem_get(void *ctx, unsigned level, uint64_t index, uint8_t out[HS], kabar_error *err)
{
    merkle_mem *m = ctx;
    if (level >= 64 || index >= m->level[level].count)
        return KABAR_NOT_FOUND; /* merkle.c names the node */
    memcpy(out, m->level[level].hash[index], HS);
    return 0;
}

static int mem_put(void *ctx, unsigned level, uint64_t index, const uint8_t hash[HS],
                   kabar_error *err)
{
    merkle_mem *m = ctx;
    mem_level *l = level < 64 ? &m->level[level] : NULL;
    if (!l || index > l->count)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "merkle: node (level %u, index %" PRIu64
                               ") would leave a gap in the in-memory store",
                               level, index);
    if (index == l->cap) {
        uint64_t cap = l->cap ? l->cap * 2 : 16;
        void *p = cap <= SIZE_MAX / HS ? realloc(l->hash, (size_t)cap * HS) : NULL;
        if (!p)
            return kabar_error_set(err, KABAR_NO_MEMORY,
                                   "merkle: out of memory for %" PRIu64 " nodes", cap);
        l->hash = p;
        l->cap = cap;
    }
    memcpy(l->hash[index], hash, HS);
    if (index == l->count)
        l->count++;
    return 0;
}

merkle_store merkle_mem_store(merkle_mem *m)
{
    merkle_store s = {mem_get, mem_put, m};
    return s;
}
