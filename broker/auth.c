/*
 * auth.c - the registry cache, the ZAP handler and the authorization rules
 * (see auth.h).
 *
 * Design notes. The cache is an array of auth_principal (one per key) and
 * three open-addressing tables of indexes into it (by User-Id, Ed25519 key,
 * Curve25519 key), sized to a power of two at least twice the keys, so a
 * lookup is one hash and a probe or two: it runs for every message. The
 * whole cache is rebuilt on a registry change, which is rare (an operator's
 * command), so there is no incremental update to get wrong.
 */
#include "auth.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zmq.h>

#include "kkey.h"
#include "klog.h"

const auth_principal auth_anonymous = {
    .agency = "", .role = AUTH_ANONYMOUS, .user_id = "", .key_id = "", .revoked_at = INT64_MAX};

struct auth {
    auth_principal *keys;
    size_t n;
    uint32_t *by_uid, *by_pk, *by_curve; /* index + 1; 0 empty */
    size_t mask;
    uint64_t refused[KABAR_ERR_COUNT_];
    uint64_t zap_ok, zap_denied;
    klog_limit lim_refused, lim_zap;
};

int auth_new(auth **out, kabar_error *err)
{
    auth *a = calloc(1, sizeof *a);
    if (a == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "cannot allocate the registry cache");
    *out = a;
    return 0;
}

static void free_cache(auth_principal *keys, uint32_t *t1, uint32_t *t2, uint32_t *t3)
{
    free(keys);
    free(t1);
    free(t2);
    free(t3);
}

void auth_destroy(auth **ap)
{
    auth *a = ap ? *ap : NULL;
    if (a == NULL)
        return;
    free_cache(a->keys, a->by_uid, a->by_pk, a->by_curve);
    free(a);
    *ap = NULL;
}

