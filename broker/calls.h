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
 * Registry changes (agency.add, .revoke_key, .rotate_key) are each ONE
 * durable store transaction (store_registry_apply): an agency with its
 * key, a new key with the revocation of the old one, all stored or none.
 * After one the environment's reader is refreshed and the registry cache
 * reloaded, so that a revoked key stops working with the very next
 * message; when that reload fails the cache is emptied (auth_clear: nobody
 * is admitted, fail closed), it is logged, and env->reload_failed tells the
 * server to retry.
 *
 * The time of a registry change (a new key's valid_from, a revocation's
 * revoked_at) is calls_change_time: env->now, but strictly after the
 * received_at of every event in the log. So an event already stored was
 * received while the key that signed it was valid, and `kabar audit verify`
 * agrees. The server's part (server.c): it runs a registry change only
 * when no event of its turn waits for its commit, and it never again
 * commits events with a received_at, or checks keys at a time, before the
 * change's time (env->changed_at).
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
    int64_t mono_ms; /* monotonic: the rate-limited log, on-demand checkpoints */
    /* out */
    int64_t changed_at; /* a registry change was stored at this time (ns); 0: none */
    bool reload_failed; /* it was, but the cache could not be reloaded: it is empty now */
} calls_env;

/* Does this method change the registry (agency.add, .revoke_key, .rotate_key)? */
bool calls_changes_registry(const char *method, size_t len);

/*
 * The time a registry change made now takes effect: max(env->now, the
 * received_at of the log's last event + 1), read through env->rd (which
 * must be at the head). The store's error when the last record cannot be
 * read.
 */
int calls_change_time(calls_env *env, int64_t *at, kabar_error *err);

/*
 * Run `method` with `params` (a msgpack map; len 0 means {}) for env->who
 * and write the whole reply header [1, "RESULT", req, map] into `out`
 * (cleared first). Returns 0, or the code to answer with ERR, err->message
 * saying why (a refusal's rule, a bad parameter, UNKNOWN_METHOD).
 */
int calls_run(calls_env *env, uint64_t req, const char *method, size_t mlen, const uint8_t *params,
              size_t plen, kabar_buf *out, kabar_error *err);

#endif /* KABARD_CALLS_H */
