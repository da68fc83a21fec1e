/*
 * loadgen.c - the load generator of `tlsresume bench` (contract in loadgen.h).
 *
 * Plain blocking sockets with send/receive timeouts and OpenSSL's socket BIO: the
 * client costs what OpenSSL costs, so on a shared machine it leaves the cores to
 * the server under test. Nothing here allocates per connection beyond what
 * SSL_new does, and nothing touches Python: cffi calls it without the GIL.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "loadgen.h"
#include "ossl.h"

/* OpenSSL's SSL_get_error codes we tell apart (stable since 1.1.0). */
#define TLSR_SSL_ERROR_SYSCALL 5
#define TLSR_SSL_ERROR_ZERO_RETURN 6
/* A response longer than this is not the small answer we asked for. */
#define MAX_RESPONSE (1 << 20)

struct tlsr_loadgen {
    SSL_CTX *ctx;                 /* borrowed: the caller keeps it alive */
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char sni[256];                /* "" = send none */
    uint8_t request[TLSR_LOADGEN_MAX_REQUEST];
    size_t request_len;
    int io_timeout_ms;
    int resume;
    uint32_t nsessions;
    SSL_SESSION **sessions;       /* newest session of each virtual client, or NULL */
    uint64_t rng;                 /* xorshift64 state, never 0 */
};

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint64_t next_rand(tlsr_loadgen *lg)
{
    uint64_t x = lg->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return lg->rng = x;
}

/* Keep the first failure's description; later ones only count. */
static void note_error(tlsr_loadgen_result *out, const char *stage, int err_no)
{
    char ossl[120] = "";
    unsigned long e;

    if (out->first_error[0] != '\0')
        return;
    e = OSSL(ERR_get_error)();
    if (e != 0)
        OSSL(ERR_error_string_n)(e, ossl, sizeof ossl);
    else if (err_no != 0)
        snprintf(ossl, sizeof ossl, "%s", strerror(err_no));
    else
        snprintf(ossl, sizeof ossl, "connection closed");
    snprintf(out->first_error, sizeof out->first_error, "%s: %s", stage, ossl);
}

tlsr_loadgen *tlsr_loadgen_new(SSL_CTX *ctx, const char *ip, int port, const char *sni,
                               const uint8_t *request, size_t request_len,
                               uint32_t sessions, int resume, int io_timeout_ms,
                               uint64_t seed)
{
    tlsr_loadgen *lg;
    struct sockaddr_in *v4;
    struct sockaddr_in6 *v6;

    if (!tlsr_ossl.bound || ctx == NULL || ip == NULL || port <= 0 || port > 65535 ||
        request == NULL || request_len == 0 || request_len > TLSR_LOADGEN_MAX_REQUEST ||
        sessions == 0 || sessions > TLSR_LOADGEN_MAX_SESSIONS || io_timeout_ms <= 0 ||
        (sni != NULL && strlen(sni) >= sizeof lg->sni))
        return NULL;
    lg = calloc(1, sizeof *lg);
    if (lg == NULL)
        return NULL;
    lg->sessions = calloc(sessions, sizeof *lg->sessions);
    if (lg->sessions == NULL) {
        free(lg);
        return NULL;
    }
    v4 = (struct sockaddr_in *)&lg->addr;
    v6 = (struct sockaddr_in6 *)&lg->addr;
    if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        lg->addrlen = sizeof *v4;
    } else if (inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        lg->addrlen = sizeof *v6;
    } else {
        tlsr_loadgen_free(lg);
        return NULL;
    }
    lg->ctx = ctx;
    if (sni != NULL)
        snprintf(lg->sni, sizeof lg->sni, "%s", sni);
    memcpy(lg->request, request, request_len);
    lg->request_len = request_len;
    lg->nsessions = sessions;
    lg->resume = resume != 0;
    lg->io_timeout_ms = io_timeout_ms;
    lg->rng = seed != 0 ? seed : 0x9e3779b97f4a7c15ULL;
    return lg;
}

