/*
 * server_query.c - replies to peers (ERR, refusals) and the requests kabard
 * answers in its read phase: HEAD, STATUS, SUB with CREDIT / CACK / UNSUB,
 * and CALL (see server_internal.h).
 *
 * Authorization here: SUB's target rule and the durable consumers' owner
 * (auth_check_sub, auth_check_consumer); CALL's rules are in calls.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msgpack.h>

#include "calls.h"
#include "klog.h"
#include "server_internal.h"

/* ------------------------------------------------------------------------ */
/* Replies                                                                  */

/* The peer's routing id as hex for log lines (at most 16 bytes shown). */
const char *server_hex_rid(const void *rid, size_t len, char out[40])
{
    static const char digits[] = "0123456789abcdef";
    const uint8_t *b = rid;
    size_t n = len < 16 ? len : 16, j = 0;
    for (size_t i = 0; i < n; i++) {
        out[j++] = digits[b[i] >> 4];
        out[j++] = digits[b[i] & 15];
    }
    if (n < len)
        out[j++] = '+';
    out[j] = '\0';
    return out;
}

void server_send_err(server *sv, const peer *p, uint64_t id, const char *what, const kabar_error *e)
{
    char hex[40];
    sv->stats.bad_msgs++;
    klog_limited(&sv->lim_bad, server_mono_ms(), KLOG_INFO, "KABARD-BAD-MSG",
                 "peer %s: %s answered with ERR %s: %s", server_hex_rid(p->rid, p->rid_len, hex),
                 what, kabar_errname(e->code), e->message);
    if (wire_enc_err(&sv->out, id, e->code, e->message) == 0)
        server_send_hdr(sv, p, &sv->out);
}

void server_refuse(server *sv, const peer *p, const auth_principal *who, uint64_t id,
                   const char *what, const kabar_error *e)
{
    auth_refused(sv->au, who, e->code, what, server_mono_ms());
    if (wire_enc_err(&sv->out, id, e->code, e->message) == 0)
        server_send_hdr(sv, p, &sv->out);
}

/* ------------------------------------------------------------------------ */
/* Read phase: queries                                                      */

static int pack_key(msgpack_packer *pk, const char *k)
{
    return msgpack_pack_str_with_body(pk, k, strlen(k));
}

/* Start a reply header [1, CMD, id, <map follows>]; the caller packs the map. */
static int reply_begin(server *sv, msgpack_packer *pk, const char *cmd, uint64_t id)
{
    sv->out.len = 0;
    wire_packer_init(pk, &sv->out);
    int rc = msgpack_pack_array(pk, 4);
    rc = rc ? rc : msgpack_pack_uint64(pk, KABAR_PROTOCOL_VERSION);
    rc = rc ? rc : pack_key(pk, cmd);
    rc = rc ? rc : msgpack_pack_uint64(pk, id);
    return rc;
}

void query_head(server *sv, peer *p, uint64_t id)
{
    store_reader *rd = server_reader(sv);
    kabar_error e;
    if (rd == NULL) {
        kabar_error_set(&e, KABAR_STORE, "cannot read the log; see the broker's log");
        server_send_err(sv, p, id, "HEAD", &e);
        return;
    }
    uint64_t head = store_reader_head(rd);
    store_record rec;
    bool has_last = head > 0 && store_get(rd, head, &rec, &e) == 0;
    msgpack_packer pk;
    int rc = reply_begin(sv, &pk, "HEADOK", id);
    rc = rc ? rc : msgpack_pack_map(&pk, has_last ? 3 : 2);
    rc = rc ? rc : pack_key(&pk, "count");
    rc = rc ? rc : msgpack_pack_uint64(&pk, store_reader_count(rd));
    if (has_last) {
        rc = rc ? rc : pack_key(&pk, "last_received_at");
        rc = rc ? rc : wire_pack_time(&pk, rec.received_at);
    }
    rc = rc ? rc : pack_key(&pk, "seq");
    rc = rc ? rc : msgpack_pack_uint64(&pk, head);
    if (rc == 0)
        server_send_hdr(sv, p, &sv->out);
}

typedef struct status_ctx {
    server *sv;
    msgpack_packer *pk;
    uint64_t head;
    uint32_t n;
    int rc;
} status_ctx;

static int count_consumer(void *arg, const store_consumer *c)
{
    ((status_ctx *)arg)->n++;
    return 0;
}

