/*
 * agency_ops.h - the operations of `kabar agency` on the registry of
 * agencies and their keys (private to tools/cmd_agency.c and
 * tools/agency_ops.c).
 *
 * Two ways to the registry, one result: offline, the broker's LMDB log
 * opened directly (agency_store_*); online, a CALL agency.* through the
 * broker (agency_call). Both give the same JSON agency object (the CALL's
 * agency map: id, name, region, org, role, created_at, keys; keys in text
 * form, times in RFC 3339), or for list a JSON array of them. What is
 * printed, and with which exit code, is cmd_agency.c's business.
 */
#ifndef KABAR_AGENCY_OPS_H
#define KABAR_AGENCY_OPS_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "kabar.h"
#include "store.h"

/* The subcommands, in the order of cmd_agency.c's VERBS table. */
typedef enum agency_verb {
    AGENCY_ADD,
    AGENCY_LIST,
    AGENCY_SHOW,
    AGENCY_REVOKE_KEY,
    AGENCY_ROTATE_KEY
} agency_verb;

/* One `kabar agency` invocation, as parsed and checked by cmd_agency.c. */
typedef struct agency_args {
    agency_verb v;
    const char *id;
    const char *name, *region, *org, *role;
    const char *key, *revoke; /* as given */
    uint8_t pk[32], old_pk[32];
    const char *broker, *data;
    bool json;
    kabar_client_opts copts;
} agency_args;

/* Offline: the store */

/*
 * Open the log in `data`: read-only unless `write` (then created when
 * missing, and refused with KABAR_LOCKED while kabard runs on it). Sets *s
 * only on success; the caller closes it with store_close. The error says
 * what to do instead.
 */
int agency_store_open(const char *data, bool write, store **s, kabar_error *err);

/*
 * Check and make the change of a->v (add, revoke-key, rotate-key) in the
 * open, writable store, timestamped now. 0, or an error: KABAR_NOT_FOUND
 * (no such agency, or the key is not its key), KABAR_INVALID_ARGUMENT
 * (already registered, key already revoked), or the store's error.
 */
int agency_store_change(store *s, const agency_args *a, kabar_error *err);

/*
 * Every agency (id == NULL: a JSON array) or agency `id` (the JSON object)
 * as the store has it, keys oldest first. *out is the caller's to
 * json_decref, set only on success; KABAR_NOT_FOUND when there is no `id`.
 */
int agency_store_read(store *s, const char *id, json_t **out, kabar_error *err);

/* Online: CALL agency.* through the broker */

/*
 * One CALL of the method for verb v (agency.add, agency.list, ...) with the
 * params taken from a. *out is the RESULT map as JSON (for list an object
 * with "agencies"; for add only {"id"}), the caller's to json_decref, set
 * only on success. Fails with the broker's error (its refusal code and
 * message) or KABAR_PROTOCOL when the RESULT is not a msgpack map.
 */
int agency_call(kabar_client *c, const agency_args *a, agency_verb v, json_t **out,
                kabar_error *err);

#endif /* KABAR_AGENCY_OPS_H */
