/*
 * checkpoint.c - C2SP tlog-checkpoint notes with C2SP signed-note Ed25519
 * signatures, and the text forms of their keys.
 *
 * Design notes. Everything read here may come from anyone (an auditor is
 * handed a checkpoint by the party it audits), so parsing is strict and
 * total: the whole note must be valid UTF-8 without control characters
 * other than newline, base64 must be canonical (the one encoding that
 * re-encodes to the same text), numbers have no leading zeros, and a
 * result is written only when everything held. The signature is checked
 * before the checkpoint text is read, as the signed-note spec asks.
 *
 * Byte layout of a signed checkpoint (see docs/MERKLE.md):
 *
 *     ORIGIN \n SIZE \n BASE64(ROOT) \n [EXTENSION \n]...   <- note text, signed
 *     \n                                                    <- the blank line
 *     E2 80 94 20 NAME 20 BASE64(KEYID[4] BE || SIG[64]) \n <- one per signer
 */
#include <ctype.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "checkpoint.h"

#define EM_DASH_SP     "\xe2\x80\x94 " /* U+2014 and a space: starts a signature line */
#define EM_DASH_SP_LEN 4
#define ALG_ED25519    0x01
#define SIG_BYTES      64
#define B64_MAX_32     45 /* base64 of 32 or 33 bytes, with NUL */

/* ------------------------------------------------------------------------ */
/* Text checks                                                              */

/* Decode one UTF-8 scalar value at p (n > 0 bytes); its length, or 0 when
 * the bytes are not valid UTF-8 (overlong, surrogate, beyond U+10FFFF). */
static size_t utf8_next(const unsigned char *p, size_t n, uint32_t *cp)
{
    if (p[0] < 0x80) {
        *cp = p[0];
        return 1;
    }
    size_t len = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc0 ? 2 : 0;
    if (len == 0 || p[0] > 0xf4 || len > n)
        return 0;
    uint32_t c = p[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (p[i] & 0x3f);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min[len] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}

/* Unicode White_Space (what Go's unicode.IsSpace tests; C2SP: no spaces in
 * key names). */
static bool is_space(uint32_t c)
{
    return c == ' ' || (c >= 0x09 && c <= 0x0d) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
           c == 0x205f || c == 0x3000;
}

/*
 * Check that [s, s+n) is UTF-8 without control characters (below U+0020),
 * a newline allowed only when `lines`; a name also refuses spaces and '+'.
 * Returns NULL when it is fine, else what is wrong, with *at its offset.
 */
static const char *text_problem(const char *s, size_t n, bool lines, bool name, size_t *at)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint32_t c = 0;
        size_t len = utf8_next(p + i, n - i, &c);
        *at = i;
        if (len == 0)
            return "is not valid UTF-8";
        if (c == '\n' && !lines)
            return "has a newline";
        if (c < 0x20 && c != '\n')
            return "has a control character";
        if (name && is_space(c))
            return "has a space";
        if (name && c == '+')
            return "has a '+'";
        i += len;
    }
    return NULL;
}

