/*
 * store_open.c - opening and closing the log (contract: store.h; layout in
 * docs/STORAGE.md): the directory and its writer lock, the LMDB
 * environment, the named databases, the meta record (format, created_at,
 * origin) and what the store keeps in memory from it (head, last batch id,
 * the tree's frontier is loaded by the first write). The design notes on
 * the environment (NOSUBDIR, NOTLS, the lock, map growth) are at the top
 * of store.c, with the write side they serve.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "checkpoint.h"
#include "mpr.h"
#include "store_internal.h"

#define STORE_MAP_START   (64ull << 20)
#define STORE_MAX_READERS 512
#define IDX_FLAGS         (MDB_DUPSORT | MDB_DUPFIXED)
const char *const store__db_names[DB_COUNT] = {
    [DB_META] = "meta",           [DB_EVENTS] = "events",
    [DB_SOURCE] = "by_source",    [DB_TARGET] = "by_target",
    [DB_TYPE] = "by_type",        [DB_DEDUP] = "dedup",
    [DB_TREE] = "tree",           [DB_BATCHES] = "batches",
    [DB_CONSUMERS] = "consumers", [DB_CHECKPOINTS] = "checkpoints",
    [DB_AGENCIES] = "agencies",   [DB_KEYS] = "keys",
};

static unsigned db_flags(int i)
{
    return i == DB_SOURCE || i == DB_TARGET || i == DB_TYPE ? IDX_FLAGS : 0;
}

/* ------------------------------------------------------------------------ */
/* Open and close                                                           */

int store__ts_pack(msgpack_packer *pk, int64_t ns)
{
    msgpack_timestamp ts;
    ts.tv_sec = ns / 1000000000;
    int64_t rem = ns % 1000000000;
    if (rem < 0) {
        rem += 1000000000;
        ts.tv_sec--;
    }
    ts.tv_nsec = (uint32_t)rem;
    return msgpack_pack_timestamp(pk, &ts);
}

/* The record at cursor position: seq key and header. */
int store__rec_parse(const MDB_val *k, const MDB_val *v, store_record *rec)
{
    const uint8_t *p = v->mv_data;
    if (k->mv_size != 8 || v->mv_size <= REC_HDR || p[0] != STORE_FORMAT)
        return STORE_BADREC;
    rec->seq = get_be64(k->mv_data);
    rec->received_at = (int64_t)get_be64(p + 1);
    rec->batch = get_be64(p + 9);
    rec->batch_index = get_be32(p + 17);
    rec->bytes = p + REC_HDR;
    rec->len = v->mv_size - REC_HDR;
    rec->raw = p;
    rec->raw_len = v->mv_size;
    return 0;
}

/* A checkpoint origin must be a C2SP key name: let the signer's own check say. */
static int origin_check(const store *s, const char *origin, kabar_error *err)
{
    static const uint8_t zero[CHECKPOINT_SEED];
    checkpoint_signer sg;
    kabar_error e;
    int rc = checkpoint_signer_from_seed(&sg, origin, zero, &e);
    checkpoint_signer_wipe(&sg);
    if (rc != 0)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "cannot create log at %s: origin '%.64s' is not a valid checkpoint "
                               "origin (1 to 255 bytes of UTF-8, no space, control character or "
                               "'+'); pass another origin",
                               s->dir, origin);
    return 0;
}

static int meta_put(store *s, MDB_txn *txn, const char *key, const void *val, size_t len,
                    kabar_error *err)
{
    MDB_val k = {strlen(key), (void *)key}, v = {len, (void *)val};
    int rc = mdb_put(txn, s->dbi[DB_META], &k, &v, 0);
    return rc != 0 ? store__fail(s, rc, "cannot create", err) : 0;
}

