/*
 * calls.c - kabard's CALL methods (see calls.h).
 *
 * Design notes. Parameters are read leniently (any key order, unknown keys
 * ignored, as every map of the protocol) into a small table of the keys a
 * method knows; results are packed with keys in canonical (sorted) order.
 * Every method builds its whole answer in `out` before anything is sent, so
 * a failure half-way answers ERR and never a truncated RESULT.
 */
#include "calls.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <msgpack.h>

#include "klog.h"
#include "kkey.h"
#include "merkle.h"
#include "mpr.h"
#include "wire.h"

#define RECORDS_MAX       4096
#define RECORDS_MAX_BYTES (4u << 20)

/* ------------------------------------------------------------------------ */
/* Parameters                                                               */

typedef struct param {
    const char *name;
    mpr_item it;
    bool set;
} param;

static int params_read(const uint8_t *p, size_t len, param *ps, size_t n, kabar_error *err)
{
    if (len == 0)
        return 0;
    mpr r;
    mpr_item it;
    mpr_init(&r, p, len);
    r.canonical = false;
    int rc = mpr_expect(&r, MPR_MAP, &it, "params", err);
    uint32_t count = rc == 0 ? it.count : 0;
    for (uint32_t i = 0; i < count && rc == 0; i++) {
        mpr_item k;
        if ((rc = mpr_expect(&r, MPR_STR, &k, "params key", err)) != 0)
            break;
        param *hit = NULL;
        for (size_t j = 0; j < n; j++)
            if (strlen(ps[j].name) == k.len && memcmp(ps[j].name, k.str, k.len) == 0)
                hit = &ps[j];
        if (hit == NULL) {
            rc = mpr_skip(&r, 8, err);
            continue;
        }
        if ((rc = mpr_next(&r, &hit->it, err)) != 0)
            break;
        if (hit->it.kind == MPR_ARRAY || hit->it.kind == MPR_MAP)
            return kabar_error_set(err, KABAR_WRONG_TYPE, "params.%s: a scalar is expected",
                                   hit->name);
        hit->set = hit->it.kind != MPR_NIL;
    }
    return rc;
}

static param *find(param *ps, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(ps[i].name, name) == 0)
            return &ps[i];
    return NULL;
}

/* A required (or, with opt, optional) string param of at most cap-1 bytes, copied. */
static int p_str(param *ps, size_t n, const char *name, char *out, size_t cap, bool opt,
                 kabar_error *err)
{
    param *p = find(ps, n, name);
    out[0] = '\0';
    if (p == NULL || !p->set)
        return opt ? 0 : kabar_error_set(err, KABAR_MISSING_FIELD, "params.%s: required", name);
    if (p->it.kind != MPR_STR)
        return kabar_error_set(err, KABAR_WRONG_TYPE, "params.%s: a string is expected", name);
    if (p->it.len >= cap || memchr(p->it.str, '\0', p->it.len) != NULL)
        return kabar_error_set(err, KABAR_BAD_VALUE, "params.%s: at most %zu bytes, no NUL", name,
                               cap - 1);
    memcpy(out, p->it.str, p->it.len);
    out[p->it.len] = '\0';
    return 0;
}

/* A bin32 key param; *present false when optional and absent. */
static int p_key(param *ps, size_t n, const char *name, uint8_t out[32], bool *present,
                 kabar_error *err)
{
    param *p = find(ps, n, name);
    if (present != NULL)
        *present = p != NULL && p->set;
    if (p == NULL || !p->set)
        return present ? 0 : kabar_error_set(err, KABAR_MISSING_FIELD, "params.%s: required", name);
    if (p->it.kind != MPR_BIN || p->it.len != 32)
        return kabar_error_set(err, KABAR_WRONG_TYPE,
                               "params.%s: a 32-byte Ed25519 public key (bin) is expected", name);
    memcpy(out, p->it.str, 32);
    return 0;
}

