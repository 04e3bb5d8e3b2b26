/*
 * audit_proof.c - proof formats, range proofs, the log key (audit_proof.h).
 */
#include "audit_proof.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <jansson.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audit_log.h"
#include "kkey.h"

int audit_error_wrap(kabar_error *err, int code, const char *fmt, ...)
{
    if (err == NULL)
        return code;
    char old[KABAR_ERROR_MESSAGE_MAX], pre[KABAR_ERROR_MESSAGE_MAX];
    memcpy(old, err->message, sizeof old);
    old[sizeof old - 1] = '\0';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    return kabar_error_set(err, code, "%s: %s", pre, old);
}

/* ------------------------------------------------------------------------ */
/* base64                                                                   */

void audit_b64(const void *p, size_t n, char *out, size_t outsz)
{
    sodium_bin2base64(out, outsz, p, n, sodium_base64_VARIANT_ORIGINAL);
}

int audit_b64_append(kabar_buf *b, const void *p, size_t n)
{
    size_t m = sodium_base64_encoded_len(n, sodium_base64_VARIANT_ORIGINAL);
    char *tmp = malloc(m);
    if (tmp == NULL)
        return KABAR_NO_MEMORY;
    sodium_bin2base64(tmp, m, p, n, sodium_base64_VARIANT_ORIGINAL);
    int rc = kabar_buf_append(b, tmp, m - 1);
    free(tmp);
    return rc ? KABAR_NO_MEMORY : 0;
}

int audit_unb64(const char *s, size_t len, uint8_t *out, size_t want, kabar_error *err)
{
    size_t got = 0;
    const char *end = NULL;
    if (sodium_base642bin(out, want, s, len, NULL, &got, &end, sodium_base64_VARIANT_ORIGINAL) !=
            0 ||
        end != s + len || got != want)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "\"%.*s\" is not %zu bytes in standard base64 with padding",
                               (int)(len > 60 ? 60 : len), s, want);
    return 0;
}