static int pack_consumer(void *arg, const store_consumer *c)
{
    status_ctx *x = arg;
    msgpack_packer *pk = x->pk;
    const sub *live = subs_find_durable(x->sv->subs, c->name, strlen(c->name));
    uint64_t acked = live != NULL && live->acked > c->acked ? live->acked : c->acked;
    int rc = msgpack_pack_map(pk, 4);
    rc = rc ? rc : pack_key(pk, "acked");
    rc = rc ? rc : msgpack_pack_uint64(pk, acked);
    rc = rc ? rc : pack_key(pk, "connected");
    rc = rc ? rc : (live != NULL ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
    rc = rc ? rc : pack_key(pk, "lag");
    rc = rc ? rc : msgpack_pack_uint64(pk, x->head > acked ? x->head - acked : 0);
    rc = rc ? rc : pack_key(pk, "name");
    rc = rc ? rc : pack_key(pk, c->name);
    x->rc = rc;
    return rc;
}

/* "refused": {CODE: n} for every authorization rule that refused something. */
static int pack_refused(server *sv, msgpack_packer *pk)
{
    uint32_t n = 0;
    for (int c = 1; c < KABAR_ERR_COUNT_; c++)
        n += auth_refusals(sv->au, c) != 0;
    int rc = pack_key(pk, "refused");
    rc = rc ? rc : msgpack_pack_map(pk, n);
    for (int c = 1; c < KABAR_ERR_COUNT_ && rc == 0; c++) {
        if (auth_refusals(sv->au, c) == 0)
            continue;
        rc = pack_key(pk, kabar_errname(c));
        rc = rc ? rc : msgpack_pack_uint64(pk, auth_refusals(sv->au, c));
    }
    return rc;
}

void query_status(server *sv, peer *p, uint64_t id)
{
    store_reader *rd = server_reader(sv);
    kabar_error e;
    if (rd == NULL) {
        kabar_error_set(&e, KABAR_STORE, "cannot read the log; see the broker's log");
        server_send_err(sv, p, id, "STATUS", &e);
        return;
    }
    msgpack_packer pk;
    status_ctx x = {.sv = sv, .pk = &pk, .head = store_reader_head(rd)};
    if (store_consumer_each(rd, count_consumer, &x, &e) != 0) {
        server_send_err(sv, p, id, "STATUS", &e);
        return;
    }
    const server_stats *st = &sv->stats;
    int rc = reply_begin(sv, &pk, "STATUSOK", id);
    rc = rc ? rc : msgpack_pack_map(&pk, 13);
    rc = rc ? rc : pack_key(&pk, "consumers");
    rc = rc ? rc : msgpack_pack_array(&pk, x.n);
    if (rc == 0 && x.n > 0 && (store_consumer_each(rd, pack_consumer, &x, &e) != 0 || x.rc != 0))
        rc = -1;
    struct {
        const char *k;
        uint64_t v;
    } nums[] = {
        {"count", store_reader_count(rd)},
        {"duplicates", st->duplicates},
        {"head", x.head},
        {"log_bytes", store_file_bytes(sv->st)},
        {"peers", subs_peer_count(sv->subs)},
        {"published", st->published},
        {"rejected", st->rejected},
        {"subscriptions", subs_count(sv->subs)},
        {"uptime_s", (uint64_t)(server_mono_ms() - sv->started_ms) / 1000},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0] && rc == 0; i++) {
        rc = pack_key(&pk, nums[i].k);
        rc = rc ? rc : msgpack_pack_uint64(&pk, nums[i].v);
        if (rc == 0 && strcmp(nums[i].k, "published") == 0)
            rc = pack_refused(sv, &pk);
        if (rc == 0 && strcmp(nums[i].k, "rejected") == 0) {
            rc = pack_key(&pk, "secure");
            rc = rc ? rc : sv->secure ? msgpack_pack_true(&pk) : msgpack_pack_false(&pk);
        }
    }
    rc = rc ? rc : pack_key(&pk, "version");
    rc = rc ? rc : pack_key(&pk, kabar_version());
    if (rc == 0)
        server_send_hdr(sv, p, &sv->out);
}

/* ------------------------------------------------------------------------ */
/* Read phase: subscriptions                                                */

/* Where a new subscription starts, from its options and the log. */
static int resolve_start(server *sv, store_reader *rd, const wire_sub *o, uint64_t *pos,
                         kabar_error *err)
{
    uint64_t head = store_reader_head(rd);
    switch (o->start) {
    case KABAR_START_FIRST:
        *pos = 1;
        return 0;
    case KABAR_START_NOW:
        *pos = head + 1;
        return 0;
    case KABAR_START_SEQ:
        *pos = o->seq ? o->seq : 1;
        return 0;
    case KABAR_START_TIME:
        *pos = store_seq_at_time(rd, o->time);
        return 0;
    }
    return kabar_error_set(err, KABAR_BAD_VALUE, "start: unknown start");
}

/*
 * The durable consumer's resume point: live holder (taken over), stored, or
 * new. The owner is copied into owner_buf, which spec->owner then points at:
 * a taken-over holder is freed here, and a stored consumer's strings live
 * only as long as the reader's snapshot.
 */