/* A new log's meta: format, created_at, origin. */
static int create_meta(store *s, MDB_txn *txn, const char *origin, kabar_error *err)
{
    char def[sizeof s->origin];
    if (origin == NULL) {
        char host[200];
        if (gethostname(host, sizeof host) != 0 || host[0] == '\0')
            strcpy(host, "localhost");
        host[sizeof host - 1] = '\0';
        snprintf(def, sizeof def, "kabar/%s", host);
        origin = def;
    }
    int rc = origin_check(s, origin, err);
    if (rc != 0)
        return rc;
    uint8_t fmt = STORE_FORMAT; /* msgpack positive fixint */
    if ((rc = meta_put(s, txn, "format", &fmt, 1, err)) != 0)
        return rc;
    msgpack_sbuffer_clear(&s->scratch);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s->scratch, msgpack_sbuffer_write);
    if (store__ts_pack(&pk, kabar_now()) != 0)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    if ((rc = meta_put(s, txn, "created_at", s->scratch.data, s->scratch.size, err)) != 0)
        return rc;
    msgpack_sbuffer_clear(&s->scratch);
    if (msgpack_pack_str_with_body(&pk, origin, strlen(origin)) != 0)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    if ((rc = meta_put(s, txn, "origin", s->scratch.data, s->scratch.size, err)) != 0)
        return rc;
    snprintf(s->origin, sizeof s->origin, "%s", origin);
    return 0;
}

/* Read meta key as one msgpack item of `kind`: 0, MDB_NOTFOUND, STORE_BADREC or an LMDB code. */
static int meta_item(store *s, MDB_txn *txn, const char *key, mpr_kind kind, mpr_item *it)
{
    MDB_val k = {strlen(key), (void *)key}, v;
    int rc = mdb_get(txn, s->dbi[DB_META], &k, &v);
    if (rc != 0)
        return rc;
    mpr r;
    mpr_init(&r, v.mv_data, v.mv_size);
    r.canonical = false;
    if (mpr_next(&r, it, NULL) != 0 || it->kind != kind || mpr_left(&r) != 0)
        return STORE_BADREC;
    return 0;
}

/* Create a new log's meta, or check an existing one's format and read its origin. */
static int check_meta(store *s, MDB_txn *txn, const char *origin, kabar_error *err)
{
    mpr_item it;
    int rc = meta_item(s, txn, "format", MPR_UINT, &it);
    if (rc == STORE_BADREC)
        return kabar_error_set(err, KABAR_STORE, "%s/log.mdb has a malformed format record",
                               s->dir);
    if (rc == 0) {
        if (it.u == 1)
            return kabar_error_set(
                err, KABAR_STORE,
                "log at %s has format 1, which predates signed events and the Merkle log: this "
                "kabar reads format %d only; re-import its events into a new --data directory "
                "(docs/STORAGE.md, \"Format 1 logs\")",
                s->dir, STORE_FORMAT);
        if (it.u != STORE_FORMAT)
            return kabar_error_set(err, KABAR_STORE,
                                   "log at %s has format %llu, this kabar reads format %d "
                                   "(use the kabar version that wrote it)",
                                   s->dir, (unsigned long long)it.u, STORE_FORMAT);
        rc = meta_item(s, txn, "origin", MPR_STR, &it);
        if (rc == 0 && (it.len == 0 || it.len >= sizeof s->origin))
            rc = STORE_BADREC;
        if (rc == MDB_NOTFOUND || rc == STORE_BADREC)
            return kabar_error_set(err, KABAR_STORE,
                                   "%s/log.mdb has no valid origin record (its meta database is "
                                   "damaged)",
                                   s->dir);
        if (rc != 0)
            return store__fail(s, rc, "cannot read", err);
        memcpy(s->origin, it.str, it.len);
        s->origin[it.len] = '\0';
        return 0;
    }
    if (rc != MDB_NOTFOUND)
        return store__fail(s, rc, "cannot read", err);
    MDB_stat st;
    if (s->readonly || (mdb_stat(txn, s->dbi[DB_EVENTS], &st) == 0 && st.ms_entries > 0))
        return kabar_error_set(err, KABAR_STORE, "%s/log.mdb is not a kabar log (no format record)",
                               s->dir);
    return create_meta(s, txn, origin, err);
}

static int open_db(store *s, MDB_txn *txn, int i, bool fresh, kabar_error *err)
{
    int rc =
        mdb_dbi_open(txn, store__db_names[i], db_flags(i) | (fresh ? MDB_CREATE : 0), &s->dbi[i]);
    if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE)
        return kabar_error_set(err, KABAR_STORE,
                               "%s/log.mdb is not a kabar log (database '%s' is missing or "
                               "of another kind)",
                               s->dir, store__db_names[i]);
    return rc != 0 ? store__fail(s, rc, "cannot open", err) : 0;
}

