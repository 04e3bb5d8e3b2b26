/*
 * calls.h - kabard's CALL methods (design45 section 4, PROTOCOL.md "CALL").
 *
 * A CALL is [1, "CALL", req, method, params map]; its answer is
 * [1, "RESULT", req, map] or ERR. The methods: whoami, the registry
 * (agency.add, .list, .show, .revoke_key, .rotate_key) and the audit
 * queries (audit.checkpoint, .checkpoints, .prove, .consistency, .batch,
 * .records). Each is authorized here from the caller's principal
 * (auth_check_call); a refusal is counted and logged through auth_refused.
 *
 * Registry changes are durable store transactions of their own
 * (store_agency_put / store_key_put); after one the environment's reader is
 * refreshed and the registry cache reloaded, so that a revoked key stops
 * working with the very next message.
 */
#ifndef KABARD_CALLS_H
#define KABARD_CALLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "ckpt.h"
#include "kabar.h"
#include "store.h"

/* What a CALL runs against; borrowed from the server for one call. */
typedef struct calls_env {
    store *st;
    store_reader *rd; /* fresh (at the head); refreshed by registry changes */
    auth *au;
    ckpt *ck;
    const auth_principal *who;
    bool secure;
    int64_t now;     /* ns, wall clock */
    int64_t mono_ms; /* for the rate-limited log */
} calls_env;

/*
 * Run `method` with `params` (a msgpack map; len 0 means {}) for env->who
 * and write the whole reply header [1, "RESULT", req, map] into `out`
 * (cleared first). Returns 0, or the code to answer with ERR, err->message
 * saying why (a refusal's rule, a bad parameter, UNKNOWN_METHOD).
 */
int calls_run(calls_env *env, uint64_t req, const char *method, size_t mlen, const uint8_t *params,
              size_t plen, kabar_buf *out, kabar_error *err);

#endif /* KABARD_CALLS_H */
