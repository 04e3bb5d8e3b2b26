/*
 * subs_test.c - subscription bookkeeping and the relay.
 *
 * The relay is checked against a model: a subscription must receive
 * exactly the log's matching seqs, in order, with no gap and no duplicate,
 * however the credit arrives and whether a turn serves it from memory or
 * from the log.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "subs.c"

static kabar_str S(const char *s)
{
    return (kabar_str){s, (uint32_t)strlen(s)};
}

static void test_peers_and_lookup(void **state)
{
    subs *t = NULL;
    assert_int_equal(subs_new(&t, NULL), 0);
    peer *a = subs_peer(t, "\x00\x01\x02\x03\x04", 5, 100);
    peer *b = subs_peer(t, "\x00\x01\x02\x03\x05", 5, 100);
    assert_non_null(a);
    assert_ptr_not_equal(a, b);
    assert_ptr_equal(subs_peer(t, "\x00\x01\x02\x03\x04", 5, 200), a);
    assert_true(a->last_heard_ms == 200);
    assert_null(subs_peer(t, "", 0, 1));
    assert_int_equal(subs_peer_count(t), 2);

    sub *s1 = NULL, *s2 = NULL, *dup = NULL;
    sub_spec sp = {.source = S("dinkes"), .position = 5};
    kabar_error e;
    assert_int_equal(subs_add(t, a, 1, &sp, &s1, &e), 0);
    assert_int_equal(subs_add(t, b, 1, &sp, &s2, &e), 0); /* same id, other peer */
    assert_int_equal(subs_add(t, a, 1, &sp, &dup, &e), KABAR_PROTOCOL);
    assert_non_null(strstr(e.message, "already exists"));
    assert_ptr_equal(subs_find(t, a, 1), s1);
    assert_ptr_equal(subs_find(t, b, 1), s2);
    assert_null(subs_find(t, a, 2));
    assert_int_equal(s1->credit, SUBS_DEFAULT_CREDIT);
    assert_string_equal(s1->source, "dinkes");
    assert_true(s1->position == 5);

    /* Too long a field is refused, not truncated. */
    sub_spec bad = {.type_prefix =
                        S("a-type-name-that-is-far-too-long-to-be-any-registered-type-at-all-x")};
    assert_int_equal(subs_add(t, a, 9, &bad, &dup, &e), KABAR_INVALID_ARGUMENT);

    /* Many subscriptions: lookups stay right as the table grows. */
    for (uint64_t id = 100; id < 100 + SUBS_MAX_PER_PEER - 1; id++)
        assert_int_equal(subs_add(t, a, id, &sp, &dup, &e), 0);
    assert_int_equal(subs_add(t, a, 5000, &sp, &dup, &e), KABAR_LIMIT);
    for (uint64_t id = 100; id < 100 + SUBS_MAX_PER_PEER - 1; id++)
        assert_true(subs_find(t, a, id) != NULL && subs_find(t, a, id)->id == id);
    assert_int_equal(subs_count(t), SUBS_MAX_PER_PEER + 1);

    subs_remove(t, s1);
    assert_null(subs_find(t, a, 1));
    assert_ptr_equal(subs_find(t, b, 1), s2);

    /* A silent peer goes, with its subscriptions. */
    size_t gone = subs_expire(t, 100 + 10000, 10000, NULL, NULL);
    assert_int_equal(gone, 1); /* b last heard at 100, a at 200 */
    assert_int_equal(subs_peer_count(t), 1);
    assert_int_equal(subs_count(t), SUBS_MAX_PER_PEER - 1);
    gone = subs_expire(t, 200 + 10000, 10000, NULL, NULL);
    assert_int_equal(gone, 1);
    assert_int_equal(subs_count(t), 0);
    subs_destroy(&t);
    assert_null(t);
    subs_destroy(&t);
}

static bool drop_dinkes(void *arg, const peer *p)
{
    return strncmp(p->user_id, "dinkes/", 7) == 0;
}

static void count_gone(void *arg, const peer *p, const sub *s)
{
    (*(int *)arg)++;
}

