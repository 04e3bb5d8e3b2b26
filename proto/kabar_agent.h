/*
 * kabar_agent.h - hand events to the local kabar-agent (C API for services).
 *
 * An agency's services do not talk to the broker: they give each event to
 * the agent running beside them (kabar-agent --data DIR), which stores it
 * in its durable outbox before it answers and forwards it to the broker
 * until acked, across broker restarts. This is the client of the agent's
 * socket, ipc://DIR/agent.sock (protocol in docs/AGENT.md "Intake").
 *
 *     kabar_agent *a;
 *     kabar_agent_receipt r;
 *     if (kabar_agent_connect(&a, "/var/lib/kabar-agent", 0, &err) == 0 &&
 *         kabar_agent_submit(a, json, strlen(json), &r, &err) == 0)
 *         printf("stored as %s (outbox position %llu)\n", r.id, r.pos);
 *     kabar_agent_close(&a);
 *
 * A success means the event is on the agent's disk: it will reach the
 * broker even if the agent or the broker restarts. A rejected event (bad
 * schema, a source other than the agent's agency) fails with its code and
 * message at once and is not stored.
 *
 * Same conventions as kabar.h; one kabar_agent per thread.
 */
#ifndef KABAR_AGENT_API_H
#define KABAR_AGENT_API_H

#include <stddef.h>
#include <stdint.h>

#include "kabar.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct kabar_agent kabar_agent;

/*
 * Connect to the agent whose data directory is `dir`. timeout_ms bounds
 * each submit (0: 30000). Fails with KABAR_CONNECT when no agent socket
 * exists there. *out set only on success.
 */
int kabar_agent_connect(kabar_agent **out, const char *dir, int timeout_ms, kabar_error *err);
void kabar_agent_close(kabar_agent **a);

/* What the agent answered for a stored event. */
typedef struct kabar_agent_receipt {
    char id[KABAR_MAX_ID_LEN + 1]; /* the event's id (generated when the JSON had none) */
    uint64_t pos;                  /* its position in the agent's outbox */
} kabar_agent_receipt;

/*
 * Submit one event: a JSON object (EVENTS.md's JSON form; source may be
 * omitted) or canonical msgpack bytes. A JSON event without "id" gets one
 * here, before it is sent, so that r->id is known even when the call
 * fails with KABAR_TIMEOUT: submitting the same event again with that id
 * is then safe (the broker stores an id once per source). Returns 0 with
 * *r filled, the agent's rejection (its code and message), KABAR_TIMEOUT
 * when the agent did not answer in time, or KABAR_BAD_JSON for input
 * that is not a JSON object.
 */
int kabar_agent_submit(kabar_agent *a, const void *event, size_t len, kabar_agent_receipt *r,
                       kabar_error *err);

#ifdef __cplusplus
}
#endif
#endif /* KABAR_AGENT_API_H */
