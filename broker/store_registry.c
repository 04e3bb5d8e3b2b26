/*
 * store_registry.c - the registry of principals in the log's environment
 * (contract: store.h; layout: docs/STORAGE.md): agencies and their Ed25519
 * keys. Each put is a durable transaction of its own (store__update), and so
 * is store_registry_apply's whole change (an agency with its first key, a
 * new key with the revocation of the old): all of it is stored or none.
 * kabard loads the registry into memory at start and after each change.
 *
 * Values are canonical msgpack maps (keys in mpr_key_order), so that a
 * verifier reading the raw database sees one encoding per content. Readers
 * skip keys they do not know, so later versions may add some.
 *
 * Keys are never deleted and a revocation is never undone: an auditor
 * re-checking an event signed years ago needs the key and the time it
 * stopped being valid, as they were.
 */
#include <stdio.h>
#include <string.h>

#include "kkey.h"
#include "mpr.h"
#include "store_internal.h"

static const char *const ROLES[] = {"agent", "oversight", "auditor", "admin"};

/* A NUL-terminated string of at most max bytes inside its array of max + 1. */
static bool field_ok(const char *s, size_t max, bool empty_ok)
{
    size_t n = strnlen(s, max + 1);
    return n <= max && (empty_ok || n > 0);
}

static bool role_ok(const char *role)
{
    for (size_t i = 0; i < sizeof ROLES / sizeof ROLES[0]; i++) {
        if (strcmp(role, ROLES[i]) == 0)
            return true;
    }
    return false;
}

static int pack_str(msgpack_packer *pk, const char *s)
{
    return msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* Copy a str item into a char array of cap bytes; false when it does not fit. */
static bool copy_item(char *dst, size_t cap, const mpr_item *it)
{
    if (it->kind != MPR_STR || it->len >= cap || memchr(it->str, 0, it->len) != NULL)
        return false;
    memcpy(dst, it->str, it->len);
    dst[it->len] = '\0';
    return true;
}

#define KEY_IS(k, s) ((k).len == sizeof(s) - 1 && memcmp((k).str, s, (k).len) == 0)

/* ------------------------------------------------------------------------ */
/* Agencies                                                                 */

static int agency_parse(const MDB_val *k, const MDB_val *v, store_agency *a)
{
    memset(a, 0, sizeof *a);
    if (k->mv_size == 0 || k->mv_size > KABAR_MAX_AGENCY_LEN)
        return STORE_BADREC;
    memcpy(a->id, k->mv_data, k->mv_size);
    mpr r;
    mpr_item it, key;
    mpr_init(&r, v->mv_data, v->mv_size);
    r.canonical = false;
    if (mpr_next(&r, &it, NULL) != 0 || it.kind != MPR_MAP)
        return STORE_BADREC;
    for (uint32_t i = 0, n = it.count; i < n; i++) {
        if (mpr_next(&r, &key, NULL) != 0 || key.kind != MPR_STR)
            return STORE_BADREC;
        bool ok;
        if (KEY_IS(key, "created_at")) {
            ok = mpr_next(&r, &it, NULL) == 0 && it.kind == MPR_TIMESTAMP;
            a->created_at = it.i;
        } else if (KEY_IS(key, "name")) {
            ok = mpr_next(&r, &it, NULL) == 0 && copy_item(a->name, sizeof a->name, &it);
        } else if (KEY_IS(key, "org")) {
            ok = mpr_next(&r, &it, NULL) == 0 && copy_item(a->org, sizeof a->org, &it);
        } else if (KEY_IS(key, "region")) {
            ok = mpr_next(&r, &it, NULL) == 0 && copy_item(a->region, sizeof a->region, &it);
        } else if (KEY_IS(key, "role")) {
            ok = mpr_next(&r, &it, NULL) == 0 && copy_item(a->role, sizeof a->role, &it);
        } else {
            ok = mpr_skip(&r, KABAR_MAX_DEPTH + 1, NULL) == 0;
        }
        if (!ok)
            return STORE_BADREC;
    }
    return 0;
}

static int agency_txn(store *s, MDB_txn *txn, void *arg, kabar_error *err)
{
    const store_agency *a = arg;
    MDB_val k = {strlen(a->id), (void *)a->id}, v;
    int64_t created = a->created_at;
    int rc = mdb_get(txn, s->dbi[DB_AGENCIES], &k, &v);
    if (rc == 0 && created == 0) {
        store_agency old;
        if ((rc = agency_parse(&k, &v, &old)) != 0)
            return rc;
        created = old.created_at;
    } else if (rc != 0 && rc != MDB_NOTFOUND) {
        return rc;
    }
    if (created == 0)
        created = kabar_now();
    msgpack_sbuffer_clear(&s->scratch);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s->scratch, msgpack_sbuffer_write);
    if (msgpack_pack_map(&pk, 5) != 0 || pack_str(&pk, "created_at") != 0 ||
        store__ts_pack(&pk, created) != 0 || pack_str(&pk, "name") != 0 ||
        pack_str(&pk, a->name) != 0 || pack_str(&pk, "org") != 0 || pack_str(&pk, a->org) != 0 ||
        pack_str(&pk, "region") != 0 || pack_str(&pk, a->region) != 0 ||
        pack_str(&pk, "role") != 0 || pack_str(&pk, a->role) != 0) {
        kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
        return STORE_KERR;
    }
    v = (MDB_val){s->scratch.size, s->scratch.data};
    return mdb_put(txn, s->dbi[DB_AGENCIES], &k, &v, 0);
}