static int check_name(const char *what, const char *s, size_t n, int code, kabar_error *err)
{
    size_t at = 0;
    const char *why = n == 0 ? "is empty" : n > CHECKPOINT_NAME_MAX ? "is too long" : NULL;
    if (!why)
        why = text_problem(s, n, false, true, &at);
    if (why)
        return kabar_error_set(err, code,
                               "checkpoint: %s \"%.*s\" %s (at byte %zu); a key name is "
                               "1-%d bytes of UTF-8 without spaces, control characters or '+', "
                               "such as example.go.id/log",
                               what, (int)(n > 64 ? 64 : n), s, why, at, CHECKPOINT_NAME_MAX);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Base64 (RFC 4648 section 4, padded), canonical only                      */

/* Decode [s, s+n) into out (cap bytes); the decoded length, or -1 when the
 * text is not the canonical base64 of at most cap bytes. */
static long b64_decode(const char *s, size_t n, uint8_t *out, size_t cap)
{
    size_t len = 0;
    const char *end = NULL;
    if (n == 0 || n % 4 != 0 ||
        sodium_base642bin(out, cap, s, n, NULL, &len, &end, sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != s + n)
        return -1;
    char *again = malloc(n + 1);
    if (!again)
        return -1;
    sodium_bin2base64(again, n + 1, out, len, sodium_base64_VARIANT_ORIGINAL);
    bool same = strlen(again) == n && memcmp(again, s, n) == 0;
    free(again);
    return same ? (long)len : -1;
}

static void b64_encode(char *out, size_t cap, const uint8_t *bin, size_t len)
{
    sodium_bin2base64(out, cap, bin, len, sodium_base64_VARIANT_ORIGINAL);
}

/* ------------------------------------------------------------------------ */
/* Keys                                                                     */

uint32_t checkpoint_key_id(const char *name, const uint8_t public_key[CHECKPOINT_PUBLIC_KEY])
{
    static const uint8_t sep[2] = {'\n', ALG_ED25519};
    uint8_t h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, (const uint8_t *)name, strlen(name));
    crypto_hash_sha256_update(&st, sep, sizeof(sep));
    crypto_hash_sha256_update(&st, public_key, CHECKPOINT_PUBLIC_KEY);
    crypto_hash_sha256_final(&st, h);
    return (uint32_t)h[0] << 24 | (uint32_t)h[1] << 16 | (uint32_t)h[2] << 8 | h[3];
}

int checkpoint_signer_from_seed(checkpoint_signer *s, const char *name,
                                const uint8_t seed[CHECKPOINT_SEED], kabar_error *err)
{
    int rc = check_name("key name", name, strlen(name), KABAR_INVALID_ARGUMENT, err);
    if (rc != 0)
        return rc;
    if (sodium_init() < 0)
        return kabar_error_set(err, KABAR_IO, "checkpoint: libsodium cannot initialise");
    memset(s, 0, sizeof(*s));
    crypto_sign_seed_keypair(s->verifier.public_key, s->secret_key, seed);
    memcpy(s->verifier.name, name, strlen(name) + 1);
    s->verifier.key_id = checkpoint_key_id(name, s->verifier.public_key);
    return 0;
}

int checkpoint_signer_generate(checkpoint_signer *s, const char *name, kabar_error *err)
{
    uint8_t seed[CHECKPOINT_SEED];
    if (sodium_init() < 0)
        return kabar_error_set(err, KABAR_IO, "checkpoint: libsodium cannot initialise");
    randombytes_buf(seed, sizeof(seed));
    int rc = checkpoint_signer_from_seed(s, name, seed, err);
    sodium_memzero(seed, sizeof(seed));
    return rc;
}

void checkpoint_signer_wipe(checkpoint_signer *s)
{
    if (s)
        sodium_memzero(s, sizeof(*s));
}

/* NAME+KEYID+base64(0x01 || key) into out; its length. */
static size_t key_format(char *out, size_t cap, const char *prefix, const char *name,
                         uint32_t key_id, const uint8_t key[32])
{
    uint8_t typed[33];
    char b64[B64_MAX_32];
    typed[0] = ALG_ED25519;
    memcpy(typed + 1, key, 32);
    b64_encode(b64, sizeof(b64), typed, sizeof(typed));
    sodium_memzero(typed, sizeof(typed));
    int n = snprintf(out, cap, "%s%s+%08" PRIx32 "+%s", prefix, name, key_id, b64);
    sodium_memzero(b64, sizeof(b64));
    return n < 0 ? 0 : (size_t)n;
}

size_t checkpoint_verifier_format(const checkpoint_verifier *v, char out[CHECKPOINT_VKEY_MAX])
{
    return key_format(out, CHECKPOINT_VKEY_MAX, "", v->name, v->key_id, v->public_key);
}

size_t checkpoint_signer_format(const checkpoint_signer *s, char out[CHECKPOINT_SKEY_MAX])
{
    uint8_t seed[CHECKPOINT_SEED];
    crypto_sign_ed25519_sk_to_seed(seed, s->secret_key);
    size_t n = key_format(out, CHECKPOINT_SKEY_MAX, "PRIVATE+KEY+", s->verifier.name,
                          s->verifier.key_id, seed);
    sodium_memzero(seed, sizeof(seed));
    return n;
}

/*
 * Split NAME+KEYID+BASE64 (text already trimmed, NUL-terminated) into the
 * name (copied to name), the key id and the 32 key bytes after the 0x01.
 */
static int key_parse(const char *what, const char *text, char name[CHECKPOINT_NAME_MAX + 1],
                     uint32_t *key_id, uint8_t key[32], kabar_error *err)
{
    const char *plus = strchr(text, '+');
    size_t nlen = plus ? (size_t)(plus - text) : 0;
    int rc;
    if (!plus || strlen(plus) < 10 || plus[9] != '+')
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "checkpoint: not a %s (expected NAME+KEYID+KEY, KEYID 8 hex "
                               "digits)",
                               what);
    if ((rc = check_name("key name", text, nlen, KABAR_BAD_VALUE, err)) != 0)
        return rc;
    uint32_t id = 0;
    for (int i = 1; i <= 8; i++) {
        int c = (unsigned char)plus[i];
        if (!isxdigit(c))
            return kabar_error_set(err, KABAR_BAD_VALUE,
                                   "checkpoint: %s: the key id \"%.8s\" is not 8 hex digits", what,
                                   plus + 1);
        id = id << 4 | (uint32_t)(isdigit(c) ? c - '0' : tolower(c) - 'a' + 10);
    }
    uint8_t typed[33];
    long n = b64_decode(plus + 10, strlen(plus + 10), typed, sizeof(typed));
    if (n != 33 || typed[0] != ALG_ED25519) {
        sodium_memzero(typed, sizeof(typed));
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "checkpoint: %s: the key is not base64 of 0x01 and a 32-byte "
                               "Ed25519 key (kabar uses Ed25519 keys only)",
                               what);
    }
    memcpy(name, text, nlen);
    name[nlen] = '\0';
    *key_id = id;
    memcpy(key, typed + 1, 32);
    sodium_memzero(typed, sizeof(typed));
    return 0;
}

