/*
 * tlsresume.h - the C contract of the tlsresume core.
 *
 * Everything the Python package may call is declared here and nowhere else; every
 * exported name starts with "tlsr_". OpenSSL types stay opaque: the core never
 * includes OpenSSL headers and links no OpenSSL library. It resolves libssl and
 * libcrypto at run time from the copy that CPython's _ssl module already loaded
 * (see ossl.c), so the SSL_CTX and SSL objects Python hands us are understood by
 * exactly the code that made them.
 *
 * This header is also the cffi cdef of the product module (csrc/build_core.py
 * reads the block between the CDEF markers), so it must stay plain C that cffi can
 * parse. Prototypes the C files share among themselves are in internal.h; the
 * benchmarks (csrc/bench/) and the test hooks (testhooks.h) are other modules.
 */
#ifndef TLSRESUME_H
#define TLSRESUME_H

#include <stddef.h>
#include <stdint.h>

/* CDEF-BEGIN */
typedef struct ssl_ctx_st SSL_CTX;
typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;

/* ---- binding (ossl.c) ------------------------------------------------------ */

/* Resolve every OpenSSL function the core uses from the already-loaded libraries
 * at these paths (NULL: search the global namespace). Never loads a library.
 * Returns 0 and fills err (NUL-terminated) on failure, 1 on success. Idempotent
 * once it has succeeded. */
int tlsr_binding_init(const char *libssl_path, const char *libcrypto_path,
                      char *err, size_t errlen);
unsigned long tlsr_openssl_version_num(void);
/* Drain OpenSSL's error queue of this thread into buf ("" if empty). */
void tlsr_drain_errors(char *buf, size_t len);

/* ---- key ring (keyring.c) -------------------------------------------------- */

#define TLSR_NAME_LEN 16
#define TLSR_RING_SLOTS 16
#define TLSR_RING_NAME_MAX 200

/* key roles */
#define TLSR_KEY_FREE 0
#define TLSR_KEY_NEXT 1
#define TLSR_KEY_CURRENT 2
#define TLSR_KEY_RETIRED 3

/* ring flags */
#define TLSR_RING_AUTO_ROTATE 1

/* ring counters (indices into tlsr_ring_stats' output) */
#define TLSR_RC_TICKETS_ISSUED 0
#define TLSR_RC_RESUMED_CURRENT 1
#define TLSR_RC_RESUMED_OLDER_KEY 2
#define TLSR_RC_REJECTED_UNKNOWN 3
#define TLSR_RC_REJECTED_EXPIRED 4
#define TLSR_RC_ROTATIONS 5
#define TLSR_RC_ERRORS 6
#define TLSR_RC_LOCK_RECOVERIES 7
/* The ticket callback found the ticket's key (CURRENT / another role) and handed
 * it to OpenSSL, which then checks the HMAC and the session: not yet a resumption.
 * TLSR_RC_RESUMED_* count handshakes that finished resumed on such a ticket. */
#define TLSR_RC_KEY_FOUND_CURRENT 8
#define TLSR_RC_KEY_FOUND_OLDER_KEY 9
/* Repairs of damage to the region (bytes written over it from outside): a lock
 * word naming no live owner re-initialised; a sequence left odd made even; state
 * fields out of bounds reset. */
#define TLSR_RC_REPAIRED_LOCK 10
#define TLSR_RC_REPAIRED_SEQUENCE 11
#define TLSR_RC_REPAIRED_STATE 12
/* No ticket issued: the current key has encrypted for its period and the window
 * beyond (the ring could not rotate), and issuing more would break the
 * forward-secrecy bound. */
#define TLSR_RC_WITHHELD_STALE_KEY 13
#define TLSR_RING_NCOUNTERS 14