static int p_uint(param *ps, size_t n, const char *name, uint64_t *out, bool opt, kabar_error *err)
{
    param *p = find(ps, n, name);
    *out = 0;
    if (p == NULL || !p->set)
        return opt ? 0 : kabar_error_set(err, KABAR_MISSING_FIELD, "params.%s: required", name);
    if (p->it.kind != MPR_UINT)
        return kabar_error_set(err, KABAR_WRONG_TYPE, "params.%s: an unsigned integer is expected",
                               name);
    *out = p->it.u;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Packing                                                                  */

static int pk_str(msgpack_packer *pk, const char *s)
{
    return msgpack_pack_str_with_body(pk, s, strlen(s));
}

static int pk_bin(msgpack_packer *pk, const void *p, size_t n)
{
    return msgpack_pack_bin_with_body(pk, p, n);
}

static int pk_hashes(msgpack_packer *pk, const merkle_proof *pr)
{
    int rc = msgpack_pack_array(pk, (uint32_t)pr->len);
    for (size_t i = 0; i < pr->len && rc == 0; i++)
        rc = pk_bin(pk, pr->hash[i], 32);
    return rc;
}

static int begin(msgpack_packer *pk, kabar_buf *out, uint64_t req, uint32_t nkeys)
{
    out->len = 0;
    wire_packer_init(pk, out);
    int rc = msgpack_pack_array(pk, 4);
    rc = rc ? rc : msgpack_pack_uint64(pk, KABAR_PROTOCOL_VERSION);
    rc = rc ? rc : pk_str(pk, "RESULT");
    rc = rc ? rc : msgpack_pack_uint64(pk, req);
    return rc ? rc : msgpack_pack_map(pk, nkeys);
}

static int no_mem(int rc, kabar_error *err)
{
    return rc == 0 ? 0 : kabar_error_set(err, KABAR_NO_MEMORY, "cannot encode the result");
}

/* ------------------------------------------------------------------------ */
/* whoami                                                                   */

static int m_whoami(calls_env *env, msgpack_packer *pk, kabar_buf *out, uint64_t req,
                    kabar_error *err)
{
    const auth_principal *w = env->who;
    int rc = begin(pk, out, req, 4);
    rc = rc ? rc : pk_str(pk, "key_id") || pk_str(pk, w->key_id);
    rc = rc ? rc : pk_str(pk, "principal") || pk_str(pk, w->agency);
    rc = rc ? rc : pk_str(pk, "role") || pk_str(pk, auth_role_name(w->role));
    rc = rc ? rc : pk_str(pk, "secure");
    rc = rc ? rc : env->secure ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    return no_mem(rc, err);
}

/* ------------------------------------------------------------------------ */
/* The registry                                                             */

typedef struct keys_ctx {
    const char *agency;
    msgpack_packer *pk;
    uint32_t n;
    bool pack;
    int rc;
} keys_ctx;

static int agency_key(void *arg, const store_key *k)
{
    keys_ctx *x = arg;
    if (strcmp(k->agency, x->agency) != 0)
        return 0;
    x->n++;
    if (!x->pack)
        return 0;
    char id[KKEY_ID_TEXT];
    kkey_id_text(k->pk, id);
    bool revoked = k->revoked_at != INT64_MAX;
    msgpack_packer *pk = x->pk;
    int rc = msgpack_pack_map(pk, revoked ? 4 : 3);
    rc = rc ? rc : pk_str(pk, "key") || pk_bin(pk, k->pk, 32);
    rc = rc ? rc : pk_str(pk, "key_id") || pk_str(pk, id);
    if (revoked)
        rc = rc ? rc : pk_str(pk, "revoked_at") || wire_pack_time(pk, k->revoked_at);
    rc = rc ? rc : pk_str(pk, "valid_from") || wire_pack_time(pk, k->valid_from);
    return x->rc = rc;
}

/* The agency map of design45 section 4. */
static int pack_agency(store_reader *rd, msgpack_packer *pk, const store_agency *a,
                       kabar_error *err)
{
    keys_ctx x = {.agency = a->id, .pk = pk};
    int rc = store_key_each(rd, agency_key, &x, err);
    if (rc != 0)
        return rc;
    rc = msgpack_pack_map(pk, 7);
    rc = rc ? rc : pk_str(pk, "created_at") || wire_pack_time(pk, a->created_at);
    rc = rc ? rc : pk_str(pk, "id") || pk_str(pk, a->id);
    rc = rc ? rc : pk_str(pk, "keys") || msgpack_pack_array(pk, x.n);
    x.pack = true;
    x.n = 0;
    if (rc == 0 && (rc = store_key_each(rd, agency_key, &x, err)) != 0)
        return rc;
    rc = rc ? rc : x.rc;
    rc = rc ? rc : pk_str(pk, "name") || pk_str(pk, a->name);
    rc = rc ? rc : pk_str(pk, "org") || pk_str(pk, a->org);
    rc = rc ? rc : pk_str(pk, "region") || pk_str(pk, a->region);
    rc = rc ? rc : pk_str(pk, "role") || pk_str(pk, a->role);
    return no_mem(rc, err);
}

/* RESULT with one agency map (show, revoke_key, rotate_key). */
static int result_agency(calls_env *env, msgpack_packer *pk, kabar_buf *out, uint64_t req,
                         const char *id, kabar_error *err)
{
    store_agency a;
    int rc = store_agency_get(env->rd, id, &a, err);
    if (rc == KABAR_NOT_FOUND)
        return kabar_error_set(err, KABAR_NOT_FOUND,
                               "no agency %s in the registry (see agency.list)", id);
    if (rc != 0)
        return rc;
    out->len = 0;
    wire_packer_init(pk, out);
    rc = msgpack_pack_array(pk, 4);
    rc = rc ? rc : msgpack_pack_uint64(pk, KABAR_PROTOCOL_VERSION);
    rc = rc ? rc : pk_str(pk, "RESULT");
    rc = rc ? rc : msgpack_pack_uint64(pk, req);
    if (rc != 0)
        return no_mem(rc, err);
    return pack_agency(env->rd, pk, &a, err);
}

typedef struct list_ctx {
    store_reader *rd;
    msgpack_packer *pk;
    uint32_t n;
    bool pack;
    kabar_error *err;
} list_ctx;

static int list_one(void *arg, const store_agency *a)
{
    list_ctx *x = arg;
    x->n++;
    return x->pack ? pack_agency(x->rd, x->pk, a, x->err) : 0;
}

static int m_list(calls_env *env, msgpack_packer *pk, kabar_buf *out, uint64_t req,
                  kabar_error *err)
{
    list_ctx x = {.rd = env->rd, .pk = pk, .err = err};
    int rc = store_agency_each(env->rd, list_one, &x, err);
    if (rc != 0)
        return rc;
    rc = begin(pk, out, req, 1);
    rc = rc ? rc : pk_str(pk, "agencies") || msgpack_pack_array(pk, x.n);
    if (rc != 0)
        return no_mem(rc, err);
    x.pack = true;
    return store_agency_each(env->rd, list_one, &x, err);
}

bool calls_changes_registry(const char *method, size_t len)
{
    static const char *const changes[] = {"agency.add", "agency.revoke_key", "agency.rotate_key"};
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++)
        if (len == strlen(changes[i]) && memcmp(method, changes[i], len) == 0)
            return true;
    return false;
}

