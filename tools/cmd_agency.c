/*
 * cmd_agency.c - `kabar agency`: the registry of agencies and their keys
 * (docs/CLI.md "agency"; the registry itself: design in broker/store.h).
 *
 *   kabar agency add ID --name N --region R --org O --role ROLE --key PUBKEY|FILE
 *   kabar agency list
 *   kabar agency show ID
 *   kabar agency revoke-key ID KEY
 *   kabar agency rotate-key ID --key NEWKEY [--revoke OLDKEY]
 *
 * Two ways to the registry, one output:
 *  - offline, --data DIR: the broker's LMDB opened directly. Changes need
 *    the log writable, so kabard must be stopped (it holds the lock); list
 *    and show open it read-only and work while kabard runs. `add` on a
 *    directory without a log creates the log: that is how an operator
 *    registers the first admin before kabard's first start.
 *  - online (the default): CALL agency.* through the broker
 *    (kabar_client_call), as the principal of the global --key / KABAR_KEY;
 *    changes need an admin, list and show an admin, auditor or oversight.
 * Both paths turn what they read into the same JSON agency object (the
 * CALL's agency map, keys in text form, times in RFC 3339), printed as JSON
 * with --format json or laid out for people.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>

#include "cli.h"
#include "kkey.h"
#include "store.h"

static const char *const CMD = "agency";

static const char *const ROLES[] = {"agent", "oversight", "auditor", "admin"};

typedef enum verb { V_ADD, V_LIST, V_SHOW, V_REVOKE, V_ROTATE } verb;

static const char *const VERBS[] = {"add", "list", "show", "revoke-key", "rotate-key"};

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: kabar agency add ID --name NAME --region CODE --org CODE --role ROLE\n"
        "                           --key PUBKEY|FILE [WHERE]\n"
        "       kabar agency list [WHERE]\n"
        "       kabar agency show ID [WHERE]\n"
        "       kabar agency revoke-key ID KEY [WHERE]\n"
        "       kabar agency rotate-key ID --key NEWKEY [--revoke OLDKEY] [WHERE]\n"
        "\n"
        "The registry of agencies (principals) and their public keys, kept in the\n"
        "broker's log. Each change prints the agency as it is afterwards.\n"
        "\n"
        "  add         register agency ID with one key, valid from now\n"
        "  list        every agency, one per line\n"
        "  show        one agency with all its keys, valid and revoked\n"
        "  revoke-key  KEY stops being valid now; what it signed before still verifies\n"
        "  rotate-key  NEWKEY becomes valid now; with --revoke, OLDKEY stops at the same\n"
        "              instant (without it the old key stays valid until revoked)\n"
        "\n"
        "WHERE: the broker (default), as the principal of the global --key (kabar --key\n"
        "ADMIN.key agency ...) or KABAR_KEY; changes need an admin key. Or --data DIR:\n"
        "the broker's data directory directly (changes need kabard stopped; list and\n"
        "show work while it runs; add creates the log when DIR has none).\n"
        "\n"
        "Options:\n"
        "      --name NAME       official name (\"Dinas Kesehatan Kota Padang\")\n"
        "      --region CODE     region code (Kemendagri code, \"13.71\")\n"
        "      --org CODE        official organisation code\n"
        "      --role ROLE       agent, oversight, auditor or admin\n"
        "      --key KEY         a public key: ed25519:... (44 base64 characters), or a\n"
        "                        file holding one (FILE.pub, or a secret key file)\n"
        "      --revoke KEY      rotate-key: revoke this key at the same instant\n"
        "  -b, --broker EP       broker endpoint (default $KABAR_BROKER or " KABAR_DEFAULT_ENDPOINT
        ")\n"
        "      --server-key KEY  the broker's public key (default $KABAR_SERVER_KEY)\n"
        "  -D, --data DIR        work on the log in DIR instead of through a broker\n"
        "  -f, --format FMT      text (default) or json (one object per agency and line)\n"
        "  -t, --timeout MS      give up when the broker is silent this long (default 10000)\n"
        "  -h, --help            show this help\n"
        "\n"
        "Exit codes: 0 done, 1 refused (no such agency or key, already registered,\n"
        "not an admin), 2 bad usage or cannot run.\n");
}

typedef struct agency_args {
    verb v;
    const char *id;
    const char *name, *region, *org, *role;
    const char *key, *revoke; /* as given */
    uint8_t pk[32], old_pk[32];
    const char *broker, *data;
    bool json;
    kabar_client_opts copts;
} agency_args;

