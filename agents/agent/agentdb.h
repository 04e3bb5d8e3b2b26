/*
 * agentdb.h - the agent's own LMDB: outbox, rejected list, inbox state and
 * dead letters, in one environment at DIR/agent.mdb.
 *
 * kabar-agent is the only long-lived writer; `kabar agent` opens the same
 * file to read the status and to re-queue dead letters (LMDB serialises
 * writers across processes). Every write is one durable transaction with
 * LMDB's default full sync: when a function here returns 0, the change is
 * on disk.
 *
 * Named databases (all keys 8-byte big-endian integers unless said):
 *
 *   outbox    pos -> accepted_at (int64 ns, 8 bytes BE) + the event's
 *             canonical bytes. `pos` is the agent's local position, from 1,
 *             never reused (meta "next_pos"); forwarding goes in pos order.
 *   rejected  pos -> letter     events the broker refused for good
 *   dead      seq -> letter     inbox events whose hand-off kept failing
 *   retry     seq -> letter     dead letters re-queued by `kabar agent inbox
 *                               --retry`, waiting for the inbox to try again
 *   meta      name (string) -> value: "agency", "broker", "problem_code",
 *             "problem" (strings);
 *             "next_pos", "last_acked_seq", "forwarded", "inbox_pos",
 *             "delivered", "broker_head" (uint64 BE); "connected" (1 byte);
 *             "connected_since", "last_acked_at", "inbox_at",
 *             "broker_head_at", "problem_since" (int64 ns BE)
 *
 * A letter is one byte layout for the three lists:
 *
 *   +--------+-------------+-------+----+------+-----+--------+-------------+
 *   | at i64 | received_at | tries | cl | code | ml  | reason | event bytes |
 *   |  8 BE  |   i64 8 BE  | u32 BE| u8 |  cl  |u16BE|   ml   |   the rest  |
 *   +--------+-------------+-------+----+------+-----+--------+-------------+
 *
 * `at` is when the letter was written; received_at is the broker's
 * (INT64_MIN for a rejected event, which never got one); `code` is a stable
 * error name (BAD_VALUE, EXIT_STATUS, ...).
 *
 * Thread use: one agentdb may be shared by the agent's threads; every
 * function opens and ends its own transaction (MDB_NOTLS).
 */
#ifndef KABAR_AGENTDB_H
#define KABAR_AGENTDB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kabar.h"

/* The map is virtual address space only; the file grows as data does. */
#define AGENTDB_MAP_BYTES ((size_t)4 << 30)
#define AGENTDB_FILE      "agent.mdb"

typedef struct agentdb agentdb;

/*
 * Open DIR/agent.mdb (created when !readonly). *out set only on success.
 * KABAR_NOT_FOUND when readonly and there is no file; KABAR_STORE with
 * LMDB's reason otherwise.
 */
int agentdb_open(agentdb **out, const char *dir, bool readonly, kabar_error *err);
void agentdb_close(agentdb **db);

/*
 * Record the agency and broker this data directory serves. A directory
 * that already belongs to another agency is refused (KABAR_BAD_VALUE):
 * its outbox holds events of that agency.
 */
int agentdb_set_identity(agentdb *db, const char *agency, const char *broker, kabar_error *err);

/* ---- outbox ---- */

/*
 * Append n events (canonical bytes) in one transaction; the i-th gets
 * position *first_pos + i. On error nothing is stored (KABAR_DISK_FULL when
 * the map is full).
 */
int agentdb_outbox_append(agentdb *db, const uint8_t *const *bytes, const size_t *lens, size_t n,
                          int64_t now, uint64_t *first_pos, kabar_error *err);

typedef struct agentdb_item {
    uint64_t pos;
    int64_t accepted_at;
    const uint8_t *bytes; /* valid during the callback only */
    size_t len;
} agentdb_item;

/*
 * Call fn for up to `max` outbox entries with pos >= from, in pos order,
 * inside one read transaction. fn returning non-zero stops the scan and
 * that value is returned. *count (may be NULL) gets the number visited.
 */
int agentdb_outbox_scan(agentdb *db, uint64_t from, size_t max,
                        int (*fn)(void *arg, const agentdb_item *it), void *arg, size_t *count,
                        kabar_error *err);

/* The broker's answer for one forwarded outbox entry. */
typedef struct agentdb_result {
    uint64_t pos;
    uint64_t seq; /* 0 when rejected */
    int code;     /* KABAR_OK or the rejection's code */
    char message[KABAR_ERROR_MESSAGE_MAX];
} agentdb_result;

