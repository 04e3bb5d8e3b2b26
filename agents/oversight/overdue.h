/*
 * overdue.h - the overdue rule, and the finding.overdue events it makes.
 *
 * The rule (docs/OVERSIGHT.md "Overdue"): a finding is overdue on day D
 * (a day in the region's zone) when it has been raised, its due date is
 * before D (due < D: on the due date itself it is not yet late), and it is
 * not resolved: some listed recommendation's latest status is not S or TD.
 * days_overdue = D - due, so the day after the due date is 1.
 *
 * The agent asks on "today"; the report asks on the last day of its period
 * (a finding resolved after that day was still open on it).
 */
#ifndef KABAR_OVERDUE_H
#define KABAR_OVERDUE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "kabar.h"
#include "ostate.h"

#define OVERDUE_ID_PREFIX "overdue-"

/*
 * Is finding record f overdue on `day`? With `current`, "not resolved"
 * means not resolved in the state as it is; without, not resolved on or
 * before `day` (resolved_at falls after it in zone tz_s, or never).
 * *days gets day - due when it is.
 */
bool overdue_on(const json_t *f, int32_t day, int tz_s, bool current, int64_t *days);

/*
 * The findings overdue today (current state) for which no finding.overdue
 * was recorded yet: a new JSON array (caller decrefs) of bodies of
 * finding.overdue, {"finding_id", "auditee", "due", "days_overdue",
 * "open_recs"}, in finding_id order.
 */
int overdue_pending(ostate_txn *t, int32_t today, int tz_s, json_t **out, kabar_error *err);

/*
 * The finding.overdue event for one of those bodies: id "overdue-" +
 * finding_id (so the broker stores it once however often it is sent),
 * source `agency`, targets [auditee], corr finding_id, occurred_at `now`.
 * Canonical bytes in *bytes (malloc'd, caller frees).
 */
int overdue_event(const json_t *body, const char *agency, int64_t now, uint8_t **bytes, size_t *len,
                  kabar_error *err);

#endif /* KABAR_OVERDUE_H */
