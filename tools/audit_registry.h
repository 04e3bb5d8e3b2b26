/*
 * audit_registry.h - the key -> agency mapping an auditor trusts, for
 * `kabar audit check-export`.
 *
 * An export carries, beside each signed event, its batch's signer key and
 * the agency and validity the exporter's registry gives for it. Those
 * fields are not covered by any Merkle leaf or checkpoint: whoever writes
 * the export can sign a fake one-event batch with a key of their own and
 * claim any agency for it. So the checker takes the mapping from the
 * auditor instead:
 *
 *  - `--registry FILE`: what `kabar agency list --format json` prints (one
 *    agency object per line; a JSON array of them, or one object as `kabar
 *    agency show --format json` prints it, is read too), which the auditor
 *    confirmed with the agencies. Each agency's "id" and its "keys", each
 *    with "key" (ed25519:BASE64), "valid_from" and, when revoked,
 *    "revoked_at" (RFC 3339). Other fields are ignored.
 *  - `--agency-key ID=KEY` (repeatable): key KEY (ed25519:..., or a file
 *    holding it) belongs to agency ID, with no validity bounds.
 *
 * A key is valid at t iff valid_from <= t and (no revoked_at or
 * t < revoked_at). A key may be given more than once (both options, or
 * rotated back): audit_registry_check accepts when any entry for it says
 * the key belonged to the event's source and was valid at t.
 */
#ifndef KABAR_AUDIT_REGISTRY_H
#define KABAR_AUDIT_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "kabar.h"

#define AUDIT_REGISTRY_MAX_KEYS 1000000 /* a file asking for more is refused */

typedef struct audit_trusted_key {
    uint8_t pk[32];
    char agency[KABAR_MAX_AGENCY_LEN + 1];
    int64_t valid_from; /* INT64_MIN: always */
    int64_t revoked_at; /* INT64_MAX: never */
} audit_trusted_key;

typedef struct audit_registry {
    audit_trusted_key *k;
    size_t n, cap;
} audit_registry; /* zero-initialise; audit_registry_free */

/*
 * Add the keys of a registry file's text (not NUL-terminated; name is the
 * file name for messages). KABAR_BAD_JSON / KABAR_BAD_VALUE naming the
 * line and what is wrong; nothing is added then.
 */
int audit_registry_load(audit_registry *r, const char *text, size_t len, const char *name,
                        kabar_error *err);

/* Add "ID=KEY" (KEY: ed25519:... or a file holding it). */
int audit_registry_add_spec(audit_registry *r, const char *spec, kabar_error *err);

void audit_registry_free(audit_registry *r);

typedef enum audit_reg_verdict {
    AUDIT_REG_OK,         /* the key belonged to `source` and was valid at t */
    AUDIT_REG_UNKNOWN,    /* the key is not in the registry */
    AUDIT_REG_NOT_SOURCE, /* the key belongs to another agency (*found says which) */
    AUDIT_REG_NOT_VALID,  /* the source's key, but not valid at t (*found: its bounds) */
} audit_reg_verdict;

/* What the registry says of key pk signing an event of `source` received at t. */
audit_reg_verdict audit_registry_check(const audit_registry *r, const uint8_t pk[32],
                                       const char *source, size_t source_len, int64_t t,
                                       const audit_trusted_key **found);

#endif
