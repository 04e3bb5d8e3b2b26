/*
 * client_internal.h - what the parts of the client share (private to
 * proto/client.c, proto/client_pub.c and proto/client_sub.c; the contract is
 * kabar.h "The client").
 *
 * client.c holds the socket, the session and the receive loop (pump), and
 * dispatches what arrives; client_pub.c the publishing window; client_sub.c
 * the subscriptions. The design notes are at the top of client.c. Functions
 * named client__* are for these three files only.
 */
#ifndef KABAR_CLIENT_INTERNAL_H
#define KABAR_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <zmq.h>

#include "kabar.h"
#include "kkey.h"
#include "wire.h"

typedef struct pub_slot {
    uint8_t *bytes; /* owned; capacity kept for reuse */
    size_t len, cap;
    void *user;
    bool done;
    uint64_t seq;
    bool duplicate;
    int code;
    char message[KABAR_ERROR_MESSAGE_MAX];
    uint8_t leaf[32];     /* merkle_leaf_hash(bytes), computed at publish when signing */
    uint8_t log_leaf[32]; /* from the ACK: the leaf hash in the broker's log */
    bool has_log_leaf;
    /*
     * On the first slot of a formed batch: its size, and its signature when
     * signed. A batch is formed (and signed) once; a resend after a
     * reconnection sends the same events with the same signature.
     */
    uint32_t batch_n;
    bool batch_signed;
    uint8_t key[32], sig[64];
} pub_slot;

typedef struct pub_batch {
    uint64_t id;
    uint64_t first; /* ring position of its first event */
    uint32_t n;     /* 0: answered */
    int64_t sent_ms;
} pub_batch;

/* One EVT payload frame, read record by record. */
typedef struct evt_chunk {
    zmq_msg_t msg;
    const uint8_t *p, *end;
    uint64_t min_seq; /* records below this were received before: skip them */
    uint64_t epoch;   /* the subscription's session the credit belongs to */
    struct evt_chunk *next;
} evt_chunk;

enum sub_state { SUB_WAITING, SUB_OK, SUB_FAILED };

struct kabar_sub {
    kabar_client *c;
    kabar_sub *next;
    uint64_t id;
    kabar_sub_opts opts; /* strings point at the copies below */
    char *type_prefix, *source, *target, *durable;
    enum sub_state state;
    bool need_send; /* SUB must go out when the session is up */
    bool ended;
    uint64_t epoch;       /* incremented at every SUB sent */
    uint64_t first;       /* SUBOK's first seq */
    uint64_t head;        /* SUBOK's head (bounds until_head on a resubscription) */
    uint64_t last;        /* highest seq received */
    uint64_t acked;       /* acknowledged by the application */
    uint64_t acked_sent;  /* last CACK sent (or known to the broker) */
    bool epoch_ok;        /* SUBOK came for the latest SUB */
    uint64_t epoch_first; /* its first seq */
    uint64_t epoch_last;  /* highest seq received since the latest SUB */
    uint32_t credit;      /* as granted in SUB */
    uint32_t consumed;    /* records consumed since the last CREDIT */
    kabar_error error;
    evt_chunk *chunks, *chunks_tail;
};

enum req_state { REQ_NONE, REQ_WAITING, REQ_DONE, REQ_FAILED };

struct kabar_client {
    void *ctx, *sock, *mon;
    char *endpoint;
    int timeout_ms;
    uint32_t window;
    kabar_pub_cb cb;
    void *cb_arg;
    uint64_t next_id;
    unsigned mon_seq;
    kabar_buf hdr; /* scratch for outgoing headers */

    bool session;          /* the broker has answered since the last (re)connection */
    bool resync;           /* batches must be resent when the session begins */
    uint64_t session_ping; /* a PONG with an id >= this begins the session */
    int64_t last_ping_ms;  /* last PING attempt */
    int64_t unanswered_ms; /* first PING not answered yet, 0: none */
    bool reopen;           /* the connection dropped: make a new socket */
    bool sock_served;      /* the current socket had a session (a PONG came) */
    int64_t opened_ms;     /* when the current socket was made */
    int retry_ms;          /* make a new one if no PONG within this */

