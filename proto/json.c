/*
 * json.c - the JSON form of events (EVENTS.md): JSON -> canonical msgpack
 * (kabar_event_from_json) and msgpack -> JSON (kabar_event_to_json).
 *
 * JSON -> event is guided by the schema: it knows which body fields are
 * integers, numbers or instants, so "2023-05-02T08:30:00+07:00" becomes a
 * msgpack timestamp only where the schema says so, and a JSON value of the
 * wrong type is reported with its path before any bytes are written. The
 * packed bytes are then checked by kabar_event_decode, the one authority on
 * what a valid event is. A JSON null stands for an absent optional field.
 *
 * Event -> JSON is a hand-written writer over the msgpack reader, with no
 * intermediate tree: it is what `kabar tail` and `kabar replay` run for
 * every event.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <msgpack.h>

#include "mpr.h"
#include "schema_internal.h"

/* ------------------------------------------------------------------------ */
/* JSON -> event                                                            */

typedef struct packer {
    msgpack_packer pk;
    kabar_error *err;
    char path[256];
    size_t plen;
} packer;

static size_t push_key(packer *p, const char *name)
{
    size_t old = p->plen;
    int n = snprintf(p->path + old, sizeof p->path - old, "%s%s", old ? "." : "", name);
    if (n > 0)
        p->plen += (size_t)n < sizeof p->path - old ? (size_t)n : sizeof p->path - old - 1;
    return old;
}

static size_t push_index(packer *p, size_t i)
{
    size_t old = p->plen;
    int n = snprintf(p->path + old, sizeof p->path - old, "[%zu]", i);
    if (n > 0)
        p->plen += (size_t)n < sizeof p->path - old ? (size_t)n : sizeof p->path - old - 1;
    return old;
}

static void pop(packer *p, size_t old)
{
    p->plen = old;
    p->path[old] = '\0';
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

static int wrong(packer *p, const char *expected, const json_t *v)
{
    return kabar_error_set(p->err, KABAR_WRONG_TYPE, "%s: expected %s, found %s", p->path, expected,
                           json_kind(v));
}

static int packed(int rc, packer *p)
{
    return rc == 0 ? KABAR_OK
                   : kabar_error_set(p->err, KABAR_NO_MEMORY, "%s: out of memory", p->path);
}

static int pack_str(packer *p, const char *s, size_t len)
{
    if (len > UINT32_MAX)
        return kabar_error_set(p->err, KABAR_TOO_BIG, "%s: string too long", p->path);
    if (msgpack_pack_str(&p->pk, len) != 0 || msgpack_pack_str_body(&p->pk, s, len) != 0)
        return packed(-1, p);
    return KABAR_OK;
}

static int pack_key(packer *p, const char *s)
{
    return pack_str(p, s, strlen(s));
}

static int pack_int(packer *p, long long v)
{
    return packed(v >= 0 ? msgpack_pack_uint64(&p->pk, (uint64_t)v) : msgpack_pack_int64(&p->pk, v),
                  p);
}

/* A JSON number: an integer when it is one (2.0 too), else float64. */
static int pack_number(packer *p, const json_t *v)
{
    if (json_is_integer(v))
        return pack_int(p, json_integer_value(v));
    double d = json_real_value(v);
    if (d == trunc(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0)
        return pack_int(p, (long long)d);
    return packed(msgpack_pack_double(&p->pk, d), p);
}

static int pack_instant(packer *p, int64_t ns)
{
    msgpack_timestamp ts;
    ts.tv_sec = ns / 1000000000;
    long nsec = (long)(ns % 1000000000);
    if (nsec < 0) {
        nsec += 1000000000;
        ts.tv_sec--;
    }
    ts.tv_nsec = (uint32_t)nsec;
    return packed(msgpack_pack_timestamp(&p->pk, &ts), p);
}

static int pack_value(packer *p, const json_t *v, const sch_field *f);

static int key_cmp(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    return mpr_key_order(x, (uint32_t)strlen(x), y, (uint32_t)strlen(y));
}

/* An object, keys in canonical order; o == NULL: no schema, pack as is. */
static int pack_object(packer *p, const json_t *obj, const sch_object *o)
{
    size_t n = json_object_size(obj), k = 0;
    if (n > KABAR_MAX_MAP_ENTRIES)
        return kabar_error_set(p->err, KABAR_LIMIT,
                               "%s: object of %zu members is larger than the limit of %d", p->path,
                               n, KABAR_MAX_MAP_ENTRIES);
    const char *keys[KABAR_MAX_MAP_ENTRIES];
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)obj, key, val)
    {
        if (json_is_null(val))
            continue;
        if (o != NULL && schema_find_field(o, key, (uint32_t)strlen(key)) == NULL) {
            size_t old = push_key(p, key);
            int rc = kabar_error_set(p->err, KABAR_UNKNOWN_FIELD,
                                     "%s: unknown field (check the spelling)", p->path);
            pop(p, old);
            return rc;
        }
        keys[k++] = key;
    }
    qsort(keys, k, sizeof keys[0], key_cmp);
    if (msgpack_pack_map(&p->pk, k) != 0)
        return packed(-1, p);
    for (size_t i = 0; i < k; i++) {
        size_t old = push_key(p, keys[i]);
        int rc = pack_key(p, keys[i]);
        if (rc == 0)
            rc = pack_value(p, json_object_get(obj, keys[i]),
                            o ? schema_find_field(o, keys[i], (uint32_t)strlen(keys[i])) : NULL);
        if (rc != 0)
            return rc;
        pop(p, old);
    }
    return KABAR_OK;
}