/* 0, or KABAR_INVALID_ARGUMENT naming the bad field. */
static int agency_check(const store_agency *a, kabar_error *err)
{
    const char *bad = NULL;
    if (!field_ok(a->id, KABAR_MAX_AGENCY_LEN, false) || !kabar_agency_valid(a->id, strlen(a->id)))
        bad = "id (2 to 32 of a-z, 0-9 and -)";
    else if (!field_ok(a->name, sizeof a->name - 1, false))
        bad = "name (1 to 128 bytes)";
    else if (!field_ok(a->region, sizeof a->region - 1, true))
        bad = "region (at most 32 bytes)";
    else if (!field_ok(a->org, sizeof a->org - 1, true))
        bad = "org (at most 64 bytes)";
    else if (!field_ok(a->role, sizeof a->role - 1, false) || !role_ok(a->role))
        bad = "role (agent, oversight, auditor or admin)";
    if (bad != NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "agency %.40s: bad %s",
                               field_ok(a->id, KABAR_MAX_AGENCY_LEN, false) ? a->id : "?", bad);
    return 0;
}

int store_agency_put(store *s, const store_agency *a, kabar_error *err)
{
    if (a == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "store_agency_put: no agency");
    return store_registry_apply(s, a, NULL, 0, err);
}

int store_agency_get(store_reader *r, const char *id, store_agency *a, kabar_error *err)
{
    if (r == NULL || id == NULL || a == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "store_agency_get: no reader");
    int rc = store__reader_ready(r, err);
    if (rc != 0)
        return rc;
    size_t n = strlen(id);
    MDB_val k = {n, (void *)id}, v;
    rc = n == 0 || n > KABAR_MAX_AGENCY_LEN ? MDB_NOTFOUND
                                            : mdb_get(r->txn, r->s->dbi[DB_AGENCIES], &k, &v);
    if (rc == MDB_NOTFOUND)
        return kabar_error_set(err, KABAR_NOT_FOUND, "no agency '%.40s' in the registry", id);
    if (rc == 0)
        rc = agency_parse(&k, &v, a);
    return rc != 0 ? store__fail(r->s, rc, "cannot read", err) : 0;
}

int store_agency_each(store_reader *r, int (*fn)(void *arg, const store_agency *a), void *arg,
                      kabar_error *err)
{
    if (r == NULL || fn == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "store_agency_each: no reader");
    int rc = store__reader_ready(r, err);
    if (rc != 0)
        return rc;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(r->txn, r->s->dbi[DB_AGENCIES], &cur)) != 0)
        return store__fail(r->s, rc, "cannot read", err);
    MDB_val k, v;
    int stop = 0;
    while (stop == 0 && (rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        store_agency a;
        if ((rc = agency_parse(&k, &v, &a)) != 0)
            break;
        stop = fn(arg, &a);
    }
    mdb_cursor_close(cur);
    if (stop != 0)
        return stop;
    return rc != MDB_NOTFOUND ? store__fail(r->s, rc, "cannot read", err) : 0;
}

