/*
 * sha256.h - SHA-256 for the Merkle log, at the speed of the CPU.
 *
 * Every event costs kabard two SHA-256 computations (its leaf in the batch
 * tree and its leaf in the log's tree) and `kabar audit verify` one per
 * event, so the hash is on the hot path. libsodium's SHA-256 is portable
 * C; OpenSSL's uses the CPU's SHA extensions where there are some. On the
 * machine of docs/BENCHMARKS.md a 321-byte leaf takes 0.26 us through
 * OpenSSL (a reused EVP context) against 1.13 us through libsodium, a 65-
 * byte node 0.12 us against 0.45 us. Signatures stay with libsodium.
 *
 * The functions are thread-safe (one EVP context per thread, made on first
 * use and freed when the thread ends). Should OpenSSL fail to give one (out of memory), they fall
 * back to libsodium, which computes the same bytes.
 */
#ifndef KABAR_SHA256_H
#define KABAR_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define KABAR_SHA256_SIZE 32

/* out = SHA-256(a[0..alen) || b[0..blen)); either part may be empty. */
void kabar_sha256_2(const void *a, size_t alen, const void *b, size_t blen,
                    uint8_t out[KABAR_SHA256_SIZE]);

/* out = SHA-256(data[0..len)). */
void kabar_sha256(const void *data, size_t len, uint8_t out[KABAR_SHA256_SIZE]);

#endif /* KABAR_SHA256_H */
