/*
 * client.c - the client session cache: OpenSSL sessions kept per (namespace,
 * server hostname, port), captured by the client new-session callback and set
 * on new connections with SSL_set_session.
 *
 * One file: the table, the MRU lists and the callbacks share one lock and one
 * private layout; each function states its bound.
 *
 * Structure: a hash table of servers, threaded on a most-recently-used list; each
 * server holds up to tickets_per_host sessions, newest first. TLS 1.3 tickets are
 * single use (taken out when offered); a TLS 1.2 session stays and is reused until
 * a newer one replaces it. One mutex guards the cache; counters are atomics.
 *
 * Connections: tlsr_client_attach puts a small record in the SSL's ex_data (our
 * own index, never slot 0, which CPython uses) naming the cache, the key and the
 * context's verification profile. The new-session callback (inside
 * SSL_do_handshake or SSL_read, without the GIL) finds the record there; the
 * record's free hook (first thing in SSL_free) is the "at close" fallback.
 *
 * Safety: a session is stored with the verification level the connection that
 * made it achieved and the fingerprints of its context, and offered only where
 * tlsr_client_may_offer allows, and only to a connection that could negotiate it
 * (tlsr_client_fits): an offer must never turn into a failed handshake.
 *
 * Memory: every session is charged its encoded size (tlsr_client_cache_configure)
 * and the cache evicts least recently used servers to stay within max_bytes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define SSL_VERIFY_PEER 0x01
#define X509_V_OK 0
#define MIN_BUCKETS 16

typedef struct {
    SSL_SESSION *sess;        /* a reference owned by the cache */
    int64_t stored_ms;
    int64_t expires_ms;
    int32_t level;
    int32_t protocol;
    int32_t single_use;
    int32_t ems;
    uint64_t bytes;           /* what this session is charged */
    tlsr_client_fp fp;
} cc_sess;

typedef struct cc_host {
    struct cc_host *chain;           /* next in the hash bucket */
    struct cc_host *newer, *older;   /* MRU list */
    uint64_t hash;
    int port;
    uint32_t nsess;
    const char *ns, *host;           /* point into name */
    cc_sess *sess;                   /* tickets_per_host slots, newest first */
    char name[];
} cc_host;

struct tlsr_client_cache {
    _Atomic long refs;
    pthread_mutex_t lock;
    struct tlsr_client_cache *next_cache;  /* registry of live caches (fork safety) */
    struct tlsr_client_cache **prev_next;
    uint32_t max_entries;
    uint32_t tickets;
    uint64_t max_bytes;
    uint64_t bytes;                  /* sum of the sessions' charges */
    int64_t ttl_ms;
    int manual_clock;
    _Atomic int64_t manual_now;
    cc_host **buckets;
    size_t nbuckets;
    cc_host *mru, *lru;
    size_t nhosts, nsessions;
    char **disabled;
    size_t ndisabled;
    _Atomic uint64_t counters[TLSR_CC_NCOUNTERS];
};

/* What a connection carries in its ex_data slot. */
typedef struct {
    tlsr_client_cache *cache;        /* a reference */
    SSL_SESSION *offered;            /* a reference to the session we set, or NULL */
    SSL_SESSION *captured;           /* a reference to the newest session stored */
    int port;
    int hostname_checked;            /* the context checked the hostname */
    int outcome_counted;
    tlsr_client_fp fp;
    const char *ns, *host;
    char name[];
} cc_conn;

static pthread_once_t index_once = PTHREAD_ONCE_INIT;
static int conn_index = -1;

/* Every live cache, so that fork() can take all their locks first: a child must
 * not inherit a cache locked by a thread that does not exist in it. */
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static tlsr_client_cache *registry;

static void count(tlsr_client_cache *c, int which, uint64_t n)
{
    if (n)
        atomic_fetch_add_explicit(&c->counters[which], n, memory_order_relaxed);
}

static int64_t cache_now(tlsr_client_cache *c)
{
    return c->manual_clock ? atomic_load(&c->manual_now) : tlsr_now_ms();
}

static void saw_now(tlsr_client_cache *c, int64_t now_ms)
{
    if (c->manual_clock)
        atomic_store(&c->manual_now, now_ms);
}

/* ---- policy (pure) ---------------------------------------------------------- */

static int64_t clamp_s(int64_t s)
{
    const int64_t max_s = TLSR_CLIENT_MAX_LIFE_MS / 1000;
    return s < 0 ? 0 : s > max_s ? max_s : s;
}

int64_t tlsr_client_session_life(int64_t now_ms, int64_t time_s, int64_t timeout_s,
                                 int64_t hint_s)
{
    int64_t start = tlsr_s_to_ms(time_s), end = tlsr_time_add(start, clamp_s(timeout_s) * 1000);

    if (hint_s > 0 && tlsr_time_add(start, clamp_s(hint_s) * 1000) < end)
        end = tlsr_time_add(start, clamp_s(hint_s) * 1000);
    if (end <= now_ms)
        return 0;
    /* end > now_ms, so end - now_ms is positive; it overflows only past the cap */
    if (now_ms < 0 && end > INT64_MAX + now_ms)
        return TLSR_CLIENT_MAX_LIFE_MS;
    return end - now_ms > TLSR_CLIENT_MAX_LIFE_MS ? TLSR_CLIENT_MAX_LIFE_MS : end - now_ms;
}

int64_t tlsr_client_deadline(int64_t stored_ms, int64_t expires_ms, int64_t ttl_ms)
{
    if (ttl_ms >= 0 && tlsr_time_add(stored_ms, ttl_ms) < expires_ms)
        return tlsr_time_add(stored_ms, ttl_ms);
    return expires_ms;
}

