/*
 * event.c - strict decoding of one event: the envelope, fixed in code, and
 * the body, validated against the schema registry (kabar_event_decode).
 *
 * This runs in the broker for every published event, so it never allocates
 * and reads every byte once (the body twice: skipped while the envelope is
 * read, because its type and version come after it in canonical key order,
 * then validated). The envelope's keys in canonical order:
 *
 *   body, corr, id, occurred_at, source, targets, type, v
 *
 * Design notes on messages: the validator keeps a small stack of path
 * frames (a field name or an array index) instead of a path string, and
 * renders "body.recommendations[0].rec_id" only when something is wrong.
 * Every message starts with that path and says what was expected.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "mpr.h"
#include "schema_internal.h"

/* ------------------------------------------------------------------------ */
/* Validation context and messages                                          */

typedef struct frame {
    const char *name; /* NULL: an array index */
    uint32_t len;
    uint32_t index;
} frame;

typedef struct vctx {
    kabar_error *err;
    const sch_type *type;
    const sch_version *ver;
    bool lax_skip; /* the body will be validated: skip it without canonical checks */
    int depth;
    frame frames[KABAR_MAX_DEPTH + 2];
    kabar_str target_vals[SCH_MAX_TARGET_FIELDS];
} vctx;

static void push_name(vctx *c, const char *name, uint32_t len)
{
    c->frames[c->depth++] = (frame){.name = name, .len = len};
}

static void push_index(vctx *c, uint32_t i)
{
    c->frames[c->depth++] = (frame){.name = NULL, .index = i};
}

static void render_path(const vctx *c, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; i < c->depth && n + 1 < cap; i++) {
        const frame *f = &c->frames[i];
        int w = f->name ? snprintf(out + n, cap - n, "%s%.*s", i ? "." : "", (int)f->len, f->name)
                        : snprintf(out + n, cap - n, "[%u]", f->index);
        if (w < 0)
            break;
        n += (size_t)w;
    }
    if (n == 0)
        snprintf(out, cap, "event");
}

static int fail(vctx *c, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(vctx *c, int code, const char *fmt, ...)
{
    if (c->err == NULL)
        return code;
    char path[160], what[KABAR_ERROR_MESSAGE_MAX];
    render_path(c, path, sizeof path);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return kabar_error_set(c->err, code, "%s: %s", path, what);
}

/* Prefix an mpr error (which names the offset) with the current path. */
static int next(vctx *c, mpr *r, mpr_item *it)
{
    kabar_error e;
    int rc = mpr_next(r, it, c->err ? &e : NULL);
    if (rc != 0)
        return fail(c, rc, "%s", c->err ? e.message : "");
    return KABAR_OK;
}

/* Write s as a quoted, printable excerpt for a message. */
static const char *quote(char *out, size_t cap, const char *s, uint32_t len)
{
    size_t n = 0;
    out[n++] = '"';
    for (uint32_t i = 0; i < len && n + 8 < cap; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f || ch == '"' || ch == '\\')
            n += (size_t)snprintf(out + n, cap - n, "\\x%02x", ch);
        else
            out[n++] = (char)ch;
        if (i + 1 < len && n + 8 >= cap) {
            memcpy(out + n, "...", 3);
            n += 3;
        }
    }
    out[n++] = '"';
    out[n] = '\0';
    return out;
}

static const char *kind_name(mpr_kind k)
{
    static const char *const names[] = {
        "nil", "a boolean", "an integer", "an integer",  "a float", "a string",
        "bin", "an array",  "a map",      "a timestamp", "an ext",
    };
    return (unsigned)k < sizeof names / sizeof names[0] ? names[k] : "?";
}

/* ------------------------------------------------------------------------ */
/* Value checks                                                             */

enum { TEXT_ANY = 0, TEXT_PRINTABLE = 1 };

/*
 * Check that s is valid UTF-8 (no overlong forms, surrogates or code points
 * above U+10FFFF) without control characters: none at all when `mode` is
 * TEXT_PRINTABLE, else none but tab, line feed and carriage return.
 */