/* Copy [text, text+len) without surrounding whitespace into a NUL-terminated buf. */
static int trim_copy(const char *what, const char *text, size_t len, char *buf, size_t cap,
                     kabar_error *err)
{
    while (len > 0 && isspace((unsigned char)text[0]))
        text++, len--;
    while (len > 0 && isspace((unsigned char)text[len - 1]))
        len--;
    if (len == 0 || len >= cap || memchr(text, '\0', len))
        return kabar_error_set(err, KABAR_BAD_VALUE, "checkpoint: not a %s (%s)", what,
                               len == 0     ? "empty"
                               : len >= cap ? "too long"
                                            : "has a NUL byte");
    memcpy(buf, text, len);
    buf[len] = '\0';
    return 0;
}

static int id_mismatch(kabar_error *err, const char *what, uint32_t id, uint32_t want)
{
    return kabar_error_set(err, KABAR_BAD_VALUE,
                           "checkpoint: %s: key id %08" PRIx32 " does not match its name and key "
                           "(%08" PRIx32 "): the text was mistyped or changed",
                           what, id, want);
}

int checkpoint_verifier_parse(checkpoint_verifier *v, const char *text, size_t len,
                              kabar_error *err)
{
    static const char what[] = "verifier key";
    char buf[CHECKPOINT_VKEY_MAX];
    checkpoint_verifier t;
    int rc;
    memset(&t, 0, sizeof(t)); /* whole structs compare and copy cleanly */
    if ((rc = trim_copy(what, text, len, buf, sizeof(buf), err)) != 0 ||
        (rc = key_parse(what, buf, t.name, &t.key_id, t.public_key, err)) != 0)
        return rc;
    uint32_t want = checkpoint_key_id(t.name, t.public_key);
    if (t.key_id != want)
        return id_mismatch(err, what, t.key_id, want);
    *v = t;
    return 0;
}

