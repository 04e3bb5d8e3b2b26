/*
 * audit_html.c - the auditor's report as one self-contained HTML page
 * (contract in audit_html.h).
 *
 * Reads only the report model. The charts are SVG drawn here with plain
 * arithmetic: a bar's length is value / axis maximum of the plot's extent,
 * the axis maximum being the largest value rounded up to whole ticks of 1,
 * 2 or 5 times a power of ten (count_axis). Every text that comes from the model goes through
 * esc().
 */
#include "audit_html.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "report.h"

/* ---- output helpers ---- */

/* s as HTML text or attribute value: & < > " ' escaped. */
static void esc(FILE *f, const char *s)
{
    for (; s != NULL && *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        case '\'':
            fputs("&#39;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

static const char *str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : "";
}

static int64_t integer(const json_t *o, const char *key)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : 0;
}

/* A model value as JSON text (the data-value attributes): "3", "93.8", "null". */
static void json_text(FILE *f, const json_t *v)
{
    char *s = v != NULL ? json_dumps(v, JSON_ENCODE_ANY | JSON_REAL_PRECISION(15)) : NULL;
    esc(f, s != NULL ? s : "null");
    free(s);
}

/* A figure for people: integers plain, reals with one decimal, null "–". */
static void figure_text(FILE *f, const json_t *v)
{
    char t[64];
    report_num_text(v, t, sizeof t, "\xe2\x80\x93");
    fputs(t, f);
}

/*
 * A count axis: whole ticks at a step of 1, 2 or 5 x 10^k, at most five of
 * them above 0, the last at or above max. The top (the axis maximum) is
 * step * ticks.
 */
typedef struct axis {
    double top;
    int ticks;
} axis;

static axis count_axis(double max)
{
    static const double m[] = {1, 2, 5};
    for (double p = 1;; p *= 10)
        for (int i = 0; i < 3; i++) {
            double step = m[i] * p;
            if (step * 5 >= max) {
                int n = (int)(max / step);
                n += n * step < max || n == 0;
                return (axis){step * n, n};
            }
        }
}

/* ---- the page ---- */

static const char style[] =
    "body{font-family:'DejaVu Sans','Liberation Sans',Arial,sans-serif;color:#1a1a1a;"
    "margin:24px auto;max-width:1100px;padding:0 16px;font-size:14px;line-height:1.4}"
    "h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:2px solid "
    "#d0d7de;padding-bottom:4px}"
    "p.note{color:#555;font-size:12px;margin:4px 0}"
    "dl#meta{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:8px 0}"
    "dl#meta dt{color:#555}dl#meta dd{margin:0}"
    ".cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}"
    ".card{border:1px solid #d0d7de;border-radius:6px;padding:8px 14px;min-width:130px}"
    ".card .v{font-size:26px;font-weight:bold}.card .k{color:#555;font-size:12px}"
    ".card.bad .v{color:#b3261e}"
    "figure{margin:16px 0;break-inside:avoid}figcaption{font-weight:bold;margin-bottom:4px}"
    "svg.chart{max-width:100%;height:auto;border:1px solid #e5e7eb;border-radius:4px;"
    "background:#fff}"
    "svg text{font-family:'DejaVu Sans','Liberation Sans',Arial,sans-serif;font-size:11px;"
    "fill:#333}"
    "svg .grid{stroke:#e5e7eb}svg .axis{stroke:#888}"
    "table{border-collapse:collapse;margin:8px 0;font-size:13px}"
    "th,td{border:1px solid #d0d7de;padding:3px 8px}th{background:#f3f4f6;text-align:left}"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}"
    "tbody tr:nth-child(even){background:#fafafa}tr#totals{font-weight:bold;background:#eef2f7}"
    "ul#no-visit{columns:4;margin:4px 0}"
    ".late{color:#b3261e;font-weight:bold}"
    "@media print{body{margin:0;max-width:none}h2{break-after:avoid}}";

static void meta_row(FILE *f, const char *key, const char *label, const char *value)
{
    fprintf(f, "<dt>%s</dt><dd data-meta=\"%s\">", label, key);
    esc(f, value);
    fputs("</dd>\n", f);
}