int calls_change_time(calls_env *env, int64_t *at, kabar_error *err)
{
    *at = env->now;
    uint64_t head = store_reader_head(env->rd);
    if (head == 0)
        return 0;
    store_record rec;
    int rc = store_get(env->rd, head, &rec, err);
    if (rc != 0)
        return rc;
    if (rec.received_at < INT64_MAX && rec.received_at + 1 > *at)
        *at = rec.received_at + 1;
    return 0;
}

/*
 * After a registry write: see it, and reload the cache. When the reload
 * fails the cache is emptied (fail closed) and the failure logged; the
 * server retries (env->reload_failed).
 */
static int reload(calls_env *env, kabar_error *err)
{
    kabar_error e;
    int rc = store_reader_refresh(env->rd, &e);
    rc = rc ? rc : auth_load(env->au, env->rd, &e);
    if (rc == 0)
        return 0;
    auth_clear(env->au);
    env->reload_failed = true;
    klog(KLOG_ERROR, "KABARD-REGISTRY-FAIL",
         "a registry change was stored but the registry cannot be reloaded: %s: %s; nobody is "
         "admitted until it can be (kabard retries every second)",
         kabar_errname(rc), e.message);
    return kabar_error_set(err, rc,
                           "the change is stored, but kabard cannot reload its registry (%s): "
                           "nobody is admitted until it can; see the broker's log",
                           e.message);
}

