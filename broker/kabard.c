/*
 * kabard.c - the kabar broker daemon: configuration, data directory lock,
 * signals, then the server's loop until SIGTERM or SIGINT.
 *
 * Start-up order, each step a reason to refuse to start (exit 2):
 * configuration, plaintext acknowledged (--insecure), data directory
 * created, the directory's lock taken (DIR/kabard.pid), schema loaded, log
 * opened, socket bound; then DIR/kabard.endpoint is written and the
 * KABARD-READY line logged. A clean stop removes kabard.endpoint, empties
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

#include "dirlock.h"
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

/* DIR/kabard.endpoint, written to a temporary file and renamed into place. */
static int write_endpoint(const char *dir, const char *endpoint, kabar_error *err)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/kabard.endpoint.tmp", dir);
    snprintf(path, sizeof path, "%s/kabard.endpoint", dir);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return kabar_error_set(err, KABAR_IO, "cannot write %s: %s", tmp, strerror(errno));
    int bad = fprintf(f, "%s\n", endpoint) < 0;
    bad |= fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path) != 0) {
        int en = errno;
        unlink(tmp);
        return kabar_error_set(err, KABAR_IO, "cannot write %s: %s", path, strerror(en));
    }
    return 0;
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
    if (!cfg.insecure) {
        fprintf(stderr, "kabard: refusing to listen without encryption: CURVE is not available "
                        "in this version; pass --insecure to accept plaintext (development, "
                        "loopback only)\n");
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
    store_opts so = {.max_bytes = cfg.max_size, .nosync = cfg.unsafe_nosync};
    if (store_open(&st, cfg.data, &so, &err) != 0) {
        fail(EXIT_USAGE, "cannot open the log: ", &err);
        goto out;
    }
    server_opts sopts = {.listen = cfg.listen, .store = st, .schema = schema, .data_dir = cfg.data};
    if (server_new(&sv, &sopts, &err) != 0 ||
        write_endpoint(cfg.data, server_endpoint(sv), &err) != 0) {
        fail(EXIT_USAGE, "", &err);
        goto out;
    }
    if (cfg.unsafe_nosync)
        klog(KLOG_WARN, "KABARD-NOSYNC",
             "--unsafe-nosync: commits are not synced, acked events can be lost in a crash");
    klog(KLOG_WARN, "KABARD-INSECURE",
         "plaintext transport (--insecure): anyone who can reach "
         "%s can publish and read",
         server_endpoint(sv));
    klog(KLOG_INFO, "KABARD-READY", "listening on %s (data %s, head seq %" PRIu64 ")",
         server_endpoint(sv), cfg.data, store_head(st));

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
    if (lock_fd >= 0)
        close(lock_fd);
    return exit_code;
}
