/*
 * cmd_publish.c - `kabar publish`: JSON Lines events in, one result line out
 * per event, in input order (docs/CLI.md "publish").
 *
 * To a broker (the default): lines are turned into canonical events
 * (kabar_event_from_json) and handed to the client's publishing window, so
 * thousands go out per second without a round trip each. A line that is
 * not a valid event is reported at once and never sent. Because results
 * arrive later than the lines that follow them, every line waits in a queue
 * (`outq`) until its result is known and all lines before it were printed.
 *
 * To the local agent (--agent DIR): each line is handed as it is to the
 * kabar-agent whose data directory is DIR (kabar_agent.h), which validates
 * it, stores it durably in its outbox and forwards it to the broker later.
 * One synchronous request per line, so results come in order by themselves;
 * an accepted line reports the event's outbox position, not a seq.
 *
 * Signing: the client signs each PUB batch with the identity key (--key,
 * cli_identity). With --key-dir DIR (an admin importing events of many
 * agencies) each event is signed with DIR/SOURCE.key instead: the signer is
 * switched (kabar_client_set_signer, which cuts the batch) whenever the
 * source changes, so input grouped by source keeps batches large. Keys are
 * loaded once each; a source without a key file ends the run before that
 * event is sent.
 */
#include <errno.h>
#include <getopt.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "kabar_agent.h"
#include "kkey.h"

static const char *const CMD = "publish";

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: kabar publish [FILE|-] [--broker EP | --agent DIR] [--source ID]\n"
            "                     [--key FILE] [--server-key KEY|FILE] [--key-dir DIR]\n"
            "                     [--window N] [--timeout MS]\n"
            "\n"
            "Publish the events of FILE (default: standard input), one JSON object per\n"
            "line, and print one JSON result per event line, in input order:\n"
            "  {\"id\":\"...\",\"seq\":N,\"duplicate\":false}\n"
            "  {\"id\":\"...\",\"error\":\"CODE\",\"message\":\"...\"}\n"
            "An invalid line is reported without being sent (with \"line\":N when it has no\n"
            "readable id). Blank lines are skipped.\n"
            "\n"
            "With --agent DIR the events go to the local kabar-agent running with --data DIR\n"
            "instead: it checks each one, sets its source to the agent's agency, stores it in\n"
            "its outbox and forwards it to the broker. An accepted event's result is then\n"
            "  {\"id\":\"...\",\"pos\":N}       (N: its position in the agent's outbox)\n"
            "\n"
            "Options:\n"
            "  -b, --broker EP    broker endpoint (default $KABAR_BROKER or " KABAR_DEFAULT_ENDPOINT
            ")\n"
            "  -a, --agent DIR    hand the events to the kabar-agent whose data directory is DIR\n"
            "  -s, --source ID    agency id for events that have no \"source\"\n"
            "      --key FILE     your secret key file (default $KABAR_KEY): the broker admits\n"
            "                     you by it and each batch of events is signed with it.\n"
            "                     Without one: plaintext and unsigned (kabard --insecure)\n"
            "      --server-key KEY  the broker's public key, ed25519:... or a file holding it\n"
            "                     (default $KABAR_SERVER_KEY)\n"
            "      --key-dir DIR  sign each event with DIR/SOURCE.key, the secret key of its\n"
            "                     source agency, instead of --key (an admin importing the\n"
            "                     events of many agencies; --key still opens the connection)\n"
            "  -w, --window N     events in flight before waiting for acks (default 1024;\n"
            "                     not used with --agent: one event at a time)\n"
            "  -t, --timeout MS   give up when the broker (or the agent) is silent this long\n"
            "                     (default 10000)\n"
            "  -h, --help         show this help\n"
            "\n"
            "Exit codes: 0 every event accepted, 1 some event rejected, 2 bad usage or\n"
            "the broker (the agent) cannot be reached.\n");
}

typedef struct outline {
    uint64_t line;
    bool done;
    bool has_id;
    int code;
    uint64_t seq;
    bool duplicate;
    bool to_agent; /* accepted by an agent: pos holds the outbox position */
    uint64_t pos;
    char *message; /* owned, rejected lines only */
    char id[KABAR_MAX_ID_LEN + 1];
} outline;

