/*
 * report.h - the oversight report: figures per agency and period, from
 * the oversight state, as text, CSV or JSON.
 *
 * The report is built once as a JSON model (report_build) and the three
 * formats are renderings of it, so they never disagree. Every figure is
 * defined in docs/OVERSIGHT.md "The report"; in short, with the period
 * [since, until) in the region's days and L = the period's last day, but
 * no later than today:
 *
 *   visits_scheduled / _completed  visits by their (completion) date in the period
 *   findings_raised      report_received in the period
 *   findings_resolved    resolved (date of resolved_at) in the period
 *   findings_open        report_received <= L and not resolved on or before L
 *   findings_overdue     open, and due < L
 *   median_days_to_resolve  over the resolved ones: resolved date - report_received
 *   innovations_submitted / _advanced / _awarded  by event date in the period
 *                        (advanced: a stage other than "rejected")
 *   attendance_rate      100 * sum(present) / sum(total) over attendance
 *                        reports dated in the period, one decimal
 *
 * JSON model (stable keys; numbers are integers unless said):
 *   {"as_of", "zone", "since", "until", "position",
 *    "agencies_without_visit": [agency...],
 *    "findings_overdue": [{"finding_id", "auditee", "auditor", "due",
 *                          "days_overdue", "open_recs", "notified"}],
 *    "agencies": [{"agency", <figures>}], "totals": {<figures>}}
 */
#ifndef KABAR_REPORT_H
#define KABAR_REPORT_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "kabar.h"
#include "ostate.h"

typedef struct report_opts {
    int32_t since; /* first day, inclusive; ODATE_NONE: from the beginning */
    int32_t until; /* first day after the period; ODATE_NONE: no end */
    int32_t today; /* the clock's day in the zone */
    int tz_s;      /* the region's zone, seconds east of UTC */
} report_opts;

typedef enum report_format {
    REPORT_TEXT = 0,
    REPORT_CSV,
    REPORT_JSON,
} report_format;

/* The model from the state seen by t; *out is a new object (caller decrefs). */
int report_build(ostate_txn *t, const report_opts *o, json_t **out, kabar_error *err);

/* Write the model in a format. 0, or KABAR_IO when the write failed. */
int report_write(FILE *f, const json_t *model, report_format fmt, kabar_error *err);

/*
 * Twice the median of v[0..n) (sorted in place), so that the half of an
 * even count stays exact: 2*median, or -1 when n == 0. Values >= 0.
 */
int64_t report_median2(int64_t *v, size_t n);

/* 100 * present / total rounded half up to tenths, as tenths; -1 when total == 0. */
int64_t report_rate_tenths(int64_t present, int64_t total);

#endif /* KABAR_REPORT_H */