int checkpoint_signer_parse(checkpoint_signer *s, const char *text, size_t len, kabar_error *err)
{
    static const char what[] = "signer key";
    char buf[CHECKPOINT_SKEY_MAX];
    char name[CHECKPOINT_NAME_MAX + 1];
    uint8_t seed[CHECKPOINT_SEED];
    uint32_t id = 0;
    int rc = trim_copy(what, text, len, buf, sizeof(buf), err);
    if (rc == 0 && strncmp(buf, "PRIVATE+KEY+", 12) != 0)
        rc = kabar_error_set(err, KABAR_BAD_VALUE,
                             "checkpoint: not a signer key (expected PRIVATE+KEY+NAME+KEYID+KEY)");
    if (rc == 0)
        rc = key_parse(what, buf + 12, name, &id, seed, err);
    sodium_memzero(buf, sizeof(buf));
    if (rc != 0)
        return rc;
    checkpoint_signer t;
    rc = checkpoint_signer_from_seed(&t, name, seed, err);
    sodium_memzero(seed, sizeof(seed));
    if (rc == 0 && t.verifier.key_id != id)
        rc = id_mismatch(err, what, id, t.verifier.key_id);
    if (rc == 0)
        *s = t;
    checkpoint_signer_wipe(&t);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The checkpoint text                                                      */

/* Extension lines: "" or non-empty lines each ending in '\n'. */
static int check_extensions(const char *ext, kabar_error *err)
{
    size_t n = strlen(ext), at = 0;
    const char *why = text_problem(ext, n, true, false, &at);
    const char *empty = n > 0 && ext[0] == '\n' ? ext : strstr(ext, "\n\n");
    if (!why && n > 0 && ext[n - 1] != '\n') {
        why = "do not end in a newline";
        at = n;
    } else if (!why && empty) {
        why = "have an empty line";
        at = (size_t)(empty - ext);
    }
    if (why)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "checkpoint: the extension lines %s (at byte %zu)", why, at);
    return 0;
}

int checkpoint_format(const checkpoint *c, kabar_buf *out, kabar_error *err)
{
    size_t olen = strnlen(c->origin, sizeof(c->origin)), at = 0;
    const char *why = olen == 0 ? "is empty"
                      : olen == sizeof(c->origin)
                          ? "is not NUL-terminated"
                          : text_problem(c->origin, olen, false, false, &at);
    if (why)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "checkpoint: the origin %s (at byte %zu)", why, at);
    if (strnlen(c->extensions, sizeof(c->extensions)) == sizeof(c->extensions))
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "checkpoint: the extension lines are not NUL-terminated");
    int rc = check_extensions(c->extensions, err);
    if (rc != 0)
        return rc;
    char root[B64_MAX_32], size[24];
    b64_encode(root, sizeof(root), c->root, MERKLE_HASH_SIZE);
    snprintf(size, sizeof(size), "%" PRIu64 "\n", c->size);
    size_t start = out->len;
    if (kabar_buf_append(out, c->origin, olen) || kabar_buf_append(out, "\n", 1) ||
        kabar_buf_append(out, size, strlen(size)) || kabar_buf_append(out, root, strlen(root)) ||
        kabar_buf_append(out, "\n", 1) ||
        kabar_buf_append(out, c->extensions, strlen(c->extensions))) {
        out->len = start;
        return kabar_error_set(err, KABAR_NO_MEMORY, "checkpoint: out of memory");
    }
    return 0;
}