/* Open the databases, check the format, load the head and the last batch id. */
static int load(store *s, const char *origin, kabar_error *err)
{
    MDB_txn *txn;
    int rc = store__txn_begin(s, s->readonly ? MDB_RDONLY : 0, &txn);
    if (rc != 0)
        return store__fail(s, rc, "cannot open", err);
    /* Databases are created only in a new, empty file: never inside another program's. */
    MDB_dbi main_dbi;
    MDB_stat st;
    bool fresh = !s->readonly && mdb_dbi_open(txn, NULL, 0, &main_dbi) == 0 &&
                 mdb_stat(txn, main_dbi, &st) == 0 && st.ms_entries == 0;
    /* meta and events first: the format decides whether the others must exist. */
    if ((rc = open_db(s, txn, DB_META, fresh, err)) != 0 ||
        (rc = open_db(s, txn, DB_EVENTS, fresh, err)) != 0 ||
        (rc = check_meta(s, txn, origin, err)) != 0)
        goto fail;
    for (int i = 0; i < DB_COUNT; i++) {
        if (i != DB_META && i != DB_EVENTS && (rc = open_db(s, txn, i, fresh, err)) != 0)
            goto fail;
    }
    MDB_cursor *cur;
    MDB_val k, v;
    if ((rc = mdb_cursor_open(txn, s->dbi[DB_EVENTS], &cur)) != 0)
        goto lmdb_fail;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (rc == 0) {
        store_record rec;
        if ((rc = store__rec_parse(&k, &v, &rec)) == 0) {
            s->head = rec.seq;
            s->last_received_at = rec.received_at;
        }
    } else if (rc == MDB_NOTFOUND) {
        rc = 0;
    }
    mdb_cursor_close(cur);
    if (rc != 0)
        goto lmdb_fail;
    if ((rc = mdb_cursor_open(txn, s->dbi[DB_BATCHES], &cur)) != 0)
        goto lmdb_fail;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    if (rc == 0)
        s->last_batch = k.mv_size == 8 ? get_be64(k.mv_data) : 0;
    if (rc == 0 && k.mv_size != 8)
        rc = STORE_BADREC;
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND)
        goto lmdb_fail;
    if ((rc = mdb_txn_commit(txn)) != 0)
        return store__fail(s, rc, "cannot open", err);
    return 0;
lmdb_fail:
    rc = store__fail(s, rc, "cannot open", err);
fail:
    mdb_txn_abort(txn);
    return rc;
}

/* mkdir -p, with mode for the directories it creates. */
static int mkdirs(const char *dir, mode_t mode)
{
    char buf[4096];
    size_t n = strlen(dir);
    if (n >= sizeof buf)
        return ENAMETOOLONG;
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0')
            continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, mode) != 0 && errno != EEXIST)
            return errno;
        buf[i] = c;
    }
    return 0;
}

static int open_error(const store *s, int e, kabar_error *err)
{
    return kabar_error_set(
        err, KABAR_STORE, "cannot open log at %s: %s%s", s->dir, strerror(e),
        e == EACCES || e == EPERM ? " (run as the user that owns it, or pass another --data)" : "");
}

/* Writers: create the directory and data file, and lock it against another kabard. */
static int lock_writer(store *s, const char *path, kabar_error *err)
{
    int e = mkdirs(s->dir, 0750);
    if (e != 0)
        return kabar_error_set(err, KABAR_STORE, "cannot create log directory %s: %s", s->dir,
                               strerror(e));
    s->data_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (s->data_fd < 0)
        return open_error(s, errno, err);
    if (flock(s->data_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno == EWOULDBLOCK)
            return kabar_error_set(err, KABAR_LOCKED,
                                   "log at %s is open for writing by another process (stop the "
                                   "other kabard or pass another --data)",
                                   s->dir);
        return kabar_error_set(err, KABAR_STORE, "cannot lock log at %s: %s", s->dir,
                               strerror(errno));
    }
    return 0;
}