static int check_text(vctx *c, const char *str, uint32_t len, int mode)
{
    const unsigned char *s = (const unsigned char *)str;
    uint32_t i = 0;
    /* Fast path: 8 bytes at a time while they are all printable ASCII. */
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    while (len - i >= 8) {
        uint64_t w, x;
        memcpy(&w, s + i, 8);
        x = w ^ (0x7f * ones);
        if (((w | ((w - 0x20 * ones) & ~w) | ((x - ones) & ~x)) & highs) != 0)
            break;
        i += 8;
    }
    while (i < len) {
        unsigned char b = s[i];
        if (b >= 0x20 && b < 0x7f) {
            i++;
            continue;
        }
        if (b < 0x80) {
            if (mode == TEXT_ANY && (b == '\t' || b == '\n' || b == '\r')) {
                i++;
                continue;
            }
            return fail(c, KABAR_BAD_VALUE, "control character U+%04X at byte %u is not allowed%s",
                        b, i, mode == TEXT_ANY ? " (only tab, line feed and carriage return)" : "");
        }
        uint32_t need, cp, min;
        if (b >= 0xc2 && b <= 0xdf) {
            need = 1, cp = b & 0x1f, min = 0x80;
        } else if (b >= 0xe0 && b <= 0xef) {
            need = 2, cp = b & 0x0f, min = 0x800;
        } else if (b >= 0xf0 && b <= 0xf4) {
            need = 3, cp = b & 0x07, min = 0x10000;
        } else {
            return fail(c, KABAR_BAD_VALUE, "invalid UTF-8 byte 0x%02x at byte %u", b, i);
        }
        if (len - i <= need)
            return fail(c, KABAR_BAD_VALUE, "truncated UTF-8 sequence at byte %u", i);
        for (uint32_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return fail(c, KABAR_BAD_VALUE, "invalid UTF-8 sequence at byte %u", i);
            cp = cp << 6 | (s[i + k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return fail(c, KABAR_BAD_VALUE,
                        "invalid UTF-8 (overlong, surrogate or beyond U+10FFFF) at byte %u", i);
        if (mode == TEXT_PRINTABLE && cp >= 0x80 && cp <= 0x9f)
            return fail(c, KABAR_BAD_VALUE, "control character U+%04X at byte %u is not allowed",
                        cp, i);
        i += need + 1;
    }
    return KABAR_OK;
}

bool kabar_agency_valid(const char *s, size_t len)
{
    if (s == NULL || len < 2 || len > KABAR_MAX_AGENCY_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || (ch == '-' && i > 0)))
            return false;
    }
    return true;
}

static int check_slug(vctx *c, const char *s, uint32_t len)
{
    if (kabar_agency_valid(s, len))
        return KABAR_OK;
    char q[64];
    return fail(c, KABAR_BAD_VALUE,
                "%s is not an agency id (expected a slug like dinkes: 2 to 32 of a-z, 0-9 and -, "
                "not starting with -)",
                quote(q, sizeof q, s, len));
}

static int dig2(const char *s)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
        return -1;
    return (s[0] - '0') * 10 + (s[1] - '0');
}

static bool is_date(const char *s, uint32_t len)
{
    if (len != 10 || s[4] != '-' || s[7] != '-')
        return false;
    int c1 = dig2(s), c2 = dig2(s + 2), m = dig2(s + 5), d = dig2(s + 8);
    if (c1 < 0 || c2 < 0 || m < 1 || m > 12 || d < 1)
        return false;
    int y = c1 * 100 + c2;
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int max = dim[m - 1] + (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0));
    return y >= 1 && d <= max;
}

/* ------------------------------------------------------------------------ */
/* The body                                                                 */

static int check_value(vctx *c, mpr *r, const sch_field *f, int level);

static int wrong_type(vctx *c, const char *expected, const mpr_item *it)
{
    return fail(c, KABAR_WRONG_TYPE, "expected %s, found %s", expected, kind_name(it->kind));
}

