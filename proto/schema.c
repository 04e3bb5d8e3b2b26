/*
 * schema.c - the schema registry: events.json parsed into the compiled form
 * of schema_internal.h.
 *
 * The registry is data (proto/schema/events.json, embedded at build time by
 * cmake/embed.cmake); adding an event type or a field is a change to that
 * file only. Its format:
 *
 *   {"format": 1, "description": "...",
 *    "types": {"<type>": {"description": "...",
 *      "versions": {"<v>": {"fields": {"<name>": FIELD, ...},
 *                           "rules": [{"le": ["<a>", "<b>"]}, ...]}}}}}
 *
 *   FIELD: {"type": T, "required": bool, "description": "..."} plus, by T:
 *     string   min_len (default 1), max_len (default KABAR_MAX_STRING_LEN), bytes
 *     agency   target: the event's targets must include the value (top level only)
 *     date     a calendar date "YYYY-MM-DD"
 *     instant  a msgpack timestamp (RFC 3339 in JSON)
 *     int      min, max (int64)
 *     number   min, max: an integer, or a non-integral float64
 *     bool
 *     enum     values: the allowed strings
 *     array    items: FIELD without name; min_items, max_items
 *              (default 0 and KABAR_MAX_ARRAY_ITEMS)
 *     object   fields, rules: a closed map, like a body
 *
 * A rule {"le": [a, b]} says a <= b when both are present; a and b are
 * int, number, date or instant fields of the same object.
 *
 * Every problem is KABAR_BAD_SCHEMA with the JSON Pointer of the offending
 * place ("schema /types/visit.scheduled/versions/1/fields/date/type: ...").
 *
 * Memory: everything of one registry lives in one arena, freed at once by
 * kabar_schema_destroy.
 */
#include <errno.h>
#include <pthread.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "mpr.h"
#include "schema_internal.h"

extern const char kabar_schema_builtin_json[];
extern const size_t kabar_schema_builtin_json_len;

#define SCHEMA_FILE_MAX (16u << 20) /* a registry file larger than this is a mistake */

/* ------------------------------------------------------------------------ */
/* Arena                                                                    */

typedef struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
} arena_block;

struct kabar_schema {
    arena_block *arena;
    const sch_type *types; /* sorted by name */
    size_t ntypes;
};

static void *arena_alloc(kabar_schema *s, size_t n)
{
    n = (n + alignof(max_align_t) - 1) & ~(alignof(max_align_t) - 1);
    arena_block *b = s->arena;
    if (b == NULL || b->cap - b->used < n) {
        size_t cap = n > 16384 ? n : 16384;
        b = malloc(sizeof *b + cap);
        if (b == NULL)
            return NULL;
        b->next = s->arena;
        b->used = 0;
        b->cap = cap;
        s->arena = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    memset(p, 0, n);
    return p;
}

static char *arena_strdup(kabar_schema *s, const char *str, size_t len)
{
    char *p = arena_alloc(s, len + 1);
    if (p != NULL) {
        memcpy(p, str, len);
        p[len] = '\0';
    }
    return p;
}

/* ------------------------------------------------------------------------ */
/* Parsing                                                                  */

/* The parser's state: the registry being built and the JSON Pointer of the
 * place being read, for messages. */
typedef struct parser {
    kabar_schema *s;
    kabar_error *err;
    char path[512];
    size_t plen;
} parser;

static size_t path_push(parser *p, const char *seg)
{
    size_t old = p->plen;
    int n = snprintf(p->path + p->plen, sizeof p->path - p->plen, "/%s", seg);
    if (n > 0)
        p->plen += (size_t)n < sizeof p->path - p->plen ? (size_t)n : sizeof p->path - p->plen - 1;
    return old;
}

static void path_pop(parser *p, size_t old)
{
    p->plen = old;
    p->path[old] = '\0';
}

static int bad(parser *p, const char *fmt, const char *a)
{
    char what[256];
    snprintf(what, sizeof what, fmt, a);
    return kabar_error_set(p->err, KABAR_BAD_SCHEMA, "schema %s: %s", p->plen ? p->path : "/",
                           what);
}

static int no_memory(parser *p)
{
    return kabar_error_set(p->err, KABAR_NO_MEMORY, "out of memory while loading the schema");
}

/* Every key of obj must be one of the NULL-terminated list `allowed`. */
static int check_keys(parser *p, json_t *obj, const char *const *allowed)
{
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        const char *const *a = allowed;
        while (*a != NULL && strcmp(*a, key) != 0)
            a++;
        if (*a == NULL) {
            size_t old = path_push(p, key);
            int rc = bad(p, "unknown key%s (check the spelling; see the format in schema.c)", "");
            path_pop(p, old);
            return rc;
        }
    }
    return KABAR_OK;
}