static void header(FILE *f, const json_t *m)
{
    const json_t *src = json_object_get(m, "source");
    const char *agency = str(m, "agency");
    char pos[32], where[PATH_MAX + 64];
    snprintf(pos, sizeof pos, "%lld", (long long)integer(m, "position"));
    snprintf(where, sizeof where, "%s %s (%lld events read)",
             strcmp(str(src, "kind"), "broker") == 0 ? "broker" : "log directory",
             str(src, "where"), (long long)integer(src, "records"));
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
          "<meta name=\"generator\" content=\"kabar audit report\">\n<title>Oversight report",
          f);
    if (agency[0]) {
        fputs(": ", f);
        esc(f, agency);
    }
    fputs(" (from the log)</title>\n<style>", f);
    fputs(style, f);
    fputs("</style>\n</head>\n<body>\n<h1>Oversight report", f);
    if (agency[0]) {
        fputs(": ", f);
        esc(f, agency);
    }
    fputs("</h1>\n<p class=\"note\">Computed by <code>kabar audit report</code> from the bus's "
          "log itself, with the oversight agent's own code: it does not depend on the "
          "secretariat's agent. Figures are defined in docs/OVERSIGHT.md.</p>\n<dl id=\"meta\">\n",
          f);
    const char *since = str(m, "since"), *until = str(m, "until");
    meta_row(f, "since", "Period from", since[0] ? since : "the beginning of the log");
    meta_row(f, "until", "up to (not including)", until[0] ? until : "no end");
    meta_row(f, "as_of", "As of", str(m, "as_of"));
    meta_row(f, "zone", "Zone", str(m, "zone"));
    meta_row(f, "agency", "Agency", agency[0] ? agency : "all agencies");
    meta_row(f, "position", "Log applied up to seq", pos);
    meta_row(f, "source", "Source", where);
    if (json_is_string(json_object_get(src, "root"))) {
        char tree[128];
        snprintf(tree, sizeof tree, "size %lld, root %s", (long long)integer(src, "tree_size"),
                 str(src, "root"));
        meta_row(f, "root", "Log Merkle tree", tree);
    }
    meta_row(f, "generated_at", "Generated at", str(m, "generated_at"));
    fputs("</dl>\n", f);
}

static void card(FILE *f, const json_t *totals, const char *key, const char *label, bool bad)
{
    json_t *v = json_object_get(totals, key);
    bool red = bad && json_is_integer(v) && json_integer_value(v) > 0;
    fprintf(f, "<div class=\"card%s\"><div class=\"v\" id=\"card-%s\" data-value=\"",
            red ? " bad" : "", key);
    json_text(f, v);
    fputs("\">", f);
    figure_text(f, v);
    fprintf(f, "</div><div class=\"k\">%s</div></div>\n", label);
}

static void cards(FILE *f, const json_t *m)
{
    const json_t *t = json_object_get(m, "totals");
    fputs("<h2>Totals</h2>\n<div class=\"cards\">\n", f);
    card(f, t, "visits_completed", "visits completed", false);
    card(f, t, "findings_raised", "findings raised", false);
    card(f, t, "findings_open", "findings open", false);
    card(f, t, "findings_overdue", "findings overdue", true);
    card(f, t, "findings_resolved", "findings resolved", false);
    card(f, t, "median_days_to_resolve", "median days to resolve", false);
    card(f, t, "innovations_submitted", "innovations submitted", false);
    card(f, t, "attendance_rate", "attendance %", false);
    fputs("</div>\n", f);
}

/* ---- SVG ---- */

#define SVG_W   960
#define LABEL_W 170 /* horizontal charts: the label column */
#define PLOT_W  700
#define ROW_H   22

static void svg_open(FILE *f, const char *id, int h, const char *label)
{
    fprintf(f,
            "<svg id=\"%s\" class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" "
            "height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"%s\">\n",
            id, SVG_W, h, SVG_W, h, label);
}

static void bar(FILE *f, const char *series, const char *key, int64_t value, double x, double y,
                double w, double h, const char *fill)
{
    fprintf(f, "<rect class=\"bar\" data-series=\"%s\" data-key=\"", series);
    esc(f, key);
    fprintf(f,
            "\" data-value=\"%lld\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
            "fill=\"%s\"><title>",
            (long long)value, x, y, w, h, fill);
    esc(f, key);
    fprintf(f, " %s: %lld</title></rect>\n", series, (long long)value);
}

static void text(FILE *f, double x, double y, const char *anchor, const char *s)
{
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\">", x, y, anchor);
    esc(f, s);
    fputs("</text>\n", f);
}

