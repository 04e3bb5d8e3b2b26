/*
 * kabard.c - the kabar broker daemon: configuration, data directory lock,
 * signals, then the server's loop until SIGTERM or SIGINT.
 *
 * Start-up order, each step a reason to refuse to start (exit 2):
 * configuration (--insecure only on ipc:// or loopback), data directory
 * created, the directory's lock taken (DIR/kabard.pid), schema loaded, log
 * opened, the broker key loaded or created (DIR/broker.key, 0600; its
 * public key DIR/broker.pub, which clients pin, and the checkpoint verifier
 * key DIR/broker.vkey, rewritten at every start), socket bound (CURVE and
 * the ZAP handler unless --insecure); then DIR/kabard.endpoint is written
 * and the KABARD-READY line logged. A clean stop removes kabard.endpoint, empties
 * kabard.pid, logs KABARD-STOP and exits 0; a failure while running exits 1.
 * Operators' manual: docs/OPERATIONS.md.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "dirlock.h"
#include "kkey.h"
#include "klog.h"
#include "opttab.h"
#include "config.h"
#include "server.h"
#include "store.h"

#define EXIT_RUNTIME 1
#define EXIT_USAGE   2

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

static int install_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0)
        return -1;
    sa.sa_handler = SIG_IGN;
    return sigaction(SIGPIPE, &sa, NULL);
}

/* mkdir -p */
static int make_dirs(const char *dir, kabar_error *err)
{
    char path[PATH_MAX];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "data directory path too long");
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(path, 0750) != 0 && errno != EEXIST)
            return kabar_error_set(err, KABAR_IO,
                                   "cannot create data directory %s: %s (create it or pass "
                                   "another --data)",
                                   path, strerror(errno));
        *p = c;
        if (c == '\0')
            break;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return kabar_error_set(err, KABAR_IO, "data directory %s is not a directory", dir);
    return 0;
}

/* DIR/NAME holding `line` and a newline, written to a temporary file and renamed into place. */
static int write_line(const char *dir, const char *name, const char *line, kabar_error *err)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/%s.tmp", dir, name);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return kabar_error_set(err, KABAR_IO, "cannot write %s: %s", tmp, strerror(errno));
    int bad = fprintf(f, "%s\n", line) < 0;
    bad |= fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        int en = errno;
        unlink(tmp);
        return kabar_error_set(err, KABAR_IO, "cannot write %s: %s", path, strerror(en));
    }
    return 0;
}

/*
 * The broker's identity: DIR/broker.key, created on first start (kkey_save
 * writes FILE.pub beside it; it becomes DIR/broker.pub).
 */
static int broker_key(const char *dir, kkey *k, bool *created, kabar_error *err)
{
    char path[PATH_MAX], pub[PATH_MAX + 8], dst[PATH_MAX];
    snprintf(path, sizeof path, "%s/broker.key", dir);
    int rc = kkey_load(k, path, err);
    *created = false;
    if (rc != KABAR_NOT_FOUND)
        return rc;
    if ((rc = kkey_generate(k, err)) != 0 || (rc = kkey_save(k, path, false, err)) != 0)
        return rc;
    snprintf(pub, sizeof pub, "%s.pub", path);
    snprintf(dst, sizeof dst, "%s/broker.pub", dir);
    if (rename(pub, dst) != 0)
        unlink(pub); /* broker.pub is written again below */
    *created = true;
    return 0;
}

/* DIR/broker.pub and DIR/broker.vkey from the key in use, so they never disagree with it. */
static int publish_keys(const char *dir, const kkey *k, const server *sv, kabar_error *err)
{
    char pub[KKEY_TEXT_MAX], vkey[CHECKPOINT_VKEY_MAX];
    kkey_public_text(k->pk, pub);
    checkpoint_verifier_format(server_checkpoint_verifier(sv), vkey);
    int rc = write_line(dir, "broker.pub", pub, err);
    return rc ? rc : write_line(dir, "broker.vkey", vkey, err);
}

static void remove_endpoint(const char *dir)
{
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/kabard.endpoint", dir);
    unlink(path);
}

static int load_schema(const kabard_config *c, const kabar_schema **out, kabar_schema **owned,
                       kabar_error *err)
{
    if (c->schema != NULL) {
        int rc = kabar_schema_load(owned, c->schema, err);
        *out = *owned;
        return rc;
    }
    *out = kabar_schema_default(err);
    return *out != NULL ? 0 : (err->code ? err->code : KABAR_BAD_SCHEMA);
}

static int fail(int code, const char *what, const kabar_error *e)
{
    /* Before READY, a plain message: the operator is at the terminal or in the unit's log. */
    fprintf(stderr, "kabard: %s%s\n", what, e->message);
    return code;
}