/* Refusals by the registry (exit 1), as opposed to not being able to run (2). */
static int refused(const kabar_error *err)
{
    const char *msg = err->message[0] ? err->message : kabar_strerror(err->code);
    switch (err->code) {
    case KABAR_CONNECT:
    case KABAR_TIMEOUT:
    case KABAR_IO:
    case KABAR_STORE:
    case KABAR_LOCKED:
    case KABAR_NO_MEMORY:
    case KABAR_PROTOCOL:
    case KABAR_BAD_VERSION:
    case KABAR_DISK_FULL:
    case KABAR_SHUTTING_DOWN:
        cli_error(CMD, "%s", msg);
        return CLI_USAGE;
    default: /* the rule that refused, for scripts: "... (ADMIN_ONLY)" */
        cli_error(CMD, "%s (%s)", msg, kabar_errname(err->code));
        return CLI_FAIL;
    }
}

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

/* A copy of o with `order`'s keys first, in that order, then the others. */
static json_t *ordered(json_t *o, const char *const *order)
{
    json_t *out = json_object();
    const char *k;
    json_t *v;
    for (size_t i = 0; order[i] != NULL; i++)
        if ((v = json_object_get(o, order[i])) != NULL)
            json_object_set(out, order[i], v);
    json_object_foreach(o, k, v) if (json_object_get(out, k) == NULL) json_object_set(out, k, v);
    return out;
}

static int64_t valid_from_ns(json_t *k)
{
    const char *t = json_string_value(json_object_get(k, "valid_from"));
    int64_t ns = 0;
    if (t == NULL || kabar_time_parse(t, strlen(t), &ns, NULL) != 0)
        return 0;
    return ns;
}

static int by_valid_from_json(const void *a, const void *b)
{
    int64_t x = valid_from_ns(*(json_t *const *)a), y = valid_from_ns(*(json_t *const *)b);
    return (x > y) - (x < y);
}

/* An agency map from the broker, as the offline path writes it: fields in
 * the documented order, keys oldest first. */
static json_t *agency_ordered(json_t *a)
{
    static const char *const agency_keys[] = {"id",   "name",       "region", "org",
                                              "role", "created_at", "keys",   NULL};
    static const char *const key_keys[] = {"key", "key_id", "valid_from", "revoked_at", NULL};
    json_t *out = ordered(a, agency_keys), *keys = json_object_get(out, "keys");
    if (json_is_array(keys)) {
        size_t n = json_array_size(keys);
        json_t **v = calloc(n ? n : 1, sizeof *v), *list = json_array();
        for (size_t i = 0; v != NULL && i < n; i++)
            v[i] = json_array_get(keys, i);
        if (v != NULL)
            qsort(v, n, sizeof *v, by_valid_from_json);
        for (size_t i = 0; v != NULL && i < n; i++)
            json_array_append_new(list, ordered(v[i], key_keys));
        free(v);
        json_object_set_new(out, "keys", list);
    }
    return out;
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
/* Output                                                                   */

static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : "";
}

static size_t valid_keys(json_t *keys)
{
    size_t i, n = 0;
    json_t *k;
    json_array_foreach(keys, i, k) n += json_object_get(k, "revoked_at") == NULL;
    return n;
}

