/*
 * report.c - the oversight report (contract in report.h; figures defined
 * in docs/OVERSIGHT.md).
 *
 * Building walks each kind of record once and adds it to its agency's
 * tally; agencies come from the state's agency set (sorted), looked up by
 * binary search. Rendering reads only the JSON model.
 */
#include "report.h"

#include <stdlib.h>
#include <string.h>

#include "oapply.h"
#include "odate.h"
#include "overdue.h"

typedef struct days_list {
    int64_t *v;
    size_t n, cap;
} days_list;

typedef struct tally {
    char agency[KABAR_MAX_AGENCY_LEN + 1];
    bool visited;
    int64_t vis_sched, vis_done;
    int64_t f_raised, f_open, f_resolved, f_overdue;
    days_list days;
    int64_t inv_sub, inv_adv, inv_award;
    int64_t present, total;
} tally;

typedef struct stage_count {
    char stage[40];
    int64_t n;
} stage_count;

typedef struct build_ctx {
    const report_opts *o;
    int32_t last; /* L */
    tally *ag;
    size_t nag, capag;
    json_t *overdue;
    bool oom;
    /* charts only */
    days_list vis_sched, vis_done; /* the days of the visits counted */
    stage_count *stages;
    size_t nstages, capstages;
} build_ctx;

/* The stages in pipeline order: the chart's bars come in this order, any other after them. */
static const char *const known_stages[] = {"initiative", "trial",        "applied",
                                           "submitted",  "admin_passed", "shortlisted",
                                           "finalist",   "awarded",      "rejected"};
#define NKNOWN_STAGES (sizeof known_stages / sizeof known_stages[0])

int64_t report_median2(int64_t *v, size_t n)
{
    if (n == 0)
        return -1;
    for (size_t i = 1; i < n; i++) { /* insertion sort: a few hundred values at most per call */
        int64_t x = v[i];
        size_t j = i;
        for (; j > 0 && v[j - 1] > x; j--)
            v[j] = v[j - 1];
        v[j] = x;
    }
    return n % 2 ? 2 * v[n / 2] : v[n / 2 - 1] + v[n / 2];
}

int64_t report_rate_tenths(int64_t present, int64_t total)
{
    if (total <= 0)
        return -1;
    return (present * 2000 + total) / (2 * total);
}

static bool in_period(const report_opts *o, int32_t day)
{
    return day != ODATE_NONE && (o->since == ODATE_NONE || day >= o->since) &&
           (o->until == ODATE_NONE || day < o->until);
}

static int32_t date_of(const json_t *o, const char *key)
{
    const char *s = ojson_str(o, key);
    int32_t d;
    return s != NULL && odate_parse(s, strlen(s), &d) ? d : ODATE_NONE;
}

static int32_t day_of_ns(const json_t *o, const char *key, int tz_s)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? odate_of_instant((int64_t)json_integer_value(v), tz_s) : ODATE_NONE;
}

static int32_t day_at(const build_ctx *c, const json_t *o, const char *key)
{
    return day_of_ns(o, key, c->o->tz_s);
}

static int cmp_tally(const void *a, const void *b)
{
    return strcmp(((const tally *)a)->agency, ((const tally *)b)->agency);
}

static tally *find(build_ctx *c, const char *agency)
{
    tally key;
    if (agency == NULL || strlen(agency) > KABAR_MAX_AGENCY_LEN)
        return NULL;
    snprintf(key.agency, sizeof key.agency, "%s", agency);
    return bsearch(&key, c->ag, c->nag, sizeof *c->ag, cmp_tally);
}

static int add_agency(void *arg, const char *key, size_t klen, json_t *v)
{
    build_ctx *c = arg;
    const char *only = c->o->agency;
    if (klen > KABAR_MAX_AGENCY_LEN)
        return 0;
    if (only != NULL && (strlen(only) != klen || memcmp(only, key, klen) != 0))
        return 0;
    if (c->nag == c->capag) {
        size_t cap = c->capag ? c->capag * 2 : 64;
        tally *n = realloc(c->ag, cap * sizeof *n);
        if (n == NULL)
            return KABAR_NO_MEMORY;
        c->ag = n;
        c->capag = cap;
    }
    tally *t = &c->ag[c->nag++];
    memset(t, 0, sizeof *t);
    memcpy(t->agency, key, klen);
    return 0;
}

