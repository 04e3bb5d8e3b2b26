/*
 * agency_ops.c - the operations of `kabar agency` (contract in
 * agency_ops.h): the registry read and changed offline in the broker's LMDB
 * log, or through the broker with a CALL agency.*, and what either gives
 * turned into the same JSON agency object. The command, its arguments and
 * its output are in cmd_agency.c.
 *
 * The offline change checks what the broker's agency.* methods check (the
 * agency exists or not, a new key belongs to nobody, a revoked key is one
 * of the agency's and still valid) and writes the new key before revoking
 * the old one, so an agency is never without a valid key.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>

#include "agency_ops.h"
#include "kkey.h"

/* ------------------------------------------------------------------------ */
/* The agency as JSON                                                       */

static json_t *time_json(int64_t ns)
{
    char t[KABAR_TIME_MAX];
    kabar_time_format(ns, t);
    return json_string(t);
}

static json_t *key_json(const uint8_t pk[32], int64_t valid_from, int64_t revoked_at)
{
    char text[KKEY_TEXT_MAX], id[KKEY_ID_TEXT];
    kkey_public_text(pk, text);
    kkey_id_text(pk, id);
    json_t *k = json_object();
    json_object_set_new(k, "key", json_string(text));
    json_object_set_new(k, "key_id", json_string(id));
    json_object_set_new(k, "valid_from", time_json(valid_from));
    if (revoked_at != INT64_MAX)
        json_object_set_new(k, "revoked_at", time_json(revoked_at));
    return k;
}

/* A msgpack value of a RESULT as JSON: bin(32) as a public key, timestamps as RFC 3339. */
static json_t *mp_json(const msgpack_object *o)
{
    static const char hex[] = "0123456789abcdef";
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return json_null();
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return json_real(o->via.f64);
    case MSGPACK_OBJECT_STR:
        return json_stringn(o->via.str.ptr, o->via.str.size);
    case MSGPACK_OBJECT_BIN: {
        if (o->via.bin.size == 32) {
            char text[KKEY_TEXT_MAX];
            kkey_public_text((const uint8_t *)o->via.bin.ptr, text);
            return json_string(text);
        }
        char *h = malloc((size_t)o->via.bin.size * 2 + 1);
        if (h == NULL)
            return json_null();
        for (uint32_t i = 0; i < o->via.bin.size; i++) {
            h[2 * i] = hex[(uint8_t)o->via.bin.ptr[i] >> 4];
            h[2 * i + 1] = hex[(uint8_t)o->via.bin.ptr[i] & 15];
        }
        json_t *s = json_stringn(h, (size_t)o->via.bin.size * 2);
        free(h);
        return s;
    }
    case MSGPACK_OBJECT_EXT: {
        msgpack_timestamp ts;
        if (msgpack_object_to_timestamp(o, &ts))
            return time_json((int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec);
        return json_null();
    }
    case MSGPACK_OBJECT_ARRAY: {
        json_t *a = json_array();
        for (uint32_t i = 0; i < o->via.array.size; i++)
            json_array_append_new(a, mp_json(&o->via.array.ptr[i]));
        return a;
    }
    case MSGPACK_OBJECT_MAP: {
        json_t *m = json_object();
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            if (k->type == MSGPACK_OBJECT_STR)
                json_object_setn_new(m, k->via.str.ptr, k->via.str.size,
                                     mp_json(&o->via.map.ptr[i].val));
        }
        return m;
    }
    }
    return json_null();
}

/* The RESULT map's msgpack bytes as a JSON object, or NULL with err set. */
static json_t *result_json(const kabar_buf *b, kabar_error *err)
{
    msgpack_unpacked u;
    size_t off = 0;
    json_t *j = NULL;
    msgpack_unpacked_init(&u);
    if (msgpack_unpack_next(&u, b->data, b->len, &off) == MSGPACK_UNPACK_SUCCESS &&
        u.data.type == MSGPACK_OBJECT_MAP)
        j = mp_json(&u.data);
    msgpack_unpacked_destroy(&u);
    if (j == NULL)
        kabar_error_set(err, KABAR_PROTOCOL, "the broker's RESULT is not a msgpack map");
    return j;
}

/* ------------------------------------------------------------------------ */
/* Offline: the store                                                       */

typedef struct keys_ctx {
    store_key *k;
    size_t n, cap;
} keys_ctx;

static int collect_key(void *arg, const store_key *k)
{
    keys_ctx *x = arg;
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 16;
        store_key *p = realloc(x->k, cap * sizeof *p);
        if (p == NULL)
            return KABAR_NO_MEMORY;
        x->k = p;
        x->cap = cap;
    }
    x->k[x->n++] = *k;
    return 0;
}

static int by_valid_from(const void *a, const void *b)
{
    const store_key *x = a, *y = b;
    return (x->valid_from > y->valid_from) - (x->valid_from < y->valid_from);
}