static int check_string(vctx *c, const sch_field *f, const mpr_item *it)
{
    if (it->kind != MPR_STR)
        return wrong_type(c, "a string", it);
    if (it->len > f->max_len)
        return fail(c, KABAR_LIMIT, "string of %u bytes is longer than the limit of %u bytes",
                    it->len, f->max_len);
    if (it->len < f->min_len)
        return fail(c, KABAR_BAD_VALUE, "%s",
                    f->min_len == 1 ? "must not be empty" : "string is too short");
    return check_text(c, it->str, it->len, TEXT_ANY);
}

static int check_enum(vctx *c, const sch_field *f, const mpr_item *it)
{
    if (it->kind != MPR_STR)
        return wrong_type(c, "a string", it);
    for (uint32_t i = 0; i < f->nvalues; i++) {
        if (f->value_lens[i] == it->len && memcmp(f->values[i], it->str, it->len) == 0)
            return KABAR_OK;
    }
    char list[200], q[64];
    size_t n = 0;
    for (uint32_t i = 0; i < f->nvalues && n + 1 < sizeof list; i++) {
        int w = snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", f->values[i]);
        n += w > 0 ? (size_t)w : 0;
    }
    return fail(c, KABAR_BAD_VALUE, "%s is not one of: %s", quote(q, sizeof q, it->str, it->len),
                list);
}

static int check_range(vctx *c, const sch_field *f, const mpr_item *it)
{
    if (it->kind == MPR_FLOAT) {
        if ((f->has_min && it->f < (double)f->min) || (f->has_max && it->f > (double)f->max))
            goto out;
        return KABAR_OK;
    }
    if (it->kind == MPR_UINT) {
        /* Integers are int64 everywhere (JSON readers and the CLI's arithmetic). */
        if (it->u > INT64_MAX)
            return fail(c, KABAR_BAD_VALUE, "%llu is out of range (integers are 64-bit signed)",
                        (unsigned long long)it->u);
        if ((f->has_min && f->min > 0 && it->u < (uint64_t)f->min) ||
            (f->has_max && (f->max < 0 || it->u > (uint64_t)f->max)))
            goto out;
        return KABAR_OK;
    }
    if ((f->has_min && it->i < f->min) || (f->has_max && it->i > f->max))
        goto out;
    return KABAR_OK;
out:
    if (f->has_min && f->has_max)
        return fail(c, KABAR_BAD_VALUE, "out of range (expected %lld to %lld)", (long long)f->min,
                    (long long)f->max);
    if (f->has_min)
        return fail(c, KABAR_BAD_VALUE, "out of range (expected at least %lld)", (long long)f->min);
    return fail(c, KABAR_BAD_VALUE, "out of range (expected at most %lld)", (long long)f->max);
}

static int check_array(vctx *c, mpr *r, const sch_field *f, const mpr_item *it, int level)
{
    if (it->kind != MPR_ARRAY)
        return wrong_type(c, "an array", it);
    if (level + 1 > KABAR_MAX_DEPTH)
        return fail(c, KABAR_LIMIT, "nested deeper than %d levels", KABAR_MAX_DEPTH);
    if (it->count > f->max_items)
        return fail(c, KABAR_LIMIT, "array of %u items is longer than the limit of %u", it->count,
                    f->max_items);
    if (it->count < f->min_items)
        return fail(c, KABAR_BAD_VALUE, "needs at least %u item%s, found %u", f->min_items,
                    f->min_items == 1 ? "" : "s", it->count);
    for (uint32_t i = 0; i < it->count; i++) {
        push_index(c, i);
        int rc = check_value(c, r, f->items, level + 1);
        if (rc != 0)
            return rc;
        c->depth--;
    }
    return KABAR_OK;
}

static int check_map(vctx *c, mpr *r, const sch_object *o, uint32_t count, int level);

