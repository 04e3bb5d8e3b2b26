/*
 * merkle_test.c - the Merkle tree against known answers, an independent
 * reference and its own invariants.
 *
 *  - the Certificate Transparency test tree (8 leaves): every root of sizes
 *    0..8 and the published inclusion and consistency proofs, byte for byte;
 *  - scripts/merkle-ref.py, written from the RFC's recursive definitions in
 *    Python: every root, inclusion proof and consistency proof of sizes
 *    1..64 must be identical;
 *  - every inclusion proof of sizes 1..64 and every consistency proof
 *    1 <= m <= n <= 64 verifies, and corrupted ones (a flipped bit, a hash
 *    dropped, added or moved, a wrong index, size or root) are refused;
 *  - the incremental append gives the recursive MTH for every size 1..1000,
 *    with a bounded number of store accesses per leaf;
 *  - 64-bit extremes (trees of up to 2^64-1 leaves) through a synthetic
 *    store, and the errors a user of a damaged store sees.
 */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "merkle.h"

#define HS MERKLE_HASH_SIZE

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

static void unhex(const char *hex, uint8_t *out, size_t n)
{
    assert_int_equal(strlen(hex), 2 * n);
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
}

static void tohex(const uint8_t *h, char out[2 * HS + 1])
{
    for (int i = 0; i < HS; i++)
        sprintf(out + 2 * i, "%02x", h[i]);
}

static void assert_hash(const uint8_t *got, const char *want_hex, const char *what)
{
    char hex[2 * HS + 1];
    tohex(got, hex);
    if (strcmp(hex, want_hex) != 0)
        fail_msg("%s: got %s, want %s", what, hex, want_hex);
}

/* The recursive MTH of RFC 9162 2.1.1 over leaf hashes: the model. */
static void model_mth(uint8_t (*leaves)[HS], uint64_t n, uint8_t out[HS])
{
    if (n == 0) {
        merkle_empty_root(out);
        return;
    }
    if (n == 1) {
        memcpy(out, leaves[0], HS);
        return;
    }
    uint64_t k = 1;
    while (k * 2 < n)
        k *= 2;
    uint8_t l[HS], r[HS];
    model_mth(leaves, k, l);
    model_mth(leaves + k, n - k, r);
    merkle_node_hash(l, r, out);
}

/* A memory store with `n` leaves "leaf 0", "leaf 1", ... (the reference's). */
typedef struct tree {
    merkle_mem *mem;
    merkle_store s;
    uint8_t (*leaf)[HS];
    uint64_t n;
} tree;

static void tree_build(tree *t, uint64_t n)
{
    memset(t, 0, sizeof(*t));
    assert_int_equal(merkle_mem_new(&t->mem, NULL), 0);
    t->s = merkle_mem_store(t->mem);
    t->leaf = calloc(n ? n : 1, HS);
    assert_non_null(t->leaf);
    for (uint64_t i = 0; i < n; i++) {
        char data[32];
        int len = snprintf(data, sizeof(data), "leaf %" PRIu64, i);
        merkle_leaf_hash(data, (size_t)len, t->leaf[i]);
        kabar_error err = {0};
        if (merkle_append(&t->s, i, t->leaf[i], &err) != 0)
            fail_msg("append %" PRIu64 ": %s", i, err.message);
    }
    t->n = n;
}

static void tree_free(tree *t)
{
    merkle_mem_destroy(&t->mem);
    assert_null(t->mem);
    free(t->leaf);
}

static void root_of(tree *t, uint64_t n, uint8_t out[HS])
{
    kabar_error err = {0};
    if (merkle_root(&t->s, n, out, &err) != 0)
        fail_msg("root(%" PRIu64 "): %s", n, err.message);
}

/* ------------------------------------------------------------------------ */
/* The Certificate Transparency test tree                                   */

static const char *const ct_data[8] = {"",
                                       "00",
                                       "10",
                                       "2021",
                                       "3031",
                                       "40414243",
                                       "5051525354555657",
                                       "606162636465666768696a6b6c6d6e6f"};
