/*
 * kkey_test.c - identity keys (proto/kkey.c): known answers from a fixed
 * seed (computed independently with Python's cryptography package), the
 * key file round trip and its permissions, the refusals a user meets, and
 * the public key's text and file forms.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <fcntl.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kkey.h"

/* seed = 00 01 02 ... 1f */
#define SEED_PK_TEXT "ed25519:A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="
#define SEED_PK_HEX  "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8"
#define SEED_ID      "56475aa75463474c"

static char dir[256];

static int dir_setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/kkey_test.XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int dir_teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void seed_key(kkey *k)
{
    uint8_t seed[32];
    for (int i = 0; i < 32; i++)
        seed[i] = (uint8_t)i;
    assert_int_equal(kkey_from_seed(k, seed, NULL), 0);
}

static void write_text(const char *path, const char *text, mode_t mode)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    fchmod(fd, mode);
    close(fd);
}

static void test_known_answer(void **state)
{
    (void)state;
    kkey k;
    char text[KKEY_TEXT_MAX], id[KKEY_ID_TEXT], hex[65];
    uint8_t curve[32], derived[32];
    seed_key(&k);
    sodium_bin2hex(hex, sizeof hex, k.pk, 32);
    assert_string_equal(hex, SEED_PK_HEX);
    kkey_public_text(k.pk, text);
    assert_string_equal(text, SEED_PK_TEXT);
    assert_int_equal(strlen(text), 52);
    kkey_id_text(k.pk, id);
    assert_string_equal(id, SEED_ID);
    /* The curve keypair is a pair: its public key is the base point times its secret. */
    assert_int_equal(crypto_scalarmult_base(derived, k.curve_sk), 0);
    assert_memory_equal(derived, k.curve_pk, 32);
    assert_int_equal(kkey_curve_public(k.pk, curve, NULL), 0);
    assert_memory_equal(curve, k.curve_pk, 32);
    kkey_wipe(&k);
    uint8_t zero[sizeof k] = {0};
    assert_memory_equal(&k, zero, sizeof k);
}

static void test_generate_differs(void **state)
{
    (void)state;
    kkey a, b;
    assert_int_equal(kkey_generate(&a, NULL), 0);
    assert_int_equal(kkey_generate(&b, NULL), 0);
    assert_memory_not_equal(a.pk, b.pk, 32);
    uint8_t derived[32];
    crypto_scalarmult_base(derived, a.curve_sk);
    assert_memory_equal(derived, a.curve_pk, 32);
}