/* An optional non-negative integer member, at most `max`. */
static int get_uint(parser *p, json_t *obj, const char *key, uint32_t max, uint32_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return KABAR_OK;
    size_t old = path_push(p, key);
    int rc = KABAR_OK;
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > max) {
        char msg[96];
        snprintf(msg, sizeof msg, "expected an integer from 0 to %u", max);
        rc = bad(p, "%s", msg);
    } else {
        *out = (uint32_t)json_integer_value(v);
    }
    path_pop(p, old);
    return rc;
}

static int get_bool(parser *p, json_t *obj, const char *key, bool *out)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return KABAR_OK;
    if (!json_is_boolean(v)) {
        size_t old = path_push(p, key);
        int rc = bad(p, "expected true or false%s", "");
        path_pop(p, old);
        return rc;
    }
    *out = json_is_true(v);
    return KABAR_OK;
}

static int get_int64(parser *p, json_t *obj, const char *key, bool *has, int64_t *out)
{
    json_t *v = json_object_get(obj, key);
    if (v == NULL)
        return KABAR_OK;
    if (!json_is_integer(v)) {
        size_t old = path_push(p, key);
        int rc = bad(p, "expected an integer%s", "");
        path_pop(p, old);
        return rc;
    }
    *has = true;
    *out = json_integer_value(v);
    return KABAR_OK;
}

static const struct {
    const char *name;
    sch_kind kind;
} kind_names[] = {
    {"string", SCH_STRING}, {"agency", SCH_AGENCY}, {"date", SCH_DATE}, {"instant", SCH_INSTANT},
    {"int", SCH_INT},       {"number", SCH_NUMBER}, {"bool", SCH_BOOL}, {"enum", SCH_ENUM},
    {"array", SCH_ARRAY},   {"object", SCH_OBJECT},
};

/* Keys allowed in a field of each kind (after the common ones). */
static const char *const *kind_keys(sch_kind k)
{
    static const char *const str[] = {"type",    "required", "description",
                                      "min_len", "max_len",  NULL};
    static const char *const agency[] = {"type", "required", "description", "target", NULL};
    static const char *const plain[] = {"type", "required", "description", NULL};
    static const char *const num[] = {"type", "required", "description", "min", "max", NULL};
    static const char *const en[] = {"type", "required", "description", "values", NULL};
    static const char *const arr[] = {"type",      "required",  "description", "items",
                                      "min_items", "max_items", NULL};
    static const char *const obj[] = {"type", "required", "description", "fields", "rules", NULL};
    switch (k) {
    case SCH_STRING:
        return str;
    case SCH_AGENCY:
        return agency;
    case SCH_INT:
    case SCH_NUMBER:
        return num;
    case SCH_ENUM:
        return en;
    case SCH_ARRAY:
        return arr;
    case SCH_OBJECT:
        return obj;
    default:
        return plain;
    }
}

static int parse_object(parser *p, json_t *fields, json_t *rules, int level, sch_object *out);