static int pack_array(packer *p, const json_t *arr, const sch_field *items)
{
    size_t n = json_array_size(arr);
    if (msgpack_pack_array(&p->pk, n) != 0)
        return packed(-1, p);
    for (size_t i = 0; i < n; i++) {
        size_t old = push_index(p, i);
        int rc = pack_value(p, json_array_get(arr, i), items);
        if (rc != 0)
            return rc;
        pop(p, old);
    }
    return KABAR_OK;
}

/* Any JSON value, without a schema to say what it should be. */
static int pack_any(packer *p, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return pack_object(p, v, NULL);
    case JSON_ARRAY:
        return pack_array(p, v, NULL);
    case JSON_STRING:
        return pack_str(p, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
    case JSON_REAL:
        return pack_number(p, v);
    case JSON_TRUE:
        return packed(msgpack_pack_true(&p->pk), p);
    case JSON_FALSE:
        return packed(msgpack_pack_false(&p->pk), p);
    default:
        return packed(msgpack_pack_nil(&p->pk), p);
    }
}

static int pack_value(packer *p, const json_t *v, const sch_field *f)
{
    if (f == NULL)
        return pack_any(p, v);
    switch (f->kind) {
    case SCH_STRING:
    case SCH_ENUM:
        if (!json_is_string(v))
            return wrong(p, "a string", v);
        return pack_str(p, json_string_value(v), json_string_length(v));
    case SCH_AGENCY:
        if (!json_is_string(v))
            return wrong(p, "an agency id string", v);
        return pack_str(p, json_string_value(v), json_string_length(v));
    case SCH_DATE:
        if (!json_is_string(v))
            return wrong(p, "a date string \"YYYY-MM-DD\"", v);
        return pack_str(p, json_string_value(v), json_string_length(v));
    case SCH_INSTANT: {
        if (!json_is_string(v))
            return wrong(p, "an RFC 3339 string like \"2023-05-02T08:30:00+07:00\"", v);
        int64_t ns;
        kabar_error e;
        if (kabar_time_parse(json_string_value(v), json_string_length(v), &ns, &e) != 0)
            return kabar_error_set(p->err, e.code, "%s: %s", p->path, e.message);
        return pack_instant(p, ns);
    }
    case SCH_INT:
        if (json_is_real(v)) {
            double d = json_real_value(v);
            if (d == trunc(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0)
                return pack_int(p, (long long)d);
        }
        if (!json_is_integer(v))
            return wrong(p, "an integer", v);
        return pack_int(p, json_integer_value(v));
    case SCH_NUMBER:
        if (!json_is_number(v))
            return wrong(p, "a number", v);
        return pack_number(p, v);
    case SCH_BOOL:
        if (!json_is_boolean(v))
            return wrong(p, "true or false", v);
        return packed(json_is_true(v) ? msgpack_pack_true(&p->pk) : msgpack_pack_false(&p->pk), p);
    case SCH_ARRAY:
        if (!json_is_array(v))
            return wrong(p, "an array", v);
        return pack_array(p, v, f->items);
    case SCH_OBJECT:
        if (!json_is_object(v))
            return wrong(p, "an object", v);
        return pack_object(p, v, f->object);
    }
    return kabar_error_set(p->err, KABAR_BAD_SCHEMA, "%s: field of unknown kind", p->path);
}

/* The envelope as read from JSON, before packing. */
typedef struct jenv {
    const json_t *body, *targets;
    const char *id, *type, *source, *corr;
    size_t id_len, corr_len;
    uint32_t v;
    int64_t occurred_at;
    const sch_version *ver;
    char idbuf[37];
} jenv;

static int get_string(packer *p, json_t *root, const char *key, const char **out, size_t *len)
{
    json_t *v = json_object_get(root, key);
    if (v == NULL || json_is_null(v))
        return KABAR_OK;
    if (!json_is_string(v))
        return kabar_error_set(p->err, KABAR_WRONG_TYPE, "%s: expected a string, found %s", key,
                               json_kind(v));
    *out = json_string_value(v);
    if (len != NULL)
        *len = json_string_length(v);
    return KABAR_OK;
}

static int read_envelope(packer *p, const kabar_schema *schema, json_t *root,
                         const char *default_source, jenv *e)
{
    static const char *const known[] = {"seq",     "id",          "type",        "v",    "source",
                                        "targets", "occurred_at", "received_at", "corr", "body"};
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        size_t i = 0;
        while (i < sizeof known / sizeof known[0] && strcmp(known[i], key) != 0)
            i++;
        if (i == sizeof known / sizeof known[0])
            return kabar_error_set(p->err, KABAR_UNKNOWN_FIELD,
                                   "%.64s: unknown envelope field (expected id, type, v, source, "
                                   "targets, occurred_at, corr, body)",
                                   key);
    }
    int rc;
    if ((rc = get_string(p, root, "id", &e->id, &e->id_len)) != 0 ||
        (rc = get_string(p, root, "type", &e->type, NULL)) != 0 ||
        (rc = get_string(p, root, "source", &e->source, NULL)) != 0 ||
        (rc = get_string(p, root, "corr", &e->corr, &e->corr_len)) != 0)
        return rc;
    if (e->type == NULL)
        return kabar_error_set(p->err, KABAR_MISSING_FIELD, "type: required field missing");
    if (e->source == NULL)
        e->source = default_source;
    if (e->source == NULL)
        return kabar_error_set(p->err, KABAR_MISSING_FIELD,
                               "source: required field missing (the publishing agency's id)");
    if (e->id == NULL) {
        kabar_id_new(e->idbuf);
        e->id = e->idbuf;
        e->id_len = 36;
    }
    const sch_type *t =
        schema ? schema_find_type(schema, e->type, (uint32_t)strlen(e->type)) : NULL;
    if (schema != NULL && t == NULL)
        return kabar_error_set(p->err, KABAR_UNKNOWN_TYPE,
                               "type: \"%.64s\" is not a registered event type", e->type);
    json_t *jv = json_object_get(root, "v");
    if (jv == NULL || json_is_null(jv)) {
        if (t == NULL)
            return kabar_error_set(p->err, KABAR_MISSING_FIELD, "v: required field missing");
        e->v = t->versions[t->nversions - 1].v;
    } else if (!json_is_integer(jv)) {
        return kabar_error_set(p->err, KABAR_WRONG_TYPE, "v: expected an integer, found %s",
                               json_kind(jv));
    } else if (json_integer_value(jv) < 1 || json_integer_value(jv) > UINT32_MAX) {
        return kabar_error_set(p->err, KABAR_BAD_VALUE,
                               "v: %lld is not a schema version (expected 1 or more)",
                               (long long)json_integer_value(jv));
    } else {
        e->v = (uint32_t)json_integer_value(jv);
    }
    if (t != NULL && (e->ver = schema_find_version(t, e->v)) == NULL)
        return kabar_error_set(p->err, KABAR_UNKNOWN_VERSION,
                               "v: %s has no version %u (newest: %u)", t->name, e->v,
                               t->versions[t->nversions - 1].v);
    json_t *occ = json_object_get(root, "occurred_at");
    if (occ == NULL || json_is_null(occ)) {
        e->occurred_at = kabar_now();
    } else if (!json_is_string(occ)) {
        return kabar_error_set(p->err, KABAR_WRONG_TYPE,
                               "occurred_at: expected an RFC 3339 string, found %s",
                               json_kind(occ));
    } else {
        kabar_error te;
        if (kabar_time_parse(json_string_value(occ), json_string_length(occ), &e->occurred_at,
                             &te) != 0)
            return kabar_error_set(p->err, te.code, "occurred_at: %s", te.message);
    }
    e->targets = json_object_get(root, "targets");
    if (e->targets != NULL && json_is_null(e->targets))
        e->targets = NULL;
    if (e->targets != NULL && !json_is_array(e->targets))
        return kabar_error_set(p->err, KABAR_WRONG_TYPE,
                               "targets: expected an array of agency ids, found %s",
                               json_kind(e->targets));
    for (size_t i = 0; e->targets && i < json_array_size(e->targets); i++) {
        if (!json_is_string(json_array_get(e->targets, i)))
            return kabar_error_set(p->err, KABAR_WRONG_TYPE,
                                   "targets[%zu]: expected an agency id string, found %s", i,
                                   json_kind(json_array_get(e->targets, i)));
    }
    e->body = json_object_get(root, "body");
    if (e->body == NULL)
        return kabar_error_set(p->err, KABAR_MISSING_FIELD, "body: required field missing");
    if (!json_is_object(e->body))
        return kabar_error_set(p->err, KABAR_WRONG_TYPE, "body: expected an object, found %s",
                               json_kind(e->body));
    return KABAR_OK;
}