static void print_agency_text(json_t *a)
{
    printf("agency:      %s\n", jstr(a, "id"));
    printf("name:        %s\n", jstr(a, "name"));
    printf("region:      %s\n", jstr(a, "region"));
    printf("org:         %s\n", jstr(a, "org"));
    printf("role:        %s\n", jstr(a, "role"));
    printf("created at:  %s\n", jstr(a, "created_at"));
    json_t *keys = json_object_get(a, "keys");
    if (json_array_size(keys) == 0) {
        printf("keys:        none\n");
        return;
    }
    printf("keys:\n  %-16s  %-30s  %-30s  %s\n", "KEY ID", "VALID FROM", "REVOKED AT",
           "PUBLIC KEY");
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k)
    {
        const char *rev = jstr(k, "revoked_at");
        printf("  %-16s  %-30s  %-30s  %s\n", jstr(k, "key_id"), jstr(k, "valid_from"),
               rev[0] ? rev : "-", jstr(k, "key"));
    }
}

static void print_json_line(json_t *a)
{
    char *s = json_dumps(a, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s != NULL)
        printf("%s\n", s);
    free(s);
}

static void print_one(const agency_args *a, json_t *ag)
{
    json_t *o = agency_ordered(ag);
    if (a->json)
        print_json_line(o);
    else
        print_agency_text(o);
    json_decref(o);
}

