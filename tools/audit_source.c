/*
 * audit_source.c - the log, from a data directory or a broker (audit_source.h).
 */
#include "audit_source.h"

#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "checkpoint.h"
#include "mpr.h"

#define RECORDS_MAX 4096 /* audit.records "max" */

/* Registry keys as read from agency.list. */
typedef struct okey {
    audit_key k;
} okey;

struct audit_online {
    kabar_client *c;
    kabar_buf res;  /* the last audit.records answer */
    uint64_t from;  /* first seq in res */
    uint32_t nrecs; /* records in res */
    const uint8_t **rec;
    size_t *rec_len;
    kabar_buf batch_res, batch_val; /* audit.batch answer, re-laid as a batches value */
    kabar_buf tmp;
    okey *keys;
    size_t nkeys;
    bool keys_loaded;
};

/* ------------------------------------------------------------------------ */
/* msgpack helpers                                                          */

/* Params {key: uint, ...} (up to 2 pairs; key2 NULL for one). */
static int params_u64(msgpack_sbuffer *sb, const char *k1, uint64_t v1, const char *k2, uint64_t v2)
{
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, k2 ? 2 : 1);
    msgpack_pack_str_with_body(&pk, k1, strlen(k1));
    msgpack_pack_uint64(&pk, v1);
    if (k2) {
        msgpack_pack_str_with_body(&pk, k2, strlen(k2));
        msgpack_pack_uint64(&pk, v2);
    }
    return 0;
}

static int call(audit_online *o, const char *method, msgpack_sbuffer *params, kabar_buf *out,
                kabar_error *err)
{
    out->len = 0;
    int rc = kabar_client_call(o->c, method, params ? params->data : NULL,
                               params ? params->size : 0, out, err);
    if (params)
        msgpack_sbuffer_destroy(params);
    return rc; /* the client's message names the method */
}

/* Position r at the value of `key` in the top-level map of buf; *it = its header. */
static int map_find(const kabar_buf *buf, const char *key, mpr *r, mpr_item *it, kabar_error *err)
{
    mpr_item m, k;
    int rc;
    mpr_init(r, buf->data, buf->len);
    r->canonical = false;
    if ((rc = mpr_expect(r, MPR_MAP, &m, "RESULT", err)) != 0)
        return rc;
    for (uint32_t i = 0; i < m.count; i++) {
        if ((rc = mpr_next(r, &k, err)) != 0)
            return rc;
        if (k.kind == MPR_STR && k.len == strlen(key) && memcmp(k.str, key, k.len) == 0)
            return mpr_next(r, it, err);
        if ((rc = mpr_skip(r, 16, err)) != 0)
            return rc;
    }
    return kabar_error_set(err, KABAR_PROTOCOL, "the broker's answer has no \"%s\"", key);
}

static int find_bin(const kabar_buf *buf, const char *key, size_t want, const uint8_t **out,
                    kabar_error *err)
{
    mpr r;
    mpr_item it;
    int rc = map_find(buf, key, &r, &it, err);
    if (rc != 0)
        return rc;
    if (it.kind != MPR_BIN || (want && it.len != want))
        return kabar_error_set(err, KABAR_PROTOCOL,
                               "\"%s\" in the broker's answer is not %zu bytes", key, want);
    *out = (const uint8_t *)it.str;
    return 0;
}

static int find_hashes(const kabar_buf *buf, const char *key, merkle_proof *p, kabar_error *err)
{
    mpr r;
    mpr_item it, h;
    int rc = map_find(buf, key, &r, &it, err);
    if (rc != 0)
        return rc;
    if (it.kind != MPR_ARRAY || it.count > MERKLE_MAX_PROOF)
        return kabar_error_set(err, KABAR_PROTOCOL, "\"%s\" is not a list of hashes", key);
    p->len = 0;
    for (uint32_t i = 0; i < it.count; i++) {
        if ((rc = mpr_next(&r, &h, err)) != 0)
            return rc;
        if (h.kind != MPR_BIN || h.len != 32)
            return kabar_error_set(err, KABAR_PROTOCOL, "\"%s\"[%u] is not a 32-byte hash", key, i);
        memcpy(p->hash[p->len++], h.str, 32);
    }
    return 0;
}

/* ------------------------------------------------------------------------ */

