/*
 * wire.h - kabar's wire messages (protocol version 1), encode and decode.
 *
 * Transport: ZeroMQ. The broker binds one ROUTER socket; clients connect a
 * DEALER. A kabar message is one ZeroMQ multipart message whose first frame
 * (the header) is a msgpack array:
 *
 *     [version, "COMMAND", id, args...]
 *
 * `version` is 1. `id` is chosen by the sender of a request and echoed in
 * its reply (a publish batch number, a subscription number, a request
 * number). Encoded canonically (smallest ints). Unknown trailing header
 * elements and unknown map keys are ignored, so a later version can add
 * them; a different `version` is refused with ERR BAD_VERSION.
 *
 *   client -> broker
 *     PUB     [1,"PUB",batch]                + frames 1..n, one event each (1 <= n <= 1024)
 *     PUB     [1,"PUB",batch,[key,sig]]      the same, signed: key bin(32), the signer's
 *                                            Ed25519 public key; sig bin(64) over the
 *                                            batch (proto/batchsig.h)
 *     SUB     [1,"SUB",sub,opts]             opts: map, see wire_sub below
 *     CREDIT  [1,"CREDIT",sub,n]             the broker may send n more events
 *     CACK    [1,"CACK",sub,seq]             durable consumer handled everything <= seq
 *     UNSUB   [1,"UNSUB",sub]
 *     HEAD    [1,"HEAD",req]
 *     STATUS  [1,"STATUS",req]
 *     PING    [1,"PING",req]
 *     CALL    [1,"CALL",req,method,params]   method str, params map (PROTOCOL.md "CALL")
 *
 *   broker -> client
 *     ACK      [1,"ACK",batch,results]       one result per event, in order:
 *                                            [seq, duplicate, leaf_hash]  accepted
 *                                            [0, false, "CODE", "text"]   rejected
 *     SUBOK    [1,"SUBOK",sub,first,head]    events from seq `first` on will come
 *     EVT      [1,"EVT",sub,count]           + frame 1: `count` records back to back,
 *                                            each [seq, received_at, event(bin)]
 *     END      [1,"END",sub,last]            a bounded subscription is complete
 *     HEADOK   [1,"HEADOK",req,map]          {"seq","count","last_received_at"}
 *     STATUSOK [1,"STATUSOK",req,map]        see PROTOCOL.md "STATUS"
 *     PONG     [1,"PONG",req]
 *     RESULT   [1,"RESULT",req,map]          a CALL's answer
 *     ERR      [1,"ERR",id,"CODE","text"]    the request with this id failed
 *                                            (id 0 when the header was unreadable)
 *
 * SUB opts keys (all optional): "type" str (type prefix), "source" str,
 * "target" str, "start" str ("first"|"now"|"seq"|"time", default "first"),
 * "seq" uint, "time" timestamp, "durable" str, "until" uint (last seq),
 * "until_head" bool, "credit" uint.
 *
 * Liveness: a client sends PING at least every second while it has
 * nothing else to send; the broker forgets a peer's subscriptions after
 * KABAR_PEER_TIMEOUT_MS without any message from it. A client that hears
 * nothing (no reply, no PONG) for its timeout treats the broker as gone.
 */
#ifndef KABAR_WIRE_H
#define KABAR_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kabar.h"

#define KABAR_MAX_BATCH        1024 /* events in one PUB */
#define KABAR_PING_INTERVAL_MS 1000
#define KABAR_PEER_TIMEOUT_MS  10000 /* broker forgets a silent peer */
#define KABAR_MAX_HEADER_BYTES 4096  /* kabard refuses a request header larger than this */
#define KABAR_MAX_CREDIT       16384 /* outstanding credit of one subscription, at most */

typedef enum wire_cmd {
    WIRE_UNKNOWN = 0,
    WIRE_PUB,
    WIRE_SUB,
    WIRE_CREDIT,
    WIRE_CACK,
    WIRE_UNSUB,
    WIRE_HEAD,
    WIRE_STATUS,
    WIRE_PING,
    WIRE_ACK,
    WIRE_SUBOK,
    WIRE_EVT,
    WIRE_END,
    WIRE_HEADOK,
    WIRE_STATUSOK,
    WIRE_PONG,
    WIRE_ERR,
    WIRE_CALL,
    WIRE_RESULT,
} wire_cmd;

/* "PUB" for WIRE_PUB, ...; "?" for WIRE_UNKNOWN. */
const char *wire_cmd_name(wire_cmd cmd);

/*
 * A decoded header. `a` and `b` are the command's integer arguments:
 * CREDIT n, CACK seq, EVT count, END last, SUBOK first/head. `rest` points
 * at the header bytes after the integer arguments: the ACK results array,
 * the SUB opts map, the HEADOK/STATUSOK/RESULT map, ERR's code and text,
 * PUB's signature, CALL's method and params.
 */
typedef struct wire_header {
    uint32_t version;
    wire_cmd cmd;
    uint64_t id;
    uint64_t a;
    uint64_t b;
    const uint8_t *rest;
    size_t rest_len;
    uint32_t nrest; /* header array elements left at `rest` */
} wire_header;

/*
 * Decode a header frame of any size (kabard checks KABAR_MAX_HEADER_BYTES
 * on requests before decoding; replies such as the ACK of 1,024 events are
 * longer). KABAR_MALFORMED / KABAR_PROTOCOL for an unreadable
 * one, KABAR_BAD_VERSION, KABAR_UNKNOWN_COMMAND (h->cmd = WIRE_UNKNOWN,
 * h->id still set when it could be read, so that the ERR can carry it).
 */
