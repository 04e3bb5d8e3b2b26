/*
 * store.c - the broker's log in one LMDB environment (contract: store.h;
 * layout, durability and inspection: docs/STORAGE.md).
 *
 * Design notes
 *
 * The environment is the single file DIR/log.mdb (MDB_NOSUBDIR) with its
 * lock file DIR/log.mdb-lock. A writable store also holds an flock(2) on the
 * data file, so that a second kabard on the same directory fails at once
 * with KABAR_LOCKED instead of queueing behind LMDB's writer mutex.
 *
 * The environment is opened with MDB_NOTLS: read transactions belong to
 * store_reader objects, not to threads, so that one thread (the broker's
 * loop) can hold many readers at once.
 *
 * Map size. LMDB can only change the map while no transaction of this
 * process is using it. The store keeps a list of its readers; before it
 * remaps (growing after MDB_MAP_FULL in the writer, or following a map grown
 * by another process after MDB_MAP_RESIZED in a reader) it resets every live
 * reader's transaction and marks it stale. A stale reader renews itself on
 * its next use, so it moves to the newest snapshot; its iterators notice the
 * new generation and reposition at the seq they would have returned next.
 * This is why store.h says that records are valid only until the next
 * store_write in this process.
 *
 * Hot path. store_write runs one write transaction for a whole batch,
 * opens each database's cursor once, looks every (source, id) up in
 * `dedup` (which sees the batch's own earlier puts), appends the record with
 * MDB_APPEND|MDB_RESERVE (copied straight into the page, no malloc), and
 * adds the index entries with MDB_APPENDDUP (the new seq is always the
 * largest in its dup set). Only consumer updates use a scratch buffer, which
 * the store keeps.
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

#include "mpr.h"
#include "store_internal.h"

#define STORE_FORMAT      1
#define STORE_MAP_START   (64ull << 20)
#define STORE_MAX_READERS 512
#define REC_HDR           9 /* u8 format + int64 BE received_at */
#define MIB               (1ull << 20)
#define DEDUP_KEY_MAX     (KABAR_MAX_AGENCY_LEN + 1 + KABAR_MAX_ID_LEN)

#define IDX_FLAGS (MDB_DUPSORT | MDB_DUPFIXED)
static const struct {
    const char *name;
    unsigned flags;
} db_spec[DB_COUNT] = {
    {"events", 0},
    {"by_source", IDX_FLAGS},
    {"by_target", IDX_FLAGS},
    {"by_type", IDX_FLAGS},
    {"dedup", 0},
    {"consumers", 0},
    {"meta", 0},
};

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */

/* A short write (EIO from LMDB) is how a nearly full disk often shows up. */
static bool disk_looks_full(const store *s)
{
    struct statvfs vfs;
    if (statvfs(s->dir, &vfs) == 0 && (uint64_t)vfs.f_bavail * vfs.f_frsize < 4 * MIB)
        return true;
    struct rlimit rl;
    struct stat st;
    return getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
           fstat(s->data_fd, &st) == 0 && (uint64_t)st.st_size + 4 * MIB > rl.rlim_cur;
}

/* Translate an LMDB or errno code into a kabar error: "<what> log at DIR: <why>". */
int store__fail(const store *s, int rc, const char *what, kabar_error *err)
{
    if (rc == ENOSPC || rc == EFBIG || rc == EDQUOT || (rc == EIO && disk_looks_full(s)))
        return kabar_error_set(
            err, KABAR_DISK_FULL, "%s log at %s: %s (free disk space or raise --max-size)", what,
            s->dir, rc == EIO ? "short write (disk or file size limit full)" : mdb_strerror(rc));
    if (rc == STORE_BADREC)
        return kabar_error_set(err, KABAR_STORE,
                               "%s log at %s: a stored record is malformed (the log is damaged; "
                               "check it with kabar audit)",
                               what, s->dir);
    if (rc == MDB_PANIC)
        return kabar_error_set(err, KABAR_STORE,
                               "%s log at %s: %s (restart kabard; nothing acked was lost)", what,
                               s->dir, mdb_strerror(rc));
    return kabar_error_set(err, KABAR_STORE, "%s log at %s: %s", what, s->dir, mdb_strerror(rc));
}

/* ------------------------------------------------------------------------ */
/* Map size and transactions                                                */