/* A queue of lines awaiting output, addressed by absolute position. */
typedef struct pub_state {
    outline *q;
    size_t cap; /* power of two */
    uint64_t first, end;
    kabar_buf out;
    bool rejected;
    bool write_failed;
    bool flush_each;     /* results come one at a time (--agent): flush each */
    const char *key_dir; /* --key-dir: sign with KEY_DIR/SOURCE.key */
    struct signer *signers;
    size_t nsigners;
    size_t cur; /* index of the signer in use + 1; 0: the client's own key */
} pub_state;

/* A source agency's key, loaded from --key-dir. */
typedef struct signer {
    char source[KABAR_MAX_AGENCY_LEN + 1];
    kkey key;
} signer;

static outline *q_at(pub_state *st, uint64_t pos)
{
    return &st->q[pos & (st->cap - 1)];
}

static outline *q_push(pub_state *st)
{
    if (st->end - st->first == st->cap) {
        size_t cap = st->cap ? st->cap * 2 : 1024;
        outline *q = malloc(cap * sizeof *q);
        if (q == NULL)
            return NULL;
        for (uint64_t p = st->first; p < st->end; p++)
            q[p & (cap - 1)] = *q_at(st, p);
        free(st->q);
        st->q = q;
        st->cap = cap;
    }
    outline *o = q_at(st, st->end++);
    memset(o, 0, offsetof(outline, id));
    o->id[0] = '\0';
    return o;
}

static void print_line(pub_state *st, const outline *o)
{
    kabar_buf *b = &st->out;
    char num[32];
    b->len = 0;
    kabar_buf_append(b, "{", 1);
    if (o->has_id) {
        kabar_buf_append(b, "\"id\":", 5);
        cli_json_str(b, o->id, strlen(o->id));
    } else {
        int n = snprintf(num, sizeof num, "\"line\":%llu", (unsigned long long)o->line);
        kabar_buf_append(b, num, (size_t)n);
    }
    if (o->code == KABAR_OK && o->to_agent) {
        int n = snprintf(num, sizeof num, ",\"pos\":%llu}\n", (unsigned long long)o->pos);
        kabar_buf_append(b, num, (size_t)n);
    } else if (o->code == KABAR_OK) {
        int n = snprintf(num, sizeof num, ",\"seq\":%llu", (unsigned long long)o->seq);
        kabar_buf_append(b, num, (size_t)n);
        const char *tail = o->duplicate ? ",\"duplicate\":true}\n" : ",\"duplicate\":false}\n";
        kabar_buf_append(b, tail, strlen(tail));
    } else {
        const char *name = kabar_errname(o->code);
        const char *msg = o->message ? o->message : kabar_strerror(o->code);
        kabar_buf_append(b, ",\"error\":", 9);
        cli_json_str(b, name, strlen(name));
        kabar_buf_append(b, ",\"message\":", 11);
        cli_json_str(b, msg, strlen(msg));
        kabar_buf_append(b, "}\n", 2);
    }
    if (b->data && fwrite(b->data, 1, b->len, stdout) != b->len)
        st->write_failed = true;
    if (st->flush_each && fflush(stdout) != 0)
        st->write_failed = true;
}

/* Print every line at the front of the queue whose result is known. */
static void print_ready(pub_state *st)
{
    while (st->first < st->end && q_at(st, st->first)->done) {
        outline *o = q_at(st, st->first++);
        print_line(st, o);
        free(o->message);
        o->message = NULL;
    }
}

static void set_message(outline *o, int code, const char *msg)
{
    o->done = true;
    o->code = code;
    o->message = strdup(msg && msg[0] ? msg : kabar_strerror(code));
}

static void on_result(void *arg, const kabar_pub_result *r)
{
    pub_state *st = arg;
    outline *o = q_at(st, (uint64_t)(uintptr_t)r->user);
    if (r->code == KABAR_OK) {
        o->done = true;
        o->code = KABAR_OK;
        o->seq = r->seq;
        o->duplicate = r->duplicate;
    } else {
        st->rejected = true;
        set_message(o, r->code, r->message);
    }
    print_ready(st);
}

