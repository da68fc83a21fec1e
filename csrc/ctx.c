/*
 * ctx.c - what tlsresume attaches to an SSL_CTX, and how it is found again.
 *
 * One file: everything that reads the per-context state is here (the ex_data slot
 * has one owner), and splitting the session-ID-context code off would give a second
 * file the state's layout.
 *
 * Per-context state lives behind one SSL_CTX ex_data index, which this file alone
 * allocates (once, with a free hook) and reads: every OpenSSL callback that needs
 * the state is a trampoline here that finds it and hands it to keyring.c or
 * store.c, so those files never look at an SSL_CTX's ex_data. The callbacks find their ring from the SSL they are handed,
 * and the state holds a reference to the ring so the ring's memory outlives every
 * context that uses it, whatever Python does with its own ring object. States
 * replaced by a second install are kept (chained) until the SSL_CTX is freed,
 * because a handshake in another thread may still be reading them.
 *
 * The state also decides each connection's session ID context (sid_ctx), the
 * value OpenSSL stores in every session and compares before it resumes one: a
 * digest of what admits a client on this context (see "session ID context").
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* What the digest of a context's admission policy was computed from: cheap to
 * read on every handshake, and it changes whenever the policy can have changed
 * (Python can only add to a trust store, and loading a certificate replaces the
 * leaf object). */
typedef struct {
    int verify_mode;
    int depth;
    unsigned long vflags;
    unsigned int hostflags;
    int nobjs;
    const void *leaf;
    int nchain;
} policy_stamp;

#define SID_CACHE 8

typedef struct {
    size_t sni_len;
    uint8_t sni[260];           /* a server_name extension as the client sent it */
    uint8_t sid[32];
} sid_entry;

typedef struct tlsr_ctx_state {
    tlsr_ring *ring;            /* ticket keys, or NULL */
    tlsr_store *store;          /* session store, or NULL */
    /* session ID context: TLSR_SID_* mode and its bytes (the service name for
     * TLSR_SID_DERIVED, the exact sid_ctx for TLSR_SID_EXPLICIT) */
    int sid_mode;
    unsigned int sid_len;
    uint8_t sid[TLSR_SID_MAX];
    /* the admission digest, recomputed when the stamp moves, and the session ID
     * contexts of the last few server names under it */
    pthread_mutex_t mu;
    int have_policy;
    policy_stamp stamp;
    uint8_t policy[32];
    int nsids, next_sid;
    sid_entry sids[SID_CACHE];
    struct tlsr_ctx_state *prev;
} tlsr_ctx_state;

static void state_free(tlsr_ctx_state *st)
{
    tlsr_ctx_state *prev;

    while (st != NULL) {
        prev = st->prev;
        tlsr_ring_release(st->ring);
        tlsr_store_release(st->store);
        pthread_mutex_destroy(&st->mu);
        tlsr_wipe(st, sizeof *st);
        free(st);
        st = prev;
    }
}

/* OpenSSL's ex_data free hook: runs when the SSL_CTX is freed. */
static void ex_free_state(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                          void *argp)
{
    (void)parent, (void)ad, (void)idx, (void)argl, (void)argp;
    state_free(ptr);
}

static int ctx_index = -1;
static pthread_once_t ctx_index_once = PTHREAD_ONCE_INIT;

static void alloc_index(void)
{
    ctx_index = OSSL(CRYPTO_get_ex_new_index)(TLSR_CRYPTO_EX_INDEX_SSL_CTX, 0, NULL, NULL,
                                              NULL, ex_free_state);
}

/* Our SSL_CTX ex_data slot, allocated on first use; -1 if OpenSSL refused one. */
static int index_of_state(void)
{
    pthread_once(&ctx_index_once, alloc_index);
    return ctx_index;
}

static tlsr_ctx_state *state_of(const SSL_CTX *ctx)
{
    int idx = index_of_state();
    return ctx == NULL || idx < 0 ? NULL : OSSL(SSL_CTX_get_ex_data)(ctx, idx);
}