static int parse_enum(parser *p, json_t *jf, sch_field *f)
{
    json_t *vals = json_object_get(jf, "values");
    size_t old = path_push(p, "values");
    if (!json_is_array(vals) || json_array_size(vals) == 0 || json_array_size(vals) > 256) {
        int rc = bad(p, "an enum needs \"values\": an array of 1 to 256 strings%s", "");
        path_pop(p, old);
        return rc;
    }
    size_t n = json_array_size(vals);
    const char **v = arena_alloc(p->s, n * sizeof *v);
    uint32_t *lens = arena_alloc(p->s, n * sizeof *lens);
    if (v == NULL || lens == NULL)
        return no_memory(p);
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(vals, i);
        size_t l = json_is_string(s) ? json_string_length(s) : 0;
        if (l == 0 || l > 256) {
            char idx[24];
            snprintf(idx, sizeof idx, "%zu", i);
            path_push(p, idx);
            int rc = bad(p, "expected a string of 1 to 256 bytes%s", "");
            path_pop(p, old);
            return rc;
        }
        for (size_t j = 0; j < i; j++) {
            if (lens[j] == l && memcmp(v[j], json_string_value(s), l) == 0) {
                int rc = bad(p, "value \"%s\" is listed twice", json_string_value(s));
                path_pop(p, old);
                return rc;
            }
        }
        if ((v[i] = arena_strdup(p->s, json_string_value(s), l)) == NULL)
            return no_memory(p);
        lens[i] = (uint32_t)l;
    }
    f->values = v;
    f->value_lens = lens;
    f->nvalues = (uint32_t)n;
    path_pop(p, old);
    return KABAR_OK;
}

/*
 * Parse one field description (jf) into f. `level` is the nesting level of
 * the map or array that holds the field (the body is level 2); containers
 * may not nest deeper than KABAR_MAX_DEPTH.
 */
static int parse_field(parser *p, json_t *jf, int level, bool top, sch_field *f)
{
    if (!json_is_object(jf))
        return bad(p, "a field is described by an object like {\"type\": \"string\"}%s", "");
    json_t *jt = json_object_get(jf, "type");
    const char *tname = json_string_value(jt);
    size_t k = 0;
    while (tname != NULL && k < sizeof kind_names / sizeof kind_names[0] &&
           strcmp(kind_names[k].name, tname) != 0)
        k++;
    if (tname == NULL || k == sizeof kind_names / sizeof kind_names[0]) {
        size_t old = path_push(p, "type");
        int rc = bad(p,
                     "unknown or missing field type \"%s\" (expected string, agency, date, "
                     "instant, int, number, bool, enum, array or object)",
                     tname ? tname : "");
        path_pop(p, old);
        return rc;
    }
    f->kind = kind_names[k].kind;
    int rc;
    if ((rc = check_keys(p, jf, kind_keys(f->kind))) != 0 ||
        (rc = get_bool(p, jf, "required", &f->required)) != 0 ||
        (rc = get_bool(p, jf, "target", &f->target)) != 0)
        return rc;
    if (f->target && !top)
        return bad(p, "\"target\" is allowed only on top-level body fields%s", "");
    if (f->target && !f->required)
        return bad(p, "a target field must be required%s", "");
    if ((f->kind == SCH_ARRAY || f->kind == SCH_OBJECT) && level + 1 > KABAR_MAX_DEPTH)
        return bad(p, "nested deeper than the %s-level limit (KABAR_MAX_DEPTH)", "8");
    switch (f->kind) {
    case SCH_STRING:
        f->min_len = 1;
        f->max_len = KABAR_MAX_STRING_LEN;
        if ((rc = get_uint(p, jf, "min_len", KABAR_MAX_EVENT_BYTES, &f->min_len)) != 0 ||
            (rc = get_uint(p, jf, "max_len", KABAR_MAX_EVENT_BYTES, &f->max_len)) != 0)
            return rc;
        if (f->min_len > f->max_len)
            return bad(p, "min_len is larger than max_len%s", "");
        return KABAR_OK;
    case SCH_INT:
    case SCH_NUMBER:
        if ((rc = get_int64(p, jf, "min", &f->has_min, &f->min)) != 0 ||
            (rc = get_int64(p, jf, "max", &f->has_max, &f->max)) != 0)
            return rc;
        if (f->has_min && f->has_max && f->min > f->max)
            return bad(p, "min is larger than max%s", "");
        return KABAR_OK;
    case SCH_ENUM:
        return parse_enum(p, jf, f);
    case SCH_ARRAY: {
        f->max_items = KABAR_MAX_ARRAY_ITEMS;
        if ((rc = get_uint(p, jf, "min_items", KABAR_MAX_EVENT_BYTES, &f->min_items)) != 0 ||
            (rc = get_uint(p, jf, "max_items", KABAR_MAX_EVENT_BYTES, &f->max_items)) != 0)
            return rc;
        if (f->min_items > f->max_items)
            return bad(p, "min_items is larger than max_items%s", "");
        sch_field *items = arena_alloc(p->s, sizeof *items);
        if (items == NULL)
            return no_memory(p);
        size_t old = path_push(p, "items");
        if ((rc = parse_field(p, json_object_get(jf, "items"), level + 1, false, items)) != 0)
            return rc;
        path_pop(p, old);
        if (items->required)
            return bad(p, "/items: \"required\" means nothing for array items%s", "");
        f->items = items;
        return KABAR_OK;
    }
    case SCH_OBJECT: {
        sch_object *o = arena_alloc(p->s, sizeof *o);
        if (o == NULL)
            return no_memory(p);
        if ((rc = parse_object(p, json_object_get(jf, "fields"), json_object_get(jf, "rules"),
                               level + 1, o)) != 0)
            return rc;
        f->object = o;
        return KABAR_OK;
    }
    default:
        return KABAR_OK;
    }
}

