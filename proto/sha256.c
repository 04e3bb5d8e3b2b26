/*
 * sha256.c - SHA-256 through OpenSSL's EVP interface, one reused context
 * per thread (see sha256.h).
 */
#include "sha256.h"

#include <openssl/evp.h>
#include <sodium.h>

static _Thread_local EVP_MD_CTX *tls_ctx;
static _Thread_local const EVP_MD *tls_md;

static EVP_MD_CTX *ctx_get(void)
{
    if (tls_ctx == NULL) {
        tls_md = EVP_sha256();
        tls_ctx = EVP_MD_CTX_new();
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
    if (c != NULL && EVP_DigestInit_ex2(c, tls_md, NULL) == 1 &&
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
