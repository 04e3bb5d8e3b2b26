/*
 * report_fmt.c - rendering the report model as text, CSV or JSON
 * (contract in report.h). Reads only the model.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "oapply.h"
#include "report.h"

/* The per-agency columns: model key, text header, title (report.h). */
static const report_column columns[] = {
    {"visits_scheduled", "VIS-SCHED", "Visits scheduled"},
    {"visits_completed", "VIS-DONE", "Visits completed"},
    {"findings_raised", "FND-RAISED", "Findings raised"},
    {"findings_open", "FND-OPEN", "Findings open"},
    {"findings_resolved", "FND-RESOLVED", "Findings resolved"},
    {"findings_overdue", "FND-OVERDUE", "Findings overdue"},
    {"median_days_to_resolve", "MEDIAN-DAYS", "Median days to resolve"},
    {"innovations_submitted", "INV-SUBM", "Innovations submitted"},
    {"innovations_advanced", "INV-ADV", "Innovations advanced"},
    {"innovations_awarded", "INV-AWARD", "Innovations awarded"},
    {"attendance_rate", "ATTEND-%", "Attendance %"},
};
#define NCOLS (sizeof columns / sizeof columns[0])

const report_column *report_columns(size_t *n)
{
    *n = NCOLS;
    return columns;
}

void report_num_text(const json_t *v, char *out, size_t cap, const char *none)
{
    if (json_is_integer(v))
        snprintf(out, cap, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        snprintf(out, cap, "%.1f", json_real_value(v));
    else
        snprintf(out, cap, "%s", none);
}

/* ---- a small aligned table ---- */

#define CELL_MAX 256

typedef struct table {
    size_t ncols, nrows, cap;
    char (*cells)[CELL_MAX];
    size_t width[16];
    bool left[16];
} table;

static char *cell(table *t, size_t row, size_t col)
{
    return t->cells[row * t->ncols + col];
}

static int table_row(table *t)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 32;
        void *n = realloc(t->cells, cap * t->ncols * CELL_MAX);
        if (n == NULL)
            return -1;
        t->cells = n;
        t->cap = cap;
    }
    memset(t->cells[t->nrows * t->ncols], 0, t->ncols * CELL_MAX);
    return (int)t->nrows++;
}

static void table_print(FILE *f, table *t)
{
    for (size_t c = 0; c < t->ncols; c++)
        for (size_t r = 0; r < t->nrows; r++) {
            size_t w = strlen(cell(t, r, c));
            if (w > t->width[c])
                t->width[c] = w;
        }
    for (size_t r = 0; r < t->nrows; r++) {
        fputs("  ", f);
        for (size_t c = 0; c < t->ncols; c++) {
            bool last = c + 1 == t->ncols;
            if (t->left[c] && last)
                fputs(cell(t, r, c), f);
            else if (t->left[c])
                fprintf(f, "%-*s", (int)t->width[c], cell(t, r, c));
            else
                fprintf(f, "%*s", (int)t->width[c], cell(t, r, c));
            if (!last)
                fputs("  ", f);
        }
        fputc('\n', f);
    }
    free(t->cells);
    t->cells = NULL;
}

/* ---- text ---- */

static void text_header(FILE *f, const json_t *m)
{
    const char *since = ojson_str(m, "since"), *until = ojson_str(m, "until");
    fprintf(f, "Oversight report\n");
    fprintf(f, "  as of      %s (zone %s)\n", ojson_str(m, "as_of"), ojson_str(m, "zone"));
    if (since == NULL && until == NULL)
        fprintf(f, "  period     all dates\n");
    else
        fprintf(f, "  period     %s to %s%s\n", since ? since : "the beginning",
                until ? "before " : "", until ? until : "now");
    fprintf(f, "  log        applied up to seq %lld\n\n", (long long)ojson_int(m, "position", 0));
}

static void text_no_visit(FILE *f, const json_t *m)
{
    json_t *list = json_object_get(m, "agencies_without_visit"), *a;
    size_t i;
    fprintf(f, "Agencies with no visit in the period: %zu\n", json_array_size(list));
    json_array_foreach(list, i, a) fprintf(f, "  %s\n", json_string_value(a));
    fputc('\n', f);
}