/* targets as given, then the body's target fields that are not among them. */
static int pack_targets(packer *p, const jenv *e)
{
    const char *extra[SCH_MAX_TARGET_FIELDS];
    size_t nextra = 0, ngiven = e->targets ? json_array_size(e->targets) : 0;
    for (uint32_t k = 0; e->ver && k < e->ver->ntargets; k++) {
        const sch_field *f = &e->ver->body.fields[e->ver->target_fields[k]];
        const char *val = json_string_value(json_object_get(e->body, f->name));
        if (val == NULL)
            continue; /* missing or mistyped: reported when the body is packed */
        bool dup = false;
        for (size_t i = 0; i < ngiven && !dup; i++)
            dup = strcmp(json_string_value(json_array_get(e->targets, i)), val) == 0;
        for (size_t i = 0; i < nextra && !dup; i++)
            dup = strcmp(extra[i], val) == 0;
        if (!dup)
            extra[nextra++] = val;
    }
    if (msgpack_pack_array(&p->pk, ngiven + nextra) != 0)
        return packed(-1, p);
    for (size_t i = 0; i < ngiven; i++) {
        json_t *t = json_array_get(e->targets, i);
        int rc = pack_str(p, json_string_value(t), json_string_length(t));
        if (rc != 0)
            return rc;
    }
    for (size_t i = 0; i < nextra; i++) {
        int rc = pack_key(p, extra[i]);
        if (rc != 0)
            return rc;
    }
    return KABAR_OK;
}

