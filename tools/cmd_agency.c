/*
 * cmd_agency.c - `kabar agency`: the registry of agencies and their keys
 * (docs/CLI.md "agency"; the registry itself: design in broker/store.h).
 *
 *   kabar agency add ID --name N --region R --org O --role ROLE --key PUBKEY|FILE
 *   kabar agency list
 *   kabar agency show ID
 *   kabar agency revoke-key ID KEY
 *   kabar agency rotate-key ID --key NEWKEY [--revoke OLDKEY]
 *
 * Two ways to the registry, one output:
 *  - offline, --data DIR: the broker's LMDB opened directly. Changes need
 *    the log writable, so kabard must be stopped (it holds the lock); list
 *    and show open it read-only and work while kabard runs. `add` on a
 *    directory without a log creates the log: that is how an operator
 *    registers the first admin before kabard's first start.
 *  - online (the default): CALL agency.* through the broker
 *    (kabar_client_call), as the principal of the global --key / KABAR_KEY;
 *    changes need an admin, list and show an admin, auditor or oversight.
 * Both paths turn what they read into the same JSON agency object (the
 * CALL's agency map, keys in text form, times in RFC 3339), printed as JSON
 * with --format json or laid out for people.
 *
 * This file is the command: usage, arguments, exit codes and the output;
 * the operations on the registry, offline and online, are in agency_ops.c.
 */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "agency_ops.h"
#include "cli.h"
#include "kkey.h"
#include "store.h"

static const char *const CMD = "agency";

static const char *const ROLES[] = {"agent", "oversight", "auditor", "admin"};

static const char *const VERBS[] = {"add", "list", "show", "revoke-key", "rotate-key"};

static void usage(FILE *f)
{
    fprintf(
        f,
        "Usage: kabar agency add ID --name NAME --region CODE --org CODE --role ROLE\n"
        "                           --key PUBKEY|FILE [WHERE]\n"
        "       kabar agency list [WHERE]\n"
        "       kabar agency show ID [WHERE]\n"
        "       kabar agency revoke-key ID KEY [WHERE]\n"
        "       kabar agency rotate-key ID --key NEWKEY [--revoke OLDKEY] [WHERE]\n"
        "\n"
        "The registry of agencies (principals) and their public keys, kept in the\n"
        "broker's log. Each change prints the agency as it is afterwards.\n"
        "\n"
        "  add         register agency ID with one key, valid from now\n"
        "  list        every agency, one per line\n"
        "  show        one agency with all its keys, valid and revoked\n"
        "  revoke-key  KEY stops being valid now; what it signed before still verifies\n"
        "  rotate-key  NEWKEY becomes valid now; with --revoke, OLDKEY stops at the same\n"
        "              instant (without it the old key stays valid until revoked)\n"
        "\n"
        "WHERE: the broker (default), as the principal of the global --key (kabar --key\n"
        "ADMIN.key agency ...) or KABAR_KEY; changes need an admin key. Or --data DIR:\n"
        "the broker's data directory directly (changes need kabard stopped; list and\n"
        "show work while it runs; add creates the log when DIR has none).\n"
        "\n"
        "Options:\n"
        "      --name NAME       official name (\"Dinas Kesehatan Kota Padang\")\n"
        "      --region CODE     region code (Kemendagri code, \"13.71\")\n"
        "      --org CODE        official organisation code\n"
        "      --role ROLE       agent, oversight, auditor or admin\n"
        "      --key KEY         a public key: ed25519:... (44 base64 characters), or a\n"
        "                        file holding one (FILE.pub, or a secret key file)\n"
        "      --revoke KEY      rotate-key: revoke this key at the same instant\n"
        "  -b, --broker EP       broker endpoint (default $KABAR_BROKER or " KABAR_DEFAULT_ENDPOINT
        ")\n"
        "      --server-key KEY  the broker's public key (default $KABAR_SERVER_KEY)\n"
        "  -D, --data DIR        work on the log in DIR instead of through a broker\n"
        "  -f, --format FMT      text (default) or json (one object per agency and line)\n"
        "  -t, --timeout MS      give up when the broker is silent this long (default 10000)\n"
        "  -h, --help            show this help\n"
        "\n"
        "Exit codes: 0 done, 1 refused (no such agency or key, already registered,\n"
        "not an admin), 2 bad usage or cannot run.\n");
}

