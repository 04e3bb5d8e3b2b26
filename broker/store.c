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
 *
 * The Merkle tree. The writer keeps the tree's right edge in memory (a
 * merkle_frontier: the O(log n) complete subtrees whose sizes are the
 * binary digits of the head), loaded from `tree` at the first write. A new
 * leaf is pushed onto a copy of it (hot_push: merkle_frontier_push's
 * algorithm, which puts exactly the nodes merkle_append would), and every
 * node it completes at level >= 1 is put into `tree` in the same
 * transaction. So appending costs one leaf hash, on average one node hash
 * and one `tree` put, and no reads, whatever the size of the log; the copy
 * becomes the store's frontier only when the transaction commits. Leaf
 * hashes (level 0) are not stored: they are the hash of the `events` value.
 *
 * Hashing is merkle.c's (OpenSSL's SHA-256 with the CPU's SHA extensions,
 * proto/sha256.h); store_test checks the stored tree against merkle.c's
 * own append, node by node.
 *
 * Signed batches get their id (last_batch + 1, ...) the first time one of
 * their events is stored in a write; the id lives in the store_sigbatch
 * the entries share, reset to 0 at every attempt.
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
#include "sha256.h"
#include "store_internal.h"

#define STORE_MAP_START   (64ull << 20)
#define STORE_MAX_READERS 512
#define MIB               (1ull << 20)
#define DEDUP_KEY_MAX     (KABAR_MAX_AGENCY_LEN + 1 + KABAR_MAX_ID_LEN)

#define IDX_FLAGS (MDB_DUPSORT | MDB_DUPFIXED)
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

/* ------------------------------------------------------------------------ */
/* Writing                                                                  */

typedef struct wctx {
    store *s;
    MDB_txn *txn;
    MDB_cursor *cur[DB_COUNT]; /* events .. batches (the hot path's databases) */
    uint64_t head;
    int64_t at;
    uint64_t batch;     /* the last batch id assigned */
    merkle_frontier fr; /* the tree's right edge at head */
    kabar_error kerr;   /* a kabar error behind STORE_KERR */
} wctx;

#define HOT_FIRST DB_EVENTS
#define HOT_LAST  DB_BATCHES

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
    const store_sigbatch *b = e->batch;
    if (b != NULL &&
        (b->n == 0 || b->n > STORE_BATCH_MAX || b->leaves == NULL || e->batch_index >= b->n))
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "store_write: entry %zu: signed batch of %u events%s with index %u "
                               "(1 to %d events, index below the count)",
                               i, b->n, b->leaves == NULL ? " without leaves" : "", e->batch_index,
                               STORE_BATCH_MAX);
    return 0;
}

/* An owner is "" (nobody) or an agency id. */
static bool owner_ok(const char *o)
{
    return o == NULL || o[0] == '\0' || kabar_agency_valid(o, strlen(o));
}

static int check_consumer(const store_consumer_update *c, size_t i, kabar_error *err)
{
    size_t n = c->name != NULL ? strlen(c->name) : 0;
    if (n == 0 || n > KABAR_MAX_ID_LEN)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "store_write: consumer %zu: name empty or longer than %d bytes", i,
                               KABAR_MAX_ID_LEN);
    if (!owner_ok(c->owner))
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "store_write: consumer %s: owner '%.40s' is not an agency id",
                               c->name, c->owner);
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

/* Keep a completed node of level >= 1 in `tree`. */
static int tree_put(wctx *w, unsigned level, uint64_t index, const uint8_t hash[32])
{
    uint8_t kb[TREE_KEY];
    store_tree_key(kb, level, index);
    MDB_val k = {TREE_KEY, kb}, v = {32, (void *)hash};
    /* Keys grow with every node created (store_tree_key), so append. */
    return mdb_cursor_put(w->cur[DB_TREE], &k, &v, MDB_APPEND);
}

/*
 * Append a leaf to the frontier (merkle_frontier_push) and put every node
 * it completes into `tree`. On an error the frontier may be half-updated:
 * the caller drops it with the transaction.
 */
static int hot_push(wctx *w, const uint8_t leaf[32])
{
    merkle_frontier *f = &w->fr;
    if (f->size == UINT64_MAX)
        return ENOSPC;
    uint8_t h[32];
    uint64_t index = f->size;
    unsigned level = 0;
    memcpy(h, leaf, 32);
    while (index & 1) { /* a right child: its parent is now complete */
        merkle_node_hash(f->hash[level], h, h);
        index >>= 1;
        level++;
        int rc = tree_put(w, level, index, h);
        if (rc != 0)
            return rc;
    }
    memcpy(f->hash[level], h, 32);
    f->size++;
    return 0;
}

