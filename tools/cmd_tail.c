/*
 * cmd_tail.c - `kabar tail`: follow the log as events are committed and
 * print them as JSON Lines (docs/CLI.md "tail").
 *
 * Output is flushed whenever no further event is waiting, so a pipe sees
 * every event promptly while a burst is still written in big blocks. A
 * durable consumer acknowledges only what was flushed: after a crash it
 * resumes at the first event that may not have reached the reader.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char *const CMD = "tail";

#define ACK_EVERY 512 /* a durable tail acks at least this often */
#define IDLE_MS   250 /* how long one wait lasts before looking at signals */

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: kabar tail [--broker EP] [--type PREFIX] [--source ID] [--target ID]\n"
            "                  [--from SEQ | --since TIME | --new] [--durable NAME]\n"
            "                  [--count N] [--timeout MS] [--key FILE] [--server-key KEY]\n"
            "\n"
            "Print events as JSON Lines as the broker commits them, until interrupted\n"
            "(Ctrl-C, SIGTERM) or N events were printed.\n"
            "\n"
            "Options:\n"
            "  -b, --broker EP    broker endpoint (default $KABAR_BROKER or " KABAR_DEFAULT_ENDPOINT
            ")\n"
            "      --type PREFIX  only types starting with PREFIX (\"finding.\" or "
            "\"visit.scheduled\")\n"
            "      --source ID    only events published by this agency\n"
            "      --target ID    only events that concern this agency (targets it, or broadcast)\n"
            "      --from SEQ     start at this seq (inclusive)\n"
            "      --since TIME   start at the first event received at or after TIME\n"
            "                     (RFC 3339, or YYYY-MM-DD meaning 00:00 UTC)\n"
            "      --new          only events committed from now on (the default)\n"
            "  -d, --durable NAME a durable consumer: resume after its last acknowledged event;\n"
            "                     acknowledge each event once its line is written. A new\n"
            "                     consumer starts at the first event of the log unless\n"
            "                     --from, --since or --new says otherwise.\n"
            "  -n, --count N      exit after N events\n"
            "  -t, --timeout MS   give up when the broker is silent this long (default 10000)\n"
            "      --key FILE     your secret key file (default $KABAR_KEY); an agent key sees\n"
            "                     only events that target its agency and broadcasts, so give\n"
            "                     --target with it\n"
            "      --server-key KEY  the broker's public key, ed25519:... or a file holding it\n"
            "                     (default $KABAR_SERVER_KEY)\n"
            "  -h, --help         show this help\n"
            "\n"
            "Exit codes: 0 interrupted or N events printed, 2 bad usage or the broker\n"
            "cannot be reached or was lost.\n");
}

typedef struct tail_state {
    kabar_sub *sub;
    bool durable;
    uint64_t last_seq;  /* last seq written */
    uint64_t acked_seq; /* last seq acknowledged */
    kabar_buf line;
} tail_state;

/* Flush stdout, then (durable) ack what it held. 0, EPIPE, or another errno. */
static int checkpoint(tail_state *t)
{
    int e = cli_flush(CMD);
    if (e != 0)
        return e;
    if (t->durable && t->last_seq > t->acked_seq) {
        kabar_error err;
        if (kabar_sub_ack(t->sub, t->last_seq, &err) != 0)
            return cli_fail(CMD, &err), EIO;
        t->acked_seq = t->last_seq;
    }
    return 0;
}

static int write_record(tail_state *t, const kabar_record *rec)
{
    kabar_error err;
    t->line.len = 0;
    if (kabar_event_to_json(&t->line, rec->seq, rec->received_at, rec->bytes, rec->len, &err) !=
            0 ||
        kabar_buf_append(&t->line, "\n", 1) != 0) {
        cli_error(CMD, "event seq %llu cannot be shown as JSON: %s", (unsigned long long)rec->seq,
                  err.message);
        return EIO;
    }
    if (fwrite(t->line.data, 1, t->line.len, stdout) != t->line.len)
        return cli_reader_gone() ? EPIPE : errno ? errno : EIO;
    t->last_seq = rec->seq;
    return 0;
}