static void legend(FILE *f, double x, double y, const char *const *names, const char *const *colors,
                   size_t n)
{
    for (size_t i = 0; i < n; i++) {
        fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"12\" height=\"12\" fill=\"%s\"/>\n", x,
                y - 10, colors[i]);
        text(f, x + 16, y, "start", names[i]);
        x += 30 + 7.0 * (double)strlen(names[i]);
    }
}

/* Vertical grid lines and their values across a horizontal plot. */
static void xgrid(FILE *f, double x0, double y0, double y1, axis a)
{
    char v[32];
    for (int i = 0; i <= a.ticks; i++) {
        double x = x0 + PLOT_W * i / (double)a.ticks;
        fprintf(f, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", x,
                y0, x, y1);
        snprintf(v, sizeof v, "%.0f", a.top * i / a.ticks);
        text(f, x, y1 + 14, "middle", v);
    }
}

/* Horizontal grid lines and their values up a vertical plot of height ph. */
static void ygrid(FILE *f, double x0, double x1, double ybase, double ph, axis a)
{
    char v[32];
    for (int i = 0; i <= a.ticks; i++) {
        double y = ybase - ph * i / (double)a.ticks;
        fprintf(f, "<line class=\"grid\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", x0,
                y, x1, y);
        snprintf(v, sizeof v, "%.0f", a.top * i / a.ticks);
        text(f, x0 - 6, y + 4, "end", v);
    }
}

static void empty_note(FILE *f, bool empty, double y)
{
    if (empty)
        text(f, SVG_W / 2.0, y, "middle", "Nothing in the period.");
}

/* Findings by status per agency: one stacked horizontal bar per agency with findings. */
static void chart_findings(FILE *f, const json_t *m)
{
    static const char *const names[] = {"resolved in the period", "open, not yet due",
                                        "open, overdue"};
    static const char *const series[] = {"resolved", "open_not_due", "overdue"};
    static const char *const colors[] = {"#2e7d32", "#f2a900", "#c62828"};
    const json_t *list = json_object_get(m, "agencies"), *a;
    size_t i, rows = 0, skipped = 0;
    double max = 0;
    json_array_foreach(list, i, a)
    {
        int64_t sum = integer(a, "findings_resolved") + integer(a, "findings_open");
        if (sum > 0)
            rows++;
        max = (double)sum > max ? (double)sum : max;
    }
    skipped = json_array_size(list) - rows;
    axis ax = count_axis(max);
    int h = 60 + (int)(rows ? rows : 1) * ROW_H + 30;
    fputs("<figure>\n<figcaption>Findings by status, per agency</figcaption>\n", f);
    svg_open(f, "chart-findings", h, "Findings by status per agency: stacked bars");
    legend(f, LABEL_W, 20, names, colors, 3);
    double top = 40, bottom = top + (double)(rows ? rows : 1) * ROW_H;
    xgrid(f, LABEL_W, top, bottom, ax);
    empty_note(f, rows == 0, top + 15);
    size_t r = 0;
    json_array_foreach(list, i, a)
    {
        int64_t v[3] = {integer(a, "findings_resolved"),
                        integer(a, "findings_open") - integer(a, "findings_overdue"),
                        integer(a, "findings_overdue")};
        if (v[0] + integer(a, "findings_open") <= 0)
            continue;
        double y = top + (double)r++ * ROW_H, x = LABEL_W;
        text(f, LABEL_W - 8, y + 15, "end", str(a, "agency"));
        for (int s = 0; s < 3; s++) {
            double w = PLOT_W * (double)v[s] / ax.top;
            bar(f, series[s], str(a, "agency"), v[s], x, y + 4, w, ROW_H - 8, colors[s]);
            x += w;
        }
        char t[32];
        snprintf(t, sizeof t, "%lld", (long long)(v[0] + v[1] + v[2]));
        text(f, x + 4, y + 15, "start", t);
    }
    fprintf(f, "<line class=\"axis\" x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\"/>\n", LABEL_W, top,
            LABEL_W, bottom);
    fputs("</svg>\n", f);
    fprintf(f,
            "<p class=\"note\">Resolved: every recommendation S or TD, resolved in the period. "
            "Open and overdue: on the as-of day. %zu agenc%s with no finding %s not shown.</p>\n"
            "</figure>\n",
            skipped, skipped == 1 ? "y" : "ies", skipped == 1 ? "is" : "are");
}

