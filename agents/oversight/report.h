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
 *
 * With report_opts.agency, the report is of that one agency: "agencies"
 * holds it alone (even when the log never names it: all zero), the lists
 * only its entries, "totals" its figures, and the model gains
 * "agency": ID. Without it the model has no "agency" member.
 *
 * With report_opts.charts (`kabar audit report`), the model gains the data
 * of the HTML report's charts, defined in docs/OVERSIGHT.md:
 *   "charts": {
 *     "days_to_resolve": [{"from", "to" (null: no upper bound), "count"}]
 *         the findings counted in findings_resolved, by days to resolve;
 *     "visits_per_week": [{"week" (its Monday), "scheduled", "completed"}]
 *         the visits counted in visits_scheduled / _completed, by the week
 *         of their date; every week of the period when the period is at
 *         most REPORT_MAX_WEEKS long, else the weeks from the first to the
 *         last visit (and only the weeks with a visit when still longer);
 *     "innovations_by_stage": [{"stage", "count"}]
 *         innovations submitted on or before the as-of day, by the stage
 *         they had reached on it (see report_innovation_stage) }
 */
#ifndef KABAR_REPORT_H
#define KABAR_REPORT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "kabar.h"
#include "ostate.h"

typedef struct report_opts {
    int32_t since;      /* first day, inclusive; ODATE_NONE: from the beginning */
    int32_t until;      /* first day after the period; ODATE_NONE: no end */
    int32_t today;      /* the clock's day in the zone */
    int tz_s;           /* the region's zone, seconds east of UTC */
    const char *agency; /* only this agency; NULL: every agency seen */
    bool charts;        /* add "charts" (the audit report's HTML needs them) */
} report_opts;

#define REPORT_MAX_WEEKS 260 /* five years of weekly bars */

typedef enum report_format {
    REPORT_TEXT = 0,
    REPORT_CSV,
    REPORT_JSON,
} report_format;

/* The model from the state seen by t; *out is a new object (caller decrefs). */
int report_build(ostate_txn *t, const report_opts *o, json_t **out, kabar_error *err);

/* Write the model in a format. 0, or KABAR_IO when the write failed. */
int report_write(FILE *f, const json_t *model, report_format fmt, kabar_error *err);

/* The per-agency figures in the order of the text table and the CSV. */
typedef struct report_column {
    const char *key;   /* the model's key: "findings_open" */
    const char *head;  /* the text table's header: "FND-OPEN" */
    const char *title; /* for people: "Findings open" */
} report_column;
const report_column *report_columns(size_t *n);

/* A figure as text: integers plain, reals with one decimal, anything else `none`. */
void report_num_text(const json_t *v, char *out, size_t cap, const char *none);

/*
 * The options as a person gives them: since/until "YYYY-MM-DD" (NULL: open),
 * now an RFC 3339 instant or a date (NULL: the clock), tz a zone (NULL:
 * WIB). Fills r (agency and charts untouched). 0, or KABAR_BAD_VALUE with a
 * message naming the option (--since, --until, --now, --tz).
 */
int report_opts_parse(report_opts *r, const char *since, const char *until, const char *now,
                      const char *tz, kabar_error *err);

/*
 * Twice the median of v[0..n) (sorted in place), so that the half of an
 * even count stays exact: 2*median, or -1 when n == 0. Values >= 0.
 */
int64_t report_median2(int64_t *v, size_t n);

/*
 * The stage an innovation record (ostate.h) had reached on day `last`: the
 * one of its latest `innovation.advanced` dated on or before `last`
 * (admin_passed, shortlisted, finalist, rejected), "awarded" when an
 * `innovation.awarded` is dated on or before `last`, else the stage it was
 * submitted with (initiative, trial, applied; "submitted" when it has
 * none). NULL when it was not submitted on or before `last`. The string is
 * borrowed from the record or static.
 */
const char *report_innovation_stage(const json_t *inv, int32_t last, int tz_s);

/* 100 * present / total rounded half up to tenths, as tenths; -1 when total == 0. */
int64_t report_rate_tenths(int64_t present, int64_t total);

#endif /* KABAR_REPORT_H */