static void copy_id(outline *o, const char *s, size_t n)
{
    if (n > KABAR_MAX_ID_LEN)
        n = KABAR_MAX_ID_LEN;
    memcpy(o->id, s, n);
    o->id[n] = '\0';
    o->has_id = true;
}

/* The "id" of a line that is not a valid event, when one can be read. */
static void id_of_bad_line(outline *o, const char *line, size_t len)
{
    json_t *j = json_loadb(line, len, 0, NULL);
    json_t *id = json_is_object(j) ? json_object_get(j, "id") : NULL;
    if (json_is_string(id))
        copy_id(o, json_string_value(id), json_string_length(id));
    json_decref(j);
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n')
            return false;
    return true;
}

/*
 * --key-dir: make the key of `source` the signer (loading DIR/SOURCE.key the
 * first time). 0, or the reason the event cannot be signed.
 */
static int use_signer(pub_state *st, kabar_client *c, kabar_str source, kabar_error *err)
{
    if (st->cur > 0) {
        const char *cur = st->signers[st->cur - 1].source;
        if (strlen(cur) == source.len && memcmp(cur, source.ptr, source.len) == 0)
            return 0;
    }
    size_t i = 0;
    while (i < st->nsigners && !(strlen(st->signers[i].source) == source.len &&
                                 memcmp(st->signers[i].source, source.ptr, source.len) == 0))
        i++;
    if (i == st->nsigners) {
        signer *p = realloc(st->signers, (st->nsigners + 1) * sizeof *p);
        if (p == NULL)
            return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
        st->signers = p;
        signer *sg = &p[i];
        char path[4096];
        kabar_error e = {0};
        snprintf(sg->source, sizeof sg->source, "%.*s", (int)source.len, source.ptr);
        snprintf(path, sizeof path, "%s/%s.key", st->key_dir, sg->source);
        if (kkey_load(&sg->key, path, &e) != 0)
            return kabar_error_set(err, e.code ? e.code : KABAR_IO,
                                   "no signing key for source \"%s\": %s (--key-dir %s needs "
                                   "%s.key, the secret key of every source agency in the input)",
                                   sg->source, e.message, st->key_dir, sg->source);
        st->nsigners++;
    }
    int rc = kabar_client_set_signer(c, &st->signers[i].key, err);
    if (rc == 0)
        st->cur = i + 1;
    return rc;
}

/* One input line: queue it, and publish it when it is a valid event. */
static int one_line(pub_state *st, kabar_client *c, const kabar_schema *schema, const char *source,
                    char *line, size_t len, uint64_t lineno, kabar_error *err)
{
    uint8_t *ev = NULL;
    size_t evlen = 0;
    kabar_error e;
    kabar_event dec;
    outline *o = q_push(st);
    if (o == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    uint64_t pos = st->end - 1;
    o->line = lineno;
    if (kabar_event_from_json(schema, line, len, source, &ev, &evlen, &e) != 0) {
        id_of_bad_line(o, line, len);
        st->rejected = true;
        set_message(o, e.code, e.message);
        print_ready(st);
        return 0;
    }
    if (kabar_event_decode(NULL, ev, evlen, &dec, NULL) == 0)
        copy_id(o, dec.id.ptr, dec.id.len);
    if (st->key_dir != NULL) {
        int src = use_signer(st, c, dec.source, err);
        if (src != 0) {
            st->end--; /* not sent: the run ends here, this line gets no result */
            free(ev);
            return src;
        }
    }
    int rc = kabar_client_publish(c, ev, evlen, (void *)(uintptr_t)pos, err);
    free(ev);
    return rc;
}

static int run(pub_state *st, kabar_client *c, const kabar_schema *schema, const char *source,
               FILE *in, kabar_error *err)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    uint64_t lineno = 0;
    int rc = 0;
    while (rc == 0 && !cli_stop && !st->write_failed && (n = getline(&line, &cap, in)) >= 0) {
        lineno++;
        size_t len = (size_t)n;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (blank(line, len))
            continue;
        rc = one_line(st, c, schema, source, line, len, lineno, err);
    }
    free(line);
    if (rc == 0 && ferror(in))
        rc = kabar_error_set(err, KABAR_IO, "cannot read the input");
    if (rc == 0) {
        rc = kabar_client_flush(c, err);
    } else if (rc != KABAR_CONNECT && rc != KABAR_TIMEOUT) {
        kabar_error e; /* the run stopped on this side: still report what was sent */
        kabar_client_flush(c, &e);
    }
    return rc;
}