/* Reset every live reader, then set the map size (0: as the file says). */
int store__remap(store *s, uint64_t size)
{
    for (store_reader *r = s->readers; r != NULL; r = r->next) {
        if (r->live) {
            mdb_txn_reset(r->txn);
            r->live = false;
        }
    }
    int rc = mdb_env_set_mapsize(s->env, (size_t)size);
    MDB_envinfo info;
    if (mdb_env_info(s->env, &info) == 0)
        s->mapsize = info.me_mapsize;
    return rc;
}

int store__txn_begin(store *s, unsigned flags, MDB_txn **txn)
{
    for (int tries = 0;; tries++) {
        int rc = mdb_txn_begin(s->env, NULL, flags, txn);
        if (rc != MDB_MAP_RESIZED || tries == 3)
            return rc;
        if ((rc = store__remap(s, 0)) != 0)
            return rc;
    }
}

static int grow(store *s, kabar_error *err)
{
    uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
    uint64_t cur = s->mapsize, next = cur * 2;
    if (s->max_bytes != 0 && next > s->max_bytes)
        next = s->max_bytes / page * page;
    if (next <= cur)
        return kabar_error_set(err, KABAR_DISK_FULL,
                               "log at %s reached its size limit of %llu MiB (free disk space or "
                               "raise --max-size)",
                               s->dir, (unsigned long long)(cur / MIB));
    int rc = store__remap(s, next);
    if (rc != 0) {
        store__remap(s, cur);
        return kabar_error_set(err, KABAR_STORE,
                               "cannot grow the log at %s to %llu MiB: %s (the system refused "
                               "a larger memory map; set --max-size)",
                               s->dir, (unsigned long long)(next / MIB), mdb_strerror(rc));
    }
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Open and close                                                           */

static int ts_pack(msgpack_packer *pk, int64_t ns)
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
    if (k->mv_size != 8 || v->mv_size < REC_HDR || p[0] != STORE_FORMAT)
        return STORE_BADREC;
    rec->seq = get_be64(k->mv_data);
    rec->received_at = (int64_t)get_be64(p + 1);
    rec->bytes = p + REC_HDR;
    rec->len = v->mv_size - REC_HDR;
    return 0;
}

/* Create a new log's meta, or check an existing one's format. */
static int check_meta(store *s, MDB_txn *txn, kabar_error *err)
{
    MDB_val k = {6, "format"}, v;
    int rc = mdb_get(txn, s->dbi[DB_META], &k, &v);
    if (rc == 0) {
        mpr r;
        mpr_item it;
        mpr_init(&r, v.mv_data, v.mv_size);
        r.canonical = false;
        if (mpr_next(&r, &it, NULL) != 0 || it.kind != MPR_UINT)
            return kabar_error_set(err, KABAR_STORE, "%s/log.mdb has a malformed format record",
                                   s->dir);
        if (it.u != STORE_FORMAT)
            return kabar_error_set(err, KABAR_STORE,
                                   "log at %s has format %llu, this kabar reads format %d "
                                   "(use the kabar version that wrote it)",
                                   s->dir, (unsigned long long)it.u, STORE_FORMAT);
        return 0;
    }
    if (rc != MDB_NOTFOUND)
        return store__fail(s, rc, "cannot read", err);
    MDB_stat st;
    if (s->readonly || (mdb_stat(txn, s->dbi[DB_EVENTS], &st) == 0 && st.ms_entries > 0))
        return kabar_error_set(err, KABAR_STORE, "%s/log.mdb is not a kabar log (no format record)",
                               s->dir);
    uint8_t one = STORE_FORMAT;
    v = (MDB_val){1, &one};
    if ((rc = mdb_put(txn, s->dbi[DB_META], &k, &v, 0)) != 0)
        return store__fail(s, rc, "cannot create", err);
    msgpack_sbuffer_clear(&s->scratch);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s->scratch, msgpack_sbuffer_write);
    if (ts_pack(&pk, kabar_now()) != 0)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    k = (MDB_val){10, "created_at"};
    v = (MDB_val){s->scratch.size, s->scratch.data};
    if ((rc = mdb_put(txn, s->dbi[DB_META], &k, &v, 0)) != 0)
        return store__fail(s, rc, "cannot create", err);
    return 0;
}

