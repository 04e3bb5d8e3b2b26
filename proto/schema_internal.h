/*
 * schema_internal.h - the compiled schema registry, shared by schema.c
 * (which builds it from events.json), event.c (which validates bodies
 * against it) and json.c (which converts JSON guided by it). Not public.
 *
 * The registry is read-only once built. Types are sorted by name, versions
 * by number, and an object's fields in canonical map-key order
 * (mpr_key_order), so that a body map, whose keys arrive in that same order,
 * is checked against its fields in one merge walk without any lookup.
 */
#ifndef KABAR_SCHEMA_INTERNAL_H
#define KABAR_SCHEMA_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "kabar.h"

/* Maximum fields marked "target" in one type (checked when parsing). */
#define SCH_MAX_TARGET_FIELDS 8

typedef enum sch_kind {
    SCH_STRING,
    SCH_AGENCY,
    SCH_DATE,
    SCH_INSTANT,
    SCH_INT,
    SCH_NUMBER,
    SCH_BOOL,
    SCH_ENUM,
    SCH_ARRAY,
    SCH_OBJECT,
} sch_kind;

typedef struct sch_field sch_field;
typedef struct sch_object sch_object;

struct sch_field {
    const char *name; /* NUL-terminated; NULL for array items */
    uint32_t name_len;
    sch_kind kind;
    bool required;
    bool target;
    uint32_t min_len, max_len; /* SCH_STRING, bytes */
    bool has_min, has_max;     /* SCH_INT, SCH_NUMBER */
    int64_t min, max;
    const char *const *values; /* SCH_ENUM */
    const uint32_t *value_lens;
    uint32_t nvalues;
    uint32_t min_items, max_items; /* SCH_ARRAY */
    const sch_field *items;
    const sch_object *object; /* SCH_OBJECT */
};

/* A cross-field rule: fields[a] <= fields[b] when both are present. */
typedef struct sch_rule {
    uint32_t a, b;
} sch_rule;

struct sch_object {
    const sch_field *fields; /* canonical key order */
    uint32_t nfields;
    const sch_rule *rules;
    uint32_t nrules;
};

typedef struct sch_version {
    uint32_t v;
    sch_object body;
    uint32_t ntargets; /* top-level body fields with target: true */
    uint32_t target_fields[SCH_MAX_TARGET_FIELDS];
} sch_version;

typedef struct sch_type {
    const char *name;
    uint32_t name_len;
    const sch_version *versions; /* ascending by v */
    uint32_t nversions;
} sch_type;

/* The type called name[0..len), or NULL. */
const sch_type *schema_find_type(const kabar_schema *s, const char *name, uint32_t len);
/* The version v of a type, or NULL. */
const sch_version *schema_find_version(const sch_type *t, uint32_t v);
/* The field called name[0..len) of an object, or NULL. */
const sch_field *schema_find_field(const sch_object *o, const char *name, uint32_t len);

#endif /* KABAR_SCHEMA_INTERNAL_H */