/* Failures of the way to the agent, not of the event: publish stops (exit 2). */
static bool agent_fatal(int code)
{
    return code == KABAR_TIMEOUT || code == KABAR_CONNECT || code == KABAR_IO ||
           code == KABAR_PROTOCOL || code == KABAR_NO_MEMORY || code == KABAR_INVALID_ARGUMENT;
}

/*
 * Check that the line is a JSON object (the agent would take other bytes
 * for msgpack) and give it "source" when `source` is set and it has none.
 * 0 with *out a malloc'd replacement (caller frees) or NULL to send the
 * line as it is; KABAR_BAD_JSON as `kabar publish` reports it to a broker.
 */
static int prepare(const char *line, size_t len, const char *source, char **out, kabar_error *err)
{
    json_error_t jerr;
    json_t *j = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    int rc = 0;
    *out = NULL;
    if (j == NULL)
        return kabar_error_set(err, KABAR_BAD_JSON, "line %d column %d: %s", jerr.line, jerr.column,
                               jerr.text);
    if (!json_is_object(j))
        rc = kabar_error_set(err, KABAR_BAD_JSON, "an event is a JSON object");
    else if (source != NULL && json_object_get(j, "source") == NULL) {
        if (json_object_set_new(j, "source", json_string(source)) != 0 ||
            (*out = json_dumps(j, JSON_COMPACT)) == NULL)
            rc = kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    }
    json_decref(j);
    return rc;
}

/* One input line to the agent; 0, or a failure that ends the run. */
static int agent_line(pub_state *st, kabar_agent *a, const char *source, const char *line,
                      size_t len, uint64_t lineno, kabar_error *err)
{
    outline *o = q_push(st);
    if (o == NULL)
        return kabar_error_set(err, KABAR_NO_MEMORY, "out of memory");
    o->line = lineno;
    char *ev = NULL;
    kabar_agent_receipt r;
    kabar_error e;
    int rc = prepare(line, len, source, &ev, &e);
    if (rc == 0)
        rc = kabar_agent_submit(a, ev ? ev : line, ev ? strlen(ev) : len, &r, &e);
    free(ev);
    if (rc == 0) {
        copy_id(o, r.id, strlen(r.id));
        o->done = true;
        o->to_agent = true;
        o->pos = r.pos;
    } else if (agent_fatal(rc)) {
        st->end--; /* no result for this line: it is not reported */
        *err = e;
        return rc;
    } else {
        id_of_bad_line(o, line, len);
        st->rejected = true;
        set_message(o, e.code, e.message);
    }
    print_ready(st);
    return 0;
}

static int agent_run(pub_state *st, kabar_agent *a, const char *source, FILE *in, kabar_error *err)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    uint64_t lineno = 0;
    int rc = 0;
    while (rc == 0 && !cli_stop && !st->write_failed && (n = getline(&line, &cap, in)) >= 0) {
        lineno++;
        size_t len = (size_t)n;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            len--;
        if (blank(line, len))
            continue;
        rc = agent_line(st, a, source, line, len, lineno, err);
    }
    free(line);
    if (rc == 0 && ferror(in))
        rc = kabar_error_set(err, KABAR_IO, "cannot read the input");
    return rc;
}

/* --agent DIR: the whole run against the local agent. */
static int publish_to_agent(pub_state *st, const char *dir, int timeout_ms, const char *source,
                            FILE *in)
{
    kabar_agent *a = NULL;
    kabar_error err;
    int code = CLI_OK;
    if (kabar_agent_connect(&a, dir, timeout_ms, &err) != 0)
        return cli_fail(CMD, &err);
    st->flush_each = true;
    if (agent_run(st, a, source, in, &err) != 0)
        code = cli_fail(CMD, &err);
    else if (cli_stop)
        code = cli_error(CMD, "interrupted; the lines after the last result were not handed to "
                              "the agent");
    else if (st->rejected)
        code = CLI_FAIL;
    kabar_agent_close(&a);
    return code;
}