/* A vertical bar chart of `n` groups of `ns` series each. */
typedef struct vchart {
    const char *id, *caption, *aria;
    size_t n, ns;
    const char *const *series, *const *names, *const *colors;
    const char **keys, **labels; /* per group: data-key, axis label (NULL: none) */
    int64_t *v;                  /* v[group * ns + series] */
} vchart;

static void chart_vertical(FILE *f, const vchart *c)
{
    const double x0 = 60, x1 = SVG_W - 20, ybase = 250, ph = 200;
    double max = 0, gw = c->n ? (x1 - x0) / (double)c->n : 0;
    bool empty = true;
    for (size_t i = 0; i < c->n * c->ns; i++) {
        max = (double)c->v[i] > max ? (double)c->v[i] : max;
        empty = empty && c->v[i] == 0;
    }
    axis ax = count_axis(max);
    fprintf(f, "<figure>\n<figcaption>%s</figcaption>\n", c->caption);
    svg_open(f, c->id, 300, c->aria);
    if (c->ns > 1)
        legend(f, x0, 20, c->names, c->colors, c->ns);
    ygrid(f, x0, x1, ybase, ph, ax);
    empty_note(f, empty, ybase - ph / 2);
    for (size_t g = 0; g < c->n; g++) {
        double bw = gw * 0.8 / (double)c->ns, x = x0 + gw * (double)g + gw * 0.1;
        for (size_t s = 0; s < c->ns; s++) {
            int64_t v = c->v[g * c->ns + s];
            double h = ph * (double)v / ax.top;
            bar(f, c->series[s], c->keys[g], v, x + bw * (double)s, ybase - h, bw, h, c->colors[s]);
            if (v > 0 && c->ns == 1) {
                char t[32];
                snprintf(t, sizeof t, "%lld", (long long)v);
                text(f, x + bw / 2, ybase - h - 4, "middle", t);
            }
        }
        if (c->labels[g] != NULL)
            text(f, x0 + gw * ((double)g + 0.5), ybase + 16, "middle", c->labels[g]);
    }
    fprintf(f, "<line class=\"axis\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", x0,
            ybase, x1, ybase);
    fputs("</svg>\n", f);
}

static void chart_resolve(FILE *f, const json_t *m)
{
    static const char *const series[] = {"count"}, *const names[] = {"findings"},
                             *const colors[] = {"#1565c0"};
    const json_t *list = json_object_get(json_object_get(m, "charts"), "days_to_resolve"), *b;
    size_t n = json_array_size(list), i;
    char(*keys)[32] = calloc(n ? n : 1, sizeof *keys);
    const char **kp = calloc(n ? n : 1, sizeof *kp);
    int64_t *v = calloc(n ? n : 1, sizeof *v);
    if (keys == NULL || kp == NULL || v == NULL)
        goto done;
    json_array_foreach(list, i, b)
    {
        if (json_is_integer(json_object_get(b, "to")))
            snprintf(keys[i], sizeof keys[i], "%lld-%lld", (long long)integer(b, "from"),
                     (long long)integer(b, "to"));
        else
            snprintf(keys[i], sizeof keys[i], "%lld+", (long long)integer(b, "from"));
        kp[i] = keys[i];
        v[i] = integer(b, "count");
    }
    vchart c = {"chart-resolve",
                "Days to resolve a finding (report received to resolved)",
                "Days to resolve: histogram",
                n,
                1,
                series,
                names,
                colors,
                kp,
                kp,
                v};
    chart_vertical(f, &c);
    fputs("<p class=\"note\">The findings resolved in the period, by days from the report "
          "received to the review that closed the last open recommendation. Median: ",
          f);
    figure_text(f, json_object_get(json_object_get(m, "totals"), "median_days_to_resolve"));
    fputs(" days; per agency in the table below.</p>\n</figure>\n", f);
done:
    free(keys);
    free(kp);
    free(v);
}