/* ------------------------------------------------------------------------ */
/* Keys                                                                     */

static int key_parse(const MDB_val *k, const MDB_val *v, store_key *out)
{
    memset(out, 0, sizeof *out);
    out->revoked_at = INT64_MAX;
    if (k->mv_size != 32)
        return STORE_BADREC;
    memcpy(out->pk, k->mv_data, 32);
    mpr r;
    mpr_item it, key;
    mpr_init(&r, v->mv_data, v->mv_size);
    r.canonical = false;
    if (mpr_next(&r, &it, NULL) != 0 || it.kind != MPR_MAP)
        return STORE_BADREC;
    bool agency = false, from = false;
    for (uint32_t i = 0, n = it.count; i < n; i++) {
        if (mpr_next(&r, &key, NULL) != 0 || key.kind != MPR_STR)
            return STORE_BADREC;
        bool ok;
        if (KEY_IS(key, "agency")) {
            ok = agency = mpr_next(&r, &it, NULL) == 0 &&
                          copy_item(out->agency, sizeof out->agency, &it) && it.len > 0;
        } else if (KEY_IS(key, "valid_from") || KEY_IS(key, "revoked_at")) {
            ok = mpr_next(&r, &it, NULL) == 0 && it.kind == MPR_TIMESTAMP;
            if (KEY_IS(key, "valid_from")) {
                out->valid_from = it.i;
                from = true;
            } else {
                out->revoked_at = it.i;
            }
        } else {
            ok = mpr_skip(&r, KABAR_MAX_DEPTH + 1, NULL) == 0;
        }
        if (!ok)
            return STORE_BADREC;
    }
    return agency && from ? 0 : STORE_BADREC;
}

static int key_txn(store *s, MDB_txn *txn, void *arg, kabar_error *err)
{
    const store_key *nk = arg;
    char kid[17];
    kkey_id_text(nk->pk, kid);
    MDB_val ak = {strlen(nk->agency), (void *)nk->agency}, v;
    int rc = mdb_get(txn, s->dbi[DB_AGENCIES], &ak, &v);
    if (rc == MDB_NOTFOUND) {
        kabar_error_set(err, KABAR_NOT_FOUND,
                        "cannot register key %s: no agency '%s' in the registry (add the agency "
                        "first)",
                        kid, nk->agency);
        return STORE_KERR;
    }
    if (rc != 0)
        return rc;
    MDB_val k = {32, (void *)nk->pk};
    rc = mdb_get(txn, s->dbi[DB_KEYS], &k, &v);
    if (rc == 0) {
        store_key old;
        if ((rc = key_parse(&k, &v, &old)) != 0)
            return rc;
        const char *why = NULL;
        if (strcmp(old.agency, nk->agency) != 0)
            why = "it belongs to another agency";
        else if (old.valid_from != nk->valid_from)
            why = "its valid_from cannot change";
        else if (old.revoked_at != INT64_MAX && old.revoked_at != nk->revoked_at)
            why = "it is already revoked (a revocation is final)";
        if (why != NULL) {
            kabar_error_set(err, KABAR_INVALID_ARGUMENT, "cannot store key %s for %s: %s%s%s", kid,
                            nk->agency, why, strcmp(old.agency, nk->agency) != 0 ? ", " : "",
                            strcmp(old.agency, nk->agency) != 0 ? old.agency : "");
            return STORE_KERR;
        }
        if (old.revoked_at == nk->revoked_at)
            return 0; /* nothing to change */
    } else if (rc != MDB_NOTFOUND) {
        return rc;
    }
    bool revoked = nk->revoked_at != INT64_MAX;
    msgpack_sbuffer_clear(&s->scratch);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s->scratch, msgpack_sbuffer_write);
    int bad = msgpack_pack_map(&pk, revoked ? 3 : 2) != 0 || pack_str(&pk, "agency") != 0 ||
              pack_str(&pk, nk->agency) != 0;
    if (!bad && revoked)
        bad = pack_str(&pk, "revoked_at") != 0 || store__ts_pack(&pk, nk->revoked_at) != 0;
    if (!bad)
        bad = pack_str(&pk, "valid_from") != 0 || store__ts_pack(&pk, nk->valid_from) != 0;
    if (bad) {
        kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
        return STORE_KERR;
    }
    v = (MDB_val){s->scratch.size, s->scratch.data};
    return mdb_put(txn, s->dbi[DB_KEYS], &k, &v, 0);
}

