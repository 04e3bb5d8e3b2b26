/*
 * auth_test.c - kabard's authorization rules, the registry cache and the
 * ZAP handler: who gets in, and what each role may do.
 */
#define _GNU_SOURCE /* nftw, usleep */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.c"

static auth_principal who(const char *agency, auth_role role)
{
    auth_principal p = {.role = role, .revoked_at = INT64_MAX};
    snprintf(p.agency, sizeof p.agency, "%s", agency);
    snprintf(p.user_id, sizeof p.user_id, "%s/0123456789abcdef", agency);
    return p;
}

static kabar_str str(const char *s)
{
    return (kabar_str){s, s ? (uint32_t)strlen(s) : 0};
}

static void test_publish_rules(void **state)
{
    auth_principal agent = who("dinkes", AUTH_AGENT), over = who("setda", AUTH_OVERSIGHT),
                   aud = who("bpk", AUTH_AUDITOR), admin = who("kominfo", AUTH_ADMIN),
                   none = who("odd", AUTH_NONE);
    assert_int_equal(auth_check_source(&agent, str("dinkes")), 0);
    assert_int_equal(auth_check_source(&agent, str("disdik")), KABAR_NOT_OWN_SOURCE);
    assert_int_equal(auth_check_source(&agent, str("dinkes-takalar")), KABAR_NOT_OWN_SOURCE);
    assert_int_equal(auth_check_source(&agent, str("dinke")), KABAR_NOT_OWN_SOURCE);
    assert_int_equal(auth_check_source(&over, str("setda")), 0);
    assert_int_equal(auth_check_source(&over, str("dinkes")), KABAR_NOT_OWN_SOURCE);
    assert_int_equal(auth_check_publish(&aud), KABAR_CANNOT_PUBLISH);
    assert_int_equal(auth_check_source(&aud, str("bpk")), KABAR_CANNOT_PUBLISH);
    assert_int_equal(auth_check_publish(&none), KABAR_CANNOT_PUBLISH);
    /* The admin imports events of any source; each still signed by that source. */
    assert_int_equal(auth_check_source(&admin, str("dinkes")), 0);
    assert_int_equal(auth_check_source(&auth_anonymous, str("dinkes")), 0);
    assert_int_equal(auth_check_signer(&agent, str("dinkes")), 0);
    assert_int_equal(auth_check_signer(&agent, str("disdik")), KABAR_SIGNER_NOT_SOURCE);
    assert_int_equal(auth_check_signer(&admin, str("dinkes")), KABAR_SIGNER_NOT_SOURCE);
}

static void test_subscribe_rules(void **state)
{
    auth_principal agent = who("dinkes", AUTH_AGENT), over = who("setda", AUTH_OVERSIGHT),
                   aud = who("bpk", AUTH_AUDITOR), admin = who("kominfo", AUTH_ADMIN);
    assert_int_equal(auth_check_sub(&agent, str("dinkes")), 0);
    assert_int_equal(auth_check_sub(&agent, str(NULL)), KABAR_NOT_OWN_TARGET);
    assert_int_equal(auth_check_sub(&agent, str("")), KABAR_NOT_OWN_TARGET);
    assert_int_equal(auth_check_sub(&agent, str("disdik")), KABAR_NOT_OWN_TARGET);
    assert_int_equal(auth_check_sub(&over, str(NULL)), 0);
    assert_int_equal(auth_check_sub(&aud, str("disdik")), 0);
    assert_int_equal(auth_check_sub(&admin, str(NULL)), 0);
    /* Durable consumers: the owner's agency only; nobody's are anyone's. */
    assert_int_equal(auth_check_consumer(&agent, "dinkes"), 0);
    assert_int_equal(auth_check_consumer(&agent, ""), 0);
    assert_int_equal(auth_check_consumer(&aud, "dinkes"), KABAR_NOT_OWN_CONSUMER);
    assert_int_equal(auth_check_consumer(&admin, "dinkes"), KABAR_NOT_OWN_CONSUMER);
    assert_int_equal(auth_check_consumer(&auth_anonymous, "dinkes"), 0);
}

