/*
 * client.h - the client session cache: its C contract (see client.c).
 *
 * Sessions are kept as OpenSSL SSL_SESSION objects, keyed by (namespace, server
 * hostname, port), and set on new connections with SSL_set_session: no DER round
 * trip on the hot path. The cache is filled by OpenSSL's client new-session
 * callback (TLS 1.3 tickets included) and, as a fallback, when a connection is
 * freed. The block between the CDEF markers is part of the cffi cdef.
 */
#ifndef TLSR_CLIENT_H
#define TLSR_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include "tlsresume.h"

/* CDEF-BEGIN */
#define TLSR_CLIENT_NAME_MAX 255    /* longest namespace or hostname, in bytes */
#define TLSR_CLIENT_FP_LEN 32       /* SHA-256 fingerprints */
#define TLSR_CLIENT_MAX_TICKETS 64  /* highest tickets_per_host */
#define TLSR_CLIENT_MAX_LIFE_MS 604800000 /* 7 days: RFC 8446's ticket lifetime cap */

/* How a session's server was authenticated (and how a context wants it). */
#define TLSR_VERIFY_NONE 0          /* certificate not verified */
#define TLSR_VERIFY_CHAIN 1         /* chain verified, hostname not checked */
#define TLSR_VERIFY_HOSTNAME 2      /* chain verified and hostname checked */

/* Counters (indices into tlsr_client_stats' output). */
#define TLSR_CC_OFFERED 0           /* sessions set on a new connection */
#define TLSR_CC_RESUMED 1           /* offered and accepted by the server */
#define TLSR_CC_REJECTED 2          /* offered, full handshake instead */
#define TLSR_CC_STORED 3            /* sessions put into the cache */
#define TLSR_CC_EVICTED 4           /* dropped for room (max_entries, tickets_per_host) */
#define TLSR_CC_EXPIRED 5           /* dropped because their lifetime or TTL ran out */
#define TLSR_CC_REPLACED 6          /* TLS 1.2 sessions superseded by a newer one */
#define TLSR_CC_MISSES 7            /* connections with nothing to offer */
#define TLSR_CC_UNSAFE 8            /* lookups that skipped a session under the safety rule */
#define TLSR_CC_AT_CLOSE 9          /* sessions captured when the connection was freed */
#define TLSR_CC_UNUSABLE 10         /* dropped: OpenSSL marked them not resumable */
#define TLSR_CC_DISABLED 11         /* connections in a disabled namespace */
#define TLSR_CC_LOADED 12           /* sessions inserted from a saved file */
#define TLSR_CC_INCOMPLETE 13       /* offered, but the handshake never finished */
#define TLSR_CC_CONNECTIONS 14      /* connections registered with the cache */
#define TLSR_CC_NCOUNTERS 15

typedef struct tlsr_client_cache tlsr_client_cache;

/* What a context trusts and who it is, as SHA-256 fingerprints computed by the
 * Python side: the trust configuration (CA set, verify flags, CA paths) and the
 * client certificate (all zero: none). */
typedef struct {
    uint8_t trust[32];
    uint8_t ident[32];
} tlsr_client_fp;

/* One cached session as seen from outside (snapshot and insert). */
typedef struct {
    char ns[256];
    char host[256];
    int32_t port;
    int32_t protocol;         /* e.g. 0x0303 (TLS 1.2), 0x0304 (TLS 1.3) */
    int32_t level;            /* TLSR_VERIFY_* of the connection that made it */
    int32_t single_use;       /* TLS 1.3 ticket: handed out once */
    int64_t stored_ms;        /* when the cache got it (cache clock) */
    int64_t expires_ms;       /* end of its own lifetime (cache clock) */
    tlsr_client_fp fp;
    SSL_SESSION *session;     /* snapshot: a reference, release it */
} tlsr_client_entry;

/* Make a cache. manual_clock: sessions captured inside OpenSSL are stamped with
 * the latest now_ms passed to any function below instead of the wall clock (for
 * tests that drive time). Returns NULL without memory or if the core is unbound. */
tlsr_client_cache *tlsr_client_cache_new(uint32_t max_entries, uint32_t tickets_per_host,
                                         int manual_clock);
/* Drop the caller's reference; the cache lives on while connections hold theirs. */
void tlsr_client_cache_release(tlsr_client_cache *c);
/* Change the limits: max_entries servers (evicting the least recently used) and
 * ttl_ms (< 0: none, sessions live as long as their own lifetime). */
