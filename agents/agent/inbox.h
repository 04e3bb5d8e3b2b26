/*
 * inbox.h - the agent's inbox: the broker -> the agency's services.
 *
 * A thread of its own with its own kabar_client and one durable
 * subscription, named INBOX_PREFIX + agency, with target = the agency: the
 * broker sends the events that name the agency in `targets`, and
 * broadcasts, from the first one in the log for a new consumer, else from
 * after its last ack. Each event is handed to the services (handoff.h);
 * a failed hand-off is tried again with backoff (200 ms doubling, at most
 * 5 s apart) up to max_tries times in all, then the event is parked as a
 * dead letter in the agent store and the inbox goes on with the next one.
 *
 * Order of the steps for a batch of events (at most INBOX_BATCH, or what
 * arrived within a second):
 *     hand off each -> handoff_sync (fsync the JSON-lines file)
 *     -> record inbox_pos in the agent store (durable)
 *     -> kabar_sub_ack to the broker
 * Events at or below the recorded inbox_pos are skipped when the broker
 * sends them again (after a crash between the last two steps), so a
 * JSON-lines consumer sees each event once unless the agent dies between
 * the fsync and the store commit; an exec handler may see an event again
 * if the agent dies while it runs (at-least-once).
 *
 * With a key the subscription speaks CURVE; the broker lets the agent
 * subscribe only with target = its agency, and the durable consumer
 * belongs to the agency that created it (another principal gets
 * NOT_OWN_CONSUMER). Refusals are logged with what to do and retried
 * with backoff.
 *
 * Dead letters re-queued by `kabar agent inbox --retry` are picked up
 * between events (and at least once a second when the inbox is idle).
 */
#ifndef KABAR_AGENT_INBOX_H
#define KABAR_AGENT_INBOX_H

#include <stdatomic.h>
#include <stdint.h>

#include "agentdb.h"
#include "handoff.h"
#include "kabar.h"

#define INBOX_PREFIX "inbox-"
#define INBOX_BATCH  256

typedef struct inbox inbox;

typedef struct inbox_opts {
    const char *endpoint;
    const char *agency;
    agentdb *db;
    handoff *out;       /* not owned */
    uint32_t max_tries; /* at least 1 */
    int timeout_ms;     /* the client's */
    atomic_bool *stop;
    const struct kkey *key;    /* NULL: plaintext (--insecure) */
    const uint8_t *server_key; /* the broker's Ed25519 public key, with key */
} inbox_opts;

int inbox_start(inbox **out, const inbox_opts *o, kabar_error *err);
/* Wait for the thread to end (after *stop was set) and free it. */
void inbox_join(inbox **in);

#endif /* KABAR_AGENT_INBOX_H */