static int push_day(days_list *d, int64_t v)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        int64_t *n = realloc(d->v, cap * sizeof *n);
        if (n == NULL)
            return KABAR_NO_MEMORY;
        d->v = n;
        d->cap = cap;
    }
    d->v[d->n++] = v;
    return 0;
}

static int on_visit(void *arg, const char *key, size_t klen, json_t *v)
{
    build_ctx *c = arg;
    tally *t = find(c, ojson_str(v, "host"));
    if (t == NULL)
        return 0;
    int32_t d = date_of(v, "date"), done = date_of(v, "completed_date");
    if (ojson_int(v, "scheduled_seq", 0) > 0 && in_period(c->o, d)) {
        t->vis_sched++;
        t->visited = true;
        if (c->o->charts && push_day(&c->vis_sched, d) != 0)
            return KABAR_NO_MEMORY;
    }
    if (ojson_int(v, "completed_seq", 0) > 0 && in_period(c->o, done)) {
        t->vis_done++;
        t->visited = true;
        if (c->o->charts && push_day(&c->vis_done, done) != 0)
            return KABAR_NO_MEMORY;
    }
    return 0;
}

static void overdue_entry(build_ctx *c, const char *fid, size_t flen, const json_t *f, int64_t days)
{
    json_t *o = json_object();
    json_object_set_new(o, "finding_id", json_stringn(fid, flen));
    json_object_set_new(o, "auditee", json_string(ojson_str(f, "auditee")));
    json_object_set_new(o, "auditor", json_string(ojson_str(f, "auditor")));
    json_object_set_new(o, "due", json_string(ojson_str(f, "due")));
    json_object_set_new(o, "days_overdue", json_integer((json_int_t)days));
    json_object_set_new(o, "open_recs", ofinding_open_recs(f));
    json_object_set_new(o, "notified", json_boolean(ojson_int(f, "overdue_seq", 0) > 0));
    json_array_append_new(c->overdue, o);
}

static int on_finding(void *arg, const char *key, size_t klen, json_t *f)
{
    build_ctx *c = arg;
    tally *t = find(c, ojson_str(f, "auditee"));
    int32_t rr = date_of(f, "report_received");
    if (t == NULL || !ofinding_raised(f) || rr == ODATE_NONE)
        return 0;
    int64_t res_at = ofinding_resolved_at(f);
    int32_t res = res_at == INT64_MIN ? ODATE_NONE : odate_of_instant(res_at, c->o->tz_s);
    int64_t days;
    if (in_period(c->o, rr))
        t->f_raised++;
    if (res != ODATE_NONE && in_period(c->o, res)) {
        t->f_resolved++;
        if (push_day(&t->days, res > rr ? (int64_t)res - rr : 0) != 0)
            return KABAR_NO_MEMORY;
    }
    if (rr <= c->last && (res == ODATE_NONE || res > c->last)) {
        t->f_open++;
        if (overdue_on(f, c->last, c->o->tz_s, false, &days)) {
            t->f_overdue++;
            overdue_entry(c, key, klen, f, days);
        }
    }
    return 0;
}

/* Is some entry of list `name` dated in the period (and not of stage "rejected")? */
static bool any_step(build_ctx *c, const json_t *inv, const char *name)
{
    json_t *e;
    size_t i;
    json_array_foreach(json_object_get(inv, name), i, e)
    {
        const char *stage = ojson_str(e, "stage");
        if (stage != NULL && strcmp(stage, "rejected") == 0)
            continue;
        if (in_period(c->o, day_at(c, e, "at")))
            return true;
    }
    return false;
}

const char *report_innovation_stage(const json_t *inv, int32_t last, int tz_s)
{
    const char *stage = NULL;
    int64_t latest = 0;
    json_t *e;
    size_t i;
    int32_t sub = day_of_ns(inv, "submitted_at", tz_s);
    if (ojson_int(inv, "submitted_seq", 0) == 0 || sub == ODATE_NONE || sub > last)
        return NULL;
    json_array_foreach(json_object_get(inv, "awards"), i, e)
    {
        int32_t d = day_of_ns(e, "at", tz_s);
        if (d != ODATE_NONE && d <= last)
            return "awarded";
    }
    json_array_foreach(json_object_get(inv, "advanced"), i, e)
    {
        int32_t d = day_of_ns(e, "at", tz_s);
        int64_t seq = ojson_int(e, "seq", 0);
        if (d != ODATE_NONE && d <= last && seq > latest && ojson_str(e, "stage") != NULL) {
            latest = seq;
            stage = ojson_str(e, "stage");
        }
    }
    if (stage == NULL)
        stage = ojson_str(inv, "stage");
    return stage != NULL ? stage : "submitted";
}