static tlsr_ring *ring_of(const SSL *s)
{
    tlsr_ctx_state *st = state_of(OSSL(SSL_get_SSL_CTX)(s));
    return st == NULL ? NULL : st->ring;
}

static tlsr_store *store_of(const SSL *s)
{
    tlsr_ctx_state *st = state_of(OSSL(SSL_get_SSL_CTX)(s));
    return st == NULL ? NULL : st->store;
}

/* ---- OpenSSL callbacks: find the state, hand over to its owner ---------------
 * The ring and store are those of the context the connection started on: OpenSSL
 * calls these with that context even after an SNI callback switched it. */

static int ticket_cb(SSL *s, unsigned char *key_name, unsigned char *iv,
                     EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    tlsr_ring *ring = ring_of(s);
    return ring == NULL ? 0 : tlsr_ring_on_ticket(ring, s, key_name, iv, cctx, hctx, enc);
}

static int new_session_cb(SSL *s, SSL_SESSION *sess)
{
    return tlsr_store_on_new(store_of(s), s, sess);
}

static SSL_SESSION *get_session_cb(SSL *s, const unsigned char *id, int id_len, int *copy)
{
    return tlsr_store_on_get(store_of(s), s, id, id_len, copy);
}

static void remove_session_cb(SSL_CTX *ctx, SSL_SESSION *sess)
{
    tlsr_ctx_state *st = state_of(ctx);
    tlsr_store_on_remove(st == NULL ? NULL : st->store, sess);
}

/* One info callback serves both: the ring counts handshakes that really resumed,
 * the store evicts on proven fatal alerts. */
static void info_cb(const SSL *s, int where, int ret)
{
    tlsr_ctx_state *st;

    /* OpenSSL calls this at every state change; only two kinds matter. */
    if (!(where & (TLSR_SSL_CB_HANDSHAKE_DONE | TLSR_SSL_CB_ALERT)))
        return;
    if ((st = state_of(OSSL(SSL_get_SSL_CTX)(s))) == NULL)
        return;
    if ((where & TLSR_SSL_CB_HANDSHAKE_DONE) && st->ring != NULL)
        tlsr_ring_handshake_done(st->ring, s);
    tlsr_store_on_info(st->store, s, where, ret);
}

