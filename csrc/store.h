/*
 * store.h - the server-side session store in shared memory (session IDs and
 * TLS 1.3 stateful tickets), installed through OpenSSL's session callbacks.
 */
#ifndef TLSR_STORE_H
#define TLSR_STORE_H

#include "tlsresume.h"

/* CDEF-BEGIN */
#define TLSR_STORE_SLOT_SIZE 256
#define TLSR_STORE_MAX_ID 32
#define TLSR_STORE_MAX_DER 16384

/* store flags */
#define TLSR_STORE_SINGLE_USE 1     /* a TLS 1.3 stateful ticket resumes once */

/* store counters */
#define TLSR_SC_LOOKUPS 0
#define TLSR_SC_HITS 1
#define TLSR_SC_MISSES 2
#define TLSR_SC_STORES 3
#define TLSR_SC_EVICTIONS 4
#define TLSR_SC_EXPIRATIONS 5
#define TLSR_SC_OVERSIZE 6
#define TLSR_SC_ERRORS 7
#define TLSR_SC_REMOVALS 8          /* fatal alerts, explicit removes */
#define TLSR_SC_KEPT_ON_UNCLEAN_CLOSE 9
#define TLSR_SC_CONSUMED 10         /* single-use tickets taken */
#define TLSR_SC_REPAIRS 11          /* index rebuilt after a crash or corruption */
#define TLSR_SC_LOCK_TIMEOUTS 12
#define TLSR_SC_REMOTE_HITS 13      /* local misses served by the remote tier */
#define TLSR_SC_REMOTE_MISSES 14
#define TLSR_STORE_NCOUNTERS 15

typedef struct tlsr_store tlsr_store;

typedef struct {
    uint64_t size;            /* bytes mapped */
    uint32_t slots;           /* capacity in slots */
    uint32_t used_slots;
    uint32_t entries;
    uint32_t flags;
    int32_t lock_timeout_us;
    int32_t named;
    int32_t reinitialised;    /* attach found a bad region and rebuilt it */
} tlsr_store_meta;

/* Create (name NULL: anonymous, shared with children forked later) or attach a
 * store. tlsr_store_open with create=1 makes it if missing; a named region that
 * is corrupt or of another version is reinitialised (meta.reinitialised = 1). */
tlsr_store *tlsr_store_open(const char *name, uint64_t size, uint32_t flags, int create,
                            int *err);
void tlsr_store_release(tlsr_store *st);
int tlsr_store_unlink(const char *name);

/* Direct access (tests, tools, and the Python-side benchmarks). now_ms is passed
 * in so expiry can be tested with time under control.
 * put: 1 stored, 0 skipped (oversize), -TLSR_E_*.
 * get: DER length copied into buf (up to len), 0 if missing/expired, -TLSR_E_*. */
int tlsr_store_put(tlsr_store *st, const uint8_t *id, size_t id_len, const uint8_t *der,
                   size_t der_len, int64_t expires_ms, int64_t now_ms);
int tlsr_store_get(tlsr_store *st, const uint8_t *id, size_t id_len, uint8_t *buf,
                   size_t len, int consume, int64_t now_ms);
int tlsr_store_remove(tlsr_store *st, const uint8_t *id, size_t id_len);
int tlsr_store_clear(tlsr_store *st);
int tlsr_store_get_meta(tlsr_store *st, tlsr_store_meta *out);
void tlsr_store_stats(tlsr_store *st, uint64_t *out, size_t n);
int tlsr_store_set_lock_timeout(tlsr_store *st, int32_t microseconds);
/* Check every entry and the index; rebuild if anything is off. Returns the
 * number of entries dropped, or -TLSR_E_*. */
int tlsr_store_verify(tlsr_store *st);
/* Testing hook: die inside a put, leaving the lock held and a half-linked entry. */
int tlsr_store_debug_die_in_put(tlsr_store *st, const uint8_t *id, size_t id_len);

/* A second tier behind the store (Redis, ...), per process. The callbacks run
 * inside handshakes: get on a local miss (it must bound its own wait and return
 * the DER length copied into buf, 0 for a miss), put after a local store and
 * remove after a fatal alert (both must not block: queue the work). ctx is passed
 * back untouched. Passing NULL functions removes the tier. Once this returns 0, no
 * callback is still inside the previous tier (it waits up to 5 s for those that
 * are), so the caller may free the previous ctx; -TLSR_E_BUSY: one still was. */
typedef int (*tlsr_remote_get_fn)(void *ctx, const uint8_t *id, size_t id_len, uint8_t *buf,
                                  size_t len);
typedef void (*tlsr_remote_put_fn)(void *ctx, const uint8_t *id, size_t id_len,
                                   const uint8_t *der, size_t der_len, int64_t expires_ms);
typedef void (*tlsr_remote_remove_fn)(void *ctx, const uint8_t *id, size_t id_len);
int tlsr_store_set_remote(tlsr_store *st, tlsr_remote_get_fn get, tlsr_remote_put_fn put,
                          tlsr_remote_remove_fn remove, void *ctx);

/* Install on a server context: new/get/remove callbacks, an info callback that
 * evicts on fatal alerts, OpenSSL's internal cache turned off. */
int tlsr_ctx_use_store(SSL_CTX *ctx, tlsr_store *st);
/* Micro benchmark: n puts of der_len-byte sessions, then n gets, each timed;
 * medians in nanoseconds. The store should hold n entries without evicting. */
int tlsr_bench_store(tlsr_store *st, int n, int der_len, int64_t *put_median_ns,
                     int64_t *get_median_ns);
/* Measure a typical session: i2d size of the server session of a connection. */
int tlsr_session_der_size(SSL_SESSION *sess);
/* CDEF-END */

#endif /* TLSR_STORE_H */