static int field_cmp(const void *a, const void *b)
{
    const sch_field *x = a, *y = b;
    return mpr_key_order(x->name, x->name_len, y->name, y->name_len);
}

static bool valid_field_name(const char *n, size_t len)
{
    if (len == 0 || len > 64 || n[0] < 'a' || n[0] > 'z')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
            return false;
    }
    return true;
}

static int rule_side(parser *p, const sch_object *o, json_t *name, uint32_t *idx)
{
    const char *n = json_string_value(name);
    const sch_field *f = n ? schema_find_field(o, n, (uint32_t)strlen(n)) : NULL;
    if (f == NULL)
        return bad(p, "\"%s\" is not a field of this object", n ? n : "(not a string)");
    if (f->kind != SCH_INT && f->kind != SCH_NUMBER && f->kind != SCH_DATE &&
        f->kind != SCH_INSTANT)
        return bad(p, "field \"%s\" cannot be compared (int, number, date or instant only)", n);
    *idx = (uint32_t)(f - o->fields);
    return KABAR_OK;
}

static bool comparable(sch_kind a, sch_kind b)
{
    bool na = a == SCH_INT || a == SCH_NUMBER, nb = b == SCH_INT || b == SCH_NUMBER;
    return (na && nb) || a == b;
}

static int parse_rules(parser *p, json_t *rules, sch_object *o)
{
    if (rules == NULL)
        return KABAR_OK;
    size_t old = path_push(p, "rules");
    if (!json_is_array(rules))
        return bad(p, "expected an array of rules like {\"le\": [\"present\", \"total\"]}%s", "");
    size_t n = json_array_size(rules);
    sch_rule *r = arena_alloc(p->s, (n ? n : 1) * sizeof *r);
    if (r == NULL)
        return no_memory(p);
    for (size_t i = 0; i < n; i++) {
        char idx[24];
        snprintf(idx, sizeof idx, "%zu", i);
        size_t old2 = path_push(p, idx);
        json_t *jr = json_array_get(rules, i);
        json_t *le = json_object_get(jr, "le");
        if (!json_is_object(jr) || json_object_size(jr) != 1 || !json_is_array(le) ||
            json_array_size(le) != 2)
            return bad(p, "expected a rule like {\"le\": [\"present\", \"total\"]}%s", "");
        int rc;
        if ((rc = rule_side(p, o, json_array_get(le, 0), &r[i].a)) != 0 ||
            (rc = rule_side(p, o, json_array_get(le, 1), &r[i].b)) != 0)
            return rc;
        if (!comparable(o->fields[r[i].a].kind, o->fields[r[i].b].kind))
            return bad(p, "the two fields of a rule must be of comparable types%s", "");
        path_pop(p, old2);
    }
    o->rules = r;
    o->nrules = (uint32_t)n;
    path_pop(p, old);
    return KABAR_OK;
}

