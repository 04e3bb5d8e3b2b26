/*
 * checkpoint_test.c - signed checkpoints: byte-exact against the golden file,
 * round trips, and every tampered note refused.
 *
 * proto/vectors/checkpoint.golden was written by scripts/merkle-ref.py with
 * python3-cryptography (an Ed25519 and base64 that share no code with ours):
 * the Certificate Transparency test tree of 8 leaves, signed by the key of
 * seed 00 01 .. 1f named kabar.padang.go.id/log. Ed25519 signatures are
 * deterministic, so ours must be the same bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <sodium.h>

#include "checkpoint.h"

#define ORIGIN "kabar.padang.go.id/log"
#define VKEY   ORIGIN "+1d714916+AQOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4"
#define ROOT8  "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=" /* CT tree, 8 leaves */

static const uint8_t root8[32] = {0x5d, 0xc9, 0xda, 0x79, 0xa7, 0x06, 0x59, 0xa9, 0xad, 0x55, 0x9c,
                                  0xb7, 0x01, 0xde, 0xd9, 0xa2, 0xab, 0x9d, 0x82, 0x3a, 0xad, 0x2f,
                                  0x49, 0x60, 0xcf, 0xe3, 0x70, 0xef, 0xf4, 0x60, 0x43, 0x28};

static void golden_signer(checkpoint_signer *s)
{
    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)i;
    kabar_error err = {0};
    if (checkpoint_signer_from_seed(s, ORIGIN, seed, &err) != 0)
        fail_msg("%s", err.message);
}

static void golden_checkpoint(checkpoint *c)
{
    memset(c, 0, sizeof(*c));
    strcpy(c->origin, ORIGIN);
    c->size = 8;
    memcpy(c->root, root8, 32);
}