/* The safety rule: the same client identity always; the session's server must
 * have been authenticated at least as strictly as the context demands, and under
 * the same trust configuration whenever the context verifies at all. */
int tlsr_client_may_offer(int s_level, const tlsr_client_fp *s_fp, int c_level,
                          const tlsr_client_fp *c_fp)
{
    if (memcmp(s_fp->ident, c_fp->ident, sizeof s_fp->ident) != 0)
        return 0;
    if (s_level < c_level)
        return 0;
    if (c_level > TLSR_VERIFY_NONE && memcmp(s_fp->trust, c_fp->trust, sizeof s_fp->trust) != 0)
        return 0;
    return 1;
}

/* Whether the connection lists the cipher with this id (TLS 1.3 suites included:
 * SSL_get_ciphers returns both kinds). O(enabled ciphers). */
static int cipher_enabled(SSL *ssl, uint32_t id)
{
    void *list = OSSL(SSL_get_ciphers)(ssl);
    int i, n = list == NULL ? 0 : OSSL(OPENSSL_sk_num)(list);

    for (i = 0; i < n; i++) {
        const SSL_CIPHER *c = OSSL(OPENSSL_sk_value)(list, i);
        if (c != NULL && OSSL(SSL_CIPHER_get_id)(c) == id)
            return 1;
    }
    return 0;
}

static int version_enabled(SSL *ssl, int version)
{
    long lo = OSSL(SSL_ctrl)(ssl, TLSR_SSL_CTRL_GET_MIN_PROTO_VERSION, 0, NULL);
    long hi = OSSL(SSL_ctrl)(ssl, TLSR_SSL_CTRL_GET_MAX_PROTO_VERSION, 0, NULL);
    uint64_t opts = OSSL(SSL_get_options)(ssl), off;

    /* 0 means "no limit" for both */
    if ((lo != 0 && version < lo) || (hi != 0 && version > hi))
        return 0;
    switch (version) {
    case 0x0301: off = TLSR_SSL_OP_NO_TLSv1; break;
    case 0x0302: off = TLSR_SSL_OP_NO_TLSv1_1; break;
    case 0x0303: off = TLSR_SSL_OP_NO_TLSv1_2; break;
    case 0x0304: off = TLSR_SSL_OP_NO_TLSv1_3; break;
    default: return 0;  /* SSL 3.0, DTLS or unknown: never offered */
    }
    return !(opts & off);
}

/* What OpenSSL would refuse on resumption, checked before the offer rather than
 * met as a fatal alert after it. A TLS 1.2 server that resumes answers with the
 * session's cipher, which the client rejects ("wrong cipher returned", illegal
 * parameter) unless it offered it; a TLS 1.3 PSK carries its cipher's hash, so we
 * ask for the exact suite there too (conservative). The extended master secret
 * must be used on resumption exactly when the session used it (RFC 7627 5.3: the
 * server aborts, or must not resume, otherwise). A session for another server name is not one for this
 * connection (OpenSSL 3.0 tolerates it, but it is not the server we meant). */
int tlsr_client_fits(SSL *ssl, SSL_SESSION *sess, int ems)
{
    const SSL_CIPHER *cipher;
    const char *sni, *name;
    int version;

    if (!tlsr_ossl.bound || ssl == NULL || sess == NULL)
        return 0;
    version = OSSL(SSL_SESSION_get_protocol_version)(sess);
    if (!version_enabled(ssl, version))
        return 0;
    cipher = OSSL(SSL_SESSION_get0_cipher)(sess);
    if (cipher == NULL || !cipher_enabled(ssl, OSSL(SSL_CIPHER_get_id)(cipher)))
        return 0;
    /* The connection sends the EMS extension unless the option is set; it must
     * match the session's use of it (without: the server aborts; with, for a
     * session made without: the server must not resume, a wasted offer). */
    if (version < TLSR_TLS1_3_VERSION &&
        !ems != !!(OSSL(SSL_get_options)(ssl) & TLSR_SSL_OP_NO_EXTENDED_MASTER_SECRET))
        return 0;
    sni = OSSL(SSL_get_servername)(ssl, TLSR_TLSEXT_NAMETYPE_host_name);
    name = OSSL(SSL_SESSION_get0_hostname)(sess);
    if (sni != NULL && name != NULL && strcmp(sni, name) != 0)
        return 0;
    return 1;
}

/* ---- servers: hash table and MRU list (caller holds the lock) ---------------- */