int main(int argc, char **argv)
{
    kabard_config cfg;
    kabar_error err = {0};
    if (config_parse(&cfg, argc, argv, opt_getenv, &err) != 0) {
        fprintf(stderr, "kabard: %s\n", err.message);
        return EXIT_USAGE;
    }
    if (cfg.help) {
        config_usage(stdout);
        return 0;
    }
    if (cfg.version) {
        printf("kabard %s (protocol %d)\n", kabar_version(), KABAR_PROTOCOL_VERSION);
        return 0;
    }
    if (config_check(&cfg, &err) != 0) {
        fprintf(stderr, "kabard: %s\n", err.message);
        return EXIT_USAGE;
    }
    klog_init("kabard", 2, (klog_level)cfg.log_level);
    if (install_signals() != 0) {
        kabar_error_set(&err, KABAR_IO, "%s", strerror(errno));
        return fail(EXIT_USAGE, "cannot install signal handlers: ", &err);
    }

    int rc, exit_code = EXIT_USAGE, lock_fd = -1;
    kabar_schema *own_schema = NULL;
    const kabar_schema *schema = NULL;
    store *st = NULL;
    server *sv = NULL;
    kkey key;
    bool key_created = false;
    memset(&key, 0, sizeof key);
    if (make_dirs(cfg.data, &err) != 0 ||
        dirlock_take(cfg.data, "kabard.pid", "kabard", &lock_fd, &err) != 0) {
        fail(EXIT_USAGE, "", &err);
        goto out;
    }
    remove_endpoint(cfg.data); /* a stale one from a crash must not be mistaken for ours */
    if (load_schema(&cfg, &schema, &own_schema, &err) != 0) {
        fail(EXIT_USAGE, "cannot load the schema registry: ", &err);
        goto out;
    }
    store_opts so = {.max_bytes = cfg.max_size, .nosync = cfg.unsafe_nosync, .origin = cfg.origin};
    if (store_open(&st, cfg.data, &so, &err) != 0) {
        fail(EXIT_USAGE, "cannot open the log: ", &err);
        goto out;
    }
    if (broker_key(cfg.data, &key, &key_created, &err) != 0) {
        fail(EXIT_USAGE, "cannot load the broker key: ", &err);
        goto out;
    }
    server_opts sopts = {.listen = cfg.listen,
                         .store = st,
                         .schema = schema,
                         .data_dir = cfg.data,
                         .key = &key,
                         .insecure = cfg.insecure,
                         .checkpoint_interval_ms = (int64_t)cfg.checkpoint_interval * 1000,
                         .checkpoint_events = (uint64_t)cfg.checkpoint_events};
    if (server_new(&sv, &sopts, &err) != 0 || publish_keys(cfg.data, &key, sv, &err) != 0 ||
        write_line(cfg.data, "kabard.endpoint", server_endpoint(sv), &err) != 0) {
        fail(EXIT_USAGE, "", &err);
        goto out;
    }
    char kid[KKEY_ID_TEXT];
    kkey_id_text(key.pk, kid);
    if (key_created)
        klog(KLOG_INFO, "KABARD-KEY",
             "created the broker key %s/broker.key (key id %s); clients pin %s/broker.pub",
             cfg.data, kid, cfg.data);
    if (cfg.unsafe_nosync)
        klog(KLOG_WARN, "KABARD-NOSYNC",
             "--unsafe-nosync: commits are not synced, acked events can be lost in a crash");
    if (cfg.insecure)
        klog(KLOG_WARN, "KABARD-INSECURE",
             "plaintext transport (--insecure): whoever can reach %s can publish as any agency "
             "and read everything",
             server_endpoint(sv));
    else if (server_valid_keys(sv) == 0)
        klog(KLOG_WARN, "KABARD-NO-KEYS",
             "the registry holds no valid key, so nobody can connect: register an agency with "
             "kabar agency add --data %s (see docs/SECURITY.md)",
             cfg.data);
    klog(KLOG_INFO, "KABARD-READY",
         "listening on %s (%s, broker key %s, data %s, origin %s, head seq %" PRIu64 ")",
         server_endpoint(sv), cfg.insecure ? "plaintext" : "CURVE", kid, cfg.data, store_origin(st),
         store_head(st));

    rc = server_run(sv, &stop_flag, &err);
    server_stats stats;
    server_get_stats(sv, &stats);
    server_destroy(&sv); /* lingers up to a second for the last acks */
    store_close(&st);
    remove_endpoint(cfg.data);
    if (rc != 0) {
        klog(KLOG_ERROR, "KABARD-FAIL", "stopping on a runtime failure: %s", err.message);
        exit_code = EXIT_RUNTIME;
    } else {
        klog(KLOG_INFO, "KABARD-STOP",
             "stopped cleanly (events committed this run %" PRIu64 ", duplicates %" PRIu64
             ", rejected %" PRIu64 ")",
             stats.published, stats.duplicates, stats.rejected);
        exit_code = 0;
    }
    if (ftruncate(lock_fd, 0) != 0) {
        /* only cosmetic: the lock is what counts, and it goes with the process */
    }
out:
    server_destroy(&sv);
    store_close(&st);
    kabar_schema_destroy(&own_schema);
    kkey_wipe(&key);
    if (lock_fd >= 0)
        close(lock_fd);
    return exit_code;
}