static int key_check(const store_key *k, kabar_error *err)
{
    if (!field_ok(k->agency, KABAR_MAX_AGENCY_LEN, false) ||
        !kabar_agency_valid(k->agency, strlen(k->agency)))
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "store_key_put: the key's agency is not an agency id");
    if (k->revoked_at < k->valid_from)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "cannot store a key of %s revoked before it became valid",
                               k->agency);
    return 0;
}

int store_key_put(store *s, const store_key *k, kabar_error *err)
{
    if (k == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "store_key_put: no key");
    return store_registry_apply(s, NULL, k, 1, err);
}

/* ------------------------------------------------------------------------ */
/* One change of several records                                           */

typedef struct apply_arg {
    const store_agency *a;
    const store_key *keys;
    size_t n;
} apply_arg;

static int apply_txn(store *s, MDB_txn *txn, void *arg, kabar_error *err)
{
    const apply_arg *x = arg;
    int rc = x->a != NULL ? agency_txn(s, txn, (void *)x->a, err) : 0;
    for (size_t i = 0; i < x->n && rc == 0; i++)
        rc = key_txn(s, txn, (void *)&x->keys[i], err);
    return rc;
}

int store_registry_apply(store *s, const store_agency *a, const store_key *keys, size_t n,
                         kabar_error *err)
{
    if (s == NULL || (a == NULL && n == 0) || (n > 0 && keys == NULL))
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "store_registry_apply: nothing to do");
    if (n > STORE_REGISTRY_APPLY_MAX)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "store_registry_apply: %zu keys, at most %d in one change", n,
                               STORE_REGISTRY_APPLY_MAX);
    int rc = a != NULL ? agency_check(a, err) : 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = key_check(&keys[i], err);
    for (size_t i = 0; i < n && rc == 0; i++)
        for (size_t j = 0; j < i && rc == 0; j++)
            if (memcmp(keys[i].pk, keys[j].pk, 32) == 0)
                rc = kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                                     "store_registry_apply: the same key twice in one change");
    if (rc != 0)
        return rc;
    apply_arg x = {a, keys, n};
    return store__update(s, apply_txn, &x, err);
}

int store_key_get(store_reader *r, const uint8_t pk[32], store_key *k, kabar_error *err)
{
    if (r == NULL || pk == NULL || k == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "store_key_get: no reader");
    int rc = store__reader_ready(r, err);
    if (rc != 0)
        return rc;
    MDB_val key = {32, (void *)pk}, v;
    rc = mdb_get(r->txn, r->s->dbi[DB_KEYS], &key, &v);
    if (rc == MDB_NOTFOUND) {
        char kid[17];
        kkey_id_text(pk, kid);
        return kabar_error_set(err, KABAR_NOT_FOUND, "key %s is not in the registry", kid);
    }
    if (rc == 0)
        rc = key_parse(&key, &v, k);
    return rc != 0 ? store__fail(r->s, rc, "cannot read", err) : 0;
}

int store_key_each(store_reader *r, int (*fn)(void *arg, const store_key *k), void *arg,
                   kabar_error *err)
{
    if (r == NULL || fn == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "store_key_each: no reader");
    int rc = store__reader_ready(r, err);
    if (rc != 0)
        return rc;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(r->txn, r->s->dbi[DB_KEYS], &cur)) != 0)
        return store__fail(r->s, rc, "cannot read", err);
    MDB_val k, v;
    int stop = 0;
    while (stop == 0 && (rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) == 0) {
        store_key key;
        if ((rc = key_parse(&k, &v, &key)) != 0)
            break;
        stop = fn(arg, &key);
    }
    mdb_cursor_close(cur);
    if (stop != 0)
        return stop;
    return rc != MDB_NOTFOUND ? store__fail(r->s, rc, "cannot read", err) : 0;
}