/* Refusals by the registry (exit 1), as opposed to not being able to run (2). */
static int refused(const kabar_error *err)
{
    const char *msg = err->message[0] ? err->message : kabar_strerror(err->code);
    switch (err->code) {
    case KABAR_CONNECT:
    case KABAR_TIMEOUT:
    case KABAR_IO:
    case KABAR_STORE:
    case KABAR_LOCKED:
    case KABAR_NO_MEMORY:
    case KABAR_PROTOCOL:
    case KABAR_BAD_VERSION:
    case KABAR_DISK_FULL:
    case KABAR_SHUTTING_DOWN:
        cli_error(CMD, "%s", msg);
        return CLI_USAGE;
    default: /* the rule that refused, for scripts: "... (ADMIN_ONLY)" */
        cli_error(CMD, "%s (%s)", msg, kabar_errname(err->code));
        return CLI_FAIL;
    }
}

/* ------------------------------------------------------------------------ */
/* Field order of the printed agency                                       */

/* A copy of o with `order`'s keys first, in that order, then the others. */
static json_t *ordered(json_t *o, const char *const *order)
{
    json_t *out = json_object();
    const char *k;
    json_t *v;
    for (size_t i = 0; order[i] != NULL; i++)
        if ((v = json_object_get(o, order[i])) != NULL)
            json_object_set(out, order[i], v);
    json_object_foreach(o, k, v) if (json_object_get(out, k) == NULL) json_object_set(out, k, v);
    return out;
}

static int64_t valid_from_ns(json_t *k)
{
    const char *t = json_string_value(json_object_get(k, "valid_from"));
    int64_t ns = 0;
    if (t == NULL || kabar_time_parse(t, strlen(t), &ns, NULL) != 0)
        return 0;
    return ns;
}

static int by_valid_from_json(const void *a, const void *b)
{
    int64_t x = valid_from_ns(*(json_t *const *)a), y = valid_from_ns(*(json_t *const *)b);
    return (x > y) - (x < y);
}

/* An agency map from the broker, as the offline path writes it: fields in
 * the documented order, keys oldest first. */
static json_t *agency_ordered(json_t *a)
{
    static const char *const agency_keys[] = {"id",   "name",       "region", "org",
                                              "role", "created_at", "keys",   NULL};
    static const char *const key_keys[] = {"key", "key_id", "valid_from", "revoked_at", NULL};
    json_t *out = ordered(a, agency_keys), *keys = json_object_get(out, "keys");
    if (json_is_array(keys)) {
        size_t n = json_array_size(keys);
        json_t **v = calloc(n ? n : 1, sizeof *v), *list = json_array();
        for (size_t i = 0; v != NULL && i < n; i++)
            v[i] = json_array_get(keys, i);
        if (v != NULL)
            qsort(v, n, sizeof *v, by_valid_from_json);
        for (size_t i = 0; v != NULL && i < n; i++)
            json_array_append_new(list, ordered(v[i], key_keys));
        free(v);
        json_object_set_new(out, "keys", list);
    }
    return out;
}
/* ------------------------------------------------------------------------ */
/* Output                                                                   */

static const char *jstr(json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s != NULL ? s : "";
}

static size_t valid_keys(json_t *keys)
{
    size_t i, n = 0;
    json_t *k;
    json_array_foreach(keys, i, k) n += json_object_get(k, "revoked_at") == NULL;
    return n;
}