int audit_unb64_buf(const char *s, size_t len, kabar_buf *b, kabar_error *err)
{
    size_t cap = len / 4 * 3 + 3, got = 0;
    const char *end = NULL;
    b->len = 0;
    if (kabar_buf_append(b, NULL, 0) != 0)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    char *tmp = malloc(cap ? cap : 1);
    if (tmp == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    if (sodium_base642bin((unsigned char *)tmp, cap, s, len, NULL, &got, &end,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        end != s + len) {
        free(tmp);
        return kabar_error_set(err, KABAR_BAD_VALUE, "a value is not standard base64");
    }
    int rc = kabar_buf_append(b, tmp, got);
    free(tmp);
    return rc ? kabar_error_set(err, KABAR_NO_MEMORY, "out of memory") : 0;
}

/* ------------------------------------------------------------------------ */
/* Hash lists                                                               */

int audit_hashes_push(audit_hashes *a, const uint8_t h[32])
{
    if (a->len == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 16;
        void *p = realloc(a->h, cap * 32);
        if (p == NULL)
            return KABAR_NO_MEMORY;
        a->h = p;
        a->cap = cap;
    }
    memcpy(a->h[a->len++], h, 32);
    return 0;
}

void audit_hashes_free(audit_hashes *a)
{
    free(a->h);
    memset(a, 0, sizeof *a);
}

/* ------------------------------------------------------------------------ */
/* Trees                                                                    */

static uint64_t split(uint64_t n) /* the largest power of two < n, n >= 2 */
{
    uint64_t k = 1;
    while (k < n - k)
        k <<= 1;
    return k;
}

void audit_mth(const uint8_t (*leaves)[32], uint64_t n, uint8_t out[32])
{
    if (n == 1) {
        memcpy(out, leaves[0], 32);
        return;
    }
    uint64_t k = split(n);
    uint8_t l[32], r[32];
    audit_mth(leaves, k, l);
    audit_mth(leaves + k, n - k, r);
    merkle_node_hash(l, r, out);
}

int audit_path_root(uint64_t index, uint64_t size, const uint8_t leaf[32],
                    const merkle_proof *proof, uint8_t root[32], kabar_error *err)
{
    if (index >= size)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "leaf %" PRIu64 " is not in a tree of %" PRIu64, index, size);
    uint64_t fn = index, sn = size - 1;
    uint8_t r[32];
    memcpy(r, leaf, 32);
    for (size_t i = 0; i < proof->len; i++) {
        if (sn == 0)
            return kabar_error_set(err, KABAR_BAD_VALUE,
                                   "the path is longer than the tree is deep");
        if ((fn & 1) || fn == sn) {
            merkle_node_hash(proof->hash[i], r, r);
            if (!(fn & 1))
                while (fn != 0 && !(fn & 1)) {
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
        return kabar_error_set(err, KABAR_BAD_VALUE, "the path is shorter than the tree is deep");
    memcpy(root, r, 32);
    return 0;
}

typedef struct range_gen {
    uint64_t lo, hi;
    const merkle_proof *plo, *phi;
    audit_hashes *out;
    kabar_error *err;
} range_gen;

static int range_gen_rec(range_gen *g, uint64_t a, uint64_t b, size_t depth)
{
    if (b <= g->lo || a > g->hi) {
        const merkle_proof *p = b <= g->lo ? g->plo : g->phi;
        if (depth == 0 || depth > p->len)
            return kabar_error_set(g->err, KABAR_BAD_VALUE,
                                   "an inclusion path is too short for the range proof");
        if (audit_hashes_push(g->out, p->hash[p->len - depth]) != 0)
            return kabar_error_set(g->err, KABAR_NO_MEMORY, "out of memory");
        return 0;
    }
    if (g->lo <= a && b - 1 <= g->hi)
        return 0;
    uint64_t k = split(b - a);
    int rc = range_gen_rec(g, a, a + k, depth + 1);
    return rc ? rc : range_gen_rec(g, a + k, b, depth + 1);
}

int audit_range_from_paths(uint64_t lo, uint64_t hi, uint64_t size, const merkle_proof *path_lo,
                           const merkle_proof *path_hi, audit_hashes *out, kabar_error *err)
{
    if (lo > hi || hi >= size)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "range [%" PRIu64 ", %" PRIu64 "] is not in a tree of %" PRIu64, lo,
                               hi, size);
    range_gen g = {lo, hi, path_lo, path_hi, out, err};
    return range_gen_rec(&g, 0, size, 0);
}

typedef struct range_chk {
    uint64_t lo, hi;
    const uint8_t (*leaves)[32];
    const audit_hashes *proof;
    size_t used;
    kabar_error *err;
} range_chk;

static int range_chk_rec(range_chk *c, uint64_t a, uint64_t b, uint8_t out[32])
{
    if (b <= c->lo || a > c->hi) {
        if (c->used >= c->proof->len)
            return kabar_error_set(c->err, KABAR_BAD_VALUE,
                                   "the range proof has too few hashes for the range");
        memcpy(out, c->proof->h[c->used++], 32);
        return 0;
    }
    if (c->lo <= a && b - 1 <= c->hi) {
        audit_mth(c->leaves + (a - c->lo), b - a, out);
        return 0;
    }
    uint64_t k = split(b - a);
    uint8_t l[32], r[32];
    int rc = range_chk_rec(c, a, a + k, l);
    if (rc == 0)
        rc = range_chk_rec(c, a + k, b, r);
    if (rc == 0)
        merkle_node_hash(l, r, out);
    return rc;
}

int audit_range_root(uint64_t lo, uint64_t hi, uint64_t size, const uint8_t (*leaves)[32],
                     const audit_hashes *proof, uint8_t root[32], kabar_error *err)
{
    if (lo > hi || hi >= size)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "range [%" PRIu64 ", %" PRIu64 "] is not in a tree of %" PRIu64, lo,
                               hi, size);
    range_chk c = {lo, hi, leaves, proof, 0, err};
    int rc = range_chk_rec(&c, 0, size, root);
    if (rc == 0 && c.used != proof->len)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "the range proof has %zu hashes, the range needs %zu", proof->len,
                               c.used);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Keys and checkpoints                                                     */

static void trim(const char **s, size_t *n)
{
    while (*n > 0 && isspace((unsigned char)**s)) {
        (*s)++;
        (*n)--;
    }
    while (*n > 0 && isspace((unsigned char)(*s)[*n - 1]))
        (*n)--;
}

int audit_log_key_load(checkpoint_verifier *v, const char *spec, const char *origin,
                       kabar_error *err)
{
    kabar_buf file = {0};
    const char *text = spec;
    size_t n = strlen(spec);
    int rc;
    if (strncmp(spec, "ed25519:", 8) != 0 && strchr(spec, '+') == NULL) {
        if ((rc = audit_read_file(spec, &file, err)) != 0) {
            audit_error_wrap(err, rc,
                             "--log-key %s: not a key (NAME+KEYID+BASE64 or ed25519:BASE64) nor a "
                             "readable file",
                             spec);
            return rc;
        }
        text = file.data;
        n = file.len;
        /* The first line that is not blank or a comment. */
        for (;;) {
            const char *nl = memchr(text, '\n', n);
            size_t ln = nl ? (size_t)(nl - text) : n;
            const char *t = text;
            size_t tn = ln;
            trim(&t, &tn);
            if (tn > 0 && t[0] != '#') {
                text = t;
                n = tn;
                break;
            }
            if (!nl) {
                n = 0;
                break;
            }
            n -= ln + 1;
            text = nl + 1;
        }
    }
    trim(&text, &n);
    if (n > 8 && strncmp(text, "ed25519:", 8) == 0) {
        char pktext[KKEY_TEXT_MAX];
        uint8_t pk[32];
        if (n >= sizeof pktext) {
            kabar_buf_free(&file);
            return kabar_error_set(err, KABAR_BAD_VALUE, "--log-key: the ed25519 key is too long");
        }
        memcpy(pktext, text, n);
        pktext[n] = '\0';
        kabar_buf_free(&file);
        if ((rc = audit_unb64(pktext + 8, n - 8, pk, 32, err)) != 0)
            return audit_error_wrap(err, rc, "--log-key");
        if (origin == NULL || origin[0] == '\0')
            return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                                   "--log-key: an ed25519 key needs the log's origin name; give "
                                   "the note verifier key (DATA/broker.vkey) instead");
        memset(v, 0, sizeof *v);
        snprintf(v->name, sizeof v->name, "%s", origin);
        memcpy(v->public_key, pk, 32);
        v->key_id = checkpoint_key_id(v->name, pk);
        return 0;
    }
    rc = checkpoint_verifier_parse(v, text, n, err);
    kabar_buf_free(&file);
    if (rc != 0)
        return audit_error_wrap(err, rc, "--log-key");
    return 0;
}

int audit_checkpoint_open(checkpoint *c, const char *note, size_t len, const checkpoint_verifier *v,
                          kabar_error *err)
{
    return checkpoint_open(c, note, len, v, err);
}

/* ------------------------------------------------------------------------ */
/* Proof formats                                                            */

void audit_proof_free(audit_proof *p)
{
    kabar_buf_free(&p->record);
}

static int line_hash(kabar_buf *b, const char *name, const uint8_t h[32])
{
    char t[AUDIT_B64_HASH];
    audit_b64(h, 32, t, sizeof t);
    int rc = kabar_buf_append(b, name, strlen(name));
    rc |= kabar_buf_append(b, " ", 1);
    rc |= kabar_buf_append(b, t, strlen(t));
    rc |= kabar_buf_append(b, "\n", 1);
    return rc;
}

static int line_u64(kabar_buf *b, const char *name, uint64_t v)
{
    char t[64];
    int n = snprintf(t, sizeof t, "%s %" PRIu64 "\n", name, v);
    return kabar_buf_append(b, t, (size_t)n);
}

static json_t *jhash(const uint8_t h[32])
{
    char t[AUDIT_B64_HASH];
    audit_b64(h, 32, t, sizeof t);
    return json_string(t);
}

int audit_proof_format(const audit_proof *p, bool json, kabar_buf *out, kabar_error *err)
{
    int rc = 0;
    if (json) {
        json_t *o = json_object(), *hs = json_array();
        bool incl = p->kind == AUDIT_INCLUSION;
        json_object_set_new(o, "proof", json_string(incl ? "inclusion" : "consistency"));
        json_object_set_new(o, "origin", json_string(p->origin));
        if (incl) {
            json_object_set_new(o, "size", json_integer((json_int_t)p->size));
            json_object_set_new(o, "seq", json_integer((json_int_t)p->seq));
            json_object_set_new(o, "leaf_hash", jhash(p->leaf_hash));
            if (p->has_record) {
                kabar_buf r = {0};
                audit_b64_append(&r, p->record.data, p->record.len);
                kabar_buf_append(&r, "", 1);
                json_object_set_new(o, "record", json_string(r.data ? r.data : ""));
                kabar_buf_free(&r);
            }
            if (p->has_root)
                json_object_set_new(o, "root", jhash(p->root));
        } else {
            json_object_set_new(o, "old_size", json_integer((json_int_t)p->old_size));
            json_object_set_new(o, "new_size", json_integer((json_int_t)p->new_size));
            json_object_set_new(o, "old_root", jhash(p->old_root));
            json_object_set_new(o, "new_root", jhash(p->new_root));
        }
        for (size_t i = 0; i < p->hashes.len; i++)
            json_array_append_new(hs, jhash(p->hashes.hash[i]));
        json_object_set_new(o, "hashes", hs);
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(o);
        if (s == NULL)
            return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
        rc = kabar_buf_append(out, s, strlen(s)) | kabar_buf_append(out, "\n", 1);
        free(s);
        return rc ? kabar_error_set(err, KABAR_NO_MEMORY, "out of memory") : 0;
    }
    if (p->kind == AUDIT_INCLUSION) {
        rc |= kabar_buf_append(out, "kabar-proof inclusion\n", 22);
        rc |= kabar_buf_append(out, "origin ", 7);
        rc |= kabar_buf_append(out, p->origin, strlen(p->origin));
        rc |= kabar_buf_append(out, "\n", 1);
        rc |= line_u64(out, "size", p->size);
        rc |= line_u64(out, "seq", p->seq);
        rc |= line_hash(out, "leaf-hash", p->leaf_hash);
        if (p->has_record) {
            rc |= kabar_buf_append(out, "record ", 7);
            rc |= audit_b64_append(out, p->record.data, p->record.len);
            rc |= kabar_buf_append(out, "\n", 1);
        }
        if (p->has_root)
            rc |= line_hash(out, "root", p->root);
    } else {
        rc |= kabar_buf_append(out, "kabar-proof consistency\n", 24);
        rc |= kabar_buf_append(out, "origin ", 7);
        rc |= kabar_buf_append(out, p->origin, strlen(p->origin));
        rc |= kabar_buf_append(out, "\n", 1);
        rc |= line_u64(out, "old-size", p->old_size);
        rc |= line_u64(out, "new-size", p->new_size);
        rc |= line_hash(out, "old-root", p->old_root);
        rc |= line_hash(out, "new-root", p->new_root);
    }
    for (size_t i = 0; i < p->hashes.len; i++)
        rc |= line_hash(out, "hash", p->hashes.hash[i]);
    return rc ? kabar_error_set(err, KABAR_NO_MEMORY, "out of memory") : 0;
}

static int parse_u64(const char *s, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 20 || (n > 1 && s[0] == '0'))
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

static int push_proof_hash(audit_proof *p, const uint8_t h[32], kabar_error *err)
{
    if (p->hashes.len >= MERKLE_MAX_PROOF)
        return kabar_error_set(err, KABAR_BAD_VALUE, "the proof has more than %d hashes",
                               MERKLE_MAX_PROOF);
    memcpy(p->hashes.hash[p->hashes.len++], h, 32);
    return 0;
}

static int parse_text(audit_proof *p, const char *text, size_t len, kabar_error *err)
{
    unsigned seen = 0; /* bits of the fields read */
    size_t lineno = 0;
    int rc;
    while (len > 0) {
        const char *nl = memchr(text, '\n', len);
        size_t n = nl ? (size_t)(nl - text) : len;
        const char *line = text;
        text += n + (nl ? 1 : 0);
        len -= n + (nl ? 1 : 0);
        lineno++;
        if (n > 0 && line[n - 1] == '\r')
            n--;
        if (n == 0)
            continue;
        if (lineno == 1) {
            if (n == 21 && memcmp(line, "kabar-proof inclusion", 21) == 0)
                p->kind = AUDIT_INCLUSION;
            else if (n == 23 && memcmp(line, "kabar-proof consistency", 23) == 0)
                p->kind = AUDIT_CONSISTENCY;
            else
                return kabar_error_set(err, KABAR_BAD_VALUE,
                                       "line 1 is not \"kabar-proof inclusion\" or \"kabar-proof "
                                       "consistency\": not a kabar proof");
            continue;
        }
        const char *sp = memchr(line, ' ', n);
        if (sp == NULL)
            return kabar_error_set(err, KABAR_BAD_VALUE, "line %zu: no value after the name",
                                   lineno);
        size_t kn = (size_t)(sp - line), vn = n - kn - 1;
        const char *val = sp + 1;
        static const char *const names[] = {"origin",   "size",     "seq",      "leaf-hash",
                                            "record",   "root",     "old-size", "new-size",
                                            "old-root", "new-root", "hash"};
        unsigned f = 0;
        while (f < 11 && !(strlen(names[f]) == kn && memcmp(names[f], line, kn) == 0))
            f++;
        if (f == 11)
            return kabar_error_set(err, KABAR_BAD_VALUE, "line %zu: unknown field \"%.*s\"", lineno,
                                   (int)(kn > 40 ? 40 : kn), line);
        if (f != 10 && (seen & (1u << f)))
            return kabar_error_set(err, KABAR_BAD_VALUE, "line %zu: %s given twice", lineno,
                                   names[f]);
        seen |= 1u << f;
        uint8_t h[32];
        switch (f) {
        case 0:
            if (vn > CHECKPOINT_NAME_MAX)
                return kabar_error_set(err, KABAR_BAD_VALUE, "line %zu: origin too long", lineno);
            memcpy(p->origin, val, vn);
            p->origin[vn] = '\0';
            break;
        case 1:
        case 2:
        case 6:
        case 7: {
            uint64_t *dst = f == 1   ? &p->size
                            : f == 2 ? &p->seq
                            : f == 6 ? &p->old_size
                                     : &p->new_size;
            if (parse_u64(val, vn, dst) != 0)
                return kabar_error_set(err, KABAR_BAD_VALUE, "line %zu: %s is not a decimal number",
                                       lineno, names[f]);
            break;
        }
        case 4:
            if ((rc = audit_unb64_buf(val, vn, &p->record, err)) != 0)
                return audit_error_wrap(err, rc, "line %zu: record", lineno);
            p->has_record = true;
            break;
        default:
            if ((rc = audit_unb64(val, vn, h, 32, err)) != 0)
                return audit_error_wrap(err, rc, "line %zu: %s", lineno, names[f]);
            if (f == 3)
                memcpy(p->leaf_hash, h, 32);
            else if (f == 5) {
                memcpy(p->root, h, 32);
                p->has_root = true;
            } else if (f == 8)
                memcpy(p->old_root, h, 32);
            else if (f == 9)
                memcpy(p->new_root, h, 32);
            else if ((rc = push_proof_hash(p, h, err)) != 0)
                return rc;
        }
    }
    unsigned need = p->kind == AUDIT_INCLUSION ? (1u << 0 | 1u << 1 | 1u << 2 | 1u << 3)
                                               : (1u << 0 | 1u << 6 | 1u << 7 | 1u << 8 | 1u << 9);
    if (p->kind == 0 || (seen & need) != need)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "the proof lacks a field (an inclusion proof needs origin, size, "
                               "seq, leaf-hash; a consistency proof origin, old-size, new-size, "
                               "old-root, new-root)");
    return 0;
}

