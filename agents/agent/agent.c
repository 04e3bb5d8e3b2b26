/*
 * agent.c - kabar-agent: one agency's agent, with a durable outbox and inbox.
 *
 *   local services --(ipc://DIR/agent.sock, intake.c)--> outbox (DIR/agent.mdb)
 *   outbox --(forward.c, kabar_client)--> broker
 *   broker --(inbox.c, durable subscription)--> --exec CMD | --jsonl FILE
 *
 * Three threads, each with its own ZeroMQ sockets and its own LMDB
 * transactions: the main thread runs the intake loop and owns the signals;
 * the forwarder and the inbox run beside it. SIGTERM/SIGINT only set a
 * flag: the intake finishes its current commit and answers it, the
 * forwarder records the acks it has, the inbox finishes (or abandons,
 * unacknowledged) the event in hand, and the process exits 0.
 *
 * Exit codes: 0 clean stop, 1 runtime failure, 2 bad usage or cannot start.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agentdb.h"
#include "dirlock.h"
#include "klog.h"
#include "opttab.h"
#include "forward.h"
#include "handoff.h"
#include "inbox.h"
#include "intake.h"
#include "kabar.h"
#include "kkey.h"

/* The configuration: one table, printed by --help (STYLE.md #13). */
typedef struct config {
    const char *agency;
    const char *data;
    const char *broker;
    const char *key;
    const char *server_key;
    bool insecure;
    const char *exec_cmd;
    const char *jsonl;
    long max_tries;
    long window;
    long timeout_ms;
    long exec_timeout_ms;
    int log_level; /* a klog_level */
    bool help;
    bool version;
} config;

#define F(field) offsetof(config, field)

static const opt_row rows[] = {
    OPT_ROW("agency", OPT_STRING, NULL, "KABAR_AGENCY", "ID",
            "the agency this agent publishes and receives for", F(agency)),
    OPT_ROW("data", OPT_STRING, NULL, "KABAR_AGENT_DATA", "DIR",
            "data directory: agent.mdb (outbox, inbox state), agent.sock, agent.lock", F(data)),
    OPT_ROW("broker", OPT_STRING, KABAR_DEFAULT_ENDPOINT, "KABAR_BROKER", "ENDPOINT",
            "the broker to forward to", F(broker)),
    OPT_ROW("key", OPT_STRING, NULL, "KABAR_KEY", "FILE",
            "the agency's secret key (kabar keygen): CURVE to the broker, signs the events",
            F(key)),
    OPT_ROW("server-key", OPT_STRING, NULL, "KABAR_SERVER_KEY", "KEY|FILE",
            "the broker's public key (ed25519:... or a file: DATA/broker.pub of kabard)",
            F(server_key)),
    OPT_ROW("insecure", OPT_SWITCH, NULL, NULL, NULL,
            "plaintext, unsigned, to a broker started with --insecure (no key needed)",
            F(insecure)),
    OPT_ROW("exec", OPT_STRING, NULL, NULL, "CMD",
            "hand each inbox event to `/bin/sh -c CMD` (JSON on stdin, KABAR_SEQ/KABAR_TYPE set)",
            F(exec_cmd)),
    OPT_ROW("jsonl", OPT_STRING, NULL, NULL, "FILE",
            "append each inbox event to FILE as a JSON line (fsynced)", F(jsonl)),
    OPT_RANGE("max-tries", "5", NULL, "N", "hand-off tries before an event becomes a dead letter",
              F(max_tries), 1, 1000),
    OPT_RANGE("window", "256", NULL, "N", "events in flight to the broker", F(window), 1, 65536),
    OPT_RANGE("timeout", "5000", NULL, "MS", "a broker silent this long is considered down",
              F(timeout_ms), 100, 3600000),
    OPT_RANGE("exec-timeout", "60000", NULL, "MS", "kill an --exec handler running longer",
              F(exec_timeout_ms), 1, 86400000),
    OPT_ROW("log-level", OPT_LEVEL, "info", NULL, "LEVEL", "debug, info, warn or error",
            F(log_level)),
    OPT_ROW("help", OPT_SWITCH, NULL, NULL, NULL, "print this help", F(help)),
    OPT_ROW("version", OPT_SWITCH, NULL, NULL, NULL, "print the version", F(version)),
};

static const opt_table table = {"kabar-agent", rows, sizeof rows / sizeof rows[0]};

