/*
 * oapply.h - apply one logged event to the oversight state.
 *
 * This is the ONE place where events become oversight state: the running
 * agent, `kabar oversight report --rebuild` and the unit tests all call
 * oapply_record, so a rebuilt state is the live one by construction.
 *
 * Idempotent, keyed by seq: the state records the last seq applied (its
 * position); a record at or below it changes nothing (OAPPLY_STALE). The
 * caller applies records in seq order inside one write transaction and
 * commits; the position moves in that same transaction, so a crash never
 * leaves an event half-applied or applied without its position (the
 * broker's at-least-once delivery then just re-sends stale records).
 *
 * What each type does (fields in ostate.h; "at" is the event's occurred_at,
 * or received_at when it has none):
 *
 *  finding.raised     the finding's auditee, auditor, report_received, due
 *                     and recommendations (latest raise wins); recs named
 *                     earlier by a response or review but not listed here
 *                     stay recorded with listed=false and do not count
 *  finding.responded  the rec is marked responded
 *  finding.reviewed   the rec's status becomes S, BS, BD or TD (the latest
 *                     by seq); closed_at = "at" when it moves from open (no
 *                     status, BS, BD) to closed (S, TD), null when it reopens
 *  finding.overdue    the first one per finding sets overdue_seq/_days
 *  visit.scheduled    host, visitor, date, program, team (latest wins)
 *  visit.completed    completed_date and attendance (latest wins)
 *  innovation.*       submitted: owner, competition, stage, submitted_at;
 *                     advanced / awarded: one entry per event (by seq)
 *  attendance.reported  (agency, date) -> present, total (latest wins)
 *
 * A finding is resolved when it has been raised and every listed rec is
 * closed; resolved_at is then the latest closed_at of its recs (the moment
 * the last open rec became S or TD), else null. Events may come in any
 * order (a response logged before its finding): records are created on
 * first mention and completed later.
 *
 * Every agency named as a source, target, host, auditee, owner or
 * attendance agency is added to the agencies set.
 */
#ifndef KABAR_OAPPLY_H
#define KABAR_OAPPLY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "kabar.h"
#include "ostate.h"

typedef enum oapply_outcome {
    OAPPLY_APPLIED = 0, /* the state and position moved */
    OAPPLY_STALE,       /* seq <= position: nothing changed */
    OAPPLY_IGNORED,     /* not usable (undecodable, a required field missing):
                           only the position moved; `note` says why */
} oapply_outcome;

/*
 * Apply the record (seq, received_at, the event's bytes) in the write
 * transaction t. Returns 0 with *outcome set, or a store error (then abort
 * the transaction). `note` (may be NULL) gets the reason of an IGNORED.
 */
int oapply_record(ostate_txn *t, uint64_t seq, int64_t received_at, const void *bytes, size_t len,
                  oapply_outcome *outcome, kabar_error *note, kabar_error *err);

/*
 * Record that the agent published finding.overdue for finding_id as `seq`
 * (the broker's ack), unless the finding already has one. 0 or a store error.
 */
int oapply_overdue_published(ostate_txn *t, const char *finding_id, uint64_t seq,
                             int64_t days_overdue, kabar_error *err);

/* ---- reading a finding record ---- */

/* Has a finding.raised been applied (auditee, due, ... known)? */
bool ofinding_raised(const json_t *f);
/* Is the rec closed (status S or TD)? */
bool ofinding_rec_closed(const json_t *rec);
/* The rec_ids of the listed recs that are not closed (a new array). */
json_t *ofinding_open_recs(const json_t *f);
/* resolved_at as ns, or INT64_MIN when not resolved. */
int64_t ofinding_resolved_at(const json_t *f);

/* A string member, or NULL. An integer member, or `def`. */
const char *ojson_str(const json_t *o, const char *key);
int64_t ojson_int(const json_t *o, const char *key, int64_t def);

#endif /* KABAR_OAPPLY_H */
