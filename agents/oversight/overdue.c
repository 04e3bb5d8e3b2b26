/*
 * overdue.c - the overdue rule and finding.overdue events (see overdue.h).
 */
#include "overdue.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oapply.h"
#include "odate.h"

bool overdue_on(const json_t *f, int32_t day, int tz_s, bool current, int64_t *days)
{
    const char *due_s = ojson_str(f, "due");
    int32_t due;
    if (!ofinding_raised(f) || due_s == NULL || !odate_parse(due_s, strlen(due_s), &due) ||
        due >= day)
        return false;
    int64_t res = ofinding_resolved_at(f);
    if (res != INT64_MIN && (current || odate_of_instant(res, tz_s) <= day))
        return false;
    *days = (int64_t)day - due;
    return true;
}

typedef struct pending_ctx {
    int32_t today;
    int tz_s;
    json_t *out;
} pending_ctx;

static int pending_one(void *arg, const char *key, size_t klen, json_t *f)
{
    pending_ctx *c = arg;
    int64_t days;
    if (ojson_int(f, "overdue_seq", 0) != 0 || !overdue_on(f, c->today, c->tz_s, true, &days))
        return 0;
    json_t *open = ofinding_open_recs(f);
    if (json_array_size(open) == 0) { /* cannot be while unresolved; never send an empty list */
        json_decref(open);
        return 0;
    }
    json_t *b = json_object();
    json_object_set_new(b, "finding_id", json_stringn(key, klen));
    json_object_set_new(b, "auditee", json_string(ojson_str(f, "auditee")));
    json_object_set_new(b, "due", json_string(ojson_str(f, "due")));
    json_object_set_new(b, "days_overdue", json_integer((json_int_t)days));
    json_object_set_new(b, "open_recs", open);
    json_array_append_new(c->out, b);
    return 0;
}

int overdue_pending(ostate_txn *t, int32_t today, int tz_s, json_t **out, kabar_error *err)
{
    pending_ctx c = {today, tz_s, json_array()};
    if (c.out == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    int rc = ostate_each(t, OSTATE_FINDINGS, pending_one, &c, err);
    if (rc != 0) {
        json_decref(c.out);
        return rc;
    }
    *out = c.out;
    return 0;
}

int overdue_event(const json_t *body, const char *agency, int64_t now, uint8_t **bytes, size_t *len,
                  kabar_error *err)
{
    const char *fid = ojson_str(body, "finding_id");
    char id[KABAR_MAX_ID_LEN + 1], at[KABAR_TIME_MAX];
    if (fid == NULL || ojson_str(body, "auditee") == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "overdue body without a finding");
    snprintf(id, sizeof id, "%s%s", OVERDUE_ID_PREFIX, fid);
    kabar_time_format(now, at);
    json_t *ev = json_object();
    json_object_set_new(ev, "id", json_string(id));
    json_object_set_new(ev, "type", json_string("finding.overdue"));
    json_object_set_new(ev, "v", json_integer(1));
    json_object_set_new(ev, "source", json_string(agency));
    json_t *targets = json_array();
    json_array_append_new(targets, json_string(ojson_str(body, "auditee")));
    json_object_set_new(ev, "targets", targets);
    json_object_set_new(ev, "occurred_at", json_string(at));
    json_object_set_new(ev, "corr", json_string(fid));
    json_object_set(ev, "body", (json_t *)body);
    char *text = json_dumps(ev, JSON_COMPACT);
    json_decref(ev);
    if (text == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    const kabar_schema *schema = kabar_schema_default(err);
    int rc = schema == NULL
                 ? KABAR_BAD_SCHEMA
                 : kabar_event_from_json(schema, text, strlen(text), NULL, bytes, len, err);
    free(text);
    return rc;
}