/* Count one innovation at `stage` (NULL: not counted). */
static int stage_add(build_ctx *c, const char *stage)
{
    if (stage == NULL)
        return 0;
    for (size_t i = 0; i < c->nstages; i++)
        if (strcmp(c->stages[i].stage, stage) == 0) {
            c->stages[i].n++;
            return 0;
        }
    if (c->nstages == c->capstages) {
        size_t cap = c->capstages ? c->capstages * 2 : 16;
        stage_count *n = realloc(c->stages, cap * sizeof *n);
        if (n == NULL)
            return KABAR_NO_MEMORY;
        c->stages = n;
        c->capstages = cap;
    }
    stage_count *sc = &c->stages[c->nstages++];
    snprintf(sc->stage, sizeof sc->stage, "%s", stage);
    sc->n = 1;
    return 0;
}

static int on_innovation(void *arg, const char *key, size_t klen, json_t *v)
{
    build_ctx *c = arg;
    tally *t = find(c, ojson_str(v, "owner"));
    if (t == NULL || ojson_int(v, "submitted_seq", 0) == 0)
        return 0;
    if (in_period(c->o, day_at(c, v, "submitted_at")))
        t->inv_sub++;
    if (any_step(c, v, "advanced"))
        t->inv_adv++;
    if (any_step(c, v, "awards"))
        t->inv_award++;
    if (c->o->charts)
        return stage_add(c, report_innovation_stage(v, c->last, c->o->tz_s));
    return 0;
}

static int on_attendance(void *arg, const char *key, size_t klen, json_t *v)
{
    build_ctx *c = arg;
    tally *t = find(c, ojson_str(v, "agency"));
    if (t == NULL || !in_period(c->o, date_of(v, "date")))
        return 0;
    t->present += ojson_int(v, "present", 0);
    t->total += ojson_int(v, "total", 0);
    return 0;
}

static json_t *half_number(int64_t twice)
{
    if (twice < 0)
        return json_null();
    return twice % 2 ? json_real((double)twice / 2.0) : json_integer((json_int_t)(twice / 2));
}

/* The figures of one tally (or the totals) into o. */
static void figures(json_t *o, const tally *t)
{
    json_object_set_new(o, "visits_scheduled", json_integer(t->vis_sched));
    json_object_set_new(o, "visits_completed", json_integer(t->vis_done));
    json_object_set_new(o, "findings_raised", json_integer(t->f_raised));
    json_object_set_new(o, "findings_open", json_integer(t->f_open));
    json_object_set_new(o, "findings_resolved", json_integer(t->f_resolved));
    json_object_set_new(o, "findings_overdue", json_integer(t->f_overdue));
    json_object_set_new(o, "median_days_to_resolve",
                        half_number(report_median2(t->days.v, t->days.n)));
    json_object_set_new(o, "innovations_submitted", json_integer(t->inv_sub));
    json_object_set_new(o, "innovations_advanced", json_integer(t->inv_adv));
    json_object_set_new(o, "innovations_awarded", json_integer(t->inv_award));
    json_object_set_new(o, "attendance_present", json_integer(t->present));
    json_object_set_new(o, "attendance_total", json_integer(t->total));
    int64_t r = report_rate_tenths(t->present, t->total);
    json_object_set_new(o, "attendance_rate", r < 0 ? json_null() : json_real((double)r / 10.0));
}

static int sum_into(tally *sum, const tally *t)
{
    sum->vis_sched += t->vis_sched;
    sum->vis_done += t->vis_done;
    sum->f_raised += t->f_raised;
    sum->f_open += t->f_open;
    sum->f_resolved += t->f_resolved;
    sum->f_overdue += t->f_overdue;
    sum->inv_sub += t->inv_sub;
    sum->inv_adv += t->inv_adv;
    sum->inv_award += t->inv_award;
    sum->present += t->present;
    sum->total += t->total;
    for (size_t i = 0; i < t->days.n; i++)
        if (push_day(&sum->days, t->days.v[i]) != 0)
            return KABAR_NO_MEMORY;
    return 0;
}