static void test_call_rules(void **state)
{
    auth_principal agent = who("dinkes", AUTH_AGENT), over = who("setda", AUTH_OVERSIGHT),
                   aud = who("bpk", AUTH_AUDITOR), admin = who("kominfo", AUTH_ADMIN);
#define CALL(p, m) auth_check_call(&(p), m, strlen(m))
    assert_int_equal(CALL(agent, "whoami"), 0);
    assert_int_equal(CALL(agent, "audit.checkpoint"), 0);
    assert_int_equal(CALL(agent, "agency.add"), KABAR_ADMIN_ONLY);
    assert_int_equal(CALL(agent, "agency.revoke_key"), KABAR_ADMIN_ONLY);
    assert_int_equal(CALL(agent, "agency.list"), KABAR_AUDIT_ONLY);
    assert_int_equal(CALL(agent, "audit.prove"), KABAR_AUDIT_ONLY);
    assert_int_equal(CALL(agent, "audit.records"), KABAR_AUDIT_ONLY);
    assert_int_equal(CALL(aud, "audit.prove"), 0);
    assert_int_equal(CALL(aud, "audit.consistency"), 0);
    assert_int_equal(CALL(aud, "agency.show"), 0);
    assert_int_equal(CALL(aud, "agency.rotate_key"), KABAR_ADMIN_ONLY);
    assert_int_equal(CALL(over, "audit.batch"), 0);
    assert_int_equal(CALL(over, "agency.add"), KABAR_ADMIN_ONLY);
    assert_int_equal(CALL(admin, "agency.add"), 0);
    assert_int_equal(CALL(admin, "audit.checkpoints"), 0);
    assert_int_equal(CALL(admin, "agency.nuke"), KABAR_UNKNOWN_METHOD);
    assert_int_equal(CALL(auth_anonymous, "agency.add"), 0);
    assert_int_equal(auth_check_call(&admin, "whoamix", 6), 0); /* length counts, not NUL */
    assert_int_equal(auth_check_call(&admin, "whoami", 5), KABAR_UNKNOWN_METHOD);
#undef CALL
}

static void test_validity(void **state)
{
    auth_principal p = who("dinkes", AUTH_AGENT);
    p.valid_from = 100;
    p.revoked_at = 200;
    assert_false(auth_valid(&p, 99));
    assert_true(auth_valid(&p, 100));
    assert_true(auth_valid(&p, 199));
    assert_false(auth_valid(&p, 200));
    assert_true(auth_valid(&auth_anonymous, 0));
    assert_int_equal(auth_role_parse("oversight"), AUTH_OVERSIGHT);
    assert_int_equal(auth_role_parse("root"), AUTH_NONE);
    assert_string_equal(auth_role_name(AUTH_AUDITOR), "auditor");
}

/* ------------------------------------------------------------------------ */
/* The cache and the ZAP handler, over a real log                           */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

typedef struct fixture {
    char dir[64];
    store *st;
    store_reader *rd;
    auth *a;
    uint8_t pk[3][32], sk[3][64];
} fixture;

