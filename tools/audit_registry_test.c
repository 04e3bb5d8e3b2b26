/*
 * audit_registry_test.c - the auditor's key -> agency mapping
 * (tools/audit_registry.h), the trust anchor of `kabar audit check-export`:
 *
 *  - the output of `kabar agency list --format json` (JSON Lines), a JSON
 *    array of agencies and one agency object are read alike;
 *  - a key is accepted only for its own agency and inside [valid_from,
 *    revoked_at); a key of another agency, an unknown key, a time before
 *    valid_from or at revoked_at are told apart;
 *  - a rotated key given twice (or by --agency-key too) is accepted when
 *    any entry allows it;
 *  - malformed files are refused with the line named and add nothing;
 *    --agency-key ID=KEY specs are checked.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

/* The CLI's sources are not a library: the test compiles the one it tests. */
#include "audit_registry.c"

#define T0   1714521600000000000LL /* 2024-05-01T00:00:00Z */
#define HOUR 3600000000000LL

static uint8_t pk_a[32], pk_b[32], pk_x[32];
static char text_a[KKEY_TEXT_MAX], text_b[KKEY_TEXT_MAX], text_x[KKEY_TEXT_MAX];

static int setup(void **state)
{
    kkey k;
    kabar_error err = {0};
    uint8_t *pks[3] = {pk_a, pk_b, pk_x};
    char *texts[3] = {text_a, text_b, text_x};
    for (int i = 0; i < 3; i++) {
        uint8_t seed[32];
        memset(seed, i + 1, sizeof seed);
        if (kkey_from_seed(&k, seed, &err) != 0)
            return -1;
        memcpy(pks[i], k.pk, 32);
        kkey_public_text(k.pk, texts[i]);
        kkey_wipe(&k);
    }
    return 0;
}

/* Two agencies as `kabar agency list --format json` prints them: dinkes with
 * key A (revoked at T0+2h) and key B (from T0+2h), bpk with key X. */
static int load_list(audit_registry *r, kabar_error *err)
{
    char text[2048];
    snprintf(text, sizeof text,
             "{\"id\":\"dinkes\",\"name\":\"Dinas Kesehatan\",\"region\":\"1371\",\"org\":"
             "\"dinkes\",\"role\":\"agent\",\"created_at\":\"2024-05-01T00:00:00Z\",\"keys\":["
             "{\"key\":\"%s\",\"key_id\":\"x\",\"valid_from\":\"2024-05-01T00:00:00Z\","
             "\"revoked_at\":\"2024-05-01T02:00:00Z\"},"
             "{\"key\":\"%s\",\"key_id\":\"y\",\"valid_from\":\"2024-05-01T02:00:00Z\"}]}\n"
             "\n"
             "{\"id\":\"bpk\",\"role\":\"auditor\",\"keys\":[{\"key\":\"%s\",\"valid_from\":"
             "\"2024-05-01T00:00:00Z\"}]}\n",
             text_a, text_b, text_x);
    return audit_registry_load(r, text, strlen(text), "reg.jsonl", err);
}

static audit_reg_verdict check(const audit_registry *r, const uint8_t pk[32], const char *src,
                               int64_t t)
{
    const audit_trusted_key *k;
    audit_reg_verdict v = audit_registry_check(r, pk, src, strlen(src), t, &k);
    assert_true((v == AUDIT_REG_UNKNOWN) == (k == NULL));
    return v;
}

static void test_agency_list_json(void **state)
{
    audit_registry r = {0};
    kabar_error err = {0};
    assert_int_equal(load_list(&r, &err), 0);
    assert_int_equal(r.n, 3);
    /* Key A: dinkes's from T0 until T0+2h. */
    assert_int_equal(check(&r, pk_a, "dinkes", T0), AUDIT_REG_OK);
    assert_int_equal(check(&r, pk_a, "dinkes", T0 + 2 * HOUR - 1), AUDIT_REG_OK);
    assert_int_equal(check(&r, pk_a, "dinkes", T0 + 2 * HOUR), AUDIT_REG_NOT_VALID);
    assert_int_equal(check(&r, pk_a, "dinkes", T0 - 1), AUDIT_REG_NOT_VALID);
    /* Key B: dinkes's from T0+2h, never revoked. */
    assert_int_equal(check(&r, pk_b, "dinkes", T0 + HOUR), AUDIT_REG_NOT_VALID);
    assert_int_equal(check(&r, pk_b, "dinkes", T0 + 1000 * HOUR), AUDIT_REG_OK);
    /* Key X is bpk's: not for an event of dinkes, nor of a prefix of it. */
    const audit_trusted_key *k;
    assert_int_equal(audit_registry_check(&r, pk_x, "dinkes", 6, T0 + HOUR, &k),
                     AUDIT_REG_NOT_SOURCE);
    assert_string_equal(k->agency, "bpk");
    assert_int_equal(check(&r, pk_x, "bp", T0 + HOUR), AUDIT_REG_NOT_SOURCE);
    assert_int_equal(check(&r, pk_x, "bpk", T0 + HOUR), AUDIT_REG_OK);
    /* An unknown key. */
    uint8_t other[32] = {9};
    assert_int_equal(check(&r, other, "dinkes", T0 + HOUR), AUDIT_REG_UNKNOWN);
    audit_registry_free(&r);
}