/* A node of the stored tree, read in the write transaction (level 0: a record's hash). */
static int node_get(wctx *w, unsigned level, uint64_t index, uint8_t out[32])
{
    uint8_t kb[TREE_KEY];
    MDB_val k, v;
    int rc;
    if (level == 0) {
        put_be64(kb, index + 1);
        k = (MDB_val){8, kb};
        if ((rc = mdb_get(w->txn, w->s->dbi[DB_EVENTS], &k, &v)) == 0)
            merkle_leaf_hash(v.mv_data, v.mv_size, out);
    } else {
        store_tree_key(kb, level, index);
        k = (MDB_val){TREE_KEY, kb};
        if ((rc = mdb_get(w->txn, w->s->dbi[DB_TREE], &k, &v)) == 0 && v.mv_size != 32)
            rc = STORE_BADREC;
        if (rc == 0)
            memcpy(out, v.mv_data, 32);
    }
    if (rc == MDB_NOTFOUND) {
        kabar_error_set(&w->kerr, KABAR_STORE,
                        "cannot write to log at %s: its Merkle tree lacks node (level %u, index "
                        "%llu) of a tree of %llu events (the log is damaged; check it with kabar "
                        "audit verify)",
                        w->s->dir, level, (unsigned long long)index,
                        (unsigned long long)w->s->head);
        return STORE_KERR;
    }
    return rc;
}

/* The frontier of the stored tree of `head` leaves: its O(log n) complete subtrees. */
static int frontier_load(wctx *w)
{
    memset(&w->fr, 0, sizeof w->fr);
    uint64_t start = 0, head = w->s->head;
    for (int level = 63; level >= 0; level--) {
        uint64_t width = (uint64_t)1 << level;
        if (!(head & width))
            continue;
        int rc = node_get(w, (unsigned)level, start >> level, w->fr.hash[level]);
        if (rc != 0)
            return rc;
        start += width;
    }
    w->fr.size = head;
    return 0;
}

/* A signed batch's first stored event: give it the next id and keep it in `batches`. */
static int put_batch(wctx *w, store_sigbatch *b)
{
    uint8_t kb[8];
    put_be64(kb, w->batch + 1);
    MDB_val k = {8, kb}, v = {BATCH_HDR + (size_t)b->n * 32, NULL};
    int rc = mdb_cursor_put(w->cur[DB_BATCHES], &k, &v, MDB_APPEND | MDB_RESERVE);
    if (rc != 0)
        return rc;
    uint8_t *p = v.mv_data;
    memcpy(p, b->key, 32);
    memcpy(p + 32, b->sig, 64);
    put_be32(p + 96, b->n);
    memcpy(p + BATCH_HDR, b->leaves, (size_t)b->n * 32);
    b->id = ++w->batch;
    return 0;
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
        e->batch_id = rec.batch;
        merkle_leaf_hash(rec.raw, rec.raw_len, e->leaf_hash);
        return 0;
    }
    if (rc != MDB_NOTFOUND)
        return rc;
    uint64_t bid = 0;
    if (e->batch != NULL) {
        /* The caller's object; store.h says it must be writable. */
        store_sigbatch *b = (store_sigbatch *)e->batch;
        if (b->id == 0 && (rc = put_batch(w, b)) != 0)
            return rc;
        bid = b->id;
    }
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
    put_be64(p + 9, bid);
    put_be32(p + 17, bid != 0 ? e->batch_index : 0);
    memcpy(p + REC_HDR, e->bytes, e->len);
    merkle_leaf_hash(p, rv.mv_size, e->leaf_hash);
    if ((rc = hot_push(w, e->leaf_hash)) != 0)
        return rc;
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
    e->batch_id = bid;
    return 0;
}

