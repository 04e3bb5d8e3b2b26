/*
 * kabar.h - libkabar, the public API of the kabar coordination bus.
 *
 * Everything that talks to a kabar broker links this library: the `kabar`
 * command-line tool, the agency agents and any C program of an agency's own.
 * It holds the event model (a canonical msgpack map validated against the
 * schema registry), the error codes, the JSON form of events and the client
 * side of the wire protocol (proto/PROTOCOL.md).
 *
 * Conventions, as in the rest of the project:
 *  - Functions that can fail return an int: 0 (KABAR_OK) or a kabar_err code.
 *    When a `kabar_error *err` is passed (it may be NULL), it is filled with
 *    the code and a message a person can act on ("body.due: not a valid date
 *    (expected YYYY-MM-DD)").
 *  - x_new / x_open(&out, ...) set *out only on success; x_destroy(&p)
 *    accepts NULL and sets *p to NULL.
 *  - Times are int64 nanoseconds since the Unix epoch, UTC.
 *  - Nothing here is thread-safe: one object, one thread at a time.
 */
#ifndef KABAR_H
#define KABAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define KABAR_PROTOCOL_VERSION 1
#define KABAR_DEFAULT_ENDPOINT "tcp://127.0.0.1:7450"

/*
 * The release of kabar this library belongs to ("0.1.0"), from
 * project(kabar VERSION ...) in CMakeLists.txt: every program prints it for
 * --version and the broker reports it in STATUS. A static string; never NULL.
 */
const char *kabar_version(void);

/*
 * Limits. Documented in proto/PROTOCOL.md ("Limits"); an event that exceeds
 * one is rejected with KABAR_LIMIT (or KABAR_TOO_BIG for the size).
 */
#define KABAR_MAX_EVENT_BYTES 65536 /* encoded size of one event */
#define KABAR_MAX_ID_LEN      128   /* envelope id, bytes */
#define KABAR_MAX_TYPE_LEN    64    /* envelope type, bytes */
#define KABAR_MAX_AGENCY_LEN  32    /* agency id slug, bytes */
#define KABAR_MAX_CORR_LEN    128   /* envelope corr, bytes */
#define KABAR_MAX_TARGETS     64    /* entries in targets */
#define KABAR_MAX_STRING_LEN  4096  /* body strings whose schema gives no max */
#define KABAR_MAX_ARRAY_ITEMS 256   /* body arrays whose schema gives no max */
#define KABAR_MAX_MAP_ENTRIES 64    /* entries in any map */
#define KABAR_MAX_DEPTH       8     /* nesting of maps and arrays, envelope = 1 */

/*
 * Errors. One list, one enum; the NAME is the stable code that travels on
 * the wire and in the CLI's JSON output ("MISSING_FIELD"); the number is
 * this library's and may change between versions.
 */
#define KABAR_ERRORS(X)                                                                            \
    X(OK, "ok")                                                                                    \
    X(INVALID_ARGUMENT, "invalid argument")                                                        \
    X(NO_MEMORY, "out of memory")                                                                  \
    X(MALFORMED, "malformed msgpack")                                                              \
    X(NOT_CANONICAL, "not in canonical msgpack form")                                              \
    X(TOO_BIG, "event too large")                                                                  \
    X(LIMIT, "limit exceeded")                                                                     \
    X(UNKNOWN_TYPE, "unknown event type")                                                          \
    X(UNKNOWN_VERSION, "unknown schema version for this type")                                     \
    X(MISSING_FIELD, "required field missing")                                                     \
    X(UNKNOWN_FIELD, "unknown field")                                                              \
    X(WRONG_TYPE, "field has the wrong type")                                                      \
    X(BAD_VALUE, "field value not allowed")                                                        \
    X(BAD_JSON, "invalid JSON")                                                                    \
    X(BAD_SCHEMA, "invalid schema file")                                                           \
    X(PROTOCOL, "protocol error")                                                                  \
    X(BAD_VERSION, "unsupported protocol version")                                                 \
    X(UNKNOWN_COMMAND, "unknown command")                                                          \
    X(UNKNOWN_SUBSCRIPTION, "unknown subscription")                                                \
    X(UNKNOWN_CONSUMER, "unknown durable consumer")                                                \
    X(DISK_FULL, "the log's disk or size limit is full")                                           \
    X(STORE, "log storage error")                                                                  \
    X(LOCKED, "data directory in use by another process")                                          \
    X(IO, "input/output error")                                                                    \
    X(NOT_FOUND, "not found")                                                                      \
    X(CONNECT, "cannot reach the broker")                                                          \
    X(TIMEOUT, "timed out")                                                                        \
    X(SHUTTING_DOWN, "broker is shutting down")                                                    \
    X(UNSIGNED, "event is not signed")                                                             \
    X(BAD_SIGNATURE, "signature does not verify")                                                  \
    X(UNKNOWN_KEY, "key not registered, or revoked")                                               \
    X(SIGNER_NOT_SOURCE, "signed by a key that is not the source agency's")                        \
    X(NOT_OWN_SOURCE, "may publish only as its own agency")                                        \
    X(CANNOT_PUBLISH, "this role may not publish")                                                 \
    X(NOT_OWN_TARGET, "may subscribe only to its own events and broadcasts")                       \
    X(NOT_OWN_CONSUMER, "durable consumer belongs to another principal")                           \
    X(ADMIN_ONLY, "only an admin may change the registry")                                         \
    X(AUDIT_ONLY, "only an auditor, oversight or admin may do this")                               \
    X(UNKNOWN_METHOD, "unknown method")                                                            \
    X(VERIFY_FAILED, "verification failed")                                                        \
    X(END, "end of stream")