int audit_note_size(const char *note, size_t len, uint64_t *size, char *origin, size_t origin_sz,
                    kabar_error *err)
{
    checkpoint c;
    const char *end = NULL;
    for (size_t i = 0; i + 1 < len; i++)
        if (note[i] == '\n' && note[i + 1] == '\n') {
            end = note + i + 1;
            break;
        }
    if (end == NULL)
        return kabar_error_set(err, KABAR_BAD_VALUE, "not a signed note (no blank line)");
    int rc = checkpoint_parse(&c, note, (size_t)(end - note), err);
    if (rc != 0)
        return rc;
    *size = c.size;
    if (origin)
        snprintf(origin, origin_sz, "%s", c.origin);
    return 0;
}

int audit_source_open_dir(audit_source *s, const char *dir, kabar_error *err)
{
    memset(s, 0, sizeof *s);
    s->log = calloc(1, sizeof *s->log);
    if (s->log == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    int rc = audit_log_open(s->log, dir, err);
    if (rc != 0) {
        free(s->log);
        s->log = NULL;
        return rc;
    }
    s->head = s->log->head;
    snprintf(s->origin, sizeof s->origin, "%s", s->log->origin);
    return 0;
}

int audit_source_open_client(audit_source *s, kabar_client *c, kabar_error *err)
{
    memset(s, 0, sizeof *s);
    s->online = calloc(1, sizeof *s->online);
    if (s->online == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    s->online->c = c;
    kabar_head h;
    int rc = kabar_client_head(c, &h, err);
    if (rc != 0) {
        audit_source_close(s);
        return rc;
    }
    s->head = h.seq;
    return 0;
}

int audit_source_refresh_head(audit_source *s, kabar_error *err)
{
    if (s->online == NULL)
        return 0;
    kabar_head h;
    int rc = kabar_client_head(s->online->c, &h, err);
    if (rc == 0)
        s->head = h.seq;
    return rc;
}

void audit_source_close(audit_source *s)
{
    if (s->log) {
        audit_log_close(s->log);
        free(s->log);
    }
    if (s->online) {
        audit_online *o = s->online;
        kabar_buf_free(&o->res);
        kabar_buf_free(&o->batch_res);
        kabar_buf_free(&o->batch_val);
        kabar_buf_free(&o->tmp);
        free(o->rec);
        free(o->rec_len);
        free(o->keys);
        free(o);
    }
    memset(s, 0, sizeof *s);
}

static int online_fetch(audit_online *o, uint64_t from, kabar_error *err)
{
    msgpack_sbuffer sb;
    params_u64(&sb, "from", from, "max", RECORDS_MAX);
    int rc = call(o, "audit.records", &sb, &o->res, err);
    if (rc != 0)
        return rc;
    mpr r;
    mpr_item it, b;
    if ((rc = map_find(&o->res, "records", &r, &it, err)) != 0)
        return rc;
    if (it.kind != MPR_ARRAY || it.count > RECORDS_MAX)
        return kabar_error_set(err, KABAR_PROTOCOL, "audit.records: \"records\" is not a list");
    free(o->rec);
    free(o->rec_len);
    o->rec = malloc((it.count + 1) * sizeof *o->rec);
    o->rec_len = malloc((it.count + 1) * sizeof *o->rec_len);
    if (o->rec == NULL || o->rec_len == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    for (uint32_t i = 0; i < it.count; i++) {
        if ((rc = mpr_next(&r, &b, err)) != 0)
            return rc;
        if (b.kind != MPR_BIN)
            return kabar_error_set(err, KABAR_PROTOCOL, "audit.records: a record is not bin");
        o->rec[i] = (const uint8_t *)b.str;
        o->rec_len[i] = b.len;
    }
    o->from = from;
    o->nrecs = it.count;
    return 0;
}

int audit_source_record(audit_source *s, uint64_t seq, audit_rec *r, kabar_error *err)
{
    if (s->log)
        return audit_log_record(s->log, seq, r, err);
    audit_online *o = s->online;
    if (seq == 0 || seq > s->head)
        return kabar_error_set(err, KABAR_NOT_FOUND, "seq %llu is not in the log",
                               (unsigned long long)seq);
    if (o->nrecs == 0 || seq < o->from || seq >= o->from + o->nrecs) {
        int rc = online_fetch(o, seq, err);
        if (rc != 0)
            return rc;
        if (o->nrecs == 0)
            return kabar_error_set(err, KABAR_NOT_FOUND, "seq %llu is not in the log",
                                   (unsigned long long)seq);
    }
    uint64_t i = seq - o->from;
    return audit_rec_parse(o->rec[i], o->rec_len[i], seq, r, err);
}

int audit_source_checkpoint(audit_source *s, bool fresh, kabar_buf *note, uint64_t *size,
                            kabar_error *err)
{
    int rc;
    note->len = 0;
    if (s->log) {
        const char *n;
        size_t len;
        if ((rc = audit_log_checkpoint(s->log, 0, &n, &len, size, err)) != 0)
            return rc;
        if (kabar_buf_append(note, n, len) != 0)
            return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    } else {
        audit_online *o = s->online;
        mpr r;
        mpr_item it;
        /* kabard makes at most one checkpoint on demand per second; when
         * another request took it, the answer says "fresh": false and the
         * checkpoint may lag the head: ask again after that second. */
        for (int attempt = 0;; attempt++) {
            msgpack_sbuffer sb;
            msgpack_packer pk;
            msgpack_sbuffer_init(&sb);
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            msgpack_pack_map(&pk, 1);
            msgpack_pack_str_with_body(&pk, "new", 3);
            if (fresh)
                msgpack_pack_true(&pk);
            else
                msgpack_pack_false(&pk);
            rc = call(o, "audit.checkpoint", &sb, &o->tmp, err);
            /* NOT_FOUND: no checkpoint stored yet and the second's one is taken. */
            if (rc == KABAR_NOT_FOUND && fresh && attempt < 3) {
                nanosleep(&(struct timespec){1, 100000000}, NULL);
                continue;
            }
            if (rc != 0)
                return rc;
            kabar_error ignored;
            if (!fresh || attempt == 3 || map_find(&o->tmp, "fresh", &r, &it, &ignored) != 0 ||
                it.kind != MPR_BOOL || it.b)
                break;
            nanosleep(&(struct timespec){1, 100000000}, NULL);
        }
        if ((rc = map_find(&o->tmp, "note", &r, &it, err)) != 0)
            return rc;
        if (it.kind != MPR_STR)
            return kabar_error_set(err, KABAR_PROTOCOL, "audit.checkpoint: \"note\" is not a str");
        if (kabar_buf_append(note, it.str, it.len) != 0)
            return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
        if ((rc = audit_note_size(note->data, note->len, size, NULL, 0, err)) != 0)
            return rc;
    }
    if (s->origin[0] == '\0') {
        uint64_t ignored;
        audit_note_size(note->data, note->len, &ignored, s->origin, sizeof s->origin, NULL);
    }
    return 0;
}

int audit_source_checkpoints(audit_source *s,
                             int (*fn)(void *arg, uint64_t size, const char *note, size_t len),
                             void *arg, kabar_error *err)
{
    int rc;
    if (s->log) {
        audit_log *l = s->log;
        if (!l->has[ADB_CHECKPOINTS])
            return 0;
        MDB_cursor *c;
        if ((rc = mdb_cursor_open(l->txn, l->dbi[ADB_CHECKPOINTS], &c)) != 0)
            return kabar_error_set(err, KABAR_STORE, "cannot read checkpoints: %s",
                                   mdb_strerror(rc));
        MDB_val k, v;
        rc = 0;
        for (int op = MDB_FIRST; rc == 0 && mdb_cursor_get(c, &k, &v, op) == 0; op = MDB_NEXT) {
            uint64_t size = 0;
            if (k.mv_size == 8)
                for (int i = 0; i < 8; i++)
                    size = (size << 8) | ((const uint8_t *)k.mv_data)[i];
            else
                size = UINT64_MAX; /* a damaged key: reported by the caller */
            rc = fn(arg, size, v.mv_data, v.mv_size);
        }
        mdb_cursor_close(c);
        return rc;
    }
    audit_online *o = s->online;
    if ((rc = call(o, "audit.checkpoints", NULL, &o->tmp, err)) != 0)
        return rc;
    mpr r;
    mpr_item it, n;
    if ((rc = map_find(&o->tmp, "notes", &r, &it, err)) != 0)
        return rc;
    if (it.kind != MPR_ARRAY)
        return kabar_error_set(err, KABAR_PROTOCOL, "audit.checkpoints: \"notes\" is not a list");
    for (uint32_t i = 0; i < it.count; i++) {
        if ((rc = mpr_next(&r, &n, err)) != 0)
            return rc;
        if (n.kind != MPR_STR)
            return kabar_error_set(err, KABAR_PROTOCOL, "audit.checkpoints: a note is not a str");
        uint64_t size = UINT64_MAX;
        audit_note_size(n.str, n.len, &size, NULL, 0, NULL);
        if ((rc = fn(arg, size, n.str, n.len)) != 0)
            return rc;
    }
    return 0;
}

int audit_source_batch(audit_source *s, uint64_t id, audit_batch *b, kabar_error *err)
{
    if (s->log)
        return audit_log_batch(s->log, id, b, err);
    audit_online *o = s->online;
    msgpack_sbuffer sb;
    params_u64(&sb, "id", id, NULL, 0);
    int rc = call(o, "audit.batch", &sb, &o->batch_res, err);
    if (rc != 0)
        return rc;
    const uint8_t *key, *sig;
    if ((rc = find_bin(&o->batch_res, "key", 32, &key, err)) != 0 ||
        (rc = find_bin(&o->batch_res, "sig", 64, &sig, err)) != 0)
        return rc;
    mpr r;
    mpr_item it, h;
    if ((rc = map_find(&o->batch_res, "leaves", &r, &it, err)) != 0)
        return rc;
    if (it.kind != MPR_ARRAY || it.count == 0)
        return kabar_error_set(err, KABAR_PROTOCOL, "audit.batch: \"leaves\" is not a list");
    o->batch_val.len = 0;
    uint8_t nb[4] = {(uint8_t)(it.count >> 24), (uint8_t)(it.count >> 16), (uint8_t)(it.count >> 8),
                     (uint8_t)it.count};
    rc = kabar_buf_append(&o->batch_val, key, 32) | kabar_buf_append(&o->batch_val, sig, 64) |
         kabar_buf_append(&o->batch_val, nb, 4);
    for (uint32_t i = 0; rc == 0 && i < it.count; i++) {
        if ((rc = mpr_next(&r, &h, err)) != 0)
            return rc;
        if (h.kind != MPR_BIN || h.len != 32)
            return kabar_error_set(err, KABAR_PROTOCOL, "audit.batch: a leaf is not 32 bytes");
        rc = kabar_buf_append(&o->batch_val, h.str, 32);
    }
    if (rc != 0)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    return audit_batch_parse(o->batch_val.data, o->batch_val.len, id, b, err);
}

/* agency.list -> every key of every agency. */
static int online_keys(audit_online *o, kabar_error *err)
{
    int rc = call(o, "agency.list", NULL, &o->tmp, err);
    if (rc != 0)
        return rc;
    mpr r;
    mpr_item list, ag, k, v, keys, km, kk, kv;
    if ((rc = map_find(&o->tmp, "agencies", &r, &list, err)) != 0)
        return rc;
    if (list.kind != MPR_ARRAY)
        return kabar_error_set(err, KABAR_PROTOCOL, "agency.list: \"agencies\" is not a list");
    for (uint32_t a = 0; a < list.count; a++) {
        if ((rc = mpr_expect(&r, MPR_MAP, &ag, "agency", err)) != 0)
            return rc;
        char id[64] = "";
        for (uint32_t f = 0; f < ag.count; f++) {
            if ((rc = mpr_next(&r, &k, err)) != 0)
                return rc;
            if (k.kind == MPR_STR && k.len == 2 && memcmp(k.str, "id", 2) == 0) {
                if ((rc = mpr_next(&r, &v, err)) != 0)
                    return rc;
                if (v.kind == MPR_STR && v.len < sizeof id) {
                    memcpy(id, v.str, v.len);
                    id[v.len] = '\0';
                }
            } else if (k.kind == MPR_STR && k.len == 4 && memcmp(k.str, "keys", 4) == 0) {
                if ((rc = mpr_next(&r, &keys, err)) != 0)
                    return rc;
                if (keys.kind != MPR_ARRAY)
                    return kabar_error_set(err, KABAR_PROTOCOL, "agency.list: bad \"keys\"");
                for (uint32_t i = 0; i < keys.count; i++) {
                    if ((rc = mpr_expect(&r, MPR_MAP, &km, "key", err)) != 0)
                        return rc;
                    okey ok = {{.valid_from = INT64_MIN, .revoked_at = INT64_MAX}};
                    bool have = false;
                    for (uint32_t j = 0; j < km.count; j++) {
                        if ((rc = mpr_next(&r, &kk, err)) != 0 || (rc = mpr_next(&r, &kv, err)))
                            return rc;
                        if (kv.kind == MPR_ARRAY || kv.kind == MPR_MAP)
                            return kabar_error_set(err, KABAR_PROTOCOL, "agency.list: bad key");
                        if (kk.len == 3 && memcmp(kk.str, "key", 3) == 0 && kv.kind == MPR_BIN &&
                            kv.len == 32) {
                            memcpy(ok.k.pk, kv.str, 32);
                            have = true;
                        } else if (kk.len == 10 && memcmp(kk.str, "valid_from", 10) == 0) {
                            ok.k.valid_from = kv.i;
                        } else if (kk.len == 10 && memcmp(kk.str, "revoked_at", 10) == 0 &&
                                   kv.kind == MPR_TIMESTAMP) {
                            ok.k.revoked_at = kv.i;
                        }
                    }
                    if (!have)
                        continue;
                    okey *n = realloc(o->keys, (o->nkeys + 1) * sizeof *n);
                    if (n == NULL)
                        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
                    o->keys = n;
                    o->keys[o->nkeys++] = ok;
                }
            } else if ((rc = mpr_skip(&r, 16, err)) != 0) {
                return rc;
            }
        }
        /* The keys just added belong to this agency (id may come after keys). */
        for (size_t i = o->nkeys; i > 0 && o->keys[i - 1].k.agency[0] == '\0'; i--)
            snprintf(o->keys[i - 1].k.agency, sizeof o->keys[i - 1].k.agency, "%s", id);
    }
    o->keys_loaded = true;
    return 0;
}

int audit_source_key(audit_source *s, const uint8_t pk[32], audit_key *k, kabar_error *err)
{
    if (s->log)
        return audit_log_key(s->log, pk, k, err);
    audit_online *o = s->online;
    int rc;
    if (!o->keys_loaded && (rc = online_keys(o, err)) != 0)
        return rc;
    for (size_t i = 0; i < o->nkeys; i++)
        if (memcmp(o->keys[i].k.pk, pk, 32) == 0) {
            *k = o->keys[i].k;
            return 0;
        }
    return kabar_error_set(err, KABAR_NOT_FOUND, "key not in the registry");
}

int audit_source_prove(audit_source *s, uint64_t seq, uint64_t size, merkle_proof *p,
                       uint8_t root[32], kabar_buf *record, kabar_error *err)
{
    int rc;
    if (seq == 0 || seq > size)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "seq %llu is not in the tree of size %llu", (unsigned long long)seq,
                               (unsigned long long)size);
    if (s->log) {
        merkle_store ms = audit_log_merkle(s->log);
        audit_rec r;
        if ((rc = merkle_inclusion_proof(&ms, seq - 1, size, p, err)) != 0 ||
            (rc = merkle_root(&ms, size, root, err)) != 0)
            return rc;
        if (record == NULL)
            return 0;
        if ((rc = audit_log_record(s->log, seq, &r, err)) != 0)
            return rc;
        return kabar_buf_append(record, r.raw, r.raw_len)
                   ? kabar_error_set(err, KABAR_NO_MEMORY, "out of memory")
                   : 0;
    }
    audit_online *o = s->online;
    msgpack_sbuffer sb;
    params_u64(&sb, "seq", seq, "size", size);
    if ((rc = call(o, "audit.prove", &sb, &o->tmp, err)) != 0)
        return rc;
    const uint8_t *r;
    if ((rc = find_hashes(&o->tmp, "proof", p, err)) != 0 ||
        (rc = find_bin(&o->tmp, "root", 32, &r, err)) != 0)
        return rc;
    memcpy(root, r, 32);
    if (record == NULL)
        return 0;
    mpr m;
    mpr_item it;
    if ((rc = map_find(&o->tmp, "record", &m, &it, err)) != 0)
        return rc;
    if (it.kind != MPR_BIN)
        return kabar_error_set(err, KABAR_PROTOCOL, "audit.prove: \"record\" is not bin");
    return kabar_buf_append(record, it.str, it.len)
               ? kabar_error_set(err, KABAR_NO_MEMORY, "out of memory")
               : 0;
}

int audit_source_consistency(audit_source *s, uint64_t old_size, uint64_t new_size, merkle_proof *p,
                             uint8_t old_root[32], uint8_t new_root[32], kabar_error *err)
{
    int rc;
    if (s->log) {
        merkle_store ms = audit_log_merkle(s->log);
        if ((rc = merkle_consistency_proof(&ms, old_size, new_size, p, err)) != 0 ||
            (rc = merkle_root(&ms, old_size, old_root, err)) != 0)
            return rc;
        return merkle_root(&ms, new_size, new_root, err);
    }
    audit_online *o = s->online;
    msgpack_sbuffer sb;
    params_u64(&sb, "old", old_size, "new", new_size);
    if ((rc = call(o, "audit.consistency", &sb, &o->tmp, err)) != 0)
        return rc;
    const uint8_t *a, *b;
    if ((rc = find_hashes(&o->tmp, "proof", p, err)) != 0 ||
        (rc = find_bin(&o->tmp, "old_root", 32, &a, err)) != 0 ||
        (rc = find_bin(&o->tmp, "new_root", 32, &b, err)) != 0)
        return rc;
    memcpy(old_root, a, 32);
    memcpy(new_root, b, 32);
    return 0;
}
