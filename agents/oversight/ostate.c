/*
 * ostate.c - the oversight state in LMDB (layout and contracts in ostate.h).
 */
#include "ostate.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *const kind_names[OSTATE_KINDS] = {"findings", "visits", "innovations",
                                                     "attendance", "agencies"};

struct ostate {
    MDB_env *env;
    MDB_dbi dbi[OSTATE_KINDS];
    MDB_dbi meta;
    bool readonly;
    char path[4096];
};

struct ostate_txn {
    ostate *s;
    MDB_txn *txn;
    bool write;
};

static int lmdb_fail(kabar_error *err, int rc, const ostate *s, const char *what)
{
    if (rc == MDB_MAP_FULL || rc == ENOSPC)
        return kabar_error_set(err, KABAR_DISK_FULL,
                               "oversight state %s is full while %s: free disk space", s->path,
                               what);
    return kabar_error_set(err, KABAR_STORE, "oversight state %s: %s while %s", s->path,
                           mdb_strerror(rc), what);
}

const char *ostate_path(const ostate *s)
{
    return s->path;
}

int ostate_open(ostate **out, const char *dir, bool readonly, kabar_error *err)
{
    ostate *s = calloc(1, sizeof *s);
    if (s == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory opening the oversight state");
    s->readonly = readonly;
    snprintf(s->path, sizeof s->path, "%s/%s", dir, OSTATE_FILE);
    struct stat st;
    if (readonly && stat(s->path, &st) != 0) {
        int code = kabar_error_set(err, KABAR_NOT_FOUND,
                                   "no oversight state at %s (is --data the directory given to "
                                   "kabar-oversight --data?)",
                                   s->path);
        free(s);
        return code;
    }
    MDB_txn *txn = NULL;
    int rc = mdb_env_create(&s->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(s->env, OSTATE_KINDS + 2);
    if (rc == 0)
        rc = mdb_env_set_mapsize(s->env, OSTATE_MAP_BYTES);
    if (rc == 0)
        rc = mdb_env_open(s->env, s->path, MDB_NOSUBDIR | MDB_NOTLS | (readonly ? MDB_RDONLY : 0),
                          0644);
    if (rc == 0)
        rc = mdb_txn_begin(s->env, NULL, readonly ? MDB_RDONLY : 0, &txn);
    unsigned flags = readonly ? 0 : MDB_CREATE;
    for (int i = 0; rc == 0 && i < OSTATE_KINDS; i++)
        rc = mdb_dbi_open(txn, kind_names[i], flags, &s->dbi[i]);
    if (rc == 0)
        rc = mdb_dbi_open(txn, "meta", flags, &s->meta);
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    else if (txn != NULL)
        mdb_txn_abort(txn);
    if (rc != 0) {
        int code = lmdb_fail(err, rc, s, "opening it");
        if (rc == MDB_NOTFOUND)
            code = kabar_error_set(err, KABAR_STORE,
                                   "%s is not an oversight state (a database is missing)", s->path);
        mdb_env_close(s->env);
        free(s);
        return code;
    }
    *out = s;
    return 0;
}

void ostate_close(ostate **ps)
{
    if (ps == NULL || *ps == NULL)
        return;
    mdb_env_close((*ps)->env);
    free(*ps);
    *ps = NULL;
}

int ostate_begin(ostate *s, bool write, ostate_txn **out, kabar_error *err)
{
    if (write && s->readonly)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "oversight state %s opened read-only",
                               s->path);
    ostate_txn *t = calloc(1, sizeof *t);
    if (t == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    int rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, &t->txn);
    if (rc != 0) {
        free(t);
        return lmdb_fail(err, rc, s, "starting a transaction");
    }
    t->s = s;
    t->write = write;
    *out = t;
    return 0;
}

int ostate_commit(ostate_txn **pt, kabar_error *err)
{
    ostate_txn *t = *pt;
    *pt = NULL;
    int rc = mdb_txn_commit(t->txn);
    int code = rc == 0 ? 0 : lmdb_fail(err, rc, t->s, "committing");
    free(t);
    return code;
}

void ostate_abort(ostate_txn **pt)
{
    if (pt == NULL || *pt == NULL)
        return;
    mdb_txn_abort((*pt)->txn);
    free(*pt);
    *pt = NULL;
}

uint64_t ostate_position(ostate_txn *t)
{
    MDB_val k = {8, "position"}, d;
    uint64_t v = 0;
    if (mdb_get(t->txn, t->s->meta, &k, &d) == 0 && d.mv_size == 8)
        for (int i = 0; i < 8; i++)
            v = (v << 8) | ((const uint8_t *)d.mv_data)[i];
    return v;
}

int ostate_set_position(ostate_txn *t, uint64_t seq, kabar_error *err)
{
    uint8_t b[8];
    for (int i = 7; i >= 0; i--, seq >>= 8)
        b[i] = (uint8_t)seq;
    MDB_val k = {8, "position"}, d = {8, b};
    int rc = mdb_put(t->txn, t->s->meta, &k, &d, 0);
    return rc == 0 ? 0 : lmdb_fail(err, rc, t->s, "recording the position");
}

int ostate_meta_get(ostate_txn *t, const char *name, char *out, size_t cap, kabar_error *err)
{
    MDB_val k = {strlen(name), (void *)name}, d;
    out[0] = '\0';
    int rc = mdb_get(t->txn, t->s->meta, &k, &d);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return lmdb_fail(err, rc, t->s, "reading meta");
    size_t n = d.mv_size < cap - 1 ? d.mv_size : cap - 1;
    memcpy(out, d.mv_data, n);
    out[n] = '\0';
    return 0;
}

int ostate_meta_put(ostate_txn *t, const char *name, const char *value, kabar_error *err)
{
    MDB_val k = {strlen(name), (void *)name}, d = {strlen(value), (void *)value};
    int rc = mdb_put(t->txn, t->s->meta, &k, &d, 0);
    return rc == 0 ? 0 : lmdb_fail(err, rc, t->s, "writing meta");
}

static int parse_value(ostate_txn *t, ostate_kind k, const MDB_val *d, json_t **out,
                       kabar_error *err)
{
    json_error_t je;
    json_t *v = json_loadb(d->mv_data, d->mv_size, 0, &je);
    if (v == NULL || !json_is_object(v)) {
        json_decref(v);
        return kabar_error_set(err, KABAR_STORE, "oversight state %s: a %s record is damaged: %s",
                               t->s->path, kind_names[k], v ? "not an object" : je.text);
    }
    *out = v;
    return 0;
}

int ostate_get(ostate_txn *t, ostate_kind k, const char *key, size_t klen, json_t **out,
               kabar_error *err)
{
    MDB_val mk = {klen, (void *)key}, d;
    *out = NULL;
    if (klen == 0 || klen > 511)
        return 0; /* LMDB's key limit; no such record can exist */
    int rc = mdb_get(t->txn, t->s->dbi[k], &mk, &d);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return lmdb_fail(err, rc, t->s, "reading a record");
    return parse_value(t, k, &d, out, err);
}

int ostate_put(ostate_txn *t, ostate_kind k, const char *key, size_t klen, const json_t *v,
               kabar_error *err)
{
    if (klen == 0 || klen > 511)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "record key of %zu bytes", klen);
    char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    if (text == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory encoding a record");
    MDB_val mk = {klen, (void *)key}, d = {strlen(text), text};
    int rc = mdb_put(t->txn, t->s->dbi[k], &mk, &d, 0);
    free(text);
    return rc == 0 ? 0 : lmdb_fail(err, rc, t->s, "writing a record");
}

int ostate_each(ostate_txn *t, ostate_kind k, ostate_each_fn fn, void *arg, kabar_error *err)
{
    MDB_cursor *cur;
    MDB_val mk, d;
    int rc = mdb_cursor_open(t->txn, t->s->dbi[k], &cur);
    if (rc != 0)
        return lmdb_fail(err, rc, t->s, "opening a cursor");
    int out = 0;
    for (rc = mdb_cursor_get(cur, &mk, &d, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &mk, &d, MDB_NEXT)) {
        json_t *v;
        if ((out = parse_value(t, k, &d, &v, err)) != 0)
            break;
        out = fn(arg, mk.mv_data, mk.mv_size, v);
        json_decref(v);
        if (out != 0)
            break;
    }
    mdb_cursor_close(cur);
    if (out == 0 && rc != MDB_NOTFOUND)
        out = lmdb_fail(err, rc, t->s, "walking records");
    return out;
}

typedef struct dump_ctx {
    kabar_buf *out;
    const char *kind;
} dump_ctx;

static int dump_one(void *arg, const char *key, size_t klen, json_t *v)
{
    dump_ctx *c = arg;
    char *text = json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS);
    int rc = text == NULL;
    rc = rc || kabar_buf_append(c->out, c->kind, strlen(c->kind)) != 0 ||
         kabar_buf_append(c->out, " ", 1) != 0;
    for (size_t i = 0; i < klen && !rc; i++) /* attendance keys hold a NUL: show it as '/' */
        rc = kabar_buf_append(c->out, key[i] ? &key[i] : "/", 1) != 0;
    rc = rc || kabar_buf_append(c->out, " ", 1) != 0 ||
         kabar_buf_append(c->out, text, strlen(text)) != 0 ||
         kabar_buf_append(c->out, "\n", 1) != 0;
    free(text);
    return rc ? KABAR_NO_MEMORY : 0;
}

int ostate_dump(ostate_txn *t, kabar_buf *out, kabar_error *err)
{
    char pos[40];
    int n = snprintf(pos, sizeof pos, "position %llu\n", (unsigned long long)ostate_position(t));
    if (kabar_buf_append(out, pos, (size_t)n) != 0)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    for (int k = 0; k < OSTATE_KINDS; k++) {
        dump_ctx c = {out, kind_names[k]};
        int rc = ostate_each(t, (ostate_kind)k, dump_one, &c, err);
        if (rc == KABAR_NO_MEMORY)
            return kabar_error_set(err, rc, "out of memory");
        if (rc != 0)
            return rc;
    }
    return 0;
}
