/*
 * cmd_agent.c - `kabar agent status|inbox|outbox` (see cmd_agent.h and
 * docs/AGENT.md "kabar agent").
 *
 * Exit codes: 0 ok; 1 --retry named a seq that is not a dead letter;
 * 2 bad usage or no agent store in --data.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agentdb.h"
#include "cli.h"
#include "cmd_agent.h"

static const char *const CMD = "agent";

static void usage(FILE *f)
{
    fprintf(f, "Usage: kabar agent status --data DIR [--broker EP] [--json] [--timeout MS]\n"
               "       kabar agent inbox  --data DIR (--dead [--json] | --retry SEQ|all)\n"
               "       kabar agent outbox --data DIR [--rejected] [--json]\n"
               "\n"
               "Look into a kabar-agent's data directory (its agent.mdb), running or not.\n"
               "\n"
               "  status   connected or not, outbox depth and the age of its oldest event,\n"
               "           last acked seq, inbox position and lag behind the broker's head\n"
               "           (fetched from --broker, else the broker the agent uses; 'unknown'\n"
               "           when it cannot be reached), rejected events, dead letters\n"
               "  inbox    --dead lists the inbox's dead letters; --retry SEQ or --retry all\n"
               "           re-queues them: the agent hands them off again\n"
               "  outbox   the events waiting to be forwarded, or --rejected: those the\n"
               "           broker refused\n"
               "\n"
               "Options:\n"
               "  --data DIR     the agent's data directory (as kabar-agent --data)\n"
               "  --broker EP    broker to ask for its head (default: the agent's)\n"
               "  --timeout MS   how long to wait for the broker (default 2000)\n"
               "  --json         one JSON object (status) or JSON Lines (lists)\n"
               "\n"
               "Exit codes: 0 ok, 1 --retry SEQ is not a dead letter, 2 bad usage or no agent\n"
               "store in DIR.\n");
}

/* Is a kabar-agent holding DIR/agent.lock? */
static bool agent_running(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/agent.lock", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool running = flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
    close(fd);
    return running;
}

static json_t *time_or_null(int64_t ns)
{
    if (ns == INT64_MIN)
        return json_null();
    char t[KABAR_TIME_MAX];
    kabar_time_format(ns, t);
    return json_string(t);
}

typedef struct status_view {
    agentdb_status st;
    bool running;
    bool head_known;
    uint64_t head;
    char head_error[KABAR_ERROR_MESSAGE_MAX];
} status_view;

static void fetch_head(status_view *v, const char *broker, int timeout_ms)
{
    kabar_client *c = NULL;
    kabar_client_opts co = {.timeout_ms = timeout_ms, .window = 1};
    kabar_error e = {0};
    kabar_head h;
    if (broker == NULL || broker[0] == '\0') {
        snprintf(v->head_error, sizeof v->head_error, "no broker known (pass --broker)");
        return;
    }
    if (cli_identity("agent", NULL, &co) != CLI_OK) { /* --key / KABAR_KEY: said why on stderr */
        snprintf(v->head_error, sizeof v->head_error, "the key options are not usable");
        return;
    }
    if (kabar_client_connect(&c, broker, &co, &e) == 0 && kabar_client_head(c, &h, &e) == 0) {
        v->head_known = true;
        v->head = h.seq;
    } else {
        snprintf(v->head_error, sizeof v->head_error, "%s", e.message);
    }
    kabar_client_destroy(&c);
}