void tlsr_loadgen_free(tlsr_loadgen *lg)
{
    uint32_t i;

    if (lg == NULL)
        return;
    for (i = 0; i < lg->nsessions; i++)
        if (lg->sessions[i] != NULL)
            OSSL(SSL_SESSION_free)(lg->sessions[i]);
    free(lg->sessions);
    free(lg);
}

/* A connected TCP socket with every operation bounded by the I/O timeout, or -1
 * (errno set). */
static int open_socket(const tlsr_loadgen *lg)
{
    struct timeval tv = {lg->io_timeout_ms / 1000, (lg->io_timeout_ms % 1000) * 1000};
    int one = 1, fd = socket(lg->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), saved;

    if (fd < 0)
        return -1;
    /* SO_SNDTIMEO also bounds connect() on Linux. */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one) != 0 ||
        connect(fd, (const struct sockaddr *)&lg->addr, lg->addrlen) != 0) {
        saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

/* Read the response to its end. Returns 1 if it ended with close_notify (or a
 * bare EOF, when the context ignores unexpected EOFs) and began with a 200
 * status line, 0 on a bad status or a response over MAX_RESPONSE bytes, -1 on an
 * I/O or TLS error (a bare EOF included: OpenSSL 3 reports it as an error). */
static int read_response(SSL *s, tlsr_loadgen_result *out)
{
    char buf[4096], head[16];
    size_t have = 0, total = 0;
    int n, e;

    for (;;) {
        errno = 0;
        n = OSSL(SSL_read)(s, buf, sizeof buf);
        if (n <= 0)
            break;
        out->bytes_read += n;
        total += (size_t)n;
        if (total > MAX_RESPONSE)
            return 0;
        if (have < sizeof head) {
            size_t take = (size_t)n < sizeof head - have ? (size_t)n : sizeof head - have;
            memcpy(head + have, buf, take);
            have += take;
        }
    }
    e = OSSL(SSL_get_error)(s, n);
    if (e != TLSR_SSL_ERROR_ZERO_RETURN) {
        note_error(out, "read", e == TLSR_SSL_ERROR_SYSCALL ? errno : 0);
        return -1;
    }
    /* "HTTP/1.x 200" */
    if (have < 12 || memcmp(head, "HTTP/1.", 7) != 0 || memcmp(head + 8, " 200", 4) != 0)
        return 0;
    return 1;
}

/* One connection, offering *slot if slot and *slot are set; on success the newest
 * resumable session replaces *slot. Returns 1 completed, 0 failed. Every socket
 * call waits at most the I/O timeout, and the response is read up to
 * MAX_RESPONSE bytes, so a stalled server costs one timeout; only a server that
 * trickles bytes slower than that can stretch a connection further. */
static int one_connection(tlsr_loadgen *lg, SSL_SESSION **slot, tlsr_loadgen_result *out)
{
    int64_t t0 = mono_ns();
    SSL *s = NULL;
    SSL_SESSION *sess;
    int fd, rc, ok = 0;

    out->connections++;
    fd = open_socket(lg);
    if (fd < 0) {
        out->failed_connect++;
        note_error(out, "connect", errno);
        goto done;
    }
    s = OSSL(SSL_new)(lg->ctx);
    if (s == NULL || OSSL(SSL_set_fd)(s, fd) != 1) {
        out->failed_handshake++;
        note_error(out, "SSL_new", 0);
        goto done;
    }
    if (lg->sni[0] != '\0')
        OSSL(SSL_ctrl)(s, TLSR_SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSR_TLSEXT_NAMETYPE_host_name,
                       lg->sni);
    if (slot != NULL && *slot != NULL) {
        OSSL(SSL_set_session)(s, *slot);
        out->offered++;
    }
    errno = 0;
    rc = OSSL(SSL_connect)(s);
    if (rc != 1) {
        int e = OSSL(SSL_get_error)(s, rc);
        out->failed_handshake++;
        note_error(out, "handshake", e == TLSR_SSL_ERROR_SYSCALL ? errno : 0);
        goto done;
    }
    out->handshake_ns += mono_ns() - t0;
    /* Without SSL_MODE_ENABLE_PARTIAL_WRITE, SSL_write sends everything or fails. */
    errno = 0;
    if (OSSL(SSL_write)(s, lg->request, (int)lg->request_len) != (int)lg->request_len) {
        out->failed_io++;
        note_error(out, "write", errno);
        goto done;
    }
    /* TLS 1.3 tickets arrive with the response: read it all before keeping the
     * session. */
    rc = read_response(s, out);
    if (rc < 0) {
        out->failed_io++;
        goto done;
    }
    if (rc == 0) {
        out->bad_response++;
        if (out->first_error[0] == '\0')
            snprintf(out->first_error, sizeof out->first_error,
                     "response: not an HTTP/1.x 200 answer of at most 1 MiB");
        goto done;
    }
    out->completed++;
    out->resumed += OSSL(SSL_session_reused)(s) == 1;
    out->version = OSSL(SSL_version)(s);
    if (slot != NULL) {
        sess = OSSL(SSL_get1_session)(s);
        if (sess != NULL && OSSL(SSL_SESSION_is_resumable)(sess) == 1) {
            if (*slot != NULL)
                OSSL(SSL_SESSION_free)(*slot);
            *slot = sess;
        } else if (sess != NULL) {
            OSSL(SSL_SESSION_free)(sess);
        }
    }
    ok = 1;
done:
    if (s != NULL) {
        /* Our close_notify, always: an OpenSSL client that frees a connection
         * without one marks its session not resumable. The server may be gone by
         * now (EPIPE, ignored). */
        OSSL(SSL_shutdown)(s);
        OSSL(SSL_free)(s);
    }
    OSSL(ERR_clear_error)();
    if (fd >= 0)
        close(fd);
    return ok;
}

int tlsr_loadgen_warm(tlsr_loadgen *lg, tlsr_loadgen_result *out)
{
    int64_t t0 = mono_ns();
    uint32_t i;

    if (lg == NULL || out == NULL)
        return -TLSR_E_ARG;
    memset(out, 0, sizeof *out);
    for (i = 0; i < lg->nsessions; i++)
        one_connection(lg, &lg->sessions[i], out);
    out->wall_ns = mono_ns() - t0;
    return 1;
}

int tlsr_loadgen_run(tlsr_loadgen *lg, int64_t max_conns, int64_t duration_ms,
                     tlsr_loadgen_result *out)
{
    int64_t t0, deadline;
    int streak = 0;

    if (lg == NULL || out == NULL || duration_ms <= 0)
        return -TLSR_E_ARG;
    memset(out, 0, sizeof *out);
    t0 = mono_ns();
    deadline = t0 + duration_ms * 1000000;
    while ((max_conns <= 0 || out->connections < max_conns) && mono_ns() < deadline) {
        SSL_SESSION **slot = &lg->sessions[next_rand(lg) % lg->nsessions];
        if (one_connection(lg, lg->resume ? slot : NULL, out)) {
            streak = 0;
        } else if (++streak >= TLSR_LOADGEN_MAX_FAILSTREAK) {
            out->aborted = 1;
            break;
        }
    }
    out->wall_ns = mono_ns() - t0;
    return 1;
}

int tlsr_loadgen_sessions_held(tlsr_loadgen *lg)
{
    uint32_t i;
    int n = 0;

    if (lg == NULL)
        return 0;
    for (i = 0; i < lg->nsessions; i++)
        n += lg->sessions[i] != NULL && OSSL(SSL_SESSION_is_resumable)(lg->sessions[i]) == 1;
    return n;
}
