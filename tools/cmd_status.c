/*
 * cmd_status.c - `kabar status`: the log's head, size and durable
 * consumers, from a broker (its STATUS reply) or from a data directory
 * (read-only) (docs/CLI.md "status").
 *
 * Both sources become one JSON object; --json prints it as is, otherwise it
 * is laid out for people. Keys that this version does not know (a newer
 * broker's) are still shown, after the known ones.
 */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "store.h"

static const char *const CMD = "status";

static void usage(FILE *f)
{
    fprintf(f, "Usage: kabar status [--broker EP | --data DIR] [--json] [--key FILE]\n"
               "                    [--server-key KEY|FILE]\n"
               "\n"
               "Show the log's head seq, event count, size on disk and durable consumers\n"
               "with their lag (events in the log after the consumer's last ack).\n"
               "\n"
               "Options:\n"
               "  -b, --broker EP    ask this broker (default when --data is not given:\n"
               "                     $KABAR_BROKER or " KABAR_DEFAULT_ENDPOINT ")\n"
               "  -D, --data DIR     read the log in DIR directly (read-only; safe while\n"
               "                     kabard runs)\n"
               "  -j, --json         one JSON object for programs instead of text. Keys:\n"
               "                     head, count, log_bytes, consumers [{name, acked, lag, ...}];\n"
               "                     from a broker also version, uptime_s, peers,\n"
               "                     subscriptions, published, rejected, duplicates; from\n"
               "                     --data also data, last_received_at\n"
               "  -t, --timeout MS   give up when the broker is silent this long (default 10000)\n"
               "      --key FILE     your secret key file (default $KABAR_KEY)\n"
               "      --server-key KEY  the broker's public key, ed25519:... or a file holding\n"
               "                     it (default $KABAR_SERVER_KEY)\n"
               "  -h, --help         show this help\n"
               "\n"
               "Exit codes: 0 ok, 2 bad usage, no log, or the broker cannot be reached.\n");
}

/* ------------------------------------------------------------------------ */
/* Offline: the same figures from the log itself                            */

typedef struct consumers_ctx {
    json_t *list;
    uint64_t head;
} consumers_ctx;

static json_t *time_json(int64_t ns)
{
    char t[KABAR_TIME_MAX];
    kabar_time_format(ns, t);
    return json_string(t);
}

static int add_consumer(void *arg, const store_consumer *c)
{
    consumers_ctx *x = arg;
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(c->name));
    json_object_set_new(o, "acked", json_integer((json_int_t)c->acked));
    json_object_set_new(o, "lag",
                        json_integer((json_int_t)(x->head > c->acked ? x->head - c->acked : 0)));
    json_object_set_new(o, "created_at", time_json(c->created_at));
    json_object_set_new(o, "updated_at", time_json(c->updated_at));
    json_array_append_new(x->list, o);
    return 0;
}

static int status_offline(const char *dir, json_t **out, kabar_error *err)
{
    store *s = NULL;
    store_reader *rd = NULL;
    store_opts so = {.readonly = true};
    int rc;
    if ((rc = store_open(&s, dir, &so, err)) != 0 || (rc = store_reader_open(s, &rd, err)) != 0)
        goto done;
    json_t *o = json_object();
    consumers_ctx x = {.list = json_array(), .head = store_reader_head(rd)};
    json_object_set_new(o, "data", json_string(dir));
    json_object_set_new(o, "head", json_integer((json_int_t)x.head));
    json_object_set_new(o, "count", json_integer((json_int_t)store_reader_count(rd)));
    json_object_set_new(o, "log_bytes", json_integer((json_int_t)store_file_bytes(s)));
    store_record last;
    if (x.head > 0 && store_get(rd, x.head, &last, NULL) == 0)
        json_object_set_new(o, "last_received_at", time_json(last.received_at));
    if ((rc = store_consumer_each(rd, add_consumer, &x, err)) != 0) {
        json_decref(x.list);
        json_decref(o);
        goto done;
    }
    json_object_set_new(o, "consumers", x.list);
    *out = o;
done:
    store_reader_close(&rd);
    store_close(&s);
    return rc;
}