/* Open the databases, check the format, load the head. */
static int load(store *s, kabar_error *err)
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
    for (int i = 0; i < DB_COUNT; i++) {
        unsigned flags = db_spec[i].flags | (fresh ? MDB_CREATE : 0);
        rc = mdb_dbi_open(txn, db_spec[i].name, flags, &s->dbi[i]);
        if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE) {
            mdb_txn_abort(txn);
            return kabar_error_set(err, KABAR_STORE,
                                   "%s/log.mdb is not a kabar log (database '%s' is missing or "
                                   "of another kind)",
                                   s->dir, db_spec[i].name);
        }
        if (rc != 0)
            goto lmdb_fail;
    }
    if ((rc = check_meta(s, txn, err)) != 0) {
        mdb_txn_abort(txn);
        return rc;
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
    if ((rc = mdb_txn_commit(txn)) != 0)
        return store__fail(s, rc, "cannot open", err);
    return 0;
lmdb_fail:
    mdb_txn_abort(txn);
    return store__fail(s, rc, "cannot open", err);
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
    if ((rc = env_open(s, path, o.nosync, err)) != 0 || (rc = load(s, err)) != 0)
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

uint64_t store_file_bytes(const store *s)
{
    struct stat st;
    if (s == NULL || fstat(s->data_fd, &st) != 0)
        return 0;
    return (uint64_t)st.st_size;
}

/* ------------------------------------------------------------------------ */
/* Writing                                                                  */

typedef struct wctx {
    store *s;
    MDB_txn *txn;
    MDB_cursor *cur[DB_DEDUP + 1]; /* events, by_source, by_target, by_type, dedup */
    uint64_t head;
    int64_t at;
} wctx;

static bool str_ok(kabar_str v, uint32_t max)
{
    return v.ptr != NULL && v.len > 0 && v.len <= max && memchr(v.ptr, 0, v.len) == NULL;
}

static int check_entry(const store_entry *e, size_t i, kabar_error *err)
{
    const kabar_event *ev = e->ev;
    const char *bad = NULL;
    if (ev == NULL || e->bytes == NULL || e->len == 0 || e->len > 16 * MIB)
        bad = "no event or bytes";
    else if (!str_ok(ev->source, KABAR_MAX_AGENCY_LEN))
        bad = "source";
    else if (!str_ok(ev->id, KABAR_MAX_ID_LEN))
        bad = "id";
    else if (!str_ok(ev->type, KABAR_MAX_TYPE_LEN))
        bad = "type";
    else if (ev->ntargets > KABAR_MAX_TARGETS)
        bad = "targets";
    for (uint32_t t = 0; bad == NULL && t < ev->ntargets; t++) {
        if (!str_ok(ev->targets[t], KABAR_MAX_AGENCY_LEN))
            bad = "targets";
    }
    if (bad != NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "store_write: entry %zu: %s empty, too long or missing", i, bad);
    return 0;
}

static int check_consumer(const store_consumer_update *c, size_t i, kabar_error *err)
{
    size_t n = c->name != NULL ? strlen(c->name) : 0;
    if (n == 0 || n > KABAR_MAX_ID_LEN)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "store_write: consumer %zu: name empty or longer than %d bytes", i,
                               KABAR_MAX_ID_LEN);
    if (c->filter == NULL)
        return 0;
    mpr r;
    mpr_item it;
    mpr_init(&r, c->filter, c->filter_len);
    r.canonical = false;
    bool ok = c->filter_len > 0 && mpr_next(&r, &it, NULL) == 0 && it.kind == MPR_MAP;
    if (ok) {
        mpr_init(&r, c->filter, c->filter_len);
        r.canonical = false;
        ok = mpr_skip(&r, KABAR_MAX_DEPTH, NULL) == 0 && mpr_left(&r) == 0;
    }
    if (!ok)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "store_write: consumer %s: filter is not one msgpack map", c->name);
    return 0;
}

/* One index entry: key -> seq, appended at the end of key's dup set. */
static int put_index(MDB_cursor *cur, const char *key, size_t klen, MDB_val *seq)
{
    MDB_val k = {klen, (void *)key};
    return mdb_cursor_put(cur, &k, seq, MDB_APPENDDUP);
}

static bool seen_target(const kabar_event *ev, uint32_t t)
{
    for (uint32_t j = 0; j < t; j++) {
        if (ev->targets[j].len == ev->targets[t].len &&
            memcmp(ev->targets[j].ptr, ev->targets[t].ptr, ev->targets[t].len) == 0)
            return true;
    }
    return false;
}

