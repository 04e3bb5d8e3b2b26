/*
 * store_test.c - the log store against what a broker and its tools rely on:
 * gap-free seqs, idempotent publishing, durability across reopen, filtered
 * replay equal to a brute-force filter over every event, time lookup,
 * durable consumers, a reader in another process, map growth and a full
 * disk or size limit that loses nothing already committed; the Merkle log
 * (its root after any sequence of writes and reopens equals the RFC 9162
 * root of the recomputed leaves, node by node), signed batches,
 * checkpoints, the registry, consumer owners, the format and origin.
 */
#define _GNU_SOURCE /* nftw */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <msgpack.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <lmdb.h>

#include "checkpoint.h"
#include "merkle.h"
#include "store.h"

#define SEC 1000000000LL
#define T0  (1682497800LL * SEC) /* 2023-04-26T08:30:00Z */

/* ------------------------------------------------------------------------ */
/* Fixtures: a temporary data directory and canonical events                */

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static char *tmpdir_new(void)
{
    const char *base = getenv("KABAR_BUILD_DIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/store_test.XXXXXX", base != NULL ? base : "/tmp");
    if (mkdtemp(dir) == NULL) {
        strcpy(dir, "/tmp/store_test.XXXXXX");
        assert_non_null(mkdtemp(dir));
    }
    char *copy = strdup(dir);
    assert_non_null(copy);
    return copy;
}