/* Parse a consumer record: map {"acked", "created_at", "filter", "owner", "updated_at"}. */
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
    c->owner[0] = '\0';
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
        } else if (KEY_IS("owner")) {
            rc =
                mpr_next(&r, &it, NULL) != 0 || it.kind != MPR_STR || it.len > KABAR_MAX_AGENCY_LEN;
            if (rc == 0) {
                memcpy(c->owner, it.str, it.len);
                c->owner[it.len] = '\0';
            }
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
    if (u->owner != NULL)
        snprintf(old.owner, sizeof old.owner, "%s", u->owner);
    size_t olen = strlen(old.owner);
    msgpack_sbuffer_clear(&s->scratch);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s->scratch, msgpack_sbuffer_write);
    if (msgpack_pack_map(&pk, olen > 0 ? 5 : 4) != 0 ||
        msgpack_pack_str_with_body(&pk, "acked", 5) != 0 ||
        msgpack_pack_uint64(&pk, u->acked) != 0 ||
        msgpack_pack_str_with_body(&pk, "created_at", 10) != 0 ||
        store__ts_pack(&pk, old.created_at) != 0 ||
        msgpack_pack_str_with_body(&pk, "filter", 6) != 0 ||
        msgpack_sbuffer_write(&s->scratch, (const char *)old.filter, old.filter_len) != 0)
        return ENOMEM;
    if (olen > 0 && (msgpack_pack_str_with_body(&pk, "owner", 5) != 0 ||
                     msgpack_pack_str_with_body(&pk, old.owner, olen) != 0))
        return ENOMEM;
    if (msgpack_pack_str_with_body(&pk, "updated_at", 10) != 0 || store__ts_pack(&pk, now) != 0)
        return ENOMEM;
    v = (MDB_val){s->scratch.size, s->scratch.data};
    return mdb_put(w->txn, s->dbi[DB_CONSUMERS], &k, &v, 0);
}

/* Every batch an entry points to is unassigned (before an attempt, and after a failed one). */
static void batches_reset(store_entry *e, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (e[i].batch != NULL)
            ((store_sigbatch *)e[i].batch)->id = 0;
    }
}

/* One attempt at the whole write. *full: the map was too small. */
static int write_once(store *s, store_entry *e, size_t n, const store_consumer_update *c, size_t nc,
                      int64_t now, bool *full, kabar_error *err)
{
    wctx *w = calloc(1, sizeof *w); /* 2 KiB of frontier: not on the broker's stack */
    if (w == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    w->s = s;
    w->head = s->head;
    w->batch = s->last_batch;
    w->at = now < s->last_received_at ? s->last_received_at : now;
    batches_reset(e, n);
    int rc = store__txn_begin(s, 0, &w->txn);
    for (int i = HOT_FIRST; rc == 0 && i <= HOT_LAST; i++)
        rc = mdb_cursor_open(w->txn, s->dbi[i], &w->cur[i]);
    if (rc == 0 && n > 0) {
        if (s->have_frontier && s->frontier.size == s->head)
            w->fr = s->frontier;
        else
            rc = frontier_load(w);
    }
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = put_entry(w, &e[i]);
    for (size_t i = 0; rc == 0 && i < nc; i++)
        rc = put_consumer(w, &c[i], now);
    for (int i = HOT_FIRST; i <= HOT_LAST; i++) {
        if (w->cur[i] != NULL)
            mdb_cursor_close(w->cur[i]);
    }
    if (rc == 0) {
        rc = mdb_txn_commit(w->txn);
        w->txn = NULL;
    }
    if (rc != 0) {
        if (w->txn != NULL)
            mdb_txn_abort(w->txn);
        batches_reset(e, n);
        if (rc == MDB_MAP_FULL)
            *full = true;
        else if (rc == STORE_KERR)
            rc = kabar_error_set(err, w->kerr.code, "%s", w->kerr.message);
        else
            rc = store__fail(s, rc, "cannot write to", err);
        free(w);
        return *full ? 0 : rc;
    }
    if (w->head != s->head)
        s->last_received_at = w->at;
    s->head = w->head;
    s->last_batch = w->batch;
    if (n > 0) {
        s->frontier = w->fr;
        s->have_frontier = true;
    }
    free(w);
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

/* ------------------------------------------------------------------------ */
/* Other write transactions: registry, checkpoints                          */

int store__update(store *s, int (*fn)(store *s, MDB_txn *txn, void *arg, kabar_error *err),
                  void *arg, kabar_error *err)
{
    if (s->readonly)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "the log at %s is open read-only",
                               s->dir);
    for (;;) {
        MDB_txn *txn;
        kabar_error e = {0};
        int rc = store__txn_begin(s, 0, &txn);
        if (rc == 0) {
            rc = fn(s, txn, arg, &e);
            if (rc == 0)
                rc = mdb_txn_commit(txn);
            else
                mdb_txn_abort(txn);
        }
        if (rc == STORE_KERR) {
            if (err != NULL)
                *err = e;
            return e.code;
        }
        if (rc == MDB_MAP_FULL) {
            if ((rc = grow(s, err)) != 0)
                return rc;
            continue;
        }
        return rc != 0 ? store__fail(s, rc, "cannot write to", err) : 0;
    }
}
