/*
 * bench_secure.c - the keys of `kabar bench`'s secure configuration
 * (bench.h; design notes at the top of cmd_bench.c).
 *
 * The bench's own kabard runs secure, as a deployment does: before it starts,
 * bench makes a fresh log in its temporary directory and registers one
 * agent per publishing agency and one oversight principal for the readers,
 * each with a key generated in memory (never written to disk), exactly as
 * `kabar agency add --data DIR` would. Against a broker given with --broker,
 * bench instead asks the broker who the user's --key is (whoami).
 */
#include <string.h>

#include <msgpack.h>

#include "bench.h"
#include "store.h"

int bench_register(const char *data, bench_principal *p, size_t n, kabar_error *err)
{
    store *s = NULL;
    store_opts so = {0};
    int rc = store_open(&s, data, &so, err);
    int64_t now = kabar_now();
    for (size_t i = 0; i < n && rc == 0; i++) {
        store_agency a = {.created_at = now};
        store_key k = {.valid_from = now, .revoked_at = INT64_MAX};
        snprintf(a.id, sizeof a.id, "%s", p[i].id);
        snprintf(a.name, sizeof a.name, "kabar bench %s", p[i].id);
        snprintf(a.region, sizeof a.region, "13.71");
        snprintf(a.org, sizeof a.org, "bench");
        snprintf(a.role, sizeof a.role, "%s", p[i].role);
        snprintf(k.agency, sizeof k.agency, "%s", p[i].id);
        if ((rc = kkey_generate(&p[i].key, err)) == 0) {
            memcpy(k.pk, p[i].key.pk, sizeof k.pk);
            rc = store_registry_apply(s, &a, &k, 1, err); /* the agency with its key */
        }
    }
    store_close(&s);
    if (rc != 0 && err != NULL) {
        char why[KABAR_ERROR_MESSAGE_MAX];
        snprintf(why, sizeof why, "%s", err->message);
        kabar_error_set(err, rc, "cannot register the bench's keys in %s: %s", data, why);
    }
    return rc;
}

/* Copy the string value of `key` in map `m` to out[cap]; false when absent. */
static bool map_str(const msgpack_object *m, const char *key, char *out, size_t cap)
{
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key, *v = &m->via.map.ptr[i].val;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
            memcmp(k->via.str.ptr, key, k->via.str.size) == 0 && v->type == MSGPACK_OBJECT_STR &&
            v->via.str.size < cap) {
            memcpy(out, v->via.str.ptr, v->via.str.size);
            out[v->via.str.size] = '\0';
            return true;
        }
    }
    return false;
}

int bench_whoami(const bench_conn *bc, char *agency, char *role, kabar_error *err)
{
    kabar_client *c = NULL;
    kabar_client_opts o = {.timeout_ms = 10000, .key = bc->reader, .server_key = bc->server_key};
    kabar_buf res = {0};
    int rc = kabar_client_connect(&c, bc->endpoint, &o, err);
    if (rc == 0)
        rc = kabar_client_call(c, "whoami", NULL, 0, &res, err);
    kabar_client_destroy(&c);
    if (rc == 0) {
        msgpack_unpacked u;
        size_t off = 0;
        msgpack_unpacked_init(&u);
        if (msgpack_unpack_next(&u, res.data, res.len, &off) != MSGPACK_UNPACK_SUCCESS ||
            u.data.type != MSGPACK_OBJECT_MAP ||
            !map_str(&u.data, "principal", agency, KABAR_MAX_AGENCY_LEN + 1) ||
            !map_str(&u.data, "role", role, 16))
            rc = kabar_error_set(err, KABAR_PROTOCOL,
                                 "the broker's answer to whoami has no principal and role");
        msgpack_unpacked_destroy(&u);
    }
    kabar_buf_free(&res);
    return rc;
}