static int status_online(const char *broker, const kabar_client_opts *copts, json_t **out,
                         kabar_error *err)
{
    kabar_client *c = NULL;
    kabar_buf b = {0};
    int rc;
    if ((rc = kabar_client_connect(&c, broker, copts, err)) == 0 &&
        (rc = kabar_client_status(c, &b, err)) == 0) {
        json_error_t je;
        *out = json_loadb(b.data, b.len, 0, &je);
        if (*out == NULL || !json_is_object(*out)) {
            json_decref(*out);
            rc = kabar_error_set(err, KABAR_PROTOCOL, "the broker's STATUS reply is not an object");
        }
    }
    kabar_buf_free(&b);
    kabar_client_destroy(&c);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Text for people                                                          */

static void print_scalar(const char *label, json_t *v)
{
    if (json_is_string(v))
        printf("%-16s %s\n", label, json_string_value(v));
    else if (json_is_integer(v))
        printf("%-16s %lld\n", label, (long long)json_integer_value(v));
    else if (json_is_real(v))
        printf("%-16s %g\n", label, json_real_value(v));
    else if (json_is_boolean(v))
        printf("%-16s %s\n", label, json_is_true(v) ? "yes" : "no");
}

static void print_size(json_int_t bytes)
{
    const char *units[] = {"bytes", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        printf("%-16s %lld bytes\n", "log size:", (long long)bytes);
    else
        printf("%-16s %.1f %s (%lld bytes)\n", "log size:", v, units[u], (long long)bytes);
}

static void print_consumers(json_t *list)
{
    size_t i;
    json_t *c;
    if (!json_is_array(list))
        return;
    if (json_array_size(list) == 0) {
        printf("%-16s none\n", "consumers:");
        return;
    }
    printf("consumers:\n  %-32s %12s %12s  %s\n", "NAME", "ACKED", "LAG", "CONNECTED");
    json_array_foreach(list, i, c)
    {
        json_t *conn = json_object_get(c, "connected");
        printf("  %-32s %12lld %12lld  %s\n", json_string_value(json_object_get(c, "name")),
               (long long)json_integer_value(json_object_get(c, "acked")),
               (long long)json_integer_value(json_object_get(c, "lag")),
               conn == NULL         ? "-"
               : json_is_true(conn) ? "yes"
                                    : "no");
    }
}

static void print_text(json_t *o)
{
    static const struct {
        const char *key, *label;
    } known[] = {
        {"data", "data:"},
        {"version", "broker:"},
        {"head", "head seq:"},
        {"count", "events:"},
        {"last_received_at", "last event at:"},
        {"uptime_s", "uptime (s):"},
        {"peers", "peers:"},
        {"subscriptions", "subscriptions:"},
        {"published", "published:"},
        {"duplicates", "duplicates:"},
        {"rejected", "rejected:"},
    };
    const char *key;
    json_t *v;
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        if ((v = json_object_get(o, known[i].key)) != NULL)
            print_scalar(known[i].label, v);
        if (strcmp(known[i].key, "last_received_at") == 0 &&
            (v = json_object_get(o, "log_bytes")) != NULL && json_is_integer(v))
            print_size(json_integer_value(v));
    }
    json_object_foreach(o, key, v)
    {
        bool shown = strcmp(key, "log_bytes") == 0 || strcmp(key, "consumers") == 0;
        for (size_t i = 0; i < sizeof known / sizeof known[0] && !shown; i++)
            shown = strcmp(key, known[i].key) == 0;
        if (!shown) {
            char label[64];
            snprintf(label, sizeof label, "%s:", key);
            print_scalar(label, v);
        }
    }
    print_consumers(json_object_get(o, "consumers"));
}

int cmd_status(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"broker", required_argument, NULL, 'b'},
        {"data", required_argument, NULL, 'D'},
        {"json", no_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        CLI_IDENTITY_LONGOPTS,
        {NULL, 0, NULL, 0},
    };
    const char *broker = NULL, *data = NULL;
    bool as_json = false;
    kabar_client_opts copts = {.timeout_ms = 10000};
    int opt;

    optind = 0;
    while ((opt = getopt_long(argc, argv, "b:D:jt:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'b':
            broker = optarg;
            break;
        case 'D':
            data = optarg;
            break;
        case 'j':
            as_json = true;
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
    if (broker && data)
        return cli_usage_error(CMD, "give either --broker or --data, not both");

    kabar_error err = {0};
    json_t *o = NULL;
    if (data == NULL && cli_identity(CMD, NULL, &copts) != CLI_OK)
        return CLI_USAGE;
    int rc =
        data ? status_offline(data, &o, &err) : status_online(cli_broker(broker), &copts, &o, &err);
    if (rc != 0) {
        if (rc == KABAR_NOT_FOUND && data)
            return cli_error(CMD, "%s (give the directory kabard was started with)", err.message);
        return cli_fail(CMD, &err);
    }
    if (as_json) {
        char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
        if (s)
            printf("%s\n", s);
        free(s);
    } else {
        print_text(o);
    }
    json_decref(o);
    return cli_flush(CMD) == 0 ? CLI_OK : CLI_USAGE;
}