/* The default: the whole run against the broker. */
static int publish_to_broker(pub_state *st, const char *broker, kabar_client_opts *copts,
                             const char *source, FILE *in)
{
    kabar_client *c = NULL;
    kabar_error err;
    int code = CLI_OK;
    const kabar_schema *schema = kabar_schema_default(&err);
    if (schema == NULL)
        return cli_fail(CMD, &err);
    int connected = cli_connect(CMD, broker, NULL, copts, &c);
    if (connected != CLI_OK)
        return connected;
    kabar_client_on_result(c, on_result, st);
    if (run(st, c, schema, source, in, &err) != 0)
        code = cli_fail(CMD, &err);
    else if (cli_stop)
        code = cli_error(CMD, "interrupted; the lines after the last result were not published");
    else if (st->rejected)
        code = CLI_FAIL;
    print_ready(st);
    kabar_client_destroy(&c);
    return code;
}

int cmd_publish(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"broker", required_argument, NULL, 'b'},
        {"agent", required_argument, NULL, 'a'},
        {"source", required_argument, NULL, 's'},
        {"window", required_argument, NULL, 'w'},
        {"timeout", required_argument, NULL, 't'},
        {"key-dir", required_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        CLI_IDENTITY_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *broker = NULL, *agent = NULL, *source = NULL, *path = "-", *key_dir = NULL;
    kabar_client_opts copts = {.timeout_ms = 10000, .window = 1024};
    uint64_t window;
    int opt;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "b:a:s:w:t:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'b':
            broker = optarg;
            break;
        case 'a':
            agent = optarg;
            break;
        case 's':
            source = optarg;
            break;
        case 'w':
            if (!cli_parse_u64(CMD, "--window", optarg, 1, &window))
                return CLI_USAGE;
            copts.window = window > 65536 ? 65536 : (uint32_t)window;
            break;
        case 't':
            if (!cli_parse_int(CMD, "--timeout", optarg, 1, 3600000, &copts.timeout_ms))
                return CLI_USAGE;
            break;
        case 'k':
            key_dir = optarg;
            break;
        case 'h':
            usage(stdout);
            return CLI_OK;
        default:
            if (cli_identity_option(opt, optarg))
                break;
            return cli_usage_error(CMD, "unknown option");
        }
    }
    if (argc - optind > 1)
        return cli_usage_error(CMD, "one input file at most (got %d)", argc - optind);
    if (optind < argc)
        path = argv[optind];
    if (broker != NULL && agent != NULL)
        return cli_usage_error(CMD, "--broker and --agent exclude each other (the agent "
                                    "forwards to the broker it was started with)");
    if (agent != NULL && agent[0] == '\0')
        return cli_usage_error(CMD, "--agent: an empty directory name");
    if (agent != NULL && key_dir != NULL)
        return cli_usage_error(CMD, "--key-dir is for publishing to a broker; the agent signs "
                                    "with its own key");
    if (key_dir != NULL && key_dir[0] == '\0')
        return cli_usage_error(CMD, "--key-dir: an empty directory name");

    FILE *in = strcmp(path, "-") == 0 ? stdin : fopen(path, "r");
    if (in == NULL)
        return cli_error(CMD, "cannot open %s: %s", path, strerror(errno));

    pub_state st = {.key_dir = key_dir};
    cli_signals();
    cli_stdout_buffered();
    int code = agent ? publish_to_agent(&st, agent, copts.timeout_ms, source, in)
                     : publish_to_broker(&st, broker, &copts, source, in);
    if (cli_flush(CMD) != 0 || st.write_failed)
        code = CLI_USAGE;
    for (uint64_t p = st.first; p < st.end; p++)
        free(q_at(&st, p)->message);
    for (size_t i = 0; i < st.nsigners; i++)
        kkey_wipe(&st.signers[i].key);
    free(st.signers);
    free(st.q);
    kabar_buf_free(&st.out);
    if (in != stdin)
        fclose(in);
    return code;
}