/* Store one registry change (one transaction), then reload the cache. */
static int apply(calls_env *env, const store_agency *a, const store_key *keys, size_t n, int64_t at,
                 kabar_error *err)
{
    int rc = store_registry_apply(env->st, a, keys, n, err);
    if (rc != 0)
        return rc;
    env->changed_at = at;
    return reload(env, err);
}

static int key_free(calls_env *env, const uint8_t pk[32], kabar_error *err)
{
    store_key k;
    kabar_error e;
    if (store_key_get(env->rd, pk, &k, &e) != 0)
        return 0;
    char id[KKEY_ID_TEXT];
    kkey_id_text(pk, id);
    return kabar_error_set(err, KABAR_BAD_VALUE,
                           "key %s is already registered (to agency %s); a key belongs to one "
                           "agency, generate another with kabar keygen",
                           id, k.agency);
}

/* A new key of `agency`, valid from `at`. */
static store_key new_key(const char *agency, const uint8_t pk[32], int64_t at)
{
    store_key k = {.valid_from = at, .revoked_at = INT64_MAX};
    memcpy(k.pk, pk, 32);
    snprintf(k.agency, sizeof k.agency, "%s", agency);
    return k;
}

static int m_add(calls_env *env, param *ps, size_t n, msgpack_packer *pk, kabar_buf *out,
                 uint64_t req, kabar_error *err)
{
    store_agency a;
    memset(&a, 0, sizeof a);
    uint8_t key[32];
    int rc = p_str(ps, n, "id", a.id, sizeof a.id, false, err);
    rc = rc ? rc : p_str(ps, n, "name", a.name, sizeof a.name, false, err);
    rc = rc ? rc : p_str(ps, n, "region", a.region, sizeof a.region, true, err);
    rc = rc ? rc : p_str(ps, n, "org", a.org, sizeof a.org, true, err);
    rc = rc ? rc : p_str(ps, n, "role", a.role, sizeof a.role, false, err);
    rc = rc ? rc : p_key(ps, n, "key", key, NULL, err);
    if (rc != 0)
        return rc;
    if (!kabar_agency_valid(a.id, strlen(a.id)))
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "params.id: %s is not an agency id (a-z, 0-9 and '-', 2 to 32)",
                               a.id);
    if (auth_role_parse(a.role) == AUTH_NONE)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "params.role: %s is not agent, oversight, auditor or admin", a.role);
    store_agency old;
    if (store_agency_get(env->rd, a.id, &old, err) == 0)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "agency %s is already registered: add a key with agency.rotate_key",
                               a.id);
    int64_t at;
    if ((rc = key_free(env, key, err)) != 0 || (rc = calls_change_time(env, &at, err)) != 0)
        return rc;
    store_key k = new_key(a.id, key, at);
    a.created_at = at;
    if ((rc = apply(env, &a, &k, 1, at, err)) != 0)
        return rc;
    rc = begin(pk, out, req, 1);
    rc = rc ? rc : pk_str(pk, "id") || pk_str(pk, a.id);
    return no_mem(rc, err);
}