static void tmpdir_free(char *dir)
{
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

typedef struct tevent {
    uint8_t *bytes;
    size_t len;
    kabar_event ev;
} tevent;

static void pstr(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* A body valid for each type of the catalogue the tests use. */
static void pack_body(msgpack_packer *pk, const char *type, const char *source, const char *id,
                      size_t pad)
{
    if (strcmp(type, "attendance.reported") == 0) {
        msgpack_pack_map(pk, pad > 0 ? 5 : 4);
        pstr(pk, "agency");
        pstr(pk, source);
        pstr(pk, "date");
        pstr(pk, "2023-04-26");
        if (pad > 0) {
            char occ[257];
            memset(occ, 'x', pad > 256 ? 256 : pad);
            occ[pad > 256 ? 256 : pad] = '\0';
            pstr(pk, "occasion");
            pstr(pk, occ);
        }
        pstr(pk, "present");
        msgpack_pack_uint32(pk, 40);
        pstr(pk, "total");
        msgpack_pack_uint32(pk, 45);
    } else if (strcmp(type, "finding.overdue") == 0) {
        msgpack_pack_map(pk, 5);
        pstr(pk, "auditee");
        pstr(pk, "dinkes");
        pstr(pk, "days_overdue");
        msgpack_pack_uint32(pk, 12);
        pstr(pk, "due");
        pstr(pk, "2023-07-01");
        pstr(pk, "finding_id");
        pstr(pk, id);
        pstr(pk, "open_recs");
        msgpack_pack_array(pk, 1);
        pstr(pk, "R1");
    } else if (strcmp(type, "finding.reviewed") == 0) {
        msgpack_pack_map(pk, 4);
        pstr(pk, "finding_id");
        pstr(pk, id);
        pstr(pk, "rec_id");
        pstr(pk, "R1");
        pstr(pk, "reviewer");
        pstr(pk, "inspektorat");
        pstr(pk, "status");
        pstr(pk, "BS");
    } else if (strcmp(type, "visit.scheduled") == 0) {
        msgpack_pack_map(pk, 4);
        pstr(pk, "date");
        pstr(pk, "2023-05-04");
        pstr(pk, "host");
        pstr(pk, "bappeda");
        pstr(pk, "visit_id");
        pstr(pk, id);
        pstr(pk, "visitor");
        pstr(pk, "Wali Kota");
    } else { /* innovation.awarded */
        msgpack_pack_map(pk, 3);
        pstr(pk, "award");
        pstr(pk, "Top 45");
        pstr(pk, "competition");
        pstr(pk, "KIPP 2023");
        pstr(pk, "innovation_id");
        pstr(pk, id);
    }
}

/*
 * A canonical event (keys sorted: body, id, source, targets, type, v).
 * nt <= 0: a broadcast, no targets field (an empty array is not canonical).
 */
static void tevent_make(tevent *te, const char *type, const char *source, const char *id,
                        const char *const *targets, int nt, size_t pad)
{
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, nt <= 0 ? 5 : 6);
    pstr(&pk, "body");
    pack_body(&pk, type, source, id, pad);
    pstr(&pk, "id");
    pstr(&pk, id);
    pstr(&pk, "source");
    pstr(&pk, source);
    if (nt > 0) {
        pstr(&pk, "targets");
        msgpack_pack_array(&pk, (size_t)nt);
        for (int i = 0; i < nt; i++)
            pstr(&pk, targets[i]);
    }
    pstr(&pk, "type");
    pstr(&pk, type);
    pstr(&pk, "v");
    msgpack_pack_uint32(&pk, 1);
    te->len = sb.size;
    te->bytes = (uint8_t *)msgpack_sbuffer_release(&sb);
    kabar_error err;
    int rc = kabar_event_decode(NULL, te->bytes, te->len, &te->ev, &err);
    if (rc != 0)
        fail_msg("test event does not decode: %s", err.message);
}

static void tevent_free(tevent *te)
{
    free(te->bytes);
    te->bytes = NULL;
}

static void att(tevent *te, const char *source, const char *id)
{
    tevent_make(te, "attendance.reported", source, id, NULL, -1, 0);
}

static int write_events(store *s, tevent *te, size_t n, store_entry *out, int64_t now,
                        kabar_error *err)
{
    for (size_t i = 0; i < n; i++)
        out[i] = (store_entry){.ev = &te[i].ev, .bytes = te[i].bytes, .len = te[i].len};
    return store_write(s, out, n, NULL, 0, now, err);
}

static store *open_rw(const char *dir, uint64_t max_bytes, bool nosync)
{
    store *s = NULL;
    kabar_error err = {0};
    store_opts o = {.max_bytes = max_bytes, .nosync = nosync};
    int rc = store_open(&s, dir, &o, &err);
    if (rc != 0)
        fail_msg("store_open %s: %s", dir, err.message);
    return s;
}

/* Entries of one signed batch: every event points to sb, which gets their leaf hashes. */
static int write_signed(store *s, tevent *te, size_t n, store_entry *out, store_sigbatch *sb,
                        uint8_t (*leaves)[32], int64_t now, kabar_error *err)
{
    memset(sb, 0, sizeof *sb);
    memset(sb->key, 0xa1, sizeof sb->key);
    memset(sb->sig, 0x5a, sizeof sb->sig);
    sb->key[0] = (uint8_t)n;
    sb->n = (uint32_t)n;
    sb->leaves = (const uint8_t(*)[32])leaves;
    for (size_t i = 0; i < n; i++) {
        merkle_leaf_hash(te[i].bytes, te[i].len, leaves[i]);
        out[i] = (store_entry){.ev = &te[i].ev,
                               .bytes = te[i].bytes,
                               .len = te[i].len,
                               .batch = sb,
                               .batch_index = (uint32_t)i};
    }
    return store_write(s, out, n, NULL, 0, now, err);
}

/* ------------------------------------------------------------------------ */
/* The Merkle tree recomputed from the records alone                        */

typedef struct tree_check {
    MDB_txn *txn;
    unsigned dbi;
    uint64_t nodes;
} tree_check;

/* merkle_frontier_push's visit: every node it completes must be in `tree`, byte for byte. */
static int tree_visit(void *ctx, unsigned level, uint64_t index, const uint8_t hash[32],
                      kabar_error *err)
{
    tree_check *tc = ctx;
    if (level == 0)
        return 0;
    uint8_t kb[STORE_TREE_KEY];
    store_tree_key(kb, level, index);
    MDB_val k = {sizeof kb, kb}, v;
    int rc = mdb_get(tc->txn, tc->dbi, &k, &v);
    if (rc != 0)
        fail_msg("tree node (level %u, index %llu) is not stored: %s", level,
                 (unsigned long long)index, mdb_strerror(rc));
    if (v.mv_size != 32 || memcmp(v.mv_data, hash, 32) != 0)
        fail_msg("tree node (level %u, index %llu) differs from the recomputed one", level,
                 (unsigned long long)index);
    tc->nodes++;
    return 0;
}

/*
 * Recompute every leaf from the stored records (SHA-256(0x00 || stored
 * value)) and the tree with merkle.c's frontier; every node it completes
 * must be in `tree` and `tree` must hold nothing else; store_root(head) must
 * be the frontier's root. roots (optional, head + 1 entries): the root of
 * every prefix size. Returns the head.
 */
static uint64_t check_tree(store *s, uint8_t (*roots)[32])
{
    kabar_error err;
    store_reader *r;
    assert_int_equal(store_reader_open(s, &r, &err), 0);
    uint64_t head = store_reader_head(r);
    tree_check tc = {.txn = store_reader_txn(r, &err)};
    assert_non_null(tc.txn);
    assert_int_equal(store_dbi(s, "tree", &tc.dbi), 0);
    merkle_frontier *f = calloc(1, sizeof *f);
    assert_non_null(f);
    if (roots != NULL)
        merkle_empty_root(roots[0]);
    for (uint64_t seq = 1; seq <= head; seq++) {
        store_record rec;
        uint8_t leaf[32], got[32];
        assert_int_equal(store_get(r, seq, &rec, &err), 0);
        assert_int_equal(rec.raw_len, rec.len + 21);
        assert_ptr_equal(rec.raw + 21, rec.bytes);
        assert_int_equal(rec.raw[0], 2);
        merkle_leaf_hash(rec.raw, rec.raw_len, leaf);
        assert_int_equal(store_leaf_hash(r, seq, got, &err), 0);
        assert_memory_equal(got, leaf, 32);
        assert_int_equal(merkle_frontier_push(f, leaf, tree_visit, &tc, &err), 0);
        if (roots != NULL)
            merkle_frontier_root(f, roots[seq]);
    }
    uint8_t want[32], got[32];
    merkle_frontier_root(f, want);
    assert_int_equal(store_root(r, head, got, &err), 0);
    assert_memory_equal(got, want, 32);
    MDB_stat st;
    assert_int_equal(mdb_stat(tc.txn, tc.dbi, &st), 0);
    assert_int_equal(st.ms_entries, tc.nodes);
    free(f);
    store_reader_close(&r);
    return head;
}

/* ------------------------------------------------------------------------ */
/* Append, dedup, gap-free seqs, durability                                 */

static void test_append_dedup(void **state)
{
    char *dir = tmpdir_new();
    store *s = open_rw(dir, 0, false);
    assert_int_equal(store_head(s), 0);

    tevent te[4];
    att(&te[0], "dinkes", "a-1");
    att(&te[1], "dinkes", "a-2");
    att(&te[2], "dinkes", "a-1"); /* same producer and id, same batch */
    att(&te[3], "disdik", "a-1"); /* same id, other producer: a new event */
    store_entry e[4];
    kabar_error err;
    assert_int_equal(write_events(s, te, 4, e, T0, &err), 0);
    assert_int_equal(e[0].seq, 1);
    assert_false(e[0].duplicate);
    assert_int_equal(e[1].seq, 2);
    assert_int_equal(e[2].seq, 1);
    assert_true(e[2].duplicate);
    assert_int_equal(e[2].received_at, T0);
    assert_int_equal(e[3].seq, 3);
    assert_false(e[3].duplicate);
    assert_int_equal(store_head(s), 3);

    /* A retry in a later call: the original seq and time; a clock that went back is clamped. */
    tevent more[2];
    att(&more[0], "dinkes", "a-2");
    att(&more[1], "dinkes", "a-3");
    assert_int_equal(write_events(s, more, 2, e, T0 - 5 * SEC, &err), 0);
    assert_true(e[0].duplicate);
    assert_int_equal(e[0].seq, 2);
    assert_int_equal(e[0].received_at, T0);
    assert_false(e[1].duplicate);
    assert_int_equal(e[1].seq, 4);
    assert_int_equal(e[1].received_at, T0);
    assert_int_equal(store_head(s), 4);

    /* Every seq 1..head is there, with the bytes as published. */
    store_reader *r;
    assert_int_equal(store_reader_open(s, &r, &err), 0);
    assert_int_equal(store_reader_head(r), 4);
    assert_int_equal(store_reader_count(r), 4);
    const tevent *want[] = {&te[0], &te[1], &te[3], &more[1]};
    for (uint64_t seq = 1; seq <= 4; seq++) {
        store_record rec;
        assert_int_equal(store_get(r, seq, &rec, &err), 0);
        assert_int_equal(rec.seq, seq);
        assert_int_equal(rec.len, want[seq - 1]->len);
        assert_memory_equal(rec.bytes, want[seq - 1]->bytes, rec.len);
    }
    store_record rec;
    assert_int_equal(store_get(r, 5, &rec, &err), KABAR_NOT_FOUND);
    store_reader_close(&r);
    assert_null(r);

    /* Bad input is an error, not a crash, and writes nothing. */
    kabar_event bad = te[0].ev;
    bad.source.len = 0;
    store_entry be = {.ev = &bad, .bytes = te[0].bytes, .len = te[0].len};
    assert_int_equal(store_write(s, &be, 1, NULL, 0, T0, &err), KABAR_INVALID_ARGUMENT);
    assert_int_equal(store_head(s), 4);

    store_close(&s);
    assert_null(s);
    store_close(&s); /* NULL is fine */
    for (int i = 0; i < 4; i++)
        tevent_free(&te[i]);
    tevent_free(&more[0]);
    tevent_free(&more[1]);
    tmpdir_free(dir);
}

static void test_persist(void **state)
{
    char *dir = tmpdir_new();
    store *s = open_rw(dir, 0, false);
    tevent te[3];
    att(&te[0], "dinkes", "p-1");
    att(&te[1], "bappeda", "p-2");
    att(&te[2], "setda", "p-3");
    store_entry e[3];
    kabar_error err;
    assert_int_equal(write_events(s, te, 3, e, T0 + SEC, &err), 0);
    uint64_t bytes = store_file_bytes(s);
    assert_true(bytes > 0);
    store_close(&s);

    /* A second writer on the same directory is refused while the first runs. */
    s = open_rw(dir, 0, false);
    store *s2 = NULL;
    assert_int_equal(store_open(&s2, dir, NULL, &err), KABAR_LOCKED);
    assert_null(s2);
    assert_non_null(strstr(err.message, dir));

    assert_int_equal(store_head(s), 3);
    /* Dedup survives the restart; seqs continue without a gap; time never goes back. */
    tevent again[2];
    att(&again[0], "bappeda", "p-2");
    att(&again[1], "bappeda", "p-4");
    assert_int_equal(write_events(s, again, 2, e, T0, &err), 0);
    assert_true(e[0].duplicate);
    assert_int_equal(e[0].seq, 2);
    assert_int_equal(e[0].received_at, T0 + SEC);
    assert_int_equal(e[1].seq, 4);
    assert_int_equal(e[1].received_at, T0 + SEC);

    store_reader *r;
    store_record rec;
    assert_int_equal(store_reader_open(s, &r, &err), 0);
    assert_int_equal(store_get(r, 3, &rec, &err), 0);
    assert_memory_equal(rec.bytes, te[2].bytes, te[2].len);
    store_reader_close(&r);
    store_close(&s);

    /* Read-only open of a directory without a log says so. */
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/nothing-here", dir);
    store_opts ro = {.readonly = true};
    assert_int_equal(store_open(&s, missing, &ro, &err), KABAR_NOT_FOUND);
    assert_non_null(strstr(err.message, missing));
    assert_null(s);

    /* A writer creates missing parent directories. */
    char nested[4200];
    snprintf(nested, sizeof nested, "%s/var/lib/kabar", dir);
    s = open_rw(nested, 0, false);
    assert_int_equal(store_head(s), 0);
    store_close(&s);
    assert_int_equal(store_open(&s, nested, &ro, &err), 0);
    assert_int_equal(store_head(s), 0);
    store_close(&s);

    for (int i = 0; i < 3; i++)
        tevent_free(&te[i]);
    tevent_free(&again[0]);
    tevent_free(&again[1]);
    tmpdir_free(dir);
}

/* Put raw bytes into a database of an LMDB file, as another program (or version) would. */
static void raw_putk(const char *dir, const char *db, const void *key, size_t klen, const void *val,
                     size_t len)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/log.mdb", dir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, path, MDB_NOSUBDIR, 0640), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, db, MDB_CREATE, &dbi), 0);
    MDB_val k = {klen, (void *)key}, v = {len, (void *)val};
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void raw_put(const char *dir, const char *db, const char *key, const void *val, size_t len)
{
    raw_putk(dir, db, key, strlen(key), val, len);
}

static void test_format(void **state)
{
    kabar_error err;
    store *s = NULL;
    store_opts ro = {.readonly = true};

    /* A log written by a kabar with another format is refused, not misread. */
    char *dir = tmpdir_new();
    s = open_rw(dir, 0, false);
    store_close(&s);
    const uint8_t three = 3;
    raw_put(dir, "meta", "format", &three, 1);
    assert_int_equal(store_open(&s, dir, NULL, &err), KABAR_STORE);
    assert_non_null(strstr(err.message, "format 3"));
    assert_int_equal(store_open(&s, dir, &ro, &err), KABAR_STORE);
    assert_non_null(strstr(err.message, "format 3"));
    assert_null(s);
    tmpdir_free(dir);

    /* A format-1 log (before signatures: no tree, no batches, 9-byte record
     * headers) is refused with a message that says why and what to do. */
    dir = tmpdir_new();
    const uint8_t one = 1;
    const uint8_t rec1[] = {0x01, 0x17, 0x59, 0x6e, 0xd5, 0xbf, 0x87, 0x5e, 0x00, 0x80};
    raw_put(dir, "meta", "format", &one, 1);
    raw_putk(dir, "events", "\0\0\0\0\0\0\0\1", 8, rec1, sizeof rec1);
    raw_put(dir, "by_source", "dinkes", "\0\0\0\0\0\0\0\1", 8);
    raw_put(dir, "consumers", "c", "\x80", 1);
    for (int pass = 0; pass < 2; pass++) {
        err.message[0] = '\0';
        assert_int_equal(store_open(&s, dir, pass ? &ro : NULL, &err), KABAR_STORE);
        assert_null(s);
        assert_non_null(strstr(err.message, "format 1"));
        assert_non_null(strstr(err.message, "predates signed events"));
        assert_non_null(strstr(err.message, "re-import"));
    }
    tmpdir_free(dir);

    /* The origin: set at creation, kept across opens, default kabar/HOST. */
    dir = tmpdir_new();
    store_opts oo = {.origin = "kabar.padang.go.id/bus"};
    assert_int_equal(store_open(&s, dir, &oo, &err), 0);
    assert_string_equal(store_origin(s), "kabar.padang.go.id/bus");
    store_close(&s);
    oo.origin = "another/origin";
    assert_int_equal(store_open(&s, dir, &oo, &err), 0);
    assert_string_equal(store_origin(s), "kabar.padang.go.id/bus");
    store_close(&s);
    assert_int_equal(store_open(&s, dir, &ro, &err), 0);
    assert_string_equal(store_origin(s), "kabar.padang.go.id/bus");
    store_close(&s);
    tmpdir_free(dir);
    dir = tmpdir_new();
    oo.origin = "has a space";
    assert_int_equal(store_open(&s, dir, &oo, &err), KABAR_INVALID_ARGUMENT);
    assert_null(s);
    assert_non_null(strstr(err.message, "origin"));
    s = open_rw(dir, 0, false); /* the refused open left nothing behind */
    char host[256], want[300];
    assert_int_equal(gethostname(host, sizeof host), 0);
    snprintf(want, sizeof want, "kabar/%s", host);
    assert_string_equal(store_origin(s), want);
    store_close(&s);
    tmpdir_free(dir);

    /* Another program's LMDB file is not taken over. */
    dir = tmpdir_new();
    raw_put(dir, "accounts", "x", "y", 1);
    assert_int_equal(store_open(&s, dir, NULL, &err), KABAR_STORE);
    assert_non_null(strstr(err.message, "not a kabar log"));
    assert_int_equal(store_open(&s, dir, &ro, &err), KABAR_STORE);
    assert_non_null(strstr(err.message, "not a kabar log"));
    assert_null(s);
    tmpdir_free(dir);
}

/* ------------------------------------------------------------------------ */
/* Filters against a brute-force model                                      */

static const char *const TYPES[] = {"attendance.reported", "finding.overdue", "finding.reviewed",
                                    "visit.scheduled", "innovation.awarded"};
static const char *const AGENCIES[] = {
    "dinkes",      "disdik", "bappeda",          "bpkad",
    "inspektorat", "setda",  "kec-padang-barat", "kec-koto-tangah"};
#define NTYPES    5
#define NAGENCIES 8

typedef struct model_ev {
    int type, source;
    int nt;
    int targets[4];
} model_ev;

static bool model_match(const model_ev *m, const store_filter *f)
{
    if (f->type_prefix != NULL && f->type_prefix[0] != '\0' &&
        strncmp(TYPES[m->type], f->type_prefix, strlen(f->type_prefix)) != 0)
        return false;
    if (f->source != NULL && strcmp(AGENCIES[m->source], f->source) != 0)
        return false;
    if (f->target != NULL && m->nt > 0) {
        for (int i = 0; i < m->nt; i++) {
            if (strcmp(AGENCIES[m->targets[i]], f->target) == 0)
                return true;
        }
        return false;
    }
    return true;
}

static void check_filter(store_reader *r, const model_ev *model, uint64_t head,
                         const store_filter *f)
{
    kabar_error err;
    store_iter *it;
    assert_int_equal(store_iter_open(r, f, &it, &err), 0);
    uint64_t from = f->from != 0 ? f->from : 1;
    uint64_t to = f->to != 0 && f->to < head ? f->to : head;
    uint64_t want = from;
    store_record rec;
    int rc;
    size_t got = 0;
    while ((rc = store_iter_next(it, &rec, &err)) == 0) {
        while (want <= to && !model_match(&model[want - 1], f))
            want++;
        if (rec.seq != want)
            fail_msg("filter type=%s source=%s target=%s from=%llu to=%llu: got seq %llu, want "
                     "%llu",
                     f->type_prefix ? f->type_prefix : "-", f->source ? f->source : "-",
                     f->target ? f->target : "-", (unsigned long long)f->from,
                     (unsigned long long)f->to, (unsigned long long)rec.seq,
                     (unsigned long long)want);
        kabar_event ev;
        assert_int_equal(kabar_event_decode(NULL, rec.bytes, rec.len, &ev, &err), 0);
        assert_int_equal(ev.type.len, strlen(TYPES[model[want - 1].type]));
        assert_memory_equal(ev.type.ptr, TYPES[model[want - 1].type], ev.type.len);
        want++;
        got++;
    }
    assert_int_equal(rc, KABAR_END);
    while (want <= to && !model_match(&model[want - 1], f))
        want++;
    if (want <= to)
        fail_msg("filter type=%s source=%s target=%s: missed seq %llu (returned %zu)",
                 f->type_prefix ? f->type_prefix : "-", f->source ? f->source : "-",
                 f->target ? f->target : "-", (unsigned long long)want, got);
    /* An ended iterator stays ended. */
    assert_int_equal(store_iter_next(it, &rec, &err), KABAR_END);
    store_iter_close(&it);
    assert_null(it);
}

static void test_filters_model(void **state)
{
    char *dir = tmpdir_new();
    store *s = open_rw(dir, 0, true);
    enum { N = 3000 };
    model_ev *model = calloc(N, sizeof *model);
    tevent *te = calloc(256, sizeof *te);
    store_entry *e = calloc(256, sizeof *e);
    unsigned seed = 20230426;
    srand(seed);
    size_t done = 0;
    kabar_error err;
    while (done < N) {
        size_t n = 1 + (size_t)rand() % 200;
        if (n > N - done)
            n = N - done;
        for (size_t i = 0; i < n; i++) {
            model_ev *m = &model[done + i];
            /* Skew: source 7 and type 4 are rare, so index choice matters. */
            m->type = rand() % 20 == 0 ? 4 : rand() % 4;
            m->source = rand() % 50 == 0 ? 7 : rand() % 7;
            m->nt = rand() % 3 == 0 ? 0 : 1 + rand() % 3;
            const char *tg[4];
            int first = rand() % NAGENCIES, step = 1 + 2 * (rand() % 4); /* odd: coprime with 8 */
            for (int t = 0; t < m->nt; t++) { /* distinct: the decoder refuses repeats */
                m->targets[t] = (first + t * step) % NAGENCIES;
                tg[t] = AGENCIES[m->targets[t]];
            }
            char id[32];
            snprintf(id, sizeof id, "ev-%zu", done + i);
            tevent_make(&te[i], TYPES[m->type], AGENCIES[m->source], id, tg, m->nt, 0);
        }
        assert_int_equal(write_events(s, te, n, e, T0 + (int64_t)done, &err), 0);
        for (size_t i = 0; i < n; i++) {
            assert_int_equal(e[i].seq, done + i + 1);
            tevent_free(&te[i]);
        }
        done += n;
    }
    store_reader *r;
    assert_int_equal(store_reader_open(s, &r, &err), 0);
    assert_int_equal(store_reader_head(r), N);

    const char *prefixes[] = {NULL,       "finding.",    "finding.overdue",
                              "visit.",   "innovation.", "attendance.reported",
                              "nothing.", "f",           ""};
    const char *sources[] = {NULL, "dinkes", "kec-koto-tangah", "nobody"};
    const char *targets[] = {NULL, "dinkes", "setda", "kec-koto-tangah", "*", "nobody"};
    const uint64_t ranges[][2] = {{0, 0},       {1, 0},       {1500, 0}, {17, 2222},
                                  {2999, 3000}, {3000, 5000}, {4000, 0}, {10, 9}};
    size_t np = sizeof prefixes / sizeof *prefixes, nsrc = sizeof sources / sizeof *sources;
    size_t ntg = sizeof targets / sizeof *targets, nr = sizeof ranges / sizeof *ranges;
    for (size_t a = 0; a < np; a++)
        for (size_t b = 0; b < nsrc; b++)
            for (size_t c = 0; c < ntg; c++)
                for (size_t d = 0; d < nr; d++) {
                    store_filter f = {.type_prefix = prefixes[a],
                                      .source = sources[b],
                                      .target = targets[c],
                                      .from = ranges[d][0],
                                      .to = ranges[d][1]};
                    check_filter(r, model, N, &f);
                }

    /* store_filter_match agrees with the model too. */
    store_filter f = {.type_prefix = "finding.", .target = "setda"};
    for (uint64_t seq = 1; seq <= 200; seq++) {
        store_record rec;
        kabar_event ev;
        assert_int_equal(store_get(r, seq, &rec, &err), 0);
        assert_int_equal(kabar_event_decode(NULL, rec.bytes, rec.len, &ev, &err), 0);
        assert_int_equal(store_filter_match(&f, &ev), model_match(&model[seq - 1], &f));
    }

    /* An iterator opened on a snapshot ends at that snapshot's head. */
    store_iter *it;
    store_filter all = {0};
    assert_int_equal(store_iter_open(r, &all, &it, &err), 0);
    tevent one;
    att(&one, "dinkes", "late-1");
    assert_int_equal(write_events(s, &one, 1, e, T0 + N, &err), 0);
    uint64_t count = 0;
    store_record rec;
    int rc;
    while ((rc = store_iter_next(it, &rec, &err)) == 0)
        count++;
    assert_int_equal(rc, KABAR_END);
    assert_int_equal(count, N);
    store_iter_close(&it);
    /* After a refresh, the reader sees the new event. */
    assert_int_equal(store_reader_refresh(r, &err), 0);
    assert_int_equal(store_reader_head(r), N + 1);
    store_filter late = {.source = "dinkes", .from = N};
    assert_int_equal(store_iter_open(r, &late, &it, &err), 0);
    assert_int_equal(store_iter_next(it, &rec, &err), 0);
    assert_int_equal(rec.seq, N + 1);
    assert_int_equal(store_iter_next(it, &rec, &err), KABAR_END);
    store_iter_close(&it);
    tevent_free(&one);

    store_reader_close(&r);
    store_close(&s);
    free(model);
    free(te);
    free(e);
    tmpdir_free(dir);
}

/* ------------------------------------------------------------------------ */
/* Time lookup                                                              */

static void test_time_lookup(void **state)
{
    char *dir = tmpdir_new();
    store *s = open_rw(dir, 0, true);
    kabar_error err;
    /* Batches received at T0, T0+10s, (clock steps back: clamped to T0+10s), T0+30s. */
    const int64_t at[] = {T0, T0 + 10 * SEC, T0 + 5 * SEC, T0 + 30 * SEC};
    tevent te[3];
    store_entry e[3];
    for (int b = 0; b < 4; b++) {
        for (int i = 0; i < 3; i++) {
            char id[32];
            snprintf(id, sizeof id, "t-%d-%d", b, i);
            att(&te[i], "dinkes", id);
        }
        assert_int_equal(write_events(s, te, 3, e, at[b], &err), 0);
        for (int i = 0; i < 3; i++)
            tevent_free(&te[i]);
    }
    store_reader *r;
    assert_int_equal(store_reader_open(s, &r, &err), 0);
    store_record rec;
    assert_int_equal(store_get(r, 7, &rec, &err), 0);
    assert_int_equal(rec.received_at, T0 + 10 * SEC); /* clamped, not T0+5s */
    assert_int_equal(store_seq_at_time(r, T0 - SEC), 1);
    assert_int_equal(store_seq_at_time(r, T0), 1);
    assert_int_equal(store_seq_at_time(r, T0 + 1), 4);
    assert_int_equal(store_seq_at_time(r, T0 + 10 * SEC), 4);
    assert_int_equal(store_seq_at_time(r, T0 + 10 * SEC + 1), 10);
    assert_int_equal(store_seq_at_time(r, T0 + 30 * SEC), 10);
    assert_int_equal(store_seq_at_time(r, T0 + 31 * SEC), 13); /* head + 1 */
    store_reader_close(&r);
    store_close(&s);
    tmpdir_free(dir);
}

/* ------------------------------------------------------------------------ */
/* Durable consumers                                                        */

typedef struct seen {
    int n;
    char names[8][KABAR_MAX_ID_LEN + 1];
    int stop_at;
} seen;

static int collect(void *arg, const store_consumer *c)
{
    seen *sn = arg;
    snprintf(sn->names[sn->n], sizeof sn->names[0], "%s", c->name);
    sn->n++;
    return sn->n == sn->stop_at ? 42 : 0;
}

static void test_consumers(void **state)
{
    char *dir = tmpdir_new();
    store *s = open_rw(dir, 0, true);
    kabar_error err;
    const uint8_t filt[] = {0x81, 0xa4, 't', 'y', 'p', 'e', 0xa8, 'f',
                            'i',  'n',  'd', 'i', 'n', 'g', '.'}; /* {"type": "finding."} */
    store_consumer_update u[2] = {
        {.name = "setda-oversight", .acked = 0, .filter = filt, .filter_len = sizeof filt},
        {.name = "dinkes-inbox", .acked = 7},
    };
    tevent te;
    att(&te, "dinkes", "c-1");
    store_entry e = {.ev = &te.ev, .bytes = te.bytes, .len = te.len};
    assert_int_equal(store_write(s, &e, 1, u, 2, T0, &err), 0);

    /* Update positions only: the filter and created_at are kept. */
    store_consumer_update ack = {.name = "setda-oversight", .acked = 1};
    assert_int_equal(store_write(s, NULL, 0, &ack, 1, T0 + 60 * SEC, &err), 0);

    store_reader *r;
    store_consumer c;
    assert_int_equal(store_reader_open(s, &r, &err), 0);
    assert_int_equal(store_consumer_get(r, "setda-oversight", &c, &err), 0);
    assert_string_equal(c.name, "setda-oversight");
    assert_int_equal(c.acked, 1);
    assert_int_equal(c.created_at, T0);
    assert_int_equal(c.updated_at, T0 + 60 * SEC);
    assert_int_equal(c.filter_len, sizeof filt);
    assert_memory_equal(c.filter, filt, sizeof filt);
    assert_int_equal(store_consumer_get(r, "dinkes-inbox", &c, &err), 0);
    assert_int_equal(c.acked, 7);
    assert_int_equal(c.filter_len, 1); /* no filter given: an empty map */
    assert_int_equal(c.filter[0], 0x80);
    assert_int_equal(store_consumer_get(r, "nobody", &c, &err), KABAR_NOT_FOUND);
    assert_non_null(strstr(err.message, "nobody"));

    seen sn = {0};
    assert_int_equal(store_consumer_each(r, collect, &sn, &err), 0);
    assert_int_equal(sn.n, 2);
    assert_string_equal(sn.names[0], "dinkes-inbox"); /* name order */
    assert_string_equal(sn.names[1], "setda-oversight");
    seen stop = {.stop_at = 1};
    assert_int_equal(store_consumer_each(r, collect, &stop, &err), 42);
    assert_int_equal(stop.n, 1);
    store_reader_close(&r);

    /* A filter that is not a msgpack map is refused and nothing is written. */
    const uint8_t notmap[] = {0x92, 0x01, 0x02};
    store_consumer_update bad = {.name = "x", .filter = notmap, .filter_len = sizeof notmap};
    assert_int_equal(store_write(s, NULL, 0, &bad, 1, T0, &err), KABAR_INVALID_ARGUMENT);
    store_close(&s);

    /* Consumers persist. */
    s = open_rw(dir, 0, true);
    assert_int_equal(store_reader_open(s, &r, &err), 0);
    assert_int_equal(store_consumer_get(r, "setda-oversight", &c, &err), 0);
    assert_int_equal(c.acked, 1);
    assert_int_equal(store_consumer_get(r, "x", &c, &err), KABAR_NOT_FOUND);
    store_reader_close(&r);
    store_close(&s);
    tevent_free(&te);
    tmpdir_free(dir);
}

/* ------------------------------------------------------------------------ */
/* Map growth, a reader in another process, size limits, a full disk       */

#define PAD 200

/* Write `n` events with ids "<tag>-<k>" in batches; returns the last seq. */
static uint64_t write_many(store *s, const char *tag, size_t n, size_t batch)
{
    tevent *te = calloc(batch, sizeof *te);
    store_entry *e = calloc(batch, sizeof *e);
    kabar_error err;
    uint64_t last = 0;
    for (size_t done = 0; done < n;) {
        size_t k = n - done < batch ? n - done : batch;
        for (size_t i = 0; i < k; i++) {
            char id[48];
            snprintf(id, sizeof id, "%s-%zu", tag, done + i);
            tevent_make(&te[i], TYPES[(done + i) % NTYPES], AGENCIES[(done + i) % NAGENCIES], id,
                        NULL, -1, PAD);
        }
        int rc = write_events(s, te, k, e, T0 + (int64_t)done, &err);
        if (rc != 0)
            fail_msg("store_write: %s", err.message);
        last = e[k - 1].seq;
        for (size_t i = 0; i < k; i++)
            tevent_free(&te[i]);
        done += k;
    }
    free(te);
    free(e);
    return last;
}

/* The child's half of test_growth: a read-only store in another process. */
static int reader_child(const char *dir, int rfd, int wfd)
{
    store *s = NULL;
    store_reader *r = NULL;
    kabar_error err;
    store_opts ro = {.readonly = true};
    uint64_t head, want;
    if (store_open(&s, dir, &ro, &err) != 0 || store_reader_open(s, &r, &err) != 0) {
        fprintf(stderr, "child: %s\n", err.message);
        return 1;
    }
    head = store_reader_head(r);
    /* Tell the writer our head, wait for it to grow the map. */
    if (write(wfd, &head, sizeof head) != sizeof head ||
        read(rfd, &want, sizeof want) != sizeof want)
        return 2;
    if (store_reader_refresh(r, &err) != 0) {
        fprintf(stderr, "child: refresh: %s\n", err.message);
        return 3;
    }
    if (store_reader_head(r) != want || store_head(s) != want)
        return 4;
    store_record rec;
    for (uint64_t seq = 1; seq <= want; seq += want / 97 + 1) {
        if (store_get(r, seq, &rec, &err) != 0 || rec.seq != seq)
            return 5;
    }
    if (store_get(r, want, &rec, &err) != 0)
        return 6;
    store_filter f = {.source = "setda", .from = want - 100};
    store_iter *it;
    uint64_t n = 0;
    if (store_iter_open(r, &f, &it, &err) != 0)
        return 7;
    while (store_iter_next(it, &rec, &err) == 0)
        n++;
    store_iter_close(&it);
    if (n != 101 / NAGENCIES && n != 101 / NAGENCIES + 1)
        return 8;
    store_opts rw = {0};
    store *w = NULL;
    if (store_write(s, NULL, 0, NULL, 0, 0, &err) != KABAR_INVALID_ARGUMENT)
        return 9;
    if (store_open(&w, dir, &rw, &err) != KABAR_LOCKED)
        return 10;
    store_reader_close(&r);
    store_close(&s);
    return 0;
}

static void test_growth(void **state)
{
    char *dir = tmpdir_new();
    store *s = open_rw(dir, 0, true);
    uint64_t head = write_many(s, "g0", 1000, 256);
    assert_true(store_file_bytes(s) < 64ull << 20);

    int to_child[2], to_parent[2];
    assert_int_equal(pipe(to_child), 0);
    assert_int_equal(pipe(to_parent), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(reader_child(dir, to_child[0], to_parent[1]));
    uint64_t child_head = 0;
    assert_int_equal(read(to_parent[0], &child_head, sizeof child_head), sizeof child_head);
    assert_int_equal(child_head, head);

    /* A reader and an iterator of this process, live across the growth. */
    kabar_error err;
    store_reader *r;
    store_iter *it;
    store_record rec;
    assert_int_equal(store_reader_open(s, &r, &err), 0);
    assert_int_equal(store_iter_open(r, NULL, &it, &err), 0);
    for (uint64_t seq = 1; seq <= 10; seq++) {
        assert_int_equal(store_iter_next(it, &rec, &err), 0);
        assert_int_equal(rec.seq, seq);
    }

    /* Past the initial 64 MiB map: the store grows it and loses nothing. */
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    uint64_t added = 0;
    for (int round = 0; store_file_bytes(s) <= (72ull << 20); round++) {
        char tag[16];
        snprintf(tag, sizeof tag, "g1-%d", round);
        head = write_many(s, tag, 20000, 1024);
        added += 20000;
        assert_true(added < 2000000);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("# growth: %llu events, file %llu MiB, %.0f events/s (nosync, batches of 1024)\n",
           (unsigned long long)added, (unsigned long long)(store_file_bytes(s) >> 20),
           (double)added / secs);
    assert_int_equal(head, 1000 + added);
    assert_int_equal(store_head(s), head);

    /* The iterator continues where it was, without a gap, to the new head. */
    uint64_t want = 11;
    int rc;
    while ((rc = store_iter_next(it, &rec, &err)) == 0) {
        if (rec.seq != want)
            fail_msg("after growth: got seq %llu, want %llu", (unsigned long long)rec.seq,
                     (unsigned long long)want);
        want++;
    }
    assert_int_equal(rc, KABAR_END);
    assert_int_equal(want - 1, store_reader_head(r));
    assert_int_equal(store_reader_head(r), head);
    store_iter_close(&it);
    store_reader_close(&r);

    /* The other process follows the grown map. */
    assert_int_equal(write(to_child[1], &head, sizeof head), sizeof head);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    close(to_child[0]);
    close(to_child[1]);
    close(to_parent[0]);
    close(to_parent[1]);

    /* And a restart keeps the map and the events. */
    store_close(&s);
    s = open_rw(dir, 0, false);
    assert_int_equal(store_head(s), head);
    tevent te;
    store_entry e;
    att(&te, "dinkes", "after-restart");
    assert_int_equal(write_events(s, &te, 1, &e, T0, &err), 0);
    assert_int_equal(e.seq, head + 1);
    tevent_free(&te);
    store_close(&s);
    tmpdir_free(dir);
}

/* Everything 1..head is readable after a failed write. */
static void check_all_readable(store *s, uint64_t head)
{
    store_reader *r;
    kabar_error err;
    store_record rec;
    assert_int_equal(store_reader_open(s, &r, &err), 0);
    assert_int_equal(store_reader_head(r), head);
    for (uint64_t seq = 1; seq <= head; seq++) {
        assert_int_equal(store_get(r, seq, &rec, &err), 0);
        kabar_event ev;
        assert_int_equal(kabar_event_decode(NULL, rec.bytes, rec.len, &ev, &err), 0);
    }
    store_reader_close(&r);
}

static void test_max_bytes(void **state)
{
    char *dir = tmpdir_new();
    const uint64_t cap = 2ull << 20;
    store *s = open_rw(dir, cap, true);
    tevent *te = calloc(64, sizeof *te);
    store_entry *e = calloc(64, sizeof *e);
    kabar_error err = {0};
    int rc = 0;
    uint64_t head = 0, batches = 0;
    store_sigbatch sb;
    uint8_t(*leaves)[32] = calloc(64, 32);
    /* Signed batches: the failed write must leave no batch and no tree node behind. */
    for (int b = 0; rc == 0 && b < 10000; b++) {
        for (int i = 0; i < 64; i++) {
            char id[32];
            snprintf(id, sizeof id, "m-%d-%d", b, i);
            tevent_make(&te[i], "attendance.reported", "dinkes", id, NULL, -1, PAD);
        }
        rc = write_signed(s, te, 64, e, &sb, leaves, T0, &err);
        if (rc == 0) {
            head += 64;
            assert_int_equal(sb.id, ++batches);
        }
        for (int i = 0; i < 64; i++)
            tevent_free(&te[i]);
    }
    assert_int_equal(rc, KABAR_DISK_FULL);
    assert_non_null(strstr(err.message, "--max-size"));
    assert_non_null(strstr(err.message, dir));
    assert_true(head > 1000);
    assert_int_equal(sb.id, 0);
    assert_int_equal(store_head(s), head);
    assert_true(store_file_bytes(s) <= cap);
    check_all_readable(s, head);
    assert_int_equal(check_tree(s, NULL), head);
    store_reader *r;
    store_batch bt;
    assert_int_equal(store_reader_open(s, &r, &err), 0);
    assert_int_equal(store_batch_get(r, batches, &bt, &err), 0);
    assert_int_equal(store_batch_get(r, batches + 1, &bt, &err), KABAR_NOT_FOUND);
    store_reader_close(&r);
    /* A restart keeps everything; a larger limit lets writing go on. */
    store_close(&s);
    s = open_rw(dir, cap, true);
    assert_int_equal(store_head(s), head);
    check_all_readable(s, head);
    store_close(&s);
    s = open_rw(dir, 8ull << 20, true);
    assert_int_equal(write_many(s, "more", 500, 64), head + 500);
    tevent one;
    att(&one, "dinkes", "after-full");
    assert_int_equal(write_signed(s, &one, 1, e, &sb, leaves, T0, &err), 0);
    assert_int_equal(sb.id, batches + 1);
    tevent_free(&one);
    assert_int_equal(check_tree(s, NULL), head + 501);
    store_close(&s);
    free(leaves);
    free(te);
    free(e);
    tmpdir_free(dir);
}

/* A file size limit (RLIMIT_FSIZE) makes writes fail like a full disk does. */
static int efbig_child(const char *dir)
{
    signal(SIGXFSZ, SIG_IGN);
    store *s = NULL;
    kabar_error err;
    store_opts o = {0};
    if (store_open(&s, dir, &o, &err) != 0)
        return 1;
    struct rlimit rl = {.rlim_cur = store_file_bytes(s) + (256 << 10)};
    rl.rlim_max = RLIM_INFINITY;
    if (setrlimit(RLIMIT_FSIZE, &rl) != 0)
        return 2;
    uint64_t before = store_head(s);
    tevent te[64];
    store_entry e[64];
    int rc = 0;
    for (int b = 0; rc == 0 && b < 1000; b++) {
        for (int i = 0; i < 64; i++) {
            char id[32];
            snprintf(id, sizeof id, "f-%d-%d", b, i);
            tevent_make(&te[i], "attendance.reported", "bpkad", id, NULL, -1, PAD);
        }
        rc = write_events(s, te, 64, e, T0, &err);
        if (rc == 0)
            before += 64;
        for (int i = 0; i < 64; i++)
            tevent_free(&te[i]);
    }
    if (rc != KABAR_DISK_FULL || strstr(err.message, "free disk space") == NULL) {
        fprintf(stderr, "child: rc %d: %s\n", rc, err.message);
        return 3;
    }
    if (store_head(s) != before)
        return 4;
    store_close(&s);
    printf("# file size limit: %s\n", err.message);
    fflush(stdout);
    return 0;
}

static void test_disk_full(void **state)
{
    char *dir = tmpdir_new();
    store *s = open_rw(dir, 0, false);
    uint64_t head = write_many(s, "d0", 300, 100);
    store_close(&s);
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(efbig_child(dir));
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    /* Nothing committed before is lost, and the log is writable again. */
    s = open_rw(dir, 0, false);
    assert_true(store_head(s) >= head);
    check_all_readable(s, store_head(s));
    uint64_t h = store_head(s);
    assert_int_equal(check_tree(s, NULL), h);
    assert_int_equal(write_many(s, "d1", 10, 10), h + 10);
    assert_int_equal(check_tree(s, NULL), h + 10);
    store_close(&s);
    tmpdir_free(dir);
}

/* ------------------------------------------------------------------------ */
/* The Merkle log                                                           */

static const size_t GROUPS[] = {1,  1,  2,  3,  4,  5,  7,   8,   9,   15, 16,
                                17, 31, 32, 33, 63, 64, 100, 255, 256, 257};

static void test_merkle(void **state)
{
    char *dir = tmpdir_new();
    store *s = open_rw(dir, 0, true);
    enum { N = 3000, MAXG = 257 };
    uint8_t(*leaves)[32] = calloc(N + MAXG, 32);
    tevent *te = calloc(MAXG, sizeof *te);
    store_entry *e = calloc(MAXG, sizeof *e);
    merkle_frontier *model = calloc(1, sizeof *model);
    merkle_mem *mem;
    kabar_error err;
    assert_int_equal(merkle_mem_new(&mem, &err), 0);
    merkle_store ms_mem = merkle_mem_store(mem);
    srand(9162);
    uint64_t head = 0;
    size_t next_id = 0;
    for (int round = 0; head < N; round++) {
        /* The first rounds walk the group sizes in order (small trees), then at random. */
        size_t n = round < (int)(sizeof GROUPS / sizeof GROUPS[0])
                       ? GROUPS[round]
                       : GROUPS[(size_t)rand() % (sizeof GROUPS / sizeof GROUPS[0])];
        for (size_t i = 0; i < n; i++) {
            char id[32];
            /* Now and then a retry of an earlier event: a duplicate, no new leaf. */
            bool dup = next_id > 0 && rand() % 10 == 0;
            size_t k = dup ? (size_t)rand() % next_id : next_id++;
            snprintf(id, sizeof id, "m-%zu", k);
            tevent_make(&te[i], TYPES[k % NTYPES], AGENCIES[k % NAGENCIES], id, NULL, -1, k % 50);
        }
        assert_int_equal(write_events(s, te, n, e, T0 + round, &err), 0);
        for (size_t i = 0; i < n; i++) {
            if (e[i].duplicate) {
                /* the original's leaf hash */
                assert_memory_equal(e[i].leaf_hash, leaves[e[i].seq - 1], 32);
            } else {
                assert_int_equal(e[i].seq, head + 1);
                memcpy(leaves[head], e[i].leaf_hash, 32);
                assert_int_equal(merkle_frontier_push(model, e[i].leaf_hash, NULL, NULL, &err), 0);
                assert_int_equal(merkle_append(&ms_mem, head, e[i].leaf_hash, &err), 0);
                head++;
            }
            tevent_free(&te[i]);
        }
        assert_int_equal(store_head(s), head);
        /* The root after this write = the RFC 9162 root of every leaf so far. */
        store_reader *r;
        uint8_t got[32], want[32];
        assert_int_equal(store_reader_open(s, &r, &err), 0);
        assert_int_equal(store_root(r, head, got, &err), 0);
        merkle_frontier_root(model, want);
        assert_memory_equal(got, want, 32);
        store_reader_close(&r);
        /* Now and then a restart: the writer reloads the tree's right edge from disk. */
        if (rand() % 4 == 0) {
            store_close(&s);
            s = open_rw(dir, 0, true);
        }
    }

    /* Leaves recomputed from the records, every stored node, every prefix root. */
    uint8_t(*roots)[32] = calloc(head + 1, 32);
    assert_int_equal(check_tree(s, roots), head);
    store_reader *r;
    assert_int_equal(store_reader_open(s, &r, &err), 0);
    merkle_store ms = store_merkle(r);
    for (uint64_t size = 0; size <= head; size++) {
        uint8_t got[32], mem_root[32];
        assert_int_equal(store_root(r, size, got, &err), 0);
        if (memcmp(got, roots[size], 32) != 0)
            fail_msg("root of tree size %llu differs", (unsigned long long)size);
        assert_int_equal(merkle_root(&ms_mem, size, mem_root, &err), 0);
        assert_memory_equal(got, mem_root, 32);
    }
    for (uint64_t i = 0; i < head; i++) {
        uint8_t leaf[32];
        assert_int_equal(store_leaf_hash(r, i + 1, leaf, &err), 0);
        assert_memory_equal(leaf, leaves[i], 32);
    }
    /* Proofs from the store's node view verify against the recomputed roots. */
    merkle_proof *pf = calloc(1, sizeof *pf);
    for (int k = 0; k < 400; k++) {
        uint64_t size = 1 + (uint64_t)rand() % head, index = (uint64_t)rand() % size;
        assert_int_equal(merkle_inclusion_proof(&ms, index, size, pf, &err), 0);
        if (merkle_verify_inclusion(index, size, leaves[index], pf, roots[size], &err) != 0)
            fail_msg("inclusion of leaf %llu in %llu: %s", (unsigned long long)index,
                     (unsigned long long)size, err.message);
        uint64_t old = (uint64_t)rand() % (size + 1);
        assert_int_equal(merkle_consistency_proof(&ms, old, size, pf, &err), 0);
        if (merkle_verify_consistency(old, size, roots[old], roots[size], pf, &err) != 0)
            fail_msg("consistency %llu -> %llu: %s", (unsigned long long)old,
                     (unsigned long long)size, err.message);
    }
    uint8_t x[32];
    assert_int_equal(store_root(r, head + 1, x, &err), KABAR_INVALID_ARGUMENT);
    assert_int_equal(store_leaf_hash(r, head + 1, x, &err), KABAR_NOT_FOUND);
    /* A reader's snapshot: a later write does not change its root. */
    store_reader_close(&r);
    assert_int_equal(store_reader_open(s, &r, &err), 0);
    tevent one;
    att(&one, "dinkes", "after-snapshot");
    assert_int_equal(write_events(s, &one, 1, e, T0, &err), 0);
    assert_int_equal(store_root(r, head + 1, x, &err), KABAR_INVALID_ARGUMENT);
    assert_int_equal(store_reader_refresh(r, &err), 0);
    assert_int_equal(store_root(r, head + 1, x, &err), 0);
    tevent_free(&one);
    store_reader_close(&r);
    check_tree(s, NULL);

    /* The raw access for kabar audit verify names every database. */
    const char *const names[] = {"events", "by_source",   "by_target", "by_type",
                                 "dedup",  "consumers",   "meta",      "batches",
                                 "tree",   "checkpoints", "agencies",  "keys"};
    unsigned dbi;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        assert_int_equal(store_dbi(s, names[i], &dbi), 0);
    assert_int_equal(store_dbi(s, "accounts", &dbi), KABAR_NOT_FOUND);

    store_close(&s);
    /* A read-only store gives the same roots. */
    store_opts ro = {.readonly = true};
    assert_int_equal(store_open(&s, dir, &ro, &err), 0);
    assert_int_equal(store_reader_open(s, &r, &err), 0);
    assert_int_equal(store_root(r, head, x, &err), 0);
    assert_memory_equal(x, roots[head], 32);
    store_reader_close(&r);
    store_close(&s);

    merkle_mem_destroy(&mem);
    free(pf);
    free(roots);
    free(model);
    free(e);
    free(te);
    free(leaves);
    tmpdir_free(dir);
}

/* A damaged tree is reported by the next write, which then writes nothing. */
static void test_merkle_damaged(void **state)
{
    char *dir = tmpdir_new();
    store *s = open_rw(dir, 0, true);
    uint64_t head = write_many(s, "dmg", 7, 7); /* nodes (1,0) (1,1) (1,2) (2,0) */
    store_close(&s);
    char path[4200];
    snprintf(path, sizeof path, "%s/log.mdb", dir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, path, MDB_NOSUBDIR, 0640), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "tree", 0, &dbi), 0);
    uint8_t kb[STORE_TREE_KEY];
    store_tree_key(kb, 2, 0); /* the node of leaves 0..3 */
    MDB_val k = {STORE_TREE_KEY, kb};
    assert_int_equal(mdb_del(txn, dbi, &k, NULL), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    s = open_rw(dir, 0, true);
    tevent te;
    store_entry e;
    kabar_error err;
    att(&te, "dinkes", "after-damage");
    assert_int_equal(write_events(s, &te, 1, &e, T0, &err), KABAR_STORE);
    assert_non_null(strstr(err.message, "level 2, index 0"));
    assert_non_null(strstr(err.message, "kabar audit verify"));
    assert_int_equal(store_head(s), head);
    store_reader *r;
    uint8_t root[32];
    assert_int_equal(store_reader_open(s, &r, &err), 0);
    assert_int_equal(store_reader_head(r), head);
    assert_int_equal(store_root(r, head, root, &err), KABAR_NOT_FOUND);
    assert_non_null(strstr(err.message, "level 2, index 0"));
    assert_int_equal(store_root(r, 3, root, &err), 0); /* (1,0) and leaf 2 are there */
    store_reader_close(&r);
    tevent_free(&te);
    store_close(&s);
    tmpdir_free(dir);
}

/* ------------------------------------------------------------------------ */
/* Signed batches                                                           */

static void check_batch_rec(store_reader *r, uint64_t seq, uint64_t batch, uint32_t index)
{
    kabar_error err;
    store_record rec;
    assert_int_equal(store_get(r, seq, &rec, &err), 0);
    assert_int_equal(rec.batch, batch);
    assert_int_equal(rec.batch_index, index);
    /* the header, byte-exact: 02 | received_at | batch BE8 | index BE4 */
    assert_int_equal(rec.raw[0], 2);
    for (int i = 0; i < 8; i++)
        assert_int_equal(rec.raw[9 + i], (uint8_t)(batch >> (56 - 8 * i)));
    for (int i = 0; i < 4; i++)
        assert_int_equal(rec.raw[17 + i], (uint8_t)(index >> (24 - 8 * i)));
}

static void test_batches(void **state)
{
    char *dir = tmpdir_new();
    store *s = open_rw(dir, 0, true);
    kabar_error err;
    tevent te[4];
    store_entry e[4];
    uint8_t la[4][32], lb[4][32];
    store_sigbatch A, B;

    /* An unsigned event and a signed batch of three in one write. */
    att(&te[0], "disdik", "b-0");
    att(&te[1], "dinkes", "b-1");
    att(&te[2], "dinkes", "b-2");
    att(&te[3], "dinkes", "b-3");
    assert_int_equal(write_events(s, te, 1, e, T0, &err), 0);
    assert_int_equal(e[0].batch_id, 0);
    assert_int_equal(write_signed(s, te + 1, 3, e + 1, &A, la, T0, &err), 0);
    assert_int_equal(A.id, 1);
    for (int i = 1; i < 4; i++) {
        assert_int_equal(e[i].seq, (uint64_t)i + 1);
        assert_int_equal(e[i].batch_id, 1);
    }
    store_reader *r;
    store_batch b;
    assert_int_equal(store_reader_open(s, &r, &err), 0);
    check_batch_rec(r, 1, 0, 0);
    for (uint32_t i = 0; i < 3; i++)
        check_batch_rec(r, 2 + i, 1, i);
    assert_int_equal(store_batch_get(r, 1, &b, &err), 0);
    assert_int_equal(b.id, 1);
    assert_int_equal(b.n, 3);
    assert_memory_equal(b.key, A.key, 32);
    assert_memory_equal(b.sig, A.sig, 64);
    assert_memory_equal(b.leaves, la, 3 * 32);
    assert_int_equal(store_batch_get(r, 2, &b, &err), KABAR_NOT_FOUND);
    store_reader_close(&r);

    /* A batch whose events are all retries stores no batch: the records keep the original's. */
    tevent again[2];
    att(&again[0], "dinkes", "b-1");
    att(&again[1], "dinkes", "b-2");
    assert_int_equal(write_signed(s, again, 2, e, &B, lb, T0, &err), 0);
    assert_int_equal(B.id, 0);
    assert_true(e[0].duplicate && e[1].duplicate);
    assert_int_equal(e[0].batch_id, 1);
    assert_int_equal(e[1].seq, 3);
    tevent_free(&again[0]);
    tevent_free(&again[1]);

    /* One retry and one new event: the batch is stored, under the next id. */
    att(&again[0], "dinkes", "b-3");
    att(&again[1], "dinkes", "b-4");
    assert_int_equal(write_signed(s, again, 2, e, &B, lb, T0, &err), 0);
    assert_int_equal(B.id, 2);
    assert_true(e[0].duplicate);
    assert_int_equal(e[0].batch_id, 1);
    assert_false(e[1].duplicate);
    assert_int_equal(e[1].seq, 5);
    assert_int_equal(e[1].batch_id, 2);
    tevent_free(&again[0]);
    tevent_free(&again[1]);

    /* Two batches in one write: ids in entry order; entries of both interleaved. */
    tevent mix[4];
    store_entry me[4];
    store_sigbatch C = {.n = 2, .leaves = (const uint8_t(*)[32])la};
    store_sigbatch D = {.n = 2, .leaves = (const uint8_t(*)[32])lb};
    memset(C.key, 0xc0, 32);
    memset(D.key, 0xd0, 32);
    for (int i = 0; i < 4; i++) {
        char id[16];
        snprintf(id, sizeof id, "mix-%d", i);
        att(&mix[i], i % 2 ? "bappeda" : "setda", id);
        me[i] = (store_entry){.ev = &mix[i].ev,
                              .bytes = mix[i].bytes,
                              .len = mix[i].len,
                              .batch = i % 2 ? &D : &C,
                              .batch_index = (uint32_t)(i / 2)};
    }
    assert_int_equal(store_write(s, me, 4, NULL, 0, T0, &err), 0);
    assert_int_equal(C.id, 3);
    assert_int_equal(D.id, 4);
    assert_int_equal(me[3].batch_id, 4);
    assert_int_equal(store_reader_open(s, &r, &err), 0);
    check_batch_rec(r, 6, 3, 0);
    check_batch_rec(r, 7, 4, 0);
    check_batch_rec(r, 8, 3, 1);
    check_batch_rec(r, 9, 4, 1);
    assert_int_equal(store_batch_get(r, 4, &b, &err), 0);
    assert_int_equal(b.key[0], 0xd0);
    assert_int_equal(b.n, 2);
    store_reader_close(&r);

    /* Not a batch: refused before anything is written. */
    tevent bad;
    att(&bad, "dinkes", "bad-batch");
    store_sigbatch Z = {.n = 2, .leaves = (const uint8_t(*)[32])la};
    store_entry be = {.ev = &bad.ev, .bytes = bad.bytes, .len = bad.len, .batch = &Z};
    be.batch_index = 2;
    assert_int_equal(store_write(s, &be, 1, NULL, 0, T0, &err), KABAR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "batch"));
    be.batch_index = 0;
    Z.n = 0;
    assert_int_equal(store_write(s, &be, 1, NULL, 0, T0, &err), KABAR_INVALID_ARGUMENT);
    Z.n = STORE_BATCH_MAX + 1;
    assert_int_equal(store_write(s, &be, 1, NULL, 0, T0, &err), KABAR_INVALID_ARGUMENT);
    Z.n = 1;
    Z.leaves = NULL;
    assert_int_equal(store_write(s, &be, 1, NULL, 0, T0, &err), KABAR_INVALID_ARGUMENT);
    assert_int_equal(store_head(s), 9);
    assert_int_equal(Z.id, 0);

    /* After a restart the ids go on. */
    store_close(&s);
    s = open_rw(dir, 0, true);
    Z.leaves = (const uint8_t(*)[32])la;
    assert_int_equal(store_write(s, &be, 1, NULL, 0, T0, &err), 0);
    assert_int_equal(Z.id, 5);
    assert_int_equal(be.seq, 10);
    check_tree(s, NULL);
    store_close(&s);

    for (int i = 0; i < 4; i++) {
        tevent_free(&te[i]);
        tevent_free(&mix[i]);
    }
    tevent_free(&bad);
    tmpdir_free(dir);
}

/* ------------------------------------------------------------------------ */
/* Checkpoints                                                              */

typedef struct cp_seen {
    int n;
    uint64_t sizes[8];
    int stop_at;
} cp_seen;

static int cp_collect(void *arg, uint64_t size, const char *note, size_t len)
{
    cp_seen *c = arg;
    assert_true(len > 0 && note[len - 1] == '\n');
    c->sizes[c->n++] = size;
    return c->n == c->stop_at ? 7 : 0;
}

static void test_checkpoints(void **state)
{
    char *dir = tmpdir_new();
    store_opts o = {.origin = "kabar.test/checkpoints", .nosync = true};
    store *s = NULL;
    kabar_error err;
    assert_int_equal(store_open(&s, dir, &o, &err), 0);
    store_reader *r;
    kabar_buf note = {0};
    uint64_t size;
    assert_int_equal(store_reader_open(s, &r, &err), 0);
    assert_int_equal(store_checkpoint_get(r, 0, &note, &size, &err), KABAR_NOT_FOUND);
    store_reader_close(&r);
    uint64_t head = write_many(s, "cp", 5, 2);

    /* Sign checkpoints of sizes 1, 3, 5 over the store's roots, as kabard does. */
    uint8_t seed[CHECKPOINT_SEED];
    memset(seed, 7, sizeof seed);
    checkpoint_signer sg;
    assert_int_equal(checkpoint_signer_from_seed(&sg, store_origin(s), seed, &err), 0);
    uint8_t roots[6][32];
    assert_int_equal(store_reader_open(s, &r, &err), 0);
    const uint64_t sizes[] = {3, 1, 5};
    for (int i = 0; i < 3; i++) {
        checkpoint c = {0};
        snprintf(c.origin, sizeof c.origin, "%s", store_origin(s));
        c.size = sizes[i];
        assert_int_equal(store_root(r, c.size, c.root, &err), 0);
        memcpy(roots[c.size], c.root, 32);
        kabar_buf b = {0};
        assert_int_equal(checkpoint_sign(&c, &sg, &b, &err), 0);
        assert_int_equal(store_checkpoint_put(s, c.size, b.data, b.len, &err), 0);
        kabar_buf_free(&b);
    }
    /* The open reader's snapshot predates them. */
    assert_int_equal(store_checkpoint_get(r, 0, &note, &size, &err), KABAR_NOT_FOUND);
    assert_int_equal(store_reader_refresh(r, &err), 0);
    assert_int_equal(store_checkpoint_get(r, 0, &note, &size, &err), 0);
    assert_int_equal(size, 5);
    checkpoint got;
    assert_int_equal(checkpoint_open(&got, note.data, note.len, &sg.verifier, &err), 0);
    assert_int_equal(got.size, 5);
    assert_memory_equal(got.root, roots[5], 32);
    assert_string_equal(got.origin, "kabar.test/checkpoints");
    note.len = 0;
    assert_int_equal(store_checkpoint_get(r, 3, &note, NULL, &err), 0);
    assert_int_equal(checkpoint_open(&got, note.data, note.len, &sg.verifier, &err), 0);
    assert_int_equal(got.size, 3);
    assert_memory_equal(got.root, roots[3], 32);
    assert_int_equal(store_checkpoint_get(r, 2, &note, NULL, &err), KABAR_NOT_FOUND);
    cp_seen all = {0}, stop = {.stop_at = 2};
    assert_int_equal(store_checkpoint_each(r, cp_collect, &all, &err), 0);
    assert_int_equal(all.n, 3);
    assert_int_equal(all.sizes[0], 1); /* oldest first */
    assert_int_equal(all.sizes[1], 3);
    assert_int_equal(all.sizes[2], 5);
    assert_int_equal(store_checkpoint_each(r, cp_collect, &stop, &err), 7);
    assert_int_equal(stop.n, 2);
    store_reader_close(&r);

    /* Only sizes the log has, and a note. */
    assert_int_equal(store_checkpoint_put(s, head + 1, "x\n", 2, &err), KABAR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "holds 5"));
    assert_int_equal(store_checkpoint_put(s, 0, "x\n", 2, &err), KABAR_INVALID_ARGUMENT);
    assert_int_equal(store_checkpoint_put(s, 2, "", 0, &err), KABAR_INVALID_ARGUMENT);
    store_close(&s);

    /* They persist; a read-only store reads them and cannot add one. */
    store_opts ro = {.readonly = true};
    assert_int_equal(store_open(&s, dir, &ro, &err), 0);
    assert_int_equal(store_reader_open(s, &r, &err), 0);
    note.len = 0;
    assert_int_equal(store_checkpoint_get(r, 0, &note, &size, &err), 0);
    assert_int_equal(size, 5);
    assert_int_equal(checkpoint_open(&got, note.data, note.len, &sg.verifier, &err), 0);
    store_reader_close(&r);
    assert_int_equal(store_checkpoint_put(s, 1, "x\n", 2, &err), KABAR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "read-only"));
    store_close(&s);
    checkpoint_signer_wipe(&sg);
    kabar_buf_free(&note);
    tmpdir_free(dir);
}

