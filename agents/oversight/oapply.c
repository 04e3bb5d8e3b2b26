/*
 * oapply.c - events -> oversight state (contract in oapply.h).
 *
 * Each handler reads the body (as JSON, converted once from the event's
 * canonical bytes), loads the record it changes, edits it and stores it.
 * Handlers return 0, IGNORED (the event lacks what oversight needs; `note`
 * says what) or a store error.
 */
#include "oapply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IGNORED (-1)

typedef struct ev_ctx {
    ostate_txn *t;
    uint64_t seq;
    int64_t at; /* occurred_at, else received_at */
    json_t *body;
    kabar_error *note;
    kabar_error *err;
} ev_ctx;

const char *ojson_str(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

int64_t ojson_int(const json_t *o, const char *key, int64_t def)
{
    json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : def;
}

static int missing(ev_ctx *c, const char *type, const char *field)
{
    kabar_error_set(c->note, KABAR_MISSING_FIELD, "%s seq %llu: body.%s missing or not usable",
                    type, (unsigned long long)c->seq, field);
    return IGNORED;
}

/* Load a record, or start an empty one; *v is owned by the caller. */
static int load(ev_ctx *c, ostate_kind k, const char *key, size_t klen, json_t **v)
{
    int rc = ostate_get(c->t, k, key, klen, v, c->err);
    if (rc == 0 && *v == NULL && (*v = json_object()) == NULL)
        rc = kabar_error_set(c->err, KABAR_NO_MEMORY, "out of memory");
    return rc;
}

static int store(ev_ctx *c, ostate_kind k, const char *key, json_t *v)
{
    int rc = ostate_put(c->t, k, key, strlen(key), v, c->err);
    json_decref(v);
    return rc;
}

static void set_str(json_t *o, const char *key, const char *s)
{
    if (s != NULL)
        json_object_set_new(o, key, json_string(s));
}

static void set_int(json_t *o, const char *key, int64_t v)
{
    json_object_set_new(o, key, json_integer((json_int_t)v));
}

/* ---- agencies ---- */

static int agency_seen(ev_ctx *c, const char *id, size_t len)
{
    json_t *v = NULL;
    if (id == NULL || len == 0)
        return 0;
    int rc = ostate_get(c->t, OSTATE_AGENCIES, id, len, &v, c->err);
    if (rc != 0 || v != NULL) {
        json_decref(v);
        return rc;
    }
    v = json_object();
    set_int(v, "first_seq", (int64_t)c->seq);
    rc = ostate_put(c->t, OSTATE_AGENCIES, id, len, v, c->err);
    json_decref(v);
    return rc;
}

static int agency_field(ev_ctx *c, const char *field)
{
    const char *a = ojson_str(c->body, field);
    return a ? agency_seen(c, a, strlen(a)) : 0;
}

/* ---- findings ---- */

bool ofinding_raised(const json_t *f)
{
    return ojson_int(f, "raised_seq", 0) > 0;
}

bool ofinding_rec_closed(const json_t *rec)
{
    const char *s = ojson_str(rec, "status");
    return s != NULL && (strcmp(s, "S") == 0 || strcmp(s, "TD") == 0);
}

json_t *ofinding_open_recs(const json_t *f)
{
    json_t *out = json_array(), *rec;
    size_t i;
    json_array_foreach(json_object_get(f, "recs"), i, rec)
    {
        if (json_is_true(json_object_get(rec, "listed")) && !ofinding_rec_closed(rec))
            json_array_append_new(out, json_string(ojson_str(rec, "rec_id")));
    }
    return out;
}

int64_t ofinding_resolved_at(const json_t *f)
{
    json_t *v = json_object_get(f, "resolved_at");
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : INT64_MIN;
}

/* The rec with rec_id, appended (listed=false, open) when absent. */
static json_t *finding_rec(json_t *f, const char *rec_id)
{
    json_t *recs = json_object_get(f, "recs"), *rec;
    size_t i;
    if (!json_is_array(recs)) {
        recs = json_array();
        json_object_set_new(f, "recs", recs);
    }
    json_array_foreach(recs, i, rec)
    {
        const char *id = ojson_str(rec, "rec_id");
        if (id != NULL && strcmp(id, rec_id) == 0)
            return rec;
    }
    rec = json_object();
    set_str(rec, "rec_id", rec_id);
    json_object_set_new(rec, "listed", json_false());
    json_object_set_new(rec, "responded", json_false());
    json_object_set_new(rec, "status", json_null());
    json_object_set_new(rec, "closed_at", json_null());
    json_array_append_new(recs, rec);
    return rec;
}

static void finding_resolve(json_t *f)
{
    json_t *rec;
    size_t i, listed = 0;
    int64_t last = INT64_MIN;
    bool all = ofinding_raised(f);
    json_array_foreach(json_object_get(f, "recs"), i, rec)
    {
        if (!json_is_true(json_object_get(rec, "listed")))
            continue;
        listed++;
        if (!ofinding_rec_closed(rec)) {
            all = false;
            break;
        }
        int64_t at = ojson_int(rec, "closed_at", INT64_MIN);
        if (at > last)
            last = at;
    }
    if (all && listed > 0 && last != INT64_MIN)
        set_int(f, "resolved_at", last);
    else
        json_object_set_new(f, "resolved_at", json_null());
}

static int finding_raised(ev_ctx *c)
{
    const char *fid = ojson_str(c->body, "finding_id");
    const char *fields[] = {"auditee", "auditor", "report_received", "due"};
    json_t *recs = json_object_get(c->body, "recommendations"), *f, *r, *rec;
    size_t i, j;
    if (fid == NULL)
        return missing(c, "finding.raised", "finding_id");
    for (i = 0; i < 4; i++)
        if (ojson_str(c->body, fields[i]) == NULL)
            return missing(c, "finding.raised", fields[i]);
    if (!json_is_array(recs) || json_array_size(recs) == 0)
        return missing(c, "finding.raised", "recommendations");
    int rc = load(c, OSTATE_FINDINGS, fid, strlen(fid), &f);
    if (rc != 0)
        return rc;
    for (i = 0; i < 4; i++)
        set_str(f, fields[i], ojson_str(c->body, fields[i]));
    set_int(f, "raised_seq", (int64_t)c->seq);
    json_array_foreach(json_object_get(f, "recs"), i, rec)
        json_object_set_new(rec, "listed", json_false());
    json_array_foreach(recs, j, r)
    {
        const char *id = ojson_str(r, "rec_id");
        if (id != NULL)
            json_object_set_new(finding_rec(f, id), "listed", json_true());
    }
    finding_resolve(f);
    if ((rc = store(c, OSTATE_FINDINGS, fid, f)) != 0)
        return rc;
    return agency_field(c, "auditee");
}

static int finding_rec_event(ev_ctx *c, const char *type, bool review)
{
    const char *fid = ojson_str(c->body, "finding_id");
    const char *rid = ojson_str(c->body, "rec_id");
    const char *status = ojson_str(c->body, "status");
    json_t *f;
    if (fid == NULL)
        return missing(c, type, "finding_id");
    if (rid == NULL)
        return missing(c, type, "rec_id");
    if (review && status == NULL)
        return missing(c, type, "status");
    int rc = load(c, OSTATE_FINDINGS, fid, strlen(fid), &f);
    if (rc != 0)
        return rc;
    json_t *rec = finding_rec(f, rid);
    if (!review) {
        json_object_set_new(rec, "responded", json_true());
    } else {
        bool was = ofinding_rec_closed(rec);
        set_str(rec, "status", status);
        set_int(rec, "status_seq", (int64_t)c->seq);
        bool now = ofinding_rec_closed(rec);
        if (now && !was)
            set_int(rec, "closed_at", c->at);
        else if (!now)
            json_object_set_new(rec, "closed_at", json_null());
        finding_resolve(f);
    }
    return store(c, OSTATE_FINDINGS, fid, f);
}

static int finding_overdue(ev_ctx *c)
{
    const char *fid = ojson_str(c->body, "finding_id");
    json_t *f;
    if (fid == NULL)
        return missing(c, "finding.overdue", "finding_id");
    int rc = load(c, OSTATE_FINDINGS, fid, strlen(fid), &f);
    if (rc != 0)
        return rc;
    if (ojson_int(f, "overdue_seq", 0) == 0) {
        set_int(f, "overdue_seq", (int64_t)c->seq);
        set_int(f, "overdue_days", ojson_int(c->body, "days_overdue", 0));
    }
    if ((rc = store(c, OSTATE_FINDINGS, fid, f)) != 0)
        return rc;
    return agency_field(c, "auditee");
}

int oapply_overdue_published(ostate_txn *t, const char *finding_id, uint64_t seq,
                             int64_t days_overdue, kabar_error *err)
{
    json_t *f = NULL;
    int rc = ostate_get(t, OSTATE_FINDINGS, finding_id, strlen(finding_id), &f, err);
    if (rc != 0 || f == NULL)
        return rc;
    if (ojson_int(f, "overdue_seq", 0) == 0) {
        set_int(f, "overdue_seq", (int64_t)seq);
        set_int(f, "overdue_days", days_overdue);
        rc = ostate_put(t, OSTATE_FINDINGS, finding_id, strlen(finding_id), f, err);
    }
    json_decref(f);
    return rc;
}

/* ---- visits ---- */

static int visit_event(ev_ctx *c, bool completed)
{
    const char *type = completed ? "visit.completed" : "visit.scheduled";
    const char *vid = ojson_str(c->body, "visit_id");
    const char *host = ojson_str(c->body, "host");
    const char *date = ojson_str(c->body, "date");
    json_t *v;
    if (vid == NULL)
        return missing(c, type, "visit_id");
    if (host == NULL)
        return missing(c, type, "host");
    if (date == NULL)
        return missing(c, type, "date");
    int rc = load(c, OSTATE_VISITS, vid, strlen(vid), &v);
    if (rc != 0)
        return rc;
    set_str(v, "host", host);
    if (!completed) {
        set_str(v, "date", date);
        set_str(v, "visitor", ojson_str(c->body, "visitor"));
        set_str(v, "program", ojson_str(c->body, "program"));
        set_str(v, "team", ojson_str(c->body, "team"));
        set_int(v, "scheduled_seq", (int64_t)c->seq);
    } else {
        json_t *att = json_object_get(c->body, "attendance");
        set_str(v, "completed_date", date);
        set_int(v, "completed_seq", (int64_t)c->seq);
        if (json_is_integer(json_object_get(att, "present")) &&
            json_is_integer(json_object_get(att, "total"))) {
            set_int(v, "present", ojson_int(att, "present", 0));
            set_int(v, "total", ojson_int(att, "total", 0));
        }
    }
    if ((rc = store(c, OSTATE_VISITS, vid, v)) != 0)
        return rc;
    return agency_seen(c, host, strlen(host));
}

/* ---- innovations ---- */

static int innovation_submitted(ev_ctx *c)
{
    const char *iid = ojson_str(c->body, "innovation_id");
    const char *owner = ojson_str(c->body, "owner");
    json_t *v;
    if (iid == NULL)
        return missing(c, "innovation.submitted", "innovation_id");
    if (owner == NULL)
        return missing(c, "innovation.submitted", "owner");
    int rc = load(c, OSTATE_INNOVATIONS, iid, strlen(iid), &v);
    if (rc != 0)
        return rc;
    set_str(v, "owner", owner);
    const char *fields[] = {"competition", "acronym", "name", "category", "stage", "unit"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        set_str(v, fields[i], ojson_str(c->body, fields[i]));
    set_int(v, "submitted_seq", (int64_t)c->seq);
    set_int(v, "submitted_at", c->at);
    if ((rc = store(c, OSTATE_INNOVATIONS, iid, v)) != 0)
        return rc;
    return agency_seen(c, owner, strlen(owner));
}

/* innovation.advanced (list "advanced", field "stage") or .awarded ("awards", "award"). */
static int innovation_step(ev_ctx *c, const char *type, const char *list, const char *field)
{
    const char *iid = ojson_str(c->body, "innovation_id");
    const char *what = ojson_str(c->body, field);
    json_t *v, *e;
    size_t i;
    if (iid == NULL)
        return missing(c, type, "innovation_id");
    if (what == NULL)
        return missing(c, type, field);
    int rc = load(c, OSTATE_INNOVATIONS, iid, strlen(iid), &v);
    if (rc != 0)
        return rc;
    json_t *arr = json_object_get(v, list);
    if (!json_is_array(arr)) {
        arr = json_array();
        json_object_set_new(v, list, arr);
    }
    json_array_foreach(arr, i, e)
    {
        if (ojson_int(e, "seq", 0) == (int64_t)c->seq) { /* already there */
            json_decref(v);
            return 0;
        }
    }
    e = json_object();
    set_int(e, "seq", (int64_t)c->seq);
    set_str(e, field, what);
    set_str(e, "competition", ojson_str(c->body, "competition"));
    if (json_is_integer(json_object_get(c->body, "rank")))
        set_int(e, "rank", ojson_int(c->body, "rank", 0));
    set_int(e, "at", c->at);
    json_array_append_new(arr, e);
    return store(c, OSTATE_INNOVATIONS, iid, v);
}

/* ---- attendance ---- */

static int attendance(ev_ctx *c)
{
    const char *agency = ojson_str(c->body, "agency");
    const char *date = ojson_str(c->body, "date");
    json_t *p = json_object_get(c->body, "present"), *tot = json_object_get(c->body, "total");
    char key[KABAR_MAX_AGENCY_LEN + 1 + 16];
    if (agency == NULL || strlen(agency) > KABAR_MAX_AGENCY_LEN)
        return missing(c, "attendance.reported", "agency");
    if (date == NULL || strlen(date) > 15)
        return missing(c, "attendance.reported", "date");
    if (!json_is_integer(p) || !json_is_integer(tot) || json_integer_value(p) < 0 ||
        json_integer_value(p) > json_integer_value(tot))
        return missing(c, "attendance.reported", "present/total");
    size_t al = strlen(agency), dl = strlen(date);
    memcpy(key, agency, al);
    key[al] = '\0';
    memcpy(key + al + 1, date, dl);
    json_t *v = json_object();
    set_str(v, "agency", agency);
    set_str(v, "date", date);
    set_int(v, "present", (int64_t)json_integer_value(p));
    set_int(v, "total", (int64_t)json_integer_value(tot));
    set_int(v, "seq", (int64_t)c->seq);
    int rc = ostate_put(c->t, OSTATE_ATTENDANCE, key, al + 1 + dl, v, c->err);
    json_decref(v);
    return rc ? rc : agency_seen(c, agency, al);
}

/* ---- dispatch ---- */

static int dispatch(ev_ctx *c, const char *type)
{
    if (strcmp(type, "finding.raised") == 0)
        return finding_raised(c);
    if (strcmp(type, "finding.responded") == 0)
        return finding_rec_event(c, type, false);
    if (strcmp(type, "finding.reviewed") == 0)
        return finding_rec_event(c, type, true);
    if (strcmp(type, "finding.overdue") == 0)
        return finding_overdue(c);
    if (strcmp(type, "visit.scheduled") == 0)
        return visit_event(c, false);
    if (strcmp(type, "visit.completed") == 0)
        return visit_event(c, true);
    if (strcmp(type, "innovation.submitted") == 0)
        return innovation_submitted(c);
    if (strcmp(type, "innovation.advanced") == 0)
        return innovation_step(c, type, "advanced", "stage");
    if (strcmp(type, "innovation.awarded") == 0)
        return innovation_step(c, type, "awards", "award");
    if (strcmp(type, "attendance.reported") == 0)
        return attendance(c);
    return 0; /* a type oversight does not derive anything from */
}

/* The envelope's agencies, and the body as JSON in *body. */
static int envelope(ev_ctx *c, const void *bytes, size_t len, int64_t received_at, char *type,
                    size_t tcap, json_t **body)
{
    kabar_event ev;
    kabar_error e = {0};
    if (kabar_event_decode(NULL, bytes, len, &ev, &e) != 0) {
        kabar_error_set(c->note, e.code, "seq %llu: undecodable event: %s",
                        (unsigned long long)c->seq, e.message);
        return IGNORED;
    }
    c->at = ev.has_occurred_at ? ev.occurred_at : received_at;
    snprintf(type, tcap, "%.*s", (int)ev.type.len, ev.type.ptr);
    int rc = agency_seen(c, ev.source.ptr, ev.source.len);
    for (uint32_t i = 0; rc == 0 && i < ev.ntargets; i++)
        rc = agency_seen(c, ev.targets[i].ptr, ev.targets[i].len);
    if (rc != 0)
        return rc;
    kabar_buf js = {0};
    json_error_t je;
    rc = kabar_event_to_json(&js, 0, INT64_MIN, bytes, len, &e);
    json_t *whole = rc == 0 ? json_loadb(js.data, js.len, 0, &je) : NULL;
    kabar_buf_free(&js);
    *body = json_incref(json_object_get(whole, "body"));
    json_decref(whole);
    if (!json_is_object(*body)) {
        json_decref(*body);
        *body = NULL;
        kabar_error_set(c->note, KABAR_BAD_JSON, "seq %llu: the body cannot be read",
                        (unsigned long long)c->seq);
        return IGNORED;
    }
    return 0;
}

int oapply_record(ostate_txn *t, uint64_t seq, int64_t received_at, const void *bytes, size_t len,
                  oapply_outcome *outcome, kabar_error *note, kabar_error *err)
{
    if (seq == 0)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "apply: seq 0 is not a log position");
    if (seq <= ostate_position(t)) {
        *outcome = OAPPLY_STALE;
        return 0;
    }
    ev_ctx c = {.t = t, .seq = seq, .note = note, .err = err};
    char type[KABAR_MAX_TYPE_LEN + 1];
    int rc = envelope(&c, bytes, len, received_at, type, sizeof type, &c.body);
    if (rc == 0)
        rc = dispatch(&c, type);
    json_decref(c.body);
    if (rc > 0)
        return rc;
    *outcome = rc == IGNORED ? OAPPLY_IGNORED : OAPPLY_APPLIED;
    return ostate_set_position(t, seq, err);
}