static void print_agency_text(json_t *a)
{
    printf("agency:      %s\n", jstr(a, "id"));
    printf("name:        %s\n", jstr(a, "name"));
    printf("region:      %s\n", jstr(a, "region"));
    printf("org:         %s\n", jstr(a, "org"));
    printf("role:        %s\n", jstr(a, "role"));
    printf("created at:  %s\n", jstr(a, "created_at"));
    json_t *keys = json_object_get(a, "keys");
    if (json_array_size(keys) == 0) {
        printf("keys:        none\n");
        return;
    }
    printf("keys:\n  %-16s  %-30s  %-30s  %s\n", "KEY ID", "VALID FROM", "REVOKED AT",
           "PUBLIC KEY");
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k)
    {
        const char *rev = jstr(k, "revoked_at");
        printf("  %-16s  %-30s  %-30s  %s\n", jstr(k, "key_id"), jstr(k, "valid_from"),
               rev[0] ? rev : "-", jstr(k, "key"));
    }
}

static void print_json_line(json_t *a)
{
    char *s = json_dumps(a, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (s != NULL)
        printf("%s\n", s);
    free(s);
}

static void print_one(const agency_args *a, json_t *ag)
{
    json_t *o = agency_ordered(ag);
    if (a->json)
        print_json_line(o);
    else
        print_agency_text(o);
    json_decref(o);
}

static void print_list(const agency_args *a, json_t *list)
{
    size_t i;
    json_t *ag;
    if (a->json) {
        json_array_foreach(list, i, ag) print_one(a, ag);
        return;
    }
    if (json_array_size(list) == 0) {
        printf("no agencies registered\n");
        return;
    }
    printf("%-32s  %-9s  %-6s  %-8s  %s\n", "ID", "ROLE", "KEYS", "REGION", "NAME");
    json_array_foreach(list, i, ag)
    {
        json_t *keys = json_object_get(ag, "keys");
        char nk[32];
        snprintf(nk, sizeof nk, "%zu/%zu", valid_keys(keys), json_array_size(keys));
        printf("%-32s  %-9s  %-6s  %-8s  %s\n", jstr(ag, "id"), jstr(ag, "role"), nk,
               jstr(ag, "region"), jstr(ag, "name"));
    }
}

/* ------------------------------------------------------------------------ */
/* Running: offline (--data) or online                                      */

static int run_offline(const agency_args *a)
{
    store *s = NULL;
    json_t *out = NULL;
    kabar_error err = {0};
    bool write = a->v != AGENCY_LIST && a->v != AGENCY_SHOW;
    int rc = agency_store_open(a->data, write, &s, &err);
    if (rc != 0)
        return cli_fail(CMD, &err); /* cannot run: no log, or kabard holds it */
    if (write)
        rc = agency_store_change(s, a, &err);
    if (rc == 0)
        rc = agency_store_read(s, a->v == AGENCY_LIST ? NULL : a->id, &out, &err);
    store_close(&s);
    if (rc != 0)
        return refused(&err);
    if (a->v == AGENCY_LIST)
        print_list(a, out);
    else
        print_one(a, out);
    json_decref(out);
    return CLI_OK;
}

static int run_online(agency_args *a)
{
    kabar_client *c = NULL;
    kabar_error err = {0};
    json_t *out = NULL;
    int code = cli_connect(CMD, a->broker, NULL, &a->copts, &c);
    if (code != CLI_OK)
        return code;
    int rc = agency_call(c, a, a->v, &out, &err);
    if (rc == 0 && a->v == AGENCY_ADD) { /* agency.add answers {"id"}: show what was registered */
        json_decref(out);
        out = NULL;
        rc = agency_call(c, a, AGENCY_SHOW, &out, &err);
    }
    kabar_client_destroy(&c);
    if (rc != 0)
        return refused(&err);
    if (a->v == AGENCY_LIST) {
        json_t *list = json_object_get(out, "agencies");
        if (!json_is_array(list)) {
            json_decref(out);
            return cli_error(CMD, "the broker's agency.list answer has no \"agencies\" list");
        }
        print_list(a, list);
    } else {
        print_one(a, out);
    }
    json_decref(out);
    return CLI_OK;
}

/* ------------------------------------------------------------------------ */
/* Arguments                                                                */

static bool role_valid(const char *r)
{
    for (size_t i = 0; i < sizeof ROLES / sizeof ROLES[0]; i++)
        if (strcmp(r, ROLES[i]) == 0)
            return true;
    return false;
}

static int check_text(const char *opt, const char *v, size_t max)
{
    if (v == NULL)
        return cli_usage_error(CMD, "%s is required", opt);
    size_t n = strlen(v);
    if (n == 0 || n > max)
        return cli_usage_error(CMD, "%s: give 1 to %zu bytes (got %zu)", opt, max, n);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20)
            return cli_usage_error(CMD, "%s: control characters are not allowed", opt);
    return CLI_OK;
}