static int resolve_durable(server *sv, const peer *p, const auth_principal *who, store_reader *rd,
                           const wire_sub *o, sub_spec *spec,
                           char owner_buf[KABAR_MAX_AGENCY_LEN + 1], kabar_error *err)
{
    char name[KABAR_MAX_ID_LEN + 1];
    if (o->durable.len == 0 || o->durable.len > KABAR_MAX_ID_LEN ||
        memchr(o->durable.ptr, '\0', o->durable.len) != NULL)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "durable: a consumer name is 1 to %d bytes without NUL",
                               KABAR_MAX_ID_LEN);
    memcpy(name, o->durable.ptr, o->durable.len);
    name[o->durable.len] = '\0';
    spec->dirty = true; /* the filter is replaced by this SUB's */
    sub *old = subs_find_durable(sv->subs, name, o->durable.len);
    store_consumer c;
    int rc = old != NULL ? 0 : store_consumer_get(rd, name, &c, err);
    if (rc != 0 && rc != KABAR_NOT_FOUND)
        return rc;
    const char *owner = old != NULL ? old->owner : rc == 0 ? c.owner : who->agency;
    if (auth_check_consumer(who, owner) != 0)
        return kabar_error_set(err, KABAR_NOT_OWN_CONSUMER,
                               "durable consumer %s belongs to %s; choose another name", name,
                               owner);
    if (owner[0] == '\0' && sv->secure && who->agency[0] != '\0') {
        /* Made under --insecure, nobody's: the first secure subscriber owns it from now on
         * (persisted with this SUB's filter in the next commit). */
        klog(KLOG_INFO, "KABARD-CONSUMER-CLAIMED",
             "durable consumer %s had no owner (made under --insecure); it belongs to %s now", name,
             who->agency);
        owner = who->agency;
    }
    snprintf(owner_buf, KABAR_MAX_AGENCY_LEN + 1, "%s", owner);
    spec->owner = owner_buf;
    if (old != NULL) {
        char hex[40];
        klog(KLOG_INFO, "KABARD-TAKEOVER",
             "durable consumer %s taken over by peer %s; its previous subscription ends", name,
             server_hex_rid(p->rid, p->rid_len, hex));
        spec->acked = old->acked;
        spec->position = old->acked + 1;
        server_sink_end(sv, old, old->position - 1);
        subs_remove(sv->subs, old);
        return 0;
    }
    if (rc == 0) {
        spec->acked = c.acked;
        spec->position = c.acked + 1;
        return 0;
    }
    spec->acked = spec->position - 1; /* new: created at its start */
    return 0;
}

void query_sub(server *sv, peer *p, const wire_header *h, const auth_principal *who)
{
    kabar_error e;
    wire_sub o;
    store_reader *rd = server_reader(sv);
    if (wire_sub_decode(h, &o, &e) != 0) {
        server_send_err(sv, p, h->id, "SUB", &e);
        return;
    }
    if (rd == NULL) {
        kabar_error_set(&e, KABAR_STORE, "cannot read the log; see the broker's log");
        server_send_err(sv, p, h->id, "SUB", &e);
        return;
    }
    if (subs_find(sv->subs, p, h->id) != NULL) {
        kabar_error_set(&e, KABAR_PROTOCOL,
                        "subscription %" PRIu64 " already exists on this connection "
                        "(UNSUB it first or use another id)",
                        h->id);
        server_send_err(sv, p, h->id, "SUB", &e);
        return;
    }
    /* Limits first: a SUB that cannot be added must not take a durable consumer over. */
    if (p->nsubs >= SUBS_MAX_PER_PEER || subs_count(sv->subs) >= SUBS_MAX_TOTAL) {
        kabar_error_set(&e, KABAR_LIMIT,
                        "too many subscriptions (at most %d per connection, %d in all); UNSUB "
                        "some first",
                        SUBS_MAX_PER_PEER, SUBS_MAX_TOTAL);
        server_send_err(sv, p, h->id, "SUB", &e);
        return;
    }
    if (auth_check_sub(who, o.target) != 0) {
        kabar_error_set(&e, KABAR_NOT_OWN_TARGET,
                        "an agent subscribes only to events that target it (and broadcasts): "
                        "subscribe with target %s",
                        who->agency);
        server_refuse(sv, p, who, h->id, "SUB", &e);
        return;
    }
    uint64_t head = store_reader_head(rd);
    sub_spec spec = {
        .type_prefix = o.type_prefix, .source = o.source, .target = o.target, .credit = o.credit};
    if (o.until_seq > 0) {
        spec.bounded = true;
        spec.bound = o.until_seq;
    }
    if (o.until_head && (!spec.bounded || head < spec.bound)) {
        spec.bounded = true;
        spec.bound = head;
    }
    char owner[KABAR_MAX_AGENCY_LEN + 1];
    int rc = resolve_start(sv, rd, &o, &spec.position, &e);
    if (rc == 0 && o.durable.ptr != NULL) {
        spec.durable = o.durable;
        rc = resolve_durable(sv, p, who, rd, &o, &spec, owner, &e);
    }
    sub *s = NULL;
    if (rc == 0)
        rc = subs_add(sv->subs, p, h->id, &spec, &s, &e);
    if (rc == KABAR_NOT_OWN_CONSUMER) {
        server_refuse(sv, p, who, h->id, "SUB", &e);
        return;
    }
    if (rc != 0) {
        server_send_err(sv, p, h->id, "SUB", &e);
        return;
    }
    if (wire_enc_subok(&sv->out, h->id, s->position, head) == 0)
        server_send_hdr(sv, p, &sv->out);
    klog(KLOG_DEBUG, "KABARD-SUB", "subscription %" PRIu64 " from seq %" PRIu64 "%s%s", h->id,
         s->position, s->durable[0] ? " durable " : "", s->durable);
}