static int check_value(vctx *c, mpr *r, const sch_field *f, int level)
{
    mpr_item it;
    int rc = next(c, r, &it);
    if (rc != 0)
        return rc;
    switch (f->kind) {
    case SCH_STRING:
        return check_string(c, f, &it);
    case SCH_AGENCY:
        if (it.kind != MPR_STR)
            return wrong_type(c, "an agency id string", &it);
        return check_slug(c, it.str, it.len);
    case SCH_DATE:
        if (it.kind != MPR_STR)
            return wrong_type(c, "a date string YYYY-MM-DD", &it);
        if (!is_date(it.str, it.len)) {
            char q[64];
            return fail(c, KABAR_BAD_VALUE, "%s is not a valid date (expected YYYY-MM-DD)",
                        quote(q, sizeof q, it.str, it.len));
        }
        return KABAR_OK;
    case SCH_INSTANT:
        if (it.kind != MPR_TIMESTAMP)
            return wrong_type(c, "a timestamp", &it);
        return KABAR_OK;
    case SCH_INT:
        if (it.kind != MPR_UINT && it.kind != MPR_INT)
            return wrong_type(c, "an integer", &it);
        return check_range(c, f, &it);
    case SCH_NUMBER:
        if (it.kind != MPR_UINT && it.kind != MPR_INT && it.kind != MPR_FLOAT)
            return wrong_type(c, "a number", &it);
        return check_range(c, f, &it);
    case SCH_BOOL:
        if (it.kind != MPR_BOOL)
            return wrong_type(c, "true or false", &it);
        return KABAR_OK;
    case SCH_ENUM:
        return check_enum(c, f, &it);
    case SCH_ARRAY:
        return check_array(c, r, f, &it, level);
    case SCH_OBJECT:
        if (it.kind != MPR_MAP)
            return wrong_type(c, "a map", &it);
        return check_map(c, r, f->object, it.count, level + 1);
    }
    return fail(c, KABAR_BAD_SCHEMA, "field of unknown kind in the schema");
}

/* A comparable value of a rule's field, read again from its position. */
typedef struct cval {
    bool is_num, is_float;
    int64_t i;
    uint64_t u;
    bool neg;
    double f;
    const char *s;
    uint32_t len;
} cval;

static cval read_cval(const mpr *map, size_t off)
{
    mpr r = *map;
    mpr_item it;
    cval v = {0};
    r.p = r.start + off;
    r.canonical = false; /* read and checked once already */
    if (mpr_next(&r, &it, NULL) != 0)
        return v;
    v.is_num = it.kind != MPR_STR;
    v.is_float = it.kind == MPR_FLOAT;
    v.neg = it.kind == MPR_INT || (it.kind == MPR_TIMESTAMP && it.i < 0);
    v.i = it.i;
    v.u = it.kind == MPR_TIMESTAMP && it.i >= 0 ? (uint64_t)it.i : it.u;
    v.f = it.kind == MPR_FLOAT ? it.f : it.kind == MPR_UINT ? (double)it.u : (double)it.i;
    v.s = it.str;
    v.len = it.len;
    return v;
}

/* a <= b for two values of comparable fields. */
static bool cval_le(const cval *a, const cval *b)
{
    if (!a->is_num)
        return mpr_key_order(a->s, a->len, b->s, b->len) <= 0;
    if (a->is_float || b->is_float)
        return a->f <= b->f;
    if (a->neg != b->neg)
        return a->neg;
    return a->neg ? a->i <= b->i : a->u <= b->u;
}

static int check_rules(vctx *c, const sch_object *o, const mpr *r, const size_t *at,
                       uint64_t present)
{
    for (uint32_t i = 0; i < o->nrules; i++) {
        const sch_rule *rule = &o->rules[i];
        if (!(present >> rule->a & 1) || !(present >> rule->b & 1))
            continue;
        cval a = read_cval(r, at[rule->a]), b = read_cval(r, at[rule->b]);
        if (cval_le(&a, &b))
            continue;
        const sch_field *fa = &o->fields[rule->a], *fb = &o->fields[rule->b];
        push_name(c, fa->name, fa->name_len);
        bool time = fa->kind == SCH_DATE || fa->kind == SCH_INSTANT;
        return fail(c, KABAR_BAD_VALUE, "must not be %s %s (the rule %s <= %s)",
                    time ? "after" : "more than", fb->name, fa->name, fb->name);
    }
    return KABAR_OK;
}