/* ------------------------------------------------------------------------ */
/* The registry                                                             */

static int agency_collect(void *arg, const store_agency *a)
{
    seen *sn = arg;
    snprintf(sn->names[sn->n], sizeof sn->names[0], "%s", a->id);
    sn->n++;
    return sn->n == sn->stop_at ? 5 : 0;
}

static int key_collect(void *arg, const store_key *k)
{
    seen *sn = arg;
    snprintf(sn->names[sn->n], sizeof sn->names[0], "%02x:%s", k->pk[0], k->agency);
    sn->n++;
    return 0;
}

static void test_registry(void **state)
{
    char *dir = tmpdir_new();
    store *s = open_rw(dir, 0, true);
    kabar_error err;
    store_agency a = {.id = "dinkes",
                      .name = "Dinas Kesehatan Kota Padang",
                      .region = "13.71",
                      .org = "1.02.01",
                      .role = "agent"};
    int64_t before = kabar_now();
    assert_int_equal(store_agency_put(s, &a, &err), 0);
    store_agency b = {.id = "inspektorat",
                      .name = "Inspektorat Kota Padang",
                      .region = "13.71",
                      .role = "auditor",
                      .created_at = T0};
    assert_int_equal(store_agency_put(s, &b, &err), 0);

    store_reader *r;
    store_agency got;
    assert_int_equal(store_reader_open(s, &r, &err), 0);
    assert_int_equal(store_agency_get(r, "dinkes", &got, &err), 0);
    assert_string_equal(got.id, "dinkes");
    assert_string_equal(got.name, a.name);
    assert_string_equal(got.region, "13.71");
    assert_string_equal(got.org, "1.02.01");
    assert_string_equal(got.role, "agent");
    assert_true(got.created_at >= before && got.created_at <= kabar_now());
    int64_t created = got.created_at;
    assert_int_equal(store_agency_get(r, "inspektorat", &got, &err), 0);
    assert_int_equal(got.created_at, T0);
    assert_string_equal(got.org, "");
    assert_int_equal(store_agency_get(r, "dishub", &got, &err), KABAR_NOT_FOUND);
    assert_non_null(strstr(err.message, "dishub"));

    /* An update replaces the fields and keeps created_at. */
    snprintf(a.name, sizeof a.name, "Dinas Kesehatan");
    snprintf(a.role, sizeof a.role, "oversight");
    assert_int_equal(store_agency_put(s, &a, &err), 0);
    assert_int_equal(store_reader_refresh(r, &err), 0);
    assert_int_equal(store_agency_get(r, "dinkes", &got, &err), 0);
    assert_string_equal(got.name, "Dinas Kesehatan");
    assert_string_equal(got.role, "oversight");
    assert_int_equal(got.created_at, created);
    seen sn = {0}, stop = {.stop_at = 1};
    assert_int_equal(store_agency_each(r, agency_collect, &sn, &err), 0);
    assert_int_equal(sn.n, 2);
    assert_string_equal(sn.names[0], "dinkes");
    assert_string_equal(sn.names[1], "inspektorat");
    assert_int_equal(store_agency_each(r, agency_collect, &stop, &err), 5);

    /* Bad agencies are refused, naming the field. */
    store_agency bad = a;
    snprintf(bad.role, sizeof bad.role, "root");
    assert_int_equal(store_agency_put(s, &bad, &err), KABAR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "role"));
    bad = a;
    snprintf(bad.id, sizeof bad.id, "Dinas Kesehatan");
    assert_int_equal(store_agency_put(s, &bad, &err), KABAR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "id"));
    bad = a;
    bad.name[0] = '\0';
    assert_int_equal(store_agency_put(s, &bad, &err), KABAR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "name"));

    /* Keys: add, revoke, rotate; a revocation is final; a key has one agency. */
    store_key k1 = {.agency = "dinkes", .valid_from = T0, .revoked_at = INT64_MAX};
    memset(k1.pk, 0x11, 32);
    store_key k2 = {.agency = "dinkes", .valid_from = T0 + 100 * SEC, .revoked_at = INT64_MAX};
    memset(k2.pk, 0x22, 32);
    store_key k3 = {.agency = "dishub", .valid_from = T0, .revoked_at = INT64_MAX};
    memset(k3.pk, 0x33, 32);
    assert_int_equal(store_key_put(s, &k3, &err), KABAR_NOT_FOUND);
    assert_non_null(strstr(err.message, "dishub"));
    assert_int_equal(store_key_put(s, &k1, &err), 0);
    assert_int_equal(store_key_put(s, &k1, &err), 0); /* the same again: nothing changes */
    store_key k;
    assert_int_equal(store_reader_refresh(r, &err), 0);
    assert_int_equal(store_key_get(r, k1.pk, &k, &err), 0);
    assert_memory_equal(k.pk, k1.pk, 32);
    assert_string_equal(k.agency, "dinkes");
    assert_int_equal(k.valid_from, T0);
    assert_int_equal(k.revoked_at, INT64_MAX);
    /* Rotation: the new key valid from T0+100s, the old one revoked at the same instant. */
    assert_int_equal(store_key_put(s, &k2, &err), 0);
    k1.revoked_at = T0 + 100 * SEC;
    assert_int_equal(store_key_put(s, &k1, &err), 0);
    assert_int_equal(store_key_put(s, &k1, &err), 0);
    store_key un = k1;
    un.revoked_at = INT64_MAX;
    assert_int_equal(store_key_put(s, &un, &err), KABAR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "already revoked"));
    un.revoked_at = T0 + 200 * SEC;
    assert_int_equal(store_key_put(s, &un, &err), KABAR_INVALID_ARGUMENT);
    store_key other = k2;
    snprintf(other.agency, sizeof other.agency, "inspektorat");
    assert_int_equal(store_key_put(s, &other, &err), KABAR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "another agency"));
    other = k2;
    other.valid_from = T0;
    assert_int_equal(store_key_put(s, &other, &err), KABAR_INVALID_ARGUMENT);
    other = k3;
    snprintf(other.agency, sizeof other.agency, "dinkes");
    other.revoked_at = T0 - SEC;
    assert_int_equal(store_key_put(s, &other, &err), KABAR_INVALID_ARGUMENT);
    store_reader_close(&r);
    store_close(&s);

    /* Everything persists; a read-only store reads it. */
    store_opts ro = {.readonly = true};
    assert_int_equal(store_open(&s, dir, &ro, &err), 0);
    assert_int_equal(store_reader_open(s, &r, &err), 0);
    assert_int_equal(store_key_get(r, k1.pk, &k, &err), 0);
    assert_int_equal(k.revoked_at, T0 + 100 * SEC);
    assert_int_equal(store_key_get(r, k2.pk, &k, &err), 0);
    assert_int_equal(k.valid_from, T0 + 100 * SEC);
    assert_int_equal(k.revoked_at, INT64_MAX);
    assert_int_equal(store_key_get(r, k3.pk, &k, &err), KABAR_NOT_FOUND);
    seen ks = {0};
    assert_int_equal(store_key_each(r, key_collect, &ks, &err), 0);
    assert_int_equal(ks.n, 2);
    assert_string_equal(ks.names[0], "11:dinkes");
    assert_string_equal(ks.names[1], "22:dinkes");
    assert_int_equal(store_agency_get(r, "dinkes", &got, &err), 0);
    assert_string_equal(got.role, "oversight");
    store_reader_close(&r);
    assert_int_equal(store_agency_put(s, &a, &err), KABAR_INVALID_ARGUMENT);
    assert_int_equal(store_key_put(s, &k2, &err), KABAR_INVALID_ARGUMENT);
    store_close(&s);
    tmpdir_free(dir);
}

