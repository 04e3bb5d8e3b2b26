/*
 * kkey.c - identity keys: generation, the key file formats, text forms and
 * the Curve25519 conversion (proto/kkey.h).
 *
 * Design notes. The secret key file stores the 32-byte seed, not
 * libsodium's 64-byte secret key: the seed is the RFC 8032 secret key, so
 * any Ed25519 implementation can use the file. Saving writes the bytes
 * with open(O_EXCL) (or a temporary file renamed over the old one when
 * overwriting), fsyncs the file and its directory, so a key that
 * `kabar keygen` reported is on disk. Loading refuses a file others may
 * read, like ssh does: a key that others could have copied no longer
 * proves who published.
 */
#include "kkey.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#define PUBLIC_PREFIX "ed25519:"
#define SECRET_PREFIX "ed25519-secret:"
#define FILE_MAX      4096 /* a key file is about 200 bytes */

static int init(kabar_error *err)
{
    if (sodium_init() < 0)
        return kabar_error_set(err, KABAR_IO, "cannot initialise libsodium");
    return 0;
}

int kkey_from_seed(kkey *k, const uint8_t seed[32], kabar_error *err)
{
    int rc;
    if (k == NULL || seed == NULL)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "no key or seed given");
    if ((rc = init(err)) != 0)
        return rc;
    memset(k, 0, sizeof *k);
    if (crypto_sign_seed_keypair(k->pk, k->sk, seed) != 0 ||
        crypto_sign_ed25519_pk_to_curve25519(k->curve_pk, k->pk) != 0 ||
        crypto_sign_ed25519_sk_to_curve25519(k->curve_sk, k->sk) != 0) {
        kkey_wipe(k);
        return kabar_error_set(err, KABAR_BAD_VALUE, "this seed gives no usable Ed25519 key");
    }
    return 0;
}

int kkey_generate(kkey *k, kabar_error *err)
{
    uint8_t seed[32];
    int rc;
    if ((rc = init(err)) != 0)
        return rc;
    randombytes_buf(seed, sizeof seed);
    rc = kkey_from_seed(k, seed, err);
    sodium_memzero(seed, sizeof seed);
    return rc;
}

void kkey_wipe(kkey *k)
{
    if (k)
        sodium_memzero(k, sizeof *k);
}

void kkey_public_text(const uint8_t pk[32], char out[KKEY_TEXT_MAX])
{
    memcpy(out, PUBLIC_PREFIX, sizeof PUBLIC_PREFIX - 1);
    sodium_bin2base64(out + sizeof PUBLIC_PREFIX - 1, KKEY_TEXT_MAX - (sizeof PUBLIC_PREFIX - 1),
                      pk, 32, sodium_base64_VARIANT_ORIGINAL);
}

void kkey_id_text(const uint8_t pk[32], char out[KKEY_ID_TEXT])
{
    uint8_t h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, pk, 32);
    sodium_bin2hex(out, KKEY_ID_TEXT, h, 8);
}

int kkey_curve_public(const uint8_t ed_pk[32], uint8_t curve_pk[32], kabar_error *err)
{
    int rc;
    if ((rc = init(err)) != 0)
        return rc;
    if (crypto_sign_ed25519_pk_to_curve25519(curve_pk, ed_pk) != 0)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "not a valid Ed25519 public key (it has no Curve25519 form)");
    return 0;
}

/* 32 bytes from exactly 44 characters of padded standard base64. */
static bool b64_32(const char *s, size_t len, uint8_t out[32])
{
    size_t n = 0;
    const char *end = NULL;
    if (len != 44)
        return false;
    if (sodium_base642bin(out, 32, s, len, NULL, &n, &end, sodium_base64_VARIANT_ORIGINAL) != 0)
        return false;
    return n == 32 && end == s + len;
}