/* `pk` of agency `id` as stored, revoked at `at`: it must be the agency's and valid. */
static int revoked_key(calls_env *env, const char *id, const uint8_t pk[32], int64_t at,
                       const char *what, store_key *k, kabar_error *err)
{
    char kid[KKEY_ID_TEXT];
    kkey_id_text(pk, kid);
    if (store_key_get(env->rd, pk, k, err) != 0 || strcmp(k->agency, id) != 0)
        return kabar_error_set(err, KABAR_NOT_FOUND,
                               "%s: agency %s has no key %s (see agency.show)", what, id, kid);
    if (k->revoked_at != INT64_MAX)
        return kabar_error_set(err, KABAR_BAD_VALUE, "%s: key %s of agency %s is already revoked",
                               what, kid, id);
    k->revoked_at = at < k->valid_from ? k->valid_from : at;
    return 0;
}

static int m_revoke(calls_env *env, param *ps, size_t n, msgpack_packer *pk, kabar_buf *out,
                    uint64_t req, kabar_error *err)
{
    char id[KABAR_MAX_AGENCY_LEN + 1];
    uint8_t key[32];
    store_key k;
    int64_t at = 0;
    int rc = p_str(ps, n, "id", id, sizeof id, false, err);
    rc = rc ? rc : p_key(ps, n, "key", key, NULL, err);
    rc = rc ? rc : calls_change_time(env, &at, err);
    rc = rc ? rc : revoked_key(env, id, key, at, "params.key", &k, err);
    rc = rc ? rc : apply(env, NULL, &k, 1, at, err);
    return rc ? rc : result_agency(env, pk, out, req, id, err);
}

static int m_rotate(calls_env *env, param *ps, size_t n, msgpack_packer *pk, kabar_buf *out,
                    uint64_t req, kabar_error *err)
{
    char id[KABAR_MAX_AGENCY_LEN + 1];
    uint8_t key[32], old[32];
    bool has_old = false;
    store_agency a;
    int64_t at = 0;
    int rc = p_str(ps, n, "id", id, sizeof id, false, err);
    rc = rc ? rc : p_key(ps, n, "key", key, NULL, err);
    rc = rc ? rc : p_key(ps, n, "old", old, &has_old, err);
    if (rc != 0)
        return rc;
    if (store_agency_get(env->rd, id, &a, err) != 0)
        return kabar_error_set(err, KABAR_NOT_FOUND,
                               "no agency %s in the registry (add it with agency.add)", id);
    if ((rc = key_free(env, key, err)) != 0 || (rc = calls_change_time(env, &at, err)) != 0)
        return rc;
    store_key keys[2] = {new_key(id, key, at)};
    if (has_old && (rc = revoked_key(env, id, old, at, "params.old", &keys[1], err)) != 0)
        return rc;
    if ((rc = apply(env, NULL, keys, has_old ? 2 : 1, at, err)) != 0)
        return rc;
    return result_agency(env, pk, out, req, id, err);
}

/* ------------------------------------------------------------------------ */
/* Audit                                                                    */

/*
 * {"new": true} makes a checkpoint of the head first, at most one per
 * CKPT_DEMAND_MS for everybody (ckpt_demand_take); otherwise, or within
 * that time, the latest stored one is returned. "fresh" says whether the
 * note returned is of the tree at the head now.
 */
static int m_checkpoint(calls_env *env, param *ps, size_t n, msgpack_packer *pk, kabar_buf *out,
                        uint64_t req, kabar_error *err)
{
    param *p = find(ps, n, "new");
    bool want = p != NULL && p->set && p->it.kind == MPR_BOOL && p->it.b;
    kabar_buf note = {0};
    uint64_t size = 0, head = store_reader_head(env->rd);
    int rc;
    if (want && head > ckpt_last_size(env->ck) && ckpt_demand_take(env->ck, env->mono_ms)) {
        rc = ckpt_make(env->ck, env->st, env->rd, env->mono_ms, &note, &size, err);
        rc = rc ? rc : store_reader_refresh(env->rd, err); /* later calls see it */
    } else if ((rc = store_reader_refresh(env->rd, err)) == 0)
        rc = store_checkpoint_get(env->rd, 0, &note, &size, err);
    if (rc == KABAR_NOT_FOUND)
        rc = kabar_error_set(err, KABAR_NOT_FOUND, "no checkpoint yet: %s",
                             head == 0 ? "the log is empty"
                             : want    ? "one was asked for less than a second ago; ask again"
                                       : "none was made (ask with {\"new\": true})");
    if (rc == 0) {
        rc = begin(pk, out, req, 3);
        rc = rc ? rc : pk_str(pk, "fresh");
        rc = rc ? rc : size >= head ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
        rc = rc ? rc : pk_str(pk, "note") || msgpack_pack_str_with_body(pk, note.data, note.len);
        rc = rc ? rc : pk_str(pk, "size") || msgpack_pack_uint64(pk, size);
        rc = no_mem(rc, err);
    }
    kabar_buf_free(&note);
    return rc;
}