/* One line [p, p+n) (without its newline) as a decimal tree size. */
static bool parse_size(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 20 || (p[0] == '0' && n > 1))
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        uint64_t d = (uint64_t)(p[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

static int bad_text(kabar_error *err, int line, const char *why)
{
    return kabar_error_set(err, KABAR_BAD_VALUE, "checkpoint: line %d of the note text %s", line,
                           why);
}

int checkpoint_parse(checkpoint *c, const char *text, size_t len, kabar_error *err)
{
    size_t at = 0;
    const char *why = text_problem(text, len, true, false, &at);
    if (why)
        return kabar_error_set(err, KABAR_BAD_VALUE, "checkpoint: the note text %s (at byte %zu)",
                               why, at);
    if (len == 0 || text[len - 1] != '\n')
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "checkpoint: the note text does not end in a newline");
    checkpoint t;
    memset(&t, 0, sizeof(t));
    const char *p = text, *end = text + len;
    int line = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)(nl - p);
        line++;
        if (n == 0)
            return bad_text(err, line, "is empty (a checkpoint has no empty lines)");
        if (line == 1) {
            if (n > CHECKPOINT_NAME_MAX)
                return bad_text(err, line, "(the origin) is too long");
            memcpy(t.origin, p, n);
        } else if (line == 2) {
            if (!parse_size(p, n, &t.size))
                return bad_text(err, line, "is not a tree size (decimal, no leading zeros)");
        } else if (line == 3) {
            if (b64_decode(p, n, t.root, sizeof(t.root)) != MERKLE_HASH_SIZE)
                return bad_text(err, line, "is not the base64 of a 32-byte root hash");
        } else {
            size_t used = strlen(t.extensions);
            if (used + n + 1 > CHECKPOINT_EXT_MAX)
                return bad_text(err, line, "makes the extension lines too long");
            memcpy(t.extensions + used, p, n + 1);
        }
        p = nl + 1;
    }
    if (line < 3)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "checkpoint: the note text has %d line(s); a checkpoint has at "
                               "least three (origin, tree size, root hash)",
                               line);
    *c = t;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Signed notes                                                             */

int checkpoint_sign(const checkpoint *c, const checkpoint_signer *s, kabar_buf *out,
                    kabar_error *err)
{
    if (strcmp(s->verifier.name, c->origin) != 0)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "checkpoint: the key \"%s\" cannot sign a checkpoint of \"%.*s\"; "
                               "kabar signs with the key named like the log's origin",
                               s->verifier.name, CHECKPOINT_NAME_MAX, c->origin);
    size_t start = out->len;
    int rc = checkpoint_format(c, out, err);
    if (rc != 0)
        return rc;
    uint8_t sig[4 + SIG_BYTES];
    uint32_t id = s->verifier.key_id;
    sig[0] = (uint8_t)(id >> 24), sig[1] = (uint8_t)(id >> 16);
    sig[2] = (uint8_t)(id >> 8), sig[3] = (uint8_t)id;
    crypto_sign_detached(sig + 4, NULL, (const uint8_t *)out->data + start, out->len - start,
                         s->secret_key);
    char b64[sodium_base64_ENCODED_LEN(sizeof(sig), sodium_base64_VARIANT_ORIGINAL)];
    b64_encode(b64, sizeof(b64), sig, sizeof(sig));
    const char *name = s->verifier.name;
    if (kabar_buf_append(out, "\n" EM_DASH_SP, 1 + EM_DASH_SP_LEN) ||
        kabar_buf_append(out, name, strlen(name)) || kabar_buf_append(out, " ", 1) ||
        kabar_buf_append(out, b64, strlen(b64)) || kabar_buf_append(out, "\n", 1)) {
        out->len = start;
        return kabar_error_set(err, KABAR_NO_MEMORY, "checkpoint: out of memory");
    }
    return 0;
}

/* What the signature lines held for one verifier. */
typedef struct sig_scan {
    int lines, ours_ok;
} sig_scan;