static int parse_object(parser *p, json_t *fields, json_t *rules, int level, sch_object *out)
{
    size_t old = path_push(p, "fields");
    if (!json_is_object(fields) || json_object_size(fields) > KABAR_MAX_MAP_ENTRIES)
        return bad(p, "expected an object of at most 64 field descriptions%s", "");
    size_t n = json_object_size(fields);
    sch_field *fs = arena_alloc(p->s, (n ? n : 1) * sizeof *fs);
    if (fs == NULL)
        return no_memory(p);
    size_t i = 0;
    const char *key;
    json_t *jf;
    json_object_foreach(fields, key, jf)
    {
        size_t old2 = path_push(p, key);
        if (!valid_field_name(key, strlen(key)))
            return bad(p, "field names are 1 to 64 of [a-z0-9_], starting with a letter%s", "");
        int rc = parse_field(p, jf, level, level == 2, &fs[i]);
        if (rc != 0)
            return rc;
        fs[i].name_len = (uint32_t)strlen(key);
        if ((fs[i].name = arena_strdup(p->s, key, fs[i].name_len)) == NULL)
            return no_memory(p);
        path_pop(p, old2);
        i++;
    }
    qsort(fs, n, sizeof *fs, field_cmp);
    out->fields = fs;
    out->nfields = (uint32_t)n;
    path_pop(p, old);
    return parse_rules(p, rules, out);
}

static int parse_version(parser *p, const char *key, json_t *jv, sch_version *v)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(key, &end, 10);
    if (key[0] < '1' || key[0] > '9' || *end != '\0' || errno != 0 || n > UINT32_MAX)
        return bad(p, "a version is a decimal number from 1, not \"%s\"", key);
    v->v = (uint32_t)n;
    static const char *const keys[] = {"description", "fields", "rules", NULL};
    if (!json_is_object(jv))
        return bad(p, "expected an object with \"fields\"%s", "");
    int rc;
    if ((rc = check_keys(p, jv, keys)) != 0 ||
        (rc = parse_object(p, json_object_get(jv, "fields"), json_object_get(jv, "rules"), 2,
                           &v->body)) != 0)
        return rc;
    for (uint32_t i = 0; i < v->body.nfields; i++) {
        if (!v->body.fields[i].target)
            continue;
        if (v->ntargets == SCH_MAX_TARGET_FIELDS)
            return bad(p, "more than %s fields are marked \"target\"", "8");
        v->target_fields[v->ntargets++] = i;
    }
    return KABAR_OK;
}

static int version_cmp(const void *a, const void *b)
{
    const sch_version *x = a, *y = b;
    return x->v < y->v ? -1 : x->v > y->v;
}