static int text_overdue(FILE *f, const json_t *m)
{
    json_t *list = json_object_get(m, "findings_overdue"), *o, *r;
    size_t i, j;
    fprintf(f, "Findings past due: %zu\n", json_array_size(list));
    if (json_array_size(list) == 0) {
        fputc('\n', f);
        return 0;
    }
    table t = {.ncols = 6, .left = {true, true, true, false, true, true}};
    static const char *const head[] = {"FINDING", "AUDITEE",   "DUE",
                                       "DAYS",    "OPEN RECS", "NOTIFIED"};
    int row = table_row(&t);
    for (size_t c = 0; row >= 0 && c < 6; c++)
        snprintf(cell(&t, (size_t)row, c), CELL_MAX, "%s", head[c]);
    json_array_foreach(list, i, o)
    {
        if ((row = table_row(&t)) < 0)
            break;
        snprintf(cell(&t, (size_t)row, 0), CELL_MAX, "%s", ojson_str(o, "finding_id"));
        snprintf(cell(&t, (size_t)row, 1), CELL_MAX, "%s", ojson_str(o, "auditee"));
        snprintf(cell(&t, (size_t)row, 2), CELL_MAX, "%s", ojson_str(o, "due"));
        report_num_text(json_object_get(o, "days_overdue"), cell(&t, (size_t)row, 3), CELL_MAX, "");
        char *recs = cell(&t, (size_t)row, 4);
        json_array_foreach(json_object_get(o, "open_recs"), j, r)
        {
            size_t n = strlen(recs);
            snprintf(recs + n, CELL_MAX - n, "%s%s", j ? "," : "", json_string_value(r));
        }
        snprintf(cell(&t, (size_t)row, 5), CELL_MAX, "%s",
                 json_is_true(json_object_get(o, "notified")) ? "yes" : "not yet");
    }
    if (row < 0) {
        free(t.cells);
        return -1;
    }
    table_print(f, &t);
    fputc('\n', f);
    return 0;
}

static void figure_cells(table *t, size_t row, const char *name, const json_t *o)
{
    snprintf(cell(t, row, 0), CELL_MAX, "%s", name);
    for (size_t c = 0; c < NCOLS; c++)
        report_num_text(json_object_get(o, columns[c].key), cell(t, row, c + 1), CELL_MAX, "-");
}

static int text_agencies(FILE *f, const json_t *m)
{
    json_t *list = json_object_get(m, "agencies"), *a;
    size_t i;
    table t = {.ncols = NCOLS + 1, .left = {true}};
    int row = table_row(&t);
    if (row < 0)
        return -1;
    snprintf(cell(&t, 0, 0), CELL_MAX, "AGENCY");
    for (size_t c = 0; c < NCOLS; c++)
        snprintf(cell(&t, 0, c + 1), CELL_MAX, "%s", columns[c].head);
    json_array_foreach(list, i, a)
    {
        if ((row = table_row(&t)) < 0)
            break;
        figure_cells(&t, (size_t)row, ojson_str(a, "agency"), a);
    }
    if (row >= 0 && (row = table_row(&t)) >= 0)
        figure_cells(&t, (size_t)row, "TOTAL", json_object_get(m, "totals"));
    if (row < 0) {
        free(t.cells);
        return -1;
    }
    fprintf(f, "Per agency: %zu\n", json_array_size(list));
    table_print(f, &t);
    fprintf(f, "\n  VIS: visits by visit date in the period. FND: findings raised (report\n"
               "  received) and resolved in the period, open and overdue on the as-of day;\n"
               "  MEDIAN-DAYS: report received -> resolved. INV: innovations submitted,\n"
               "  advanced, awarded in the period. ATTEND-%%: present / total staff.\n"
               "  Definitions: docs/OVERSIGHT.md.\n");
    return 0;
}

/* ---- CSV ---- */

static void csv_field(FILE *f, const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void write_csv(FILE *f, const json_t *m)
{
    json_t *a;
    size_t i;
    char v[64];
    fputs("agency", f);
    for (size_t c = 0; c < NCOLS; c++)
        fprintf(f, ",%s", columns[c].key);
    fputs(",attendance_present,attendance_total,visited\r\n", f);
    json_array_foreach(json_object_get(m, "agencies"), i, a)
    {
        const char *name = ojson_str(a, "agency");
        csv_field(f, name);
        for (size_t c = 0; c < NCOLS; c++) {
            report_num_text(json_object_get(a, columns[c].key), v, sizeof v, "");
            fprintf(f, ",%s", v);
        }
        bool visited = true;
        json_t *n;
        size_t j;
        json_array_foreach(json_object_get(m, "agencies_without_visit"), j, n)
        {
            if (strcmp(json_string_value(n), name) == 0)
                visited = false;
        }
        fprintf(f, ",%lld,%lld,%s\r\n", (long long)ojson_int(a, "attendance_present", 0),
                (long long)ojson_int(a, "attendance_total", 0), visited ? "yes" : "no");
    }
}

int report_write(FILE *f, const json_t *m, report_format fmt, kabar_error *err)
{
    int rc = 0;
    if (fmt == REPORT_JSON) {
        rc = json_dumpf(m, f, JSON_INDENT(2) | JSON_REAL_PRECISION(15)) != 0 ? -1 : 0;
        fputc('\n', f);
    } else if (fmt == REPORT_CSV) {
        write_csv(f, m);
    } else {
        text_header(f, m);
        text_no_visit(f, m);
        rc = text_overdue(f, m);
        if (rc == 0)
            rc = text_agencies(f, m);
    }
    if (rc != 0)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory writing the report");
    if (fflush(f) != 0 || ferror(f))
        return kabar_error_set(err, KABAR_IO, "cannot write the report: %s", strerror(errno));
    return 0;
}