int wire_header_decode(const void *frame, size_t len, wire_header *h, kabar_error *err);

/* Encoders append one header frame to `b` (cleared first). KABAR_NO_MEMORY only. */
int wire_enc_cmd(kabar_buf *b, wire_cmd cmd, uint64_t id); /* PUB UNSUB HEAD STATUS PING PONG */
/* PUB, signed when pk and sig are both given ([1,"PUB",batch,[pk,sig]]), else plain. */
int wire_enc_pub(kabar_buf *b, uint64_t batch, const uint8_t *pk, const uint8_t *sig);
int wire_enc_cmd1(kabar_buf *b, wire_cmd cmd, uint64_t id, uint64_t a); /* CREDIT CACK EVT END */
int wire_enc_subok(kabar_buf *b, uint64_t sub, uint64_t first, uint64_t head);
int wire_enc_err(kabar_buf *b, uint64_t id, int code, const char *text);

/* ACK: begin with the count, then one ok/fail per event, in order. */
int wire_enc_ack_begin(kabar_buf *b, uint64_t batch, uint32_t n);
/* [seq, duplicate, leaf_hash]; leaf_hash NULL: [seq, duplicate] (a version-1 broker's form). */
int wire_enc_ack_ok(kabar_buf *b, uint64_t seq, bool duplicate, const uint8_t *leaf_hash);
int wire_enc_ack_fail(kabar_buf *b, int code, const char *text);

/* One ACK result read from h->rest (an mpr positioned inside the results array). */
typedef struct wire_ack_result {
    uint64_t seq;
    bool duplicate;
    int code;       /* KABAR_OK, or the rejection's code (unknown names: KABAR_PROTOCOL) */
    kabar_str text; /* view into the frame */
    const uint8_t *leaf_hash; /* accepted: the event's log leaf hash (32 bytes, a view into
                                 the frame), NULL when the broker did not send it */
    bool has_leaf_hash;
} wire_ack_result;

/* Start reading an ACK's results: *n gets the count; then wire_ack_next n times. */
struct mpr;
int wire_ack_begin(const wire_header *h, struct mpr *r, uint32_t *n, kabar_error *err);
int wire_ack_next(struct mpr *r, wire_ack_result *res, kabar_error *err);

/*
 * PUB's optional signature element: *pk (32 bytes) and *sig (64 bytes)
 * point into the frame, or are both NULL for an unsigned PUB (no 4th
 * element, or nil). KABAR_PROTOCOL when the element is there but is not
 * [bin(32), bin(64)].
 */
int wire_pub_decode(const wire_header *h, const uint8_t **pk, const uint8_t **sig,
                    kabar_error *err);

/*
 * CALL [1,"CALL",req,method,params]: params is the msgpack bytes of a map
 * (NULL or len 0: an empty map). The method must be 1..64 bytes.
 */
int wire_enc_call(kabar_buf *b, uint64_t req, const char *method, const void *params, size_t len);
/* The method (a view) and the params map's bytes (a view: exactly the map). KABAR_PROTOCOL. */
int wire_call_decode(const wire_header *h, kabar_str *method, const uint8_t **params,
                     size_t *params_len, kabar_error *err);
/* RESULT [1,"RESULT",req,map]: `map` is the msgpack bytes of one map (copied as is). */
int wire_enc_result(kabar_buf *b, uint64_t req, const void *map, size_t len);
/* The RESULT map's bytes (a view: exactly the map). KABAR_PROTOCOL when it is not a map. */
int wire_result_decode(const wire_header *h, const uint8_t **map, size_t *len, kabar_error *err);

/* ERR's code and text from h->rest. */
int wire_err_decode(const wire_header *h, int *code, kabar_str *text, kabar_error *err);

/* SUB options on the wire: views into the header frame. */
typedef struct wire_sub {
    kabar_str type_prefix; /* .ptr NULL when absent */
    kabar_str source;
    kabar_str target;
    kabar_start start;
    uint64_t seq;
    int64_t time;
    kabar_str durable;
    uint64_t until_seq;
    bool until_head;
    uint32_t credit;
} wire_sub;

int wire_enc_sub(kabar_buf *b, uint64_t sub, const kabar_sub_opts *o);
/* Decode and check the opts map (agency ids well formed, lengths, start names). */
int wire_sub_decode(const wire_header *h, wire_sub *o, kabar_error *err);

/* EVT payload: append one record; read one record (advances *p). */
int wire_enc_record(kabar_buf *b, uint64_t seq, int64_t received_at, const void *ev, size_t len);
int wire_dec_record(const uint8_t **p, const uint8_t *end, kabar_record *rec, kabar_error *err);

/*
 * A msgpack map writer for HEADOK / STATUSOK / consumer filters: these are
 * built with msgpack-c's packer (msgpack_packer writing into a kabar_buf).
 * wire_packer_init sets up `pk` to append to `b`.
 */
struct msgpack_packer;
void wire_packer_init(struct msgpack_packer *pk, kabar_buf *b);
/* Pack ns since the epoch as a msgpack timestamp in its smallest form. */
int wire_pack_time(struct msgpack_packer *pk, int64_t ns);

/*
 * Convert any msgpack value (the HEADOK / STATUSOK map) to JSON text,
 * appended to `out`: maps to objects, timestamps to RFC 3339 strings, bin
 * to base64 strings.
 */
int wire_msgpack_to_json(kabar_buf *out, const void *p, size_t len, kabar_error *err);

#endif /* KABAR_WIRE_H */