static void usage(FILE *f)
{
    fprintf(f, "usage: kabar-agent --agency ID --data DIR --broker ENDPOINT\n"
               "                   (--key FILE --server-key KEY|FILE | --insecure)\n"
               "                   [--exec CMD | --jsonl FILE] [options]\n\n"
               "Accepts events from local services on ipc://DIR/agent.sock, stores them in a\n"
               "durable outbox and forwards them to the broker until acked; hands the events\n"
               "addressed to the agency to its services. See docs/AGENT.md.\n\noptions:\n");
    opt_usage(&table, f);
}

/* 0 ok, 1 exit 0 (help/version), 2 usage error. */
static int parse_args(int argc, char **argv, config *c)
{
    kabar_error e = {0};
    if (opt_parse(&table, c, sizeof *c, argc, argv, opt_getenv, &e) != 0) {
        fprintf(stderr, "kabar-agent: %s\n", e.message);
        return 2;
    }
    if (c->help) {
        usage(stdout);
        return 1;
    }
    if (c->version) {
        printf("kabar-agent %s\n", kabar_version());
        return 1;
    }
    return 0;
}

static int check_config(const config *c)
{
    if (c->agency == NULL || !kabar_agency_valid(c->agency, strlen(c->agency))) {
        fprintf(stderr,
                "kabar-agent: --agency %s: need an agency id like \"dinkes\" "
                "(a-z, 0-9 and '-', 2 to 32 characters)\n",
                c->agency ? c->agency : "(missing)");
        return 2;
    }
    if (c->data == NULL || c->data[0] == '\0') {
        fprintf(stderr, "kabar-agent: --data DIR is required (the agent's own directory)\n");
        return 2;
    }
    if (!c->insecure && (c->key == NULL || c->key[0] == '\0')) {
        fprintf(stderr, "kabar-agent: --key FILE is required: the agency's secret key (make one "
                        "with `kabar keygen --out FILE` and have the broker's operator register "
                        "FILE.pub with `kabar agency add`); or --insecure for a broker started "
                        "with --insecure\n");
        return 2;
    }
    if (!c->insecure && (c->server_key == NULL || c->server_key[0] == '\0')) {
        fprintf(stderr, "kabar-agent: --server-key KEY|FILE is required: the broker's public key "
                        "(its DATA/broker.pub, from the operator), so that the agent talks to the "
                        "real broker; or --insecure for a broker started with --insecure\n");
        return 2;
    }
    if (c->exec_cmd != NULL && c->jsonl != NULL) {
        fprintf(stderr, "kabar-agent: give --exec or --jsonl, not both\n");
        return 2;
    }
    return 0;
}

static volatile sig_atomic_t got_signal;

static void on_signal(int sig)
{
    got_signal = sig;
}

static void wake_forward(void *arg)
{
    forward_notify(arg);
}

typedef struct agent {
    config cfg;
    char dir[PATH_MAX];
    int lock_fd;
    agentdb *db;
    handoff *out;
    forward *fwd;
    inbox *in;
    intake *intake;
    atomic_bool stop;
    bool secure; /* key and server_pk loaded: CURVE, signed events */
    kkey key;
    uint8_t server_pk[KKEY_PUBLIC];
    char key_id[KKEY_ID_TEXT];
} agent;

static void agent_stop(agent *a)
{
    atomic_store(&a->stop, true);
    if (a->fwd)
        forward_notify(a->fwd);
    intake_close(&a->intake);
    inbox_join(&a->in);
    forward_join(&a->fwd);
    handoff_close(&a->out);
    agentdb_close(&a->db);
    if (a->lock_fd >= 0)
        close(a->lock_fd);
    kkey_wipe(&a->key);
}

/*
 * Load --key and --server-key (unless --insecure). 0, or 2 with the reason
 * on stderr.
 */
static int load_keys(agent *a)
{
    const config *c = &a->cfg;
    kabar_error e = {0};
    if (c->insecure) {
        if (c->key != NULL || c->server_key != NULL)
            fprintf(stderr, "kabar-agent: --insecure: not using --key/--server-key (or "
                            "KABAR_KEY/KABAR_SERVER_KEY): plaintext, unsigned events\n");
        return 0;
    }
    if (kkey_load_identity(&a->key, a->server_pk, c->key, c->server_key, &e) != 0) {
        fprintf(stderr, "kabar-agent: %s\n", e.message);
        return 2;
    }
    kkey_id_text(a->key.pk, a->key_id);
    a->secure = true;
    return 0;
}

