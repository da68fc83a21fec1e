/*
 * bench.c - in-memory handshake pairs, for measuring what the server pays.
 *
 * Client and server run in one thread, joined by a BIO pair, so a pair costs
 * exactly OpenSSL's work plus whatever callbacks the contexts carry: this is the
 * "C loop" of the design notes and the instrument for comparing tlsresume's
 * paths with OpenSSL's built-in ones. Server and client time are measured
 * separately around their own SSL calls.
 */
#define _GNU_SOURCE
#include <string.h>
#include <time.h>

#include <stdlib.h>

#include "bench.h"
#include "ossl.h"

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* One step of one side; returns 1 done, 0 wants more, -1 failed. */
static int step(SSL *s, int64_t *spent)
{
    int64_t t0 = mono_ns();
    int rc = OSSL(SSL_do_handshake)(s), e;

    *spent += mono_ns() - t0;
    if (rc == 1)
        return 1;
    e = OSSL(SSL_get_error)(s, rc);
    return (e == TLSR_SSL_ERROR_WANT_READ || e == TLSR_SSL_ERROR_WANT_WRITE) ? 0 : -1;
}

/* Run one pair; *sess in: session to offer (may be NULL); out: the client's
 * session after the pair when want_session. Returns 1 ok, 0 failed. */
static int one_pair(SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION **sess, int want_session,
                    tlsr_bench_result *out)
{
    SSL *c = OSSL(SSL_new)(cctx), *s = OSSL(SSL_new)(sctx);
    BIO *bc = NULL, *bs = NULL;
    int dc = 0, ds = 0, rounds, ok = 0;
    unsigned char buf[64];

    if (c == NULL || s == NULL || OSSL(BIO_new_bio_pair)(&bc, 0, &bs, 0) != 1)
        goto done;
    OSSL(SSL_set_bio)(c, bc, bc);
    OSSL(SSL_set_bio)(s, bs, bs);
    OSSL(SSL_set_connect_state)(c);
    OSSL(SSL_set_accept_state)(s);
    if (*sess != NULL)
        OSSL(SSL_set_session)(c, *sess);
    for (rounds = 0; rounds < 64 && !(dc == 1 && ds == 1); rounds++) {
        if (dc != 1 && (dc = step(c, &out->client_ns)) < 0)
            goto done;
        if (ds != 1 && (ds = step(s, &out->server_ns)) < 0)
            goto done;
    }
    if (!(dc == 1 && ds == 1))
        goto done;
    {
        /* TLS 1.3 tickets arrive after the handshake: let the client read them. */
        int64_t t0 = mono_ns();
        OSSL(SSL_read)(c, buf, sizeof buf);
        out->client_ns += mono_ns() - t0;
    }
    out->resumed += OSSL(SSL_session_reused)(s) == 1;
    out->version = OSSL(SSL_version)(s);
    if (want_session) {
        if (*sess != NULL)
            OSSL(SSL_SESSION_free)(*sess);
        *sess = OSSL(SSL_get1_session)(c);
    }
    {
        /* Clean shutdown both ways, so no cache evicts the session. */
        int64_t t0 = mono_ns();
        OSSL(SSL_shutdown)(c);
        out->client_ns += mono_ns() - t0;
        t0 = mono_ns();
        OSSL(SSL_shutdown)(s);
        out->server_ns += mono_ns() - t0;
    }
    ok = 1;
done:
    OSSL(ERR_clear_error)();
    if (c != NULL)
        OSSL(SSL_free)(c);
    if (s != NULL)
        OSSL(SSL_free)(s);
    return ok;
}

int tlsr_bench_pairs(SSL_CTX *server, SSL_CTX *client, int n, int resume,
                     tlsr_bench_result *out)
{
    SSL_SESSION *sess = NULL;
    tlsr_bench_result warm;
    int64_t t0;
    int i;

    memset(out, 0, sizeof *out);
    if (!tlsr_ossl.bound)
        return -TLSR_E_UNBOUND;
    if (server == NULL || client == NULL || n <= 0)
        return -TLSR_E_ARG;
    if (resume) {
        /* A full handshake first, outside the measurement, to get a session. */
        memset(&warm, 0, sizeof warm);
        if (!one_pair(server, client, &sess, 1, &warm) || sess == NULL) {
            out->failed = 1;
            return 0;
        }
    }
    t0 = mono_ns();
    for (i = 0; i < n; i++) {
        SSL_SESSION *offer = resume ? sess : NULL;
        if (!one_pair(server, client, &offer, 0, out))
            out->failed++;
        out->pairs++;
    }
    out->wall_ns = mono_ns() - t0;
    if (sess != NULL)
        OSSL(SSL_SESSION_free)(sess);
    return 1;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

int tlsr_bench_store(tlsr_store *st, tlsr_store_put_fn put, tlsr_store_get_fn get, int n,
                     int der_len, int64_t *put_median_ns, int64_t *get_median_ns)
{
    int64_t *t = malloc(sizeof *t * (size_t)n), now = 0;
    uint8_t id[32], *der = malloc((size_t)der_len), out[TLSR_STORE_MAX_DER];
    int i, rc = 1;

    if (t == NULL || der == NULL || n <= 0 || put == NULL || get == NULL) {
        free(t), free(der);
        return -TLSR_E_ARG;
    }
    memset(der, 0x5a, (size_t)der_len);
    memset(id, 0, sizeof id);
    for (i = 0; i < n; i++) {
        int64_t t0;
        memcpy(id, &i, sizeof i);
        t0 = mono_ns();
        if (put(st, id, sizeof id, der, (size_t)der_len, INT64_MAX, now) != 1)
            rc = 0;
        t[i] = mono_ns() - t0;
    }
    qsort(t, (size_t)n, sizeof *t, cmp_i64);
    *put_median_ns = t[n / 2];
    for (i = 0; i < n; i++) {
        int64_t t0;
        memcpy(id, &i, sizeof i);
        t0 = mono_ns();
        if (get(st, id, sizeof id, out, sizeof out, 0, now) != der_len)
            rc = 0;
        t[i] = mono_ns() - t0;
    }
    qsort(t, (size_t)n, sizeof *t, cmp_i64);
    *get_median_ns = t[n / 2];
    free(t), free(der);
    return rc;
}