static size_t count_targets(const jenv *e)
{
    size_t n = e->targets ? json_array_size(e->targets) : 0;
    for (uint32_t k = 0; e->ver && k < e->ver->ntargets; k++)
        n += json_is_string(
            json_object_get(e->body, e->ver->body.fields[e->ver->target_fields[k]].name));
    return n; /* an upper bound; only used to tell none from some */
}

static int pack_event(packer *p, const jenv *e)
{
    bool has_targets = count_targets(e) > 0;
    size_t n = 6 + (e->corr != NULL) + has_targets;
    int rc;
    if (msgpack_pack_map(&p->pk, n) != 0)
        return packed(-1, p);
    if ((rc = pack_key(p, "body")) != 0)
        return rc;
    push_key(p, "body");
    if ((rc = pack_object(p, e->body, e->ver ? &e->ver->body : NULL)) != 0)
        return rc;
    pop(p, 0);
    if (e->corr != NULL &&
        ((rc = pack_key(p, "corr")) != 0 || (rc = pack_str(p, e->corr, e->corr_len)) != 0))
        return rc;
    if ((rc = pack_key(p, "id")) != 0 || (rc = pack_str(p, e->id, e->id_len)) != 0 ||
        (rc = pack_key(p, "occurred_at")) != 0 || (rc = pack_instant(p, e->occurred_at)) != 0 ||
        (rc = pack_key(p, "source")) != 0 || (rc = pack_key(p, e->source)) != 0)
        return rc;
    if (has_targets && ((rc = pack_key(p, "targets")) != 0 || (rc = pack_targets(p, e)) != 0))
        return rc;
    if ((rc = pack_key(p, "type")) != 0 || (rc = pack_key(p, e->type)) != 0 ||
        (rc = pack_key(p, "v")) != 0)
        return rc;
    return packed(msgpack_pack_uint32(&p->pk, e->v), p);
}