typedef struct notes_ctx {
    msgpack_packer *pk;
    uint32_t n;
    bool pack;
} notes_ctx;

static int note_one(void *arg, uint64_t size, const char *note, size_t len)
{
    notes_ctx *x = arg;
    x->n++;
    return x->pack ? msgpack_pack_str_with_body(x->pk, note, len) : 0;
}

static int m_checkpoints(calls_env *env, msgpack_packer *pk, kabar_buf *out, uint64_t req,
                         kabar_error *err)
{
    notes_ctx x = {.pk = pk};
    int rc = store_checkpoint_each(env->rd, note_one, &x, err);
    if (rc != 0)
        return rc;
    rc = begin(pk, out, req, 1);
    rc = rc ? rc : pk_str(pk, "notes") || msgpack_pack_array(pk, x.n);
    if (rc != 0)
        return no_mem(rc, err);
    x.pack = true;
    rc = store_checkpoint_each(env->rd, note_one, &x, err);
    return rc < 0 ? no_mem(rc, err) : rc;
}

/* size 0: the latest checkpoint's size. */
static int resolve_size(calls_env *env, uint64_t *size, kabar_error *err)
{
    if (*size != 0)
        return 0;
    kabar_buf note = {0};
    int rc = store_checkpoint_get(env->rd, 0, &note, size, err);
    kabar_buf_free(&note);
    if (rc == KABAR_NOT_FOUND)
        return kabar_error_set(err, KABAR_NOT_FOUND,
                               "no checkpoint yet: pass a size, or make one (audit.checkpoint "
                               "{\"new\": true})");
    return rc;
}

static int m_prove(calls_env *env, param *ps, size_t n, msgpack_packer *pk, kabar_buf *out,
                   uint64_t req, kabar_error *err)
{
    uint64_t seq, size;
    int rc = p_uint(ps, n, "seq", &seq, false, err);
    rc = rc ? rc : p_uint(ps, n, "size", &size, true, err);
    rc = rc ? rc : resolve_size(env, &size, err);
    if (rc != 0)
        return rc;
    uint64_t head = store_reader_head(env->rd);
    if (seq == 0 || seq > size || size > head)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "seq %" PRIu64 " is not in the tree of size %" PRIu64
                               " (1 <= seq <= size <= head %" PRIu64 ")",
                               seq, size, head);
    store_record rec;
    merkle_proof proof;
    uint8_t root[32], leaf[32];
    merkle_store ms = store_merkle(env->rd);
    if ((rc = store_get(env->rd, seq, &rec, err)) != 0 ||
        (rc = merkle_inclusion_proof(&ms, seq - 1, size, &proof, err)) != 0 ||
        (rc = store_root(env->rd, size, root, err)) != 0)
        return rc;
    merkle_leaf_hash(rec.raw, rec.raw_len, leaf);
    rc = begin(pk, out, req, 6);
    rc = rc ? rc : pk_str(pk, "leaf_hash") || pk_bin(pk, leaf, 32);
    rc = rc ? rc : pk_str(pk, "proof") || pk_hashes(pk, &proof);
    rc = rc ? rc : pk_str(pk, "record") || pk_bin(pk, rec.raw, rec.raw_len);
    rc = rc ? rc : pk_str(pk, "root") || pk_bin(pk, root, 32);
    rc = rc ? rc : pk_str(pk, "seq") || msgpack_pack_uint64(pk, seq);
    rc = rc ? rc : pk_str(pk, "size") || msgpack_pack_uint64(pk, size);
    return no_mem(rc, err);
}