/* A peer whose key stopped being valid loses every subscription; the others keep theirs. */
static void test_drop_peers(void **state)
{
    subs *t = NULL;
    kabar_error e;
    assert_int_equal(subs_new(&t, NULL), 0);
    peer *a = subs_peer(t, "\x00\x01", 2, 100);
    peer *b = subs_peer(t, "\x00\x02", 2, 100);
    peer *idle = subs_peer(t, "\x00\x03", 2, 100);
    snprintf(a->user_id, sizeof a->user_id, "dinkes/0123456789abcdef");
    snprintf(b->user_id, sizeof b->user_id, "bappeda/0123456789abcdef");
    snprintf(idle->user_id, sizeof idle->user_id, "dinkes/0123456789abcdef");
    sub *s = NULL;
    sub_spec sp = {.target = S("dinkes"), .position = 1};
    sub_spec dur = {
        .target = S("dinkes"), .position = 1, .durable = S("inbox-dinkes"), .owner = "dinkes"};
    assert_int_equal(subs_add(t, a, 1, &sp, &s, &e), 0);
    assert_int_equal(subs_add(t, a, 2, &dur, &s, &e), 0);
    assert_int_equal(subs_add(t, b, 1, &sp, &s, &e), 0);
    int gone = 0;
    assert_int_equal(subs_drop_peers(t, drop_dinkes, count_gone, &gone), 2);
    assert_int_equal(gone, 2);
    assert_int_equal(subs_count(t), 1);
    assert_int_equal(a->nsubs, 0);
    assert_null(subs_find(t, a, 1));
    assert_null(subs_find_durable(t, "inbox-dinkes", 12));
    assert_non_null(subs_find(t, b, 1));
    assert_int_equal(subs_peer_count(t), 3); /* the peers stay: they may still speak */
    assert_int_equal(subs_drop_peers(t, drop_dinkes, NULL, NULL), 0);
    subs_destroy(&t);
}

static void test_credit_and_cack(void **state)
{
    subs *t = NULL;
    assert_int_equal(subs_new(&t, NULL), 0);
    peer *p = subs_peer(t, "p", 1, 0);
    sub *plain = NULL, *dur = NULL;
    kabar_error e;
    sub_spec sp = {.position = 11, .credit = 10};
    assert_int_equal(subs_add(t, p, 1, &sp, &plain, &e), 0);
    subs_credit(plain, 5);
    assert_true(plain->credit == 15);
    subs_credit(plain, UINT64_MAX);
    assert_true(plain->credit == SUBS_MAX_CREDIT);

    assert_int_equal(subs_cack(t, plain, 3, &e), KABAR_UNKNOWN_CONSUMER);

    sub_spec ds = {.durable = S("setda-oversight"),
                   .position = 11,
                   .acked = 10,
                   .dirty = true,
                   .target = S("dinkes")};
    assert_int_equal(subs_add(t, p, 2, &ds, &dur, &e), 0);
    assert_ptr_equal(subs_find_durable(t, "setda-oversight", 15), dur);
    assert_null(subs_find_durable(t, "setda", 5));
    assert_int_equal(subs_durable_count(t), 1);

    /* The new consumer is persisted with its filter. */
    store_consumer_update up[8];
    kabar_buf fb = {0};
    size_t n = subs_updates(t, up, 8, &fb);
    assert_int_equal(n, 1);
    assert_string_equal(up[0].name, "setda-oversight");
    assert_true(up[0].acked == 10);
    assert_non_null(up[0].filter);
    /* {"target":"dinkes"} */
    assert_int_equal(up[0].filter_len, 1 + 7 + 7);
    assert_memory_equal(up[0].filter,
                        "\x81\xa6target\xa6"
                        "dinkes",
                        15);
    subs_updates_done(t, n, false); /* commit failed: still pending */
    assert_int_equal(subs_updates(t, up, 8, &fb), 1);
    subs_updates_done(t, 1, true);
    assert_int_equal(subs_updates(t, up, 8, &fb), 0);

    /* Acks: only of what was sent (position - 1), never backwards. */
    assert_int_equal(subs_cack(t, dur, 11, &e), KABAR_PROTOCOL);
    assert_non_null(strstr(e.message, "up to 10"));
    dur->position = 21;
    assert_int_equal(subs_cack(t, dur, 15, &e), 0);
    assert_int_equal(subs_cack(t, dur, 17, &e), 0);
    assert_int_equal(subs_cack(t, dur, 12, &e), 0);
    assert_true(dur->acked == 17);
    n = subs_updates(t, up, 8, &fb);
    assert_int_equal(n, 1); /* coalesced: one update per consumer */
    assert_true(up[0].acked == 17);
    assert_null(up[0].filter); /* unchanged filter is kept */
    /* An ack followed at once by UNSUB (or a takeover, or a silent peer):
     * the subscription goes, its ack must still be committed, once. */
    assert_int_equal(subs_cack(t, dur, 19, &e), 0);
    subs_remove(t, dur);
    assert_int_equal(subs_durable_count(t), 0);
    n = subs_updates(t, up, 8, &fb);
    assert_int_equal(n, 1);
    assert_string_equal(up[0].name, "setda-oversight");
    assert_true(up[0].acked == 19);
    subs_updates_done(t, n, false);
    assert_int_equal(subs_updates(t, up, 8, &fb), 1); /* retried after a failed commit */
    subs_updates_done(t, 1, true);
    assert_int_equal(subs_updates(t, up, 8, &fb), 0);
    kabar_buf_free(&fb);
    subs_destroy(&t);
}