static void print_list(const agency_args *a, json_t *list)
{
    size_t i;
    json_t *ag;
    if (a->json) {
        json_array_foreach(list, i, ag) print_one(a, ag);
        return;
    }
    if (json_array_size(list) == 0) {
        printf("no agencies registered\n");
        return;
    }
    printf("%-32s  %-9s  %-6s  %-8s  %s\n", "ID", "ROLE", "KEYS", "REGION", "NAME");
    json_array_foreach(list, i, ag)
    {
        json_t *keys = json_object_get(ag, "keys");
        char nk[32];
        snprintf(nk, sizeof nk, "%zu/%zu", valid_keys(keys), json_array_size(keys));
        printf("%-32s  %-9s  %-6s  %-8s  %s\n", jstr(ag, "id"), jstr(ag, "role"), nk,
               jstr(ag, "region"), jstr(ag, "name"));
    }
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
static int read_registry(store *s, const char *id, json_t **out, kabar_error *err)
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

static int open_store(const agency_args *a, bool write, store **s, kabar_error *err)
{
    store_opts so = {.readonly = !write};
    int rc = store_open(s, a->data, &so, err);
    if (rc == KABAR_LOCKED)
        return kabar_error_set(err, rc,
                               "kabard is running on %s: use --broker EP with an admin --key "
                               "(kabar --key ADMIN.key agency ...), or stop kabard first",
                               a->data);
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
static int change_offline(store *s, const agency_args *a, kabar_error *err)
{
    store_reader *rd = NULL;
    store_agency ag;
    store_key old = {0};
    int64_t now = kabar_now();
    int rc = store_reader_open(s, &rd, err);
    if (rc != 0)
        return rc;
    rc = store_agency_get(rd, a->id, &ag, err);
    if (a->v == V_ADD && rc == 0)
        rc = kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                             "agency \"%s\" is already registered (to give it another key: "
                             "kabar agency rotate-key)",
                             a->id);
    else if (a->v == V_ADD && rc == KABAR_NOT_FOUND)
        rc = 0;
    else if (rc == KABAR_NOT_FOUND)
        kabar_error_set(err, rc, "no agency \"%s\" in the registry", a->id);
    if (rc == 0 && (a->v == V_ADD || a->v == V_ROTATE))
        rc = new_key(rd, a->pk, a->key, err);
    if (rc == 0 && a->v == V_REVOKE)
        rc = own_key(rd, a->id, a->pk, a->key, &old, err);
    if (rc == 0 && a->v == V_ROTATE && a->revoke != NULL)
        rc = own_key(rd, a->id, a->old_pk, a->revoke, &old, err);
    store_reader_close(&rd);
    if (rc != 0)
        return rc;

    if (a->v == V_ADD) {
        memset(&ag, 0, sizeof ag);
        snprintf(ag.id, sizeof ag.id, "%s", a->id);
        snprintf(ag.name, sizeof ag.name, "%s", a->name);
        snprintf(ag.region, sizeof ag.region, "%s", a->region);
        snprintf(ag.org, sizeof ag.org, "%s", a->org);
        snprintf(ag.role, sizeof ag.role, "%s", a->role);
        ag.created_at = now;
        if ((rc = store_agency_put(s, &ag, err)) != 0)
            return rc;
    }
    if (a->v == V_ADD || a->v == V_ROTATE) { /* the new key first: never a moment with none */
        store_key k = {.valid_from = now, .revoked_at = INT64_MAX};
        memcpy(k.pk, a->pk, 32);
        snprintf(k.agency, sizeof k.agency, "%s", a->id);
        if ((rc = store_key_put(s, &k, err)) != 0)
            return rc;
    }
    if (a->v == V_REVOKE || (a->v == V_ROTATE && a->revoke != NULL)) {
        old.revoked_at = now;
        rc = store_key_put(s, &old, err);
    }
    return rc;
}

static int run_offline(const agency_args *a)
{
    store *s = NULL;
    json_t *out = NULL;
    kabar_error err = {0};
    bool write = a->v != V_LIST && a->v != V_SHOW;
    int rc = open_store(a, write, &s, &err);
    if (rc != 0)
        return cli_fail(CMD, &err); /* cannot run: no log, or kabard holds it */
    if (write)
        rc = change_offline(s, a, &err);
    if (rc == 0)
        rc = read_registry(s, a->v == V_LIST ? NULL : a->id, &out, &err);
    store_close(&s);
    if (rc != 0)
        return refused(&err);
    if (a->v == V_LIST)
        print_list(a, out);
    else
        print_one(a, out);
    json_decref(out);
    return CLI_OK;
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
    case V_LIST:
        msgpack_pack_map(pk, 0);
        break;
    case V_SHOW:
        msgpack_pack_map(pk, 1);
        pack_kv_str(pk, "id", a->id);
        break;
    case V_ADD:
        msgpack_pack_map(pk, 6);
        pack_kv_str(pk, "id", a->id);
        pack_kv_key(pk, "key", a->pk);
        pack_kv_str(pk, "name", a->name);
        pack_kv_str(pk, "org", a->org);
        pack_kv_str(pk, "region", a->region);
        pack_kv_str(pk, "role", a->role);
        break;
    case V_REVOKE:
    case V_ROTATE:
        msgpack_pack_map(pk, a->revoke != NULL ? 3 : 2);
        pack_kv_str(pk, "id", a->id);
        pack_kv_key(pk, "key", a->pk);
        if (a->revoke != NULL)
            pack_kv_key(pk, "old", a->old_pk);
        break;
    }
}

static const char *method_of(verb v)
{
    static const char *const m[] = {"agency.add", "agency.list", "agency.show", "agency.revoke_key",
                                    "agency.rotate_key"};
    return m[v];
}

/* One CALL; *out the RESULT as JSON. */
static int call(kabar_client *c, const agency_args *a, verb v, json_t **out, kabar_error *err)
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

static int run_online(agency_args *a)
{
    kabar_client *c = NULL;
    kabar_error err = {0};
    json_t *out = NULL;
    int code = cli_connect(CMD, a->broker, NULL, &a->copts, &c);
    if (code != CLI_OK)
        return code;
    int rc = call(c, a, a->v, &out, &err);
    if (rc == 0 && a->v == V_ADD) { /* agency.add answers {"id"}: show what was registered */
        json_decref(out);
        out = NULL;
        rc = call(c, a, V_SHOW, &out, &err);
    }
    kabar_client_destroy(&c);
    if (rc != 0)
        return refused(&err);
    if (a->v == V_LIST) {
        json_t *list = json_object_get(out, "agencies");
        if (!json_is_array(list)) {
            json_decref(out);
            return cli_error(CMD, "the broker's agency.list answer has no \"agencies\" list");
        }
        print_list(a, list);
    } else {
        print_one(a, out);
    }
    json_decref(out);
    return CLI_OK;
}