/* FNV-1a: the inputs are registered keys and User-Ids, not chosen to collide. */
static uint64_t hash_bytes(const void *p, size_t len)
{
    const uint8_t *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static void table_put(uint32_t *t, size_t mask, uint64_t h, uint32_t ix)
{
    size_t k = h & mask;
    while (t[k] != 0)
        k = (k + 1) & mask;
    t[k] = ix + 1;
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                  */

typedef struct load_ctx {
    store_reader *rd;
    auth_principal *keys;
    size_t n, cap;
    int rc;
    kabar_error *err;
    auth *a;
} load_ctx;

static int load_key(void *arg, const store_key *k)
{
    load_ctx *x = arg;
    store_agency ag;
    kabar_error e;
    if (store_agency_get(x->rd, k->agency, &ag, &e) != 0) {
        klog(KLOG_WARN, "KABARD-REGISTRY", "key of agency %s skipped: %s", k->agency, e.message);
        return 0;
    }
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 16;
        auth_principal *p = realloc(x->keys, cap * sizeof *p);
        if (p == NULL)
            return x->rc = kabar_error_set(x->err, KABAR_NO_MEMORY, "cannot load the registry");
        x->keys = p;
        x->cap = cap;
    }
    auth_principal *p = &x->keys[x->n];
    memset(p, 0, sizeof *p);
    snprintf(p->agency, sizeof p->agency, "%s", k->agency);
    p->role = auth_role_parse(ag.role);
    memcpy(p->pk, k->pk, 32);
    if (kkey_curve_public(k->pk, p->curve_pk, &e) != 0) {
        klog(KLOG_WARN, "KABARD-REGISTRY", "a key of agency %s skipped: %s", k->agency, e.message);
        return 0;
    }
    kkey_id_text(k->pk, p->key_id);
    snprintf(p->user_id, sizeof p->user_id, "%s/%s", p->agency, p->key_id);
    p->valid_from = k->valid_from;
    p->revoked_at = k->revoked_at;
    x->n++;
    return 0;
}

int auth_load(auth *a, store_reader *rd, kabar_error *err)
{
    load_ctx x = {.rd = rd, .err = err, .a = a};
    int rc = store_key_each(rd, load_key, &x, err);
    if (rc == 0)
        rc = x.rc;
    size_t cap = 16;
    while (cap < 2 * x.n)
        cap *= 2;
    uint32_t *t1 = calloc(cap, sizeof *t1), *t2 = calloc(cap, sizeof *t2),
             *t3 = calloc(cap, sizeof *t3);
    if (rc == 0 && (t1 == NULL || t2 == NULL || t3 == NULL))
        rc = kabar_error_set(err, KABAR_NO_MEMORY, "cannot load the registry");
    if (rc != 0) {
        free_cache(x.keys, t1, t2, t3);
        return rc;
    }
    for (size_t i = 0; i < x.n; i++) {
        const auth_principal *p = &x.keys[i];
        table_put(t1, cap - 1, hash_bytes(p->user_id, strlen(p->user_id)), (uint32_t)i);
        table_put(t2, cap - 1, hash_bytes(p->pk, 32), (uint32_t)i);
        table_put(t3, cap - 1, hash_bytes(p->curve_pk, 32), (uint32_t)i);
    }
    free_cache(a->keys, a->by_uid, a->by_pk, a->by_curve);
    a->keys = x.keys;
    a->n = x.n;
    a->by_uid = t1;
    a->by_pk = t2;
    a->by_curve = t3;
    a->mask = cap - 1;
    return 0;
}

void auth_clear(auth *a)
{
    free_cache(a->keys, a->by_uid, a->by_pk, a->by_curve);
    a->keys = NULL;
    a->by_uid = a->by_pk = a->by_curve = NULL;
    a->n = 0;
    a->mask = 0;
}

size_t auth_count(const auth *a)
{
    return a->n;
}

size_t auth_count_valid(const auth *a, int64_t now)
{
    size_t n = 0;
    for (size_t i = 0; i < a->n; i++)
        n += auth_valid(&a->keys[i], now) && a->keys[i].role != AUTH_NONE;
    return n;
}

/* ------------------------------------------------------------------------ */
/* Lookups                                                                  */

const auth_principal *auth_by_user_id(const auth *a, const char *uid, size_t len)
{
    if (a->n == 0 || len == 0 || len >= AUTH_USER_ID_MAX)
        return NULL;
    for (size_t k = hash_bytes(uid, len) & a->mask; a->by_uid[k] != 0; k = (k + 1) & a->mask) {
        const auth_principal *p = &a->keys[a->by_uid[k] - 1];
        if (strlen(p->user_id) == len && memcmp(p->user_id, uid, len) == 0)
            return p;
    }
    return NULL;
}

static const auth_principal *by_key(const auth *a, const uint32_t *t, const uint8_t key[32],
                                    size_t off)
{
    if (a->n == 0)
        return NULL;
    for (size_t k = hash_bytes(key, 32) & a->mask; t[k] != 0; k = (k + 1) & a->mask) {
        const auth_principal *p = &a->keys[t[k] - 1];
        if (memcmp((const uint8_t *)p + off, key, 32) == 0)
            return p;
    }
    return NULL;
}

const auth_principal *auth_by_pk(const auth *a, const uint8_t pk[32])
{
    return by_key(a, a->by_pk, pk, offsetof(auth_principal, pk));
}

const auth_principal *auth_by_curve(const auth *a, const uint8_t curve_pk[32])
{
    return by_key(a, a->by_curve, curve_pk, offsetof(auth_principal, curve_pk));
}

bool auth_valid(const auth_principal *p, int64_t now)
{
    if (p->role == AUTH_ANONYMOUS)
        return true;
    return kkey_valid_at(p->valid_from, p->revoked_at, now);
}

static const char *const role_names[] = {"none",    "agent", "oversight",
                                         "auditor", "admin", "anonymous"};

const char *auth_role_name(auth_role r)
{
    return (unsigned)r < sizeof role_names / sizeof role_names[0] ? role_names[r] : "none";
}

auth_role auth_role_parse(const char *s)
{
    for (int r = AUTH_AGENT; r <= AUTH_ADMIN; r++)
        if (strcmp(s, role_names[r]) == 0)
            return (auth_role)r;
    return AUTH_NONE;
}

/* ------------------------------------------------------------------------ */
/* Rules                                                                    */

static bool is_own(const auth_principal *p, kabar_str s)
{
    return s.ptr != NULL && s.len == strlen(p->agency) && memcmp(s.ptr, p->agency, s.len) == 0;
}

int auth_check_publish(const auth_principal *p)
{
    switch (p->role) {
    case AUTH_AGENT:
    case AUTH_OVERSIGHT:
    case AUTH_ADMIN:
    case AUTH_ANONYMOUS:
        return 0;
    default:
        return KABAR_CANNOT_PUBLISH;
    }
}

int auth_check_source(const auth_principal *p, kabar_str source)
{
    if (p->role == AUTH_ADMIN || p->role == AUTH_ANONYMOUS)
        return 0;
    if (auth_check_publish(p) != 0)
        return KABAR_CANNOT_PUBLISH;
    return is_own(p, source) ? 0 : KABAR_NOT_OWN_SOURCE;
}

int auth_check_signer(const auth_principal *signer, kabar_str source)
{
    return is_own(signer, source) ? 0 : KABAR_SIGNER_NOT_SOURCE;
}

int auth_check_sub(const auth_principal *p, kabar_str target)
{
    if (p->role == AUTH_NONE)
        return KABAR_NOT_OWN_TARGET;
    if (p->role != AUTH_AGENT)
        return 0;
    return is_own(p, target) ? 0 : KABAR_NOT_OWN_TARGET;
}

int auth_check_consumer(const auth_principal *p, const char *owner)
{
    if (p->role == AUTH_ANONYMOUS || owner == NULL || owner[0] == '\0')
        return 0;
    return strcmp(owner, p->agency) == 0 ? 0 : KABAR_NOT_OWN_CONSUMER;
}

/* Who may call what: the roles allowed, as a bit set of 1 << auth_role. */
#define R(x) (1u << (x))
#define ANY  (R(AUTH_AGENT) | R(AUTH_OVERSIGHT) | R(AUTH_AUDITOR) | R(AUTH_ADMIN))
#define AUD  (R(AUTH_OVERSIGHT) | R(AUTH_AUDITOR) | R(AUTH_ADMIN))
static const struct {
    const char *name;
    unsigned roles;
    int refusal;
} methods[] = {
    {"whoami", ANY, 0},
    {"agency.add", R(AUTH_ADMIN), KABAR_ADMIN_ONLY},
    {"agency.revoke_key", R(AUTH_ADMIN), KABAR_ADMIN_ONLY},
    {"agency.rotate_key", R(AUTH_ADMIN), KABAR_ADMIN_ONLY},
    {"agency.list", AUD, KABAR_AUDIT_ONLY},
    {"agency.show", AUD, KABAR_AUDIT_ONLY},
    {"audit.checkpoint", ANY, 0},
    {"audit.prove", AUD, KABAR_AUDIT_ONLY},
    {"audit.consistency", AUD, KABAR_AUDIT_ONLY},
    {"audit.batch", AUD, KABAR_AUDIT_ONLY},
    {"audit.records", AUD, KABAR_AUDIT_ONLY},
    {"audit.checkpoints", AUD, KABAR_AUDIT_ONLY},
};

int auth_check_call(const auth_principal *p, const char *method, size_t len)
{
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        if (strlen(methods[i].name) != len || memcmp(methods[i].name, method, len) != 0)
            continue;
        if (p->role == AUTH_ANONYMOUS || (methods[i].roles & R(p->role)) != 0)
            return 0;
        return methods[i].refusal ? methods[i].refusal : KABAR_AUDIT_ONLY;
    }
    return KABAR_UNKNOWN_METHOD;
}