static int put_entry(wctx *w, store_entry *e)
{
    const kabar_event *ev = e->ev;
    uint8_t dk[DEDUP_KEY_MAX];
    memcpy(dk, ev->source.ptr, ev->source.len);
    dk[ev->source.len] = 0;
    memcpy(dk + ev->source.len + 1, ev->id.ptr, ev->id.len);
    MDB_val k = {ev->source.len + 1 + ev->id.len, dk}, v;
    int rc = mdb_cursor_get(w->cur[DB_DEDUP], &k, &v, MDB_SET);
    if (rc == 0) {
        if (v.mv_size != 8)
            return STORE_BADREC;
        MDB_val sk = v, rv;
        store_record rec;
        if ((rc = mdb_cursor_get(w->cur[DB_EVENTS], &sk, &rv, MDB_SET)) != 0)
            return rc == MDB_NOTFOUND ? STORE_BADREC : rc;
        if ((rc = store__rec_parse(&sk, &rv, &rec)) != 0)
            return rc;
        e->seq = rec.seq;
        e->duplicate = true;
        e->received_at = rec.received_at;
        return 0;
    }
    if (rc != MDB_NOTFOUND)
        return rc;
    uint8_t sb[8];
    put_be64(sb, w->head + 1);
    MDB_val seq = {8, sb};
    if ((rc = mdb_cursor_put(w->cur[DB_DEDUP], &k, &seq, 0)) != 0)
        return rc;
    MDB_val rv = {REC_HDR + e->len, NULL};
    if ((rc = mdb_cursor_put(w->cur[DB_EVENTS], &seq, &rv, MDB_APPEND | MDB_RESERVE)) != 0)
        return rc;
    uint8_t *p = rv.mv_data;
    p[0] = STORE_FORMAT;
    put_be64(p + 1, (uint64_t)w->at);
    memcpy(p + REC_HDR, e->bytes, e->len);
    if ((rc = put_index(w->cur[DB_SOURCE], ev->source.ptr, ev->source.len, &seq)) != 0 ||
        (rc = put_index(w->cur[DB_TYPE], ev->type.ptr, ev->type.len, &seq)) != 0)
        return rc;
    if (ev->ntargets == 0)
        rc = put_index(w->cur[DB_TARGET], BROADCAST, 1, &seq);
    for (uint32_t t = 0; rc == 0 && t < ev->ntargets; t++) {
        if (!seen_target(ev, t))
            rc = put_index(w->cur[DB_TARGET], ev->targets[t].ptr, ev->targets[t].len, &seq);
    }
    if (rc != 0)
        return rc;
    w->head++;
    e->seq = w->head;
    e->duplicate = false;
    e->received_at = w->at;
    return 0;
}

/* Parse a consumer record: map {"acked", "created_at", "filter", "updated_at"}. */
int store__consumer_parse(const void *buf, size_t len, store_consumer *c)
{
    mpr r;
    mpr_item it, key;
    mpr_init(&r, buf, len);
    r.canonical = false;
    if (mpr_next(&r, &it, NULL) != 0 || it.kind != MPR_MAP)
        return STORE_BADREC;
    c->acked = 0;
    c->created_at = c->updated_at = 0;
    c->filter = (const uint8_t *)"\x80";
    c->filter_len = 1;
    for (uint32_t i = 0, n = it.count; i < n; i++) {
        if (mpr_next(&r, &key, NULL) != 0 || key.kind != MPR_STR)
            return STORE_BADREC;
        size_t at = mpr_offset(&r);
        int rc = 0;
#define KEY_IS(s) (key.len == sizeof(s) - 1 && memcmp(key.str, s, key.len) == 0)
        if (KEY_IS("filter")) {
            rc = mpr_skip(&r, KABAR_MAX_DEPTH + 1, NULL);
            c->filter = (const uint8_t *)buf + at;
            c->filter_len = mpr_offset(&r) - at;
        } else if (KEY_IS("acked")) {
            rc = mpr_next(&r, &it, NULL) != 0 || it.kind != MPR_UINT;
            c->acked = it.u;
        } else if (KEY_IS("created_at") || KEY_IS("updated_at")) {
            rc = mpr_next(&r, &it, NULL) != 0 || it.kind != MPR_TIMESTAMP;
            *(KEY_IS("created_at") ? &c->created_at : &c->updated_at) = it.i;
        } else {
            rc = mpr_skip(&r, KABAR_MAX_DEPTH + 1, NULL);
        }
#undef KEY_IS
        if (rc != 0)
            return STORE_BADREC;
    }
    return 0;
}