static int jget_u64(json_t *o, const char *k, uint64_t *out, kabar_error *err)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return kabar_error_set(err, KABAR_BAD_VALUE, "\"%s\" must be a non-negative integer", k);
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int jget_hash(json_t *o, const char *k, uint8_t out[32], kabar_error *err)
{
    json_t *v = json_object_get(o, k);
    if (!json_is_string(v))
        return kabar_error_set(err, KABAR_BAD_VALUE, "\"%s\" must be a base64 string", k);
    int rc = audit_unb64(json_string_value(v), json_string_length(v), out, 32, err);
    return rc ? audit_error_wrap(err, rc, "\"%s\"", k) : 0;
}

static int parse_json(audit_proof *p, const char *text, size_t len, kabar_error *err)
{
    json_error_t je;
    json_t *o = json_loadb(text, len, 0, &je);
    int rc = 0;
    if (o == NULL)
        return kabar_error_set(err, KABAR_BAD_JSON, "line %d: %s", je.line, je.text);
    json_t *kind = json_object_get(o, "proof"), *origin = json_object_get(o, "origin"),
           *hs = json_object_get(o, "hashes");
    if (!json_is_string(kind) || !json_is_string(origin) || !json_is_array(hs) ||
        json_string_length(origin) > CHECKPOINT_NAME_MAX) {
        rc = kabar_error_set(err, KABAR_BAD_VALUE,
                             "not a kabar proof: \"proof\", \"origin\" and \"hashes\" are needed");
        goto done;
    }
    snprintf(p->origin, sizeof p->origin, "%s", json_string_value(origin));
    if (strcmp(json_string_value(kind), "inclusion") == 0) {
        p->kind = AUDIT_INCLUSION;
        if ((rc = jget_u64(o, "size", &p->size, err)) != 0 ||
            (rc = jget_u64(o, "seq", &p->seq, err)) != 0 ||
            (rc = jget_hash(o, "leaf_hash", p->leaf_hash, err)) != 0)
            goto done;
        json_t *rec = json_object_get(o, "record");
        if (json_is_string(rec)) {
            if ((rc = audit_unb64_buf(json_string_value(rec), json_string_length(rec), &p->record,
                                      err)) != 0)
                goto done;
            p->has_record = true;
        }
        if (json_object_get(o, "root")) {
            if ((rc = jget_hash(o, "root", p->root, err)) != 0)
                goto done;
            p->has_root = true;
        }
    } else if (strcmp(json_string_value(kind), "consistency") == 0) {
        p->kind = AUDIT_CONSISTENCY;
        if ((rc = jget_u64(o, "old_size", &p->old_size, err)) != 0 ||
            (rc = jget_u64(o, "new_size", &p->new_size, err)) != 0 ||
            (rc = jget_hash(o, "old_root", p->old_root, err)) != 0 ||
            (rc = jget_hash(o, "new_root", p->new_root, err)) != 0)
            goto done;
    } else {
        rc = kabar_error_set(err, KABAR_BAD_VALUE,
                             "\"proof\" must be \"inclusion\" or \"consistency\"");
        goto done;
    }
    size_t i;
    json_t *h;
    json_array_foreach(hs, i, h)
    {
        uint8_t b[32];
        if (!json_is_string(h) ||
            audit_unb64(json_string_value(h), json_string_length(h), b, 32, err) != 0) {
            rc = kabar_error_set(err, KABAR_BAD_VALUE, "hashes[%zu] is not a base64 hash", i);
            goto done;
        }
        if ((rc = push_proof_hash(p, b, err)) != 0)
            goto done;
    }
done:
    json_decref(o);
    return rc;
}

int audit_proof_parse(audit_proof *p, const char *text, size_t len, kabar_error *err)
{
    memset(p, 0, sizeof *p);
    size_t i = 0;
    while (i < len && isspace((unsigned char)text[i]))
        i++;
    if (i < len && text[i] == '{')
        return parse_json(p, text, len, err);
    return parse_text(p, text + i, len - i, err);
}