static int install_store_callbacks(SSL_CTX *ctx)
{
    long mode = OSSL(SSL_CTX_ctrl)(ctx, TLSR_SSL_CTRL_GET_SESS_CACHE_MODE, 0, NULL);

    /* Server caching on, OpenSSL's own (per-process) cache off. */
    mode |= TLSR_SSL_SESS_CACHE_SERVER | TLSR_SSL_SESS_CACHE_NO_INTERNAL_LOOKUP |
            TLSR_SSL_SESS_CACHE_NO_INTERNAL_STORE;
    OSSL(SSL_CTX_ctrl)(ctx, TLSR_SSL_CTRL_SET_SESS_CACHE_MODE, mode, NULL);
    OSSL(SSL_CTX_sess_set_new_cb)(ctx, new_session_cb);
    OSSL(SSL_CTX_sess_set_get_cb)(ctx, get_session_cb);
    OSSL(SSL_CTX_sess_set_remove_cb)(ctx, remove_session_cb);
    OSSL(SSL_CTX_set_info_callback)(ctx, info_cb);
    return 1;
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
    if (old != NULL) {
        st->sid_mode = old->sid_mode;
        st->sid_len = old->sid_len;
        memcpy(st->sid, old->sid, sizeof st->sid);
    }
    pthread_mutex_init(&st->mu, NULL);
    st->prev = old;
    if (index_of_state() < 0 || OSSL(SSL_CTX_set_ex_data)(ctx, index_of_state(), st) != 1) {
        st->prev = NULL;
        state_free(st);
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
    if (OSSL(SSL_CTX_set_tlsext_ticket_key_evp_cb)(ctx, ticket_cb) != 1)
        return -TLSR_E_OPENSSL;
    /* It counts the ring's real resumptions (and serves the store, if any). */
    OSSL(SSL_CTX_set_info_callback)(ctx, info_cb);
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
    return install_store_callbacks(ctx);
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
    tlsr_ctx_state *st;

    if (!tlsr_ossl.bound)
        return 0;
    st = state_of(ctx);
    return st != NULL && st->ring != NULL;
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

/* ---- session ID context ----------------------------------------------------
 *
 * CPython gives every context the same sid_ctx ("Python"), so with shared ticket
 * keys or a shared store a session made on a context that admits anyone would
 * resume on one that demands a client certificate. Each connection's sid_ctx is
 * therefore SHA-256 over: the admission digest of the context the handshake
 * started on (tlsr_ctx_trust_digest with the server's own chain), the service
 * name the user gave, and the ClientHello's server_name extension (an SNI
 * callback may switch to a stricter context only after OpenSSL has already
 * matched the session, so the name the switch depends on is bound in here).
 * It is set from the ClientHello callback, which runs before any session lookup,
 * on every CPython: 3.13+ overwrite the context's value per connection.
 */

static void digest_u64(EVP_MD_CTX *md, uint64_t v)
{
    uint8_t b[8];
    int i;

    for (i = 7; i >= 0; i--, v >>= 8)
        b[i] = (uint8_t)v;
    OSSL(EVP_DigestUpdate)(md, b, sizeof b);
}

static int cmp32(const void *a, const void *b)
{
    return memcmp(a, b, 32);
}

/* Feed the SHA-256 of every certificate and CRL in store into md, sorted so that
 * load order does not matter. Work: one digest per object. */
static int digest_store(EVP_MD_CTX *md, X509_STORE *store)
{
    OPENSSL_STACK *objs;
    uint8_t (*d)[33] = NULL;
    int i, n, k = 0, ok = 1;
    unsigned int len;

    if (store == NULL) {
        digest_u64(md, 0);
        return 1;
    }
    OSSL(X509_STORE_lock)(store);
    objs = OSSL(X509_STORE_get0_objects)(store);
    n = objs == NULL ? 0 : OSSL(OPENSSL_sk_num)(objs);
    if (n > 0 && (d = malloc((size_t)n * sizeof *d)) == NULL)
        ok = 0;
    for (i = 0; ok && i < n; i++) {
        const X509_OBJECT *o = OSSL(OPENSSL_sk_value)(objs, i);
        int type = OSSL(X509_OBJECT_get_type)(o);

        len = 32;
        /* The kind goes last so that sorting orders by the digest itself. */
        if (type == TLSR_X509_LU_X509) {
            ok = OSSL(X509_digest)(OSSL(X509_OBJECT_get0_X509)(o), OSSL(EVP_sha256)(),
                                   d[k], &len) == 1 && len == 32;
            d[k++][32] = 'C';
        } else if (type == TLSR_X509_LU_CRL) {
            ok = OSSL(X509_CRL_digest)(OSSL(X509_OBJECT_get0_X509_CRL)(o),
                                       OSSL(EVP_sha256)(), d[k], &len) == 1 && len == 32;
            d[k++][32] = 'R';
        }
    }
    OSSL(X509_STORE_unlock)(store);
    if (ok) {
        if (k > 1)
            qsort(d, (size_t)k, sizeof *d, cmp32); /* d is NULL when the store is empty */
        digest_u64(md, (uint64_t)k);
        for (i = 0; i < k; i++)
            OSSL(EVP_DigestUpdate)(md, d[i], sizeof d[i]);
    }
    free(d);
    return ok;
}

static OPENSSL_STACK *chain_of(SSL_CTX *ctx)
{
    OPENSSL_STACK *chain = NULL;

    if (OSSL(SSL_CTX_ctrl)(ctx, TLSR_SSL_CTRL_GET_CHAIN_CERTS, 0, &chain) != 1)
        return NULL;
    return chain;
}

static int digest_cert(EVP_MD_CTX *md, const X509 *x)
{
    uint8_t d[32];
    unsigned int len = sizeof d;

    if (x == NULL) {
        digest_u64(md, 0);
        return 1;
    }
    if (OSSL(X509_digest)(x, OSSL(EVP_sha256)(), d, &len) != 1 || len != sizeof d)
        return 0;
    digest_u64(md, 1);
    OSSL(EVP_DigestUpdate)(md, d, sizeof d);
    return 1;
}

int tlsr_ctx_trust_digest(SSL_CTX *ctx, unsigned int flags, uint8_t *out)
{
    X509_VERIFY_PARAM *param;
    EVP_MD_CTX *md;
    unsigned int len = 32;
    int mode, ok = 1, i, n;

    if (!tlsr_ossl.bound)
        return -TLSR_E_UNBOUND;
    if (ctx == NULL || out == NULL)
        return -TLSR_E_ARG;
    if ((md = OSSL(EVP_MD_CTX_new)()) == NULL)
        return -TLSR_E_NOMEM;
    param = OSSL(SSL_CTX_get0_param)(ctx);
    mode = OSSL(SSL_CTX_get_verify_mode)(ctx);
    ok = OSSL(EVP_DigestInit_ex)(md, OSSL(EVP_sha256)(), NULL) == 1;
    if (ok) {
        OSSL(EVP_DigestUpdate)(md, "tlsresume trust 1", 17);
        digest_u64(md, (uint64_t)(unsigned)mode);
        digest_u64(md, param ? (uint64_t)OSSL(X509_VERIFY_PARAM_get_flags)(param) : 0);
        digest_u64(md, param ? (uint64_t)(int64_t)OSSL(X509_VERIFY_PARAM_get_depth)(param) : 0);
        digest_u64(md, param ? (uint64_t)OSSL(X509_VERIFY_PARAM_get_hostflags)(param) : 0);
        /* A context that verifies nobody admits everyone, whatever it trusts. */
        if (!(flags & TLSR_DIGEST_STORE_IF_VERIFYING) || mode != 0)
            ok = digest_store(md, OSSL(SSL_CTX_get_cert_store)(ctx));
        else
            digest_u64(md, 0);
    }
    if (ok && (flags & TLSR_DIGEST_OWN_CHAIN)) {
        OPENSSL_STACK *chain = chain_of(ctx);

        ok = digest_cert(md, OSSL(SSL_CTX_get0_certificate)(ctx));
        n = chain == NULL ? 0 : OSSL(OPENSSL_sk_num)(chain);
        digest_u64(md, (uint64_t)n);
        for (i = 0; ok && i < n; i++)
            ok = digest_cert(md, OSSL(OPENSSL_sk_value)(chain, i));
    }
    ok = ok && OSSL(EVP_DigestFinal_ex)(md, out, &len) == 1 && len == 32;
    OSSL(EVP_MD_CTX_free)(md);
    return ok ? 1 : -TLSR_E_OPENSSL;
}

static void read_stamp(SSL_CTX *ctx, policy_stamp *p)
{
    X509_VERIFY_PARAM *param = OSSL(SSL_CTX_get0_param)(ctx);
    X509_STORE *store = OSSL(SSL_CTX_get_cert_store)(ctx);
    OPENSSL_STACK *objs, *chain = chain_of(ctx);

    memset(p, 0, sizeof *p);
    p->verify_mode = OSSL(SSL_CTX_get_verify_mode)(ctx);
    if (param != NULL) {
        p->vflags = OSSL(X509_VERIFY_PARAM_get_flags)(param);
        p->depth = OSSL(X509_VERIFY_PARAM_get_depth)(param);
        p->hostflags = OSSL(X509_VERIFY_PARAM_get_hostflags)(param);
    }
    /* The store counts only when the context verifies (see SERVER_DIGEST). */
    if (store != NULL && p->verify_mode != 0) {
        OSSL(X509_STORE_lock)(store);
        objs = OSSL(X509_STORE_get0_objects)(store);
        p->nobjs = objs == NULL ? 0 : OSSL(OPENSSL_sk_num)(objs);
        OSSL(X509_STORE_unlock)(store);
    }
    p->leaf = OSSL(SSL_CTX_get0_certificate)(ctx);
    p->nchain = chain == NULL ? 0 : OSSL(OPENSSL_sk_num)(chain);
}

#define SERVER_DIGEST (TLSR_DIGEST_OWN_CHAIN | TLSR_DIGEST_STORE_IF_VERIFYING)

/* The session ID context for one server_name value (raw extension bytes; len 0:
 * none), with the policy it was derived from. Returns 1, or 0 on failure. */
static int compute_sid(const tlsr_ctx_state *st, const uint8_t *policy,
                       const unsigned char *sni, size_t sni_len, uint8_t *out)
{
    EVP_MD_CTX *md;
    unsigned int len = 32;
    int ok;

    if ((md = OSSL(EVP_MD_CTX_new)()) == NULL)
        return 0;
    ok = OSSL(EVP_DigestInit_ex)(md, OSSL(EVP_sha256)(), NULL) == 1;
    if (ok) {
        OSSL(EVP_DigestUpdate)(md, "tlsresume sid 1", 15);
        OSSL(EVP_DigestUpdate)(md, policy, 32);
        digest_u64(md, st->sid_len);
        OSSL(EVP_DigestUpdate)(md, st->sid, st->sid_len);
        digest_u64(md, sni_len);
        if (sni_len)
            OSSL(EVP_DigestUpdate)(md, sni, sni_len);
        ok = OSSL(EVP_DigestFinal_ex)(md, out, &len) == 1 && len == 32;
    }
    OSSL(EVP_MD_CTX_free)(md);
    return ok;
}

/* The sid_ctx for connection s (derived mode; s NULL: a connection without
 * server_name). The admission digest is recomputed only when the stamp moved, and
 * the last SID_CACHE server names' values are kept with it, so an ordinary
 * handshake costs a stamp read and a short compare. Returns 1, or 0 on failure. */
static int derive_sid(tlsr_ctx_state *st, SSL_CTX *ctx, SSL *s, uint8_t *out)
{
    const unsigned char *sni = NULL;
    size_t sni_len = 0;
    policy_stamp now;
    int ok = 1, i;

    if (s != NULL && OSSL(SSL_client_hello_get0_ext)(s, TLSR_TLSEXT_TYPE_server_name,
                                                     &sni, &sni_len) != 1)
        sni = NULL, sni_len = 0;
    read_stamp(ctx, &now);
    pthread_mutex_lock(&st->mu);
    if (!st->have_policy || memcmp(&now, &st->stamp, sizeof now) != 0) {
        ok = tlsr_ctx_trust_digest(ctx, SERVER_DIGEST, st->policy) == 1;
        st->have_policy = ok;
        st->stamp = now;
        st->nsids = 0;
    }
    for (i = 0; ok && i < st->nsids; i++) {
        sid_entry *e = &st->sids[i];
        if (e->sni_len == sni_len && (sni_len == 0 || memcmp(e->sni, sni, sni_len) == 0)) {
            memcpy(out, e->sid, 32);
            pthread_mutex_unlock(&st->mu);
            return 1;
        }
    }
    ok = ok && compute_sid(st, st->policy, sni, sni_len, out);
    if (ok && sni_len <= sizeof st->sids[0].sni) {
        sid_entry *e = &st->sids[st->nsids < SID_CACHE ? st->nsids++ : st->next_sid];
        if (st->nsids == SID_CACHE)
            st->next_sid = (st->next_sid + 1) % SID_CACHE;
        e->sni_len = sni_len;
        if (sni_len > 0) /* sni is NULL without the extension */
            memcpy(e->sni, sni, sni_len);
        memcpy(e->sid, out, 32);
    }
    pthread_mutex_unlock(&st->mu);
    return ok;
}

/* OpenSSL contract: return SSL_CLIENT_HELLO_SUCCESS to go on (we never fail a
 * handshake). If no sid_ctx can be computed the connection gets a random one:
 * it cannot resume anything (full handshake) and its own session resumes nowhere,
 * which is safe, where keeping CPython's shared value would not be. */
static int client_hello_cb(SSL *s, int *al, void *arg)
{
    SSL_CTX *ctx = OSSL(SSL_get_SSL_CTX)(s);
    tlsr_ctx_state *st = state_of(ctx);
    uint8_t sid[TLSR_SSL_MAX_SID_CTX_LENGTH];
    unsigned int len = 32;

    (void)al, (void)arg;
    if (st == NULL || st->sid_mode == TLSR_SID_OFF)
        return TLSR_SSL_CLIENT_HELLO_SUCCESS;
    if (st->sid_mode == TLSR_SID_EXPLICIT) {
        memcpy(sid, st->sid, st->sid_len);
        len = st->sid_len;
    } else if (!derive_sid(st, ctx, s, sid) && OSSL(RAND_bytes)(sid, 32) != 1) {
        len = 0;
    }
    if (len == 0 || OSSL(SSL_set_session_id_context)(s, sid, len) != 1) {
        /* Last resort: if OpenSSL refused both, make resumption impossible. */
        OSSL(SSL_set_session_id_context)(s, (const unsigned char *)"tlsresume!", 10);
    }
    OSSL(ERR_clear_error)();
    return TLSR_SSL_CLIENT_HELLO_SUCCESS;
}

int tlsr_ctx_set_sid(SSL_CTX *ctx, int mode, const uint8_t *data, size_t len)
{
    tlsr_ctx_state *old;
    int rc;

    if (!tlsr_ossl.bound)
        return -TLSR_E_UNBOUND;
    if (ctx == NULL || len > TLSR_SID_MAX || (len > 0 && data == NULL) ||
        (mode != TLSR_SID_DERIVED && mode != TLSR_SID_EXPLICIT && mode != TLSR_SID_OFF) ||
        (mode == TLSR_SID_EXPLICIT && (len == 0 || len > TLSR_SSL_MAX_SID_CTX_LENGTH)))
        return -TLSR_E_ARG;
    if ((rc = replace_state(ctx, KEEP, KEEP)) < 0)
        return rc;
    old = state_of(ctx);
    old->sid_mode = mode;
    old->sid_len = (unsigned int)len;
    memset(old->sid, 0, sizeof old->sid);
    if (len)
        memcpy(old->sid, data, len);
    /* The context's own value too, for whatever reads it outside a handshake. */
    if (mode == TLSR_SID_EXPLICIT)
        OSSL(SSL_CTX_set_session_id_context)(ctx, data, (unsigned int)len);
    OSSL(SSL_CTX_set_client_hello_cb)(ctx, client_hello_cb, NULL);
    return 1;
}

int tlsr_ctx_session_id_context(SSL_CTX *ctx, uint8_t *out)
{
    tlsr_ctx_state *st;

    if (!tlsr_ossl.bound)
        return -TLSR_E_UNBOUND;
    if (ctx == NULL || out == NULL)
        return -TLSR_E_ARG;
    st = state_of(ctx);
    if (st == NULL || st->sid_mode == TLSR_SID_OFF)
        return 0;
    if (st->sid_mode == TLSR_SID_EXPLICIT) {
        memcpy(out, st->sid, st->sid_len);
        return (int)st->sid_len;
    }
    return derive_sid(st, ctx, NULL, out) ? 32 : -TLSR_E_OPENSSL;
}
