/*
 * cli.c - helpers shared by the `kabar` subcommands (tools/cli.h).
 */
#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kkey.h"

volatile sig_atomic_t cli_stop;

const char *cli_broker(const char *flag)
{
    if (flag != NULL && flag[0] != '\0')
        return flag;
    const char *env = getenv("KABAR_BROKER");
    if (env != NULL && env[0] != '\0')
        return env;
    return KABAR_DEFAULT_ENDPOINT;
}

static void vreport(const char *cmd, const char *fmt, va_list ap)
{
    fprintf(stderr, "kabar %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int cli_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(cmd, fmt, ap);
    va_end(ap);
    return CLI_USAGE;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(cmd, fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try 'kabar %s --help'.\n", cmd);
    return CLI_USAGE;
}

int cli_fail(const char *cmd, const kabar_error *err)
{
    cli_error(cmd, "%s", err->message[0] ? err->message : kabar_strerror(err->code));
    return CLI_USAGE;
}

bool cli_parse_u64(const char *cmd, const char *opt, const char *s, uint64_t min, uint64_t *out)
{
    char *end;
    errno = 0;
    if (s[0] >= '0' && s[0] <= '9') {
        unsigned long long v = strtoull(s, &end, 10);
        if (errno == 0 && *end == '\0' && v >= min) {
            *out = v;
            return true;
        }
    }
    cli_usage_error(cmd, "%s: \"%s\" is not a whole number of at least %llu", opt, s,
                    (unsigned long long)min);
    return false;
}

bool cli_parse_int(const char *cmd, const char *opt, const char *s, int min, int max, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno == 0 && end != s && *end == '\0' && v >= min && v <= max) {
        *out = (int)v;
        return true;
    }
    cli_usage_error(cmd, "%s: \"%s\" is not a whole number from %d to %d", opt, s, min, max);
    return false;
}

bool cli_parse_time(const char *cmd, const char *opt, const char *s, int64_t *ns)
{
    kabar_error err;
    char buf[40];
    size_t n = strlen(s);
    if (n == 10 && s[4] == '-' && s[7] == '-') { /* a date: midnight UTC */
        snprintf(buf, sizeof buf, "%sT00:00:00Z", s);
        s = buf;
        n = strlen(buf);
    }
    if (kabar_time_parse(s, n, ns, &err) == 0)
        return true;
    cli_usage_error(cmd,
                    "%s: \"%s\" is not a time (give an RFC 3339 instant such as "
                    "2023-05-02T08:30:00+07:00, or a date such as 2023-05-02): %s",
                    opt, s, err.message);
    return false;
}

static void on_signal(int sig)
{
    (void)sig;
    cli_stop = 1;
}

void cli_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

void cli_stdout_buffered(void)
{
    static char buf[1 << 20];
    setvbuf(stdout, buf, _IOFBF, sizeof buf);
}

bool cli_reader_gone(void)
{
    struct pollfd p = {.fd = fileno(stdout), .events = POLLOUT};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLERR);
}

int cli_flush(const char *cmd)
{
    errno = 0;
    if (fflush(stdout) == 0 && !ferror(stdout))
        return 0;
    int e = cli_reader_gone() ? EPIPE : errno ? errno : EIO;
    if (e != EPIPE)
        cli_error(cmd, "cannot write the output: %s", strerror(e));
    return e;
}

int cli_json_str(kabar_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    int rc = kabar_buf_append(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        rc |= kabar_buf_append(b, s + run, i - run);
        run = i + 1;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            rc |= kabar_buf_append(b, esc, 2);
        } else if (c == '\n') {
            rc |= kabar_buf_append(b, "\\n", 2);
        } else if (c == '\t') {
            rc |= kabar_buf_append(b, "\\t", 2);
        } else {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            rc |= kabar_buf_append(b, esc, 6);
        }
    }
    rc |= kabar_buf_append(b, s + run, n - run);
    rc |= kabar_buf_append(b, "\"", 1);
    return rc ? KABAR_NO_MEMORY : 0;
}

/* ------------------------------------------------------------------------ */
/* Identity                                                                 */