/* error codes returned (negated) by the ring and region functions */
#define TLSR_OK 0
#define TLSR_E_NOMEM 1
#define TLSR_E_SYS 2        /* errno holds the cause */
#define TLSR_E_EXISTS 3     /* named region already exists */
#define TLSR_E_NOTFOUND 4   /* named region does not exist */
#define TLSR_E_BADREGION 5  /* wrong magic, version or size */
#define TLSR_E_NOTOWNER 6   /* region (or its directory) owned by another user, or wrong mode */
#define TLSR_E_BUSY 7       /* lock not obtained in time */
#define TLSR_E_ARG 8
#define TLSR_E_OPENSSL 9
#define TLSR_E_NOTREADY 10  /* region never finished initialising */
#define TLSR_E_UNBOUND 11   /* tlsr_binding_init has not succeeded */

/* ---- where named regions live (region.c) ----------------------------------- */

/* Why a directory cannot hold named regions (tlsr_dir_status.reason). */
#define TLSR_DIR_OK 0
#define TLSR_DIR_MISSING 1     /* does not exist (or its parent does not) */
#define TLSR_DIR_NOTDIR 2      /* a symlink, or not a directory */
#define TLSR_DIR_OWNER 3       /* owned by another user */
#define TLSR_DIR_MODE 4        /* not mode 0700 */
#define TLSR_DIR_NOTTMPFS 5    /* not on tmpfs (key material must stay off disk) */
#define TLSR_DIR_SYS 6         /* a system call failed; err holds errno */

typedef struct {
    int32_t reason;           /* TLSR_DIR_* */
    int32_t err;              /* errno for TLSR_DIR_SYS / MISSING */
    uint32_t uid;             /* owner found */
    uint32_t mode;            /* permission bits found */
    int64_t fstype;           /* statfs f_type found */
} tlsr_dir_status;

/* Open the absolute path (with create: mkdir it 0700 first if missing) with
 * O_DIRECTORY|O_NOFOLLOW and check the descriptor: a directory owned by the
 * effective uid, mode exactly 0700, on tmpfs. With adopt, it becomes this
 * process's directory of named regions (inherited by forked children): every
 * later create, attach and unlink of a named region is an openat/unlinkat
 * relative to that descriptor, and region files must be regular, ours, 0600.
 * Without adopt nothing changes, and a directory that is right but not on tmpfs
 * returns 0 with reason TLSR_DIR_NOTTMPFS. Returns 0, or -TLSR_E_* with
 * out->reason saying why. */
int tlsr_dir_check(const char *path, int create, int adopt, tlsr_dir_status *out);

typedef struct tlsr_ring tlsr_ring;

/* One key as seen from outside: secrets only when asked for. */
typedef struct {
    uint8_t name[16];
    uint8_t hmac[32];
    uint8_t aes[32];
    uint32_t secret_len;      /* 16 (48-byte key, AES-128) or 32 (80-byte key, AES-256) */
    uint32_t role;            /* TLSR_KEY_* */
    int64_t created_ms;
    int64_t activated_ms;     /* when it started encrypting (0: never) */
    int64_t retired_ms;       /* when it stopped encrypting (0: not retired) */
} tlsr_key_info;

typedef struct {
    int64_t period_ms;
    int64_t window_ms;
    int64_t due_ms;           /* when a writer next has work (rotation or a key to wipe) */
    uint64_t generation;      /* bumped by every change of keys */
    uint32_t flags;
    uint32_t nkeys;
    int32_t mlocked;          /* this process locked the region in RAM */
    int32_t named;
} tlsr_ring_meta;

/* Create a ring in a new region. name == NULL: anonymous MAP_SHARED memory that
 * children forked later share. Otherwise the file "tlsresume.ring.<name>", mode
 * 0600, created exclusively in the directory tlsr_dir_check adopted. The ring starts with a current and a next key.
 * On failure returns NULL and sets *err to a TLSR_E_* code. */
tlsr_ring *tlsr_ring_create(const char *name, int64_t period_ms, int64_t window_ms,
                            uint32_t flags, int64_t now_ms, int *err);