typedef enum kabar_err {
#define KABAR_ERR_ENUM_(name, msg) KABAR_##name,
    KABAR_ERRORS(KABAR_ERR_ENUM_)
#undef KABAR_ERR_ENUM_
        KABAR_ERR_COUNT_
} kabar_err;

/* The human message of a code ("required field missing"); never NULL. */
const char *kabar_strerror(int code);
/* The stable name of a code ("MISSING_FIELD"); never NULL ("UNKNOWN"). */
const char *kabar_errname(int code);
/* The code of a stable name, or -1 when the name is not known. */
int kabar_errcode(const char *name);

#define KABAR_ERROR_MESSAGE_MAX 320

/* A code with the detail a person needs: which field, what was wrong. */
typedef struct kabar_error {
    int code;
    char message[KABAR_ERROR_MESSAGE_MAX];
} kabar_error;

/*
 * Fill `e` (which may be NULL) with `code` and a printf-formatted message,
 * and return `code`, so that `return kabar_error_set(err, KABAR_X, ...)`
 * reads as one step.
 */
int kabar_error_set(kabar_error *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------------------------ */
/* Strings, buffers, time                                                   */

/* A view of bytes owned by someone else; not NUL-terminated. */
typedef struct kabar_str {
    const char *ptr;
    uint32_t len;
} kabar_str;

/* A growable byte buffer. Zero-initialise; kabar_buf_free releases it. */
typedef struct kabar_buf {
    char *data;
    size_t len;
    size_t cap;
} kabar_buf;

int kabar_buf_append(kabar_buf *b, const void *p, size_t n); /* KABAR_NO_MEMORY */
void kabar_buf_free(kabar_buf *b);

/* Current time, ns since the epoch (CLOCK_REALTIME). */
int64_t kabar_now(void);

/*
 * RFC 3339 instants. Parsing accepts a date-time with seconds, an optional
 * fraction of up to 9 digits and `Z` or a numeric offset; the result is UTC
 * ns. Formatting writes UTC with `Z`, with 3, 6 or 9 fraction digits only
 * when the fraction is not zero ("2023-05-02T01:30:00.120Z"). `out` needs
 * KABAR_TIME_MAX bytes.
 */
#define KABAR_TIME_MAX 40
int kabar_time_parse(const char *s, size_t len, int64_t *ns, kabar_error *err);
size_t kabar_time_format(int64_t ns, char *out);

/* A new event id: a UUIDv7 in text form (36 chars + NUL in `out`). */
void kabar_id_new(char out[37]);

/* ------------------------------------------------------------------------ */
/* The schema registry                                                      */

/*
 * The registry of event types and their body fields (proto/schema/
 * events.json, documented in proto/PROTOCOL.md "Schema registry"). The
 * file's content is compiled into the library; another file can be loaded
 * at run time (kabard --schema, kabar --schema, env KABAR_SCHEMA).
 */
typedef struct kabar_schema kabar_schema;

/* The compiled-in registry. Never NULL; lives as long as the process. */
const kabar_schema *kabar_schema_builtin(void);
int kabar_schema_parse(kabar_schema **out, const char *json, size_t len, kabar_error *err);
int kabar_schema_load(kabar_schema **out, const char *path, kabar_error *err);
void kabar_schema_destroy(kabar_schema **s);
/*
 * The registry to use for this process: the file named by env KABAR_SCHEMA
 * if set (loaded once), else the built-in one. NULL only if KABAR_SCHEMA
 * names a file that does not load, and then `err` says why.
 */
const kabar_schema *kabar_schema_default(kabar_error *err);
/* Number of types, and the i-th type's name (sorted by name). */
size_t kabar_schema_count(const kabar_schema *s);
const char *kabar_schema_type_name(const kabar_schema *s, size_t i);

/* ------------------------------------------------------------------------ */
/* Events                                                                   */

/*
 * A decoded event. Every kabar_str points into the bytes that were decoded:
 * the event is valid as long as those bytes are.
 */
typedef struct kabar_event {
    kabar_str id;
    kabar_str type;
    uint32_t v;
    kabar_str source;
    uint32_t ntargets; /* 0: broadcast */
    kabar_str targets[KABAR_MAX_TARGETS];
    bool has_occurred_at;
    int64_t occurred_at; /* ns, UTC */
    kabar_str corr;      /* .ptr == NULL when absent */
    const uint8_t *body; /* the body map's msgpack bytes */
    size_t body_len;
} kabar_event;

/* An agency id: ^[a-z0-9][a-z0-9-]{1,31}$ (EVENTS.md "Conventions"). */
bool kabar_agency_valid(const char *s, size_t len);

/*
 * Strictly decode one event: `bytes` must be exactly one msgpack map in
 * canonical form (PROTOCOL.md "Canonical encoding") whose envelope and body
 * are valid against `schema`. With schema == NULL only the envelope is
 * decoded and checked (for events already validated, read from the log).
 * Returns 0, or the first problem found with its path in err->message
 * ("body.recommendations[0].rec_id: required field missing").
 */
int kabar_event_decode(const kabar_schema *schema, const void *bytes, size_t len, kabar_event *ev,
                       kabar_error *err);

/*
 * Build a canonical event from one JSON object (EVENTS.md's JSON form).
 * `id` is generated (kabar_id_new) and `occurred_at` set to now when absent;
 * `v` defaults to the newest version of `type`; fields the schema marks as
 * targets (visit host, finding auditee, ...) are added to `targets`; when
 * `source` is absent and default_source is not NULL, it is used. Read-only
 * fields (`seq`, `received_at`) are ignored. The result is validated with
 * kabar_event_decode. On success *out is malloc'd (caller frees) and
 * *outlen set.
 */
int kabar_event_from_json(const kabar_schema *schema, const char *json, size_t len,
                          const char *default_source, uint8_t **out, size_t *outlen,
                          kabar_error *err);

/*
 * Append one event as a JSON object (no newline) to `out`, keys in the
 * order of EVENTS.md: seq, id, type, v, source, targets, occurred_at,
 * received_at, corr, body. seq == 0 and received_at == INT64_MIN are
 * omitted (an event not yet in the log). `bytes` must be a valid event.
 */
int kabar_event_to_json(kabar_buf *out, uint64_t seq, int64_t received_at, const void *bytes,
                        size_t len, kabar_error *err);

/* ------------------------------------------------------------------------ */
/* The client                                                               */

typedef struct kabar_client kabar_client;
typedef struct kabar_sub kabar_sub;
typedef struct kkey kkey; /* an identity key: proto/kkey.h */

typedef struct kabar_client_opts {
    int timeout_ms;  /* give up on an unanswered request / dead broker; default 10000 */
    uint32_t window; /* unacked events in flight, default 256, at least 1 */
    /*
     * The client's identity (copied at connect; the caller may wipe it
     * after): the ZeroMQ CURVE transport key and the key that signs every
     * PUB. NULL: plaintext and unsigned, for a broker run with --insecure.
     */
    const struct kkey *key;
    /* The broker's Ed25519 public key (32 bytes; DATA/broker.pub), pinned:
     * required with `key`, ignored without it. */
    const uint8_t *server_key;
} kabar_client_opts;

/*
 * Connect a DEALER socket to `endpoint` and check that a broker answers
 * (PING). Fails with KABAR_CONNECT when none answers within timeout_ms: a
 * CURVE handshake that fails (a key the broker does not know, the wrong
 * server key) looks the same as no broker, and the message says to check
 * both. KABAR_INVALID_ARGUMENT for a bad endpoint, a key without
 * server_key, or a server key that is not a valid Ed25519 key.
 * opts may be NULL for the defaults.
 */
int kabar_client_connect(kabar_client **out, const char *endpoint, const kabar_client_opts *opts,
                         kabar_error *err);
void kabar_client_destroy(kabar_client **c);

/* The outcome of one published event, delivered to the result callback. */
typedef struct kabar_pub_result {
    void *user;            /* what was passed to kabar_client_publish */
    uint64_t seq;          /* 0 when rejected */
    bool duplicate;        /* the (source, id) was already in the log: seq is the original's */
    int code;              /* KABAR_OK or the rejection's code */
    const char *message;   /* rejection message, "" when accepted; valid during the callback */
    uint8_t leaf_hash[32]; /* accepted: the event's Merkle leaf hash in the broker's log */
    bool has_leaf_hash;    /* false: rejected, or a broker that does not send it */
} kabar_pub_result;

typedef void (*kabar_pub_cb)(void *arg, const kabar_pub_result *r);
void kabar_client_on_result(kabar_client *c, kabar_pub_cb cb, void *arg);

/*
 * Publish one event (canonical bytes; copied). Results come through the
 * callback, in publishing order, from inside kabar_client_publish and
 * kabar_client_flush. Blocks while `window` events are unacked. Returns
 * non-zero only when the broker cannot be reached (KABAR_CONNECT /
 * KABAR_TIMEOUT); a rejected event is a result, not a return code.
 */
int kabar_client_publish(kabar_client *c, const void *bytes, size_t len, void *user,
                         kabar_error *err);
/* Send what is queued and wait for every result. */
int kabar_client_flush(kabar_client *c, kabar_error *err);

/*
 * Sign the events published from now on with `k` (copied), or with the
 * client's own key when k is NULL (unsigned when the client has none).
 * The events already published keep the signer they were published
 * under: the batch being formed is cut here. For an admin importing
 * events of many sources, each signed by its source agency's key.
 * KABAR_INVALID_ARGUMENT only for a NULL client.
 */
int kabar_client_set_signer(kabar_client *c, const struct kkey *k, kabar_error *err);

/*
 * One CALL (PROTOCOL.md "CALL and RESULT"): `params` is the msgpack bytes
 * of one map (NULL or len 0: {}); the RESULT map's msgpack bytes are
 * appended to `out` (caller frees). A refusal returns its code
 * (ADMIN_ONLY, AUDIT_ONLY, UNKNOWN_METHOD, NOT_FOUND, ...) with the
 * broker's text in err. A read-only method (whoami, agency.list,
 * agency.show, audit.*) is asked again after a reconnection; any other
 * returns KABAR_CONNECT if the connection drops before its answer, since
 * the broker may or may not have done it.
 */
int kabar_client_call(kabar_client *c, const char *method, const void *params, size_t len,
                      kabar_buf *out, kabar_error *err);

/* What the broker reports of its log. */
typedef struct kabar_head {
    uint64_t seq;             /* last committed seq, 0 when empty */
    uint64_t count;           /* events in the log */
    int64_t last_received_at; /* INT64_MIN when empty */
} kabar_head;
int kabar_client_head(kabar_client *c, kabar_head *h, kabar_error *err);

/* The broker's STATUS reply converted to a JSON object, appended to out. */
int kabar_client_status(kabar_client *c, kabar_buf *json_out, kabar_error *err);

typedef enum kabar_start {
    KABAR_START_FIRST = 0, /* the first event in the log */
    KABAR_START_NOW,       /* only events committed after subscribing */
    KABAR_START_SEQ,       /* from seq (inclusive) */
    KABAR_START_TIME,      /* from the first event received at or after time */
} kabar_start;

typedef struct kabar_sub_opts {
    const char *type_prefix; /* "finding." or "finding.raised"; NULL: any */
    const char *source;      /* NULL: any */
    const char *target;      /* events that concern this agency (target or broadcast) */
    kabar_start start;
    uint64_t seq;        /* KABAR_START_SEQ */
    int64_t time;        /* KABAR_START_TIME, ns */
    const char *durable; /* durable consumer name: resume after its last ack */
    uint64_t until_seq;  /* stop after this seq (0: no bound) */
    bool until_head;     /* stop at the head as of subscribing (replay) */
    uint32_t credit;     /* events the broker may send ahead; default 1024, at most 16384 */
} kabar_sub_opts;

/* A record as the log holds it. Pointers valid until the next call on the sub. */
typedef struct kabar_record {
    uint64_t seq;
    int64_t received_at;
    const uint8_t *bytes;
    size_t len;
} kabar_record;

int kabar_client_subscribe(kabar_client *c, const kabar_sub_opts *opts, kabar_sub **out,
                           kabar_error *err);
/*
 * The next record: returns 0 with *rec filled, KABAR_TIMEOUT when none came
 * within timeout_ms (-1: wait for ever), KABAR_END when a bounded
 * subscription is complete, or another error. Credit is granted back to
 * the broker as records are consumed.
 */
int kabar_sub_next(kabar_sub *s, kabar_record *rec, int timeout_ms, kabar_error *err);
/* Durable consumers: record that everything up to seq was handled. */
int kabar_sub_ack(kabar_sub *s, uint64_t seq, kabar_error *err);
/*
 * End the subscription and free it. For a durable consumer that acked
 * something, it first waits (at most 2 s, one HEAD round trip) until the
 * broker has read the last ack, so that a process which acks and exits
 * keeps its position; publish results may be delivered meanwhile.
 */
void kabar_sub_close(kabar_sub **s);

#ifdef __cplusplus
}
#endif
#endif /* KABAR_H */