/* ------------------------------------------------------------------------ */
/* Relay against a model                                                    */

typedef struct got {
    uint64_t seqs[4096];
    size_t n;
    size_t evts;
    int ends;
    uint64_t end_last;
} got;

static int got_evt(void *arg, const sub *s, uint32_t count, const void *payload, size_t len)
{
    got *g = arg;
    const uint8_t *p = payload, *end = p + len;
    g->evts++;
    assert_true(count >= 1 && count <= SUBS_EVT_RECORDS);
    for (uint32_t i = 0; i < count; i++) {
        kabar_record rec;
        assert_int_equal(wire_dec_record(&p, end, &rec, NULL), 0);
        assert_true(g->n < 4096);
        g->seqs[g->n++] = rec.seq;
    }
    assert_ptr_equal(p, end);
    return 0;
}

static int got_end(void *arg, const sub *s, uint64_t last)
{
    got *g = arg;
    g->ends++;
    g->end_last = last;
    return 0;
}

/* Route to one `got` per subscription: arg is an array indexed by sub id. */
static int route_evt(void *arg, const sub *s, uint32_t count, const void *payload, size_t len)
{
    return got_evt(((got **)arg)[s->id], s, count, payload, len);
}

static int route_end(void *arg, const sub *s, uint64_t last)
{
    return got_end(((got **)arg)[s->id], s, last);
}

/* Fake fresh records: seq i has source "a" when odd, "b" when even. */
static kabar_event fake_ev[1024];

static void make_fresh(subs_fresh *f, uint64_t first, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        kabar_event *ev = &fake_ev[i];
        memset(ev, 0, sizeof *ev);
        ev->type = S("visit.scheduled");
        ev->source = S(((first + i) & 1) ? "a" : "b");
        f[i] = (subs_fresh){first + i, 1000 + (int64_t)(first + i), (const uint8_t *)"x", 1, ev};
    }
}

static void test_relay_fresh_and_bound(void **state)
{
    subs *t = NULL;
    assert_int_equal(subs_new(&t, NULL), 0);
    peer *p = subs_peer(t, "p", 1, 0);
    got g = {0};
    subs_sink sink = {got_evt, got_end, &g};
    sub *s = NULL;
    kabar_error e;
    sub_spec sp = {.source = S("a"), .position = 11, .credit = 2, .bounded = true, .bound = 16};
    assert_int_equal(subs_add(t, p, 7, &sp, &s, &e), 0);

    subs_fresh f[10];
    make_fresh(f, 11, 10); /* seqs 11..20 */
    subs_relay_in in = {.reader = NULL, .head = 20, .fresh = f, .nfresh = 10};
    bool more = true;
    assert_int_equal(subs_relay(t, &in, &sink, &more, &e), 0);
    /* Credit 2: seqs 11 and 13, in one EVT; the position stops after 13. */
    assert_int_equal(g.n, 2);
    assert_true(g.seqs[0] == 11 && g.seqs[1] == 13);
    assert_int_equal(g.evts, 1);
    assert_true(s->position == 14);
    assert_true(s->credit == 0);
    assert_int_equal(g.ends, 0);

    /* More credit: 15 is the last match within the bound, then END 16. */
    subs_credit(s, 100);
    assert_int_equal(subs_relay(t, &in, &sink, &more, &e), 0);
    assert_int_equal(g.n, 3);
    assert_true(g.seqs[2] == 15);
    assert_int_equal(g.ends, 1);
    assert_true(g.end_last == 16);
    assert_int_equal(subs_count(t), 0);

    /* A bound already passed at SUB (until_head on an empty log) ends at once. */
    sub_spec done = {.position = 1, .bounded = true, .bound = 0};
    assert_int_equal(subs_add(t, p, 8, &done, &s, &e), 0);
    subs_relay_in empty = {.head = 0};
    assert_int_equal(subs_relay(t, &empty, &sink, &more, &e), 0);
    assert_int_equal(g.ends, 2);
    assert_true(g.end_last == 0);
    assert_int_equal(subs_count(t), 0);
    subs_destroy(&t);
}