/* Attach to an existing named ring. */
tlsr_ring *tlsr_ring_attach(const char *name, int *err);
int tlsr_ring_unlink(const char *name);
void tlsr_ring_release(tlsr_ring *ring);
/* Lock the ring's pages in RAM in this process (again: mlock does not survive
 * fork). Returns 1 if locked, 0 if the OS refused (RLIMIT_MEMLOCK). */
int tlsr_ring_relock(tlsr_ring *ring);

/* Writer operations take the region's lock (waiting at most timeout_ms).
 * tlsr_ring_maintain rotates if due (or if force) and wipes keys past their
 * acceptance window. Returns 1 if keys changed, 0 if nothing was due, -TLSR_E_*. */
int tlsr_ring_maintain(tlsr_ring *ring, int64_t now_ms, int force, int timeout_ms);
/* Replace every key (keys wiped unless still present). Exactly one key must be
 * TLSR_KEY_CURRENT, at most one TLSR_KEY_NEXT. */
int tlsr_ring_set_keys(tlsr_ring *ring, const tlsr_key_info *keys, size_t n,
                       int64_t period_ms, int64_t window_ms, uint32_t flags,
                       int timeout_ms);
/* Copy up to max keys (ordered: retired oldest first, current, next) into out.
 * Secrets are zeroed unless with_secrets. Returns the count or -TLSR_E_*. */
int tlsr_ring_get_keys(tlsr_ring *ring, tlsr_key_info *out, size_t max, int with_secrets);
int tlsr_ring_get_meta(tlsr_ring *ring, tlsr_ring_meta *out);
void tlsr_ring_stats(tlsr_ring *ring, uint64_t *out, size_t n);
/* Was this key name seen by the ring, and in which role now: a TLSR_KEY_* role,
 * -1 if it was wiped (expired), -2 if never seen. For tests and check tools. */
int tlsr_ring_classify(tlsr_ring *ring, const uint8_t *name, int64_t now_ms);

/* ---- contexts (ctx.c) ------------------------------------------------------ */

/* Make ring the ticket key source of ctx (ticket key callback + one ex_data
 * slot holding a reference to the ring). Returns 1 or -TLSR_E_*. */
int tlsr_ctx_use_ring(SSL_CTX *ctx, tlsr_ring *ring);
/* Install one fixed 80-byte key through OpenSSL's own ticket path
 * (SSL_CTX_set_tlsext_ticket_keys), removing a ring if one was installed. */
int tlsr_ctx_use_static_key(SSL_CTX *ctx, const uint8_t *key80);
/* Remove whatever tlsresume installed on ctx (OpenSSL's own keys take over). */
int tlsr_ctx_reset(SSL_CTX *ctx);
/* Sanity probe used when reading the SSL_CTX pointer out of a Python object. */
uint64_t tlsr_ctx_options(SSL_CTX *ctx);
/* Session lifetime in seconds (also the ticket lifetime hint). CPython has no
 * API for it and fixes 7200 s. Returns the previous value. */
long tlsr_ctx_set_timeout(SSL_CTX *ctx, long seconds);
long tlsr_ctx_get_timeout(SSL_CTX *ctx);
/* 1 if ctx carries a tlsresume ring. */
int tlsr_ctx_has_ring(SSL_CTX *ctx);

/* SHA-256 over what decides whether ctx admits a peer: verify mode, verify flags,
 * depth and hostflags, and the SHA-256 of every certificate and CRL in ctx's
 * trust store (CA or not, sorted, so load order does not matter). Flags:
 * TLSR_DIGEST_OWN_CHAIN adds ctx's own certificate and chain (who the context
 * is); TLSR_DIGEST_STORE_IF_VERIFYING leaves the store out when ctx verifies
 * nobody (it then admits everyone, whatever it trusts). Returns 1 or -TLSR_E_*. */