static int cmp_overdue(const void *a, const void *b)
{
    json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
    int64_t dx = ojson_int(x, "days_overdue", 0), dy = ojson_int(y, "days_overdue", 0);
    if (dx != dy)
        return dx > dy ? -1 : 1;
    return strcmp(ojson_str(x, "finding_id"), ojson_str(y, "finding_id"));
}

static json_t *sorted_overdue(json_t *list)
{
    size_t n = json_array_size(list);
    json_t **v = calloc(n ? n : 1, sizeof *v), *out = json_array();
    for (size_t i = 0; v != NULL && i < n; i++)
        v[i] = json_array_get(list, i);
    if (v != NULL)
        qsort(v, n, sizeof *v, cmp_overdue);
    for (size_t i = 0; v != NULL && i < n; i++)
        json_array_append(out, v[i]);
    free(v);
    return out;
}

static json_t *day_or_null(int32_t d)
{
    char s[ODATE_MAX];
    if (d == ODATE_NONE)
        return json_null();
    odate_format(d, s);
    return json_string(s);
}

/* ---- charts ---- */

/* The Monday of the week of day d (day 0, 1970-01-01, was a Thursday). */
static int32_t week_of(int32_t d)
{
    return d - ((d % 7 + 7 + 3) % 7);
}

static int cmp_day(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/*
 * The weeks the chart shows, ascending (see report.h): every week of the
 * period when it is bounded and short, else of the visits' span, else only
 * the weeks with a visit.
 */
static int chart_weeks(const build_ctx *c, days_list *weeks)
{
    const report_opts *o = c->o;
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    const days_list *lists[] = {&c->vis_sched, &c->vis_done};
    for (size_t l = 0; l < 2; l++)
        for (size_t i = 0; i < lists[l]->n; i++) {
            int64_t w = week_of((int32_t)lists[l]->v[i]);
            lo = w < lo ? w : lo;
            hi = w > hi ? w : hi;
        }
    bool any = lo <= hi;
    int64_t plo = o->since != ODATE_NONE ? week_of(o->since) : lo;
    int64_t phi = o->until != ODATE_NONE ? week_of(o->until - 1) : hi;
    if ((o->since != ODATE_NONE && o->until != ODATE_NONE) || any) {
        if (plo <= phi && (phi - plo) / 7 + 1 <= REPORT_MAX_WEEKS) {
            lo = plo;
            hi = phi;
        }
    }
    if (lo > hi)
        return 0;
    if ((hi - lo) / 7 + 1 <= REPORT_MAX_WEEKS) {
        for (int64_t w = lo; w <= hi; w += 7)
            if (push_day(weeks, w) != 0)
                return KABAR_NO_MEMORY;
        return 0;
    }
    for (size_t l = 0; l < 2; l++) /* sparse: the weeks with a visit */
        for (size_t i = 0; i < lists[l]->n; i++)
            if (push_day(weeks, week_of((int32_t)lists[l]->v[i])) != 0)
                return KABAR_NO_MEMORY;
    qsort(weeks->v, weeks->n, sizeof *weeks->v, cmp_day);
    size_t u = 0;
    for (size_t i = 0; i < weeks->n; i++)
        if (u == 0 || weeks->v[u - 1] != weeks->v[i])
            weeks->v[u++] = weeks->v[i];
    weeks->n = u;
    return 0;
}

static json_t *visits_per_week(const build_ctx *c)
{
    days_list weeks = {0};
    json_t *out = json_array();
    if (chart_weeks(c, &weeks) != 0) {
        free(weeks.v);
        json_decref(out);
        return NULL;
    }
    int64_t *n = calloc(2 * (weeks.n ? weeks.n : 1), sizeof *n);
    const days_list *lists[] = {&c->vis_sched, &c->vis_done};
    for (size_t l = 0; n != NULL && weeks.n > 0 && l < 2; l++)
        for (size_t i = 0; i < lists[l]->n; i++) {
            int64_t w = week_of((int32_t)lists[l]->v[i]);
            int64_t *at = bsearch(&w, weeks.v, weeks.n, sizeof w, cmp_day);
            if (at != NULL)
                n[2 * (size_t)(at - weeks.v) + l]++;
        }
    for (size_t i = 0; n != NULL && i < weeks.n; i++) {
        json_t *e = json_object();
        char day[ODATE_MAX];
        odate_format((int32_t)weeks.v[i], day);
        json_object_set_new(e, "week", json_string(day));
        json_object_set_new(e, "scheduled", json_integer((json_int_t)n[2 * i]));
        json_object_set_new(e, "completed", json_integer((json_int_t)n[2 * i + 1]));
        json_array_append_new(out, e);
    }
    if (n == NULL) {
        json_decref(out);
        out = NULL;
    }
    free(n);
    free(weeks.v);
    return out;
}

/* Days to resolve: the buckets' lower bounds; the last has no upper bound. */
static const int64_t resolve_from[] = {0, 8, 15, 31, 61, 91, 181};
#define NRESOLVE (sizeof resolve_from / sizeof resolve_from[0])

static json_t *days_to_resolve(const days_list *days)
{
    json_t *out = json_array();
    for (size_t b = 0; b < NRESOLVE; b++) {
        bool last = b + 1 == NRESOLVE;
        int64_t n = 0;
        for (size_t i = 0; i < days->n; i++)
            if (days->v[i] >= resolve_from[b] && (last || days->v[i] < resolve_from[b + 1]))
                n++;
        json_t *e = json_object();
        json_object_set_new(e, "from", json_integer((json_int_t)resolve_from[b]));
        json_object_set_new(e, "to",
                            last ? json_null() : json_integer((json_int_t)resolve_from[b + 1] - 1));
        json_object_set_new(e, "count", json_integer((json_int_t)n));
        json_array_append_new(out, e);
    }
    return out;
}

static void stage_entry(json_t *out, const char *stage, int64_t n)
{
    json_t *e = json_object();
    json_object_set_new(e, "stage", json_string(stage));
    json_object_set_new(e, "count", json_integer((json_int_t)n));
    json_array_append_new(out, e);
}

static int cmp_stage(const void *a, const void *b)
{
    return strcmp(((const stage_count *)a)->stage, ((const stage_count *)b)->stage);
}

/* Every known stage (0 when none), then the others by name. */
static json_t *innovations_by_stage(build_ctx *c)
{
    json_t *out = json_array();
    bool *used = calloc(c->nstages ? c->nstages : 1, sizeof *used);
    if (used == NULL) {
        json_decref(out);
        return NULL;
    }
    for (size_t k = 0; k < NKNOWN_STAGES; k++) {
        int64_t n = 0;
        for (size_t i = 0; i < c->nstages; i++)
            if (strcmp(c->stages[i].stage, known_stages[k]) == 0) {
                n = c->stages[i].n;
                used[i] = true;
            }
        stage_entry(out, known_stages[k], n);
    }
    size_t u = 0; /* the unknown ones, moved to the front and sorted */
    for (size_t i = 0; i < c->nstages; i++)
        if (!used[i])
            c->stages[u++] = c->stages[i];
    if (u > 1)
        qsort(c->stages, u, sizeof *c->stages, cmp_stage);
    for (size_t i = 0; i < u; i++)
        stage_entry(out, c->stages[i].stage, c->stages[i].n);
    free(used);
    return out;
}

static json_t *charts(build_ctx *c, const tally *sum)
{
    json_t *ch = json_object(), *w = visits_per_week(c), *s = innovations_by_stage(c);
    if (w == NULL || s == NULL) {
        json_decref(w);
        json_decref(s);
        json_decref(ch);
        c->oom = true;
        return json_object();
    }
    json_object_set_new(ch, "days_to_resolve", days_to_resolve(&sum->days));
    json_object_set_new(ch, "visits_per_week", w);
    json_object_set_new(ch, "innovations_by_stage", s);
    return ch;
}

static json_t *model(build_ctx *c, uint64_t position)
{
    char tz[ODATE_TZ_MAX];
    odate_tz_format(c->o->tz_s, tz);
    json_t *m = json_object(), *none = json_array(), *ags = json_array();
    json_object_set_new(m, "as_of", day_or_null(c->last));
    json_object_set_new(m, "zone", json_string(tz));
    json_object_set_new(m, "since", day_or_null(c->o->since));
    json_object_set_new(m, "until", day_or_null(c->o->until));
    json_object_set_new(m, "position", json_integer((json_int_t)position));
    if (c->o->agency != NULL)
        json_object_set_new(m, "agency", json_string(c->o->agency));
    tally sum = {0};
    for (size_t i = 0; i < c->nag; i++) {
        tally *t = &c->ag[i];
        if (!t->visited)
            json_array_append_new(none, json_string(t->agency));
        json_t *a = json_object();
        json_object_set_new(a, "agency", json_string(t->agency));
        figures(a, t);
        json_array_append_new(ags, a);
        if (sum_into(&sum, t) != 0)
            c->oom = true;
    }
    json_object_set_new(m, "agencies_without_visit", none);
    json_object_set_new(m, "findings_overdue", sorted_overdue(c->overdue));
    json_object_set_new(m, "agencies", ags);
    json_t *tot = json_object();
    figures(tot, &sum);
    json_object_set_new(m, "totals", tot);
    if (c->o->charts)
        json_object_set_new(m, "charts", charts(c, &sum));
    free(sum.days.v);
    return m;
}

static int parse_day(const char *opt, const char *s, int32_t *day, kabar_error *err)
{
    *day = ODATE_NONE;
    if (s != NULL && !odate_parse(s, strlen(s), day))
        return kabar_error_set(err, KABAR_BAD_VALUE, "%s: \"%s\" is not a date (YYYY-MM-DD)", opt,
                               s);
    return 0;
}

int report_opts_parse(report_opts *r, const char *since, const char *until, const char *now,
                      const char *tz, kabar_error *err)
{
    kabar_error e = {0};
    int64_t ns = kabar_now();
    r->tz_s = ODATE_WIB;
    if (tz != NULL && !odate_tz_parse(tz, &r->tz_s))
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "--tz: \"%s\" is not a zone (+07:00, WIB, WITA, WIT)", tz);
    if (now != NULL && odate_parse_time(now, r->tz_s, &ns, &e) != 0)
        return kabar_error_set(err, KABAR_BAD_VALUE, "--now: %s", e.message);
    r->today = odate_of_instant(ns, r->tz_s);
    int rc = parse_day("--since", since, &r->since, err);
    if (rc == 0)
        rc = parse_day("--until", until, &r->until, err);
    if (rc == 0 && r->since != ODATE_NONE && r->until != ODATE_NONE && r->until < r->since)
        rc = kabar_error_set(err, KABAR_BAD_VALUE, "--until %s is before --since %s", until, since);
    return rc;
}

