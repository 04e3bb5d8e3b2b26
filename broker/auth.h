/*
 * auth.h - who is speaking to kabard, and what they may do.
 *
 * Three parts, all used only by the server's loop (one thread):
 *
 * The registry cache. The agency registry lives in the log's LMDB
 * (store.h: `agencies`, `keys`); kabard keeps it in memory as one entry per
 * registered key: the key, its agency and role, its validity, its
 * Curve25519 form (the ZeroMQ CURVE key) and its User-Id "AGENCY/KEYID".
 * Entries are found through hash tables by User-Id, by Ed25519 key and by
 * Curve25519 key. auth_load rebuilds the cache from a store reader: at
 * start and after each registry change, so a revoked key stops working at
 * once (the next message carries the same User-Id, whose entry is now
 * revoked).
 *
 * The ZAP handler (RFC 27, ZeroMQ Authentication Protocol). In secure
 * mode the ROUTER socket is a CURVE server in ZAP domain "kabar"; libzmq
 * asks the REP socket bound at inproc://zeromq.zap.01 about each handshake.
 * auth_zap_handle answers one request: 200 with User-Id "AGENCY/KEYID" when
 * the client's CURVE key is the curve form of a registered key valid now,
 * 400 otherwise (logged, rate limited, with the peer's address).
 *
 * The rules (PROTOCOL.md "Principals"). The auth_check_* functions are
 * pure: a principal and a request in, 0 or the refusing rule's code out.
 * The anonymous principal (--insecure) may do everything. auth_refused
 * counts a refusal by code and logs it (rate limited): principal, rule and
 * command, never the payload.
 */
#ifndef KABARD_AUTH_H
#define KABARD_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kabar.h"
#include "store.h"

typedef enum auth_role {
    AUTH_NONE = 0, /* an unknown role string in the registry: no rights */
    AUTH_AGENT,
    AUTH_OVERSIGHT,
    AUTH_AUDITOR,
    AUTH_ADMIN,
    AUTH_ANONYMOUS, /* --insecure: every right */
} auth_role;

#define AUTH_USER_ID_MAX (KABAR_MAX_AGENCY_LEN + 1 + 16 + 1) /* "AGENCY/KEYID" + NUL */

/* One registered key with what it speaks for. */
typedef struct auth_principal {
    char agency[KABAR_MAX_AGENCY_LEN + 1]; /* "" for the anonymous principal */
    auth_role role;
    char user_id[AUTH_USER_ID_MAX]; /* "AGENCY/KEYID" */
    char key_id[17];                /* 16 hex */
    uint8_t pk[32];                 /* Ed25519 */
    uint8_t curve_pk[32];
    int64_t valid_from;
    int64_t revoked_at; /* INT64_MAX when valid */
} auth_principal;

/* The principal of every peer under --insecure. */
extern const auth_principal auth_anonymous;

typedef struct auth auth;

/* An empty cache. KABAR_NO_MEMORY. */
int auth_new(auth **out, kabar_error *err);
void auth_destroy(auth **a);

/*
 * Replace the cache with the registry as `rd` sees it. On failure the old
 * cache stays. A key whose agency is missing is skipped (logged).
 */
int auth_load(auth *a, store_reader *rd, kabar_error *err);

/*
 * Empty the cache: nobody is known, so no handshake is admitted and every
 * message of a connected peer is refused UNKNOWN_KEY. What kabard does when
 * a registry change was stored but the cache could not be reloaded (fail
 * closed: the old cache could still admit a key just revoked), until a
 * later auth_load succeeds. The refusal and handshake counts are kept.
 */
void auth_clear(auth *a);

/* Keys in the cache, and how many are valid at `now` (ns). */
size_t auth_count(const auth *a);
size_t auth_count_valid(const auth *a, int64_t now);

/* Lookups; NULL when unknown. The result lives until the next auth_load. */
const auth_principal *auth_by_user_id(const auth *a, const char *user_id, size_t len);
const auth_principal *auth_by_pk(const auth *a, const uint8_t pk[32]);
const auth_principal *auth_by_curve(const auth *a, const uint8_t curve_pk[32]);

/* valid_from <= now < revoked_at; the anonymous principal always. */
bool auth_valid(const auth_principal *p, int64_t now);

/* "agent", ...; and back (AUTH_NONE when unknown). */
const char *auth_role_name(auth_role r);
auth_role auth_role_parse(const char *s);

/* ------------------------------------------------------------------------ */
/* Rules: 0 or the refusing code.                                           */

/* May publish at all: CANNOT_PUBLISH for auditor (and unknown roles). */
int auth_check_publish(const auth_principal *p);
/* One event's source: NOT_OWN_SOURCE unless own agency (admin, anonymous: any). */
int auth_check_source(const auth_principal *p, kabar_str source);
/* The batch signer must be the event's source agency: SIGNER_NOT_SOURCE. */
int auth_check_signer(const auth_principal *signer, kabar_str source);
/* SUB with this target filter ({NULL,0} = none): NOT_OWN_TARGET for an agent not naming its own. */
int auth_check_sub(const auth_principal *p, kabar_str target);
/* A durable consumer owned by `owner` ("" nobody): NOT_OWN_CONSUMER unless it is p's agency. */
int auth_check_consumer(const auth_principal *p, const char *owner);
/* A CALL method: ADMIN_ONLY / AUDIT_ONLY; UNKNOWN_METHOD when there is no such method. */
int auth_check_call(const auth_principal *p, const char *method, size_t len);

/* ------------------------------------------------------------------------ */
/* ZAP and refusals                                                         */

/*
 * Receive one ZAP request on `zap` (a REP socket) without blocking and
 * answer it. Returns 1 when a request was handled, 0 when none was waiting,
 * or KABAR_IO when the socket failed for good.
 */
int auth_zap_handle(auth *a, void *zap, int64_t now, int64_t mono_ms);

/* Count a refusal of `command` by rule `code` and log it (rate limited). */
void auth_refused(auth *a, const auth_principal *p, int code, const char *command, int64_t mono_ms);
/* Refusals counted by code since start (code < KABAR_ERR_COUNT_). */
uint64_t auth_refusals(const auth *a, int code);
/* Admitted and denied handshakes since start. */
void auth_zap_counts(const auth *a, uint64_t *admitted, uint64_t *denied);
/* Flush the rate-limited log lines (the timer phase). */
void auth_flush(auth *a, int64_t mono_ms);

#endif /* KABARD_AUTH_H */