#define TLSR_DIGEST_OWN_CHAIN 1
#define TLSR_DIGEST_STORE_IF_VERIFYING 2
int tlsr_ctx_trust_digest(SSL_CTX *ctx, unsigned int flags, uint8_t *out);

/* Session ID context of the connections on ctx (set from a ClientHello callback,
 * before any session is looked up). TLSR_SID_DERIVED: SHA-256 over the context's
 * admission digest (with its own chain), data (a service name, may be empty) and
 * the client's server_name; TLSR_SID_EXPLICIT: data verbatim (1-32 bytes), for
 * joining servers that are not tlsresume; TLSR_SID_OFF: leave OpenSSL's value.
 * Returns 1 or -TLSR_E_*. */
#define TLSR_SID_OFF 0
#define TLSR_SID_DERIVED 1
#define TLSR_SID_EXPLICIT 2
#define TLSR_SID_MAX 256
int tlsr_ctx_set_sid(SSL_CTX *ctx, int mode, const uint8_t *data, size_t len);
/* The sid_ctx a connection without server_name gets on ctx now (out: 32 bytes).
 * Returns its length, 0 if tlsresume does not set one, or -TLSR_E_*. */
int tlsr_ctx_session_id_context(SSL_CTX *ctx, uint8_t *out);

/* Sessions as Python hands them to us (for inspection tools). */
long tlsr_session_time(SSL_SESSION *sess);
/* Copy the ticket of a client-side session into buf; returns its full length
 * (0: no ticket). */
size_t tlsr_session_ticket(SSL_SESSION *sess, uint8_t *buf, size_t len);

/* ---- session store (store.c) ---------------------------------------------- */
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
#define TLSR_SC_REMOVALS 8          /* proven fatal alerts, explicit removes */
#define TLSR_SC_KEPT_ON_UNCLEAN_CLOSE 9
#define TLSR_SC_CONSUMED 10         /* single-use tickets taken */
#define TLSR_SC_REPAIRS 11          /* index rebuilt after a crash or corruption */
#define TLSR_SC_LOCK_TIMEOUTS 12
#define TLSR_SC_REMOTE_HITS 13      /* local misses served by the remote tier */
#define TLSR_SC_REMOTE_MISSES 14
#define TLSR_SC_KEPT_ON_UNPROVEN_ALERT 15 /* fatal alerts nobody authenticated */
#define TLSR_STORE_NCOUNTERS 16

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
    int32_t mlocked;          /* this process locked the region in RAM */
} tlsr_store_meta;

/* Create (name NULL: anonymous, shared with children forked later) or attach a
 * store. tlsr_store_open with create=1 makes it if missing; a named region that
 * is corrupt or of another version is reinitialised (meta.reinitialised = 1). */
tlsr_store *tlsr_store_open(const char *name, uint64_t size, uint32_t flags, int create,
                            int *err);
void tlsr_store_release(tlsr_store *st);
/* As tlsr_ring_relock, for the store's pages (sessions hold master secrets). */
int tlsr_store_relock(tlsr_store *st);
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
/* Callbacks still inside tiers that are no longer the current one (e.g. after
 * tlsr_store_set_remote returned -TLSR_E_BUSY): while this is not 0, the ctx of a
 * replaced tier may still be in use and must not be freed. */
long tlsr_store_remote_draining(tlsr_store *st);

/* Install on a server context: new/get/remove callbacks, an info callback that
 * evicts on fatal alerts from a party that proved it holds the session's keys
 * (see info_cb in store.c), OpenSSL's internal cache turned off. */
int tlsr_ctx_use_store(SSL_CTX *ctx, tlsr_store *st);
/* Measure a typical session: i2d size of the server session of a connection. */
int tlsr_session_der_size(SSL_SESSION *sess);