static int parse_key(const char *opt, const char *text, uint8_t pk[32])
{
    kabar_error err = {0};
    if (kkey_public_parse(pk, text, &err) == 0)
        return CLI_OK;
    return cli_usage_error(CMD,
                           "%s \"%s\": %s (give ed25519: followed by 44 base64 characters, or a "
                           "file holding a key, as kabar keygen writes)",
                           opt, text, err.message);
}

/* Check what the verb needs; CLI_OK or CLI_USAGE (printed). */
static int check_args(agency_args *a, char **pos, int npos)
{
    static const int want[] = {[AGENCY_ADD] = 1,
                               [AGENCY_LIST] = 0,
                               [AGENCY_SHOW] = 1,
                               [AGENCY_REVOKE_KEY] = 2,
                               [AGENCY_ROTATE_KEY] = 1};
    if (npos != want[a->v])
        return cli_usage_error(CMD, "%s takes %d argument%s (got %d)", VERBS[a->v], want[a->v],
                               want[a->v] == 1 ? "" : "s", npos);
    if (npos > 0) {
        a->id = pos[0];
        if (!kabar_agency_valid(a->id, strlen(a->id)))
            return cli_usage_error(CMD,
                                   "\"%s\" is not an agency id (lowercase letters, digits and "
                                   "'-', 2 to 32 characters, starting with a letter or digit)",
                                   a->id);
    }
    if (a->v == AGENCY_REVOKE_KEY) {
        if (a->key != NULL)
            return cli_usage_error(CMD, "revoke-key takes the key as its second argument, "
                                        "not --key");
        a->key = pos[1];
    }
    bool add = a->v == AGENCY_ADD;
    if (!add && (a->name || a->region || a->org || a->role))
        return cli_usage_error(CMD, "--name, --region, --org and --role are for add only");
    if (a->revoke != NULL && a->v != AGENCY_ROTATE_KEY)
        return cli_usage_error(CMD, "--revoke is for rotate-key only");
    if (a->key != NULL && (a->v == AGENCY_LIST || a->v == AGENCY_SHOW))
        return cli_usage_error(CMD, "--key is for add and rotate-key (your own identity for the "
                                    "broker goes before the command: kabar --key FILE agency ...)");
    if (add && (check_text("--name", a->name, 128) || check_text("--region", a->region, 32) ||
                check_text("--org", a->org, 64) || check_text("--role", a->role, 15)))
        return CLI_USAGE;
    if (add && !role_valid(a->role))
        return cli_usage_error(CMD, "--role \"%s\": give agent, oversight, auditor or admin",
                               a->role);
    if (a->v != AGENCY_LIST && a->v != AGENCY_SHOW) {
        if (a->key == NULL)
            return cli_usage_error(CMD, "%s needs --key PUBKEY|FILE", VERBS[a->v]);
        if (parse_key(a->v == AGENCY_REVOKE_KEY ? "KEY" : "--key", a->key, a->pk) != CLI_OK)
            return CLI_USAGE;
    }
    if (a->revoke != NULL) {
        if (parse_key("--revoke", a->revoke, a->old_pk) != CLI_OK)
            return CLI_USAGE;
        if (memcmp(a->pk, a->old_pk, 32) == 0)
            return cli_usage_error(CMD, "--key and --revoke name the same key");
    }
    return CLI_OK;
}