/* ------------------------------------------------------------------------ */
/* Files                                                                    */

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* fsync the directory holding `path`, so that a new name is durable. */
static void sync_dir(const char *path)
{
    char *copy = strdup(path);
    if (copy == NULL)
        return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

/*
 * Write `text` to `path` with `mode`: O_EXCL when !replace, else through
 * a temporary file renamed over `path`. 0, or KABAR_IO naming the path.
 */
static int write_file(const char *path, const char *text, mode_t mode, bool replace,
                      kabar_error *err)
{
    char tmp[4096];
    const char *target = path;
    if (replace) {
        if (snprintf(tmp, sizeof tmp, "%s.tmp-%ld", path, (long)getpid()) >= (int)sizeof tmp)
            return kabar_error_set(err, KABAR_IO, "%s: path too long", path);
        target = tmp;
        unlink(tmp);
    }
    int fd = open(target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    if (fd < 0) {
        if (errno == EEXIST && !replace)
            return kabar_error_set(err, KABAR_IO,
                                   "%s exists (pass --force to replace it; the old key is then "
                                   "lost)",
                                   path);
        return kabar_error_set(err, KABAR_IO, "cannot create %s: %s", target, strerror(errno));
    }
    int rc = 0;
    if (fchmod(fd, mode) != 0 || write_all(fd, text, strlen(text)) != 0 || fsync(fd) != 0)
        rc = kabar_error_set(err, KABAR_IO, "cannot write %s: %s", target, strerror(errno));
    if (close(fd) != 0 && rc == 0)
        rc = kabar_error_set(err, KABAR_IO, "cannot write %s: %s", target, strerror(errno));
    if (rc == 0 && replace && rename(tmp, path) != 0)
        rc = kabar_error_set(err, KABAR_IO, "cannot rename %s to %s: %s", tmp, path,
                             strerror(errno));
    if (rc != 0) {
        unlink(target);
        return rc;
    }
    sync_dir(path);
    return 0;
}

int kkey_save(const kkey *k, const char *path, bool overwrite, kabar_error *err)
{
    char pub[KKEY_TEXT_MAX], seed64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
    char text[512], pubpath[4096];
    int rc;
    if (k == NULL || path == NULL || path[0] == '\0')
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "no key file name given");
    if (snprintf(pubpath, sizeof pubpath, "%s.pub", path) >= (int)sizeof pubpath)
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "%s: path too long", path);
    kkey_public_text(k->pk, pub);
    sodium_bin2base64(seed64, sizeof seed64, k->sk, 32, sodium_base64_VARIANT_ORIGINAL);
    snprintf(text, sizeof text,
             "# kabar secret key: keep it private; whoever holds it speaks for its owner.\n"
             "# public key: %s\n" SECRET_PREFIX "%s\n",
             pub, seed64);
    rc = write_file(path, text, 0600, overwrite, err);
    sodium_memzero(seed64, sizeof seed64);
    sodium_memzero(text, sizeof text);
    if (rc != 0)
        return rc;
    snprintf(text, sizeof text, "%s\n", pub);
    return write_file(pubpath, text, 0644, true, err);
}

/* Read a small file into buf (NUL-terminated); the open fd's stat in *st. */
static int read_small(const char *path, char *buf, size_t cap, struct stat *st, kabar_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return kabar_error_set(err, errno == ENOENT ? KABAR_NOT_FOUND : KABAR_IO,
                               "cannot open %s: %s", path, strerror(errno));
    size_t n = 0;
    int rc = 0;
    if (fstat(fd, st) != 0) {
        rc = kabar_error_set(err, KABAR_IO, "cannot stat %s: %s", path, strerror(errno));
    } else if (!S_ISREG(st->st_mode)) {
        rc = kabar_error_set(err, KABAR_BAD_VALUE, "%s is not a regular file", path);
    } else {
        for (;;) {
            ssize_t r = read(fd, buf + n, cap - 1 - n);
            if (r < 0 && errno == EINTR)
                continue;
            if (r < 0) {
                rc = kabar_error_set(err, KABAR_IO, "cannot read %s: %s", path, strerror(errno));
                break;
            }
            if (r == 0)
                break;
            n += (size_t)r;
            if (n == cap - 1) {
                rc = kabar_error_set(err, KABAR_BAD_VALUE,
                                     "%s is larger than a key file can be (%zu bytes)", path,
                                     cap - 1);
                break;
            }
        }
    }
    close(fd);
    buf[n] = '\0';
    return rc;
}