static int print_status_json(const status_view *v, int64_t now)
{
    const agentdb_status *s = &v->st;
    json_t *o = json_object();
    json_object_set_new(o, "agency", json_string(s->agency));
    json_object_set_new(o, "broker", json_string(s->broker));
    json_object_set_new(o, "running", json_boolean(v->running));
    json_object_set_new(o, "connected", json_boolean(v->running && s->connected));
    json_object_set_new(o, "connected_since",
                        v->running && s->connected ? time_or_null(s->connected_since)
                                                   : json_null());
    json_t *ob = json_object();
    json_object_set_new(ob, "depth", json_integer((json_int_t)s->outbox_depth));
    json_object_set_new(ob, "oldest_at", time_or_null(s->oldest_at));
    json_object_set_new(ob, "oldest_age_s",
                        s->oldest_at == INT64_MIN ? json_null()
                                                  : json_real((double)(now - s->oldest_at) / 1e9));
    json_object_set_new(o, "outbox", ob);
    json_object_set_new(o, "last_acked_seq", json_integer((json_int_t)s->last_acked_seq));
    json_object_set_new(o, "forwarded", json_integer((json_int_t)s->forwarded));
    json_object_set_new(o, "rejected", json_integer((json_int_t)s->rejected));
    json_t *ib = json_object();
    json_object_set_new(ib, "position", json_integer((json_int_t)s->inbox_pos));
    json_object_set_new(ib, "delivered", json_integer((json_int_t)s->delivered));
    json_object_set_new(ib, "broker_head",
                        v->head_known ? json_integer((json_int_t)v->head) : json_null());
    json_object_set_new(
        ib, "lag",
        v->head_known
            ? json_integer((json_int_t)(v->head > s->inbox_pos ? v->head - s->inbox_pos : 0))
            : json_null());
    json_object_set_new(o, "inbox", ib);
    json_t *pb = json_null();
    if (s->problem_code[0] != '\0') { /* what keeps the agent from forwarding */
        pb = json_object();
        json_object_set_new(pb, "code", json_string(s->problem_code));
        json_object_set_new(pb, "message", json_string(s->problem));
        json_object_set_new(pb, "since", time_or_null(s->problem_since));
    }
    json_object_set_new(o, "problem", pb);
    json_object_set_new(o, "dead_letters", json_integer((json_int_t)s->dead));
    json_object_set_new(o, "retry_pending", json_integer((json_int_t)s->retry));
    char *text = json_dumps(o, JSON_COMPACT | JSON_REAL_PRECISION(6));
    json_decref(o);
    if (text == NULL)
        return cli_error(CMD, "out of memory");
    printf("%s\n", text);
    free(text);
    return CLI_OK;
}

static void print_status_text(const status_view *v, int64_t now)
{
    const agentdb_status *s = &v->st;
    char t[KABAR_TIME_MAX];
    printf("agency        %s\n", s->agency[0] ? s->agency : "(unknown)");
    printf("agent         %s\n", v->running ? "running" : "not running");
    if (v->running && s->connected) {
        kabar_time_format(s->connected_since, t);
        printf("broker        %s, connected since %s\n", s->broker, t);
    } else {
        printf("broker        %s, not connected\n", s->broker);
    }
    if (s->problem_code[0] != '\0') { /* what keeps the agent from forwarding */
        kabar_time_format(s->problem_since, t);
        printf("problem       %s since %s: %s\n", s->problem_code, t, s->problem);
    }
    if (s->outbox_depth == 0)
        printf("outbox        empty\n");
    else
        printf("outbox        %llu event(s) waiting, oldest %.1f s old\n",
               (unsigned long long)s->outbox_depth, (double)(now - s->oldest_at) / 1e9);
    printf("last acked    seq %llu (%llu forwarded)\n", (unsigned long long)s->last_acked_seq,
           (unsigned long long)s->forwarded);
    printf("rejected      %llu%s\n", (unsigned long long)s->rejected,
           s->rejected ? " (kabar agent outbox --rejected)" : "");
    if (v->head_known)
        printf("inbox         position %llu, lag %llu (broker head %llu)\n",
               (unsigned long long)s->inbox_pos,
               (unsigned long long)(v->head > s->inbox_pos ? v->head - s->inbox_pos : 0),
               (unsigned long long)v->head);
    else
        printf("inbox         position %llu, lag unknown (%s)\n", (unsigned long long)s->inbox_pos,
               v->head_error);
    printf("dead letters  %llu%s", (unsigned long long)s->dead,
           s->dead ? " (kabar agent inbox --dead)" : "");
    if (s->retry)
        printf(", %llu re-queued", (unsigned long long)s->retry);
    printf("\n");
}