static const char *const ct_roots[9] = {
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
};

typedef struct ct_proof {
    uint64_t a, n; /* inclusion: leaf a of n; consistency: a -> n */
    const char *hash[4];
} ct_proof;

static const ct_proof ct_inclusion[] = {
    {0,
     8,
     {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
    {5,
     8,
     {"bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
    {2, 3, {"fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"}},
    {1,
     5,
     {"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
    {0, 1, {NULL}},
};

static const ct_proof ct_consistency[] = {
    {1,
     8,
     {"96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
      "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"}},
    {6,
     8,
     {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
    {2,
     5,
     {"5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
      "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"}},
    {6,
     7,
     {"0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
      "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
      "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"}},
    {4, 4, {NULL}},
};

static void ct_tree(tree *t)
{
    memset(t, 0, sizeof(*t));
    assert_int_equal(merkle_mem_new(&t->mem, NULL), 0);
    t->s = merkle_mem_store(t->mem);
    t->leaf = calloc(8, HS);
    assert_non_null(t->leaf);
    for (uint64_t i = 0; i < 8; i++) {
        uint8_t data[16];
        size_t n = strlen(ct_data[i]) / 2;
        unhex(ct_data[i], data, n);
        merkle_leaf_hash(data, n, t->leaf[i]);
        assert_int_equal(merkle_append(&t->s, i, t->leaf[i], NULL), 0);
    }
    t->n = 8;
}

static void assert_proof(const merkle_proof *p, const ct_proof *want, const char *what)
{
    size_t n = 0;
    while (n < 4 && want->hash[n])
        n++;
    if (p->len != n)
        fail_msg("%s %" PRIu64 "/%" PRIu64 ": %zu hashes, want %zu", what, want->a, want->n, p->len,
                 n);
    for (size_t i = 0; i < n; i++)
        assert_hash(p->hash[i], want->hash[i], what);
}

static void test_ct_roots(void **state)
{
    tree t;
    ct_tree(&t);
    merkle_frontier f = {0};
    uint8_t root[HS];
    for (uint64_t n = 0; n <= 8; n++) {
        root_of(&t, n, root);
        assert_hash(root, ct_roots[n], "store root");
        merkle_frontier_root(&f, root);
        assert_hash(root, ct_roots[n], "frontier root");
        if (n < 8)
            assert_int_equal(merkle_frontier_push(&f, t.leaf[n], NULL, NULL, NULL), 0);
    }
    /* The leaf hash of the empty string is the root of the 1-leaf tree. */
    merkle_leaf_hash("", 0, root);
    assert_hash(root, ct_roots[1], "leaf hash of nothing");
    tree_free(&t);
}

static void test_ct_proofs(void **state)
{
    tree t;
    ct_tree(&t);
    merkle_proof p;
    uint8_t r1[HS], r2[HS];
    for (size_t i = 0; i < sizeof(ct_inclusion) / sizeof(ct_inclusion[0]); i++) {
        const ct_proof *v = &ct_inclusion[i];
        assert_int_equal(merkle_inclusion_proof(&t.s, v->a, v->n, &p, NULL), 0);
        assert_proof(&p, v, "inclusion");
        unhex(ct_roots[v->n], r1, HS);
        assert_int_equal(merkle_verify_inclusion(v->a, v->n, t.leaf[v->a], &p, r1, NULL), 0);
    }
    for (size_t i = 0; i < sizeof(ct_consistency) / sizeof(ct_consistency[0]); i++) {
        const ct_proof *v = &ct_consistency[i];
        assert_int_equal(merkle_consistency_proof(&t.s, v->a, v->n, &p, NULL), 0);
        assert_proof(&p, v, "consistency");
        unhex(ct_roots[v->a], r1, HS);
        unhex(ct_roots[v->n], r2, HS);
        assert_int_equal(merkle_verify_consistency(v->a, v->n, r1, r2, &p, NULL), 0);
    }
    tree_free(&t);
}

/* ------------------------------------------------------------------------ */
/* The independent Python reference                                         */

static void proof_hex(const merkle_proof *p, char *out)
{
    out[0] = '\0';
    for (size_t i = 0; i < p->len; i++) {
        strcat(out, " ");
        tohex(p->hash[i], out + strlen(out));
    }
}

/* Compare one line of `merkle-ref.py dump` with our answer. */
static void check_ref_line(tree *t, char *line, int lineno)
{
    char kind[16];
    uint64_t a = 0, b = 0;
    int used = 0;
    merkle_proof p;
    char ours[(2 * HS + 1) * MERKLE_MAX_PROOF + 1];
    if (sscanf(line, "%15s %" SCNu64 " %n", kind, &a, &used) < 2)
        fail_msg("merkle-ref line %d: unreadable: %s", lineno, line);
    char *rest = line + used;
    rest[strcspn(rest, "\n")] = '\0';
    if (strcmp(kind, "root") == 0) {
        uint8_t root[HS];
        root_of(t, a, root);
        assert_hash(root, rest, "root against merkle-ref.py");
        return;
    }
    if (sscanf(rest, "%" SCNu64 "%n", &b, &used) != 1)
        fail_msg("merkle-ref line %d: unreadable: %s", lineno, line);
    rest += used;
    if (strcmp(kind, "inclusion") == 0)
        assert_int_equal(merkle_inclusion_proof(&t->s, a, b, &p, NULL), 0);
    else if (strcmp(kind, "consistency") == 0)
        assert_int_equal(merkle_consistency_proof(&t->s, a, b, &p, NULL), 0);
    else
        fail_msg("merkle-ref line %d: unknown record %s", lineno, kind);
    proof_hex(&p, ours);
    if (strcmp(ours, rest) != 0)
        fail_msg("%s %" PRIu64 " %" PRIu64 " differs from merkle-ref.py:\n ours:%s\n  ref:%s", kind,
                 a, b, ours, rest);
}

static void test_against_reference(void **state)
{
    const char *src = getenv("KABAR_SOURCE_DIR");
    char cmd[4096];
    if (!src)
        src = ".";
    if (access("/usr/bin/python3", X_OK) != 0)
        skip();
    snprintf(cmd, sizeof(cmd), "/usr/bin/python3 '%s/scripts/merkle-ref.py' dump 64", src);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    tree t;
    tree_build(&t, 64);
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, roots = 0;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        roots += strncmp(line, "root ", 5) == 0;
        check_ref_line(&t, line, lineno);
    }
    free(line);
    int status = pclose(f);
    if (status != 0)
        fail_msg("%s failed (status %d; is KABAR_SOURCE_DIR set?)", cmd, status);
    /* 64 roots, 2080 inclusion and 2080 consistency proofs. */
    assert_int_equal(roots, 64);
    assert_int_equal(lineno, 64 + 2 * 2080);
    tree_free(&t);
}

/* ------------------------------------------------------------------------ */
/* Every proof of sizes 1..64 verifies; corrupted ones do not               */

static int verify_incl(uint64_t i, uint64_t n, const uint8_t *leaf, const merkle_proof *p,
                       const uint8_t *root)
{
    kabar_error err = {0};
    int rc = merkle_verify_inclusion(i, n, leaf, p, root, &err);
    if (rc != 0)
        assert_int_equal(err.code, KABAR_BAD_VALUE);
    return rc;
}

static void refuse_incl(uint64_t i, uint64_t n, const uint8_t *leaf, const merkle_proof *p,
                        const uint8_t *root, const char *what)
{
    if (verify_incl(i, n, leaf, p, root) == 0)
        fail_msg("inclusion of leaf %" PRIu64 " in %" PRIu64 " accepted with %s", i, n, what);
}

static void corrupt_inclusion(tree *t, uint64_t i, uint64_t n, const merkle_proof *good,
                              const uint8_t *root)
{
    merkle_proof p;
    uint8_t other[HS];
    merkle_empty_root(other);
    for (size_t k = 0; k < good->len; k++) {
        p = *good;
        p.hash[k][k % HS] ^= 0x08;
        refuse_incl(i, n, t->leaf[i], &p, root, "a flipped bit");
    }
    if (good->len > 0) {
        p = *good;
        p.len--;
        refuse_incl(i, n, t->leaf[i], &p, root, "the last hash dropped");
    }
    p = *good;
    memcpy(p.hash[p.len++], root, HS);
    refuse_incl(i, n, t->leaf[i], &p, root, "the root appended");
    p.len = 0;
    memcpy(p.hash[p.len++], other, HS);
    for (size_t k = 0; k < good->len; k++)
        memcpy(p.hash[p.len++], good->hash[k], HS);
    refuse_incl(i, n, t->leaf[i], &p, root, "a hash prepended");
    if (i > 0)
        refuse_incl(i - 1, n, t->leaf[i], good, root, "index - 1");
    if (i + 1 < n)
        refuse_incl(i + 1, n, t->leaf[i], good, root, "index + 1");
    if ((i ^ 2) < n)
        refuse_incl(i ^ 2, n, t->leaf[i], good, root, "index ^ 2");
    refuse_incl(i, n, t->leaf[(i + 1) % t->n], good, root, "another leaf");
    refuse_incl(i, n, t->leaf[i], good, other, "another root");
    refuse_incl(n, n, t->leaf[i], good, root, "an index outside the tree");
    refuse_incl(i, 2 * n, t->leaf[i], good, root, "size * 2");
}

static void test_every_inclusion_proof(void **state)
{
    tree t;
    tree_build(&t, 64);
    merkle_proof p;
    uint8_t root[HS];
    for (uint64_t n = 1; n <= 64; n++) {
        root_of(&t, n, root);
        for (uint64_t i = 0; i < n; i++) {
            kabar_error err = {0};
            if (merkle_inclusion_proof(&t.s, i, n, &p, &err) != 0)
                fail_msg("%s", err.message);
            if (merkle_verify_inclusion(i, n, t.leaf[i], &p, root, &err) != 0)
                fail_msg("inclusion of leaf %" PRIu64 " in %" PRIu64 ": %s", i, n, err.message);
            corrupt_inclusion(&t, i, n, &p, root);
        }
    }
    tree_free(&t);
}

static void refuse_cons(uint64_t m, uint64_t n, const uint8_t *r1, const uint8_t *r2,
                        const merkle_proof *p, const char *what)
{
    kabar_error err = {0};
    if (merkle_verify_consistency(m, n, r1, r2, p, &err) == 0)
        fail_msg("consistency %" PRIu64 " -> %" PRIu64 " accepted with %s", m, n, what);
    assert_int_equal(err.code, KABAR_BAD_VALUE);
    assert_true(strlen(err.message) > 0);
}

static void corrupt_consistency(uint64_t m, uint64_t n, const uint8_t *r1, const uint8_t *r2,
                                const merkle_proof *good)
{
    merkle_proof p;
    for (size_t k = 0; k < good->len; k++) {
        p = *good;
        p.hash[k][(k * 7) % HS] ^= 0x10;
        refuse_cons(m, n, r1, r2, &p, "a flipped bit");
    }
    p = *good;
    p.len--;
    refuse_cons(m, n, r1, r2, &p, "the last hash dropped");
    p = *good;
    memcpy(p.hash[p.len++], r2, HS);
    refuse_cons(m, n, r1, r2, &p, "the new root appended");
    p.len = 0;
    memcpy(p.hash[p.len++], r1, HS);
    for (size_t k = 0; k < good->len; k++)
        memcpy(p.hash[p.len++], good->hash[k], HS);
    refuse_cons(m, n, r1, r2, &p, "the old root prepended");
    if (good->len >= 2 && memcmp(good->hash[0], good->hash[1], HS) != 0) {
        p = *good;
        memcpy(p.hash[0], good->hash[1], HS);
        memcpy(p.hash[1], good->hash[0], HS);
        refuse_cons(m, n, r1, r2, &p, "two hashes swapped");
    }
    refuse_cons(m, n, r2, r1, good, "the roots swapped");
    refuse_cons(m, n, r1, r1, good, "the old root as the new");
    refuse_cons(n, m, r1, r2, good, "the sizes swapped");
    refuse_cons(m, 2 * n, r1, r2, good, "size * 2");
}

static void test_every_consistency_proof(void **state)
{
    tree t;
    tree_build(&t, 64);
    merkle_proof p;
    uint8_t roots[65][HS];
    for (uint64_t n = 0; n <= 64; n++)
        root_of(&t, n, roots[n]);
    for (uint64_t n = 1; n <= 64; n++) {
        for (uint64_t m = 1; m <= n; m++) {
            kabar_error err = {0};
            if (merkle_consistency_proof(&t.s, m, n, &p, &err) != 0)
                fail_msg("%s", err.message);
            if (merkle_verify_consistency(m, n, roots[m], roots[n], &p, &err) != 0)
                fail_msg("consistency %" PRIu64 " -> %" PRIu64 ": %s", m, n, err.message);
            if (m == n) {
                assert_int_equal(p.len, 0);
                continue;
            }
            corrupt_consistency(m, n, roots[m], roots[n], &p);
            /* A wrong old size with the same proof and roots. */
            if (m > 1)
                refuse_cons(m - 1, n, roots[m], roots[n], &p, "old size - 1");
            if (m + 1 < n)
                refuse_cons(m + 1, n, roots[m], roots[n], &p, "old size + 1");
            /* A proof from another old tree. */
            refuse_cons(m, n, roots[m - 1], roots[n], &p, "the root of another size");
        }
    }
    tree_free(&t);
}

static void test_degenerate_consistency(void **state)
{
    tree t;
    tree_build(&t, 5);
    uint8_t empty[HS], r4[HS], r5[HS];
    merkle_empty_root(empty);
    root_of(&t, 4, r4);
    root_of(&t, 5, r5);
    merkle_proof none = {.len = 0}, one = {.len = 1};
    memcpy(one.hash[0], empty, HS);
    merkle_proof p;
    assert_int_equal(merkle_consistency_proof(&t.s, 0, 5, &p, NULL), 0);
    assert_int_equal(p.len, 0);
    assert_int_equal(merkle_verify_consistency(0, 5, empty, r5, &none, NULL), 0);
    assert_int_equal(merkle_verify_consistency(0, 0, empty, empty, &none, NULL), 0);
    assert_int_equal(merkle_verify_consistency(4, 4, r4, r4, &none, NULL), 0);
    refuse_cons(0, 5, r4, r5, &none, "a non-empty root for size 0");
    refuse_cons(0, 5, empty, r5, &one, "a proof from size 0");
    refuse_cons(4, 4, r4, r5, &none, "two roots for one size");
    refuse_cons(4, 4, r4, r4, &one, "a proof between equal sizes");
    refuse_cons(4, 5, r4, r5, &none, "an empty proof");
    refuse_cons(5, 4, r5, r4, &none, "a shrinking log");
    merkle_proof huge = {.len = MERKLE_MAX_PROOF + 1};
    refuse_cons(4, 5, r4, r5, &huge, "an overlong proof");
    tree_free(&t);
}

/* ------------------------------------------------------------------------ */
/* Incremental append = recursive MTH, at a bounded cost                    */

typedef struct counting {
    merkle_store inner;
    uint64_t gets, puts;
} counting;

static int count_get(void *ctx, unsigned level, uint64_t index, uint8_t out[HS], kabar_error *err)
{
    counting *c = ctx;
    c->gets++;
    return c->inner.get(c->inner.ctx, level, index, out, err);
}

static int count_put(void *ctx, unsigned level, uint64_t index, const uint8_t hash[HS],
                     kabar_error *err)
{
    counting *c = ctx;
    c->puts++;
    return c->inner.put(c->inner.ctx, level, index, hash, err);
}

/* Frontier visit: every node it completes is the one the store holds. */
static int same_as_store(void *ctx, unsigned level, uint64_t index, const uint8_t hash[HS],
                         kabar_error *err)
{
    const merkle_store *s = ctx;
    uint8_t stored[HS];
    assert_int_equal(s->get(s->ctx, level, index, stored, err), 0);
    assert_memory_equal(stored, hash, HS);
    return 0;
}

static void test_incremental_append(void **state)
{
    enum { N = 1000 };
    tree t;
    tree_build(&t, 0);
    free(t.leaf);
    t.leaf = calloc(N, HS);
    counting c = {t.s, 0, 0};
    merkle_store s = {count_get, count_put, &c};
    merkle_frontier f = {0};
    uint8_t want[HS], got[HS];
    for (uint64_t n = 1; n <= N; n++) {
        uint64_t gets = c.gets, puts = c.puts;
        uint8_t data[8];
        for (int b = 0; b < 8; b++)
            data[b] = (uint8_t)((n - 1) >> (8 * b));
        merkle_leaf_hash(data, sizeof(data), t.leaf[n - 1]);
        assert_int_equal(merkle_append(&s, n - 1, t.leaf[n - 1], NULL), 0);
        /* The cost of one append: 1 + trailing ones of the old size puts,
         * never more than the height of the tree. */
        assert_int_equal(c.puts - puts, 1 + (uint64_t)__builtin_ctzll(~(n - 1)));
        assert_int_equal(c.gets - gets, c.puts - puts - 1);
        assert_int_equal(merkle_frontier_push(&f, t.leaf[n - 1], same_as_store, &t.s, NULL), 0);

        model_mth(t.leaf, n, want);
        gets = c.gets;
        assert_int_equal(merkle_root(&s, n, got, NULL), 0);
        assert_memory_equal(got, want, HS);
        assert_int_equal(c.gets - gets, (uint64_t)__builtin_popcountll(n));
        merkle_frontier_root(&f, got);
        assert_memory_equal(got, want, HS);
        assert_int_equal(f.size, n);
    }
    /* All complete subtrees, nothing more: 2N - popcount(N) nodes. */
    assert_int_equal(c.puts, 2 * N - __builtin_popcount(N));
    tree_free(&t);
}

/* ------------------------------------------------------------------------ */
/* 64-bit extremes through a synthetic store                                */

/*
 * Every leaf of this tree has the same hash, so the complete subtree at
 * level L is F(L) = node(F(L-1), F(L-1)) whatever its index: a consistent
 * tree of any size, up to 2^64-1 leaves, in 64 hashes.
 */
static uint8_t same_level[64][HS];

static int same_get(void *ctx, unsigned level, uint64_t index, uint8_t out[HS], kabar_error *err)
{
    uint64_t size = *(const uint64_t *)ctx;
    if (level >= 64 || index >= (size >> level))
        return KABAR_NOT_FOUND;
    memcpy(out, same_level[level], HS);
    return 0;
}

static void test_huge_trees(void **state)
{
    merkle_leaf_hash("x", 1, same_level[0]);
    for (int l = 1; l < 64; l++)
        merkle_node_hash(same_level[l - 1], same_level[l - 1], same_level[l]);
    uint64_t size = UINT64_MAX;
    merkle_store s = {same_get, NULL, &size};
    const uint64_t sizes[] = {1,
                              2,
                              3,
                              ((uint64_t)1 << 32) + 1,
                              ((uint64_t)1 << 63) - 1,
                              (uint64_t)1 << 63,
                              ((uint64_t)1 << 63) + 1,
                              UINT64_MAX - 1,
                              UINT64_MAX};
    const size_t count = sizeof(sizes) / sizeof(sizes[0]);
    merkle_proof p;
    size_t longest_incl = 0, longest_cons = 0;
    for (size_t a = 0; a < count; a++) {
        uint8_t ra[HS], rb[HS];
        kabar_error err = {0};
        assert_int_equal(merkle_root(&s, sizes[a], ra, NULL), 0);
        const uint64_t leaves[] = {0, sizes[a] / 3, sizes[a] - 1};
        for (int k = 0; k < 3; k++) {
            assert_int_equal(merkle_inclusion_proof(&s, leaves[k], sizes[a], &p, NULL), 0);
            if (merkle_verify_inclusion(leaves[k], sizes[a], same_level[0], &p, ra, &err) != 0)
                fail_msg("leaf %" PRIu64 " of %" PRIu64 ": %s", leaves[k], sizes[a], err.message);
            longest_incl = p.len > longest_incl ? p.len : longest_incl;
        }
        for (size_t b = a; b < count; b++) {
            assert_int_equal(merkle_root(&s, sizes[b], rb, NULL), 0);
            assert_int_equal(merkle_consistency_proof(&s, sizes[a], sizes[b], &p, NULL), 0);
            assert_true(p.len <= MERKLE_MAX_PROOF);
            if (merkle_verify_consistency(sizes[a], sizes[b], ra, rb, &p, &err) != 0)
                fail_msg("%" PRIu64 " -> %" PRIu64 ": %s", sizes[a], sizes[b], err.message);
            longest_cons = p.len > longest_cons ? p.len : longest_cons;
        }
    }
    /* 64 levels; a consistency proof may need one more (MERKLE_MAX_PROOF). */
    assert_int_equal(longest_incl, 64);
    assert_int_equal(longest_cons, MERKLE_MAX_PROOF);
    merkle_frontier f = {.size = UINT64_MAX};
    kabar_error err = {0};
    assert_int_equal(merkle_frontier_push(&f, same_level[0], NULL, NULL, &err), KABAR_LIMIT);
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */

static void test_errors(void **state)
{
    tree t;
    tree_build(&t, 5);
    merkle_proof p;
    uint8_t root[HS];
    kabar_error err = {0};

    assert_int_equal(merkle_inclusion_proof(&t.s, 5, 5, &p, &err), KABAR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "leaf 5 is not in a tree of 5 leaves"));
    assert_int_equal(merkle_consistency_proof(&t.s, 6, 5, &p, &err), KABAR_INVALID_ARGUMENT);

    /* Asking beyond what the store holds names the missing node. */
    assert_int_equal(merkle_root(&t.s, 6, root, &err), KABAR_NOT_FOUND);
    assert_non_null(strstr(err.message, "node (level 1, index 2)")); /* leaves 4-5 */
    assert_int_equal(merkle_inclusion_proof(&t.s, 0, 8, &p, &err), KABAR_NOT_FOUND);

    /* A store that skips a leaf refuses the gap. */
    assert_int_equal(merkle_append(&t.s, 7, t.leaf[0], &err), KABAR_INVALID_ARGUMENT);
    merkle_store ro = {t.s.get, NULL, t.s.ctx};
    assert_int_equal(merkle_append(&ro, 5, t.leaf[0], &err), KABAR_INVALID_ARGUMENT);

    /* A changed node changes the root, and the old proofs stop verifying. */
    uint8_t before[HS], after[HS], bad[HS];
    root_of(&t, 5, before);
    assert_int_equal(merkle_inclusion_proof(&t.s, 4, 5, &p, NULL), 0);
    memcpy(bad, t.leaf[2], HS);
    bad[0] ^= 1;
    assert_int_equal(t.s.put(t.s.ctx, 0, 2, bad, NULL), 0);
    root_of(&t, 5, after); /* root(5) reads only (2,0) and (0,4) */
    assert_memory_equal(before, after, HS);
    assert_int_equal(t.s.put(t.s.ctx, 2, 0, bad, NULL), 0);
    root_of(&t, 5, after);
    assert_memory_not_equal(before, after, HS);
    assert_int_equal(merkle_verify_inclusion(4, 5, t.leaf[4], &p, after, &err), KABAR_BAD_VALUE);
    assert_non_null(strstr(err.message, "does not lead to the root"));
    tree_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ct_roots),
        cmocka_unit_test(test_ct_proofs),
        cmocka_unit_test(test_against_reference),
        cmocka_unit_test(test_every_inclusion_proof),
        cmocka_unit_test(test_every_consistency_proof),
        cmocka_unit_test(test_degenerate_consistency),
        cmocka_unit_test(test_incremental_append),
        cmocka_unit_test(test_huge_trees),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
