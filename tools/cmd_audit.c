/*
 * cmd_audit.c - `kabar audit`: checkpoints, proofs, verification of the
 * whole log, exports, and the auditor's report (docs/AUDIT.md).
 *
 *   checkpoint [--new]             the latest signed checkpoint
 *   prove SEQ [--size N]           inclusion proof of an event
 *   consistency OLD NEW            consistency proof between two sizes
 *   check-proof FILE --checkpoint NOTE [--checkpoint NOTE] --log-key KEY
 *   verify                         check everything the log holds
 *   check-export FILE --log-key KEY [--registry FILE] [--agency-key ID=KEY]...
 *   report ...                     tools/audit_report.c
 *
 * The log is read from a data directory (--data DIR: read-only, safe while
 * kabard runs) or from a broker (--broker EP, with an auditor's --key).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audit_cmd.h"
#include "audit_export.h"
#include "audit_proof.h"
#include "audit_registry.h"
#include "audit_report.h"
#include "audit_source.h"
#include "audit_verify.h"
#include "cli.h"

static const char *const CMD = "audit";

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: kabar audit checkpoint [--new] (--broker EP | --data DIR)\n"
        "       kabar audit prove SEQ [--size N] [--format text|json] (--broker EP | --data DIR)\n"
        "       kabar audit consistency OLD NEW [--format text|json] (--broker EP | --data DIR)\n"
        "       kabar audit check-proof FILE --checkpoint NOTE [--checkpoint NOTE]\n"
        "                               --log-key KEY\n"
        "       kabar audit verify (--data DIR | --broker EP) [--log-key KEY]\n"
        "                          [--since-checkpoint NOTE] [--max-problems N]\n"
        "       kabar audit check-export FILE --log-key KEY [--registry FILE]\n"
        "                                [--agency-key ID=KEY]...\n"
        "       kabar audit report (--data DIR | --broker EP) ... (kabar audit report --help)\n"
        "\n"
        "Prove, without trusting whoever runs the broker, that the log was not changed.\n"
        "\n"
        "Commands:\n"
        "  checkpoint    print the latest signed checkpoint (keep it: it is what later\n"
        "                proofs are checked against); --new asks the broker for a fresh one\n"
        "  prove         the inclusion proof of event SEQ in the tree of size N (default:\n"
        "                the latest checkpoint's size)\n"
        "  consistency   the proof that the tree of size OLD is a prefix of size NEW\n"
        "  check-proof   verify a proof against checkpoints, with no access to the log\n"
        "                (a consistency proof needs the two checkpoints)\n"
        "  verify        recompute every leaf and root, check the tree, every checkpoint,\n"
        "                every batch signature, seq gaps, indexes, dedup, consumers;\n"
        "                one line per problem: 'seq N: WHAT'\n"
        "  check-export  verify a file written by 'kabar replay --with-proof'; whose keys\n"
        "                signed its events is checked only against --registry or\n"
        "                --agency-key (the export's own claims are the exporter's word)\n"
        "  report        the oversight figures computed from the log ('kabar audit report\n"
        "                --help')\n"
        "\n"
        "Options:\n"
        "  -b, --broker EP         read through this broker (auditor role)\n"
        "  -D, --data DIR          read the data directory DIR (read-only)\n"
        "      --new               checkpoint: make a fresh checkpoint first (online)\n"
        "      --size N            prove: the tree size (a checkpoint's size)\n"
        "  -f, --format F          text (default) or json\n"
        "      --checkpoint NOTE   check-proof: a file holding a signed checkpoint\n"
        "      --log-key KEY       the log's checkpoint key: NAME+ID+KEY (DATA/broker.vkey),\n"
        "                          ed25519:... or a file holding either (DATA/broker.pub);\n"
        "                          default with --data: DIR/broker.vkey; online: the\n"
        "                          --server-key\n"
        "      --since-checkpoint NOTE  verify: also check that the log still extends\n"
        "                          this saved checkpoint\n"
        "      --max-problems N    verify: print at most N problem lines (default 1000)\n"
        "      --registry FILE     check-export: the registry you trust, as 'kabar agency\n"
        "                          list --format json' prints it (confirmed with the\n"
        "                          agencies): each signer key's agency and validity\n"
        "      --agency-key ID=KEY check-export: key KEY (ed25519:... or a file) is agency\n"
        "                          ID's, valid at any time; repeatable\n"
        "  -t, --timeout MS        give up when the broker is silent this long\n" CLI_IDENTITY_HELP
        "  -h, --help              show this help\n"
        "\n"
        "Exit codes: 0 the check passed / done, 1 a check failed, 2 bad usage or the log\n"
        "or broker cannot be read.\n");
}

enum {
    OPT_NEW = 256,
    OPT_SIZE,
    OPT_CHECKPOINT,
    OPT_LOG_KEY,
    OPT_SINCE_CP,
    OPT_MAX_PROBLEMS,
    OPT_REGISTRY,
    OPT_AGENCY_KEY,
};

typedef struct aopts {
    const char *broker, *data, *log_key, *since_cp;
    const char *checkpoints[2];
    int ncheckpoints;
    const char *registry;
    const char **agency_keys; /* argv pointers */
    int nagency_keys;
    bool fresh, json, has_size;
    uint64_t size, max_problems;
    kabar_client_opts copts;
    char *args[3];
    int nargs;
} aopts;