/* Durable consumers have an owner: set, kept, cleared, checked. */
static void test_consumer_owner(void **state)
{
    char *dir = tmpdir_new();
    store *s = open_rw(dir, 0, true);
    kabar_error err;
    store_consumer_update u = {.name = "dinkes-inbox", .acked = 0, .owner = "dinkes"};
    assert_int_equal(store_write(s, NULL, 0, &u, 1, T0, &err), 0);
    store_reader *r;
    store_consumer c;
    assert_int_equal(store_reader_open(s, &r, &err), 0);
    assert_int_equal(store_consumer_get(r, "dinkes-inbox", &c, &err), 0);
    assert_string_equal(c.owner, "dinkes");
    store_consumer_update ack = {.name = "dinkes-inbox", .acked = 3}; /* owner NULL: kept */
    assert_int_equal(store_write(s, NULL, 0, &ack, 1, T0, &err), 0);
    assert_int_equal(store_reader_refresh(r, &err), 0);
    assert_int_equal(store_consumer_get(r, "dinkes-inbox", &c, &err), 0);
    assert_int_equal(c.acked, 3);
    assert_string_equal(c.owner, "dinkes");
    ack.owner = "";
    assert_int_equal(store_write(s, NULL, 0, &ack, 1, T0, &err), 0);
    assert_int_equal(store_reader_refresh(r, &err), 0);
    assert_int_equal(store_consumer_get(r, "dinkes-inbox", &c, &err), 0);
    assert_string_equal(c.owner, "");
    store_consumer_update bad = {.name = "x", .owner = "Not An Agency"};
    assert_int_equal(store_write(s, NULL, 0, &bad, 1, T0, &err), KABAR_INVALID_ARGUMENT);
    assert_non_null(strstr(err.message, "owner"));
    store_reader_close(&r);
    store_close(&s);
    tmpdir_free(dir);
}

