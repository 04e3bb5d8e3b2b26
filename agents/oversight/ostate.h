/*
 * ostate.h - the oversight state: what the secretariat needs to know,
 * derived from the whole log, in the oversight agent's own LMDB.
 *
 * One environment at DIR/oversight.mdb (with LMDB's DIR/oversight.mdb-lock).
 * kabar-oversight is its only writer; `kabar oversight report` opens it
 * read-only while the agent runs (LMDB readers never block the writer), and
 * `--rebuild` fills a fresh one in a temporary directory.
 *
 * Named databases. Keys are strings; values are compact JSON objects (the
 * state is small, and JSON keeps it readable with mdb_dump and jq):
 *
 *   findings    finding_id -> {"auditee", "auditor", "report_received",
 *               "due", "raised_seq", "recs": [{"rec_id", "listed",
 *               "status", "status_seq", "closed_at", "responded"}],
 *               "resolved_at", "overdue_seq", "overdue_days"}
 *   visits      visit_id -> {"host", "visitor", "date", "program", "team",
 *               "scheduled_seq", "completed_seq", "completed_date",
 *               "present", "total"}
 *   innovations innovation_id -> {"owner", "competition", "acronym",
 *               "stage", "submitted_seq", "submitted_at", "advanced":
 *               [{"seq", "stage", "competition", "at"}], "awards":
 *               [{"seq", "award", "rank", "competition", "at"}]}
 *   attendance  agency NUL date -> {"agency", "date", "present", "total", "seq"}
 *   agencies    agency id -> {"first_seq"}
 *   meta        "position" -> uint64 BE: the last seq applied;
 *               "agency" -> the oversight agent's agency (absent in a rebuild)
 *
 * Instants are int64 ns UTC; dates are "YYYY-MM-DD" strings. The meaning of
 * each field, and how events change it, is in oapply.h.
 *
 * Every write transaction is durable (LMDB's default full sync): when
 * ostate_commit returns 0 the state and its position are on disk together.
 */
#ifndef KABAR_OSTATE_H
#define KABAR_OSTATE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kabar.h"

#define OSTATE_FILE      "oversight.mdb"
#define OSTATE_MAP_BYTES ((size_t)4 << 30) /* address space; the file grows with the data */

typedef enum ostate_kind {
    OSTATE_FINDINGS = 0,
    OSTATE_VISITS,
    OSTATE_INNOVATIONS,
    OSTATE_ATTENDANCE,
    OSTATE_AGENCIES,
    OSTATE_KINDS
} ostate_kind;

typedef struct ostate ostate;
typedef struct ostate_txn ostate_txn;

/*
 * Open DIR/oversight.mdb (created with its databases when !readonly).
 * *out set only on success. KABAR_NOT_FOUND when readonly and there is no
 * state; KABAR_STORE with LMDB's reason otherwise.
 */
int ostate_open(ostate **out, const char *dir, bool readonly, kabar_error *err);
void ostate_close(ostate **s);
/* The file's path, for messages. */
const char *ostate_path(const ostate *s);

/* A read or write transaction; one at a time per thread. */
int ostate_begin(ostate *s, bool write, ostate_txn **out, kabar_error *err);
/* Commit (durably) and free; on failure nothing was written. */
int ostate_commit(ostate_txn **t, kabar_error *err);
/* Abandon and free; accepts NULL. */
void ostate_abort(ostate_txn **t);

/* The last seq applied (0: none). */
uint64_t ostate_position(ostate_txn *t);
int ostate_set_position(ostate_txn *t, uint64_t seq, kabar_error *err);

/* meta strings ("agency"); *out "" when absent. */
int ostate_meta_get(ostate_txn *t, const char *name, char *out, size_t cap, kabar_error *err);
int ostate_meta_put(ostate_txn *t, const char *name, const char *value, kabar_error *err);

/*
 * The record under key: *out is a new JSON object (caller json_decref's),
 * or NULL when there is none. A value that does not parse is KABAR_STORE.
 */
int ostate_get(ostate_txn *t, ostate_kind k, const char *key, size_t klen, json_t **out,
               kabar_error *err);
/* Store v (not consumed) under key, replacing what was there. */
int ostate_put(ostate_txn *t, ostate_kind k, const char *key, size_t klen, const json_t *v,
               kabar_error *err);

/*
 * Call fn for each record of a kind in key order; `v` is borrowed for the
 * call. fn returning non-zero stops the walk and that value is returned.
 */
typedef int (*ostate_each_fn)(void *arg, const char *key, size_t klen, json_t *v);
int ostate_each(ostate_txn *t, ostate_kind k, ostate_each_fn fn, void *arg, kabar_error *err);

/*
 * Every record as text, one "kind key json" line each, in a fixed order:
 * equal dumps mean equal states (the tests compare them).
 */
int ostate_dump(ostate_txn *t, kabar_buf *out, kabar_error *err);

#endif /* KABAR_OSTATE_H */
