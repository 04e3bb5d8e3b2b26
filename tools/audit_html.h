/*
 * audit_html.h - the auditor's report as ONE self-contained HTML file.
 *
 * `kabar audit report --format html` renders the report model of
 * agents/oversight/report.h (built with charts) as a page that opens in any
 * browser without a network: inline CSS, inline SVG charts drawn here, no
 * script, no font or image from anywhere (the system's sans-serif font). It
 * prints well (A4) too.
 *
 * The page holds, in this order: a header (period, as-of day, zone, agency,
 * the log it was computed from), the totals, four charts (findings by
 * status per agency: stacked bars; days to resolve: histogram; visits per
 * week; innovations by stage), the agencies with no visit, the findings
 * past due, and the table of figures per agency with a TOTAL row.
 *
 * Every string that comes from events (agency ids, finding ids, ...) is
 * escaped: the page shows `<script>` as text, never runs it.
 *
 * Stable hooks, so that programs and tests can read the figures from the
 * rendered page (docs/OVERSIGHT.md "The HTML report"):
 *   - each figure cell: <td data-figure="KEY" data-value="V"> inside
 *     <tr data-agency="ID"> of <tbody id="agencies">, and the totals in
 *     <tr id="totals" data-agency="">; V is the model's value as JSON text
 *     ("3", "93.8", "null"); KEY as in the JSON report;
 *   - each chart is an <svg id="chart-findings" | "chart-resolve" |
 *     "chart-visits" | "chart-innovations" class="chart">, whose bars are
 *     <rect class="bar" data-series="S" data-key="K" data-value="N">:
 *       chart-findings     K agency, S resolved | open_not_due | overdue
 *                          (open_not_due = findings_open - findings_overdue)
 *       chart-resolve      K "FROM-TO" or "FROM+" days, S count
 *       chart-visits       K the week's Monday, S scheduled | completed
 *       chart-innovations  K the stage, S count
 *     (bars of value 0 are drawn with zero size, so every value is there);
 *   - <ul id="no-visit"> (one <li data-agency> each), <tbody id="overdue">
 *     (one <tr data-finding> each), and <dl id="meta"> with <dd
 *     data-meta="as_of|zone|since|until|position|agency|source">.
 */
#ifndef KABAR_AUDIT_HTML_H
#define KABAR_AUDIT_HTML_H

#include <jansson.h>
#include <stdio.h>

#include "kabar.h"

/*
 * Write the page for `model` (report_build with charts, plus the
 * "source" member audit_report adds) to f. 0, or KABAR_IO when the write
 * failed, KABAR_NO_MEMORY.
 */
int audit_html_write(FILE *f, const json_t *model, kabar_error *err);

#endif /* KABAR_AUDIT_HTML_H */