/* ---- client session cache (client.c) --------------------------------------- */
#define TLSR_CLIENT_NAME_MAX 255    /* longest namespace or hostname, in bytes */
#define TLSR_CLIENT_FP_LEN 32       /* SHA-256 fingerprints */
#define TLSR_CLIENT_MAX_TICKETS 64  /* highest tickets_per_host */
#define TLSR_CLIENT_MAX_LIFE_MS 604800000 /* 7 days: RFC 8446's ticket lifetime cap */
#define TLSR_CLIENT_SESS_OVERHEAD 1024 /* bytes charged per session beyond its encodings */
#define TLSR_CLIENT_MIN_BYTES 65536      /* smallest max_bytes */

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
#define TLSR_CC_UNFIT 15            /* lookups that skipped a session it cannot negotiate */
#define TLSR_CC_OVERSIZE 16         /* sessions refused: larger than max_bytes / 8 */
#define TLSR_CC_NCOUNTERS 17

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
    int32_t ems;              /* made with the extended master secret (1), or not (0) */
    int64_t stored_ms;        /* when the cache got it (cache clock) */
    int64_t expires_ms;       /* end of its own lifetime (cache clock) */
    tlsr_client_fp fp;
    SSL_SESSION *session;     /* snapshot: a reference, release it */
} tlsr_client_entry;

/* Make a cache (max_bytes: see tlsr_client_cache_configure). manual_clock:
 * sessions captured inside OpenSSL are stamped with the latest now_ms passed to any function below instead of the wall clock (for
 * tests that drive time). Returns NULL without memory or if the core is unbound. */
tlsr_client_cache *tlsr_client_cache_new(uint32_t max_entries, uint32_t tickets_per_host,
                                         uint64_t max_bytes, int manual_clock);
/* Drop the caller's reference; the cache lives on while connections hold theirs. */
void tlsr_client_cache_release(tlsr_client_cache *c);
/* Change the limits: max_entries servers and max_bytes accounted bytes (>=
 * TLSR_CLIENT_MIN_BYTES), evicting the least recently used servers until both
 * hold, and ttl_ms (< 0: none, sessions live as long as their own lifetime).
 * A session is charged its DER encoding (ticket, secrets, peer certificate), the
 * DER of the peer chain the connection that made it received, and
 * TLSR_CLIENT_SESS_OVERHEAD; one charged more than max_bytes / 8 is not stored. */
int tlsr_client_cache_configure(tlsr_client_cache *c, uint32_t max_entries, uint64_t max_bytes,
                                int64_t ttl_ms, int64_t now_ms);
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
/* Bytes currently charged to the cache's sessions (never above max_bytes). */
uint64_t tlsr_client_cache_bytes(tlsr_client_cache *c);

/* Turn on client session caching on ctx: client cache mode (server bits kept,
 * OpenSSL's internal store off) and tlsresume's new-session callback. Idempotent. */
int tlsr_client_ctx_enable(SSL_CTX *ctx);
/* DER of ctx's client certificate into buf; returns its full length (0: none). */
size_t tlsr_client_ctx_cert_der(SSL_CTX *ctx, uint8_t *buf, size_t len);

/* Register a new, not yet started client connection ssl (made from ctx) with the
 * cache under (ns, host, port), and if offer, set the most recent usable session
 * on it: one the safety rule allows and the connection could negotiate
 * (tlsr_client_fits). Call it after the server name (SNI) is set on ssl.
 * level is what ctx demands (TLSR_VERIFY_*), fp its fingerprints.
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
/* Could connection ssl (not started) resume session sess, made with (ems) or
 * without the extended master secret? Its protocol version within ssl's
 * minimum/maximum and not disabled by options, its cipher enabled on ssl, the
 * extended master secret on for ssl exactly when the session used it, and its
 * server name equal to ssl's SNI when both have one. 1 yes, 0 no. */
int tlsr_client_fits(SSL *ssl, SSL_SESSION *sess, int ems);
/* CDEF-END */

#endif /* TLSRESUME_H */