static int m_consistency(calls_env *env, param *ps, size_t n, msgpack_packer *pk, kabar_buf *out,
                         uint64_t req, kabar_error *err)
{
    uint64_t o, nw;
    int rc = p_uint(ps, n, "old", &o, false, err);
    rc = rc ? rc : p_uint(ps, n, "new", &nw, false, err);
    if (rc != 0)
        return rc;
    uint64_t head = store_reader_head(env->rd);
    if (o > nw || nw > head)
        return kabar_error_set(
            err, KABAR_BAD_VALUE,
            "sizes %" PRIu64 " and %" PRIu64 ": need old <= new <= head %" PRIu64, o, nw, head);
    merkle_proof proof;
    uint8_t r1[32], r2[32];
    merkle_store ms = store_merkle(env->rd);
    if ((rc = merkle_consistency_proof(&ms, o, nw, &proof, err)) != 0 ||
        (rc = store_root(env->rd, o, r1, err)) != 0 || (rc = store_root(env->rd, nw, r2, err)) != 0)
        return rc;
    rc = begin(pk, out, req, 5);
    rc = rc ? rc : pk_str(pk, "new") || msgpack_pack_uint64(pk, nw);
    rc = rc ? rc : pk_str(pk, "new_root") || pk_bin(pk, r2, 32);
    rc = rc ? rc : pk_str(pk, "old") || msgpack_pack_uint64(pk, o);
    rc = rc ? rc : pk_str(pk, "old_root") || pk_bin(pk, r1, 32);
    rc = rc ? rc : pk_str(pk, "proof") || pk_hashes(pk, &proof);
    return no_mem(rc, err);
}

static int m_batch(calls_env *env, param *ps, size_t n, msgpack_packer *pk, kabar_buf *out,
                   uint64_t req, kabar_error *err)
{
    uint64_t id;
    store_batch b;
    int rc = p_uint(ps, n, "id", &id, false, err);
    rc = rc ? rc : store_batch_get(env->rd, id, &b, err);
    if (rc == KABAR_NOT_FOUND)
        return kabar_error_set(err, KABAR_NOT_FOUND, "no signed batch %" PRIu64, id);
    if (rc != 0)
        return rc;
    rc = begin(pk, out, req, 4);
    rc = rc ? rc : pk_str(pk, "id") || msgpack_pack_uint64(pk, id);
    rc = rc ? rc : pk_str(pk, "key") || pk_bin(pk, b.key, 32);
    rc = rc ? rc : pk_str(pk, "leaves") || msgpack_pack_array(pk, b.n);
    for (uint32_t i = 0; i < b.n && rc == 0; i++)
        rc = pk_bin(pk, b.leaves + 32 * (size_t)i, 32);
    rc = rc ? rc : pk_str(pk, "sig") || pk_bin(pk, b.sig, 64);
    return no_mem(rc, err);
}

static int m_records(calls_env *env, param *ps, size_t n, msgpack_packer *pk, kabar_buf *out,
                     uint64_t req, kabar_error *err)
{
    uint64_t from, max;
    int rc = p_uint(ps, n, "from", &from, false, err);
    rc = rc ? rc : p_uint(ps, n, "max", &max, true, err);
    if (rc != 0)
        return rc;
    if (from == 0)
        from = 1;
    if (max == 0 || max > RECORDS_MAX)
        max = RECORDS_MAX;
    uint64_t head = store_reader_head(env->rd), count = 0;
    size_t bytes = 0;
    /* First pass: how many fit in RECORDS_MAX_BYTES (the array's count goes first). */
    for (uint64_t s = from; s <= head && count < max; s++, count++) {
        store_record rec;
        if ((rc = store_get(env->rd, s, &rec, err)) != 0)
            return rc;
        if (count > 0 && bytes + rec.raw_len > RECORDS_MAX_BYTES)
            break;
        bytes += rec.raw_len;
    }
    rc = begin(pk, out, req, 2);
    rc = rc ? rc : pk_str(pk, "from") || msgpack_pack_uint64(pk, from);
    rc = rc ? rc : pk_str(pk, "records") || msgpack_pack_array(pk, (uint32_t)count);
    for (uint64_t i = 0; i < count && rc == 0; i++) {
        store_record rec;
        if (store_get(env->rd, from + i, &rec, err) != 0)
            return err->code;
        rc = pk_bin(pk, rec.raw, rec.raw_len);
    }
    return no_mem(rc, err);
}

