/*
 * calls_test.c - kabard's CALL methods against a real log: the registry
 * through an admin, the refusals others get, the checkpoint policy.
 */
#define _GNU_SOURCE /* nftw */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "auth.c"
#include "calls.c"
#include "ckpt.c"

typedef struct fixture {
    char dir[64];
    store *st;
    store_reader *rd;
    auth *a;
    ckpt *ck;
    kkey broker;
    kabar_buf out, params;
    msgpack_unpacked res;
    int64_t mono_ms; /* the calls' monotonic clock */
    calls_env last;  /* the environment of the last call, with its outputs */
} fixture;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    kabar_error e;
    snprintf(f->dir, sizeof f->dir, "/tmp/kabar-calls-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    store_opts so = {.nosync = true, .origin = "kabar.test/log"};
    assert_int_equal(store_open(&f->st, f->dir, &so, &e), 0);
    assert_int_equal(store_reader_open(f->st, &f->rd, &e), 0);
    assert_int_equal(auth_new(&f->a, &e), 0);
    assert_int_equal(kkey_generate(&f->broker, &e), 0);
    assert_int_equal(ckpt_new(&f->ck, &f->broker, store_origin(f->st), 60000, 10000, f->rd, 0, &e),
                     0);
    msgpack_unpacked_init(&f->res);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    msgpack_unpacked_destroy(&f->res);
    kabar_buf_free(&f->out);
    kabar_buf_free(&f->params);
    ckpt_destroy(&f->ck);
    auth_destroy(&f->a);
    store_reader_close(&f->rd);
    store_close(&f->st);
    nftw(f->dir, rm_one, 8, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

/* Run a CALL as `who`; on success f->res holds the RESULT map. */
static int call(fixture *f, const auth_principal *who, const char *method, kabar_error *e)
{
    calls_env env = {.st = f->st,
                     .rd = f->rd,
                     .au = f->a,
                     .ck = f->ck,
                     .who = who,
                     .secure = who->role != AUTH_ANONYMOUS,
                     .now = kabar_now(),
                     .mono_ms = f->mono_ms};
    int rc = calls_run(&env, 9, method, strlen(method), (const uint8_t *)f->params.data,
                       f->params.len, &f->out, e);
    f->last = env;
    f->params.len = 0;
    if (rc == 0) {
        assert_int_equal(msgpack_unpack_next(&f->res, f->out.data, f->out.len, NULL),
                         MSGPACK_UNPACK_SUCCESS);
        msgpack_object o = f->res.data;
        assert_int_equal(o.type, MSGPACK_OBJECT_ARRAY);
        assert_int_equal(o.via.array.size, 4);
        assert_int_equal(o.via.array.ptr[2].via.u64, 9);
        assert_int_equal(o.via.array.ptr[3].type, MSGPACK_OBJECT_MAP);
    }
    return rc;
}

/* The RESULT map's value at `key`, or NULL. */
static const msgpack_object *get(fixture *f, const char *key)
{
    const msgpack_object_map *m = &f->res.data.via.array.ptr[3].via.map;
    for (uint32_t i = 0; i < m->size; i++)
        if (m->ptr[i].key.via.str.size == strlen(key) &&
            memcmp(m->ptr[i].key.via.str.ptr, key, strlen(key)) == 0)
            return &m->ptr[i].val;
    return NULL;
}

static void params_agency(fixture *f, const char *id, const char *role, const uint8_t key[32])
{
    msgpack_packer pk;
    f->params.len = 0;
    wire_packer_init(&pk, &f->params);
    msgpack_pack_map(&pk, role ? 6 : 2);
    pk_str(&pk, "id");
    pk_str(&pk, id);
    pk_str(&pk, "key");
    pk_bin(&pk, key, 32);
    if (role != NULL) {
        pk_str(&pk, "name");
        pk_str(&pk, "Dinas Kesehatan");
        pk_str(&pk, "org");
        pk_str(&pk, "1.02.0.00.0.00.01.0000");
        pk_str(&pk, "region");
        pk_str(&pk, "13.71");
        pk_str(&pk, "role");
        pk_str(&pk, role);
    }
}

static void test_whoami(void **state)
{
    fixture *f = *state;
    kabar_error e;
    assert_int_equal(call(f, &auth_anonymous, "whoami", &e), 0);
    assert_int_equal(get(f, "secure")->via.boolean, false);
    assert_int_equal(get(f, "principal")->via.str.size, 0);
    auth_principal p = {.agency = "dinkes", .role = AUTH_AGENT, .key_id = "0123456789abcdef"};
    assert_int_equal(call(f, &p, "whoami", &e), 0);
    assert_true(get(f, "secure")->via.boolean);
    assert_memory_equal(get(f, "principal")->via.str.ptr, "dinkes", 6);
    assert_memory_equal(get(f, "role")->via.str.ptr, "agent", 5);
    assert_int_equal(call(f, &p, "whoareyou", &e), KABAR_UNKNOWN_METHOD);
    assert_non_null(strstr(e.message, "whoami"));
}

static void test_registry(void **state)
{
    fixture *f = *state;
    kabar_error e;
    uint8_t pk[3][32], sk[64];
    for (int i = 0; i < 3; i++)
        crypto_sign_keypair(pk[i], sk);
    auth_principal admin = {.agency = "kominfo", .role = AUTH_ADMIN, .user_id = "kominfo/x"};
    auth_principal agent = {.agency = "dinkes", .role = AUTH_AGENT, .user_id = "dinkes/x"};

    /* Only an admin changes the registry; the refusal is counted. */
    params_agency(f, "dinkes", "agent", pk[0]);
    assert_int_equal(call(f, &agent, "agency.add", &e), KABAR_ADMIN_ONLY);
    assert_int_equal(auth_refusals(f->a, KABAR_ADMIN_ONLY), 1);
    assert_int_equal(call(f, &agent, "agency.list", &e), KABAR_AUDIT_ONLY);
    assert_null(auth_by_pk(f->a, pk[0]));

    params_agency(f, "dinkes", "agent", pk[0]);
    assert_int_equal(call(f, &admin, "agency.add", &e), 0);
    assert_non_null(auth_by_pk(f->a, pk[0])); /* the cache was reloaded */
    params_agency(f, "dinkes", "agent", pk[1]);
    assert_int_equal(call(f, &admin, "agency.add", &e), KABAR_BAD_VALUE);
    assert_non_null(strstr(e.message, "rotate_key"));
    params_agency(f, "disdik", "agent", pk[0]); /* a key belongs to one agency */
    assert_int_equal(call(f, &admin, "agency.add", &e), KABAR_BAD_VALUE);
    params_agency(f, "Bad Id", "agent", pk[2]);
    assert_int_equal(call(f, &admin, "agency.add", &e), KABAR_BAD_VALUE);
    params_agency(f, "disdik", "root", pk[2]);
    assert_int_equal(call(f, &admin, "agency.add", &e), KABAR_BAD_VALUE);

    /* Rotation: the new key valid, the old one revoked at the same instant. */
    msgpack_packer pkr;
    f->params.len = 0;
    wire_packer_init(&pkr, &f->params);
    msgpack_pack_map(&pkr, 3);
    pk_str(&pkr, "id"), pk_str(&pkr, "dinkes");
    pk_str(&pkr, "key"), pk_bin(&pkr, pk[1], 32);
    pk_str(&pkr, "old"), pk_bin(&pkr, pk[0], 32);
    assert_int_equal(call(f, &admin, "agency.rotate_key", &e), 0);
    const msgpack_object *keys = get(f, "keys");
    assert_non_null(keys);
    assert_int_equal(keys->via.array.size, 2);
    int64_t now = kabar_now();
    assert_false(auth_valid(auth_by_pk(f->a, pk[0]), now));
    assert_true(auth_valid(auth_by_pk(f->a, pk[1]), now));
    store_key k0, k1;
    assert_int_equal(store_key_get(f->rd, pk[0], &k0, &e), 0);
    assert_int_equal(store_key_get(f->rd, pk[1], &k1, &e), 0);
    assert_true(k0.revoked_at == k1.valid_from);

    /* Revocation: at once, and only once. */
    params_agency(f, "dinkes", NULL, pk[1]);
    assert_int_equal(call(f, &admin, "agency.revoke_key", &e), 0);
    assert_false(auth_valid(auth_by_pk(f->a, pk[1]), kabar_now()));
    params_agency(f, "dinkes", NULL, pk[1]);
    assert_int_equal(call(f, &admin, "agency.revoke_key", &e), KABAR_BAD_VALUE);
    params_agency(f, "disdik", NULL, pk[2]);
    assert_int_equal(call(f, &admin, "agency.revoke_key", &e), KABAR_NOT_FOUND);

    assert_int_equal(call(f, &admin, "agency.list", &e), 0);
    assert_int_equal(get(f, "agencies")->via.array.size, 1);
    auth_principal aud = {.agency = "bpk", .role = AUTH_AUDITOR};
    msgpack_packer ps;
    wire_packer_init(&ps, &f->params);
    msgpack_pack_map(&ps, 1);
    pk_str(&ps, "id"), pk_str(&ps, "dinkes");
    assert_int_equal(call(f, &aud, "agency.show", &e), 0);
    assert_memory_equal(get(f, "role")->via.str.ptr, "agent", 5);
}

static void test_checkpoint(void **state)
{
    fixture *f = *state;
    kabar_error e;
    auth_principal agent = {.agency = "dinkes", .role = AUTH_AGENT};
    msgpack_packer pk;
    wire_packer_init(&pk, &f->params);
    msgpack_pack_map(&pk, 1);
    pk_str(&pk, "new"), msgpack_pack_true(&pk);
    /* An empty log has nothing to checkpoint: said plainly. */
    assert_int_equal(call(f, &agent, "audit.checkpoint", &e), KABAR_NOT_FOUND);
    assert_non_null(strstr(e.message, "empty"));
    assert_int_equal(call(f, &agent, "audit.checkpoints", &e), KABAR_AUDIT_ONLY);
    assert_int_equal(call(f, &agent, "audit.prove", &e), KABAR_AUDIT_ONLY);
    /* The verifier key names the origin, as DATA/broker.vkey will. */
    char vkey[CHECKPOINT_VKEY_MAX];
    checkpoint_verifier_format(ckpt_verifier(f->ck), vkey);
    assert_memory_equal(vkey, "kabar.test/log+", 15);
}

/* Store one event of `source` received at `at` (ns), as a commit of kabard would. */
static void put_event(fixture *f, const char *source, const char *id, int64_t at)
{
    kabar_event ev = {.id = {id, (uint32_t)strlen(id)},
                      .type = {"attendance.reported", 19},
                      .v = 1,
                      .source = {source, (uint32_t)strlen(source)}};
    store_entry en = {.ev = &ev, .bytes = (const uint8_t *)id, .len = strlen(id)};
    kabar_error e;
    assert_int_equal(store_write(f->st, &en, 1, NULL, 0, at, &e), 0);
    assert_false(en.duplicate);
    assert_int_equal(store_reader_refresh(f->rd, &e), 0);
}

static void params_rotate(fixture *f, const char *id, const uint8_t key[32], const uint8_t *old)
{
    msgpack_packer pk;
    f->params.len = 0;
    wire_packer_init(&pk, &f->params);
    msgpack_pack_map(&pk, old ? 3 : 2);
    pk_str(&pk, "id"), pk_str(&pk, id);
    pk_str(&pk, "key"), pk_bin(&pk, key, 32);
    if (old != NULL)
        pk_str(&pk, "old"), pk_bin(&pk, old, 32);
}

/*
 * A registry change takes effect strictly after every event already in the
 * log was received, even when the caller's clock is behind the log's: so a
 * revoked key's stored events were all received while it was valid, and a
 * new key is valid from before any event it will sign (kabar audit verify).
 */
static void test_change_after_every_received_event(void **state)
{
    fixture *f = *state;
    kabar_error e;
    uint8_t pk[3][32], sk[64];
    for (int i = 0; i < 3; i++)
        crypto_sign_keypair(pk[i], sk);
    auth_principal admin = {.agency = "kominfo", .role = AUTH_ADMIN, .user_id = "kominfo/x"};
    params_agency(f, "dinkes", "agent", pk[0]);
    assert_int_equal(call(f, &admin, "agency.add", &e), 0);
    store_key k0, k1, k2;
    assert_int_equal(store_key_get(f->rd, pk[0], &k0, &e), 0);
    assert_true(f->last.changed_at == k0.valid_from);
    assert_false(f->last.reload_failed);

    /* The last event was received 10 s "ahead" of the caller's clock. */
    int64_t received = kabar_now() + 10 * 1000000000LL;
    put_event(f, "dinkes", "ev-1", received);

    params_rotate(f, "dinkes", pk[1], pk[0]);
    assert_int_equal(call(f, &admin, "agency.rotate_key", &e), 0);
    assert_int_equal(store_key_get(f->rd, pk[0], &k0, &e), 0);
    assert_int_equal(store_key_get(f->rd, pk[1], &k1, &e), 0);
    assert_true(k0.revoked_at > received);
    assert_true(k1.valid_from == k0.revoked_at);
    assert_true(f->last.changed_at == k0.revoked_at);

    /* A plain revocation and a new agency's key, the same. */
    put_event(f, "dinkes", "ev-2", received + 5);
    params_agency(f, "dinkes", NULL, pk[1]);
    assert_int_equal(call(f, &admin, "agency.revoke_key", &e), 0);
    assert_int_equal(store_key_get(f->rd, pk[1], &k1, &e), 0);
    assert_true(k1.revoked_at > received + 5);
    params_agency(f, "disdik", "agent", pk[2]);
    assert_int_equal(call(f, &admin, "agency.add", &e), 0);
    assert_int_equal(store_key_get(f->rd, pk[2], &k2, &e), 0);
    assert_true(k2.valid_from > received + 5);
}

/* One registry change is one transaction: a failure stores none of it. */
static void test_registry_change_is_atomic(void **state)
{
    fixture *f = *state;
    kabar_error e;
    uint8_t pk[3][32], sk[64];
    for (int i = 0; i < 3; i++)
        crypto_sign_keypair(pk[i], sk);
    int64_t now = kabar_now();
    store_agency dinkes = {.id = "dinkes", .name = "Dinas Kesehatan", .role = "agent"};
    store_key k0 = {.agency = "dinkes", .valid_from = now, .revoked_at = INT64_MAX};
    memcpy(k0.pk, pk[0], 32);
    assert_int_equal(store_registry_apply(f->st, &dinkes, &k0, 1, &e), 0);

    /* An agency whose second key cannot be stored (it is dinkes'): nothing of it. */
    store_agency disdik = {.id = "disdik", .name = "Dinas Pendidikan", .role = "agent"};
    store_key ks[2] = {{.agency = "disdik", .valid_from = now, .revoked_at = INT64_MAX},
                       {.agency = "disdik", .valid_from = now, .revoked_at = INT64_MAX}};
    memcpy(ks[0].pk, pk[1], 32);
    memcpy(ks[1].pk, pk[0], 32);
    assert_int_equal(store_registry_apply(f->st, &disdik, ks, 2, &e), KABAR_INVALID_ARGUMENT);
    assert_non_null(strstr(e.message, "another agency"));
    assert_int_equal(store_reader_refresh(f->rd, &e), 0);
    store_agency a;
    store_key k;
    assert_int_equal(store_agency_get(f->rd, "disdik", &a, &e), KABAR_NOT_FOUND);
    assert_int_equal(store_key_get(f->rd, pk[1], &k, &e), KABAR_NOT_FOUND);

    /* A rotation whose revocation fails (already revoked at another time) adds no key. */
    k0.revoked_at = now + 1;
    assert_int_equal(store_key_put(f->st, &k0, &e), 0);
    store_key rot[2] = {{.agency = "dinkes", .valid_from = now + 2, .revoked_at = INT64_MAX}, k0};
    memcpy(rot[0].pk, pk[2], 32);
    rot[1].revoked_at = now + 2;
    assert_int_equal(store_registry_apply(f->st, NULL, rot, 2, &e), KABAR_INVALID_ARGUMENT);
    assert_int_equal(store_reader_refresh(f->rd, &e), 0);
    assert_int_equal(store_key_get(f->rd, pk[2], &k, &e), KABAR_NOT_FOUND);

    /* Checked before anything is written: the same key twice, nothing to do. */
    store_key twice[2] = {rot[0], rot[0]};
    assert_int_equal(store_registry_apply(f->st, NULL, twice, 2, &e), KABAR_INVALID_ARGUMENT);
    assert_int_equal(store_registry_apply(f->st, NULL, NULL, 0, &e), KABAR_INVALID_ARGUMENT);
    /* And a good one is stored whole. */
    rot[1].revoked_at = now + 1;
    assert_int_equal(store_registry_apply(f->st, NULL, rot, 2, &e), 0);
    assert_int_equal(store_reader_refresh(f->rd, &e), 0);
    assert_int_equal(store_key_get(f->rd, pk[2], &k, &e), 0);
}

/* audit.checkpoint {"new": true}: at most one a second for everybody; "fresh" says which. */
static void test_checkpoint_rate_limit(void **state)
{
    fixture *f = *state;
    kabar_error e;
    auth_principal agent = {.agency = "dinkes", .role = AUTH_AGENT};
    msgpack_packer pk;
    put_event(f, "dinkes", "ev-1", kabar_now());
    f->mono_ms = 5000;
    wire_packer_init(&pk, &f->params);
    msgpack_pack_map(&pk, 1), pk_str(&pk, "new"), msgpack_pack_true(&pk);
    assert_int_equal(call(f, &agent, "audit.checkpoint", &e), 0);
    assert_true(get(f, "fresh")->via.boolean);
    assert_int_equal(get(f, "size")->via.u64, 1);

    put_event(f, "dinkes", "ev-2", kabar_now());
    f->mono_ms = 5999;
    wire_packer_init(&pk, &f->params);
    msgpack_pack_map(&pk, 1), pk_str(&pk, "new"), msgpack_pack_true(&pk);
    assert_int_equal(call(f, &agent, "audit.checkpoint", &e), 0);
    assert_false(get(f, "fresh")->via.boolean); /* the latest, not of the head */
    assert_int_equal(get(f, "size")->via.u64, 1);
    /* Not asking for a new one: the latest, not fresh either. */
    assert_int_equal(call(f, &agent, "audit.checkpoint", &e), 0);
    assert_false(get(f, "fresh")->via.boolean);

    f->mono_ms = 6000;
    wire_packer_init(&pk, &f->params);
    msgpack_pack_map(&pk, 1), pk_str(&pk, "new"), msgpack_pack_true(&pk);
    assert_int_equal(call(f, &agent, "audit.checkpoint", &e), 0);
    assert_true(get(f, "fresh")->via.boolean);
    assert_int_equal(get(f, "size")->via.u64, 2);
    /* Nothing new since: the latest is of the head, so fresh, and none is made. */
    f->mono_ms = 6001;
    assert_int_equal(call(f, &agent, "audit.checkpoint", &e), 0);
    assert_true(get(f, "fresh")->via.boolean);
    assert_int_equal(get(f, "size")->via.u64, 2);
}

static void test_policy(void **state)
{
    /* Nothing new: never due. */
    assert_false(ckpt_policy_due(10, 0, 10, 999999, 60000, 10000));
    /* Time passed and the tree grew. */
    assert_false(ckpt_policy_due(10, 0, 11, 59999, 60000, 10000));
    assert_true(ckpt_policy_due(10, 0, 11, 60000, 60000, 10000));
    /* Enough events, whatever the time. */
    assert_false(ckpt_policy_due(10, 0, 10009, 1, 60000, 10000));
    assert_true(ckpt_policy_due(10, 0, 10010, 1, 60000, 10000));
    assert_true(ckpt_policy_due(0, 0, 1, 1, 60000, 1));
}

int main(void)
{
    klog_init("calls_test", 2, KLOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_whoami, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_change_after_every_received_event, setup, teardown),
        cmocka_unit_test_setup_teardown(test_registry_change_is_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_checkpoint_rate_limit, setup, teardown),
        cmocka_unit_test(test_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