static int env_open(store *s, const char *path, bool nosync, kabar_error *err)
{
    struct stat st;
    if (fstat(s->data_fd, &st) != 0)
        return kabar_error_set(err, KABAR_STORE, "cannot open log at %s: %s", s->dir,
                               strerror(errno));
    uint64_t size = ((uint64_t)st.st_size + MIB - 1) / MIB * MIB;
    uint64_t map = size > STORE_MAP_START ? size : STORE_MAP_START;
    if (s->max_bytes != 0 && map > s->max_bytes) {
        uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
        map = s->max_bytes / page * page;
        if (map < (uint64_t)st.st_size)
            map = ((uint64_t)st.st_size + page - 1) / page * page;
    }
    int rc = mdb_env_create(&s->env);
    if (rc == 0)
        rc = mdb_env_set_maxdbs(s->env, DB_COUNT);
    if (rc == 0)
        rc = mdb_env_set_maxreaders(s->env, STORE_MAX_READERS);
    if (rc == 0)
        rc = mdb_env_set_mapsize(s->env, (size_t)map);
    unsigned flags =
        MDB_NOSUBDIR | MDB_NOTLS | (s->readonly ? MDB_RDONLY : 0) | (nosync ? MDB_NOSYNC : 0);
    if (rc == 0)
        rc = mdb_env_open(s->env, path, flags, 0640);
    if (rc == EACCES && s->readonly)
        return kabar_error_set(err, KABAR_STORE,
                               "cannot open log at %s: %s (a reader needs write access to "
                               "%s/log.mdb-lock: run as the kabard user, or read a copy made "
                               "with mdb_copy)",
                               s->dir, mdb_strerror(rc), s->dir);
    if (rc != 0)
        return store__fail(s, rc, "cannot open", err);
    MDB_envinfo info;
    mdb_env_info(s->env, &info);
    s->mapsize = info.me_mapsize;
    if (!s->readonly) {
        int dead;
        mdb_reader_check(s->env, &dead);
    }
    return 0;
}

int store_open(store **out, const char *dir, const store_opts *opts, kabar_error *err)
{
    store_opts o = {0};
    if (opts != NULL)
        o = *opts;
    if (out == NULL || dir == NULL || dir[0] == '\0' || strlen(dir) > 4000)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "store_open: no data directory");
    store *s = calloc(1, sizeof *s);
    char *path = malloc(strlen(dir) + sizeof "/log.mdb");
    if (s == NULL || path == NULL || (s->dir = strdup(dir)) == NULL) {
        free(s);
        free(path);
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    }
    sprintf(path, "%s/log.mdb", dir);
    s->readonly = o.readonly;
    s->max_bytes = o.max_bytes;
    s->data_fd = -1;
    msgpack_sbuffer_init(&s->scratch);
    int rc;
    if (s->readonly) {
        struct stat st;
        s->data_fd = open(path, O_RDONLY | O_CLOEXEC);
        if (s->data_fd < 0 || fstat(s->data_fd, &st) != 0) {
            rc = errno == ENOENT ? kabar_error_set(err, KABAR_NOT_FOUND,
                                                   "no log at %s (%s does not exist)", dir, path)
                                 : open_error(s, errno, err);
            goto fail;
        }
        if (st.st_size == 0) {
            rc = kabar_error_set(err, KABAR_NOT_FOUND, "no log at %s yet (%s is empty)", dir, path);
            goto fail;
        }
    } else if ((rc = lock_writer(s, path, err)) != 0) {
        goto fail;
    }
    if ((rc = env_open(s, path, o.nosync, err)) != 0 || (rc = load(s, o.origin, err)) != 0)
        goto fail;
    free(path);
    *out = s;
    return 0;
fail:
    free(path);
    store_close(&s);
    return rc;
}

void store_close(store **sp)
{
    if (sp == NULL || *sp == NULL)
        return;
    store *s = *sp;
    /* Readers left open are detached: their later close only frees them. */
    for (store_reader *r = s->readers; r != NULL; r = r->next) {
        mdb_txn_abort(r->txn);
        r->txn = NULL;
        r->live = false;
        r->s = NULL;
    }
    if (s->env != NULL)
        mdb_env_close(s->env);
    if (s->data_fd >= 0)
        close(s->data_fd);
    msgpack_sbuffer_destroy(&s->scratch);
    free(s->dir);
    free(s);
    *sp = NULL;
}

uint64_t store_head(const store *s)
{
    return s != NULL ? s->head : 0;
}

const char *store_origin(const store *s)
{
    return s != NULL ? s->origin : "";
}

uint64_t store_file_bytes(const store *s)
{
    struct stat st;
    if (s == NULL || fstat(s->data_fd, &st) != 0)
        return 0;
    return (uint64_t)st.st_size;
}