static bool valid_type_name(const char *n, size_t len)
{
    if (len == 0 || len > KABAR_MAX_TYPE_LEN || n[0] < 'a' || n[0] > 'z' || n[len - 1] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = n[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.'))
            return false;
        if (c == '.' && n[i + 1] == '.')
            return false;
    }
    return true;
}

static int parse_type(parser *p, const char *name, json_t *jt, sch_type *t)
{
    static const char *const keys[] = {"description", "versions", NULL};
    if (!valid_type_name(name, strlen(name)))
        return bad(p, "a type name is 1 to 64 of [a-z0-9_.] like \"finding.raised\"%s", "");
    if (!json_is_object(jt))
        return bad(p, "expected an object with \"versions\"%s", "");
    int rc = check_keys(p, jt, keys);
    if (rc != 0)
        return rc;
    json_t *vers = json_object_get(jt, "versions");
    size_t old = path_push(p, "versions");
    if (!json_is_object(vers) || json_object_size(vers) == 0)
        return bad(p, "expected an object of one or more versions like {\"1\": {...}}%s", "");
    size_t n = json_object_size(vers);
    sch_version *vs = arena_alloc(p->s, n * sizeof *vs);
    if (vs == NULL)
        return no_memory(p);
    size_t i = 0;
    const char *key;
    json_t *jv;
    json_object_foreach(vers, key, jv)
    {
        size_t old2 = path_push(p, key);
        if ((rc = parse_version(p, key, jv, &vs[i++])) != 0)
            return rc;
        path_pop(p, old2);
    }
    qsort(vs, n, sizeof *vs, version_cmp);
    for (i = 1; i < n; i++) {
        if (vs[i].v == vs[i - 1].v)
            return bad(p, "a version is listed twice (\"1\" and \"01\"?)%s", "");
    }
    path_pop(p, old);
    t->name_len = (uint32_t)strlen(name);
    if ((t->name = arena_strdup(p->s, name, t->name_len)) == NULL)
        return no_memory(p);
    t->versions = vs;
    t->nversions = (uint32_t)n;
    return KABAR_OK;
}

static int type_cmp(const void *a, const void *b)
{
    const sch_type *x = a, *y = b;
    return mpr_key_order(x->name, x->name_len, y->name, y->name_len);
}

static int parse_root(parser *p, json_t *root)
{
    static const char *const keys[] = {"format", "description", "types", NULL};
    if (!json_is_object(root))
        return bad(p, "the registry is a JSON object with \"format\" and \"types\"%s", "");
    int rc = check_keys(p, root, keys);
    if (rc != 0)
        return rc;
    json_t *fmt = json_object_get(root, "format");
    if (!json_is_integer(fmt) || json_integer_value(fmt) != 1) {
        path_push(p, "format");
        return bad(p, "expected \"format\": 1 (this kabar reads format 1 only)%s", "");
    }
    json_t *types = json_object_get(root, "types");
    path_push(p, "types");
    if (!json_is_object(types) || json_object_size(types) == 0)
        return bad(p, "expected an object of one or more event types%s", "");
    size_t n = json_object_size(types);
    sch_type *ts = arena_alloc(p->s, n * sizeof *ts);
    if (ts == NULL)
        return no_memory(p);
    size_t i = 0;
    const char *key;
    json_t *jt;
    json_object_foreach(types, key, jt)
    {
        size_t old = path_push(p, key);
        if ((rc = parse_type(p, key, jt, &ts[i++])) != 0)
            return rc;
        path_pop(p, old);
    }
    qsort(ts, n, sizeof *ts, type_cmp);
    p->s->types = ts;
    p->s->ntypes = n;
    return KABAR_OK;
}

int kabar_schema_parse(kabar_schema **out, const char *json, size_t len, kabar_error *err)
{
    if (out == NULL || json == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "kabar_schema_parse: NULL argument");
    json_error_t jerr;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return kabar_error_set(err, KABAR_BAD_SCHEMA, "schema: line %d column %d: %s", jerr.line,
                               jerr.column, jerr.text);
    kabar_schema *s = calloc(1, sizeof *s);
    if (s == NULL) {
        json_decref(root);
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory while loading the schema");
    }
    parser p = {.s = s, .err = err};
    int rc = parse_root(&p, root);
    json_decref(root);
    if (rc != 0) {
        kabar_schema_destroy(&s);
        return rc;
    }
    *out = s;
    return KABAR_OK;
}

int kabar_schema_load(kabar_schema **out, const char *path, kabar_error *err)
{
    if (path == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "kabar_schema_load: NULL path");
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return kabar_error_set(err, KABAR_IO, "cannot open schema file %s: %s", path,
                               strerror(errno));
    kabar_buf b = {0};
    char chunk[16384];
    size_t n;
    int rc = KABAR_OK;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        if (b.len + n > SCHEMA_FILE_MAX) {
            rc = kabar_error_set(err, KABAR_BAD_SCHEMA, "schema file %s is larger than %u bytes",
                                 path, SCHEMA_FILE_MAX);
            break;
        }
        if ((rc = kabar_buf_append(&b, chunk, n)) != 0) {
            kabar_error_set(err, rc, "out of memory reading schema file %s", path);
            break;
        }
    }
    if (rc == 0 && ferror(f))
        rc =
            kabar_error_set(err, KABAR_IO, "cannot read schema file %s: %s", path, strerror(errno));
    fclose(f);
    if (rc == 0) {
        rc = kabar_schema_parse(out, b.data ? b.data : "", b.len, err);
        if (rc != 0 && err != NULL) {
            /* Name the file: "schema file x.json: /types/...: ..." */
            char msg[KABAR_ERROR_MESSAGE_MAX];
            snprintf(msg, sizeof msg, "%s", err->message);
            const char *rest = strncmp(msg, "schema ", 7) == 0 ? msg + 7 : msg;
            kabar_error_set(err, rc, "schema file %s: %s", path, rest);
        }
    }
    kabar_buf_free(&b);
    return rc;
}