static json_t *agency_json(const store_agency *ag, const keys_ctx *keys)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(ag->id));
    json_object_set_new(o, "name", json_string(ag->name));
    json_object_set_new(o, "region", json_string(ag->region));
    json_object_set_new(o, "org", json_string(ag->org));
    json_object_set_new(o, "role", json_string(ag->role));
    json_object_set_new(o, "created_at", time_json(ag->created_at));
    json_t *list = json_array();
    for (size_t i = 0; i < keys->n; i++)
        if (strcmp(keys->k[i].agency, ag->id) == 0)
            json_array_append_new(
                list, key_json(keys->k[i].pk, keys->k[i].valid_from, keys->k[i].revoked_at));
    json_object_set_new(o, "keys", list);
    return o;
}

typedef struct list_ctx {
    json_t *list;
    const keys_ctx *keys;
} list_ctx;

static int collect_agency(void *arg, const store_agency *ag)
{
    list_ctx *x = arg;
    return json_array_append_new(x->list, agency_json(ag, x->keys)) == 0 ? 0 : KABAR_NO_MEMORY;
}

/* Every agency (id == NULL) or one, as JSON: a list, or the agency object. */
int agency_store_read(store *s, const char *id, json_t **out, kabar_error *err)
{
    store_reader *rd = NULL;
    keys_ctx keys = {0};
    store_agency ag;
    int rc;
    if ((rc = store_reader_open(s, &rd, err)) != 0)
        return rc;
    if ((rc = store_key_each(rd, collect_key, &keys, err)) == 0) {
        qsort(keys.k, keys.n, sizeof *keys.k, by_valid_from);
        if (id == NULL) {
            list_ctx x = {.list = json_array(), .keys = &keys};
            rc = store_agency_each(rd, collect_agency, &x, err);
            if (rc == 0)
                *out = x.list;
            else
                json_decref(x.list);
        } else if ((rc = store_agency_get(rd, id, &ag, err)) == 0) {
            *out = agency_json(&ag, &keys);
        } else if (rc == KABAR_NOT_FOUND) {
            kabar_error_set(err, rc, "no agency \"%s\" in the registry", id);
        }
    }
    if (rc == KABAR_NO_MEMORY)
        kabar_error_set(err, rc, "out of memory reading the registry");
    free(keys.k);
    store_reader_close(&rd);
    return rc;
}

int agency_store_open(const char *data, bool write, store **s, kabar_error *err)
{
    store_opts so = {.readonly = !write};
    int rc = store_open(s, data, &so, err);
    if (rc == KABAR_LOCKED)
        return kabar_error_set(err, rc,
                               "kabard is running on %s: use --broker EP with an admin --key "
                               "(kabar --key ADMIN.key agency ...), or stop kabard first",
                               data);
    if (rc == KABAR_NOT_FOUND) {
        char why[KABAR_ERROR_MESSAGE_MAX];
        snprintf(why, sizeof why, "%s", err->message);
        return kabar_error_set(err, rc, "%s (give the directory kabard was started with)", why);
    }
    return rc;
}

/* The key `pk` of agency `id` as the store has it: 0, or an error saying what is wrong. */
static int own_key(store_reader *rd, const char *id, const uint8_t pk[32], const char *given,
                   store_key *k, kabar_error *err)
{
    int rc = store_key_get(rd, pk, k, err);
    if (rc == KABAR_NOT_FOUND || (rc == 0 && strcmp(k->agency, id) != 0))
        return kabar_error_set(err, KABAR_NOT_FOUND, "key %s is not a key of agency \"%s\"", given,
                               id);
    if (rc == 0 && k->revoked_at != INT64_MAX) {
        char t[KABAR_TIME_MAX];
        kabar_time_format(k->revoked_at, t);
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "key %s of \"%s\" was revoked at %s",
                               given, id, t);
    }
    return rc;
}

/* A key that must not be registered yet (to anyone). */
static int new_key(store_reader *rd, const uint8_t pk[32], const char *given, kabar_error *err)
{
    store_key k;
    int rc = store_key_get(rd, pk, &k, err);
    if (rc == 0)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "key %s is already registered (to \"%s\"); a key belongs to one "
                               "agency for good: make a new one with kabar keygen",
                               given, k.agency);
    return rc == KABAR_NOT_FOUND ? 0 : rc;
}