static void test_save_load(void **state)
{
    (void)state;
    kkey k, back;
    kabar_error err;
    char path[300], pub[310], text[512];
    struct stat st;
    snprintf(path, sizeof path, "%s/dinkes.key", dir);
    snprintf(pub, sizeof pub, "%s.pub", path);
    seed_key(&k);
    assert_int_equal(kkey_save(&k, path, false, &err), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(kkey_load(&back, path, &err), 0);
    assert_memory_equal(&back, &k, sizeof k);

    /* The file is what the header documents. */
    FILE *f = fopen(path, "r");
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    assert_non_null(strstr(text, "# public key: " SEED_PK_TEXT "\n"));
    assert_non_null(
        strstr(text, "\ned25519-secret:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"));
    f = fopen(pub, "r");
    n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    assert_string_equal(text, SEED_PK_TEXT "\n");

    /* No silent overwrite; --force replaces. */
    kkey other;
    assert_int_equal(kkey_generate(&other, NULL), 0);
    assert_int_equal(kkey_save(&other, path, false, &err), KABAR_IO);
    assert_non_null(strstr(err.message, "exists"));
    assert_non_null(strstr(err.message, "--force"));
    assert_int_equal(kkey_load(&back, path, &err), 0);
    assert_memory_equal(back.pk, k.pk, 32);
    assert_int_equal(kkey_save(&other, path, true, &err), 0);
    assert_int_equal(kkey_load(&back, path, &err), 0);
    assert_memory_equal(back.pk, other.pk, 32);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    uint8_t pk[32];
    assert_int_equal(kkey_public_parse(pk, pub, &err), 0);
    assert_memory_equal(pk, other.pk, 32);

    /* A missing directory is an error naming the path. */
    char bad[300];
    snprintf(bad, sizeof bad, "%s/no/such/dir.key", dir);
    assert_int_equal(kkey_save(&k, bad, false, &err), KABAR_IO);
    assert_non_null(strstr(err.message, bad));
}

static void test_load_refuses_open_file(void **state)
{
    (void)state;
    kkey k;
    kabar_error err;
    char path[300];
    snprintf(path, sizeof path, "%s/loose.key", dir);
    write_text(path, "ed25519-secret:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", 0644);
    assert_int_equal(kkey_load(&k, path, &err), KABAR_IO);
    char want[320];
    snprintf(want, sizeof want, "chmod 600 %s", path);
    assert_non_null(strstr(err.message, want));
    chmod(path, 0640);
    assert_int_equal(kkey_load(&k, path, &err), KABAR_IO);
    chmod(path, 0400);
    assert_int_equal(kkey_load(&k, path, &err), 0);
    char text[KKEY_TEXT_MAX];
    kkey_public_text(k.pk, text);
    assert_string_equal(text, SEED_PK_TEXT);
}

static void expect_bad(const char *content, const char *fragment)
{
    kkey k;
    kabar_error err;
    char path[300];
    snprintf(path, sizeof path, "%s/bad.key", dir);
    write_text(path, content, 0600);
    int rc = kkey_load(&k, path, &err);
    if (rc != KABAR_BAD_VALUE || strstr(err.message, fragment) == NULL)
        fail_msg("content %s: got %s \"%s\", want BAD_VALUE with \"%s\"", content,
                 kabar_errname(rc), err.message, fragment);
}

static void test_load_bad_files(void **state)
{
    (void)state;
    kkey k;
    kabar_error err;
    char path[300];
    expect_bad("", "no ed25519-secret: line");
    expect_bad("# only a comment\n\n", "no ed25519-secret: line");
    expect_bad(SEED_PK_TEXT "\n", "line 1: not a kabar secret key file");
    expect_bad("ed25519-secret:AAEC\n", "line 1: the secret key is not 44 characters");
    expect_bad("ed25519-secret:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n", "not 44");
    expect_bad("ed25519-secret:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"
               "ed25519-secret:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
               "line 2: a second");
    /* Comments, blank lines, CRLF and indentation are fine. */
    snprintf(path, sizeof path, "%s/ok.key", dir);
    write_text(path,
               "# a comment\r\n\r\n  ed25519-secret:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=  "
               "\r\n# end\r\n",
               0600);
    assert_int_equal(kkey_load(&k, path, &err), 0);
    /* A missing file says so. */
    snprintf(path, sizeof path, "%s/missing.key", dir);
    assert_int_not_equal(kkey_load(&k, path, &err), 0);
    assert_non_null(strstr(err.message, path));
}

static void test_public_parse(void **state)
{
    (void)state;
    uint8_t pk[32];
    kabar_error err;
    char hex[65], path[300];
    assert_int_equal(kkey_public_parse(pk, SEED_PK_TEXT, &err), 0);
    sodium_bin2hex(hex, sizeof hex, pk, 32);
    assert_string_equal(hex, SEED_PK_HEX);

    /* Wrong prefix, short, unpadded, trailing junk: refused. */
    assert_int_equal(
        kkey_public_parse(pk, "ed25519:A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg", &err),
        KABAR_BAD_VALUE);
    assert_int_equal(
        kkey_public_parse(pk, "ed25519:A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg=x", &err),
        KABAR_BAD_VALUE);
    assert_int_equal(kkey_public_parse(pk, "ed25519:", &err), KABAR_BAD_VALUE);
    assert_non_null(strstr(err.message, "not a public key"));
    assert_int_equal(kkey_public_parse(pk, "no-such-file-or-key", &err), KABAR_BAD_VALUE);
    assert_non_null(strstr(err.message, "neither a public key"));

    /* A .pub file with a comment, and a secret key file. */
    snprintf(path, sizeof path, "%s/broker.pub", dir);
    write_text(path, "# the broker\n" SEED_PK_TEXT "\n", 0644);
    memset(pk, 0, 32);
    assert_int_equal(kkey_public_parse(pk, path, &err), 0);
    sodium_bin2hex(hex, sizeof hex, pk, 32);
    assert_string_equal(hex, SEED_PK_HEX);
    snprintf(path, sizeof path, "%s/broker.key", dir);
    write_text(path, "ed25519-secret:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n", 0600);
    memset(pk, 0, 32);
    assert_int_equal(kkey_public_parse(pk, path, &err), 0);
    sodium_bin2hex(hex, sizeof hex, pk, 32);
    assert_string_equal(hex, SEED_PK_HEX);
    snprintf(path, sizeof path, "%s/garbage.pub", dir);
    write_text(path, "hello\n", 0644);
    assert_int_equal(kkey_public_parse(pk, path, &err), KABAR_BAD_VALUE);
    assert_non_null(strstr(err.message, path));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_answer),
        cmocka_unit_test(test_generate_differs),
        cmocka_unit_test_setup_teardown(test_save_load, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_load_refuses_open_file, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_load_bad_files, dir_setup, dir_teardown),
        cmocka_unit_test_setup_teardown(test_public_parse, dir_setup, dir_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