static int count_evt(void *arg, const sub *s, uint32_t count, const void *payload, size_t len)
{
    ((uint64_t *)arg)[s->id] += count;
    return 0;
}

static void test_relay_budget_and_durable_names(void **state)
{
    subs *t = NULL;
    assert_int_equal(subs_new(&t, NULL), 0);
    static subs_fresh f[1000];
    make_fresh(f, 1, 1000);
    kabar_error e;
    enum { NSUBS = 100 };
    char names[NSUBS][16];
    for (int i = 0; i < NSUBS; i++) {
        char rid[8];
        int n = snprintf(rid, sizeof rid, "p%d", i);
        peer *p = subs_peer(t, rid, (size_t)n, 0);
        snprintf(names[i], sizeof names[i], "consumer-%d", i);
        sub_spec sp = {.position = 1, .durable = S(names[i]), .acked = 0};
        sub *s;
        assert_int_equal(subs_add(t, p, (uint64_t)i, &sp, &s, &e), 0);
    }
    /* Durable names are found by hash after the table grew, and after removals. */
    for (int i = 0; i < NSUBS; i++) {
        sub *s = subs_find_durable(t, names[i], strlen(names[i]));
        assert_non_null(s);
        assert_true(s->id == (uint64_t)i);
    }
    subs_remove(t, subs_find_durable(t, names[3], strlen(names[3])));
    assert_null(subs_find_durable(t, names[3], strlen(names[3])));
    assert_non_null(subs_find_durable(t, names[4], strlen(names[4])));

    /* 99 subscriptions x 1000 records is more than one turn may send. */
    static uint64_t counts[NSUBS];
    subs_sink sink = {count_evt, got_end, counts};
    subs_relay_in in = {.head = 1000, .fresh = f, .nfresh = 1000};
    bool more = false;
    assert_int_equal(subs_relay(t, &in, &sink, &more, &e), 0);
    assert_true(more);
    uint64_t total = 0;
    for (int i = 0; i < NSUBS; i++)
        total += counts[i];
    assert_true(total >= SUBS_RELAY_RECORDS && total < SUBS_RELAY_RECORDS + 1000);
    /* The next turn serves the rest; nobody gets a record twice. */
    assert_int_equal(subs_relay(t, &in, &sink, &more, &e), 0);
    assert_false(more);
    for (int i = 0; i < NSUBS; i++)
        assert_true(counts[i] == (i == 3 ? 0 : 1000));
    subs_destroy(&t);
}

/* Build one canonical event of the built-in schema. */
static void make_event(int i, uint8_t **out, size_t *len)
{
    char json[512];
    const char *src = (i % 3 == 0) ? "dinkes" : (i % 3 == 1) ? "bappeda" : "inspektorat";
    if (i % 2 == 0)
        snprintf(json, sizeof json,
                 "{\"id\":\"ev-%d\",\"type\":\"attendance.reported\",\"source\":\"%s\","
                 "\"body\":{\"agency\":\"%s\",\"date\":\"2023-04-26\",\"total\":100,"
                 "\"present\":90}}",
                 i, src, src);
    else
        snprintf(json, sizeof json,
                 "{\"id\":\"ev-%d\",\"type\":\"finding.responded\",\"source\":\"%s\","
                 "\"body\":{\"finding_id\":\"F-%d\",\"rec_id\":\"R1\",\"action\":\"done\"}}",
                 i, src, i);
    kabar_error e = {0};
    int rc = kabar_event_from_json(kabar_schema_builtin(), json, strlen(json), NULL, out, len, &e);
    if (rc != 0)
        fail_msg("kabar_event_from_json: %s", e.message);
}