int kabar_event_from_json(const kabar_schema *schema, const char *json, size_t len,
                          const char *default_source, uint8_t **out, size_t *outlen,
                          kabar_error *err)
{
    if (json == NULL || out == NULL || outlen == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "kabar_event_from_json: NULL argument");
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return kabar_error_set(err, KABAR_BAD_JSON, "line %d column %d: %s", jerr.line, jerr.column,
                               jerr.text);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    packer p = {.err = err};
    msgpack_packer_init(&p.pk, &sb, msgpack_sbuffer_write);
    jenv e = {0};
    int rc;
    if (!json_is_object(root))
        rc = kabar_error_set(err, KABAR_BAD_JSON, "an event is a JSON object; found %s",
                             json_kind(root));
    else if ((rc = read_envelope(&p, schema, root, default_source, &e)) == 0)
        rc = pack_event(&p, &e);
    if (rc == 0)
        rc = kabar_event_decode(schema, sb.data, sb.size, NULL, err);
    json_decref(root);
    if (rc != 0) {
        msgpack_sbuffer_destroy(&sb);
        return rc;
    }
    *outlen = sb.size;
    *out = (uint8_t *)msgpack_sbuffer_release(&sb);
    return KABAR_OK;
}

/* ------------------------------------------------------------------------ */
/* Event -> JSON                                                            */

/* Make room for n more bytes (plus the NUL kabar_buf keeps); NULL: no memory. */
static char *room(kabar_buf *b, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (d == NULL)
            return NULL;
        b->data = d;
        b->cap = cap;
    }
    return b->data + b->len;
}

static int put(kabar_buf *b, const char *s, size_t n)
{
    char *w = room(b, n);
    if (w == NULL)
        return KABAR_NO_MEMORY;
    memcpy(w, s, n);
    b->len += n;
    b->data[b->len] = '\0';
    return KABAR_OK;
}

#define PUTS(b, lit) put((b), (lit), sizeof(lit) - 1)

/* A JSON string: quotes, backslashes and control characters escaped. */
static int put_string(kabar_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    char *w = room(b, 6 * n + 2), *start = w;
    if (w == NULL)
        return KABAR_NO_MEMORY;
    *w++ = '"';
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\') {
            *w++ = (char)ch;
            continue;
        }
        *w++ = '\\';
        switch (ch) {
        case '"':
        case '\\':
            *w++ = (char)ch;
            break;
        case '\n':
            *w++ = 'n';
            break;
        case '\r':
            *w++ = 'r';
            break;
        case '\t':
            *w++ = 't';
            break;
        case '\b':
            *w++ = 'b';
            break;
        case '\f':
            *w++ = 'f';
            break;
        default:
            memcpy(w, "u00", 3);
            w[3] = hex[ch >> 4];
            w[4] = hex[ch & 15];
            w += 5;
        }
    }
    *w++ = '"';
    b->len += (size_t)(w - start);
    b->data[b->len] = '\0';
    return KABAR_OK;
}

static int put_uint(kabar_buf *b, uint64_t v, bool neg)
{
    char tmp[24], *e = tmp + sizeof tmp, *q = e;
    do {
        *--q = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    if (neg)
        *--q = '-';
    return put(b, q, (size_t)(e - q));
}

/* The shortest decimal that reads back as the same double. */
static int put_float(kabar_buf *b, double f)
{
    char tmp[40];
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(tmp, sizeof tmp, "%.*g", prec, f);
        if (strtod(tmp, NULL) == f)
            break;
    }
    if (strpbrk(tmp, ".eEn") == NULL) /* keep it a JSON real */
        n += snprintf(tmp + n, sizeof tmp - (size_t)n, ".0");
    return put(b, tmp, (size_t)n);
}

static int put_time(kabar_buf *b, int64_t ns)
{
    char t[KABAR_TIME_MAX + 2];
    t[0] = '"';
    size_t n = kabar_time_format(ns, t + 1);
    t[n + 1] = '"';
    return put(b, t, n + 2);
}