void kabar_schema_destroy(kabar_schema **s)
{
    if (s == NULL || *s == NULL)
        return;
    arena_block *b = (*s)->arena;
    while (b != NULL) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
    free(*s);
    *s = NULL;
}

/* ------------------------------------------------------------------------ */
/* The process's registries                                                 */

static pthread_once_t builtin_once = PTHREAD_ONCE_INIT;
static kabar_schema *builtin;

static void builtin_init(void)
{
    kabar_error e;
    if (kabar_schema_parse(&builtin, kabar_schema_builtin_json, kabar_schema_builtin_json_len,
                           &e) != 0) {
        /* The file is checked by the unit tests; this is a broken build. */
        fprintf(stderr, "libkabar: the built-in schema does not load: %s\n", e.message);
        abort();
    }
}

const kabar_schema *kabar_schema_builtin(void)
{
    pthread_once(&builtin_once, builtin_init);
    return builtin;
}

static pthread_once_t default_once = PTHREAD_ONCE_INIT;
static kabar_schema *env_schema;
static kabar_error env_error;
static bool env_set;

static void default_init(void)
{
    const char *path = getenv("KABAR_SCHEMA");
    if (path == NULL || path[0] == '\0')
        return;
    env_set = true;
    if (kabar_schema_load(&env_schema, path, &env_error) != 0) {
        char msg[KABAR_ERROR_MESSAGE_MAX];
        snprintf(msg, sizeof msg, "%s", env_error.message);
        kabar_error_set(&env_error, env_error.code, "KABAR_SCHEMA: %s", msg);
    }
}

const kabar_schema *kabar_schema_default(kabar_error *err)
{
    pthread_once(&default_once, default_init);
    if (!env_set)
        return kabar_schema_builtin();
    if (env_schema == NULL && err != NULL)
        *err = env_error;
    return env_schema;
}

size_t kabar_schema_count(const kabar_schema *s)
{
    return s ? s->ntypes : 0;
}

const char *kabar_schema_type_name(const kabar_schema *s, size_t i)
{
    return s && i < s->ntypes ? s->types[i].name : NULL;
}

/* ------------------------------------------------------------------------ */
/* Lookups (schema_internal.h)                                              */

const sch_type *schema_find_type(const kabar_schema *s, const char *name, uint32_t len)
{
    size_t lo = 0, hi = s->ntypes;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = mpr_key_order(s->types[mid].name, s->types[mid].name_len, name, len);
        if (c == 0)
            return &s->types[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const sch_version *schema_find_version(const sch_type *t, uint32_t v)
{
    for (uint32_t i = 0; i < t->nversions; i++) {
        if (t->versions[i].v == v)
            return &t->versions[i];
    }
    return NULL;
}

const sch_field *schema_find_field(const sch_object *o, const char *name, uint32_t len)
{
    uint32_t lo = 0, hi = o->nfields;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = mpr_key_order(o->fields[mid].name, o->fields[mid].name_len, name, len);
        if (c == 0)
            return &o->fields[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}