static void record_target(vctx *c, const sch_object *o, uint32_t fi, const mpr *r, size_t at)
{
    for (uint32_t k = 0; k < c->ver->ntargets; k++) {
        if (c->ver->target_fields[k] == fi && &c->ver->body == o) {
            /* An agency value: a str header of 1 byte (fixstr) or 2 (str8). */
            const uint8_t *p = r->start + at;
            uint32_t hdr = (*p & 0xe0) == 0xa0 ? 1 : 2;
            c->target_vals[k] = (kabar_str){(const char *)p + hdr, (uint32_t)(r->p - p) - hdr};
        }
    }
}

static int check_map(vctx *c, mpr *r, const sch_object *o, uint32_t count, int level)
{
    if (count > KABAR_MAX_MAP_ENTRIES)
        return fail(c, KABAR_LIMIT, "map of %u entries is larger than the limit of %d", count,
                    KABAR_MAX_MAP_ENTRIES);
    size_t at[KABAR_MAX_MAP_ENTRIES];
    uint64_t present = 0;
    uint32_t fi = 0;
    const sch_field *missing = NULL;
    const char *prev = NULL;
    uint32_t prev_len = 0;
    char q[64], q2[64];
    for (uint32_t e = 0; e < count; e++) {
        mpr_item key;
        int rc = next(c, r, &key);
        if (rc != 0)
            return rc;
        if (key.kind != MPR_STR)
            return fail(c, KABAR_WRONG_TYPE, "map key at offset %zu is %s; keys must be strings",
                        key.offset, kind_name(key.kind));
        if (prev != NULL) {
            int ord = mpr_key_order(prev, prev_len, key.str, key.len);
            if (ord == 0)
                return fail(c, KABAR_NOT_CANONICAL, "duplicate key %s at offset %zu",
                            quote(q, sizeof q, key.str, key.len), key.offset);
            if (ord > 0)
                return fail(c, KABAR_NOT_CANONICAL,
                            "keys not in canonical order at offset %zu (%s after %s)", key.offset,
                            quote(q, sizeof q, key.str, key.len),
                            quote(q2, sizeof q2, prev, prev_len));
        }
        prev = key.str;
        prev_len = key.len;
        int ord = 1;
        for (; fi < o->nfields; fi++) {
            const sch_field *f = &o->fields[fi];
            ord = mpr_key_order(f->name, f->name_len, key.str, key.len);
            if (ord >= 0)
                break;
            if (f->required && missing == NULL)
                missing = f; /* reported last: a typo or bad order says more */
        }
        if (fi == o->nfields || ord != 0) {
            push_name(c, key.str, key.len < 64 ? key.len : 64);
            if (check_text(c, key.str, key.len, TEXT_PRINTABLE) != 0) {
                c->depth--;
                return fail(c, KABAR_UNKNOWN_FIELD, "unknown field %s",
                            quote(q, sizeof q, key.str, key.len));
            }
            if (c->depth == 2)
                return fail(c, KABAR_UNKNOWN_FIELD,
                            "unknown field (not in %s v%u; check the "
                            "spelling)",
                            c->type->name, c->ver->v);
            return fail(c, KABAR_UNKNOWN_FIELD, "unknown field (check the spelling)");
        }
        const sch_field *f = &o->fields[fi];
        at[fi] = mpr_offset(r);
        present |= 1ull << fi;
        push_name(c, f->name, f->name_len);
        if ((rc = check_value(c, r, f, level)) != 0)
            return rc;
        c->depth--;
        if (f->target)
            record_target(c, o, fi, r, at[fi]);
        fi++;
    }
    for (; fi < o->nfields && missing == NULL; fi++) {
        if (o->fields[fi].required)
            missing = &o->fields[fi];
    }
    if (missing != NULL) {
        push_name(c, missing->name, missing->name_len);
        return fail(c, KABAR_MISSING_FIELD, "required field missing");
    }
    if (o->nrules > 0)
        return check_rules(c, o, r, at, present);
    return KABAR_OK;
}