static int do_status(agentdb *db, const char *dir, const char *broker, int timeout_ms, bool json)
{
    status_view v = {0};
    kabar_error e = {0};
    if (agentdb_status_get(db, &v.st, &e) != 0)
        return cli_fail(CMD, &e);
    v.running = agent_running(dir);
    fetch_head(&v, broker ? broker : v.st.broker, timeout_ms);
    int64_t now = kabar_now();
    if (json)
        return print_status_json(&v, now);
    print_status_text(&v, now);
    return CLI_OK;
}

typedef struct list_ctx {
    bool json;
    bool letters; /* dead/rejected letters (else outbox items) */
    size_t n;
} list_ctx;

static void print_event_line(const list_ctx *c, uint64_t key, const char *keyname, int64_t at,
                             const char *code, const char *reason, uint32_t tries, uint64_t seq,
                             int64_t received_at, const uint8_t *ev, size_t len)
{
    kabar_buf b = {0};
    kabar_error e = {0};
    kabar_event d;
    bool ok = kabar_event_decode(NULL, ev, len, &d, &e) == 0 &&
              kabar_event_to_json(&b, seq, received_at, ev, len, &e) == 0;
    char t[KABAR_TIME_MAX];
    kabar_time_format(at, t);
    if (c->json) {
        json_t *o = json_object();
        json_object_set_new(o, keyname, json_integer((json_int_t)key));
        json_object_set_new(o, c->letters ? "parked_at" : "accepted_at", json_string(t));
        if (c->letters) {
            json_object_set_new(o, "code", json_string(code));
            json_object_set_new(o, "reason", json_string(reason));
            json_object_set_new(o, "tries", json_integer(tries));
        }
        json_t *evj = ok ? json_loadb(b.data, b.len, 0, NULL) : NULL;
        json_object_set_new(o, "event", evj ? evj : json_null());
        char *s = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        if (s != NULL)
            printf("%s\n", s);
        free(s);
    } else if (ok) {
        printf("%-8llu %s  %.*s  %.*s", (unsigned long long)key, t, (int)d.type.len, d.type.ptr,
               (int)d.id.len, d.id.ptr);
        if (c->letters)
            printf("  [%s, %u tries] %s", code, tries, reason);
        printf("\n");
    } else {
        printf("%-8llu %s  (undecodable event: %s)\n", (unsigned long long)key, t, e.message);
    }
    kabar_buf_free(&b);
}

static int list_letter(void *arg, const agentdb_letter *l)
{
    list_ctx *c = arg;
    bool dead = l->received_at != INT64_MIN;
    print_event_line(c, l->key, dead ? "seq" : "pos", l->at, l->code, l->reason, l->tries,
                     dead ? l->key : 0, l->received_at, l->bytes, l->len);
    c->n++;
    return 0;
}

static int list_item(void *arg, const agentdb_item *it)
{
    list_ctx *c = arg;
    print_event_line(c, it->pos, "pos", it->accepted_at, "", "", 0, 0, INT64_MIN, it->bytes,
                     it->len);
    c->n++;
    return 0;
}

static int do_list(agentdb *db, agentdb_list list, bool outbox, bool json)
{
    list_ctx c = {.json = json, .letters = !outbox};
    kabar_error e = {0};
    int rc = outbox ? agentdb_outbox_scan(db, 0, SIZE_MAX, list_item, &c, NULL, &e)
                    : agentdb_list_each(db, list, list_letter, &c, &e);
    if (rc != 0)
        return cli_fail(CMD, &e);
    if (!json && c.n == 0)
        fprintf(stderr, "kabar agent: none\n");
    return cli_flush(CMD) == 0 ? CLI_OK : CLI_USAGE;
}

static int do_retry(const char *dir, const char *what)
{
    uint64_t seq = 0;
    if (strcmp(what, "all") != 0 && !cli_parse_u64(CMD, "--retry", what, 1, &seq))
        return CLI_USAGE;
    agentdb *db = NULL;
    kabar_error e = {0};
    char path[4200];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", dir, AGENTDB_FILE);
    if (stat(path, &st) != 0)
        return cli_error(CMD, "no agent store at %s (is --data the agent's data directory?)", path);
    if (agentdb_open(&db, dir, false, &e) != 0)
        return cli_fail(CMD, &e);
    size_t moved = 0;
    int rc = agentdb_dead_requeue(db, seq, &moved, &e);
    agentdb_close(&db);
    if (rc == KABAR_NOT_FOUND) {
        cli_error(CMD, "%s", e.message);
        return CLI_FAIL;
    }
    if (rc != 0)
        return cli_fail(CMD, &e);
    printf("re-queued %zu dead letter(s)%s\n", moved,
           agent_running(dir) ? "; the agent hands them off again now"
                              : "; the agent is not running: they go when it starts");
    return CLI_OK;
}