static void test_array_and_single_object(void **state)
{
    audit_registry r = {0};
    kabar_error err = {0};
    char text[1024];
    snprintf(text, sizeof text,
             "  [{\"id\":\"dinkes\",\"keys\":[{\"key\":\"%s\"}]},\n"
             "{\"id\":\"bpk\",\"keys\":[]}]\n",
             text_a);
    assert_int_equal(audit_registry_load(&r, text, strlen(text), "reg.json", &err), 0);
    assert_int_equal(r.n, 1);
    /* No valid_from: valid at any time. */
    assert_int_equal(check(&r, pk_a, "dinkes", INT64_MIN + 1), AUDIT_REG_OK);
    snprintf(text, sizeof text,
             "{\n  \"id\": \"bpk\", \"keys\": [{\"key\": \"%s\", \"revoked_at\": null}]\n}\n",
             text_x);
    /* A pretty-printed object spans lines: not JSON Lines. */
    assert_int_equal(audit_registry_load(&r, text, strlen(text), "show.json", &err),
                     KABAR_BAD_JSON);
    assert_non_null(strstr(err.message, "show.json:1:"));
    assert_int_equal(r.n, 1);
    snprintf(text, sizeof text, "{\"id\": \"bpk\", \"keys\": [{\"key\": \"%s\"}]}", text_x);
    assert_int_equal(audit_registry_load(&r, text, strlen(text), "show.json", &err), 0);
    assert_int_equal(r.n, 2);
    assert_int_equal(check(&r, pk_x, "bpk", T0), AUDIT_REG_OK);
    audit_registry_free(&r);
}

static void test_rotated_back_and_agency_key(void **state)
{
    audit_registry r = {0};
    kabar_error err = {0};
    assert_int_equal(load_list(&r, &err), 0);
    /* --agency-key dinkes=A: valid at any time, so it also covers T0+3h. */
    assert_int_equal(check(&r, pk_a, "dinkes", T0 + 3 * HOUR), AUDIT_REG_NOT_VALID);
    char spec[128];
    snprintf(spec, sizeof spec, "dinkes=%s", text_a);
    assert_int_equal(audit_registry_add_spec(&r, spec, &err), 0);
    assert_int_equal(check(&r, pk_a, "dinkes", T0 + 3 * HOUR), AUDIT_REG_OK);
    /* The same key given to another agency does not make it bpk's and dinkes's. */
    snprintf(spec, sizeof spec, "bpk=%s", text_b);
    assert_int_equal(audit_registry_add_spec(&r, spec, &err), 0);
    assert_int_equal(check(&r, pk_b, "dinkes", T0 + 3 * HOUR), AUDIT_REG_OK);
    assert_int_equal(check(&r, pk_b, "bpk", T0 + 3 * HOUR), AUDIT_REG_OK);
    assert_int_equal(check(&r, pk_b, "setda", T0 + 3 * HOUR), AUDIT_REG_NOT_SOURCE);
    audit_registry_free(&r);
}

static void test_malformed(void **state)
{
    static const char *const bad[] = {
        "",
        "\n\n",
        "{\"agencies\": []}\n",
        "{\"id\": \"dinkes\"}\n",
        "{\"id\": \"\", \"keys\": []}\n",
        "{\"id\": \"a-very-long-agency-id-of-more-than-32-bytes\", \"keys\": []}\n",
        "{\"id\": \"dinkes\", \"keys\": [{\"key\": \"ed25519:AAAA\"}]}\n",
        "{\"id\": \"dinkes\", \"keys\": [{\"key\": \"/etc/passwd\"}]}\n",
        "{\"id\": \"dinkes\", \"keys\": [\"ed25519:x\"]}\n",
        "[1, 2]",
        "[{\"id\": \"dinkes\", \"keys\": []}",
        "{\"id\": \"dinkes\", \"keys\": []} trailing\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        audit_registry r = {0};
        kabar_error err = {0};
        int rc = audit_registry_load(&r, bad[i], strlen(bad[i]), "reg", &err);
        if (rc == 0)
            fail_msg("accepted: %s", bad[i]);
        assert_true(rc == KABAR_BAD_VALUE || rc == KABAR_BAD_JSON);
        assert_int_equal(r.n, 0);
        assert_non_null(strstr(err.message, "reg"));
        audit_registry_free(&r);
    }
    /* A good line then a bad one: the line is named, nothing is kept. */
    audit_registry r = {0};
    kabar_error err = {0};
    char text[1024];
    snprintf(text, sizeof text,
             "{\"id\":\"dinkes\",\"keys\":[{\"key\":\"%s\"}]}\n"
             "{\"id\":\"bpk\",\"keys\":[{\"key\":\"%s\",\"valid_from\":\"yesterday\"}]}\n",
             text_a, text_x);
    assert_int_equal(audit_registry_load(&r, text, strlen(text), "reg", &err), KABAR_BAD_VALUE);
    assert_non_null(strstr(err.message, "reg:2: agency bpk: keys[0].valid_from"));
    assert_int_equal(r.n, 0);
    /* Valid times must be strings. */
    snprintf(text, sizeof text,
             "{\"id\":\"dinkes\",\"keys\":[{\"key\":\"%s\",\"revoked_at\":5}]}\n", text_a);
    assert_int_equal(audit_registry_load(&r, text, strlen(text), "reg", &err), KABAR_BAD_VALUE);
    audit_registry_free(&r);
}

static void test_agency_key_specs(void **state)
{
    static const char *const bad[] = {
        "dinkes",
        "=ed25519:AAAA",
        "dinkes=",
        "dinkes=ed25519:AAAA",
        "a-very-long-agency-id-of-more-than-32-bytes=ed25519:x",
        "dinkes=/nonexistent/file.pub",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        audit_registry r = {0};
        kabar_error err = {0};
        if (audit_registry_add_spec(&r, bad[i], &err) == 0)
            fail_msg("accepted: %s", bad[i]);
        assert_int_equal(err.code, KABAR_INVALID_ARGUMENT);
        assert_int_equal(r.n, 0);
        audit_registry_free(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agency_list_json),
        cmocka_unit_test(test_array_and_single_object),
        cmocka_unit_test(test_rotated_back_and_agency_key),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_agency_key_specs),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
