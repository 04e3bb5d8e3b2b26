/*
 * audit_proof.h - the auditor's formats and pure checks: inclusion and
 * consistency proofs as text or JSON, range proofs, the log key, base64.
 *
 * Everything here works with no access to the log: it is what
 * `kabar audit check-proof` and `check-export` run on a file an auditor was
 * handed. docs/AUDIT.md gives every byte; the summary:
 *
 * Inclusion proof, text form (one "name value" per line, '\n' ends each):
 *
 *     kabar-proof inclusion
 *     origin kabar/host
 *     size 300                  tree size (a checkpoint's size)
 *     seq 42                    the event (leaf index seq-1)
 *     leaf-hash BASE64          SHA-256(0x00 || record)
 *     record BASE64             the stored record (optional)
 *     root BASE64               the tree's root at size (informative)
 *     hash BASE64               RFC 9162 PATH, bottom first, one per line
 *
 * Consistency proof: `kabar-proof consistency`, origin, old-size,
 * new-size, old-root, new-root, hash lines (RFC 9162 PROOF).
 *
 * JSON form: {"proof": "inclusion", "origin", "size", "seq", "leaf_hash",
 * "record", "root", "hashes": [...]} and {"proof": "consistency", "origin",
 * "old_size", "new_size", "old_root", "new_root", "hashes": [...]}, hashes
 * and bytes in standard base64 with padding.
 *
 * Range proof of the leaves [lo, hi] (0-based, inclusive) of a tree of
 * size n: the hashes MTH(D[a:b]) of every maximal subtree of the RFC 9162
 * recursion that holds no leaf of the range, left to right. See
 * audit_range_root for the algorithm that checks it.
 */
#ifndef KABAR_AUDIT_PROOF_H
#define KABAR_AUDIT_PROOF_H

#include <stdbool.h>
#include <stdint.h>

#include "checkpoint.h"
#include "kabar.h"
#include "merkle.h"

/* Longest base64 of a hash (44) with its NUL. */
#define AUDIT_B64_HASH 45

/* err = "<fmt ...>: <err's message>" with code; returns code (err may be NULL). */
int audit_error_wrap(kabar_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Standard base64 with padding of n bytes, NUL-terminated, appended to b. */
int audit_b64_append(kabar_buf *b, const void *p, size_t n);
/* Into a fixed buffer (out needs 4*ceil(n/3)+1 bytes). */
void audit_b64(const void *p, size_t n, char *out, size_t outsz);
/* Decode exactly `want` bytes (want 0: any length into b, b->len set). */
int audit_unb64(const char *s, size_t len, uint8_t *out, size_t want, kabar_error *err);
int audit_unb64_buf(const char *s, size_t len, kabar_buf *b, kabar_error *err);

typedef enum { AUDIT_INCLUSION = 1, AUDIT_CONSISTENCY } audit_proof_kind;

typedef struct audit_proof {
    audit_proof_kind kind;
    char origin[CHECKPOINT_NAME_MAX + 1];
    /* inclusion */
    uint64_t size, seq;
    uint8_t leaf_hash[32];
    bool has_record;
    kabar_buf record; /* the stored record when has_record */
    bool has_root;
    uint8_t root[32];
    /* consistency */
    uint64_t old_size, new_size;
    uint8_t old_root[32], new_root[32];
    merkle_proof hashes;
} audit_proof;

void audit_proof_free(audit_proof *p);
/* Append the text or JSON form (ending in a newline). */
int audit_proof_format(const audit_proof *p, bool json, kabar_buf *out, kabar_error *err);
/* Read either form (JSON when the first non-space byte is '{'). */
int audit_proof_parse(audit_proof *p, const char *text, size_t len, kabar_error *err);

/*
 * The log's checkpoint key from `spec`: a note verifier key
 * (NAME+KEYID+BASE64), a public key "ed25519:BASE64" (then the key name is
 * `origin`), or a file holding either (DATA/broker.vkey, DATA/broker.pub).
 */
int audit_log_key_load(checkpoint_verifier *v, const char *spec, const char *origin,
                       kabar_error *err);

/* Verify a signed note with v and read its checkpoint. */
int audit_checkpoint_open(checkpoint *c, const char *note, size_t len, const checkpoint_verifier *v,
                          kabar_error *err);

/* The root an inclusion path leads to (RFC 9162 2.1.3.2, without the compare). */
int audit_path_root(uint64_t index, uint64_t size, const uint8_t leaf[32],
                    const merkle_proof *proof, uint8_t root[32], kabar_error *err);

/* A list of hashes. */
typedef struct audit_hashes {
    size_t len, cap;
    uint8_t (*h)[32];
} audit_hashes;
int audit_hashes_push(audit_hashes *a, const uint8_t h[32]);
void audit_hashes_free(audit_hashes *a);

/*
 * The range proof of leaves [lo, hi] in the tree of `size` leaves, from the
 * inclusion paths of leaf lo and leaf hi in that tree (every subtree outside
 * the range is a sibling on one of the two paths). Appended to out.
 */
int audit_range_from_paths(uint64_t lo, uint64_t hi, uint64_t size, const merkle_proof *path_lo,
                           const merkle_proof *path_hi, audit_hashes *out, kabar_error *err);

/*
 * The root of the tree of `size` leaves from the leaf hashes of [lo, hi]
 * (leaves[0] is leaf lo) and a range proof: every proof hash must be used.
 * KABAR_BAD_VALUE when the proof does not fit the shape.
 */
int audit_range_root(uint64_t lo, uint64_t hi, uint64_t size, const uint8_t (*leaves)[32],
                     const audit_hashes *proof, uint8_t root[32], kabar_error *err);

/* MTH of n leaf hashes (n >= 1). */
void audit_mth(const uint8_t (*leaves)[32], uint64_t n, uint8_t out[32]);

#endif