int report_build(ostate_txn *t, const report_opts *o, json_t **out, kabar_error *err)
{
    if (o->agency != NULL && (o->agency[0] == '\0' || strlen(o->agency) > KABAR_MAX_AGENCY_LEN))
        return kabar_error_set(err, KABAR_BAD_VALUE, "\"%s\" is not an agency id (1 to %d bytes)",
                               o->agency, KABAR_MAX_AGENCY_LEN);
    build_ctx c = {.o = o, .last = o->today, .overdue = json_array()};
    if (o->until != ODATE_NONE && o->until - 1 < c.last)
        c.last = o->until - 1;
    int rc = ostate_each(t, OSTATE_AGENCIES, add_agency, &c, err);
    if (rc == 0 && o->agency != NULL && c.nag == 0) /* never named in the log: all zero */
        rc = add_agency(&c, o->agency, strlen(o->agency), NULL);
    if (rc == 0)
        rc = ostate_each(t, OSTATE_VISITS, on_visit, &c, err);
    if (rc == 0)
        rc = ostate_each(t, OSTATE_FINDINGS, on_finding, &c, err);
    if (rc == 0)
        rc = ostate_each(t, OSTATE_INNOVATIONS, on_innovation, &c, err);
    if (rc == 0)
        rc = ostate_each(t, OSTATE_ATTENDANCE, on_attendance, &c, err);
    json_t *m = rc == 0 ? model(&c, ostate_position(t)) : NULL;
    for (size_t i = 0; i < c.nag; i++)
        free(c.ag[i].days.v);
    free(c.ag);
    free(c.vis_sched.v);
    free(c.vis_done.v);
    free(c.stages);
    json_decref(c.overdue);
    if (rc == KABAR_NO_MEMORY || c.oom || (rc == 0 && m == NULL)) {
        json_decref(m);
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory building the report");
    }
    if (rc != 0)
        return rc;
    *out = m;
    return 0;
}
