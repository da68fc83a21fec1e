/*
 * bench.h - the C contract of tlsresume._bench, the measuring instruments.
 *
 * A module of its own so that the product module (tlsresume._core) neither
 * contains benchmark code nor needs the OpenSSL functions only benchmarks call.
 * It binds OpenSSL the same way (ossl.c, built with TLSR_BENCH_MODULE), from the
 * copy CPython's _ssl loaded. The block between the CDEF markers is this module's
 * cffi cdef, followed by loadgen.h's.
 */
#ifndef TLSR_BENCH_H
#define TLSR_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include "tlsresume.h"

/* CDEF-BEGIN */
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct tlsr_store tlsr_store;

/* Resolve this module's OpenSSL functions (see tlsr_binding_init in tlsresume.h). */
int tlsr_binding_init(const char *libssl_path, const char *libcrypto_path,
                      char *err, size_t errlen);

typedef struct {
    int64_t pairs;
    int64_t resumed;
    int64_t wall_ns;          /* whole loop */
    int64_t server_ns;        /* time inside the server's SSL calls */
    int64_t client_ns;        /* time inside the client's SSL calls */
    int32_t failed;           /* handshakes that did not complete */
    int32_t version;          /* negotiated protocol of the last pair */
} tlsr_bench_result;

/* Run n in-memory handshake pairs (client and server in this thread, joined by a
 * BIO pair). resume: offer the first pair's session on every later pair. Runs
 * without the GIL when called through cffi. */
int tlsr_bench_pairs(SSL_CTX *server, SSL_CTX *client, int n, int resume,
                     tlsr_bench_result *out);

/* The product's store functions, passed in by address (tlsresume._core's
 * tlsr_store_put and tlsr_store_get), so that what is timed is the product. */
typedef int (*tlsr_store_put_fn)(tlsr_store *st, const uint8_t *id, size_t id_len,
                                 const uint8_t *der, size_t der_len, int64_t expires_ms,
                                 int64_t now_ms);
typedef int (*tlsr_store_get_fn)(tlsr_store *st, const uint8_t *id, size_t id_len,
                                 uint8_t *buf, size_t buf_len, int consume, int64_t now_ms);
/* n puts of der_len-byte sessions, then n gets, each timed; medians in ns. The
 * store should hold n entries without evicting. Returns 1, 0 if entries were
 * lost, or -TLSR_E_ARG. */
int tlsr_bench_store(tlsr_store *st, tlsr_store_put_fn put, tlsr_store_get_fn get, int n,
                     int der_len, int64_t *put_median_ns, int64_t *get_median_ns);
/* CDEF-END */

#endif /* TLSR_BENCH_H */