/* One msgpack value at r, of nesting `depth` left, written as JSON. */
static int put_value(kabar_buf *b, mpr *r, int depth, kabar_error *err)
{
    mpr_item it;
    int rc = mpr_next(r, &it, err);
    if (rc != 0)
        return rc;
    switch (it.kind) {
    case MPR_NIL:
        return PUTS(b, "null");
    case MPR_BOOL:
        return it.b ? PUTS(b, "true") : PUTS(b, "false");
    case MPR_UINT:
        return put_uint(b, it.u, false);
    case MPR_INT:
        return put_uint(b, (uint64_t)0 - (uint64_t)it.i, true);
    case MPR_FLOAT:
        return put_float(b, it.f);
    case MPR_STR:
        return put_string(b, it.str, it.len);
    case MPR_TIMESTAMP:
        return put_time(b, it.i);
    case MPR_ARRAY:
    case MPR_MAP: {
        if (depth <= 0)
            return kabar_error_set(err, KABAR_LIMIT, "nesting too deep at offset %zu", it.offset);
        bool map = it.kind == MPR_MAP;
        if ((rc = put(b, map ? "{" : "[", 1)) != 0)
            return rc;
        for (uint32_t i = 0; i < it.count; i++) {
            if (i > 0 && (rc = put(b, ",", 1)) != 0)
                return rc;
            if (map) {
                mpr_item key;
                if ((rc = mpr_expect(r, MPR_STR, &key, "map key", err)) != 0 ||
                    (rc = put_string(b, key.str, key.len)) != 0 || (rc = put(b, ":", 1)) != 0)
                    return rc;
            }
            if ((rc = put_value(b, r, depth - 1, err)) != 0)
                return rc;
        }
        return put(b, map ? "}" : "]", 1);
    }
    default:
        return kabar_error_set(err, KABAR_WRONG_TYPE,
                               "msgpack %s at offset %zu has no JSON form in an event",
                               it.kind == MPR_BIN ? "bin" : "ext", it.offset);
    }
}

#define PUTKEY(b, lit) PUTS(b, ",\"" lit "\":")

static int put_event(kabar_buf *b, uint64_t seq, int64_t received_at, const kabar_event *ev,
                     kabar_error *err)
{
    int rc;
    if (seq != 0) {
        if ((rc = PUTS(b, "{\"seq\":")) != 0 || (rc = put_uint(b, seq, false)) != 0 ||
            (rc = PUTKEY(b, "id")) != 0)
            return rc;
    } else if ((rc = PUTS(b, "{\"id\":")) != 0) {
        return rc;
    }
    if ((rc = put_string(b, ev->id.ptr, ev->id.len)) != 0 || (rc = PUTKEY(b, "type")) != 0 ||
        (rc = put_string(b, ev->type.ptr, ev->type.len)) != 0 || (rc = PUTKEY(b, "v")) != 0 ||
        (rc = put_uint(b, ev->v, false)) != 0 || (rc = PUTKEY(b, "source")) != 0 ||
        (rc = put_string(b, ev->source.ptr, ev->source.len)) != 0)
        return rc;
    if (ev->ntargets > 0) {
        if ((rc = PUTKEY(b, "targets")) != 0)
            return rc;
        for (uint32_t i = 0; i < ev->ntargets; i++) {
            if ((rc = put(b, i ? "," : "[", 1)) != 0 ||
                (rc = put_string(b, ev->targets[i].ptr, ev->targets[i].len)) != 0)
                return rc;
        }
        if ((rc = put(b, "]", 1)) != 0)
            return rc;
    }
    if (ev->has_occurred_at &&
        ((rc = PUTKEY(b, "occurred_at")) != 0 || (rc = put_time(b, ev->occurred_at)) != 0))
        return rc;
    if (received_at != INT64_MIN &&
        ((rc = PUTKEY(b, "received_at")) != 0 || (rc = put_time(b, received_at)) != 0))
        return rc;
    if (ev->corr.ptr != NULL &&
        ((rc = PUTKEY(b, "corr")) != 0 || (rc = put_string(b, ev->corr.ptr, ev->corr.len)) != 0))
        return rc;
    if ((rc = PUTKEY(b, "body")) != 0)
        return rc;
    mpr r;
    mpr_init(&r, ev->body, ev->body_len);
    if ((rc = put_value(b, &r, KABAR_MAX_DEPTH - 1, err)) != 0)
        return rc;
    return put(b, "}", 1);
}

int kabar_event_to_json(kabar_buf *out, uint64_t seq, int64_t received_at, const void *bytes,
                        size_t len, kabar_error *err)
{
    if (out == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "kabar_event_to_json: NULL buffer");
    kabar_event ev;
    int rc = kabar_event_decode(NULL, bytes, len, &ev, err);
    if (rc != 0)
        return rc;
    size_t mark = out->len;
    rc = put_event(out, seq, received_at, &ev, err);
    if (rc != 0) {
        /* Leave the buffer as it was: no half-written object. */
        out->len = mark;
        if (out->data != NULL)
            out->data[mark] = '\0';
        if (rc == KABAR_NO_MEMORY)
            kabar_error_set(err, rc, "out of memory writing an event as JSON");
    }
    return rc;
}