void query_sub_cmd(server *sv, peer *p, const wire_header *h, const auth_principal *who)
{
    kabar_error e;
    sub *s = subs_find(sv->subs, p, h->id);
    if (s == NULL) {
        kabar_error_set(&e, KABAR_UNKNOWN_SUBSCRIPTION,
                        "no subscription %" PRIu64 " on this connection (ended, or forgotten "
                        "after %d s of silence: subscribe again)",
                        h->id, KABAR_PEER_TIMEOUT_MS / 1000);
        server_send_err(sv, p, h->id, wire_cmd_name(h->cmd), &e);
        return;
    }
    switch (h->cmd) {
    case WIRE_CREDIT:
        subs_credit(s, h->a);
        break;
    case WIRE_CACK:
        if (auth_check_consumer(who, s->owner) != 0) {
            kabar_error_set(&e, KABAR_NOT_OWN_CONSUMER, "durable consumer %s belongs to %s",
                            s->durable, s->owner);
            server_refuse(sv, p, who, h->id, "CACK", &e);
        } else if (subs_cack(sv->subs, s, h->a, &e) != 0)
            server_send_err(sv, p, h->id, "CACK", &e);
        break;
    case WIRE_UNSUB:
        subs_remove(sv->subs, s);
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------------------ */
/* CALL                                                                     */

void query_call(server *sv, peer *p, const wire_header *h, const auth_principal *who)
{
    kabar_error e;
    kabar_str method;
    const uint8_t *params;
    size_t plen;
    store_reader *rd = server_reader(sv);
    if (wire_call_decode(h, &method, &params, &plen, &e) != 0) {
        server_send_err(sv, p, h->id, "CALL", &e);
        return;
    }
    if (rd == NULL) {
        kabar_error_set(&e, KABAR_STORE, "cannot read the log; see the broker's log");
        server_send_err(sv, p, h->id, "CALL", &e);
        return;
    }
    calls_env env = {.st = sv->st,
                     .rd = rd,
                     .au = sv->au,
                     .ck = sv->ck,
                     .who = who,
                     .secure = sv->secure,
                     .now = sv->now,
                     .mono_ms = server_mono_ms()};
    char by[AUTH_USER_ID_MAX];
    snprintf(by, sizeof by, "%s", who->user_id[0] ? who->user_id : "anonymous (--insecure)");
    int rc = calls_run(&env, h->id, method.ptr, method.len, params, plen, &sv->out, &e);
    if (rc == 0)
        server_send_hdr(sv, p, &sv->out);
    /* `who` may be gone now: a registry change reloads the cache it lives in. This
     * may send ERRs to other peers (sv->out is free again). */
    if (env.changed_at != 0) {
        if (env.reload_failed)
            sv->registry_stale = true;
        klog(KLOG_INFO, "KABARD-REGISTRY", "%.*s by %s", (int)method.len, method.ptr, by);
        server_registry_changed(sv, env.changed_at);
    }
    if (rc == 0)
        return;
    /* A refusal was counted and logged by calls_run; answer it without a second log line. */
    if (wire_enc_err(&sv->out, h->id, rc, e.message) == 0)
        server_send_hdr(sv, p, &sv->out);
    if (rc != KABAR_ADMIN_ONLY && rc != KABAR_AUDIT_ONLY)
        klog_limited(&sv->lim_bad, server_mono_ms(), KLOG_INFO, "KABARD-CALL-FAIL",
                     "%s: CALL %.*s failed: %s: %s", by, (int)(method.len < 40 ? method.len : 40),
                     method.ptr, kabar_errname(rc), e.message);
}
