/*
 * checkpoint.h - signed checkpoints of kabar's Merkle log, in the C2SP
 * tlog-checkpoint and signed-note text formats.
 *
 * A checkpoint says "the log named ORIGIN had SIZE events and this root
 * hash", signed by the broker's Ed25519 key. An auditor keeps one and later
 * asks for a consistency proof (merkle.h) from it to a newer checkpoint: if
 * the log was ever rewritten, the proof cannot exist. The text is the one
 * that existing transparency-log tools read (Go's golang.org/x/mod/sumdb/note
 * and transparency-dev/formats, for instance); docs/MERKLE.md gives the bytes
 * and the references:
 *
 *     kabar.padang.go.id/log                      origin (the log's name)
 *     8                                           tree size, decimal
 *     XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg= root hash, base64
 *                                                 (a blank line)
 *     — kabar.padang.go.id/log HXFJFr8t+lI...     U+2014, space, key name,
 *                                                 space, base64(key id ||
 *                                                 Ed25519 signature)
 *
 * The signature covers the note text (the lines above the blank line, each
 * with its newline). Key id = the first 4 bytes, big-endian, of
 * SHA-256(key name || 0x0A || 0x01 || public key). kabar signs a checkpoint
 * with the key named like its origin, and checkpoint_open insists on it, so
 * a checkpoint of one log is never taken for one of another.
 *
 * Keys travel as text, as in Go's note package:
 *     verifier key  NAME+KEYID+base64(0x01 || public key)   (KEYID: 8 hex)
 *     signer key    PRIVATE+KEY+NAME+KEYID+base64(0x01 || 32-byte seed)
 *
 * Errors: KABAR_INVALID_ARGUMENT for a checkpoint or key name that cannot
 * be written (a newline in the origin, a '+' in a key name),
 * KABAR_BAD_VALUE for text that is not a valid note, checkpoint or key, or
 * a note that the given key did not sign (the message says which),
 * KABAR_NO_MEMORY. No function here keeps a pointer to its arguments.
 */
#ifndef KABAR_CHECKPOINT_H
#define KABAR_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "kabar.h"
#include "merkle.h"

#define CHECKPOINT_NAME_MAX       255   /* bytes of an origin or key name */
#define CHECKPOINT_EXT_MAX        1024  /* bytes of all extension lines together */
#define CHECKPOINT_NOTE_MAX       65536 /* a longer note is refused */
#define CHECKPOINT_MAX_SIGNATURES 64    /* a note with more is refused (C2SP: at least 16) */
#define CHECKPOINT_PUBLIC_KEY     32    /* Ed25519 */
#define CHECKPOINT_SEED           32
/* The text forms of keys, with their NUL. */
#define CHECKPOINT_VKEY_MAX (CHECKPOINT_NAME_MAX + 1 + 8 + 1 + 44 + 1)
#define CHECKPOINT_SKEY_MAX (12 + CHECKPOINT_NAME_MAX + 1 + 8 + 1 + 44 + 1)

/* A checkpoint's content. */
typedef struct checkpoint {
    char origin[CHECKPOINT_NAME_MAX + 1]; /* NUL-terminated */
    uint64_t size;
    uint8_t root[MERKLE_HASH_SIZE];
    /* "" or extension lines, each non-empty and ending in '\n' (C2SP: NOT
     * RECOMMENDED, as log monitors cannot audit them). */
    char extensions[CHECKPOINT_EXT_MAX + 1];
} checkpoint;

/* Who may have signed: a key name, its key id and its Ed25519 public key. */
typedef struct checkpoint_verifier {
    char name[CHECKPOINT_NAME_MAX + 1];
    uint32_t key_id;
    uint8_t public_key[CHECKPOINT_PUBLIC_KEY];
} checkpoint_verifier;

/* A signing key: its verifier and the Ed25519 secret key (libsodium's
 * 64-byte form). Wipe it with checkpoint_signer_wipe when done. */
typedef struct checkpoint_signer {
    checkpoint_verifier verifier;
    uint8_t secret_key[64];
} checkpoint_signer;

/* ------------------------------------------------------------------------ */
/* Keys                                                                     */

/* The C2SP key id of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || pk)[:4]. */
uint32_t checkpoint_key_id(const char *name, const uint8_t public_key[CHECKPOINT_PUBLIC_KEY]);

/* A signer from a 32-byte seed (deterministic) or a fresh random one.
 * KABAR_INVALID_ARGUMENT when the name is not a valid key name (empty,
 * longer than CHECKPOINT_NAME_MAX, not UTF-8, with a space, a control
 * character or a '+'). */
int checkpoint_signer_from_seed(checkpoint_signer *s, const char *name,
                                const uint8_t seed[CHECKPOINT_SEED], kabar_error *err);
int checkpoint_signer_generate(checkpoint_signer *s, const char *name, kabar_error *err);
/* Zero the secret key (and the rest of *s). */
void checkpoint_signer_wipe(checkpoint_signer *s);

/* Write the verifier key text (no newline) into out; returns its length. */
size_t checkpoint_verifier_format(const checkpoint_verifier *v, char out[CHECKPOINT_VKEY_MAX]);
/* Read a verifier key text (surrounding whitespace ignored); checks that
 * the key id matches the name and key. */
int checkpoint_verifier_parse(checkpoint_verifier *v, const char *text, size_t len,
                              kabar_error *err);

/* Write the signer key text (no newline) into out; returns its length. It
 * is a secret: write it to a file only the broker can read. */
size_t checkpoint_signer_format(const checkpoint_signer *s, char out[CHECKPOINT_SKEY_MAX]);
/* Read a signer key text (surrounding whitespace ignored). */
int checkpoint_signer_parse(checkpoint_signer *s, const char *text, size_t len, kabar_error *err);

/* ------------------------------------------------------------------------ */
/* Checkpoints                                                              */

/* Append the checkpoint's note text (origin, size, root, extensions) to
 * out. KABAR_INVALID_ARGUMENT when it cannot be written as a checkpoint. */
int checkpoint_format(const checkpoint *c, kabar_buf *out, kabar_error *err);

/* Append the signed note (text, blank line, signature line) to out.
 * KABAR_INVALID_ARGUMENT when the signer's name is not the origin. */
int checkpoint_sign(const checkpoint *c, const checkpoint_signer *s, kabar_buf *out,
                    kabar_error *err);

/*
 * Verify the signed note [note, note+len) against v and read its
 * checkpoint into *c (set only on success). The note must be a valid C2SP
 * signed note, carry a signature line by v (same name and key id) whose
 * signature verifies, no signature by v that fails, and its origin must be
 * v's name. Signatures by other keys (witnesses, a previous key) are
 * ignored, as C2SP requires. KABAR_BAD_VALUE otherwise, saying why.
 */
int checkpoint_open(checkpoint *c, const char *note, size_t len, const checkpoint_verifier *v,
                    kabar_error *err);

/*
 * Read a checkpoint note TEXT (no signatures) into *c. Nothing is verified:
 * use it only on text whose signature was checked, or to show what an
 * unverified note claims.
 */
int checkpoint_parse(checkpoint *c, const char *text, size_t len, kabar_error *err);

#endif
