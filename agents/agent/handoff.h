/*
 * handoff.h - giving an inbox event to the agency's services.
 *
 * Two ways, chosen at start:
 *
 *  - exec: run `/bin/sh -c CMD` with the event's JSON (one line, with seq
 *    and received_at) on stdin and KABAR_SEQ, KABAR_TYPE, KABAR_ID,
 *    KABAR_SOURCE, KABAR_AGENCY, KABAR_TRY in the environment. Exit status
 *    0 is success; anything else (or running past the timeout, after which
 *    the command's process group is killed) is a failed try.
 *  - jsonl: append the JSON line to FILE. handoff_sync fsyncs it: the
 *    inbox calls it before it records the events as handed off.
 *
 * A try is one attempt; retries and dead-lettering are the inbox's.
 */
#ifndef KABAR_AGENT_HANDOFF_H
#define KABAR_AGENT_HANDOFF_H

#include <stdint.h>

#include "kabar.h"

typedef struct handoff handoff;

typedef struct handoff_opts {
    const char *exec_cmd;   /* or NULL */
    const char *jsonl_path; /* or NULL; exactly one of the two */
    const char *agency;
    int exec_timeout_ms; /* default 60000 */
    /* Called about once a second while a command runs (keep-alives), or NULL. */
    void (*tick)(void *arg);
    void *tick_arg;
} handoff_opts;

int handoff_open(handoff **out, const handoff_opts *o, kabar_error *err);
void handoff_close(handoff **h);

/*
 * Hand one event over, once. 0 on success; otherwise an error whose
 * message says what happened ("exit status 3", "killed by signal 9 after
 * the 60000 ms timeout"); KABAR_IO for a failed write.
 */
int handoff_try(handoff *h, uint64_t seq, int64_t received_at, const uint8_t *event, size_t len,
                uint32_t attempt, kabar_error *err);
/* Set opts.tick after opening (the inbox, created later, keeps its client alive). */
void handoff_set_tick(handoff *h, void (*tick)(void *arg), void *arg);
/* Make what was handed over durable (jsonl: fsync; exec: nothing). */
int handoff_sync(handoff *h, kabar_error *err);

#endif /* KABAR_AGENT_HANDOFF_H */