static int put_consumer(wctx *w, const store_consumer_update *u, int64_t now)
{
    store *s = w->s;
    MDB_val k = {strlen(u->name), (void *)u->name}, v;
    store_consumer old = {.created_at = now, .filter = (const uint8_t *)"\x80", .filter_len = 1};
    int rc = mdb_get(w->txn, s->dbi[DB_CONSUMERS], &k, &v);
    if (rc == 0 && (rc = store__consumer_parse(v.mv_data, v.mv_size, &old)) != 0)
        return rc;
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;
    if (u->filter != NULL) {
        old.filter = u->filter;
        old.filter_len = u->filter_len;
    }
    msgpack_sbuffer_clear(&s->scratch);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s->scratch, msgpack_sbuffer_write);
    if (msgpack_pack_map(&pk, 4) != 0 || msgpack_pack_str_with_body(&pk, "acked", 5) != 0 ||
        msgpack_pack_uint64(&pk, u->acked) != 0 ||
        msgpack_pack_str_with_body(&pk, "created_at", 10) != 0 ||
        ts_pack(&pk, old.created_at) != 0 || msgpack_pack_str_with_body(&pk, "filter", 6) != 0 ||
        msgpack_sbuffer_write(&s->scratch, (const char *)old.filter, old.filter_len) != 0 ||
        msgpack_pack_str_with_body(&pk, "updated_at", 10) != 0 || ts_pack(&pk, now) != 0)
        return ENOMEM;
    v = (MDB_val){s->scratch.size, s->scratch.data};
    return mdb_put(w->txn, s->dbi[DB_CONSUMERS], &k, &v, 0);
}

/* One attempt at the whole write. *full: the map was too small. */
static int write_once(store *s, store_entry *e, size_t n, const store_consumer_update *c, size_t nc,
                      int64_t now, bool *full, kabar_error *err)
{
    wctx w = {.s = s, .head = s->head};
    w.at = now < s->last_received_at ? s->last_received_at : now;
    int rc = store__txn_begin(s, 0, &w.txn);
    for (int i = 0; rc == 0 && i <= DB_DEDUP; i++)
        rc = mdb_cursor_open(w.txn, s->dbi[i], &w.cur[i]);
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = put_entry(&w, &e[i]);
    for (size_t i = 0; rc == 0 && i < nc; i++)
        rc = put_consumer(&w, &c[i], now);
    for (int i = 0; i <= DB_DEDUP; i++) {
        if (w.cur[i] != NULL)
            mdb_cursor_close(w.cur[i]);
    }
    if (rc == 0) {
        rc = mdb_txn_commit(w.txn);
        w.txn = NULL;
    }
    if (rc != 0) {
        if (w.txn != NULL)
            mdb_txn_abort(w.txn);
        if (rc == MDB_MAP_FULL) {
            *full = true;
            return 0;
        }
        return store__fail(s, rc, "cannot write to", err);
    }
    if (w.head != s->head)
        s->last_received_at = w.at;
    s->head = w.head;
    return 0;
}

int store_write(store *s, store_entry *e, size_t n, const store_consumer_update *c, size_t nc,
                int64_t now, kabar_error *err)
{
    if (s == NULL || (n > 0 && e == NULL) || (nc > 0 && c == NULL))
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "store_write: missing argument");
    if (s->readonly)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "store_write: the log at %s is open read-only", s->dir);
    int rc;
    for (size_t i = 0; i < n; i++) {
        if ((rc = check_entry(&e[i], i, err)) != 0)
            return rc;
    }
    for (size_t i = 0; i < nc; i++) {
        if ((rc = check_consumer(&c[i], i, err)) != 0)
            return rc;
    }
    if (n == 0 && nc == 0)
        return 0;
    for (;;) {
        bool full = false;
        if ((rc = write_once(s, e, n, c, nc, now, &full, err)) != 0 || !full)
            return rc;
        if ((rc = grow(s, err)) != 0)
            return rc;
    }
}
