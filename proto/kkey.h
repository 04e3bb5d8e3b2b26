/*
 * kkey.h - a principal's identity key: one Ed25519 keypair per agency,
 * auditor or operator (libsodium), whose Curve25519 form is also its
 * ZeroMQ CURVE transport key, so that a principal manages one key, not two.
 *
 * Text forms (proto/PROTOCOL.md "Principals and roles"):
 *
 *   public key  "ed25519:" + standard base64, with padding, of the 32
 *               bytes (44 characters):
 *                   ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=
 *   key id      lowercase hex of the first 8 bytes of SHA-256(public key):
 *               16 characters, used in logs and in the ZAP User-Id
 *               "AGENCY/KEYID"
 *   secret key  a text file of mode 0600:
 *                   # kabar secret key: keep it private; whoever holds it speaks for its owner.
 *                   # public key: ed25519:...
 *                   ed25519-secret:BASE64(32-byte seed)
 *               Blank lines and lines starting with '#' are ignored; there
 *               must be exactly one "ed25519-secret:" line. The public key
 *               comment is for people; the key is derived from the seed.
 *   FILE.pub    the public key text and a newline, written beside FILE.
 *
 * A kkey holds secret material: kkey_wipe it when done. Functions that can
 * fail return 0 or a kabar_err code with a message a person can act on.
 */
#ifndef KABAR_KKEY_H
#define KABAR_KKEY_H

#include <stdbool.h>
#include <stdint.h>

#include "kabar.h"

#define KKEY_PUBLIC   32
#define KKEY_TEXT_MAX 53 /* "ed25519:" + 44 + NUL */
#define KKEY_ID_TEXT  17 /* 16 hex + NUL */

typedef struct kkey {
    uint8_t pk[32], sk[64]; /* Ed25519 (libsodium forms: sk = seed || pk) */
    uint8_t curve_pk[32], curve_sk[32];
} kkey;

/* A fresh random key. KABAR_IO only if libsodium cannot initialise. */
int kkey_generate(kkey *k, kabar_error *err);
/* The key of a 32-byte seed (RFC 8032 secret key); deterministic. */
int kkey_from_seed(kkey *k, const uint8_t seed[32], kabar_error *err);
/* Zero the key's bytes (sodium_memzero). Accepts NULL. */
void kkey_wipe(kkey *k);

/*
 * Write the secret key file `path` (mode 0600, fsync'd) and `path`.pub
 * (mode 0644). Without `overwrite` an existing `path` is an error
 * (KABAR_IO, "... exists (pass --force to replace it)"); with it the file
 * is replaced atomically (a temporary file renamed over it). The .pub file
 * is always (re)written. KABAR_IO with the path and the system's reason.
 */
int kkey_save(const kkey *k, const char *path, bool overwrite, kabar_error *err);

/*
 * Read a secret key file. Refused (KABAR_IO) when group or other have any
 * permission on it: the message says "chmod 600 FILE". KABAR_BAD_VALUE
 * (naming the file and line) when it is not a key file.
 */
int kkey_load(kkey *k, const char *path, kabar_error *err);

/* "ed25519:BASE64" (52 characters + NUL). */
void kkey_public_text(const uint8_t pk[32], char out[KKEY_TEXT_MAX]);

/*
 * A public key from its text form, or from a file holding it: a .pub file
 * (its first line that is not blank or a comment), or a secret key file
 * (whose public key is derived; the file must be private as for
 * kkey_load). KABAR_BAD_VALUE when `text_or_path` is neither, with the
 * reason; the key must also be a valid Ed25519 point.
 */
int kkey_public_parse(uint8_t pk[32], const char *text_or_path, kabar_error *err);

/* The 16-hex key id of a public key. */
void kkey_id_text(const uint8_t pk[32], char out[KKEY_ID_TEXT]);

/*
 * A client's identity, as the daemons take it from --key and --server-key:
 * load the secret key file `key_path` into *k and parse the broker's public
 * key `server_key` (text or file) into server_pk. On failure *k is wiped
 * and err's message starts with the option at fault ("--key: ...",
 * "--server-key: ...").
 */
int kkey_load_identity(kkey *k, uint8_t server_pk[KKEY_PUBLIC], const char *key_path,
                       const char *server_key, kabar_error *err);

/* The Curve25519 (CURVE transport) form of an Ed25519 public key;
 * KABAR_BAD_VALUE when it is not a valid Ed25519 point. */
int kkey_curve_public(const uint8_t ed_pk[32], uint8_t curve_pk[32], kabar_error *err);

/*
 * The registry's rule for a key's validity: valid at instant t (ns) iff
 * valid_from <= t < revoked_at (INT64_MAX while it is not revoked). The
 * broker admits and checks signatures by it, and auditors re-check
 * events against it at their received_at.
 */
static inline bool kkey_valid_at(int64_t valid_from, int64_t revoked_at, int64_t t)
{
    return valid_from <= t && t < revoked_at;
}

#endif /* KABAR_KKEY_H */
