/*
 * rebuild.c - a state from the whole log (see rebuild.h).
 */
#include "rebuild.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "oapply.h"
#include "store.h"

typedef struct batch {
    ostate *s;
    ostate_txn *t;
    size_t n;
    uint64_t total;
} batch;

static int batch_add(batch *b, uint64_t seq, int64_t received_at, const uint8_t *bytes, size_t len,
                     kabar_error *err)
{
    oapply_outcome out;
    int rc;
    if (b->t == NULL && (rc = ostate_begin(b->s, true, &b->t, err)) != 0)
        return rc;
    if ((rc = oapply_record(b->t, seq, received_at, bytes, len, &out, NULL, err)) != 0)
        return rc;
    b->total++;
    if (++b->n >= REBUILD_BATCH) {
        b->n = 0;
        return ostate_commit(&b->t, err);
    }
    return 0;
}

static int batch_end(batch *b, int rc, uint64_t *applied, kabar_error *err)
{
    if (rc == 0 && b->t != NULL)
        rc = ostate_commit(&b->t, err);
    ostate_abort(&b->t);
    if (applied != NULL)
        *applied = b->total;
    return rc;
}

int rebuild_from_broker(ostate *s, const char *endpoint, int timeout_ms, uint64_t *applied,
                        kabar_error *err)
{
    kabar_client_opts co = {.timeout_ms = timeout_ms, .window = 1};
    return rebuild_from_broker_opts(s, endpoint, &co, applied, err);
}

int rebuild_from_broker_opts(ostate *s, const char *endpoint, const kabar_client_opts *opts,
                             uint64_t *applied, kabar_error *err)
{
    kabar_client *c = NULL;
    kabar_sub *sub = NULL;
    kabar_client_opts co = *opts;
    int timeout_ms = co.timeout_ms > 0 ? co.timeout_ms : 10000;
    kabar_sub_opts so = {.start = KABAR_START_FIRST, .until_head = true, .credit = 4096};
    batch b = {.s = s};
    co.window = 1;
    int rc = kabar_client_connect(&c, endpoint, &co, err);
    if (rc == 0)
        rc = kabar_client_subscribe(c, &so, &sub, err);
    while (rc == 0) {
        kabar_record rec;
        rc = kabar_sub_next(sub, &rec, timeout_ms, err);
        if (rc == KABAR_END) {
            rc = 0;
            break;
        }
        if (rc == 0)
            rc = batch_add(&b, rec.seq, rec.received_at, rec.bytes, rec.len, err);
    }
    rc = batch_end(&b, rc, applied, err);
    kabar_sub_close(&sub);
    kabar_client_destroy(&c);
    return rc;
}

int rebuild_from_log(ostate *s, const char *logdir, uint64_t *applied, kabar_error *err)
{
    store *log = NULL;
    store_reader *r = NULL;
    store_iter *it = NULL;
    store_opts so = {.readonly = true};
    store_filter f = {0};
    batch b = {.s = s};
    int rc = store_open(&log, logdir, &so, err);
    if (rc == 0)
        rc = store_reader_open(log, &r, err);
    if (rc == 0)
        rc = store_iter_open(r, &f, &it, err);
    while (rc == 0) {
        store_record rec;
        rc = store_iter_next(it, &rec, err);
        if (rc == KABAR_END) {
            rc = 0;
            break;
        }
        if (rc == 0)
            rc = batch_add(&b, rec.seq, rec.received_at, rec.bytes, rec.len, err);
    }
    rc = batch_end(&b, rc, applied, err);
    store_iter_close(&it);
    store_reader_close(&r);
    store_close(&log);
    return rc;
}

int rebuild_tmp_open(char *dir, size_t cap, ostate **out, kabar_error *err)
{
    const char *base = getenv("TMPDIR");
    snprintf(dir, cap, "%s/kabar-oversight-XXXXXX", base && base[0] ? base : "/tmp");
    if (mkdtemp(dir) == NULL) {
        int e = errno;
        dir[0] = '\0';
        return kabar_error_set(err, KABAR_IO, "cannot make a temporary directory: %s (set TMPDIR)",
                               strerror(e));
    }
    int rc = ostate_open(out, dir, false, err);
    if (rc != 0)
        rebuild_tmp_remove(dir, NULL);
    return rc;
}

void rebuild_tmp_remove(char *dir, ostate **s)
{
    char p[PATH_MAX + 32];
    if (s != NULL)
        ostate_close(s);
    if (dir == NULL || dir[0] == '\0')
        return;
    snprintf(p, sizeof p, "%s/%s", dir, OSTATE_FILE);
    unlink(p);
    snprintf(p, sizeof p, "%s/%s-lock", dir, OSTATE_FILE);
    unlink(p);
    rmdir(dir);
    dir[0] = '\0';
}