/* The loop: CLI_OK when stopped or done, CLI_USAGE on a broker or output failure. */
static int follow(tail_state *t, uint64_t count)
{
    uint64_t n = 0;
    kabar_record rec;
    kabar_error err;
    int e = 0;
    while (!cli_stop && (count == 0 || n < count)) {
        int rc = kabar_sub_next(t->sub, &rec, 0, &err);
        if (rc == KABAR_TIMEOUT) { /* nothing waiting: make what we have visible */
            if ((e = checkpoint(t)) != 0)
                break;
            rc = kabar_sub_next(t->sub, &rec, IDLE_MS, &err);
            if (rc == KABAR_TIMEOUT)
                continue;
        }
        if (rc == KABAR_END)
            break;
        if (rc != 0)
            return checkpoint(t), cli_fail(CMD, &err);
        if ((e = write_record(t, &rec)) != 0)
            break;
        n++;
        if (t->durable && t->last_seq - t->acked_seq >= ACK_EVERY && (e = checkpoint(t)) != 0)
            break;
    }
    if (e == 0)
        e = checkpoint(t);
    if (e == 0 || e == EPIPE) /* a reader that went away ends the tail, as for tail -f */
        return CLI_OK;
    if (e != EIO)
        cli_error(CMD, "cannot write the output: %s", strerror(e));
    return CLI_USAGE;
}

enum { OPT_TYPE = 256, OPT_SOURCE, OPT_TARGET, OPT_FROM, OPT_SINCE, OPT_NEW };

int cmd_tail(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"broker", required_argument, NULL, 'b'},
        {"type", required_argument, NULL, OPT_TYPE},
        {"source", required_argument, NULL, OPT_SOURCE},
        {"target", required_argument, NULL, OPT_TARGET},
        {"from", required_argument, NULL, OPT_FROM},
        {"since", required_argument, NULL, OPT_SINCE},
        {"new", no_argument, NULL, OPT_NEW},
        {"durable", required_argument, NULL, 'd'},
        {"count", required_argument, NULL, 'n'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        CLI_IDENTITY_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *broker = NULL;
    kabar_sub_opts so = {.start = KABAR_START_NOW};
    kabar_client_opts copts = {.timeout_ms = 10000};
    uint64_t count = 0;
    int starts = 0, opt;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "b:d:n:t:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'b':
            broker = optarg;
            break;
        case OPT_TYPE:
            so.type_prefix = optarg;
            break;
        case OPT_SOURCE:
            so.source = optarg;
            break;
        case OPT_TARGET:
            so.target = optarg;
            break;
        case OPT_FROM:
            if (!cli_parse_u64(CMD, "--from", optarg, 1, &so.seq))
                return CLI_USAGE;
            so.start = KABAR_START_SEQ;
            starts++;
            break;
        case OPT_SINCE:
            if (!cli_parse_time(CMD, "--since", optarg, &so.time))
                return CLI_USAGE;
            so.start = KABAR_START_TIME;
            starts++;
            break;
        case OPT_NEW:
            so.start = KABAR_START_NOW;
            starts++;
            break;
        case 'd':
            so.durable = optarg;
            break;
        case 'n':
            if (!cli_parse_u64(CMD, "--count", optarg, 1, &count))
                return CLI_USAGE;
            break;
        case 't':
            if (!cli_parse_int(CMD, "--timeout", optarg, 1, 3600000, &copts.timeout_ms))
                return CLI_USAGE;
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
    if (optind < argc)
        return cli_usage_error(CMD, "unexpected argument \"%s\"", argv[optind]);
    if (starts > 1)
        return cli_usage_error(CMD, "give at most one of --from, --since and --new");
    if (so.durable && starts == 0)
        so.start = KABAR_START_FIRST; /* a new durable consumer sees the whole log */

    kabar_error err;
    kabar_client *c = NULL;
    tail_state t = {.durable = so.durable != NULL};
    int code;
    cli_signals();
    cli_stdout_buffered();
    if ((code = cli_connect(CMD, broker, NULL, &copts, &c)) != CLI_OK) {
        /* reported */
    } else if (kabar_client_subscribe(c, &so, &t.sub, &err) != 0) {
        code = cli_fail(CMD, &err);
    } else {
        code = follow(&t, count);
    }
    kabar_sub_close(&t.sub);
    kabar_client_destroy(&c);
    kabar_buf_free(&t.line);
    return code;
}