/* ------------------------------------------------------------------------ */
/* The envelope                                                             */

enum { K_BODY, K_CORR, K_ID, K_OCCURRED_AT, K_SOURCE, K_TARGETS, K_TYPE, K_V, K_COUNT };

static const struct {
    const char *name;
    uint32_t len;
} env_keys[K_COUNT] = {
    {"body", 4},   {"corr", 4},    {"id", 2},   {"occurred_at", 11},
    {"source", 6}, {"targets", 7}, {"type", 4}, {"v", 1},
};

static int env_key(const mpr_item *key)
{
    for (int k = 0; k < K_COUNT; k++) {
        if (env_keys[k].len == key->len && memcmp(env_keys[k].name, key->str, key->len) == 0)
            return k;
    }
    return -1;
}

static int env_string(vctx *c, mpr *r, mpr_item *it, uint32_t min, uint32_t max)
{
    int rc = next(c, r, it);
    if (rc != 0)
        return rc;
    if (it->kind != MPR_STR)
        return wrong_type(c, "a string", it);
    if (it->len > max)
        return fail(c, KABAR_LIMIT, "%u bytes is longer than the limit of %u", it->len, max);
    if (it->len < min)
        return fail(c, KABAR_BAD_VALUE, "must not be empty");
    return check_text(c, it->str, it->len, TEXT_PRINTABLE);
}

static int env_targets(vctx *c, mpr *r, kabar_event *ev)
{
    mpr_item it;
    int rc = next(c, r, &it);
    if (rc != 0)
        return rc;
    if (it.kind != MPR_ARRAY)
        return wrong_type(c, "an array of agency ids", &it);
    /* One encoding per event: a broadcast has no targets key at all. */
    if (it.count == 0)
        return fail(c, KABAR_NOT_CANONICAL,
                    "an empty array is not canonical: omit targets for a broadcast");
    if (it.count > KABAR_MAX_TARGETS)
        return fail(c, KABAR_LIMIT, "%u targets is more than the limit of %d", it.count,
                    KABAR_MAX_TARGETS);
    for (uint32_t i = 0; i < it.count; i++) {
        mpr_item t;
        push_index(c, i);
        if ((rc = next(c, r, &t)) != 0)
            return rc;
        if (t.kind != MPR_STR)
            return wrong_type(c, "an agency id string", &t);
        if ((rc = check_slug(c, t.str, t.len)) != 0)
            return rc;
        for (uint32_t j = 0; j < i; j++) {
            if (ev->targets[j].len == t.len && memcmp(ev->targets[j].ptr, t.str, t.len) == 0) {
                char q[64];
                return fail(c, KABAR_BAD_VALUE, "%s is listed twice",
                            quote(q, sizeof q, t.str, t.len));
            }
        }
        ev->targets[i] = (kabar_str){t.str, t.len};
        c->depth--;
    }
    ev->ntargets = it.count;
    return KABAR_OK;
}

/* The body is only located here (type and v come after it); checked later. */
static int env_body(vctx *c, mpr *r, kabar_event *ev)
{
    mpr_item it;
    const uint8_t *start = r->p;
    int rc = next(c, r, &it);
    if (rc != 0)
        return rc;
    if (it.kind != MPR_MAP)
        return wrong_type(c, "a map", &it);
    r->p = start;
    kabar_error e;
    /* When a schema follows, its walk reports canonical form field by field. */
    r->canonical = !c->lax_skip;
    rc = mpr_skip(r, KABAR_MAX_DEPTH - 1, c->err ? &e : NULL);
    r->canonical = true;
    if (rc != 0) {
        if (rc == KABAR_LIMIT)
            return fail(c, rc, "nested deeper than %d levels", KABAR_MAX_DEPTH);
        return fail(c, rc, "%s", c->err ? e.message : "");
    }
    ev->body = start;
    ev->body_len = (size_t)(r->p - start);
    return KABAR_OK;
}