/* ------------------------------------------------------------------------ */
/* Arguments                                                                */

static bool role_valid(const char *r)
{
    for (size_t i = 0; i < sizeof ROLES / sizeof ROLES[0]; i++)
        if (strcmp(r, ROLES[i]) == 0)
            return true;
    return false;
}

static int check_text(const char *opt, const char *v, size_t max)
{
    if (v == NULL)
        return cli_usage_error(CMD, "%s is required", opt);
    size_t n = strlen(v);
    if (n == 0 || n > max)
        return cli_usage_error(CMD, "%s: give 1 to %zu bytes (got %zu)", opt, max, n);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20)
            return cli_usage_error(CMD, "%s: control characters are not allowed", opt);
    return CLI_OK;
}

static int parse_key(const char *opt, const char *text, uint8_t pk[32])
{
    kabar_error err = {0};
    if (kkey_public_parse(pk, text, &err) == 0)
        return CLI_OK;
    return cli_usage_error(CMD,
                           "%s \"%s\": %s (give ed25519: followed by 44 base64 characters, or a "
                           "file holding a key, as kabar keygen writes)",
                           opt, text, err.message);
}

/* Check what the verb needs; CLI_OK or CLI_USAGE (printed). */
static int check_args(agency_args *a, char **pos, int npos)
{
    static const int want[] = {
        [V_ADD] = 1, [V_LIST] = 0, [V_SHOW] = 1, [V_REVOKE] = 2, [V_ROTATE] = 1};
    if (npos != want[a->v])
        return cli_usage_error(CMD, "%s takes %d argument%s (got %d)", VERBS[a->v], want[a->v],
                               want[a->v] == 1 ? "" : "s", npos);
    if (npos > 0) {
        a->id = pos[0];
        if (!kabar_agency_valid(a->id, strlen(a->id)))
            return cli_usage_error(CMD,
                                   "\"%s\" is not an agency id (lowercase letters, digits and "
                                   "'-', 2 to 32 characters, starting with a letter or digit)",
                                   a->id);
    }
    if (a->v == V_REVOKE) {
        if (a->key != NULL)
            return cli_usage_error(CMD, "revoke-key takes the key as its second argument, "
                                        "not --key");
        a->key = pos[1];
    }
    bool add = a->v == V_ADD;
    if (!add && (a->name || a->region || a->org || a->role))
        return cli_usage_error(CMD, "--name, --region, --org and --role are for add only");
    if (a->revoke != NULL && a->v != V_ROTATE)
        return cli_usage_error(CMD, "--revoke is for rotate-key only");
    if (a->key != NULL && (a->v == V_LIST || a->v == V_SHOW))
        return cli_usage_error(CMD, "--key is for add and rotate-key (your own identity for the "
                                    "broker goes before the command: kabar --key FILE agency ...)");
    if (add && (check_text("--name", a->name, 128) || check_text("--region", a->region, 32) ||
                check_text("--org", a->org, 64) || check_text("--role", a->role, 15)))
        return CLI_USAGE;
    if (add && !role_valid(a->role))
        return cli_usage_error(CMD, "--role \"%s\": give agent, oversight, auditor or admin",
                               a->role);
    if (a->v != V_LIST && a->v != V_SHOW) {
        if (a->key == NULL)
            return cli_usage_error(CMD, "%s needs --key PUBKEY|FILE", VERBS[a->v]);
        if (parse_key(a->v == V_REVOKE ? "KEY" : "--key", a->key, a->pk) != CLI_OK)
            return CLI_USAGE;
    }
    if (a->revoke != NULL) {
        if (parse_key("--revoke", a->revoke, a->old_pk) != CLI_OK)
            return CLI_USAGE;
        if (memcmp(a->pk, a->old_pk, 32) == 0)
            return cli_usage_error(CMD, "--key and --revoke name the same key");
    }
    return CLI_OK;
}