static void test_relay_model(void **state)
{
    char dir[] = "/tmp/kabar-subs-test-XXXXXX";
    assert_non_null(mkdtemp(dir));
    store *st = NULL;
    kabar_error e = {0};
    store_opts so = {.nosync = true};
    if (store_open(&st, dir, &so, &e) != 0)
        fail_msg("store_open: %s", e.message);
    store_reader *rd = NULL;
    assert_int_equal(store_reader_open(st, &rd, &e), 0);

    subs *t = NULL;
    assert_int_equal(subs_new(&t, NULL), 0);
    peer *p = subs_peer(t, "p", 1, 0);
    got g_all = {0}, g_src = {0}, g_type = {0};
    sub *s_all, *s_src, *s_type;
    sub_spec sp_all = {.position = 1, .credit = 1};
    sub_spec sp_src = {.position = 1, .credit = 1, .source = S("dinkes")};
    sub_spec sp_type = {.position = 1, .credit = 1, .type_prefix = S("finding.")};
    assert_int_equal(subs_add(t, p, 1, &sp_all, &s_all, &e), 0);
    assert_int_equal(subs_add(t, p, 2, &sp_src, &s_src, &e), 0);
    assert_int_equal(subs_add(t, p, 3, &sp_type, &s_type, &e), 0);

    /* One sink per subscription, chosen by the sub id. */
    got *gs[4] = {NULL, &g_all, &g_src, &g_type};
    srand(7);
    const int total = 600;
    int next = 0;
    uint8_t *bytes[600];
    size_t lens[600];
    kabar_event evs[64];
    store_entry ents[64];
    subs_fresh fresh[64];
    while (next < total || s_all->position <= store_head(st) || s_src->position <= store_head(st) ||
           s_type->position <= store_head(st)) {
        /* Commit a batch of 0..40 events. */
        size_t n = (size_t)(rand() % 41);
        if (next + (int)n > total)
            n = (size_t)(total - next);
        for (size_t i = 0; i < n; i++) {
            make_event(next + (int)i, &bytes[next + i], &lens[next + i]);
            assert_int_equal(kabar_event_decode(NULL, bytes[next + i], lens[next + i], &evs[i], &e),
                             0);
            ents[i] = (store_entry){.ev = &evs[i], .bytes = bytes[next + i], .len = lens[next + i]};
        }
        uint64_t head0 = store_head(st);
        if (n > 0) {
            assert_int_equal(store_write(st, ents, n, NULL, 0, kabar_now(), &e), 0);
            for (size_t i = 0; i < n; i++)
                fresh[i] = (subs_fresh){ents[i].seq, ents[i].received_at, ents[i].bytes,
                                        ents[i].len, &evs[i]};
            assert_true(fresh[0].seq == head0 + 1);
        }
        next += (int)n;
        assert_int_equal(store_reader_refresh(rd, &e), 0);
        /* Random credit; half the turns give no fresh records (log only). */
        subs_credit(s_all, (uint64_t)(rand() % 30));
        subs_credit(s_src, (uint64_t)(rand() % 5));
        subs_credit(s_type, (uint64_t)(rand() % 20));
        subs_relay_in in = {.reader = rd,
                            .head = store_head(st),
                            .fresh = (rand() & 1) ? fresh : NULL,
                            .nfresh = 0};
        if (in.fresh != NULL)
            in.nfresh = n;
        bool more;
        subs_sink sink = {route_evt, route_end, gs};
        assert_int_equal(subs_relay(t, &in, &sink, &more, &e), 0);
        if (next >= total) {
            subs_credit(s_all, 1000);
            subs_credit(s_src, 1000);
            subs_credit(s_type, 1000);
        }
    }
    /* The model: matching seqs in order. */
    size_t n_all = 0, n_src = 0, n_type = 0;
    for (int i = 0; i < total; i++) {
        uint64_t seq = (uint64_t)i + 1;
        assert_true(g_all.seqs[n_all++] == seq);
        if (i % 3 == 0)
            assert_true(g_src.seqs[n_src++] == seq);
        if (i % 2 == 1)
            assert_true(g_type.seqs[n_type++] == seq);
    }
    assert_int_equal(g_all.n, n_all);
    assert_int_equal(g_src.n, n_src);
    assert_int_equal(g_type.n, n_type);

    for (int i = 0; i < total; i++)
        free(bytes[i]);
    subs_destroy(&t);
    store_reader_close(&rd);
    store_close(&st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_peers_and_lookup),
        cmocka_unit_test(test_drop_peers),
        cmocka_unit_test(test_credit_and_cack),
        cmocka_unit_test(test_relay_fresh_and_bound),
        cmocka_unit_test(test_relay_budget_and_durable_names),
        cmocka_unit_test(test_relay_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