/* ------------------------------------------------------------------------ */
/* Throughput of the broker's hot path                                      */

/*
 * Events/s of store_write in batches of 256 (one transaction each), with
 * the Merkle log; signed: each batch is one signed batch (the secure
 * configuration's shape: one `batches` value of 8 KiB per write).
 */
static double bench(const char *dir, bool nosync, bool sign, size_t batches)
{
    store *s = open_rw(dir, 0, nosync);
    enum { B = 256 };
    tevent *te = calloc(B * batches, sizeof *te);
    store_entry e[B];
    store_sigbatch sb;
    uint8_t(*leaves)[32] = calloc(B * batches, 32);
    kabar_error err;
    for (size_t i = 0; i < B * batches; i++) {
        char id[48];
        const char *tg[1] = {AGENCIES[(i * 7) % NAGENCIES]};
        snprintf(id, sizeof id, "%s-%zu", nosync ? "n" : "d", i);
        tevent_make(&te[i], TYPES[i % NTYPES], AGENCIES[i % NAGENCIES], id, tg, (int)(i % 2), 0);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t b = 0; b < batches; b++) {
        /* (write_signed also hashes the batch's leaves, as the broker does to verify.) */
        int rc = sign ? write_signed(s, te + b * B, B, e, &sb, leaves + b * B, T0, &err)
                      : write_events(s, te + b * B, B, e, T0, &err);
        if (rc != 0)
            fail_msg("bench: %s", err.message);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    for (size_t i = 0; i < B * batches; i++)
        tevent_free(&te[i]);
    free(te);
    free(leaves);
    store_close(&s);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    return (double)(B * batches) / secs;
}

static void test_throughput(void **state)
{
    double r[4];
    for (int i = 0; i < 4; i++) {
        char *dir = tmpdir_new();
        /* durable: 10,240 events (40 fsyncs); without sync: 102,400 events */
        r[i] = bench(dir, i >= 2, i % 2 == 1, i >= 2 ? 400 : 40);
        tmpdir_free(dir);
    }
    printf("# store_write with the Merkle log, batches of 256: %.0f events/s durable (fsync per "
           "batch), %.0f signed; %.0f events/s without sync, %.0f signed (102400 events)\n",
           r[0], r[1], r[2], r[3]);
    /* Far above a national deployment's few million a day (~50/s on average). */
    assert_true(r[0] > 2000);
    assert_true(r[2] > 50000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),         cmocka_unit_test(test_append_dedup),
        cmocka_unit_test(test_persist),        cmocka_unit_test(test_filters_model),
        cmocka_unit_test(test_time_lookup),    cmocka_unit_test(test_consumers),
        cmocka_unit_test(test_growth),         cmocka_unit_test(test_max_bytes),
        cmocka_unit_test(test_disk_full),      cmocka_unit_test(test_merkle),
        cmocka_unit_test(test_merkle_damaged), cmocka_unit_test(test_batches),
        cmocka_unit_test(test_checkpoints),    cmocka_unit_test(test_registry),
        cmocka_unit_test(test_consumer_owner), cmocka_unit_test(test_throughput),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