/*
 * Apply results in one transaction: an accepted entry is deleted from the
 * outbox (and last_acked_seq / forwarded updated), a rejected one moves to
 * the rejected list. Entries no longer in the outbox are skipped, so a
 * result applied twice is harmless.
 */
int agentdb_outbox_done(agentdb *db, const agentdb_result *r, size_t n, int64_t now,
                        kabar_error *err);

/* ---- connection state ---- */

int agentdb_set_connected(agentdb *db, bool connected, int64_t since, kabar_error *err);
int agentdb_set_broker_head(agentdb *db, uint64_t head, int64_t at, kabar_error *err);
/*
 * The condition that keeps the forwarder from delivering, for `kabar agent
 * status`: code is an error name (UNKNOWN_KEY, CONNECT, ...) and message
 * says what to do; code "" clears it.
 */
int agentdb_set_problem(agentdb *db, const char *code, const char *message, int64_t since,
                        kabar_error *err);

/* ---- inbox ---- */

/* The last broker seq handed off or parked (0: none yet). */
int agentdb_inbox_pos(agentdb *db, uint64_t *pos, kabar_error *err);
/* Record that everything up to `pos` was handed off; `delivered` more events. */
int agentdb_inbox_commit(agentdb *db, uint64_t pos, uint64_t delivered, int64_t now,
                         kabar_error *err);

/* A letter as stored (see the layout above); views valid like an item. */
typedef struct agentdb_letter {
    uint64_t key; /* seq (dead, retry) or pos (rejected) */
    int64_t at;
    int64_t received_at;
    uint32_t tries;
    char code[33];
    char reason[KABAR_ERROR_MESSAGE_MAX];
    const uint8_t *bytes;
    size_t len;
} agentdb_letter;

typedef enum agentdb_list {
    AGENTDB_REJECTED = 0,
    AGENTDB_DEAD,
    AGENTDB_RETRY,
} agentdb_list;

/*
 * Park an inbox event as a dead letter (key = its seq). When inbox_pos is
 * not 0 it is recorded in the same transaction (the inbox moves past the
 * event); when from_retry, the entry is removed from the retry list too.
 */
int agentdb_dead_put(agentdb *db, const agentdb_letter *l, uint64_t inbox_pos, bool from_retry,
                     kabar_error *err);

/* Call fn for each letter of a list in key order; fn non-zero stops. */
int agentdb_list_each(agentdb *db, agentdb_list list, int (*fn)(void *arg, const agentdb_letter *l),
                      void *arg, kabar_error *err);

/*
 * Move dead letters to the retry list: the one with `seq`, or all when seq
 * is 0. *moved gets how many. KABAR_NOT_FOUND when seq is not a dead letter.
 */
int agentdb_dead_requeue(agentdb *db, uint64_t seq, size_t *moved, kabar_error *err);

/*
 * The first letter of the retry list, copied: *found false when empty.
 * l->bytes points into `buf` (reset first; caller frees with kabar_buf_free).
 */
int agentdb_retry_first(agentdb *db, agentdb_letter *l, kabar_buf *buf, bool *found,
                        kabar_error *err);
/* A re-queued letter was handed off: remove it; count it as delivered. */
int agentdb_retry_done(agentdb *db, uint64_t seq, kabar_error *err);

/* ---- status ---- */

typedef struct agentdb_status {
    char agency[KABAR_MAX_AGENCY_LEN + 1];
    char broker[256];
    bool connected;
    int64_t connected_since; /* INT64_MIN: never recorded */
    uint64_t outbox_depth;
    uint64_t oldest_pos;
    int64_t oldest_at; /* INT64_MIN when the outbox is empty */
    uint64_t next_pos;
    uint64_t last_acked_seq;
    int64_t last_acked_at;
    uint64_t forwarded;
    uint64_t rejected;
    uint64_t inbox_pos;
    int64_t inbox_at;
    uint64_t delivered;
    uint64_t dead;
    uint64_t retry;
    uint64_t broker_head;
    int64_t broker_head_at;
    char problem_code[33];                 /* "" when none */
    char problem[KABAR_ERROR_MESSAGE_MAX]; /* what is wrong and what to do */
    int64_t problem_since;                 /* INT64_MIN when none */
} agentdb_status;

int agentdb_status_get(agentdb *db, agentdb_status *st, kabar_error *err);

#endif /* KABAR_AGENTDB_H */
