/*
 * loadgen.h - a TLS load generator over real sockets: its C contract (loadgen.c).
 *
 * One generator is one client: a loop of connect -> SSL_connect -> one small
 * request -> read to EOF -> SSL_shutdown -> close, one connection at a time, for
 * `tlsresume bench`. In resumed mode it holds a few "virtual clients", each with
 * the newest session its last connection ended with, and offers a random one's
 * session on every connection, as a population of returning clients would. The
 * block between the CDEF markers is part of the cffi cdef.
 */
#ifndef TLSR_LOADGEN_H
#define TLSR_LOADGEN_H

#include <stddef.h>
#include <stdint.h>
#include "bench.h"

/* CDEF-BEGIN */
#define TLSR_LOADGEN_MAX_SESSIONS 1024    /* highest number of virtual clients */
#define TLSR_LOADGEN_MAX_REQUEST 4096     /* longest request, in bytes */
#define TLSR_LOADGEN_MAX_FAILSTREAK 50    /* consecutive failures that end a run */

typedef struct tlsr_loadgen tlsr_loadgen;

typedef struct {
    int64_t connections;      /* attempted */
    int64_t completed;        /* response read to its end and the connection closed */
    int64_t offered;          /* connections that offered a session */
    int64_t resumed;          /* completed connections the server resumed */
    int64_t failed_connect;   /* TCP connect failed or timed out */
    int64_t failed_handshake; /* SSL_connect failed */
    int64_t failed_io;        /* writing the request or reading the response failed */
    int64_t bad_response;     /* not "HTTP/1.x 200 ...", or longer than 1 MiB */
    int64_t bytes_read;       /* response bytes, all connections */
    int64_t wall_ns;          /* whole run */
    int64_t handshake_ns;     /* sum over connections of connect + SSL_connect */
    int32_t version;          /* protocol of the last completed connection (0x0303...) */
    int32_t aborted;          /* the run stopped after MAX_FAILSTREAK failures in a row */
    char first_error[160];    /* what went wrong first ("" if nothing) */
} tlsr_loadgen_result;

/* Make a generator for one server address. ctx is a client SSL_CTX that stays
 * alive and unchanged while the generator exists (pin the protocol version on
 * it). ip is a numeric IPv4 or IPv6 address; sni a host name to send, or NULL.
 * request is sent as is on every connection. sessions: number of virtual clients
 * (1..TLSR_LOADGEN_MAX_SESSIONS); resume: offer their sessions. io_timeout_ms
 * bounds every connect, read and write. seed drives the choice of virtual client.
 * Returns NULL on bad arguments, without memory, or if the core is unbound. */
tlsr_loadgen *tlsr_loadgen_new(SSL_CTX *ctx, const char *ip, int port, const char *sni,
                               const uint8_t *request, size_t request_len,
                               uint32_t sessions, int resume, int io_timeout_ms,
                               uint64_t seed);
void tlsr_loadgen_free(tlsr_loadgen *lg);
/* One connection per virtual client (full handshakes that give each its first
 * session; also warms the server up). Returns 1, or -TLSR_E_* on bad arguments. */
int tlsr_loadgen_warm(tlsr_loadgen *lg, tlsr_loadgen_result *out);
/* Connections one after another until max_conns were attempted (<= 0: no limit)
 * or duration_ms passed, or MAX_FAILSTREAK failed in a row. A connection under
 * way at the deadline is finished (each of its socket calls waits at most
 * io_timeout_ms). Runs without the GIL when called through cffi; the process
 * must ignore SIGPIPE (Python does).
 * Returns 1, or -TLSR_E_* on bad arguments. */
int tlsr_loadgen_run(tlsr_loadgen *lg, int64_t max_conns, int64_t duration_ms,
                     tlsr_loadgen_result *out);
/* Sessions the virtual clients hold that OpenSSL would still offer. */
int tlsr_loadgen_sessions_held(tlsr_loadgen *lg);
/* CDEF-END */

#endif /* TLSR_LOADGEN_H */
