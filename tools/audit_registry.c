/*
 * audit_registry.c - the auditor's key -> agency mapping (audit_registry.h).
 */
#include "audit_registry.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "kkey.h"

static int push(audit_registry *r, const audit_trusted_key *k, kabar_error *err)
{
    if (r->n == r->cap) {
        if (r->cap >= AUDIT_REGISTRY_MAX_KEYS)
            return kabar_error_set(err, KABAR_BAD_VALUE, "more than %d keys in the registry",
                                   AUDIT_REGISTRY_MAX_KEYS);
        size_t cap = r->cap ? r->cap * 2 : 32;
        audit_trusted_key *p = realloc(r->k, cap * sizeof *p);
        if (p == NULL)
            return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory reading the registry");
        r->k = p;
        r->cap = cap;
    }
    r->k[r->n++] = *k;
    return 0;
}

static bool agency_ok(const char *id)
{
    size_t n = strlen(id);
    return n >= 1 && n <= KABAR_MAX_AGENCY_LEN;
}

/* One agency object (line `line` of the file) -> its keys. */
static int load_agency(audit_registry *r, json_t *a, const char *name, size_t line,
                       kabar_error *err)
{
    json_t *jid = json_object_get(a, "id"), *keys = json_object_get(a, "keys");
    if (!json_is_object(a) || !json_is_string(jid) || !json_is_array(keys))
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "%s:%zu: not an agency (an object with \"id\" and \"keys\", as "
                               "'kabar agency list --format json' prints)",
                               name, line);
    const char *id = json_string_value(jid);
    if (!agency_ok(id))
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "%s:%zu: agency id \"%.40s\" is not 1-%d bytes", name, line, id,
                               KABAR_MAX_AGENCY_LEN);
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k)
    {
        audit_trusted_key t = {.valid_from = INT64_MIN, .revoked_at = INT64_MAX};
        kabar_error e = {0};
        json_t *jk = json_object_get(k, "key"), *vf = json_object_get(k, "valid_from"),
               *ra = json_object_get(k, "revoked_at");
        const char *kt = json_string_value(jk);
        if (!json_is_object(k) || kt == NULL || strncmp(kt, "ed25519:", 8) != 0 ||
            kkey_public_parse(t.pk, kt, &e) != 0)
            return kabar_error_set(
                err, KABAR_BAD_VALUE,
                "%s:%zu: agency %s: keys[%zu] has no \"key\": \"ed25519:...\"%s%s", name, line, id,
                i, e.code ? ": " : "", e.message);
        if (vf != NULL && !json_is_null(vf) &&
            (!json_is_string(vf) ||
             kabar_time_parse(json_string_value(vf), json_string_length(vf), &t.valid_from, &e)))
            return kabar_error_set(
                err, KABAR_BAD_VALUE,
                "%s:%zu: agency %s: keys[%zu].valid_from is not an RFC 3339 time", name, line, id,
                i);
        if (ra != NULL && !json_is_null(ra) &&
            (!json_is_string(ra) ||
             kabar_time_parse(json_string_value(ra), json_string_length(ra), &t.revoked_at, &e)))
            return kabar_error_set(
                err, KABAR_BAD_VALUE,
                "%s:%zu: agency %s: keys[%zu].revoked_at is not an RFC 3339 time", name, line, id,
                i);
        memcpy(t.agency, id, strlen(id) + 1);
        int rc = push(r, &t, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int load_value(audit_registry *r, json_t *v, const char *name, size_t line, kabar_error *err)
{
    if (!json_is_array(v))
        return load_agency(r, v, name, line, err);
    size_t i;
    json_t *a;
    json_array_foreach(v, i, a)
    {
        int rc = load_agency(r, a, name, line, err);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int audit_registry_load(audit_registry *r, const char *text, size_t len, const char *name,
                        kabar_error *err)
{
    size_t n0 = r->n, line = 1, agencies = 0;
    size_t i = 0;
    while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r' || text[i] == '\n'))
        i++;
    int rc = 0;
    if (i < len && text[i] == '[') {
        /* A JSON array of agencies (the whole file). */
        json_error_t je;
        json_t *v = json_loadb(text, len, 0, &je);
        if (v == NULL)
            rc = kabar_error_set(err, KABAR_BAD_JSON, "%s:%d: %s", name, je.line, je.text);
        else {
            rc = load_value(r, v, name, 1, err);
            agencies = json_array_size(v);
        }
        json_decref(v);
    } else {
        /* JSON Lines: one agency per line. */
        for (size_t p = 0; p < len && rc == 0; line++) {
            const char *nl = memchr(text + p, '\n', len - p);
            size_t e = nl ? (size_t)(nl - text) : len;
            size_t a = p;
            while (a < e && (text[a] == ' ' || text[a] == '\t' || text[a] == '\r'))
                a++;
            if (a < e) {
                json_error_t je;
                json_t *v = json_loadb(text + a, e - a, 0, &je);
                if (v == NULL)
                    rc = kabar_error_set(err, KABAR_BAD_JSON, "%s:%zu: %s", name, line, je.text);
                else
                    rc = load_agency(r, v, name, line, err);
                json_decref(v);
                agencies++;
            }
            p = e + 1;
        }
    }
    if (rc == 0 && agencies == 0)
        rc = kabar_error_set(err, KABAR_BAD_VALUE,
                             "%s: no agency in it (give what 'kabar agency list --format json' "
                             "prints)",
                             name);
    if (rc != 0)
        r->n = n0;
    return rc;
}

int audit_registry_add_spec(audit_registry *r, const char *spec, kabar_error *err)
{
    const char *eq = strchr(spec, '=');
    audit_trusted_key t = {.valid_from = INT64_MIN, .revoked_at = INT64_MAX};
    if (eq == NULL || eq == spec || (size_t)(eq - spec) > KABAR_MAX_AGENCY_LEN || eq[1] == '\0')
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT,
                               "--agency-key \"%.80s\": give ID=KEY (an agency id of 1-%d bytes, "
                               "'=', and ed25519:BASE64 or a file holding it)",
                               spec, KABAR_MAX_AGENCY_LEN);
    memcpy(t.agency, spec, (size_t)(eq - spec));
    t.agency[eq - spec] = '\0';
    kabar_error e = {0};
    if (kkey_public_parse(t.pk, eq + 1, &e) != 0)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "--agency-key %s: %s", t.agency,
                               e.message);
    return push(r, &t, err);
}

void audit_registry_free(audit_registry *r)
{
    free(r->k);
    r->k = NULL;
    r->n = r->cap = 0;
}

audit_reg_verdict audit_registry_check(const audit_registry *r, const uint8_t pk[32],
                                       const char *source, size_t source_len, int64_t t,
                                       const audit_trusted_key **found)
{
    audit_reg_verdict best = AUDIT_REG_UNKNOWN;
    *found = NULL;
    for (size_t i = 0; i < r->n; i++) {
        const audit_trusted_key *k = &r->k[i];
        if (memcmp(k->pk, pk, 32) != 0)
            continue;
        bool own = strlen(k->agency) == source_len && memcmp(k->agency, source, source_len) == 0;
        if (!own) {
            if (best == AUDIT_REG_UNKNOWN) {
                best = AUDIT_REG_NOT_SOURCE;
                *found = k;
            }
            continue;
        }
        if (kkey_valid_at(k->valid_from, k->revoked_at, t)) {
            *found = k;
            return AUDIT_REG_OK;
        }
        best = AUDIT_REG_NOT_VALID;
        *found = k;
    }
    return best;
}