/* The golden file's bytes; caller frees. */
static char *read_golden(size_t *len)
{
    const char *src = getenv("KABAR_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof(path), "%s/proto/vectors/checkpoint.golden", src ? src : ".");
    FILE *f = fopen(path, "rb");
    if (!f)
        fail_msg("cannot open %s (is KABAR_SOURCE_DIR set?)", path);
    char *buf = calloc(1, 4096);
    assert_non_null(buf);
    *len = fread(buf, 1, 4095, f);
    fclose(f);
    return buf;
}

static int open_note(const char *note, size_t len, const checkpoint_verifier *v, checkpoint *c,
                     kabar_error *err)
{
    return checkpoint_open(c, note, len, v, err);
}

/* ------------------------------------------------------------------------ */

static void test_golden(void **state)
{
    checkpoint_signer s;
    checkpoint c, back;
    kabar_buf note = {0};
    kabar_error err = {0};
    size_t glen = 0;
    char *golden = read_golden(&glen);

    golden_signer(&s);
    golden_checkpoint(&c);
    if (checkpoint_sign(&c, &s, &note, &err) != 0)
        fail_msg("%s", err.message);
    if (note.len != glen || memcmp(note.data, golden, glen) != 0)
        fail_msg("signed checkpoint differs from the golden file:\n--- ours\n%s--- golden\n%s",
                 note.data, golden);
    assert_string_equal(note.data, ORIGIN "\n8\n" ROOT8 "\n\n\xe2\x80\x94 " ORIGIN " HXFJFr8t+"
                                          "lIxVIhielV6/jKBOYk9DvZGOUlATkqQ8UofuoPZ39ltArRVmzGnQkYiu"
                                          "6BzT8H3GIVLLKoNSCmNob0bzgM=\n");

    char vkey[CHECKPOINT_VKEY_MAX];
    size_t n = checkpoint_verifier_format(&s.verifier, vkey);
    assert_int_equal(n, strlen(VKEY));
    assert_string_equal(vkey, VKEY);

    checkpoint_verifier v;
    assert_int_equal(checkpoint_verifier_parse(&v, VKEY "\n", strlen(VKEY) + 1, &err), 0);
    if (open_note(golden, glen, &v, &back, &err) != 0)
        fail_msg("the golden note does not verify: %s", err.message);
    assert_string_equal(back.origin, ORIGIN);
    assert_int_equal(back.size, 8);
    assert_memory_equal(back.root, root8, 32);
    assert_string_equal(back.extensions, "");

    kabar_buf_free(&note);
    free(golden);
    checkpoint_signer_wipe(&s);
}

/* Every single changed byte of the golden note is refused. */
static void test_tampered(void **state)
{
    size_t glen = 0;
    char *golden = read_golden(&glen);
    checkpoint_verifier v;
    checkpoint c;
    kabar_error err = {0};
    assert_int_equal(checkpoint_verifier_parse(&v, VKEY, strlen(VKEY), &err), 0);
    for (size_t i = 0; i < glen; i++) {
        for (int flip = 0; flip < 2; flip++) {
            char *t = malloc(glen);
            assert_non_null(t);
            memcpy(t, golden, glen);
            if (flip == 0)
                t[i] = t[i] == 'A' ? 'B' : 'A'; /* stays UTF-8 only on ASCII */
            else
                t[i] ^= 0x01;
            err.code = 0;
            if (open_note(t, glen, &v, &c, &err) == 0)
                fail_msg("note with byte %zu changed (%s) accepted", i, flip ? "xor 1" : "A/B");
            assert_int_equal(err.code, KABAR_BAD_VALUE);
            free(t);
        }
    }
    /* Cut short anywhere: refused. */
    for (size_t len = 0; len < glen; len++)
        assert_int_equal(open_note(golden, len, &v, &c, NULL), KABAR_BAD_VALUE);
    free(golden);
}

/* A verifier of another key, of another name or of another log refuses. */
static void test_wrong_keys(void **state)
{
    size_t glen = 0;
    char *golden = read_golden(&glen);
    checkpoint_signer other;
    checkpoint_verifier v;
    checkpoint c;
    kabar_error err = {0};

    assert_int_equal(checkpoint_signer_generate(&other, ORIGIN, &err), 0);
    assert_int_equal(open_note(golden, glen, &other.verifier, &c, &err), KABAR_BAD_VALUE);
    assert_non_null(strstr(err.message, "not signed by " ORIGIN));

    /* Same key bytes under another name: another key id, so not ours. */
    golden_signer(&other);
    v = other.verifier;
    strcpy(v.name, "kabar.bukittinggi.go.id/log");
    v.key_id = checkpoint_key_id(v.name, v.public_key);
    assert_int_equal(open_note(golden, glen, &v, &c, &err), KABAR_BAD_VALUE);

    /* Our name and id but another public key: a signature that fails. */
    v = other.verifier;
    v.public_key[0] ^= 1;
    assert_int_equal(open_note(golden, glen, &v, &c, &err), KABAR_BAD_VALUE);
    assert_non_null(strstr(err.message, "does not verify"));

    /* A checkpoint of another log, signed with that log's key name. */
    checkpoint_signer bkt;
    checkpoint cb;
    kabar_buf note = {0};
    assert_int_equal(checkpoint_signer_generate(&bkt, "kabar.bukittinggi.go.id/log", &err), 0);
    golden_checkpoint(&cb);
    assert_int_equal(checkpoint_sign(&cb, &bkt, &note, &err), KABAR_INVALID_ARGUMENT);
    assert_int_equal(note.len, 0);
    strcpy(cb.origin, "kabar.bukittinggi.go.id/log");
    assert_int_equal(checkpoint_sign(&cb, &bkt, &note, &err), 0);
    assert_int_equal(open_note(note.data, note.len, &other.verifier, &c, &err), KABAR_BAD_VALUE);
    assert_int_equal(open_note(note.data, note.len, &bkt.verifier, &c, &err), 0);

    kabar_buf_free(&note);
    checkpoint_signer_wipe(&other);
    checkpoint_signer_wipe(&bkt);
    free(golden);
}

/* A signature line for `text` by another key, as a witness would add. */
static void witness_line(kabar_buf *out, const char *text, size_t len)
{
    checkpoint_signer w;
    uint8_t sig[68];
    char b64[sodium_base64_ENCODED_LEN(68, sodium_base64_VARIANT_ORIGINAL)];
    assert_int_equal(checkpoint_signer_generate(&w, "witness.example.org/w1", NULL), 0);
    uint32_t id = w.verifier.key_id;
    sig[0] = (uint8_t)(id >> 24), sig[1] = (uint8_t)(id >> 16);
    sig[2] = (uint8_t)(id >> 8), sig[3] = (uint8_t)id;
    crypto_sign_detached(sig + 4, NULL, (const uint8_t *)text, len, w.secret_key);
    sodium_bin2base64(b64, sizeof(b64), sig, sizeof(sig), sodium_base64_VARIANT_ORIGINAL);
    char line[512];
    snprintf(line, sizeof(line), "\xe2\x80\x94 %s %s\n", w.verifier.name, b64);
    assert_int_equal(kabar_buf_append(out, line, strlen(line)), 0);
    checkpoint_signer_wipe(&w);
}

/* Cosignatures by other keys are ignored; a bad one of ours is not. */
static void test_cosigned(void **state)
{
    checkpoint_signer s;
    checkpoint c, back;
    kabar_buf note = {0}, both = {0};
    kabar_error err = {0};
    golden_signer(&s);
    golden_checkpoint(&c);
    strcpy(c.extensions, "kabar-note one\nkabar-note two\n");
    assert_int_equal(checkpoint_sign(&c, &s, &note, &err), 0);
    const char *ours = strstr(note.data, "\n\n") + 2;
    size_t text_len = (size_t)(ours - note.data) - 1;

    /* text, blank line, the witness's line, then ours */
    assert_int_equal(kabar_buf_append(&both, note.data, text_len + 1), 0);
    witness_line(&both, note.data, text_len);
    assert_int_equal(kabar_buf_append(&both, ours, strlen(ours)), 0);
    if (checkpoint_open(&back, both.data, both.len, &s.verifier, &err) != 0)
        fail_msg("%s\n%s", err.message, both.data);
    assert_string_equal(back.extensions, "kabar-note one\nkabar-note two\n");
    assert_int_equal(back.size, 8);

    /* Only the witness's line: not signed by us. */
    both.len = text_len + 1;
    witness_line(&both, note.data, text_len);
    assert_int_equal(checkpoint_open(&back, both.data, both.len, &s.verifier, &err),
                     KABAR_BAD_VALUE);
    assert_non_null(strstr(err.message, "not signed by"));

    /* Two lines by our key, the second one broken: the note is refused. */
    both.len = 0;
    assert_int_equal(kabar_buf_append(&both, note.data, note.len), 0);
    assert_int_equal(kabar_buf_append(&both, ours, strlen(ours)), 0);
    assert_int_equal(checkpoint_open(&back, both.data, both.len, &s.verifier, &err), 0);
    both.data[both.len - 10] = both.data[both.len - 10] == 'A' ? 'B' : 'A';
    assert_int_equal(checkpoint_open(&back, both.data, both.len, &s.verifier, &err),
                     KABAR_BAD_VALUE);

    kabar_buf_free(&note);
    kabar_buf_free(&both);
    checkpoint_signer_wipe(&s);
}

static void test_round_trip_sizes(void **state)
{
    checkpoint_signer s;
    kabar_error err = {0};
    const uint64_t sizes[] = {0, 1, 9, 1000000, UINT64_MAX};
    assert_int_equal(checkpoint_signer_generate(&s, "kabar.padang.go.id/uji", &err), 0);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        checkpoint c, back;
        kabar_buf note = {0};
        memset(&c, 0, sizeof(c));
        strcpy(c.origin, "kabar.padang.go.id/uji");
        c.size = sizes[i];
        randombytes_buf(c.root, sizeof(c.root));
        assert_int_equal(checkpoint_sign(&c, &s, &note, &err), 0);
        assert_int_equal(checkpoint_open(&back, note.data, note.len, &s.verifier, &err), 0);
        assert_int_equal(back.size, sizes[i]);
        assert_memory_equal(back.root, c.root, 32);
        kabar_buf_free(&note);
    }
    checkpoint_signer_wipe(&s);
}