static void week_label(const char *week, const char *prev, char *out, size_t cap)
{
    static const char *const mon[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    int y = 0, mo = 0, d = 0;
    if (sscanf(week, "%4d-%2d-%2d", &y, &mo, &d) != 3 || mo < 1 || mo > 12) {
        snprintf(out, cap, "%s", week);
        return;
    }
    if (prev == NULL || strncmp(prev, week, 4) != 0)
        snprintf(out, cap, "%d %s %d", d, mon[mo - 1], y);
    else
        snprintf(out, cap, "%d %s", d, mon[mo - 1]);
}

static void chart_visits(FILE *f, const json_t *m)
{
    static const char *const series[] = {"scheduled", "completed"},
                             *const names[] = {"scheduled", "completed"},
                             *const colors[] = {"#90caf9", "#0d47a1"};
    const json_t *list = json_object_get(json_object_get(m, "charts"), "visits_per_week"), *w;
    size_t n = json_array_size(list), i, step = n / 12 + 1;
    char(*labels)[32] = calloc(n ? n : 1, sizeof *labels);
    const char **kp = calloc(n ? n : 1, sizeof *kp), **lp = calloc(n ? n : 1, sizeof *lp);
    int64_t *v = calloc(2 * (n ? n : 1), sizeof *v);
    const char *prev = NULL;
    if (labels == NULL || kp == NULL || lp == NULL || v == NULL)
        goto done;
    json_array_foreach(list, i, w)
    {
        kp[i] = str(w, "week");
        v[2 * i] = integer(w, "scheduled");
        v[2 * i + 1] = integer(w, "completed");
        if (i % step == 0) {
            week_label(kp[i], prev, labels[i], sizeof labels[i]);
            lp[i] = labels[i];
            prev = kp[i];
        }
    }
    vchart c = {"chart-visits",
                "Visits per week",
                "Visits per week: scheduled and completed",
                n,
                2,
                series,
                names,
                colors,
                kp,
                lp,
                v};
    chart_vertical(f, &c);
    fputs("<p class=\"note\">Weeks start on Monday; a visit counts in the week of its date "
          "(scheduled) or of its completion date (completed).</p>\n</figure>\n",
          f);
done:
    free(labels);
    free(kp);
    free(lp);
    free(v);
}

/* Innovations by stage: one horizontal bar per stage. */
static void chart_innovations(FILE *f, const json_t *m)
{
    const json_t *list = json_object_get(json_object_get(m, "charts"), "innovations_by_stage"), *s;
    size_t n = json_array_size(list), i;
    double max = 0;
    bool empty = true;
    json_array_foreach(list, i, s)
    {
        double v = (double)integer(s, "count");
        max = v > max ? v : max;
        empty = empty && v == 0;
    }
    axis ax = count_axis(max);
    double top = 20, bottom = top + (double)(n ? n : 1) * ROW_H;
    fputs("<figure>\n<figcaption>Innovations by stage</figcaption>\n", f);
    svg_open(f, "chart-innovations", (int)bottom + 30, "Innovations by stage: bars");
    xgrid(f, LABEL_W, top, bottom, ax);
    empty_note(f, empty, top + 15);
    json_array_foreach(list, i, s)
    {
        double y = top + (double)i * ROW_H, w = PLOT_W * (double)integer(s, "count") / ax.top;
        char t[32];
        text(f, LABEL_W - 8, y + 15, "end", str(s, "stage"));
        bar(f, "count", str(s, "stage"), integer(s, "count"), LABEL_W, y + 4, w, ROW_H - 8,
            "#6a1b9a");
        snprintf(t, sizeof t, "%lld", (long long)integer(s, "count"));
        text(f, LABEL_W + w + 4, y + 15, "start", t);
    }
    fputs("</svg>\n<p class=\"note\">Innovations submitted on or before the as-of day, by the "
          "stage they had reached on it: the stage submitted with (initiative, trial, applied), "
          "then the competition's (admin_passed, shortlisted, finalist, rejected), or "
          "awarded.</p>\n</figure>\n",
          f);
}

/* ---- tables ---- */

static void no_visit(FILE *f, const json_t *m)
{
    const json_t *list = json_object_get(m, "agencies_without_visit"), *a;
    size_t i;
    fprintf(f,
            "<h2>Agencies with no visit in the period: <span id=\"no-visit-count\">%zu</span>"
            "</h2>\n<ul id=\"no-visit\">\n",
            json_array_size(list));
    json_array_foreach(list, i, a)
    {
        fputs("<li data-agency=\"", f);
        esc(f, json_string_value(a));
        fputs("\">", f);
        esc(f, json_string_value(a));
        fputs("</li>\n", f);
    }
    fputs("</ul>\n", f);
}

static void overdue(FILE *f, const json_t *m)
{
    const json_t *list = json_object_get(m, "findings_overdue"), *o, *r;
    size_t i, j;
    fprintf(f, "<h2>Findings past due: <span id=\"overdue-count\">%zu</span></h2>\n",
            json_array_size(list));
    fputs("<table>\n<thead><tr><th>Finding</th><th>Auditee</th><th>Auditor</th><th>Due</th>"
          "<th>Days overdue</th><th>Open recommendations</th><th>Notified</th></tr></thead>\n"
          "<tbody id=\"overdue\">\n",
          f);
    json_array_foreach(list, i, o)
    {
        fputs("<tr data-finding=\"", f);
        esc(f, str(o, "finding_id"));
        fputs("\"><td>", f);
        esc(f, str(o, "finding_id"));
        fputs("</td><td>", f);
        esc(f, str(o, "auditee"));
        fputs("</td><td>", f);
        esc(f, str(o, "auditor"));
        fputs("</td><td>", f);
        esc(f, str(o, "due"));
        fprintf(f, "</td><td class=\"n late\" data-value=\"%lld\">%lld</td><td>",
                (long long)integer(o, "days_overdue"), (long long)integer(o, "days_overdue"));
        json_array_foreach(json_object_get(o, "open_recs"), j, r)
        {
            if (j)
                fputs(", ", f);
            esc(f, json_string_value(r));
        }
        fprintf(f, "</td><td>%s</td></tr>\n",
                json_is_true(json_object_get(o, "notified")) ? "yes" : "not yet");
    }
    fputs("</tbody>\n</table>\n", f);
}

static void figure_row(FILE *f, const json_t *o, const char *agency, const char *attrs)
{
    size_t n;
    const report_column *cols = report_columns(&n);
    fprintf(f, "<tr %s data-agency=\"", attrs);
    esc(f, agency);
    fputs("\"><th>", f);
    esc(f, agency[0] ? agency : "TOTAL");
    fputs("</th>", f);
    for (size_t c = 0; c < n; c++) {
        json_t *v = json_object_get(o, cols[c].key);
        fprintf(f, "<td class=\"n\" data-figure=\"%s\" data-value=\"", cols[c].key);
        json_text(f, v);
        fputs("\">", f);
        figure_text(f, v);
        fputs("</td>", f);
    }
    static const char *const extra[] = {"attendance_present", "attendance_total"};
    for (size_t c = 0; c < 2; c++) {
        json_t *v = json_object_get(o, extra[c]);
        fprintf(f, "<td class=\"n\" data-figure=\"%s\" data-value=\"", extra[c]);
        json_text(f, v);
        fputs("\">", f);
        figure_text(f, v);
        fputs("</td>", f);
    }
    fputs("</tr>\n", f);
}

static void per_agency(FILE *f, const json_t *m)
{
    const json_t *list = json_object_get(m, "agencies"), *a;
    size_t n, i;
    const report_column *cols = report_columns(&n);
    fprintf(f, "<h2>Per agency: %zu</h2>\n<table>\n<thead><tr><th>Agency</th>",
            json_array_size(list));
    for (size_t c = 0; c < n; c++)
        fprintf(f, "<th>%s</th>", cols[c].title);
    fputs("<th>Staff present</th><th>Staff total</th></tr></thead>\n<tbody id=\"agencies\">\n", f);
    json_array_foreach(list, i, a)
    {
        figure_row(f, a, str(a, "agency"), "class=\"agency\"");
    }
    fputs("</tbody>\n<tfoot>\n", f);
    figure_row(f, json_object_get(m, "totals"), "", "id=\"totals\"");
    fputs("</tfoot>\n</table>\n<p class=\"note\">Visits by visit date in the period. Findings "
          "raised (report received) and resolved in the period; open and overdue on the as-of "
          "day. Innovations submitted, advanced and awarded in the period. Attendance: staff "
          "present of the total in the agencies' attendance reports of the period.</p>\n",
          f);
}

int audit_html_write(FILE *f, const json_t *m, kabar_error *err)
{
    header(f, m);
    cards(f, m);
    fputs("<h2>Charts</h2>\n", f);
    chart_findings(f, m);
    chart_resolve(f, m);
    chart_visits(f, m);
    chart_innovations(f, m);
    no_visit(f, m);
    overdue(f, m);
    per_agency(f, m);
    fputs("</body>\n</html>\n", f);
    if (fflush(f) != 0 || ferror(f))
        return kabar_error_set(err, KABAR_IO, "cannot write the HTML report: %s", strerror(errno));
    return 0;
}