/* ------------------------------------------------------------------------ */
/* Dispatch                                                                 */

static bool is(const char *m, size_t len, const char *name)
{
    return strlen(name) == len && memcmp(m, name, len) == 0;
}

int calls_run(calls_env *env, uint64_t req, const char *m, size_t mlen, const uint8_t *params,
              size_t plen, kabar_buf *out, kabar_error *err)
{
    char what[64];
    snprintf(what, sizeof what, "CALL %.*s", (int)(mlen < 40 ? mlen : 40), m);
    int rc = auth_check_call(env->who, m, mlen);
    if (rc == KABAR_UNKNOWN_METHOD)
        return kabar_error_set(err, rc,
                               "no method %.*s (whoami, agency.add|list|show|revoke_key|"
                               "rotate_key, audit.checkpoint|checkpoints|prove|consistency|"
                               "batch|records)",
                               (int)(mlen < 40 ? mlen : 40), m);
    if (rc != 0) {
        auth_refused(env->au, env->who, rc, what, env->mono_ms);
        return kabar_error_set(err, rc, "%s: %s may not call it (role %s)", what,
                               env->who->user_id[0] ? env->who->user_id : "anonymous",
                               auth_role_name(env->who->role));
    }
    param ps[] = {{.name = "from"}, {.name = "id"},  {.name = "key"},    {.name = "max"},
                  {.name = "name"}, {.name = "new"}, {.name = "old"},    {.name = "org"},
                  {.name = "role"}, {.name = "seq"}, {.name = "region"}, {.name = "size"}};
    size_t n = sizeof ps / sizeof ps[0];
    /* audit.consistency's "old"/"new" are uints; rotate's "old" a key: read as they come. */
    if ((rc = params_read(params, plen, ps, n, err)) != 0)
        return rc;
    msgpack_packer pk;
    if (is(m, mlen, "whoami"))
        return m_whoami(env, &pk, out, req, err);
    if (is(m, mlen, "agency.add"))
        return m_add(env, ps, n, &pk, out, req, err);
    if (is(m, mlen, "agency.list"))
        return m_list(env, &pk, out, req, err);
    if (is(m, mlen, "agency.show")) {
        char id[KABAR_MAX_AGENCY_LEN + 1];
        rc = p_str(ps, n, "id", id, sizeof id, false, err);
        return rc ? rc : result_agency(env, &pk, out, req, id, err);
    }
    if (is(m, mlen, "agency.revoke_key"))
        return m_revoke(env, ps, n, &pk, out, req, err);
    if (is(m, mlen, "agency.rotate_key"))
        return m_rotate(env, ps, n, &pk, out, req, err);
    if (is(m, mlen, "audit.checkpoint"))
        return m_checkpoint(env, ps, n, &pk, out, req, err);
    if (is(m, mlen, "audit.checkpoints"))
        return m_checkpoints(env, &pk, out, req, err);
    if (is(m, mlen, "audit.prove"))
        return m_prove(env, ps, n, &pk, out, req, err);
    if (is(m, mlen, "audit.consistency"))
        return m_consistency(env, ps, n, &pk, out, req, err);
    if (is(m, mlen, "audit.batch"))
        return m_batch(env, ps, n, &pk, out, req, err);
    return m_records(env, ps, n, &pk, out, req, err);
}
