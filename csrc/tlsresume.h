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
 * This header is also the cffi cdef (csrc/build_core.py reads the block between
 * the CDEF markers), so it must stay plain C that cffi can parse.
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
#define TLSR_RC_RESUMED_RENEWED 2
#define TLSR_RC_REJECTED_UNKNOWN 3
#define TLSR_RC_REJECTED_EXPIRED 4
#define TLSR_RC_ROTATIONS 5
#define TLSR_RC_ERRORS 6
#define TLSR_RC_LOCK_RECOVERIES 7
#define TLSR_RING_NCOUNTERS 8

/* error codes returned (negated) by the ring and region functions */
#define TLSR_OK 0
#define TLSR_E_NOMEM 1
#define TLSR_E_SYS 2        /* errno holds the cause */
#define TLSR_E_EXISTS 3     /* named region already exists */
#define TLSR_E_NOTFOUND 4   /* named region does not exist */
#define TLSR_E_BADREGION 5  /* wrong magic, version or size */
#define TLSR_E_NOTOWNER 6   /* region owned by another user or not mode 0600 */
#define TLSR_E_BUSY 7       /* lock not obtained in time */
#define TLSR_E_ARG 8
#define TLSR_E_OPENSSL 9
#define TLSR_E_NOTREADY 10  /* region never finished initialising */
#define TLSR_E_UNBOUND 11   /* tlsr_binding_init has not succeeded */

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
 * children forked later share. Otherwise a POSIX shm object "/tlsresume.ring.<name>",
 * mode 0600, created exclusively. The ring starts with a current and a next key.
 * On failure returns NULL and sets *err to a TLSR_E_* code. */
tlsr_ring *tlsr_ring_create(const char *name, int64_t period_ms, int64_t window_ms,
                            uint32_t flags, int64_t now_ms, int *err);
/* Attach to an existing named ring. */
tlsr_ring *tlsr_ring_attach(const char *name, int *err);
int tlsr_ring_unlink(const char *name);
void tlsr_ring_release(tlsr_ring *ring);

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

/* Testing hook: take the ring's lock and, if scribble, start a write (inactive
 * copy marked odd and filled with garbage), then return WITHOUT unlocking, as a
 * writer killed mid-write would leave things. Only for crash-recovery tests. */
int tlsr_ring_debug_die_in_write(tlsr_ring *ring, int scribble);

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

/* Sessions as Python hands them to us (for inspection tools). */
long tlsr_session_time(SSL_SESSION *sess);
/* Copy the ticket of a client-side session into buf; returns its full length
 * (0: no ticket). */
size_t tlsr_session_ticket(SSL_SESSION *sess, uint8_t *buf, size_t len);

/* ---- measurement (bench.c) ------------------------------------------------- */

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
/* CDEF-END */

#endif /* TLSRESUME_H */