int tlsr_client_cache_configure(tlsr_client_cache *c, uint32_t max_entries, int64_t ttl_ms,
                                int64_t now_ms);
/* Turn a namespace off (its sessions are dropped; nothing is stored or offered
 * under it) or back on. */
int tlsr_client_cache_disable(tlsr_client_cache *c, const char *ns, int disabled);
int tlsr_client_cache_is_disabled(tlsr_client_cache *c, const char *ns);
/* Drop expired sessions; returns how many. */
int tlsr_client_cache_purge(tlsr_client_cache *c, int64_t now_ms);
void tlsr_client_cache_clear(tlsr_client_cache *c);
void tlsr_client_stats(tlsr_client_cache *c, uint64_t *out, size_t n);
/* Current number of servers and of sessions. */
void tlsr_client_cache_size(tlsr_client_cache *c, size_t *servers, size_t *sessions);

/* Turn on client session caching on ctx: client cache mode (server bits kept,
 * OpenSSL's internal store off) and tlsresume's new-session callback. Idempotent. */
int tlsr_client_ctx_enable(SSL_CTX *ctx);
/* DER of ctx's client certificate into buf; returns its full length (0: none). */
size_t tlsr_client_ctx_cert_der(SSL_CTX *ctx, uint8_t *buf, size_t len);

/* Register a new, not yet started client connection ssl (made from ctx) with the
 * cache under (ns, host, port), and if offer, set the most recent usable session
 * on it. level is what ctx demands (TLSR_VERIFY_*), fp its fingerprints.
 * Returns 1 if a session was offered, 0 if not (nothing usable, or the namespace
 * is disabled), -TLSR_E_ARG if ssl does not belong to ctx. */
int tlsr_client_attach(tlsr_client_cache *c, SSL_CTX *ctx, SSL *ssl, const char *ns,
                       const char *host, int port, int level, const tlsr_client_fp *fp,
                       int offer, int64_t now_ms);
/* Whether tlsresume offered a session to this connection: 1, 0, or -1 if the
 * connection is not registered with a cache. */
int tlsr_client_offered(SSL *ssl);
/* The ticket of the session tlsresume offered to this connection, copied into buf
 * (up to len bytes); returns its full length, 0 for a session without a ticket,
 * -1 if no session was offered. */
long tlsr_client_offered_ticket(SSL *ssl, uint8_t *buf, size_t len);

/* Copy up to max entries, servers most recently used first and each server's
 * sessions newest first; every entry holds a session reference. Returns the
 * number copied. */
int tlsr_client_cache_snapshot(tlsr_client_cache *c, tlsr_client_entry *out, size_t max);
void tlsr_client_session_release(SSL_SESSION *s);
/* Serialise a session (i2d_SSL_SESSION); returns its full length, 0 on failure. */
size_t tlsr_client_session_der(SSL_SESSION *s, uint8_t *buf, size_t len);
/* Decode der and insert it under e's key and metadata as the newest session of
 * its server. Returns 1, 0 if refused (expired, unusable, disabled), -TLSR_E_*. */
int tlsr_client_cache_insert(tlsr_client_cache *c, const tlsr_client_entry *e,
                             const uint8_t *der, size_t len, int64_t now_ms);

/* Policy, as pure functions (the cache enforces exactly these). */
/* Milliseconds a session still has at now_ms, from its own start time and timeout
 * (seconds) and the server's ticket lifetime hint (seconds, 0: none), capped at
 * TLSR_CLIENT_MAX_LIFE_MS. */
int64_t tlsr_client_session_life(int64_t now_ms, int64_t time_s, int64_t timeout_s,
                                 int64_t hint_s);
/* When a session stored at stored_ms whose own lifetime ends at expires_ms stops
 * being offered under a cache TTL of ttl_ms (< 0: none). */
int64_t tlsr_client_deadline(int64_t stored_ms, int64_t expires_ms, int64_t ttl_ms);
/* May a session made at verification level s_level with fingerprints s_fp be
 * offered to a context demanding c_level with fingerprints c_fp? */
int tlsr_client_may_offer(int s_level, const tlsr_client_fp *s_fp, int c_level,
                          const tlsr_client_fp *c_fp);
/* CDEF-END */

#endif /* TLSR_CLIENT_H */