static int parse_verb(const char *s, verb *v)
{
    for (size_t i = 0; i < sizeof VERBS / sizeof VERBS[0]; i++)
        if (strcmp(s, VERBS[i]) == 0) {
            *v = (verb)i;
            return CLI_OK;
        }
    return cli_usage_error(CMD,
                           "\"%s\" is not an agency command (add, list, show, revoke-key, "
                           "rotate-key)",
                           s);
}

enum { OPT_NAME = 256, OPT_REGION, OPT_ORG, OPT_ROLE, OPT_KEY, OPT_REVOKE };

int cmd_agency(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"name", required_argument, NULL, OPT_NAME},
        {"region", required_argument, NULL, OPT_REGION},
        {"org", required_argument, NULL, OPT_ORG},
        {"role", required_argument, NULL, OPT_ROLE},
        {"key", required_argument, NULL, OPT_KEY},
        {"revoke", required_argument, NULL, OPT_REVOKE},
        {"server-key", required_argument, NULL, CLI_OPT_SERVER_KEY},
        {"broker", required_argument, NULL, 'b'},
        {"data", required_argument, NULL, 'D'},
        {"format", required_argument, NULL, 'f'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    agency_args a = {.copts = {.timeout_ms = 10000}};
    char *pos[4];
    int npos = 0, opt;

    optind = 0;
    /* "-" first: positional arguments come back in order, between options */
    while ((opt = getopt_long(argc, argv, "-b:D:f:t:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 1:
            if (npos == 4)
                return cli_usage_error(CMD, "too many arguments (\"%s\")", optarg);
            pos[npos++] = optarg;
            break;
        case OPT_NAME:
            a.name = optarg;
            break;
        case OPT_REGION:
            a.region = optarg;
            break;
        case OPT_ORG:
            a.org = optarg;
            break;
        case OPT_ROLE:
            a.role = optarg;
            break;
        case OPT_KEY:
            a.key = optarg;
            break;
        case OPT_REVOKE:
            a.revoke = optarg;
            break;
        case CLI_OPT_SERVER_KEY:
            cli_set_server_key(optarg);
            break;
        case 'b':
            a.broker = optarg;
            break;
        case 'D':
            a.data = optarg;
            break;
        case 'f':
            if (strcmp(optarg, "json") != 0 && strcmp(optarg, "text") != 0)
                return cli_usage_error(CMD, "--format \"%s\": give text or json", optarg);
            a.json = strcmp(optarg, "json") == 0;
            break;
        case 't':
            if (!cli_parse_int(CMD, "--timeout", optarg, 1, 3600000, &a.copts.timeout_ms))
                return CLI_USAGE;
            break;
        case 'h':
            usage(stdout);
            return CLI_OK;
        default:
            return cli_usage_error(CMD, "unknown option");
        }
    }
    if (npos == 0)
        return cli_usage_error(CMD, "give a command: add, list, show, revoke-key or rotate-key");
    if (parse_verb(pos[0], &a.v) != CLI_OK || check_args(&a, pos + 1, npos - 1) != CLI_OK)
        return CLI_USAGE;
    if (a.data != NULL && a.broker != NULL)
        return cli_usage_error(CMD, "give either --data DIR (offline) or --broker EP, not both");
    if (a.data != NULL && a.data[0] == '\0')
        return cli_usage_error(CMD, "--data: an empty directory name");
    int code = a.data != NULL ? run_offline(&a) : run_online(&a);
    if (cli_flush(CMD) != 0)
        return CLI_USAGE;
    return code;
}
