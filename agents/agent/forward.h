/*
 * forward.h - the agent's forwarder: outbox -> broker, in order, until acked.
 *
 * A thread of its own with its own kabar_client. It publishes outbox
 * entries in position order with a window, deletes each from the outbox
 * only after the broker's ACK (a permanent rejection moves it to the
 * rejected list instead), and survives broker restarts and network cuts:
 * when the client gives up (KABAR_CONNECT / KABAR_TIMEOUT) it is dropped,
 * and connecting is retried with exponential backoff (100 ms doubling to
 * FORWARD_BACKOFF_MAX_MS); after a reconnect everything still in the
 * outbox is sent again from its first entry. Re-sending is safe because
 * the broker deduplicates by (source, id): an event it already has is
 * acked with its original seq.
 *
 * Transient rejections (DISK_FULL, STORE, SHUTTING_DOWN, ...) are not
 * final: the entry stays and is sent again after a backoff.
 *
 * Trust (with a key; docs/AGENT.md "Keys"): the client speaks CURVE with
 * the agency's key, pins the broker's public key and signs each PUB batch.
 * After connecting, the forwarder asks the broker who it is (CALL whoami):
 * a key that belongs to another agency, or to a principal that may not
 * publish (auditor, admin), is a configuration problem. So are rejections
 * that concern the whole batch rather than an event: UNKNOWN_KEY (the key
 * was revoked, or is not valid yet), BAD_SIGNATURE, UNSIGNED and
 * CANNOT_PUBLISH. For those the events stay in the outbox (never in the
 * rejected list), an error says what to do, the condition is recorded for
 * `kabar agent status` (agentdb_set_problem), and the forwarder tries
 * again with backoff (1 s doubling to FORWARD_PROBLEM_BACKOFF_MAX_MS).
 * NOT_OWN_SOURCE and SIGNER_NOT_SOURCE concern one event: they are
 * permanent, like a validation error (the rejected list).
 *
 * Liveness: while idle the forwarder asks the broker for its head every
 * FORWARD_PROBE_MS, so a dead broker is noticed within seconds (logged as
 * KABAR-AGENT-BROKER-DOWN, and KABAR-AGENT-BROKER-UP when it is back); the
 * connection state and the broker's head are recorded in the agent store
 * for `kabar agent status`.
 */
#ifndef KABAR_AGENT_FORWARD_H
#define KABAR_AGENT_FORWARD_H

#include <stdatomic.h>
#include <stdint.h>

#include "agentdb.h"
#include "kabar.h"

#define FORWARD_BACKOFF_MAX_MS         3000
#define FORWARD_PROBE_MS               1000
#define FORWARD_BATCH                  1024 /* entries read from the outbox per round */
#define FORWARD_PROBLEM_BACKOFF_MAX_MS 30000

typedef struct forward forward;

typedef struct forward_opts {
    const char *endpoint;
    const char *agency; /* the agent's: the principal its key must belong to */
    agentdb *db;
    int timeout_ms;  /* the client's: a broker silent this long is gone */
    uint32_t window; /* unacked events in flight */
    atomic_bool *stop;
    const struct kkey *key;    /* NULL: plaintext, unsigned (--insecure) */
    const uint8_t *server_key; /* the broker's Ed25519 public key, with key */
} forward_opts;

/* Start the thread. *out set only on success. */
int forward_start(forward **out, const forward_opts *o, kabar_error *err);
/* New events are in the outbox: wake the thread. Any thread may call it. */
void forward_notify(forward *f);
/* Wait for the thread to end (after *stop was set) and free it. */
void forward_join(forward **f);

/* Is this rejection code worth retrying (the broker's trouble, not the event's)? */
bool forward_transient(int code);
/*
 * Is this rejection a configuration problem of the agent's key or role,
 * for the whole batch (kept in the outbox, retried, reported)?
 */
bool forward_key_problem(int code);

#endif /* KABAR_AGENT_FORWARD_H */