static int parse(int argc, char **argv, aopts *o)
{
    static const struct option longopts[] = {
        {"broker", required_argument, NULL, 'b'},
        {"data", required_argument, NULL, 'D'},
        {"new", no_argument, NULL, OPT_NEW},
        {"size", required_argument, NULL, OPT_SIZE},
        {"format", required_argument, NULL, 'f'},
        {"checkpoint", required_argument, NULL, OPT_CHECKPOINT},
        {"log-key", required_argument, NULL, OPT_LOG_KEY},
        {"since-checkpoint", required_argument, NULL, OPT_SINCE_CP},
        {"max-problems", required_argument, NULL, OPT_MAX_PROBLEMS},
        {"registry", required_argument, NULL, OPT_REGISTRY},
        {"agency-key", required_argument, NULL, OPT_AGENCY_KEY},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        CLI_IDENTITY_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    int opt;
    memset(o, 0, sizeof *o);
    o->copts.timeout_ms = 30000;
    optind = 0;
    while ((opt = getopt_long(argc, argv, "b:D:f:t:h", longopts, NULL)) != -1) {
        if (cli_identity_option(opt, optarg))
            continue;
        switch (opt) {
        case 'b':
            o->broker = optarg;
            break;
        case 'D':
            o->data = optarg;
            break;
        case OPT_NEW:
            o->fresh = true;
            break;
        case OPT_SIZE:
            if (!cli_parse_u64(CMD, "--size", optarg, 1, &o->size))
                return CLI_USAGE;
            o->has_size = true;
            break;
        case 'f':
            if (strcmp(optarg, "json") == 0)
                o->json = true;
            else if (strcmp(optarg, "text") != 0)
                return cli_usage_error(CMD, "--format: \"%s\" is not one of text, json", optarg);
            break;
        case OPT_CHECKPOINT:
            if (o->ncheckpoints == 2)
                return cli_usage_error(CMD, "--checkpoint: at most two");
            o->checkpoints[o->ncheckpoints++] = optarg;
            break;
        case OPT_LOG_KEY:
            o->log_key = optarg;
            break;
        case OPT_SINCE_CP:
            o->since_cp = optarg;
            break;
        case OPT_MAX_PROBLEMS:
            if (!cli_parse_u64(CMD, "--max-problems", optarg, 1, &o->max_problems))
                return CLI_USAGE;
            break;
        case OPT_REGISTRY:
            if (o->registry != NULL)
                return cli_usage_error(CMD, "--registry: at most one");
            o->registry = optarg;
            break;
        case OPT_AGENCY_KEY:
            if (o->agency_keys == NULL &&
                (o->agency_keys = calloc((size_t)argc, sizeof *o->agency_keys)) == NULL)
                return cli_error(CMD, "out of memory");
            o->agency_keys[o->nagency_keys++] = optarg;
            break;
        case 't':
            if (!cli_parse_int(CMD, "--timeout", optarg, 1, 3600000, &o->copts.timeout_ms))
                return CLI_USAGE;
            break;
        case 'h':
            usage(stdout);
            return -1;
        default:
            return cli_usage_error(CMD, "unknown option");
        }
    }
    for (; optind < argc; optind++) {
        if (o->nargs == 3)
            return cli_usage_error(CMD, "unexpected argument \"%s\"", argv[optind]);
        o->args[o->nargs++] = argv[optind];
    }
    if (o->broker && o->data)
        return cli_usage_error(CMD, "give either --broker or --data, not both");
    return CLI_OK;
}

/* The log: offline with --data, else online. *client set online (destroy after s). */
static int open_source(const aopts *o, audit_source *s, kabar_client **client)
{
    kabar_error err = {0};
    *client = NULL;
    if (o->data) {
        if (audit_source_open_dir(s, o->data, &err) != 0)
            return cli_fail(CMD, &err);
        return CLI_OK;
    }
    kabar_client_opts copts = o->copts;
    int code = cli_connect(CMD, o->broker, NULL, &copts, client);
    if (code != CLI_OK)
        return code;
    if (audit_source_open_client(s, *client, &err) != 0) {
        kabar_client_destroy(client);
        return cli_fail(CMD, &err);
    }
    return CLI_OK;
}

static void close_source(audit_source *s, kabar_client **client)
{
    audit_source_close(s);
    kabar_client_destroy(client);
}

/* The log key: --log-key, else DATA/broker.vkey or broker.pub, else the pinned server key. */
static int log_key(const aopts *o, const char *origin, checkpoint_verifier *v)
{
    kabar_error err = {0};
    char path[4200];
    const char *spec = o->log_key;
    if (spec == NULL && o->data) {
        snprintf(path, sizeof path, "%s/broker.vkey", o->data);
        if (access(path, R_OK) != 0)
            snprintf(path, sizeof path, "%s/broker.pub", o->data);
        spec = path;
    }
    if (spec == NULL) {
        kabar_client_opts copts = o->copts;
        if (cli_identity(CMD, NULL, &copts) != CLI_OK)
            return CLI_USAGE;
        if (copts.server_key == NULL)
            return cli_usage_error(CMD, "give --log-key KEY (the broker's DATA/broker.vkey or "
                                        "broker.pub) to check checkpoint signatures");
        memset(v, 0, sizeof *v);
        snprintf(v->name, sizeof v->name, "%s", origin);
        memcpy(v->public_key, copts.server_key, 32);
        v->key_id = checkpoint_key_id(v->name, v->public_key);
        return CLI_OK;
    }
    if (audit_log_key_load(v, spec, origin, &err) != 0)
        return cli_fail(CMD, &err);
    return CLI_OK;
}

static int write_out(const kabar_buf *b)
{
    if (b->len && fwrite(b->data, 1, b->len, stdout) != b->len)
        return cli_error(CMD, "cannot write: %s", strerror(errno));
    int e = cli_flush(CMD);
    return e == 0 || e == EPIPE ? CLI_OK : CLI_USAGE;
}

/* ------------------------------------------------------------------------ */

static int do_checkpoint(const aopts *o)
{
    if (o->nargs != 0)
        return cli_usage_error(CMD, "checkpoint takes no argument");
    if (o->fresh && o->data)
        return cli_usage_error(CMD, "--new needs the broker (only kabard signs checkpoints)");
    audit_source s;
    kabar_client *c;
    kabar_buf note = {0};
    kabar_error err = {0};
    uint64_t size;
    int code = open_source(o, &s, &c);
    if (code != CLI_OK)
        return code;
    if (audit_source_checkpoint(&s, o->fresh, &note, &size, &err) != 0)
        code = cli_fail(CMD, &err);
    else
        code = write_out(&note);
    kabar_buf_free(&note);
    close_source(&s, &c);
    return code;
}

static bool parse_seq(const char *what, const char *s, uint64_t min, uint64_t *out)
{
    return cli_parse_u64(CMD, what, s, min, out);
}

static int do_prove(const aopts *o)
{
    uint64_t seq;
    if (o->nargs != 1)
        return cli_usage_error(CMD, "prove takes one argument: the seq");
    if (!parse_seq("SEQ", o->args[0], 1, &seq))
        return CLI_USAGE;
    audit_source s;
    kabar_client *c;
    kabar_error err = {0};
    audit_proof p = {.kind = AUDIT_INCLUSION};
    kabar_buf out = {0}, note = {0};
    int code = open_source(o, &s, &c);
    if (code != CLI_OK)
        return code;
    uint64_t size = o->size;
    int rc = 0;
    if (!o->has_size) {
        rc = audit_source_checkpoint(&s, false, &note, &size, &err);
        if (rc == KABAR_NOT_FOUND) {
            size = s.head;
            fprintf(stderr,
                    "kabar audit: no checkpoint yet: proving in the tree of the head (%" PRIu64
                    ")\n",
                    size);
            rc = 0;
        }
    }
    if (rc == 0 && (seq > size))
        rc = kabar_error_set(&err, KABAR_INVALID_ARGUMENT,
                             "seq %" PRIu64 " is not in the tree of size %" PRIu64
                             " (give --size N with N >= SEQ, at most the head %" PRIu64 ")",
                             seq, size, s.head);
    if (rc == 0 && s.origin[0] == '\0')
        audit_source_checkpoint(&s, false, &note, &(uint64_t){0}, NULL);
    if (rc == 0)
        rc = audit_source_prove(&s, seq, size, &p.hashes, p.root, &p.record, &err);
    if (rc == 0) {
        snprintf(p.origin, sizeof p.origin, "%s", s.origin);
        p.size = size;
        p.seq = seq;
        p.has_root = true;
        p.has_record = true;
        merkle_leaf_hash(p.record.data, p.record.len, p.leaf_hash);
        /* A proof that does not even fit its own root is not worth handing out. */
        if (merkle_verify_inclusion(seq - 1, size, p.leaf_hash, &p.hashes, p.root, &err) != 0)
            rc = audit_error_wrap(&err, KABAR_VERIFY_FAILED,
                                  "the proof of seq %" PRIu64 " does not lead to the tree's own "
                                  "root (run kabar audit verify)",
                                  seq);
    }
    if (rc == 0)
        rc = audit_proof_format(&p, o->json, &out, &err);
    code = rc ? cli_fail(CMD, &err) : write_out(&out);
    audit_proof_free(&p);
    kabar_buf_free(&out);
    kabar_buf_free(&note);
    close_source(&s, &c);
    return code;
}

static int do_consistency(const aopts *o)
{
    uint64_t a, b;
    if (o->nargs != 2)
        return cli_usage_error(CMD, "consistency takes two arguments: OLD NEW (tree sizes)");
    if (!parse_seq("OLD", o->args[0], 0, &a) || !parse_seq("NEW", o->args[1], 1, &b))
        return CLI_USAGE;
    if (a > b)
        return cli_usage_error(CMD, "OLD %" PRIu64 " is larger than NEW %" PRIu64, a, b);
    audit_source s;
    kabar_client *c;
    kabar_error err = {0};
    audit_proof p = {.kind = AUDIT_CONSISTENCY};
    kabar_buf out = {0}, note = {0};
    int code = open_source(o, &s, &c);
    if (code != CLI_OK)
        return code;
    int rc = 0;
    if (b > s.head)
        rc = kabar_error_set(&err, KABAR_INVALID_ARGUMENT,
                             "NEW %" PRIu64 " is past the log's head %" PRIu64, b, s.head);
    if (rc == 0 && s.origin[0] == '\0')
        audit_source_checkpoint(&s, false, &note, &(uint64_t){0}, NULL);
    if (rc == 0)
        rc = audit_source_consistency(&s, a, b, &p.hashes, p.old_root, p.new_root, &err);
    if (rc == 0) {
        snprintf(p.origin, sizeof p.origin, "%s", s.origin);
        p.old_size = a;
        p.new_size = b;
        rc = audit_proof_format(&p, o->json, &out, &err);
    }
    code = rc ? cli_fail(CMD, &err) : write_out(&out);
    audit_proof_free(&p);
    kabar_buf_free(&out);
    kabar_buf_free(&note);
    close_source(&s, &c);
    return code;
}

static int read_checkpoint(const aopts *o, const char *path, const char *origin, checkpoint *cp)
{
    kabar_buf b = {0};
    kabar_error err = {0};
    checkpoint_verifier v;
    int code = CLI_OK;
    if (audit_read_file(path, &b, &err) != 0) {
        code = cli_fail(CMD, &err);
    } else if ((code = log_key(o, origin, &v)) == CLI_OK &&
               checkpoint_open(cp, b.data, b.len, &v, &err) != 0) {
        printf("checkpoint %s: %s\n", path, err.message);
        code = CLI_FAIL;
    }
    kabar_buf_free(&b);
    return code;
}

static int do_check_proof(const aopts *o)
{
    if (o->nargs != 1)
        return cli_usage_error(CMD, "check-proof takes one argument: the proof file");
    if (o->ncheckpoints == 0)
        return cli_usage_error(CMD, "check-proof needs --checkpoint NOTE (a consistency proof: "
                                    "two, the old and the new)");
    if (o->log_key == NULL && o->data == NULL)
        return cli_usage_error(CMD, "check-proof needs --log-key KEY (the broker's "
                                    "DATA/broker.vkey or broker.pub)");
    kabar_buf b = {0};
    kabar_error err = {0};
    audit_proof p = {0};
    int code = CLI_OK;
    if (audit_read_file(o->args[0], &b, &err) != 0) {
        code = cli_fail(CMD, &err);
        goto done;
    }
    if (audit_proof_parse(&p, b.data, b.len, &err) != 0) {
        code = cli_error(CMD, "%s: %s", o->args[0], err.message);
        goto done;
    }
    checkpoint cp[2];
    for (int i = 0; i < o->ncheckpoints; i++)
        if ((code = read_checkpoint(o, o->checkpoints[i], p.origin, &cp[i])) != CLI_OK)
            goto done;
    char root[AUDIT_B64_HASH];
    if (p.kind == AUDIT_INCLUSION) {
        if (o->ncheckpoints != 1) {
            code = cli_usage_error(CMD, "an inclusion proof is checked against one checkpoint");
            goto done;
        }
        if (cp[0].size != p.size) {
            printf("proof: it is for the tree of size %" PRIu64
                   ", the checkpoint is of size %" PRIu64 " (ask for 'kabar audit prove %" PRIu64
                   " --size %" PRIu64 "')\n",
                   p.size, cp[0].size, p.seq, cp[0].size);
            code = CLI_FAIL;
            goto done;
        }
        if (p.has_record) {
            uint8_t leaf[32];
            merkle_leaf_hash(p.record.data, p.record.len, leaf);
            if (memcmp(leaf, p.leaf_hash, 32) != 0) {
                printf("seq %" PRIu64 ": the record in the proof does not hash to its leaf hash\n",
                       p.seq);
                code = CLI_FAIL;
                goto done;
            }
        }
        if (p.seq == 0 || merkle_verify_inclusion(p.seq - 1, p.size, p.leaf_hash, &p.hashes,
                                                  cp[0].root, &err) != 0) {
            printf("seq %" PRIu64 ": the proof does not lead to the checkpoint's root: %s\n", p.seq,
                   p.seq ? err.message : "seqs start at 1");
            code = CLI_FAIL;
            goto done;
        }
        audit_b64(cp[0].root, 32, root, sizeof root);
        printf("ok: seq %" PRIu64 " is in the log %s of %" PRIu64 " events (root %s)\n", p.seq,
               cp[0].origin, p.size, root);
    } else {
        if (o->ncheckpoints != 2) {
            code = cli_usage_error(CMD, "a consistency proof is checked against two checkpoints "
                                        "(--checkpoint OLD --checkpoint NEW)");
            goto done;
        }
        if (cp[0].size > cp[1].size) {
            checkpoint t = cp[0];
            cp[0] = cp[1];
            cp[1] = t;
        }
        if (cp[0].size != p.old_size || cp[1].size != p.new_size) {
            printf("proof: it is for sizes %" PRIu64 " -> %" PRIu64
                   ", the checkpoints are of sizes %" PRIu64 " and %" PRIu64 "\n",
                   p.old_size, p.new_size, cp[0].size, cp[1].size);
            code = CLI_FAIL;
            goto done;
        }
        if (merkle_verify_consistency(p.old_size, p.new_size, cp[0].root, cp[1].root, &p.hashes,
                                      &err) != 0) {
            printf("seq %" PRIu64 ": the log of %" PRIu64
                   " events is not an extension of the one of %" PRIu64
                   ": %s (the log was rewritten, or the proof is damaged)\n",
                   p.old_size, p.new_size, p.old_size, err.message);
            code = CLI_FAIL;
            goto done;
        }
        printf("ok: the log %s of %" PRIu64 " events extends the one of %" PRIu64 " events\n",
               cp[1].origin, p.new_size, p.old_size);
    }
done:
    audit_proof_free(&p);
    kabar_buf_free(&b);
    return code;
}

static int do_verify(const aopts *o)
{
    if (o->nargs != 0)
        return cli_usage_error(CMD, "verify takes no argument");
    audit_source s;
    kabar_client *c;
    kabar_error err = {0};
    kabar_buf since = {0}, note = {0};
    checkpoint_verifier v;
    int code = open_source(o, &s, &c);
    if (code != CLI_OK)
        return code;
    if (s.origin[0] == '\0')
        audit_source_checkpoint(&s, false, &note, &(uint64_t){0}, NULL);
    if (s.origin[0] == '\0' && o->since_cp) {
        uint64_t ignored;
        if (audit_read_file(o->since_cp, &since, &err) == 0)
            audit_note_size(since.data, since.len, &ignored, s.origin, sizeof s.origin, NULL);
    }
    if ((code = log_key(o, s.origin, &v)) != CLI_OK)
        goto done;
    if (o->since_cp && audit_read_file(o->since_cp, &since, &err) != 0) {
        code = cli_fail(CMD, &err);
        goto done;
    }
    audit_verify_opts vo = {.log_key = &v,
                            .since_note = o->since_cp ? since.data : NULL,
                            .since_len = since.len,
                            .progress = isatty(2) == 1,
                            .out = stdout,
                            .max_problems = o->max_problems};
    audit_verify_result res;
    if (audit_verify(&s, &vo, &res, &err) != 0) {
        code = cli_fail(CMD, &err);
        goto done;
    }
    char root[AUDIT_B64_HASH];
    audit_b64(res.root, 32, root, sizeof root);
    if (res.problems > 0) {
        uint64_t shown = o->max_problems ? o->max_problems : 1000;
        if (res.problems > shown)
            printf("... and %" PRIu64 " more problems\n", res.problems - shown);
        fprintf(stderr, "kabar audit verify: FAILED: %" PRIu64 " problem%s in %" PRIu64 " events\n",
                res.problems, res.problems == 1 ? "" : "s", res.events);
        code = CLI_FAIL;
    } else {
        fprintf(stderr,
                "kabar audit verify: ok: %" PRIu64 " events (root %s), %" PRIu64
                " checkpoint%s, %" PRIu64 " signed batches (%" PRIu64 " signed events, %" PRIu64
                " unsigned) in %.2f s%s\n",
                res.events, root, res.checkpoints, res.checkpoints == 1 ? "" : "s", res.batches,
                res.signed_events, res.unsigned_events, res.seconds,
                s.log ? ""
                      : " (online: the stored tree, indexes, dedup and consumers are checked "
                        "with --data)");
    }
    if (cli_flush(CMD) != 0)
        code = CLI_USAGE;
done:
    kabar_buf_free(&since);
    kabar_buf_free(&note);
    close_source(&s, &c);
    return code;
}

/* The auditor's registry: --registry FILE and every --agency-key. */
static int load_registry(const aopts *o, audit_registry *reg)
{
    kabar_error err = {0};
    kabar_buf b = {0};
    int code = CLI_OK;
    if (o->registry != NULL) {
        if (audit_read_file(o->registry, &b, &err) != 0)
            code = cli_fail(CMD, &err);
        else if (audit_registry_load(reg, b.data, b.len, o->registry, &err) != 0)
            code = cli_error(CMD, "--registry %s", err.message);
    }
    for (int i = 0; code == CLI_OK && i < o->nagency_keys; i++)
        if (audit_registry_add_spec(reg, o->agency_keys[i], &err) != 0)
            code = cli_usage_error(CMD, "%s", err.message);
    kabar_buf_free(&b);
    return code;
}

static int do_check_export(const aopts *o)
{
    if (o->nargs != 1)
        return cli_usage_error(CMD, "check-export takes one argument: the export file");
    char path[4200];
    const char *key = o->log_key;
    if (key == NULL && o->data) {
        snprintf(path, sizeof path, "%s/broker.vkey", o->data);
        key = path;
    }
    if (key == NULL)
        return cli_usage_error(CMD, "check-export needs --log-key KEY (the broker's "
                                    "DATA/broker.vkey or broker.pub)");
    audit_registry reg = {0};
    bool has_reg = o->registry != NULL || o->nagency_keys > 0;
    int code = load_registry(o, &reg);
    if (code != CLI_OK)
        return code;
    kabar_buf b = {0};
    kabar_error err = {0};
    audit_export_summary sum;
    if (audit_read_file(o->args[0], &b, &err) != 0)
        code = cli_fail(CMD, &err);
    else if (audit_export_check(b.data, b.len, key, has_reg ? &reg : NULL, stdout, &sum, &err) != 0)
        code = cli_error(CMD, "%s: %s", o->args[0], err.message);
    else if (sum.problems > 0) {
        fprintf(stderr, "kabar audit check-export: FAILED: %" PRIu64 " problem%s\n", sum.problems,
                sum.problems == 1 ? "" : "s");
        code = CLI_FAIL;
    } else if (has_reg) {
        printf("ok: %" PRIu64 " matching events in seqs %" PRIu64 "-%" PRIu64 " (%" PRIu64
               " records) under the checkpoint of size %" PRIu64 "; %" PRIu64
               " signatures verified (signer key of the event's source agency and valid when "
               "received, per the registry you gave), %" PRIu64 " matching events unsigned\n",
               sum.matching, sum.first, sum.last, sum.records, sum.size, sum.signatures,
               sum.unsigned_matching);
    } else {
        printf("ok: %" PRIu64 " matching events in seqs %" PRIu64 "-%" PRIu64 " (%" PRIu64
               " records) under the checkpoint of size %" PRIu64 "; %" PRIu64
               " matching events unsigned; agency signatures NOT VERIFIED: %" PRIu64
               " batch signatures are valid, but whose keys made them is only the exporter's "
               "word (give --registry FILE or --agency-key ID=KEY)\n",
               sum.matching, sum.first, sum.last, sum.records, sum.size, sum.unsigned_matching,
               sum.signatures_unverified);
    }
    kabar_buf_free(&b);
    audit_registry_free(&reg);
    if (cli_flush(CMD) != 0)
        code = CLI_USAGE;
    return code;
}

int cmd_audit(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "report") == 0)
        return audit_report_main(argc - 1, argv + 1);
    static const struct {
        const char *name;
        int (*fn)(const aopts *);
    } subs[] = {
        {"checkpoint", do_checkpoint},   {"prove", do_prove},   {"consistency", do_consistency},
        {"check-proof", do_check_proof}, {"verify", do_verify}, {"check-export", do_check_export},
    };
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++) {
        if (strcmp(sub, subs[i].name) != 0)
            continue;
        aopts o;
        int code = parse(argc - 1, argv + 1, &o);
        if (code == CLI_OK && subs[i].fn != do_check_export &&
            (o.registry != NULL || o.nagency_keys > 0))
            code = cli_usage_error(CMD, "--registry and --agency-key are for check-export");
        if (code == CLI_OK) {
            cli_signals();
            code = subs[i].fn(&o);
        } else if (code == -1) {
            code = CLI_OK;
        }
        free(o.agency_keys);
        return code;
    }
    return cli_usage_error(CMD,
                           "unknown command \"%s\" (checkpoint, prove, consistency, "
                           "check-proof, verify, check-export, report)",
                           sub);
}