static void add(fixture *f, const char *id, const char *role, int k, int64_t from, int64_t until)
{
    kabar_error e;
    store_agency ag;
    memset(&ag, 0, sizeof ag);
    snprintf(ag.id, sizeof ag.id, "%s", id);
    snprintf(ag.name, sizeof ag.name, "Agency %s", id);
    snprintf(ag.role, sizeof ag.role, "%s", role);
    store_agency g;
    if (store_reader_refresh(f->rd, &e) == 0 && store_agency_get(f->rd, id, &g, &e) != 0)
        assert_int_equal(store_agency_put(f->st, &ag, &e), 0);
    store_key key = {.valid_from = from, .revoked_at = INT64_MAX};
    memcpy(key.pk, f->pk[k], 32);
    snprintf(key.agency, sizeof key.agency, "%s", id);
    assert_int_equal(store_key_put(f->st, &key, &e), 0);
    if (until != INT64_MAX) {
        key.revoked_at = until;
        assert_int_equal(store_key_put(f->st, &key, &e), 0);
    }
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    kabar_error e;
    snprintf(f->dir, sizeof f->dir, "/tmp/kabar-auth-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(store_open(&f->st, f->dir, &(store_opts){.nosync = true}, &e), 0);
    assert_int_equal(store_reader_open(f->st, &f->rd, &e), 0);
    assert_int_equal(auth_new(&f->a, &e), 0);
    for (int i = 0; i < 3; i++)
        crypto_sign_keypair(f->pk[i], f->sk[i]);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    auth_destroy(&f->a);
    store_reader_close(&f->rd);
    store_close(&f->st);
    nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void test_cache(void **state)
{
    fixture *f = *state;
    kabar_error e;
    int64_t now = kabar_now();
    add(f, "dinkes", "agent", 0, now - 1000, INT64_MAX);
    add(f, "dinkes", "agent", 1, now - 2000, now - 1000); /* the rotated-away key */
    add(f, "bpk", "auditor", 2, now - 1000, INT64_MAX);
    assert_int_equal(store_reader_refresh(f->rd, &e), 0);
    assert_int_equal(auth_load(f->a, f->rd, &e), 0);
    assert_int_equal(auth_count(f->a), 3);
    assert_int_equal(auth_count_valid(f->a, now), 2);

    const auth_principal *p = auth_by_pk(f->a, f->pk[0]);
    assert_non_null(p);
    assert_string_equal(p->agency, "dinkes");
    assert_int_equal(p->role, AUTH_AGENT);
    char id[KKEY_ID_TEXT], uid[64];
    kkey_id_text(f->pk[0], id);
    snprintf(uid, sizeof uid, "dinkes/%s", id);
    assert_string_equal(p->user_id, uid);
    assert_ptr_equal(auth_by_user_id(f->a, uid, strlen(uid)), p);
    assert_null(auth_by_user_id(f->a, uid, strlen(uid) - 1));
    uint8_t curve[32];
    assert_int_equal(crypto_sign_ed25519_pk_to_curve25519(curve, f->pk[0]), 0);
    assert_ptr_equal(auth_by_curve(f->a, curve), p);
    assert_null(auth_by_curve(f->a, f->pk[0])); /* the Ed25519 form is not the CURVE key */

    const auth_principal *old = auth_by_pk(f->a, f->pk[1]);
    assert_non_null(old);
    assert_false(auth_valid(old, now));
    assert_int_equal(auth_by_pk(f->a, f->pk[2])->role, AUTH_AUDITOR);

    /* A reload sees a revocation at once. */
    store_key k;
    assert_int_equal(store_key_get(f->rd, f->pk[0], &k, &e), 0);
    k.revoked_at = now;
    assert_int_equal(store_key_put(f->st, &k, &e), 0);
    assert_int_equal(store_reader_refresh(f->rd, &e), 0);
    assert_int_equal(auth_load(f->a, f->rd, &e), 0);
    assert_false(auth_valid(auth_by_user_id(f->a, uid, strlen(uid)), now));
    assert_int_equal(auth_count_valid(f->a, now), 1);

    /* Fail closed: an emptied cache knows nobody, until a reload. */
    auth_clear(f->a);
    assert_int_equal(auth_count(f->a), 0);
    assert_int_equal(auth_count_valid(f->a, now), 0);
    assert_null(auth_by_pk(f->a, f->pk[2]));
    assert_null(auth_by_curve(f->a, curve));
    assert_null(auth_by_user_id(f->a, uid, strlen(uid)));
    assert_int_equal(auth_load(f->a, f->rd, &e), 0);
    assert_non_null(auth_by_pk(f->a, f->pk[2]));
}

/* One ZAP request through a REQ socket; returns the status code frame as text. */
static void zap_ask(fixture *f, void *ctx, void *rep, const char *mech, const uint8_t *key,
                    char status[8], char uid[64])
{
    void *req = zmq_socket(ctx, ZMQ_REQ);
    assert_int_equal(zmq_connect(req, "inproc://zeromq.zap.01"), 0);
    const char *parts[] = {"1.0", "7", "kabar", "127.0.0.1", "", mech};
    for (int i = 0; i < 6; i++)
        zmq_send(req, parts[i], strlen(parts[i]), ZMQ_SNDMORE);
    zmq_send(req, key, 32, 0);
    int handled = 0;
    for (int i = 0; i < 200 && handled == 0; i++) {
        handled = auth_zap_handle(f->a, rep, kabar_now(), i);
        if (handled == 0)
            usleep(1000);
    }
    assert_int_equal(handled, 1);
    char frames[6][64];
    for (int i = 0; i < 6; i++) {
        int n = zmq_recv(req, frames[i], sizeof frames[i] - 1, 0);
        assert_true(n >= 0);
        frames[i][n] = '\0';
    }
    assert_string_equal(frames[0], "1.0");
    assert_string_equal(frames[1], "7");
    snprintf(status, 8, "%.7s", frames[2]);
    snprintf(uid, 64, "%s", frames[4]);
    zmq_close(req);
}

static void test_zap(void **state)
{
    fixture *f = *state;
    kabar_error e;
    int64_t now = kabar_now();
    add(f, "dinkes", "agent", 0, now - 1000, INT64_MAX);
    add(f, "dinkes", "agent", 1, now - 2000, now - 1000);
    assert_int_equal(store_reader_refresh(f->rd, &e), 0);
    assert_int_equal(auth_load(f->a, f->rd, &e), 0);
    void *ctx = zmq_ctx_new(), *rep = zmq_socket(ctx, ZMQ_REP);
    assert_int_equal(zmq_bind(rep, "inproc://zeromq.zap.01"), 0);
    uint8_t curve[3][32];
    for (int i = 0; i < 3; i++)
        assert_int_equal(crypto_sign_ed25519_pk_to_curve25519(curve[i], f->pk[i]), 0);
    char status[8], uid[64];
    zap_ask(f, ctx, rep, "CURVE", curve[0], status, uid);
    assert_string_equal(status, "200");
    assert_string_equal(uid, auth_by_pk(f->a, f->pk[0])->user_id);
    zap_ask(f, ctx, rep, "CURVE", curve[1], status, uid); /* revoked */
    assert_string_equal(status, "400");
    assert_string_equal(uid, "");
    zap_ask(f, ctx, rep, "CURVE", curve[2], status, uid); /* never registered */
    assert_string_equal(status, "400");
    zap_ask(f, ctx, rep, "PLAIN", curve[0], status, uid); /* only CURVE */
    assert_string_equal(status, "400");
    uint64_t ok, denied;
    auth_zap_counts(f->a, &ok, &denied);
    assert_true(ok == 1 && denied == 3);
    /* Nothing waiting: 0, without blocking. */
    assert_int_equal(auth_zap_handle(f->a, rep, now, 0), 0);
    zmq_close(rep);
    zmq_ctx_term(ctx);
}

static void test_refusal_counts(void **state)
{
    fixture *f = *state;
    auth_principal agent = who("dinkes", AUTH_AGENT);
    auth_refused(f->a, &agent, KABAR_NOT_OWN_SOURCE, "PUB", 0);
    auth_refused(f->a, &agent, KABAR_NOT_OWN_SOURCE, "PUB", 0);
    auth_refused(f->a, &agent, KABAR_ADMIN_ONLY, "CALL agency.add", 0);
    assert_int_equal(auth_refusals(f->a, KABAR_NOT_OWN_SOURCE), 2);
    assert_int_equal(auth_refusals(f->a, KABAR_ADMIN_ONLY), 1);
    assert_int_equal(auth_refusals(f->a, KABAR_CANNOT_PUBLISH), 0);
    assert_int_equal(auth_refusals(f->a, -1), 0);
}

int main(void)
{
    klog_init("auth_test", 2, KLOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_rules),
        cmocka_unit_test(test_subscribe_rules),
        cmocka_unit_test(test_call_rules),
        cmocka_unit_test(test_validity),
        cmocka_unit_test_setup_teardown(test_cache, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refusal_counts, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