/* The next line of *p (trimmed of trailing spaces and CR); NULL at the end. */
static char *next_line(char **p, size_t *len)
{
    char *s = *p;
    if (*s == '\0')
        return NULL;
    char *nl = strchr(s, '\n');
    *p = nl ? nl + 1 : s + strlen(s);
    size_t n = nl ? (size_t)(nl - s) : strlen(s);
    while (n > 0 && (s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    *len = n;
    return s;
}

/* Parse a secret key file's text. */
static int parse_secret(kkey *k, const char *path, char *text, kabar_error *err)
{
    uint8_t seed[32];
    int found = 0, lineno = 0, rc;
    size_t len;
    char *p = text, *line;
    while ((line = next_line(&p, &len)) != NULL) {
        lineno++;
        if (len == 0 || line[0] == '#')
            continue;
        if (len < sizeof SECRET_PREFIX - 1 ||
            memcmp(line, SECRET_PREFIX, sizeof SECRET_PREFIX - 1) != 0) {
            sodium_memzero(seed, sizeof seed);
            return kabar_error_set(err, KABAR_BAD_VALUE,
                                   "%s line %d: not a kabar secret key file (expected "
                                   "\"" SECRET_PREFIX "BASE64\"; make one with kabar keygen)",
                                   path, lineno);
        }
        if (found++ > 0) {
            sodium_memzero(seed, sizeof seed);
            return kabar_error_set(err, KABAR_BAD_VALUE,
                                   "%s line %d: a second " SECRET_PREFIX " line (a key file holds "
                                   "one key)",
                                   path, lineno);
        }
        if (!b64_32(line + sizeof SECRET_PREFIX - 1, len - (sizeof SECRET_PREFIX - 1), seed)) {
            sodium_memzero(seed, sizeof seed);
            return kabar_error_set(err, KABAR_BAD_VALUE,
                                   "%s line %d: the secret key is not 44 characters of base64 "
                                   "(32 bytes)",
                                   path, lineno);
        }
    }
    if (!found)
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "%s: no " SECRET_PREFIX " line (not a kabar secret key file)", path);
    rc = kkey_from_seed(k, seed, err);
    sodium_memzero(seed, sizeof seed);
    return rc;
}

int kkey_load(kkey *k, const char *path, kabar_error *err)
{
    char text[FILE_MAX];
    struct stat st;
    int rc;
    if (k == NULL || path == NULL || path[0] == '\0')
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "no key file name given");
    if ((rc = read_small(path, text, sizeof text, &st, err)) != 0) {
        sodium_memzero(text, sizeof text);
        return rc;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        sodium_memzero(text, sizeof text);
        return kabar_error_set(err, KABAR_IO,
                               "%s: the secret key file is accessible to others (mode %03o); "
                               "run: chmod 600 %s",
                               path, (unsigned)(st.st_mode & 0777), path);
    }
    rc = parse_secret(k, path, text, err);
    sodium_memzero(text, sizeof text);
    return rc;
}

/* The public text form, strictly; checks the point too. */
static int parse_text(uint8_t pk[32], const char *s, size_t len, kabar_error *err)
{
    uint8_t curve[32];
    size_t pl = sizeof PUBLIC_PREFIX - 1;
    if (len < pl || memcmp(s, PUBLIC_PREFIX, pl) != 0 || !b64_32(s + pl, len - pl, pk))
        return kabar_error_set(err, KABAR_BAD_VALUE,
                               "\"%.*s\" is not a public key (expected ed25519: and 44 "
                               "characters of base64)",
                               (int)(len > 64 ? 64 : len), s);
    return kkey_curve_public(pk, curve, err);
}

int kkey_public_parse(uint8_t pk[32], const char *text_or_path, kabar_error *err)
{
    char text[FILE_MAX];
    struct stat st;
    size_t len;
    int rc;
    const char *s = text_or_path;
    if (s == NULL || s[0] == '\0')
        return kabar_error_set(err, KABAR_INVALID_ARGUMENT, "no public key given");
    if (strncmp(s, PUBLIC_PREFIX, sizeof PUBLIC_PREFIX - 1) == 0)
        return parse_text(pk, s, strlen(s), err);
    if ((rc = read_small(s, text, sizeof text, &st, err)) != 0) {
        if (rc == KABAR_NOT_FOUND)
            return kabar_error_set(err, KABAR_BAD_VALUE,
                                   "\"%.200s\" is neither a public key (ed25519:BASE64) nor a "
                                   "file",
                                   s);
        return rc;
    }
    if (strstr(text, SECRET_PREFIX) != NULL) {
        kkey k;
        sodium_memzero(text, sizeof text);
        if ((rc = kkey_load(&k, s, err)) != 0)
            return rc;
        memcpy(pk, k.pk, 32);
        kkey_wipe(&k);
        return 0;
    }
    char *p = text, *line;
    while ((line = next_line(&p, &len)) != NULL) {
        if (len == 0 || line[0] == '#')
            continue;
        kabar_error e;
        if ((rc = parse_text(pk, line, len, &e)) != 0)
            return kabar_error_set(err, rc, "%.200s: %s", s, e.message);
        return 0;
    }
    return kabar_error_set(err, KABAR_BAD_VALUE, "%s holds no public key", s);
}

int kkey_load_identity(kkey *k, uint8_t server_pk[KKEY_PUBLIC], const char *key_path,
                       const char *server_key, kabar_error *err)
{
    kabar_error e = {0};
    int rc = kkey_load(k, key_path, &e);
    if (rc != 0)
        return kabar_error_set(err, rc, "--key: %s", e.message);
    if ((rc = kkey_public_parse(server_pk, server_key, &e)) != 0) {
        kkey_wipe(k);
        return kabar_error_set(err, rc, "--server-key: %s", e.message);
    }
    return 0;
}