static void test_keys(void **state)
{
    checkpoint_signer s, back;
    checkpoint_verifier v;
    kabar_error err = {0};
    char skey[CHECKPOINT_SKEY_MAX], vkey[CHECKPOINT_VKEY_MAX];
    golden_signer(&s);
    size_t n = checkpoint_signer_format(&s, skey);
    assert_int_equal(n, strlen(skey));
    assert_string_equal(skey, "PRIVATE+KEY+" ORIGIN
                              "+1d714916+AQABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f");
    assert_int_equal(checkpoint_signer_parse(&back, skey, n, &err), 0);
    assert_memory_equal(&back, &s, sizeof(s));

    checkpoint_verifier_format(&s.verifier, vkey);
    assert_int_equal(checkpoint_verifier_parse(&v, vkey, strlen(vkey), &err), 0);
    assert_memory_equal(&v, &s.verifier, sizeof(v));

    /* A mistyped key id, key or prefix is refused with the reason. */
    char bad[CHECKPOINT_SKEY_MAX];
    strcpy(bad, VKEY);
    bad[strlen(ORIGIN) + 1] = '2';
    assert_int_equal(checkpoint_verifier_parse(&v, bad, strlen(bad), &err), KABAR_BAD_VALUE);
    assert_non_null(strstr(err.message, "does not match"));
    strcpy(bad, VKEY);
    bad[strlen(bad) - 3] = 'x';
    assert_int_equal(checkpoint_verifier_parse(&v, bad, strlen(bad), &err), KABAR_BAD_VALUE);
    strcpy(bad, VKEY);
    bad[strlen(bad) - 1] = '5'; /* another key: the id does not match it */
    assert_int_equal(checkpoint_verifier_parse(&v, bad, strlen(bad), &err), KABAR_BAD_VALUE);
    assert_int_equal(checkpoint_verifier_parse(&v, "", 0, &err), KABAR_BAD_VALUE);
    assert_int_equal(checkpoint_verifier_parse(&v, ORIGIN, strlen(ORIGIN), &err), KABAR_BAD_VALUE);
    assert_int_equal(checkpoint_signer_parse(&back, VKEY, strlen(VKEY), &err), KABAR_BAD_VALUE);
    strcpy(bad, skey);
    bad[12 + strlen(ORIGIN) + 2] = 'f';
    assert_int_equal(checkpoint_signer_parse(&back, bad, strlen(bad), &err), KABAR_BAD_VALUE);

    /* Names that a note cannot carry. */
    uint8_t seed[32] = {0};
    const char *names[] = {"", "a b", "a+b", "a\nb", "tab\there", "nbsp\xc2\xa0x", "\xff"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        assert_int_equal(checkpoint_signer_from_seed(&back, names[i], seed, &err),
                         KABAR_INVALID_ARGUMENT);
    checkpoint_signer_wipe(&s);
    checkpoint_signer_wipe(&back);
    for (size_t i = 0; i < sizeof(s); i++)
        assert_int_equal(((uint8_t *)&s)[i], 0);
}

static void test_strict_text(void **state)
{
    checkpoint c;
    kabar_error err = {0};
    const char *good = ORIGIN "\n8\n" ROOT8 "\n";
    assert_int_equal(checkpoint_parse(&c, good, strlen(good), &err), 0);
    assert_int_equal(c.size, 8);
    const char *bad[] = {
        ORIGIN "\n08\n" ROOT8 "\n",                                   /* leading zero */
        ORIGIN "\n+8\n" ROOT8 "\n",                                   /* sign */
        ORIGIN "\n18446744073709551616\n" ROOT8 "\n",                 /* 2^64 */
        ORIGIN "\n8\n" ROOT8,                                         /* no final newline */
        ORIGIN "\n8\n",                                               /* no root */
        ORIGIN "\n8\n" ROOT8 "\n\next\n",                             /* empty line */
        "\n8\n" ROOT8 "\n",                                           /* empty origin */
        ORIGIN "\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyh=\n", /* not canonical */
        ORIGIN "\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQw==\n", /* 31 bytes */
        ORIGIN "\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz-Nw7_RgQyg=\n", /* base64url */
        ORIGIN "\r\n8\n" ROOT8 "\n",                                  /* CR */
        ORIGIN "\n8\n" ROOT8 "\n\xc0\xaf\n",                          /* overlong UTF-8 */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (checkpoint_parse(&c, bad[i], strlen(bad[i]), &err) != KABAR_BAD_VALUE)
            fail_msg("accepted bad checkpoint text %zu", i);
    }

    /* What cannot be written is refused before signing. */
    checkpoint_signer s;
    kabar_buf out = {0};
    golden_signer(&s);
    golden_checkpoint(&c);
    strcpy(c.extensions, "no final newline");
    assert_int_equal(checkpoint_sign(&c, &s, &out, &err), KABAR_INVALID_ARGUMENT);
    strcpy(c.extensions, "one\n\ntwo\n");
    assert_int_equal(checkpoint_format(&c, &out, &err), KABAR_INVALID_ARGUMENT);
    golden_checkpoint(&c);
    strcpy(c.origin, "two\nlines");
    assert_int_equal(checkpoint_format(&c, &out, &err), KABAR_INVALID_ARGUMENT);
    assert_int_equal(out.len, 0);
    checkpoint_signer_wipe(&s);
    kabar_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),           cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_wrong_keys),       cmocka_unit_test(test_cosigned),
        cmocka_unit_test(test_round_trip_sizes), cmocka_unit_test(test_keys),
        cmocka_unit_test(test_strict_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