static struct {
    const char *key_path;   /* --key, NULL: not given */
    const char *server_key; /* --server-key, NULL: not given */
    bool loaded;            /* cli_identity succeeded once: reuse */
    bool have_key;
    kkey key;
    uint8_t server_pk[32];
} ident;

void cli_set_key(const char *path)
{
    ident.key_path = path != NULL && path[0] != '\0' ? path : NULL;
    ident.loaded = false;
}

void cli_set_server_key(const char *key_or_path)
{
    ident.server_key = key_or_path != NULL && key_or_path[0] != '\0' ? key_or_path : NULL;
    ident.loaded = false;
}

bool cli_identity_option(int opt, const char *arg)
{
    if (opt == CLI_OPT_KEY)
        cli_set_key(arg);
    else if (opt == CLI_OPT_SERVER_KEY)
        cli_set_server_key(arg);
    else
        return false;
    return true;
}

static const char *env_value(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

const struct kkey *cli_key(void)
{
    return ident.loaded && ident.have_key ? &ident.key : NULL;
}

/* Where the server key comes from, for messages; NULL when none is known. */
static const char *server_key_source(const char *data, char *buf, size_t cap, const char **what)
{
    if (ident.server_key != NULL) {
        *what = "--server-key";
        return ident.server_key;
    }
    const char *env = env_value("KABAR_SERVER_KEY");
    if (env != NULL) {
        *what = "KABAR_SERVER_KEY";
        return env;
    }
    if (data != NULL && data[0] != '\0') {
        snprintf(buf, cap, "%s/broker.pub", data);
        if (access(buf, F_OK) == 0) {
            *what = "the broker's public key file";
            return buf;
        }
    }
    return NULL;
}

int cli_identity(const char *cmd, const char *data, kabar_client_opts *o)
{
    o->key = NULL;
    o->server_key = NULL;
    if (ident.loaded) {
        if (ident.have_key) {
            o->key = &ident.key;
            o->server_key = ident.server_pk;
        }
        return CLI_OK;
    }
    kabar_error err = {0};
    const char *key_path = ident.key_path, *key_what = "--key";
    if (key_path == NULL && (key_path = env_value("KABAR_KEY")) != NULL)
        key_what = "KABAR_KEY";
    char pubfile[PATH_MAX];
    const char *server_what = NULL;
    const char *server = server_key_source(data, pubfile, sizeof pubfile, &server_what);

    if (key_path == NULL) {
        if (ident.server_key != NULL)
            return cli_usage_error(cmd,
                                   "--server-key needs --key FILE (or KABAR_KEY): your own secret "
                                   "key, registered with the broker (kabar keygen, kabar agency "
                                   "add)");
        ident.loaded = true; /* plaintext; a server key from env or DATA is not needed */
        return CLI_OK;
    }
    if (kkey_load(&ident.key, key_path, &err) != 0)
        return cli_error(cmd, "%s %s: %s", key_what, key_path, err.message);
    if (server == NULL) {
        kkey_wipe(&ident.key);
        return cli_usage_error(cmd,
                               "%s %s needs the broker's public key to check it is talking to "
                               "the right broker: pass --server-key KEY|FILE (the broker's "
                               "DATA/broker.pub) or set KABAR_SERVER_KEY",
                               key_what, key_path);
    }
    if (kkey_public_parse(ident.server_pk, server, &err) != 0) {
        kkey_wipe(&ident.key);
        return cli_error(cmd, "%s: %s (give the broker's public key, or its DATA/broker.pub)",
                         server_what, err.message);
    }
    ident.have_key = true;
    ident.loaded = true;
    o->key = &ident.key;
    o->server_key = ident.server_pk;
    return CLI_OK;
}

int cli_connect(const char *cmd, const char *broker_flag, const char *data, kabar_client_opts *o,
                kabar_client **out)
{
    kabar_error err = {0};
    int code = cli_identity(cmd, data, o);
    if (code != CLI_OK)
        return code;
    if (kabar_client_connect(out, cli_broker(broker_flag), o, &err) != 0)
        return cli_fail(cmd, &err);
    return CLI_OK;
}