static int env_value(vctx *c, mpr *r, int k, kabar_event *ev)
{
    mpr_item it;
    int rc;
    switch (k) {
    case K_BODY:
        return env_body(c, r, ev);
    case K_CORR:
        if ((rc = env_string(c, r, &it, 0, KABAR_MAX_CORR_LEN)) == 0)
            ev->corr = (kabar_str){it.str, it.len};
        return rc;
    case K_ID:
        if ((rc = env_string(c, r, &it, 1, KABAR_MAX_ID_LEN)) == 0)
            ev->id = (kabar_str){it.str, it.len};
        return rc;
    case K_OCCURRED_AT:
        if ((rc = next(c, r, &it)) != 0)
            return rc;
        if (it.kind != MPR_TIMESTAMP)
            return wrong_type(c, "a timestamp", &it);
        ev->has_occurred_at = true;
        ev->occurred_at = it.i;
        return KABAR_OK;
    case K_SOURCE:
        if ((rc = next(c, r, &it)) != 0)
            return rc;
        if (it.kind != MPR_STR)
            return wrong_type(c, "an agency id string", &it);
        if ((rc = check_slug(c, it.str, it.len)) == 0)
            ev->source = (kabar_str){it.str, it.len};
        return rc;
    case K_TARGETS:
        return env_targets(c, r, ev);
    case K_TYPE:
        if ((rc = env_string(c, r, &it, 1, KABAR_MAX_TYPE_LEN)) == 0)
            ev->type = (kabar_str){it.str, it.len};
        return rc;
    default: /* K_V */
        if ((rc = next(c, r, &it)) != 0)
            return rc;
        if (it.kind != MPR_UINT)
            return wrong_type(c, "a positive integer", &it);
        if (it.u < 1 || it.u > UINT32_MAX)
            return fail(c, KABAR_BAD_VALUE, "%llu is not a schema version (expected 1 or more)",
                        (unsigned long long)it.u);
        ev->v = (uint32_t)it.u;
        return KABAR_OK;
    }
}

static int decode_envelope(vctx *c, mpr *r, kabar_event *ev)
{
    mpr_item it;
    int rc = next(c, r, &it);
    if (rc != 0)
        return rc;
    if (it.kind != MPR_MAP)
        return fail(c, KABAR_WRONG_TYPE, "an event is a msgpack map; found %s", kind_name(it.kind));
    if (it.count > KABAR_MAX_MAP_ENTRIES)
        return fail(c, KABAR_LIMIT, "map of %u entries is larger than the limit of %d", it.count,
                    KABAR_MAX_MAP_ENTRIES);
    unsigned seen = 0;
    int prev = -1;
    char q[64];
    for (uint32_t e = 0; e < it.count; e++) {
        mpr_item key;
        if ((rc = next(c, r, &key)) != 0)
            return rc;
        if (key.kind != MPR_STR)
            return fail(c, KABAR_WRONG_TYPE, "map key at offset %zu is %s; keys must be strings",
                        key.offset, kind_name(key.kind));
        int k = env_key(&key);
        if (k < 0)
            return fail(c, KABAR_UNKNOWN_FIELD,
                        "unknown envelope field %s (expected body, corr, id, occurred_at, source, "
                        "targets, type, v)",
                        quote(q, sizeof q, key.str, key.len));
        if (k == prev)
            return fail(c, KABAR_NOT_CANONICAL, "duplicate key \"%s\" at offset %zu",
                        env_keys[k].name, key.offset);
        if (k < prev)
            return fail(c, KABAR_NOT_CANONICAL,
                        "keys not in canonical order at offset %zu (\"%s\" after \"%s\")",
                        key.offset, env_keys[k].name, env_keys[prev].name);
        prev = k;
        seen |= 1u << k;
        push_name(c, env_keys[k].name, env_keys[k].len);
        if ((rc = env_value(c, r, k, ev)) != 0)
            return rc;
        c->depth--;
    }
    static const int required[] = {K_BODY, K_ID, K_SOURCE, K_TYPE, K_V};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
        if (!(seen >> required[i] & 1)) {
            push_name(c, env_keys[required[i]].name, env_keys[required[i]].len);
            return fail(c, KABAR_MISSING_FIELD, "required field missing");
        }
    }
    if (mpr_left(r) != 0)
        return fail(c, KABAR_MALFORMED, "%zu trailing bytes after the event map at offset %zu",
                    mpr_left(r), mpr_offset(r));
    return KABAR_OK;
}