static uint64_t key_hash(const char *ns, const char *host, int port)
{
    uint64_t h = 1469598103934665603ULL;
    const unsigned char *p;

    for (p = (const unsigned char *)ns; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    h = (h ^ 0xff) * 1099511628211ULL;
    for (p = (const unsigned char *)host; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    h = (h ^ (uint64_t)(port & 0xffff)) * 1099511628211ULL;
    return h ^ (h >> 29);
}

static cc_host *host_find(tlsr_client_cache *c, const char *ns, const char *host, int port)
{
    uint64_t h = key_hash(ns, host, port);
    cc_host *e;

    for (e = c->buckets[h & (c->nbuckets - 1)]; e != NULL; e = e->chain)
        if (e->hash == h && e->port == port && strcmp(e->host, host) == 0 &&
            strcmp(e->ns, ns) == 0)
            return e;
    return NULL;
}

static void list_unlink(tlsr_client_cache *c, cc_host *e)
{
    if (e->newer) e->newer->older = e->older; else c->mru = e->older;
    if (e->older) e->older->newer = e->newer; else c->lru = e->newer;
    e->newer = e->older = NULL;
}

static void list_push_front(tlsr_client_cache *c, cc_host *e)
{
    e->newer = NULL;
    e->older = c->mru;
    if (c->mru) c->mru->newer = e; else c->lru = e;
    c->mru = e;
}

static void touch(tlsr_client_cache *c, cc_host *e)
{
    if (c->mru != e) {
        list_unlink(c, e);
        list_push_front(c, e);
    }
}

/* Size the table for max_entries servers (a power of two at least that large), so
 * that the handshake-time paths never rehash: called from tlsr_client_cache_new and
 * tlsr_client_cache_configure only, with the lock held, O(servers held). Failure
 * keeps the old table (chains just get longer). */
static void size_table(tlsr_client_cache *c, uint32_t max_entries)
{
    size_t n = MIN_BUCKETS, i;
    cc_host **b, *e, *next;

    while (n < max_entries && n < ((size_t)1 << 30))
        n *= 2;
    if (n <= c->nbuckets || (b = calloc(n, sizeof *b)) == NULL)
        return;
    for (i = 0; i < c->nbuckets; i++)
        for (e = c->buckets[i]; e != NULL; e = next) {
            next = e->chain;
            e->chain = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    free(c->buckets);
    c->buckets = b;
    c->nbuckets = n;
}

/* Remove session i of e, releasing the cache's reference; counted under `why`. */
static void sess_drop(tlsr_client_cache *c, cc_host *e, uint32_t i, int why)
{
    c->bytes -= e->sess[i].bytes;
    OSSL(SSL_SESSION_free)(e->sess[i].sess);
    memmove(&e->sess[i], &e->sess[i + 1], (e->nsess - i - 1) * sizeof e->sess[0]);
    e->nsess--;
    c->nsessions--;
    if (why >= 0)
        count(c, why, 1);
}

static void host_free(tlsr_client_cache *c, cc_host *e, int why)
{
    cc_host **pp = &c->buckets[e->hash & (c->nbuckets - 1)];

    while (e->nsess > 0)
        sess_drop(c, e, e->nsess - 1, why);
    while (*pp != e)
        pp = &(*pp)->chain;
    *pp = e->chain;
    list_unlink(c, e);
    c->nhosts--;
    free(e);
}

static cc_host *host_new(tlsr_client_cache *c, const char *ns, const char *host, int port)
{
    size_t nl = strlen(ns) + 1, hl = strlen(host) + 1;
    size_t sess_off = (sizeof(cc_host) + nl + hl + 15) & ~(size_t)15;
    cc_host *e = calloc(1, sess_off + c->tickets * sizeof(cc_sess));

    if (e == NULL)
        return NULL;
    memcpy(e->name, ns, nl);
    memcpy(e->name + nl, host, hl);
    e->ns = e->name;
    e->host = e->name + nl;
    e->port = port;
    e->hash = key_hash(ns, host, port);
    e->sess = (cc_sess *)((char *)e + sess_off);
    e->chain = c->buckets[e->hash & (c->nbuckets - 1)];
    c->buckets[e->hash & (c->nbuckets - 1)] = e;
    list_push_front(c, e);
    c->nhosts++;
    return e;
}

static void evict_to(tlsr_client_cache *c, size_t max_hosts)
{
    while (c->nhosts > max_hosts && c->lru != NULL)
        host_free(c, c->lru, TLSR_CC_EVICTED);
}

/* Make room for `need` more bytes: drop least recently used servers other than
 * keep, then keep's oldest sessions. Returns whether the room is there. Each
 * step frees at least one session, so O(sessions freed). */
static int evict_bytes(tlsr_client_cache *c, uint64_t need, cc_host *keep)
{
    while (c->bytes + need > c->max_bytes) {
        cc_host *victim = c->lru == keep ? (keep != NULL ? keep->newer : NULL) : c->lru;
        if (victim != NULL) {
            host_free(c, victim, TLSR_CC_EVICTED);
        } else if (keep != NULL && keep->nsess > 0) {
            sess_drop(c, keep, keep->nsess - 1, TLSR_CC_EVICTED);
        } else {
            return c->bytes + need <= c->max_bytes;
        }
    }
    return 1;
}

static int ns_disabled(tlsr_client_cache *c, const char *ns)
{
    size_t i;
    for (i = 0; i < c->ndisabled; i++)
        if (strcmp(c->disabled[i], ns) == 0)
            return 1;
    return 0;
}

static int same_profile(const cc_sess *a, const cc_sess *b)
{
    return a->level == b->level && memcmp(&a->fp, &b->fp, sizeof a->fp) == 0;
}

static uint32_t sess_cipher(const cc_sess *s)
{
    const SSL_CIPHER *c = OSSL(SSL_SESSION_get0_cipher)(s->sess);
    return c == NULL ? 0 : OSSL(SSL_CIPHER_get_id)(c);
}

/* Does new session n make the reusable (TLS 1.2) session old redundant? Only if
 * every connection that could negotiate old could negotiate n: same profile,
 * protocol, cipher and extended master secret. Contexts sharing the cache with
 * other cipher lists or versions keep their own sessions. */
static int supersedes(const cc_sess *n, const cc_sess *old)
{
    return !old->single_use && same_profile(n, old) && n->protocol == old->protocol &&
           n->ems == old->ems && sess_cipher(n) == sess_cipher(old);
}

/* Put *s (whose reference the cache takes) as the newest session of its server.
 * It replaces the reusable sessions it supersedes (same profile, protocol and
 * cipher); TLS 1.3 tickets are never replaced, only used or evicted. The oldest
 * session goes when the server holds tickets_per_host, and least recently used
 * servers when the byte budget needs room. Sessions of other profiles (contexts
 * sharing the cache with other trust) are left alone.
 * O(tickets_per_host), plus evicting one server. Returns 0 (and takes nothing)
 * when the namespace is disabled or memory ran out. */
static int store_locked(tlsr_client_cache *c, const char *ns, const char *host, int port,
                        const cc_sess *s)
{
    cc_host *e;
    uint32_t i;

    if (ns_disabled(c, ns))
        return 0;
    if (s->bytes > c->max_bytes / 8) {
        count(c, TLSR_CC_OVERSIZE, 1);
        return 0;
    }
    e = host_find(c, ns, host, port);
    if (e == NULL) {
        evict_to(c, c->max_entries - 1);  /* bounded: the table was sized for this */
        if ((e = host_new(c, ns, host, port)) == NULL)
            return 0;
    }
    touch(c, e);
    for (i = 0; i < e->nsess;) {
        if (e->sess[i].sess == s->sess) {          /* already held: keep one */
            sess_drop(c, e, i, -1);
        } else if (supersedes(s, &e->sess[i])) {
            sess_drop(c, e, i, TLSR_CC_REPLACED);
        } else {
            i++;
        }
    }
    if (e->nsess == c->tickets)
        sess_drop(c, e, e->nsess - 1, TLSR_CC_EVICTED);
    evict_bytes(c, s->bytes, e);  /* always succeeds: s->bytes <= max_bytes / 8 */
    memmove(&e->sess[1], &e->sess[0], e->nsess * sizeof e->sess[0]);
    e->sess[0] = *s;
    e->nsess++;
    c->nsessions++;
    c->bytes += s->bytes;
    return 1;
}

/* Find the newest session of (ns, host, port) that may be offered at c_level/fp.
 * Expired and unusable sessions met on the way are dropped. A single-use ticket
 * is taken out; a reusable session gets a new reference. Returns that reference
 * (the caller owns it) or NULL. O(tickets_per_host). */
static SSL_SESSION *take_locked(tlsr_client_cache *c, SSL *ssl, const char *ns,
                                const char *host, int port, int c_level,
                                const tlsr_client_fp *fp, int64_t now)
{
    cc_host *e = host_find(c, ns, host, port);
    SSL_SESSION *found = NULL;
    uint32_t i = 0;
    int unsafe = 0, unfit = 0;

    if (e == NULL)
        return NULL;
    while (i < e->nsess && found == NULL) {
        cc_sess *s = &e->sess[i];
        if (now >= tlsr_client_deadline(s->stored_ms, s->expires_ms, c->ttl_ms)) {
            sess_drop(c, e, i, TLSR_CC_EXPIRED);
        } else if (!OSSL(SSL_SESSION_is_resumable)(s->sess)) {
            sess_drop(c, e, i, TLSR_CC_UNUSABLE);
        } else if (!tlsr_client_may_offer(s->level, &s->fp, c_level, fp)) {
            unsafe = 1;
            i++;
        } else if (!tlsr_client_fits(ssl, s->sess, s->ems)) {
            unfit = 1;  /* another context sharing the cache may still use it */
            i++;
        } else if (s->single_use) {
            found = s->sess;
            c->bytes -= s->bytes;
            memmove(&e->sess[i], &e->sess[i + 1], (e->nsess - i - 1) * sizeof e->sess[0]);
            e->nsess--;
            c->nsessions--;
        } else {
            found = s->sess;
            OSSL(SSL_SESSION_up_ref)(found);
        }
    }
    if (unsafe)
        count(c, TLSR_CC_UNSAFE, 1);
    if (unfit && found == NULL)
        count(c, TLSR_CC_UNFIT, 1);
    if (e->nsess == 0)
        host_free(c, e, -1);
    else if (found != NULL)
        touch(c, e);
    return found;
}

/* ---- connections ------------------------------------------------------------ */

static void conn_count_outcome(cc_conn *r, SSL *s)
{
    if (r->offered == NULL || r->outcome_counted)
        return;
    r->outcome_counted = 1;
    count(r->cache, OSSL(SSL_session_reused)(s) ? TLSR_CC_RESUMED : TLSR_CC_REJECTED, 1);
}

/* What a session is charged: its DER (ticket, master secret, peer certificate,
 * server name), the DER of the peer chain it references (s: the connection that
 * made it, NULL for a decoded one, which holds no chain) and a fixed overhead for
 * OpenSSL's structures. Certificates shared between sessions are charged to each:
 * the count errs high. O(chain length). */
static uint64_t sess_charge(SSL *s, SSL_SESSION *sess)
{
    uint64_t n = TLSR_CLIENT_SESS_OVERHEAD;
    int der = OSSL(i2d_SSL_SESSION)(sess, NULL), i, k;
    void *chain = s == NULL ? NULL : OSSL(SSL_get_peer_cert_chain)(s);

    n += der > 0 ? (uint64_t)der : 0;
    k = chain == NULL ? 0 : OSSL(OPENSSL_sk_num)(chain);
    for (i = 0; i < k; i++) {
        int len = OSSL(i2d_X509)(OSSL(OPENSSL_sk_value)(chain, i), NULL);
        n += len > 0 ? (uint64_t)len : 0;
    }
    return n;
}

/* Store sess (the caller's reference passes to the cache on success) as made by
 * connection s; remembers it as the connection's newest captured session. */
static int conn_store(cc_conn *r, SSL *s, SSL_SESSION *sess, int counter)
{
    tlsr_client_cache *c = r->cache;
    int64_t now = cache_now(c);
    int chain_ok, ok;
    cc_sess e;

    chain_ok = (OSSL(SSL_get_verify_mode)(s) & SSL_VERIFY_PEER) &&
               OSSL(SSL_get_verify_result)(s) == X509_V_OK;
    e.sess = sess;
    e.stored_ms = now;
    e.expires_ms = tlsr_time_add(now, tlsr_client_session_life(
        tlsr_now_ms(), OSSL(SSL_SESSION_get_time)(sess), OSSL(SSL_SESSION_get_timeout)(sess),
        (int64_t)OSSL(SSL_SESSION_get_ticket_lifetime_hint)(sess)));
    e.level = !chain_ok ? TLSR_VERIFY_NONE
              : r->hostname_checked ? TLSR_VERIFY_HOSTNAME : TLSR_VERIFY_CHAIN;
    e.protocol = OSSL(SSL_SESSION_get_protocol_version)(sess);
    e.single_use = e.protocol >= TLSR_TLS1_3_VERSION;
    /* The extended master secret: never with OP_NO_EXTENDED_MASTER_SECRET (the
     * client did not ask for it); otherwise what OpenSSL says, but inside the
     * handshake (where this callback usually runs) it says -1, unknown, which
     * counts as used: such a session is then withheld from connections with the
     * option, at worst a lost resumption, never a failed handshake. */
    e.ems = (OSSL(SSL_get_options)(s) & TLSR_SSL_OP_NO_EXTENDED_MASTER_SECRET) ? 0
            : OSSL(SSL_ctrl)(s, TLSR_SSL_CTRL_GET_EXTMS_SUPPORT, 0, NULL) != 0;
    e.bytes = sess_charge(s, sess);
    e.fp = r->fp;
    pthread_mutex_lock(&c->lock);
    ok = store_locked(c, r->ns, r->host, r->port, &e);
    pthread_mutex_unlock(&c->lock);
    if (!ok)
        return 0;
    count(c, counter, 1);
    OSSL(SSL_SESSION_up_ref)(sess);
    if (r->captured != NULL)
        OSSL(SSL_SESSION_free)(r->captured);
    r->captured = sess;
    return 1;
}

/* OpenSSL's client new-session callback. Contract: sess arrives with a reference
 * taken for us; return 1 to keep it, 0 to let OpenSSL drop it. Runs inside
 * SSL_do_handshake (TLS 1.2) or SSL_read (TLS 1.3 tickets), without the GIL. */
static int new_session_cb(SSL *s, SSL_SESSION *sess)
{
    cc_conn *r = conn_index > 0 ? OSSL(SSL_get_ex_data)(s, conn_index) : NULL;

    if (r == NULL)
        return 0;
    conn_count_outcome(r, s);
    if (!OSSL(SSL_SESSION_is_resumable)(sess))
        return 0;
    return conn_store(r, s, sess, TLSR_CC_STORED);
}

static void conn_release(cc_conn *r)
{
    if (r->offered != NULL)
        OSSL(SSL_SESSION_free)(r->offered);
    if (r->captured != NULL)
        OSSL(SSL_SESSION_free)(r->captured);
    tlsr_client_cache_release(r->cache);
    free(r);
}

/* ex_data free hook: runs first thing in SSL_free, while the SSL is intact.
 * A connection that finished its handshake and is closed without sending
 * close_notify (what Python's close() does) would have its session marked not
 * resumable by SSL_free; a benign close must not cost the session, so we mark
 * close_notify as sent. Fatal alerts have already marked the session, which is
 * what must happen then. Last, capture a session the callback never reported
 * (a TLS 1.2 ticket renewed on resumption). */
static void conn_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl,
                      void *argp)
{
    SSL *s = parent;
    cc_conn *r = ptr;
    SSL_SESSION *cur;

    (void)ad, (void)idx, (void)argl, (void)argp;
    if (r == NULL)
        return;
    if (s != NULL && OSSL(SSL_is_init_finished)(s)) {
        int shut = OSSL(SSL_get_shutdown)(s);
        conn_count_outcome(r, s);
        if (!(shut & TLSR_SSL_SENT_SHUTDOWN))
            OSSL(SSL_set_shutdown)(s, shut | TLSR_SSL_SENT_SHUTDOWN);
        cur = OSSL(SSL_get_session)(s);
        if (cur != NULL && cur != r->offered && cur != r->captured &&
            OSSL(SSL_SESSION_is_resumable)(cur)) {
            OSSL(SSL_SESSION_up_ref)(cur);
            if (!conn_store(r, s, cur, TLSR_CC_AT_CLOSE))
                OSSL(SSL_SESSION_free)(cur);
        }
    } else if (r->offered != NULL && !r->outcome_counted) {
        count(r->cache, TLSR_CC_INCOMPLETE, 1);
    }
    conn_release(r);
}

/* ex_data dup hook (SSL_dup): the copy gets no record. */
static int conn_dup(CRYPTO_EX_DATA *to, const CRYPTO_EX_DATA *from, void **from_d, int idx,
                    long argl, void *argp)
{
    (void)to, (void)from, (void)idx, (void)argl, (void)argp;
    *from_d = NULL;
    return 1;
}

static void before_fork(void)
{
    tlsr_client_cache *c;

    pthread_mutex_lock(&registry_lock);
    for (c = registry; c != NULL; c = c->next_cache)
        pthread_mutex_lock(&c->lock);
}

static void after_fork(void)
{
    tlsr_client_cache *c;

    for (c = registry; c != NULL; c = c->next_cache)
        pthread_mutex_unlock(&c->lock);
    pthread_mutex_unlock(&registry_lock);
}

static void alloc_index(void)
{
    pthread_atfork(before_fork, after_fork, after_fork);
    int i = OSSL(CRYPTO_get_ex_new_index)(TLSR_CRYPTO_EX_INDEX_SSL, 0, NULL, NULL,
                                          (void *)conn_dup, conn_free);
    /* Slot 0 is CPython's (SSL_set_app_data); OpenSSL never hands it out, but
     * refuse it rather than trust that. */
    conn_index = i > 0 ? i : -1;
}

static int ensure_index(void)
{
    if (!tlsr_ossl.bound)
        return -TLSR_E_UNBOUND;
    pthread_once(&index_once, alloc_index);
    return conn_index > 0 ? 0 : -TLSR_E_OPENSSL;
}

int tlsr_client_ctx_enable(SSL_CTX *ctx)
{
    long mode;
    int rc;

    if ((rc = ensure_index()) < 0)
        return rc;
    if (ctx == NULL)
        return -TLSR_E_ARG;
    mode = OSSL(SSL_CTX_ctrl)(ctx, TLSR_SSL_CTRL_GET_SESS_CACHE_MODE, 0, NULL);
    /* NO_INTERNAL_STORE: OpenSSL would otherwise also keep every client session in
     * the context's own (server-side, lookup-by-ID) cache, where nothing uses it. */
    mode |= TLSR_SSL_SESS_CACHE_CLIENT | TLSR_SSL_SESS_CACHE_NO_INTERNAL_STORE;
    OSSL(SSL_CTX_ctrl)(ctx, TLSR_SSL_CTRL_SET_SESS_CACHE_MODE, mode, NULL);
    OSSL(SSL_CTX_sess_set_new_cb)(ctx, new_session_cb);
    return 1;
}

size_t tlsr_client_ctx_cert_der(SSL_CTX *ctx, uint8_t *buf, size_t len)
{
    void *x;
    unsigned char *p = buf;
    int n;

    if (!tlsr_ossl.bound || ctx == NULL || (x = OSSL(SSL_CTX_get0_certificate)(ctx)) == NULL)
        return 0;
    n = OSSL(i2d_X509)(x, NULL);
    if (n <= 0)
        return 0;
    if (buf != NULL && (size_t)n <= len)
        OSSL(i2d_X509)(x, &p);
    return (size_t)n;
}

int tlsr_client_attach(tlsr_client_cache *c, SSL_CTX *ctx, SSL *ssl, const char *ns,
                       const char *host, int port, int level, const tlsr_client_fp *fp,
                       int offer, int64_t now_ms)
{
    size_t nl, hl;
    cc_conn *r;
    SSL_SESSION *sess = NULL;
    int rc;

    if ((rc = ensure_index()) < 0)
        return rc;
    if (c == NULL || ctx == NULL || ssl == NULL || ns == NULL || host == NULL || fp == NULL ||
        port < 0 || port > 65535 || level < TLSR_VERIFY_NONE || level > TLSR_VERIFY_HOSTNAME)
        return -TLSR_E_ARG;
    nl = strlen(ns) + 1;
    hl = strlen(host) + 1;
    if (nl > TLSR_CLIENT_NAME_MAX + 1 || hl > TLSR_CLIENT_NAME_MAX + 1)
        return -TLSR_E_ARG;
    /* Guards against a misread SSL pointer: it must be a connection of ctx. */
    if (OSSL(SSL_get_SSL_CTX)(ssl) != ctx || OSSL(SSL_is_server)(ssl))
        return -TLSR_E_ARG;
    if (OSSL(SSL_get_ex_data)(ssl, conn_index) != NULL)
        return 0;  /* registered already */
    saw_now(c, now_ms);

    pthread_mutex_lock(&c->lock);
    if (ns_disabled(c, ns)) {
        pthread_mutex_unlock(&c->lock);
        count(c, TLSR_CC_DISABLED, 1);
        return 0;
    }
    if (offer)
        sess = take_locked(c, ssl, ns, host, port, level, fp, now_ms);
    pthread_mutex_unlock(&c->lock);

    if ((r = calloc(1, sizeof *r + nl + hl)) == NULL) {
        if (sess != NULL)
            OSSL(SSL_SESSION_free)(sess);
        return -TLSR_E_NOMEM;
    }
    memcpy(r->name, ns, nl);
    memcpy(r->name + nl, host, hl);
    r->ns = r->name;
    r->host = r->name + nl;
    r->port = port;
    r->hostname_checked = level >= TLSR_VERIFY_HOSTNAME;
    r->fp = *fp;
    atomic_fetch_add(&c->refs, 1);
    r->cache = c;
    if (OSSL(SSL_set_ex_data)(ssl, conn_index, r) != 1) {
        if (sess != NULL)
            OSSL(SSL_SESSION_free)(sess);
        conn_release(r);
        return -TLSR_E_OPENSSL;
    }
    count(c, TLSR_CC_CONNECTIONS, 1);
    if (sess == NULL) {
        if (offer)
            count(c, TLSR_CC_MISSES, 1);
        return 0;
    }
    if (OSSL(SSL_set_session)(ssl, sess) != 1) {
        OSSL(SSL_SESSION_free)(sess);
        return -TLSR_E_OPENSSL;
    }
    r->offered = sess;  /* our reference moves to the record */
    count(c, TLSR_CC_OFFERED, 1);
    return 1;
}

int tlsr_client_offered(SSL *ssl)
{
    cc_conn *r;

    if (!tlsr_ossl.bound || conn_index <= 0 || ssl == NULL)
        return -1;
    r = OSSL(SSL_get_ex_data)(ssl, conn_index);
    return r == NULL ? -1 : r->offered != NULL;
}

long tlsr_client_offered_ticket(SSL *ssl, uint8_t *buf, size_t len)
{
    const unsigned char *tick = NULL;
    size_t n = 0;
    cc_conn *r;

    if (!tlsr_ossl.bound || conn_index <= 0 || ssl == NULL ||
        (r = OSSL(SSL_get_ex_data)(ssl, conn_index)) == NULL || r->offered == NULL)
        return -1;
    OSSL(SSL_SESSION_get0_ticket)(r->offered, &tick, &n);
    if (tick == NULL)
        return 0;
    if (buf != NULL)
        memcpy(buf, tick, n < len ? n : len);
    return (long)n;
}

/* ---- the cache object ------------------------------------------------------- */

tlsr_client_cache *tlsr_client_cache_new(uint32_t max_entries, uint32_t tickets_per_host,
                                         uint64_t max_bytes, int manual_clock)
{
    tlsr_client_cache *c;

    if (ensure_index() < 0 || max_entries == 0 || tickets_per_host == 0 ||
        tickets_per_host > TLSR_CLIENT_MAX_TICKETS || max_bytes < TLSR_CLIENT_MIN_BYTES)
        return NULL;
    if ((c = calloc(1, sizeof *c)) == NULL)
        return NULL;
    c->nbuckets = MIN_BUCKETS;
    if ((c->buckets = calloc(c->nbuckets, sizeof *c->buckets)) == NULL ||
        pthread_mutex_init(&c->lock, NULL) != 0) {
        free(c->buckets);
        free(c);
        return NULL;
    }
    atomic_init(&c->refs, 1);
    size_table(c, max_entries);
    c->max_entries = max_entries;
    c->tickets = tickets_per_host;
    c->max_bytes = max_bytes;
    c->ttl_ms = -1;
    c->manual_clock = manual_clock;
    atomic_init(&c->manual_now, tlsr_now_ms());
    pthread_mutex_lock(&registry_lock);
    c->next_cache = registry;
    c->prev_next = &registry;
    if (registry != NULL)
        registry->prev_next = &c->next_cache;
    registry = c;
    pthread_mutex_unlock(&registry_lock);
    return c;
}

void tlsr_client_cache_release(tlsr_client_cache *c)
{
    size_t i;

    if (c == NULL || atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    pthread_mutex_lock(&registry_lock);
    *c->prev_next = c->next_cache;
    if (c->next_cache != NULL)
        c->next_cache->prev_next = c->prev_next;
    pthread_mutex_unlock(&registry_lock);
    while (c->mru != NULL)
        host_free(c, c->mru, -1);
    for (i = 0; i < c->ndisabled; i++)
        free(c->disabled[i]);
    free(c->disabled);
    free(c->buckets);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

int tlsr_client_cache_configure(tlsr_client_cache *c, uint32_t max_entries, uint64_t max_bytes,
                                int64_t ttl_ms, int64_t now_ms)
{
    if (c == NULL || max_entries == 0 || max_bytes < TLSR_CLIENT_MIN_BYTES)
        return -TLSR_E_ARG;
    saw_now(c, now_ms);
    pthread_mutex_lock(&c->lock);
    c->max_entries = max_entries;
    c->max_bytes = max_bytes;
    c->ttl_ms = ttl_ms < 0 ? -1 : ttl_ms;
    size_table(c, max_entries);
    evict_to(c, max_entries);
    evict_bytes(c, 0, NULL);
    pthread_mutex_unlock(&c->lock);
    return 1;
}

int tlsr_client_cache_disable(tlsr_client_cache *c, const char *ns, int disabled)
{
    cc_host *e, *older;
    size_t i;
    char *copy, **grown;

    if (c == NULL || ns == NULL || strlen(ns) > TLSR_CLIENT_NAME_MAX)
        return -TLSR_E_ARG;
    pthread_mutex_lock(&c->lock);
    for (i = 0; i < c->ndisabled && strcmp(c->disabled[i], ns) != 0; i++)
        ;
    if (disabled && i == c->ndisabled) {
        copy = strdup(ns);
        grown = copy ? realloc(c->disabled, (c->ndisabled + 1) * sizeof *grown) : NULL;
        if (grown == NULL) {
            free(copy);
            pthread_mutex_unlock(&c->lock);
            return -TLSR_E_NOMEM;
        }
        c->disabled = grown;
        c->disabled[c->ndisabled++] = copy;
        for (e = c->mru; e != NULL; e = older) {
            older = e->older;
            if (strcmp(e->ns, ns) == 0)
                host_free(c, e, -1);
        }
    } else if (!disabled && i < c->ndisabled) {
        free(c->disabled[i]);
        c->disabled[i] = c->disabled[--c->ndisabled];
    }
    pthread_mutex_unlock(&c->lock);
    return 1;
}

int tlsr_client_cache_is_disabled(tlsr_client_cache *c, const char *ns)
{
    int d;

    if (c == NULL || ns == NULL)
        return -TLSR_E_ARG;
    pthread_mutex_lock(&c->lock);
    d = ns_disabled(c, ns);
    pthread_mutex_unlock(&c->lock);
    return d;
}

int tlsr_client_cache_purge(tlsr_client_cache *c, int64_t now_ms)
{
    cc_host *e, *older;
    uint32_t i;
    int n = 0;

    if (c == NULL)
        return -TLSR_E_ARG;
    saw_now(c, now_ms);
    pthread_mutex_lock(&c->lock);
    for (e = c->mru; e != NULL; e = older) {
        older = e->older;
        for (i = 0; i < e->nsess;) {
            cc_sess *s = &e->sess[i];
            if (now_ms >= tlsr_client_deadline(s->stored_ms, s->expires_ms, c->ttl_ms)) {
                sess_drop(c, e, i, TLSR_CC_EXPIRED);
                n++;
            } else {
                i++;
            }
        }
        if (e->nsess == 0)
            host_free(c, e, -1);
    }
    pthread_mutex_unlock(&c->lock);
    return n;
}

void tlsr_client_cache_clear(tlsr_client_cache *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    while (c->mru != NULL)
        host_free(c, c->mru, -1);
    pthread_mutex_unlock(&c->lock);
}

void tlsr_client_stats(tlsr_client_cache *c, uint64_t *out, size_t n)
{
    size_t i;

    for (i = 0; i < n && i < TLSR_CC_NCOUNTERS; i++)
        out[i] = c == NULL ? 0 : atomic_load_explicit(&c->counters[i], memory_order_relaxed);
}

void tlsr_client_cache_size(tlsr_client_cache *c, size_t *servers, size_t *sessions)
{
    *servers = *sessions = 0;
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->lock);
    *servers = c->nhosts;
    *sessions = c->nsessions;
    pthread_mutex_unlock(&c->lock);
}

uint64_t tlsr_client_cache_bytes(tlsr_client_cache *c)
{
    uint64_t n;

    if (c == NULL)
        return 0;
    pthread_mutex_lock(&c->lock);
    n = c->bytes;
    pthread_mutex_unlock(&c->lock);
    return n;
}

/* ---- snapshot and insert (save/load; off the hot path) ---------------------- */

int tlsr_client_cache_snapshot(tlsr_client_cache *c, tlsr_client_entry *out, size_t max)
{
    cc_host *e;
    uint32_t i;
    size_t n = 0;

    if (c == NULL || (out == NULL && max > 0))
        return -TLSR_E_ARG;
    pthread_mutex_lock(&c->lock);
    for (e = c->mru; e != NULL && n < max; e = e->older)
        for (i = 0; i < e->nsess && n < max; i++, n++) {
            const cc_sess *s = &e->sess[i];
            tlsr_client_entry *o = &out[n];
            memset(o, 0, sizeof *o);
            strcpy(o->ns, e->ns);
            strcpy(o->host, e->host);
            o->port = e->port;
            o->protocol = s->protocol;
            o->level = s->level;
            o->single_use = s->single_use;
            o->ems = s->ems;
            o->stored_ms = s->stored_ms;
            o->expires_ms = s->expires_ms;
            o->fp = s->fp;
            o->session = s->sess;
            OSSL(SSL_SESSION_up_ref)(s->sess);
        }
    pthread_mutex_unlock(&c->lock);
    return (int)n;
}

void tlsr_client_session_release(SSL_SESSION *s)
{
    if (s != NULL && tlsr_ossl.bound)
        OSSL(SSL_SESSION_free)(s);
}

size_t tlsr_client_session_der(SSL_SESSION *s, uint8_t *buf, size_t len)
{
    unsigned char *p = buf;
    int n;

    if (!tlsr_ossl.bound || s == NULL || (n = OSSL(i2d_SSL_SESSION)(s, NULL)) <= 0)
        return 0;
    if (buf != NULL && (size_t)n <= len && OSSL(i2d_SSL_SESSION)(s, &p) != n)
        return 0;
    return (size_t)n;
}

int tlsr_client_cache_insert(tlsr_client_cache *c, const tlsr_client_entry *e,
                             const uint8_t *der, size_t len, int64_t now_ms)
{
    const unsigned char *p = der;
    SSL_SESSION *sess;
    int64_t ttl_ms;
    cc_sess s;
    int ok;

    if (c == NULL || e == NULL || der == NULL || len == 0 || len > (1u << 20) ||
        memchr(e->ns, 0, sizeof e->ns) == NULL || memchr(e->host, 0, sizeof e->host) == NULL ||
        e->port < 0 || e->port > 65535 || e->level < TLSR_VERIFY_NONE ||
        e->level > TLSR_VERIFY_HOSTNAME)
        return -TLSR_E_ARG;
    saw_now(c, now_ms);
    pthread_mutex_lock(&c->lock);
    ttl_ms = c->ttl_ms;
    pthread_mutex_unlock(&c->lock);
    if (now_ms >= tlsr_client_deadline(e->stored_ms, e->expires_ms, ttl_ms))
        return 0;
    sess = OSSL(d2i_SSL_SESSION)(NULL, &p, (long)len);
    if (sess == NULL) {
        OSSL(ERR_clear_error)();
        return -TLSR_E_OPENSSL;
    }
    if (p != der + len || !OSSL(SSL_SESSION_is_resumable)(sess)) {
        OSSL(SSL_SESSION_free)(sess);
        return 0;
    }
    s.sess = sess;
    s.stored_ms = e->stored_ms;
    s.expires_ms = e->expires_ms;
    s.level = e->level;
    s.protocol = OSSL(SSL_SESSION_get_protocol_version)(sess);
    s.single_use = s.protocol >= TLSR_TLS1_3_VERSION;
    s.ems = e->ems != 0;
    s.bytes = sess_charge(NULL, sess);
    s.fp = e->fp;
    pthread_mutex_lock(&c->lock);
    ok = store_locked(c, e->ns, e->host, e->port, &s);
    pthread_mutex_unlock(&c->lock);
    if (!ok) {
        OSSL(SSL_SESSION_free)(sess);
        return 0;
    }
    count(c, TLSR_CC_LOADED, 1);
    return 1;
}

#ifdef TLSR_TEST_HOOKS
#include "testhooks.h"
/* Built only into the tests' module (see testhooks.h). */
int tlsr_client_debug_hold_lock(tlsr_client_cache *c, unsigned ms)
{
    struct timespec pause = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    pthread_mutex_lock(&c->lock);
    while (nanosleep(&pause, &pause) != 0 && errno == EINTR)
        ;
    pthread_mutex_unlock(&c->lock);
    return 0;
}
#endif /* TLSR_TEST_HOOKS */