int cmd_agent(int argc, char **argv)
{
    enum { O_DATA = 1, O_BROKER, O_JSON, O_DEAD, O_RETRY, O_REJECTED, O_TIMEOUT, O_HELP };
    static const struct option longs[] = {{"data", required_argument, 0, O_DATA},
                                          {"broker", required_argument, 0, O_BROKER},
                                          {"json", no_argument, 0, O_JSON},
                                          {"dead", no_argument, 0, O_DEAD},
                                          {"retry", required_argument, 0, O_RETRY},
                                          {"rejected", no_argument, 0, O_REJECTED},
                                          {"timeout", required_argument, 0, O_TIMEOUT},
                                          {"help", no_argument, 0, O_HELP},
                                          {0, 0, 0, 0}};
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return CLI_OK;
    }
    if (argc < 2)
        return cli_usage_error(CMD, "missing what to show: status, inbox or outbox");
    const char *sub = argv[1];
    if (strcmp(sub, "status") != 0 && strcmp(sub, "inbox") != 0 && strcmp(sub, "outbox") != 0)
        return cli_usage_error(CMD, "unknown subcommand \"%s\": use status, inbox or outbox", sub);
    const char *dir = NULL, *broker = NULL, *retry = NULL;
    bool json = false, dead = false, rejected = false;
    int timeout_ms = 2000, o;
    optind = 1;
    opterr = 0;
    while ((o = getopt_long(argc - 1, argv + 1, "h", longs, NULL)) != -1) {
        switch (o) {
        case O_DATA:
            dir = optarg;
            break;
        case O_BROKER:
            broker = optarg;
            break;
        case O_JSON:
            json = true;
            break;
        case O_DEAD:
            dead = true;
            break;
        case O_RETRY:
            retry = optarg;
            break;
        case O_REJECTED:
            rejected = true;
            break;
        case O_TIMEOUT:
            if (!cli_parse_int(CMD, "--timeout", optarg, 1, 600000, &timeout_ms))
                return CLI_USAGE;
            break;
        case 'h':
        case O_HELP:
            usage(stdout);
            return CLI_OK;
        default:
            return cli_usage_error(CMD, "unknown or incomplete option \"%s\"", argv[optind]);
        }
    }
    if (optind + 1 < argc)
        return cli_usage_error(CMD, "unexpected argument \"%s\"", argv[optind + 1]);
    if (dir == NULL)
        return cli_usage_error(CMD, "--data DIR is required (the agent's data directory)");
    bool is_inbox = strcmp(sub, "inbox") == 0;
    if (is_inbox && dead == (retry != NULL))
        return cli_usage_error(CMD, "inbox needs --dead or --retry SEQ|all (one of them)");
    if (!is_inbox && (dead || retry))
        return cli_usage_error(CMD, "--dead and --retry belong to 'kabar agent inbox'");
    if (rejected && strcmp(sub, "outbox") != 0)
        return cli_usage_error(CMD, "--rejected belongs to 'kabar agent outbox'");
    if (retry != NULL)
        return do_retry(dir, retry);
    agentdb *db = NULL;
    kabar_error e = {0};
    if (agentdb_open(&db, dir, true, &e) != 0)
        return cli_fail(CMD, &e);
    int rc;
    if (strcmp(sub, "status") == 0)
        rc = do_status(db, dir, broker, timeout_ms, json);
    else if (is_inbox)
        rc = do_list(db, AGENTDB_DEAD, false, json);
    else
        rc = do_list(db, AGENTDB_REJECTED, !rejected, json);
    agentdb_close(&db);
    return rc;
}
