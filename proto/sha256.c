/*
 * sha256.c - SHA-256 through OpenSSL's EVP interface, one reused context
 * per thread (see sha256.h).
 */
#include "sha256.h"

#include <pthread.h>
#include <stdbool.h>

#include <openssl/evp.h>
#include <sodium.h>

/* The algorithm, fetched once for the process: EVP_sha256() would look it
 * up again at every EVP_DigestInit_ex2, which costs as much as a short hash.
 * A thread's context is freed when the thread ends (the key's destructor). */
static EVP_MD *g_md;
static pthread_key_t g_key;
static bool g_key_ok;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static _Thread_local EVP_MD_CTX *tls_ctx;

static void ctx_free(void *p)
{
    EVP_MD_CTX_free(p);
}

static void init_once(void)
{
    g_md = EVP_MD_fetch(NULL, "SHA256", NULL);
    g_key_ok = pthread_key_create(&g_key, ctx_free) == 0;
}

static EVP_MD_CTX *ctx_get(void)
{
    if (tls_ctx == NULL) {
        pthread_once(&g_once, init_once);
        if (g_md == NULL || !g_key_ok)
            return NULL;
        tls_ctx = EVP_MD_CTX_new();
        if (tls_ctx != NULL && pthread_setspecific(g_key, tls_ctx) != 0) {
            EVP_MD_CTX_free(tls_ctx);
            tls_ctx = NULL;
        }
    }
    return tls_ctx;
}

static void sodium_2(const void *a, size_t alen, const void *b, size_t blen, uint8_t *out)
{
    crypto_hash_sha256_state st;
    crypto_hash_sha256_init(&st);
    crypto_hash_sha256_update(&st, a, alen);
    crypto_hash_sha256_update(&st, b, blen);
    crypto_hash_sha256_final(&st, out);
}

void kabar_sha256_2(const void *a, size_t alen, const void *b, size_t blen,
                    uint8_t out[KABAR_SHA256_SIZE])
{
    EVP_MD_CTX *c = ctx_get();
    unsigned int n = 0;
    if (c != NULL && EVP_DigestInit_ex2(c, g_md, NULL) == 1 &&
        (alen == 0 || EVP_DigestUpdate(c, a, alen) == 1) &&
        (blen == 0 || EVP_DigestUpdate(c, b, blen) == 1) && EVP_DigestFinal_ex(c, out, &n) == 1 &&
        n == KABAR_SHA256_SIZE)
        return;
    sodium_2(a, alen, b, blen, out);
}

void kabar_sha256(const void *data, size_t len, uint8_t out[KABAR_SHA256_SIZE])
{
    kabar_sha256_2(data, len, NULL, 0, out);
}