/* ------------------------------------------------------------------------ */
/* ZAP (RFC 27)                                                             */

#define ZAP_FRAMES 7 /* version, request id, domain, address, identity, mechanism, key */

static int zap_reply(void *zap, const zmq_msg_t *reqid, const char *status, const char *text,
                     const char *user_id)
{
    const char *parts[] = {"1.0", NULL, status, text, user_id, ""};
    for (int i = 0; i < 6; i++) {
        int more = i < 5 ? ZMQ_SNDMORE : 0;
        int rc = i == 1 ? zmq_send(zap, zmq_msg_data((zmq_msg_t *)reqid),
                                   zmq_msg_size((zmq_msg_t *)reqid), more)
                        : zmq_send(zap, parts[i], strlen(parts[i]), more);
        if (rc < 0)
            return -1;
    }
    return 0;
}

static bool frame_is(zmq_msg_t *m, const char *s)
{
    return zmq_msg_size(m) == strlen(s) && memcmp(zmq_msg_data(m), s, strlen(s)) == 0;
}

int auth_zap_handle(auth *a, void *zap, int64_t now, int64_t mono_ms)
{
    zmq_msg_t f[ZAP_FRAMES];
    int n = 0, more = 1;
    for (int i = 0; i < ZAP_FRAMES; i++)
        zmq_msg_init(&f[i]);
    while (more) {
        zmq_msg_t extra, *m = n < ZAP_FRAMES ? &f[n] : &extra;
        if (m == &extra)
            zmq_msg_init(&extra);
        if (zmq_msg_recv(m, zap, n == 0 ? ZMQ_DONTWAIT : 0) < 0) {
            int en = zmq_errno();
            for (int i = 0; i < ZAP_FRAMES; i++)
                zmq_msg_close(&f[i]);
            if (n == 0 && (en == EAGAIN || en == EINTR))
                return 0;
            return en == ETERM ? KABAR_IO : 0;
        }
        more = zmq_msg_more(m);
        if (m == &extra)
            zmq_msg_close(&extra);
        n++;
    }
    char addr[64] = "?";
    const char *status = "400", *text = "unknown key";
    const auth_principal *p = NULL;
    if (n == ZAP_FRAMES && frame_is(&f[0], "1.0") && frame_is(&f[5], "CURVE") &&
        zmq_msg_size(&f[6]) == 32) {
        size_t al = zmq_msg_size(&f[3]) < sizeof addr - 1 ? zmq_msg_size(&f[3]) : sizeof addr - 1;
        memcpy(addr, zmq_msg_data(&f[3]), al);
        addr[al] = '\0';
        p = auth_by_curve(a, zmq_msg_data(&f[6]));
        if (p != NULL && !auth_valid(p, now))
            text = p->revoked_at <= now ? "key revoked" : "key not valid yet";
        else if (p != NULL && p->role == AUTH_NONE)
            text = "agency has no known role";
        else if (p != NULL)
            status = "200", text = "OK";
    } else {
        text = "CURVE is required";
    }
    bool ok = status[0] == '2';
    if (ok) {
        a->zap_ok++;
    } else {
        a->zap_denied++;
        klog_limited(&a->lim_zap, mono_ms, KLOG_WARN, "KABARD-DENIED",
                     "handshake from %s refused: %s%s%s%s", addr, text, p ? " (key " : "",
                     p ? p->user_id : "", p ? ")" : "");
    }
    /* A REP socket must answer what it received, or it stops receiving. */
    int rc = zap_reply(zap, n >= 2 ? &f[1] : &f[0], status, text, ok ? p->user_id : "");
    for (int i = 0; i < ZAP_FRAMES; i++)
        zmq_msg_close(&f[i]);
    return rc == 0 || zmq_errno() != ETERM ? 1 : KABAR_IO;
}

/* ------------------------------------------------------------------------ */
/* Refusals                                                                 */

void auth_refused(auth *a, const auth_principal *p, int code, const char *command, int64_t mono_ms)
{
    if (code > 0 && code < KABAR_ERR_COUNT_)
        a->refused[code]++;
    klog_limited(&a->lim_refused, mono_ms, KLOG_INFO, "KABARD-REFUSED", "%s (%s) refused %s: %s",
                 p->user_id[0] ? p->user_id : "anonymous", auth_role_name(p->role), command,
                 kabar_errname(code));
}

uint64_t auth_refusals(const auth *a, int code)
{
    return code > 0 && code < KABAR_ERR_COUNT_ ? a->refused[code] : 0;
}

void auth_zap_counts(const auth *a, uint64_t *admitted, uint64_t *denied)
{
    *admitted = a->zap_ok;
    *denied = a->zap_denied;
}

void auth_flush(auth *a, int64_t mono_ms)
{
    klog_limit_flush(&a->lim_refused, mono_ms);
    klog_limit_flush(&a->lim_zap, mono_ms);
}