static int agent_start(agent *a, const kabar_schema *schema)
{
    kabar_error e = {0};
    const config *c = &a->cfg;
    int rc = agentdb_open(&a->db, a->dir, false, &e);
    if (rc == 0)
        rc = agentdb_set_identity(a->db, c->agency, c->broker, &e);
    if (rc == 0)
        rc = agentdb_set_connected(a->db, false, kabar_now(), &e);
    const kkey *key = a->secure ? &a->key : NULL;
    const uint8_t *server_pk = a->secure ? a->server_pk : NULL;
    forward_opts fo = {c->broker,           c->agency, a->db, (int)c->timeout_ms,
                       (uint32_t)c->window, &a->stop,  key,   server_pk};
    if (rc == 0)
        rc = forward_start(&a->fwd, &fo, &e);
    if (rc == 0 && (c->exec_cmd != NULL || c->jsonl != NULL)) {
        handoff_opts ho = {c->exec_cmd, c->jsonl, c->agency, (int)c->exec_timeout_ms, NULL, NULL};
        rc = handoff_open(&a->out, &ho, &e);
        inbox_opts io = {c->broker,          c->agency, a->db, a->out,   (uint32_t)c->max_tries,
                         (int)c->timeout_ms, &a->stop,  key,   server_pk};
        if (rc == 0)
            rc = inbox_start(&a->in, &io, &e);
    }
    intake_opts ino = {a->dir, c->agency, schema, a->db, wake_forward, a->fwd};
    if (rc == 0)
        rc = intake_open(&a->intake, &ino, &e);
    if (rc != 0)
        klog(KLOG_ERROR, "KABAR-AGENT-START-FAIL", "%s", e.message);
    return rc;
}

int main(int argc, char **argv)
{
    agent a = {.lock_fd = -1};
    int rc = parse_args(argc, argv, &a.cfg);
    if (rc != 0)
        return rc == 1 ? 0 : 2;
    if ((rc = check_config(&a.cfg)) != 0)
        return rc;
    if ((rc = load_keys(&a)) != 0)
        return rc;
    klog_init("kabar-agent", 2, (klog_level)a.cfg.log_level);
    if (mkdir(a.cfg.data, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "kabar-agent: cannot create data directory %s: %s\n", a.cfg.data,
                strerror(errno));
        return 2;
    }
    if (realpath(a.cfg.data, a.dir) == NULL) {
        fprintf(stderr, "kabar-agent: data directory %s: %s\n", a.cfg.data, strerror(errno));
        return 2;
    }
    kabar_error e = {0};
    const kabar_schema *schema = kabar_schema_default(&e);
    if (schema == NULL) {
        fprintf(stderr, "kabar-agent: %s\n", e.message);
        return 2;
    }
    if (dirlock_take(a.dir, "agent.lock", "kabar-agent", &a.lock_fd, &e) != 0) {
        fprintf(stderr, "kabar-agent: %s\n", e.message);
        return 2;
    }

    /* Only the main thread takes the signals: the others start with them blocked. */
    signal(SIGPIPE, SIG_IGN);
    sigset_t sigs, old;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, &old);
    atomic_init(&a.stop, false);
    rc = agent_start(&a, schema);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    if (rc != 0) {
        agent_stop(&a);
        return 2;
    }
    klog(KLOG_INFO, "KABAR-AGENT-READY",
         "agency %s accepting events on ipc://%s/agent.sock, forwarding to %s (%s%s), inbox: %s",
         a.cfg.agency, a.dir, a.cfg.broker,
         a.secure ? "CURVE, events signed by key " : "plaintext, unsigned: --insecure",
         a.secure ? a.key_id : "",
         a.cfg.exec_cmd ? "exec"
         : a.cfg.jsonl  ? "jsonl"
                        : "off (no --exec or --jsonl)");
    int status = 0;
    while (!got_signal) {
        if (intake_turn(a.intake, 200, &e) != 0) {
            klog(KLOG_ERROR, "KABAR-AGENT-INTAKE-FAIL", "%s", e.message);
            status = 1;
            break;
        }
    }
    agent_stop(&a);
    klog(KLOG_INFO, "KABAR-AGENT-STOP", "stopped%s", got_signal ? " on signal" : "");
    return status;
}