static int check_body(vctx *c, const kabar_schema *schema, const uint8_t *bytes, kabar_event *ev)
{
    char q[80];
    c->type = schema_find_type(schema, ev->type.ptr, ev->type.len);
    if (c->type == NULL) {
        push_name(c, "type", 4);
        return fail(c, KABAR_UNKNOWN_TYPE, "%s is not a registered event type",
                    quote(q, sizeof q, ev->type.ptr, ev->type.len));
    }
    c->ver = schema_find_version(c->type, ev->v);
    if (c->ver == NULL) {
        push_name(c, "v", 1);
        return fail(c, KABAR_UNKNOWN_VERSION, "%s has no version %u (newest: %u)", c->type->name,
                    ev->v, c->type->versions[c->type->nversions - 1].v);
    }
    mpr r;
    mpr_init(&r, bytes, (size_t)(ev->body + ev->body_len - bytes));
    r.p = ev->body;
    mpr_item it;
    push_name(c, "body", 4);
    int rc = next(c, &r, &it);
    if (rc == 0)
        rc = check_map(c, &r, &c->ver->body, it.count, 2);
    if (rc != 0)
        return rc;
    c->depth = 0;
    for (uint32_t k = 0; k < c->ver->ntargets; k++) {
        const kabar_str *t = &c->target_vals[k];
        uint32_t i = 0;
        while (i < ev->ntargets &&
               (ev->targets[i].len != t->len || memcmp(ev->targets[i].ptr, t->ptr, t->len) != 0))
            i++;
        if (i == ev->ntargets) {
            const sch_field *f = &c->ver->body.fields[c->ver->target_fields[k]];
            push_name(c, "targets", 7);
            return fail(c, KABAR_BAD_VALUE, "must include %s (body.%s of %s)",
                        quote(q, sizeof q, t->ptr, t->len), f->name, c->type->name);
        }
    }
    return KABAR_OK;
}

int kabar_event_decode(const kabar_schema *schema, const void *bytes, size_t len, kabar_event *ev,
                       kabar_error *err)
{
    if (len > KABAR_MAX_EVENT_BYTES)
        return kabar_error_set(err, KABAR_TOO_BIG,
                               "event of %zu bytes is larger than the limit of %d bytes", len,
                               KABAR_MAX_EVENT_BYTES);
    if (bytes == NULL && len > 0)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "kabar_event_decode: NULL bytes");
    kabar_event local;
    if (ev == NULL)
        ev = &local;
    ev->id = ev->type = ev->source = ev->corr = (kabar_str){NULL, 0};
    ev->v = 0;
    ev->ntargets = 0;
    ev->has_occurred_at = false;
    ev->occurred_at = 0;
    ev->body = NULL;
    ev->body_len = 0;
    vctx c;
    c.err = err;
    c.depth = 0;
    c.type = NULL;
    c.ver = NULL;
    c.lax_skip = schema != NULL;
    mpr r;
    mpr_init(&r, bytes ? bytes : "", len);
    int rc = decode_envelope(&c, &r, ev);
    if (rc != 0 || schema == NULL)
        return rc;
    return check_body(&c, schema, bytes, ev);
}