/* Check one signature line [p, p+n) (no newline); verify it when it is v's. */
static int check_sig_line(const char *p, size_t n, const char *text, size_t text_len,
                          const checkpoint_verifier *v, uint8_t *scratch, sig_scan *scan,
                          kabar_error *err)
{
    int line = scan->lines;
    const char *sp =
        n > EM_DASH_SP_LEN ? memchr(p + EM_DASH_SP_LEN, ' ', n - EM_DASH_SP_LEN) : NULL;
    if (!sp || memcmp(p, EM_DASH_SP, EM_DASH_SP_LEN) != 0)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "checkpoint: signature line %d is not \"\xe2\x80\x94 NAME "
                               "SIGNATURE\" (it must start with U+2014 EM DASH and a space)",
                               line);
    const char *name = p + EM_DASH_SP_LEN, *b64 = sp + 1;
    size_t name_len = (size_t)(sp - name), b64_len = (size_t)(p + n - b64);
    int rc = check_name("signature key name", name, name_len, KABAR_BAD_VALUE, err);
    if (rc != 0)
        return rc;
    long len = b64_decode(b64, b64_len, scratch, b64_len);
    if (len < 5)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "checkpoint: signature line %d: the signature is not canonical "
                               "base64 of a key id and a signature",
                               line);
    uint32_t id = (uint32_t)scratch[0] << 24 | (uint32_t)scratch[1] << 16 |
                  (uint32_t)scratch[2] << 8 | scratch[3];
    if (name_len != strlen(v->name) || memcmp(name, v->name, name_len) != 0 || id != v->key_id)
        return 0; /* another key's: ignored, as C2SP requires */
    if (len != 4 + SIG_BYTES ||
        crypto_sign_verify_detached(scratch + 4, (const uint8_t *)text, text_len, v->public_key))
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "checkpoint: the signature by %s (key id %08" PRIx32
                               ") does not verify: the checkpoint was changed after it was "
                               "signed, or signed by a different key with the same name",
                               v->name, v->key_id);
    scan->ours_ok++;
    return 0;
}

/* Check every signature line of [sigs, sigs+n); n > 0, ends in '\n'. */
static int check_sigs(const char *sigs, size_t n, const char *text, size_t text_len,
                      const checkpoint_verifier *v, kabar_error *err)
{
    uint8_t *scratch = malloc(n);
    if (!scratch)
        return kabar_error_set(err, KABAR_NO_MEMORY, "checkpoint: out of memory");
    sig_scan scan = {0, 0};
    int rc = 0;
    for (const char *p = sigs, *end = sigs + n; p < end && rc == 0;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (++scan.lines > CHECKPOINT_MAX_SIGNATURES)
            rc = kabar_error_set(err, KABAR_BAD_VALUE,
                                 "checkpoint: the note has more than %d signatures",
                                 CHECKPOINT_MAX_SIGNATURES);
        else
            rc = check_sig_line(p, (size_t)(nl - p), text, text_len, v, scratch, &scan, err);
        p = nl + 1;
    }
    free(scratch);
    if (rc == 0 && scan.ours_ok == 0)
        rc = kabar_error_set(err, KABAR_BAD_VALUE,
                             "checkpoint: the note is not signed by %s (key id %08" PRIx32
                             "); its %d signature(s) are by other keys",
                             v->name, v->key_id, scan.lines);
    return rc;
}

int checkpoint_open(checkpoint *c, const char *note, size_t len, const checkpoint_verifier *v,
                    kabar_error *err)
{
    size_t at = 0;
    if (len > CHECKPOINT_NOTE_MAX)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "checkpoint: the note is %zu bytes, more than the %d accepted", len,
                               CHECKPOINT_NOTE_MAX);
    const char *why = text_problem(note, len, true, false, &at);
    if (why)
        return kabar_error_set(err, KABAR_BAD_VALUE, "checkpoint: the note %s (at byte %zu)", why,
                               at);
    /* The text ends at the last blank line; signature lines follow it. */
    size_t split = len;
    for (size_t i = len; i-- > 1;) {
        if (note[i] == '\n' && note[i - 1] == '\n') {
            split = i - 1;
            break;
        }
    }
    if (split == len || split + 2 >= len || note[len - 1] != '\n')
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "checkpoint: not a signed note (expected the text, a blank line "
                               "and signature lines, each ending in a newline)");
    int rc = check_sigs(note + split + 2, len - split - 2, note, split + 1, v, err);
    if (rc != 0)
        return rc;
    checkpoint t;
    if ((rc = checkpoint_parse(&t, note, split + 1, err)) != 0)
        return rc;
    if (strcmp(t.origin, v->name) != 0)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "checkpoint: the note is a checkpoint of \"%s\", not of \"%s\"",
                               t.origin, v->name);
    *c = t;
    return 0;
}