    bool curve;               /* CURVE transport with `key` */
    kkey key;                 /* own identity (when curve) */
    uint8_t server_curve[32]; /* the broker's CURVE public key */
    bool signing;             /* events published now are signed by `signer` */
    kkey signer;
    uint8_t (*leaves)[32]; /* KABAR_MAX_BATCH of them: scratch for signing */

    pub_slot *slots; /* `window` of them */
    uint64_t tail, sent, head;
    uint64_t formed;    /* slots before this are formed into batches (sent <= formed <= head) */
    pub_batch *batches; /* ring of `window` */
    uint32_t batch0, nbatches;

    uint64_t req_id;
    wire_cmd req_cmd;
    enum req_state req_state;
    bool req_need_send;
    bool req_resend_ok; /* may be asked again after a reconnection (read-only) */
    kabar_buf req_msg;  /* the request's header, as sent */
    kabar_buf req_reply;
    kabar_error req_error;

    kabar_sub *subs;
};

static inline int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ms left before `deadline` (-1: none), at least 0. */
static inline int left_ms(int64_t deadline)
{
    if (deadline < 0)
        return -1;
    int64_t t = deadline - now_ms();
    return t < 0 ? 0 : (int)(t > 1000000 ? 1000000 : t);
}

/* client.c: the socket and the session. */

/* Send one header frame (`more`: frames follow); 0, or -1 when it cannot go out now. */
int client__send_msg(kabar_client *c, const kabar_buf *hdr, int more);
/* Is the session up? Asked right before sending anything that belongs to it. */
bool client__session_up(kabar_client *c);
/* Dispatch every message waiting on the socket; returns how many there were. */
int client__drain(kabar_client *c);
/*
 * Process what has arrived, then wait up to wait_ms (-1: until a timer is
 * due) for more. 0, or KABAR_CONNECT / KABAR_IO.
 */
int client__pump(kabar_client *c, int wait_ms, kabar_error *err);
/*
 * A HEAD round trip on the current session, waiting at most wait_ms and
 * never resent on a new session: 0 once the broker answered, so it has read
 * everything sent before it. -1 without a session, inside another request
 * (the request slot is not clobbered), or when it did not come.
 */
int client__sync(kabar_client *c, int wait_ms);

/* client_pub.c: the publishing window. */

/* Form every published, unformed event into batches signed by the current signer. */
void client__form_all(kabar_client *c);
/* Send queued events as batches; `force` sends even a small tail. */
void client__send_pending(kabar_client *c, bool force);
/* The unanswered batch with this id, or NULL. */
pub_batch *client__batch_find(kabar_client *c, uint64_t id);
/* ACK: fill the batch's results and hand them out in publishing order. */
void client__on_ack(kabar_client *c, const wire_header *h);
/* ERR for a batch: every event of it failed with `code` (not on SHUTTING_DOWN). */
void client__on_batch_err(kabar_client *c, pub_batch *b, int code, kabar_str text);

/* client_sub.c: the subscriptions. */

/* The subscription with this id, or NULL. */
kabar_sub *client__sub_find(kabar_client *c, uint64_t id);
/* SUB, resuming after what was received when this is not the first one. */
void client__sub_send(kabar_client *c, kabar_sub *s);
/* CACK what the application acknowledged, as far as this session's broker delivered it. */
void client__flush_ack(kabar_client *c, kabar_sub *s);
/* EVT: check the records and queue the frame (takes over `body`'s data). */
void client__on_evt(kabar_client *c, kabar_sub *s, const wire_header *h, zmq_msg_t *body);
/* ERR for a subscription: resume when the broker forgot it, else it failed. */
void client__on_sub_err(kabar_client *c, kabar_sub *s, int code, kabar_str text);
/* Free a subscription and what it holds (it must be unlinked). */
void client__sub_free(kabar_sub *s);

#endif /* KABAR_CLIENT_INTERNAL_H */
