/*
 * intake.h - where local services hand events to the agent.
 *
 * A ZeroMQ ROUTER bound to ipc://DIR/agent.sock. A request is one
 * multipart message whose LAST frame is the event, in JSON (EVENTS.md's
 * JSON form, first non-blank byte '{') or in canonical msgpack; every frame
 * before it (REQ's empty delimiter, a DEALER's request tag) is echoed in
 * the reply, whose last frame is a JSON object:
 *
 *     {"ok":true,"id":"insp-2023-014","pos":42}
 *     {"ok":false,"error":"MISSING_FIELD","message":"body.due: required field missing"}
 *
 * The event is validated against the schema (the agent's early check; the
 * broker's is authoritative), its source set to or checked against the
 * agent's agency, and it is stored in the outbox durably BEFORE the reply
 * says ok. All requests read in one turn are stored in one transaction
 * (group commit); `pos` is the event's local outbox position.
 * proto/kabar_agent.h is the C client of this socket.
 */
#ifndef KABAR_AGENT_INTAKE_H
#define KABAR_AGENT_INTAKE_H

#include <stddef.h>
#include <stdint.h>

#include "agentdb.h"
#include "kabar.h"

#define INTAKE_MAX_TURN    1024      /* requests stored per transaction */
#define INTAKE_MAX_REQUEST (1 << 20) /* bytes; a larger frame drops the connection */

typedef struct intake intake;

typedef struct intake_opts {
    const char *dir;    /* the data directory (absolute): the socket is DIR/agent.sock */
    const char *agency; /* events are published as this agency */
    const kabar_schema *schema;
    agentdb *db;
    void (*on_stored)(void *arg); /* called after each commit that stored events */
    void *arg;
} intake_opts;

/* Bind the socket (removing a stale socket file). *out set only on success. */
int intake_open(intake **out, const intake_opts *o, kabar_error *err);
/*
 * One turn: wait up to timeout_ms for requests, read what is ready, answer
 * bad ones, store the good ones in one transaction, answer them. Returns
 * 0, or an error for a failure of the socket itself (a failed store is an
 * answer to the requests, not an error here). EINTR returns 0.
 */
int intake_turn(intake *in, int timeout_ms, kabar_error *err);
/* Close the socket and remove the socket file. */
void intake_close(intake **in);

/*
 * Validate one request body for `agency`: JSON or canonical msgpack.
 * On success *out (malloc'd, caller frees) holds the canonical event and
 * id_out its id. Errors: the codec's codes; KABAR_BAD_VALUE for a source
 * that is not `agency`.
 */
int intake_validate(const kabar_schema *schema, const char *agency, const void *req, size_t len,
                    uint8_t **out, size_t *outlen, char id_out[KABAR_MAX_ID_LEN + 1],
                    kabar_error *err);

/* The reply object for one request (err NULL or code 0: ok). Appends to out. */
int intake_reply(kabar_buf *out, const kabar_error *e, const char *id, uint64_t pos);

#endif /* KABAR_AGENT_INTAKE_H */