static int parse_verb(const char *s, agency_verb *v)
{
    for (size_t i = 0; i < sizeof VERBS / sizeof VERBS[0]; i++)
        if (strcmp(s, VERBS[i]) == 0) {
            *v = (agency_verb)i;
            return CLI_OK;
        }
    return cli_usage_error(CMD,
                           "\"%s\" is not an agency command (add, list, show, revoke-key, "
                           "rotate-key)",
                           s);
}

enum { OPT_NAME = 256, OPT_REGION, OPT_ORG, OPT_ROLE, OPT_KEY, OPT_REVOKE };

int cmd_agency(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"name", required_argument, NULL, OPT_NAME},
        {"region", required_argument, NULL, OPT_REGION},
        {"org", required_argument, NULL, OPT_ORG},
        {"role", required_argument, NULL, OPT_ROLE},
        {"key", required_argument, NULL, OPT_KEY},
        {"revoke", required_argument, NULL, OPT_REVOKE},
        {"server-key", required_argument, NULL, CLI_OPT_SERVER_KEY},
        {"broker", required_argument, NULL, 'b'},
        {"data", required_argument, NULL, 'D'},
        {"format", required_argument, NULL, 'f'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    agency_args a = {.copts = {.timeout_ms = 10000}};
    char *pos[4];
    int npos = 0, opt;

    optind = 0;
    /* "-" first: positional arguments come back in order, between options */
    while ((opt = getopt_long(argc, argv, "-b:D:f:t:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 1:
            if (npos == 4)
                return cli_usage_error(CMD, "too many arguments (\"%s\")", optarg);
            pos[npos++] = optarg;
            break;
        case OPT_NAME:
            a.name = optarg;
            break;
        case OPT_REGION:
            a.region = optarg;
            break;
        case OPT_ORG:
            a.org = optarg;
            break;
        case OPT_ROLE:
            a.role = optarg;
            break;
        case OPT_KEY:
            a.key = optarg;
            break;
        case OPT_REVOKE:
            a.revoke = optarg;
            break;
        case CLI_OPT_SERVER_KEY:
            cli_set_server_key(optarg);
            break;
        case 'b':
            a.broker = optarg;
            break;
        case 'D':
            a.data = optarg;
            break;
        case 'f':
            if (strcmp(optarg, "json") != 0 && strcmp(optarg, "text") != 0)
                return cli_usage_error(CMD, "--format \"%s\": give text or json", optarg);
            a.json = strcmp(optarg, "json") == 0;
            break;
        case 't':
            if (!cli_parse_int(CMD, "--timeout", optarg, 1, 3600000, &a.copts.timeout_ms))
                return CLI_USAGE;
            break;
        case 'h':
            usage(stdout);
            return CLI_OK;
        default:
            return cli_usage_error(CMD, "unknown option");
        }
    }
    if (npos == 0)
        return cli_usage_error(CMD, "give a command: add, list, show, revoke-key or rotate-key");
    if (parse_verb(pos[0], &a.v) != CLI_OK || check_args(&a, pos + 1, npos - 1) != CLI_OK)
        return CLI_USAGE;
    if (a.data != NULL && a.broker != NULL)
        return cli_usage_error(CMD, "give either --data DIR (offline) or --broker EP, not both");
    if (a.data != NULL && a.data[0] == '\0')
        return cli_usage_error(CMD, "--data: an empty directory name");
    int code = a.data != NULL ? run_offline(&a) : run_online(&a);
    if (cli_flush(CMD) != 0)
        return CLI_USAGE;
    return code;
}