/* Check and make the change of a->v in the open store. */
int agency_store_change(store *s, const agency_args *a, kabar_error *err)
{
    store_reader *rd = NULL;
    store_agency ag;
    store_key old = {0};
    int64_t now = kabar_now();
    int rc = store_reader_open(s, &rd, err);
    if (rc != 0)
        return rc;
    /* As kabard does (broker/server.c, "Registry changes"): the change takes
     * effect after every received_at in the log, so no event already stored
     * is before a new key or after a revocation it was checked against. */
    store_record last;
    uint64_t head = store_reader_head(rd);
    if (head > 0 && store_get(rd, head, &last, err) == 0 && last.received_at >= now)
        now = last.received_at + 1;
    rc = store_agency_get(rd, a->id, &ag, err);
    if (a->v == AGENCY_ADD && rc == 0)
        rc = kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                             "agency \"%s\" is already registered (to give it another key: "
                             "kabar agency rotate-key)",
                             a->id);
    else if (a->v == AGENCY_ADD && rc == KABAR_NOT_FOUND)
        rc = 0;
    else if (rc == KABAR_NOT_FOUND)
        kabar_error_set(err, rc, "no agency \"%s\" in the registry", a->id);
    if (rc == 0 && (a->v == AGENCY_ADD || a->v == AGENCY_ROTATE_KEY))
        rc = new_key(rd, a->pk, a->key, err);
    if (rc == 0 && a->v == AGENCY_REVOKE_KEY)
        rc = own_key(rd, a->id, a->pk, a->key, &old, err);
    if (rc == 0 && a->v == AGENCY_ROTATE_KEY && a->revoke != NULL)
        rc = own_key(rd, a->id, a->old_pk, a->revoke, &old, err);
    store_reader_close(&rd);
    if (rc != 0)
        return rc;

    /* One durable transaction for the whole change (store_registry_apply). */
    store_key keys[2];
    size_t nk = 0;
    if (a->v == AGENCY_ADD) {
        memset(&ag, 0, sizeof ag);
        snprintf(ag.id, sizeof ag.id, "%s", a->id);
        snprintf(ag.name, sizeof ag.name, "%s", a->name);
        snprintf(ag.region, sizeof ag.region, "%s", a->region);
        snprintf(ag.org, sizeof ag.org, "%s", a->org);
        snprintf(ag.role, sizeof ag.role, "%s", a->role);
        ag.created_at = now;
    }
    if (a->v == AGENCY_ADD || a->v == AGENCY_ROTATE_KEY) {
        store_key k = {.valid_from = now, .revoked_at = INT64_MAX};
        memcpy(k.pk, a->pk, 32);
        snprintf(k.agency, sizeof k.agency, "%s", a->id);
        keys[nk++] = k;
    }
    if (a->v == AGENCY_REVOKE_KEY || (a->v == AGENCY_ROTATE_KEY && a->revoke != NULL)) {
        old.revoked_at = now > old.valid_from ? now : old.valid_from + 1;
        keys[nk++] = old;
    }
    return store_registry_apply(s, a->v == AGENCY_ADD ? &ag : NULL, keys, nk, err);
}

/* ------------------------------------------------------------------------ */
/* Online: CALL agency.* through the broker                                 */

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_kv_str(msgpack_packer *pk, const char *k, const char *v)
{
    pack_str(pk, k);
    pack_str(pk, v);
}

static void pack_kv_key(msgpack_packer *pk, const char *k, const uint8_t v[32])
{
    pack_str(pk, k);
    msgpack_pack_bin(pk, 32);
    msgpack_pack_bin_body(pk, v, 32);
}

/* The CALL's params, keys in ascending order (canonical form). */
static void pack_params(msgpack_packer *pk, const agency_args *a)
{
    switch (a->v) {
    case AGENCY_LIST:
        msgpack_pack_map(pk, 0);
        break;
    case AGENCY_SHOW:
        msgpack_pack_map(pk, 1);
        pack_kv_str(pk, "id", a->id);
        break;
    case AGENCY_ADD:
        msgpack_pack_map(pk, 6);
        pack_kv_str(pk, "id", a->id);
        pack_kv_key(pk, "key", a->pk);
        pack_kv_str(pk, "name", a->name);
        pack_kv_str(pk, "org", a->org);
        pack_kv_str(pk, "region", a->region);
        pack_kv_str(pk, "role", a->role);
        break;
    case AGENCY_REVOKE_KEY:
    case AGENCY_ROTATE_KEY:
        msgpack_pack_map(pk, a->revoke != NULL ? 3 : 2);
        pack_kv_str(pk, "id", a->id);
        pack_kv_key(pk, "key", a->pk);
        if (a->revoke != NULL)
            pack_kv_key(pk, "old", a->old_pk);
        break;
    }
}

static const char *method_of(agency_verb v)
{
    static const char *const m[] = {"agency.add", "agency.list", "agency.show", "agency.revoke_key",
                                    "agency.rotate_key"};
    return m[v];
}

/* One CALL; *out the RESULT as JSON. */
int agency_call(kabar_client *c, const agency_args *a, agency_verb v, json_t **out,
                kabar_error *err)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    kabar_buf res = {0};
    agency_args x = *a;
    x.v = v;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    pack_params(&pk, &x);
    int rc = kabar_client_call(c, method_of(v), sb.data, sb.size, &res, err);
    if (rc == 0 && (*out = result_json(&res, err)) == NULL)
        rc = KABAR_PROTOCOL;
    msgpack_sbuffer_destroy(&sb);
    kabar_buf_free(&res);
    return rc;
}
