/*
 * ctx.c - what tlsresume attaches to an SSL_CTX, and how it is found again.
 *
 * Per-context state lives behind one SSL_CTX ex_data index (allocated in ossl.c
 * with a free hook): the callbacks find their ring from the SSL they are handed,
 * and the state holds a reference to the ring so the ring's memory outlives every
 * context that uses it, whatever Python does with its own ring object. States
 * replaced by a second install are kept (chained) until the SSL_CTX is freed,
 * because a handshake in another thread may still be reading them.
 */
#include <stdlib.h>
#include <string.h>

#include "ossl.h"

#include "store.h"

tlsr_ring *tlsr_ring_retain(tlsr_ring *ring);
tlsr_store *tlsr_store_retain(tlsr_store *st);
int tlsr_store_install_callbacks(SSL_CTX *ctx);
int tlsr_ticket_cb(SSL *s, unsigned char *key_name, unsigned char *iv,
                   EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc);

typedef struct tlsr_ctx_state {
    tlsr_ring *ring;            /* ticket keys, or NULL */
    tlsr_store *store;          /* session store, or NULL */
    struct tlsr_ctx_state *prev;
} tlsr_ctx_state;

void tlsr_ctx_state_free(void *ptr)
{
    tlsr_ctx_state *st = ptr, *prev;

    while (st != NULL) {
        prev = st->prev;
        tlsr_ring_release(st->ring);
        tlsr_store_release(st->store);
        free(st);
        st = prev;
    }
}

static tlsr_ctx_state *state_of(const SSL_CTX *ctx)
{
    return ctx == NULL ? NULL : OSSL(SSL_CTX_get_ex_data)(ctx, tlsr_ossl.ctx_index);
}

tlsr_ring *tlsr_ctx_ring(SSL_CTX *ctx)
{
    tlsr_ctx_state *st = state_of(ctx);
    return st == NULL ? NULL : st->ring;
}

tlsr_store *tlsr_ctx_store(SSL_CTX *ctx)
{
    tlsr_ctx_state *st = state_of(ctx);
    return st == NULL ? NULL : st->store;
}

#define KEEP ((void *)1)

/* Publish a new state for ctx. ring/store: a new reference, NULL to clear, or
 * KEEP to carry over the current one (a fresh reference is taken). */
static int replace_state(SSL_CTX *ctx, tlsr_ring *ring, tlsr_store *store)
{
    tlsr_ctx_state *st = calloc(1, sizeof *st), *old = state_of(ctx);

    if (ring == KEEP)
        ring = old != NULL && old->ring != NULL ? tlsr_ring_retain(old->ring) : NULL;
    if (store == KEEP)
        store = old != NULL && old->store != NULL ? tlsr_store_retain(old->store) : NULL;
    if (st == NULL) {
        tlsr_ring_release(ring);
        tlsr_store_release(store);
        return -TLSR_E_NOMEM;
    }
    st->ring = ring;
    st->store = store;
    st->prev = old;
    if (OSSL(SSL_CTX_set_ex_data)(ctx, tlsr_ossl.ctx_index, st) != 1) {
        st->prev = NULL;
        tlsr_ctx_state_free(st);
        return -TLSR_E_OPENSSL;
    }
    return 1;
}

int tlsr_ctx_use_ring(SSL_CTX *ctx, tlsr_ring *ring)
{
    int rc;

    if (!tlsr_ossl.bound)
        return -TLSR_E_UNBOUND;
    if (ctx == NULL || ring == NULL)
        return -TLSR_E_ARG;
    if ((rc = replace_state(ctx, tlsr_ring_retain(ring), KEEP)) < 0)
        return rc;
    /* Returns 1 on success (a macro-free function since OpenSSL 3.0). */
    if (OSSL(SSL_CTX_set_tlsext_ticket_key_evp_cb)(ctx, tlsr_ticket_cb) != 1)
        return -TLSR_E_OPENSSL;
    return 1;
}

int tlsr_ctx_use_static_key(SSL_CTX *ctx, const uint8_t *key80)
{
    uint8_t copy[80];
    long ok;

    if (!tlsr_ossl.bound)
        return -TLSR_E_UNBOUND;
    if (ctx == NULL || key80 == NULL)
        return -TLSR_E_ARG;
    /* OpenSSL's own path: name(16) | HMAC-SHA256 key(32) | AES-256 key(32). */
    memcpy(copy, key80, sizeof copy);
    ok = OSSL(SSL_CTX_ctrl)(ctx, TLSR_SSL_CTRL_SET_TLSEXT_TICKET_KEYS, sizeof copy, copy);
    tlsr_wipe(copy, sizeof copy);
    if (ok != 1)
        return -TLSR_E_OPENSSL;
    /* A callback would take precedence over the keys: remove ours. */
    OSSL(SSL_CTX_set_tlsext_ticket_key_evp_cb)(ctx, NULL);
    if (state_of(ctx) != NULL)
        return replace_state(ctx, NULL, KEEP);
    return 1;
}

int tlsr_ctx_use_store(SSL_CTX *ctx, tlsr_store *store)
{
    int rc;

    if (!tlsr_ossl.bound)
        return -TLSR_E_UNBOUND;
    if (ctx == NULL || store == NULL)
        return -TLSR_E_ARG;
    if ((rc = replace_state(ctx, KEEP, tlsr_store_retain(store))) < 0)
        return rc;
    return tlsr_store_install_callbacks(ctx);
}

int tlsr_ctx_reset(SSL_CTX *ctx)
{
    if (!tlsr_ossl.bound)
        return -TLSR_E_UNBOUND;
    OSSL(SSL_CTX_set_tlsext_ticket_key_evp_cb)(ctx, NULL);
    if (state_of(ctx) != NULL)
        return replace_state(ctx, NULL, KEEP);
    return 1;
}

uint64_t tlsr_ctx_options(SSL_CTX *ctx)
{
    return tlsr_ossl.bound ? OSSL(SSL_CTX_get_options)(ctx) : 0;
}

long tlsr_ctx_set_timeout(SSL_CTX *ctx, long seconds)
{
    return tlsr_ossl.bound ? OSSL(SSL_CTX_set_timeout)(ctx, seconds) : -TLSR_E_UNBOUND;
}

long tlsr_ctx_get_timeout(SSL_CTX *ctx)
{
    return tlsr_ossl.bound ? OSSL(SSL_CTX_get_timeout)(ctx) : -TLSR_E_UNBOUND;
}

int tlsr_ctx_has_ring(SSL_CTX *ctx)
{
    return tlsr_ossl.bound && tlsr_ctx_ring(ctx) != NULL;
}

long tlsr_session_time(SSL_SESSION *sess)
{
    return tlsr_ossl.bound ? OSSL(SSL_SESSION_get_time)(sess) : -1;
}

size_t tlsr_session_ticket(SSL_SESSION *sess, uint8_t *buf, size_t len)
{
    const unsigned char *tick = NULL;
    size_t n = 0;

    if (!tlsr_ossl.bound || sess == NULL)
        return 0;
    OSSL(SSL_SESSION_get0_ticket)(sess, &tick, &n);
    if (tick != NULL && buf != NULL)
        memcpy(buf, tick, n < len ? n : len);
    return tick == NULL ? 0 : n;
}
