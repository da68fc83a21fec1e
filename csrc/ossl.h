/*
 * ossl.h - the OpenSSL functions the core calls, resolved at run time.
 *
 * We declare the prototypes ourselves (OpenSSL's headers are not needed to build)
 * and reach them through one table, tlsr_ossl, filled by tlsr_binding_init from
 * the libssl/libcrypto that CPython's _ssl module loaded. Macros in OpenSSL's
 * headers become their underlying calls here (SSL_CTX_ctrl with the numeric
 * command). Internal to the core: nothing here is exported.
 */
#ifndef TLSR_OSSL_H
#define TLSR_OSSL_H

#include <stddef.h>
#include <stdint.h>
#include "tlsresume.h"

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;
typedef struct evp_cipher_st EVP_CIPHER;
typedef struct evp_mac_ctx_st EVP_MAC_CTX;
typedef struct engine_st ENGINE;
typedef struct bio_st BIO;
typedef struct crypto_ex_data_st CRYPTO_EX_DATA;
typedef struct ssl_cipher_st SSL_CIPHER;
typedef struct evp_md_st EVP_MD;
typedef struct evp_md_ctx_st EVP_MD_CTX;
typedef struct x509_st X509;
typedef struct X509_crl_st X509_CRL;
typedef struct x509_store_st X509_STORE;
typedef struct x509_object_st X509_OBJECT;
typedef struct X509_VERIFY_PARAM_st X509_VERIFY_PARAM;
typedef struct stack_st OPENSSL_STACK;

/* Same layout as OpenSSL 3's struct ossl_param_st (public, ABI-stable). */
typedef struct {
    const char *key;
    unsigned int data_type;
    void *data;
    size_t data_size;
    size_t return_size;
} OSSL_PARAM;

typedef int (*tlsr_ticket_evp_cb)(SSL *s, unsigned char *key_name, unsigned char *iv,
                                  EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc);
typedef int (*tlsr_new_session_cb)(SSL *s, SSL_SESSION *sess);
typedef SSL_SESSION *(*tlsr_get_session_cb)(SSL *s, const unsigned char *id, int len,
                                            int *copy);
typedef void (*tlsr_remove_session_cb)(SSL_CTX *ctx, SSL_SESSION *sess);
typedef void (*tlsr_info_cb)(const SSL *s, int where, int ret);
typedef int (*tlsr_client_hello_cb)(SSL *s, int *al, void *arg);
typedef void (*tlsr_ex_free)(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx,
                             long argl, void *argp);

/* Numeric values of OpenSSL macros we use (stable since 1.1.0). */
#define TLSR_CRYPTO_EX_INDEX_SSL 0
#define TLSR_CRYPTO_EX_INDEX_SSL_CTX 1
#define TLSR_SSL_CTRL_SET_SESS_CACHE_MODE 44
#define TLSR_SSL_CTRL_GET_SESS_CACHE_MODE 45
#define TLSR_SSL_CTRL_SET_TLSEXT_HOSTNAME 55
#define TLSR_SSL_SESS_CACHE_CLIENT 0x0001
#define TLSR_SSL_SESS_CACHE_SERVER 0x0002
#define TLSR_SSL_SESS_CACHE_NO_INTERNAL_LOOKUP 0x0100
#define TLSR_SSL_SESS_CACHE_NO_INTERNAL_STORE 0x0200
#define TLSR_SSL_CB_READ 0x04
#define TLSR_SSL_CB_WRITE 0x08
#define TLSR_SSL_CB_ALERT 0x4000
#define TLSR_SSL_CB_HANDSHAKE_DONE 0x20
#define TLSR_SSL_OP_NO_TICKET ((uint64_t)1 << 14)
#define TLSR_SSL_SENT_SHUTDOWN 1
#define TLSR_SSL_RECEIVED_SHUTDOWN 2
#define TLSR_TLSEXT_NAMETYPE_host_name 0
#define TLSR_SSL_CTRL_SET_TLSEXT_TICKET_KEYS 59
#define TLSR_TLS1_3_VERSION 0x0304
/* SSL_get_min/max_proto_version are SSL_ctrl macros (ssl.h, OpenSSL 3.0). */
#define TLSR_SSL_CTRL_GET_MIN_PROTO_VERSION 130
#define TLSR_SSL_CTRL_GET_MAX_PROTO_VERSION 131
#define TLSR_SSL_CTRL_GET_EXTMS_SUPPORT 122
#define TLSR_SSL_OP_NO_EXTENDED_MASTER_SECRET ((uint64_t)1 << 0)
#define TLSR_SSL_OP_NO_TLSv1 ((uint64_t)1 << 26)
#define TLSR_SSL_OP_NO_TLSv1_2 ((uint64_t)1 << 27)
#define TLSR_SSL_OP_NO_TLSv1_1 ((uint64_t)1 << 28)
#define TLSR_SSL_OP_NO_TLSv1_3 ((uint64_t)1 << 29)
#define TLSR_SSL_ERROR_WANT_READ 2
#define TLSR_SSL_ERROR_WANT_WRITE 3
#define TLSR_SSL_CTRL_GET_CHAIN_CERTS 115
#define TLSR_SSL_CLIENT_HELLO_SUCCESS 1
#define TLSR_SSL_MAX_SID_CTX_LENGTH 32
#define TLSR_TLSEXT_TYPE_server_name 0
#define TLSR_X509_LU_X509 1
#define TLSR_X509_LU_CRL 2

/* X(return type, name, (parameters)); L: libcrypto, S: libssl. The product
 * module resolves TLSR_OSSL_CORE_FUNCS; the benchmark module (csrc/bench/,
 * built with TLSR_BENCH_MODULE) adds TLSR_OSSL_BENCH_FUNCS, so a function only
 * the benchmarks call can never stop the product from loading. */
#define TLSR_OSSL_CORE_FUNCS(L, S)                                                   \
    L(unsigned long, OpenSSL_version_num, (void))                                    \
    L(int, RAND_bytes, (unsigned char *buf, int num))                                \
    L(void, OPENSSL_cleanse, (void *ptr, size_t len))                                \
    L(unsigned long, ERR_get_error, (void))                                          \
    L(void, ERR_error_string_n, (unsigned long e, char *buf, size_t len))            \
    L(void, ERR_clear_error, (void))                                                 \
    L(int, ERR_set_mark, (void))                                                     \
    L(int, ERR_pop_to_mark, (void))                                                  \
    L(const EVP_CIPHER *, EVP_aes_128_cbc, (void))                                   \
    L(const EVP_CIPHER *, EVP_aes_256_cbc, (void))                                   \
    L(int, EVP_EncryptInit_ex, (EVP_CIPHER_CTX *c, const EVP_CIPHER *t, ENGINE *e,   \
                                const unsigned char *key, const unsigned char *iv))  \
    L(int, EVP_DecryptInit_ex, (EVP_CIPHER_CTX *c, const EVP_CIPHER *t, ENGINE *e,   \
                                const unsigned char *key, const unsigned char *iv))  \
    L(int, EVP_MAC_CTX_set_params, (EVP_MAC_CTX *c, const OSSL_PARAM *p))            \
    L(OSSL_PARAM, OSSL_PARAM_construct_octet_string, (const char *k, void *b, size_t n))\
    L(OSSL_PARAM, OSSL_PARAM_construct_utf8_string, (const char *k, char *b, size_t n))\
    L(OSSL_PARAM, OSSL_PARAM_construct_end, (void))                                  \
    L(int, CRYPTO_get_ex_new_index, (int cls, long argl, void *argp, void *newf,     \
                                     void *dupf, tlsr_ex_free freef))                \
    L(const EVP_MD *, EVP_sha256, (void))                                            \
    L(EVP_MD_CTX *, EVP_MD_CTX_new, (void))                                          \
    L(void, EVP_MD_CTX_free, (EVP_MD_CTX *c))                                        \
    L(int, EVP_DigestInit_ex, (EVP_MD_CTX *c, const EVP_MD *t, ENGINE *e))           \
    L(int, EVP_DigestUpdate, (EVP_MD_CTX *c, const void *d, size_t n))               \
    L(int, EVP_DigestFinal_ex, (EVP_MD_CTX *c, unsigned char *md, unsigned int *n))  \
    L(int, X509_digest, (const X509 *x, const EVP_MD *t, unsigned char *md,          \
                         unsigned int *n))                                           \
    L(int, X509_CRL_digest, (const X509_CRL *x, const EVP_MD *t, unsigned char *md,  \
                             unsigned int *n))                                       \
    L(int, X509_STORE_lock, (X509_STORE *st))                                        \
    L(int, X509_STORE_unlock, (X509_STORE *st))                                      \
    L(OPENSSL_STACK *, X509_STORE_get0_objects, (const X509_STORE *st))              \
    L(int, X509_OBJECT_get_type, (const X509_OBJECT *o))                             \
    L(X509 *, X509_OBJECT_get0_X509, (const X509_OBJECT *o))                         \
    L(X509_CRL *, X509_OBJECT_get0_X509_CRL, (const X509_OBJECT *o))                 \
    L(int, OPENSSL_sk_num, (const OPENSSL_STACK *sk))                                \
    L(void *, OPENSSL_sk_value, (const OPENSSL_STACK *sk, int i))                    \
    L(unsigned long, X509_VERIFY_PARAM_get_flags, (const X509_VERIFY_PARAM *p))      \
    L(int, X509_VERIFY_PARAM_get_depth, (const X509_VERIFY_PARAM *p))                \
    L(unsigned int, X509_VERIFY_PARAM_get_hostflags, (const X509_VERIFY_PARAM *p))   \
    S(int, SSL_CTX_set_tlsext_ticket_key_evp_cb, (SSL_CTX *ctx, tlsr_ticket_evp_cb cb))\
    S(long, SSL_CTX_ctrl, (SSL_CTX *ctx, int cmd, long larg, void *parg))            \
    S(void *, SSL_CTX_get_ex_data, (const SSL_CTX *ctx, int idx))                    \
    S(int, SSL_CTX_set_ex_data, (SSL_CTX *ctx, int idx, void *data))                 \
    S(uint64_t, SSL_CTX_get_options, (const SSL_CTX *ctx))                           \
    S(SSL_CTX *, SSL_get_SSL_CTX, (const SSL *s))                                    \
    S(int, SSL_version, (const SSL *s))                                              \
    S(int, SSL_session_reused, (const SSL *s))                                       \
    S(int, SSL_set_session, (SSL *s, SSL_SESSION *sess))                             \
    S(void, SSL_SESSION_free, (SSL_SESSION *sess))                                   \
    S(long, SSL_SESSION_get_time, (const SSL_SESSION *sess))                         \
    S(void, SSL_SESSION_get0_ticket, (const SSL_SESSION *s,                          \
                                      const unsigned char **tick, size_t *len))      \
    S(void, SSL_CTX_sess_set_new_cb, (SSL_CTX *ctx, tlsr_new_session_cb cb))         \
    S(void, SSL_CTX_sess_set_get_cb, (SSL_CTX *ctx, tlsr_get_session_cb cb))         \
    S(void, SSL_CTX_sess_set_remove_cb, (SSL_CTX *ctx, tlsr_remove_session_cb cb))   \
    S(void, SSL_CTX_set_info_callback, (SSL_CTX *ctx, tlsr_info_cb cb))              \
    S(long, SSL_CTX_get_timeout, (const SSL_CTX *ctx))                               \
    S(long, SSL_CTX_set_timeout, (SSL_CTX *ctx, long t))                             \
    S(int, SSL_CTX_get_verify_mode, (const SSL_CTX *ctx))                            \
    S(int, SSL_CTX_set_session_id_context, (SSL_CTX *ctx, const unsigned char *sid,  \
                                            unsigned int len))                       \
    S(int, SSL_set_session_id_context, (SSL *s, const unsigned char *sid,            \
                                        unsigned int len))                           \
    S(void, SSL_CTX_set_client_hello_cb, (SSL_CTX *ctx, tlsr_client_hello_cb cb,     \
                                          void *arg))                                \
    S(int, SSL_client_hello_get0_ext, (SSL *s, unsigned int type,                    \
                                       const unsigned char **out, size_t *len))      \
    S(X509_STORE *, SSL_CTX_get_cert_store, (const SSL_CTX *ctx))                    \
    S(X509_VERIFY_PARAM *, SSL_CTX_get0_param, (SSL_CTX *ctx))                       \
    S(long, SSL_ctrl, (SSL *s, int cmd, long larg, void *parg))                      \
    S(void *, SSL_get_ex_data, (const SSL *s, int idx))                              \
    S(int, SSL_set_ex_data, (SSL *s, int idx, void *data))                           \
    S(SSL_SESSION *, SSL_get_session, (const SSL *s))                                \
    S(int, SSL_get_shutdown, (const SSL *s))                                         \
    S(uint64_t, SSL_get_options, (const SSL *s))                                     \
    S(int, SSL_is_server, (const SSL *s))                                            \
    S(int, SSL_get_verify_mode, (const SSL *s))                                      \
    S(long, SSL_get_verify_result, (const SSL *s))                                   \
    S(const char *, SSL_get_servername, (const SSL *s, const int type))              \
    S(const unsigned char *, SSL_SESSION_get_id, (const SSL_SESSION *s,              \
                                                  unsigned int *len))                \
    S(long, SSL_SESSION_get_timeout, (const SSL_SESSION *s))                         \
    S(long, SSL_SESSION_set_timeout, (SSL_SESSION *s, long t))                       \
    S(unsigned long, SSL_SESSION_get_ticket_lifetime_hint, (const SSL_SESSION *s))   \
    S(int, SSL_SESSION_has_ticket, (const SSL_SESSION *s))                           \
    S(int, SSL_SESSION_is_resumable, (const SSL_SESSION *s))                         \
    S(int, SSL_SESSION_up_ref, (SSL_SESSION *s))                                     \
    S(int, SSL_SESSION_get_protocol_version, (const SSL_SESSION *s))                 \
    S(const char *, SSL_SESSION_get0_hostname, (const SSL_SESSION *s))               \
    S(int, i2d_SSL_SESSION, (const SSL_SESSION *in, unsigned char **pp))             \
    S(SSL_SESSION *, d2i_SSL_SESSION, (SSL_SESSION **a, const unsigned char **pp,    \
                                       long length))                                 \
    S(void, SSL_set_shutdown, (SSL *s, int mode))                                    \
    S(int, SSL_is_init_finished, (const SSL *s))                                     \
    S(void *, SSL_CTX_get0_certificate, (const SSL_CTX *ctx))                        \
    L(int, i2d_X509, (const void *x509, unsigned char **pp))                         \
    S(void *, SSL_get_ciphers, (const SSL *s))                                       \
    S(const SSL_CIPHER *, SSL_SESSION_get0_cipher, (const SSL_SESSION *s))           \
    S(uint32_t, SSL_CIPHER_get_id, (const SSL_CIPHER *c))                            \
    S(void *, SSL_get_peer_cert_chain, (const SSL *s))

#define TLSR_OSSL_BENCH_FUNCS(L, S)                                                  \
    L(int, BIO_new_bio_pair, (BIO **b1, size_t w1, BIO **b2, size_t w2))             \
    S(SSL *, SSL_new, (SSL_CTX *ctx))                                                \
    S(void, SSL_free, (SSL *s))                                                      \
    S(void, SSL_set_bio, (SSL *s, BIO *rbio, BIO *wbio))                             \
    S(void, SSL_set_accept_state, (SSL *s))                                          \
    S(void, SSL_set_connect_state, (SSL *s))                                         \
    S(int, SSL_do_handshake, (SSL *s))                                               \
    S(int, SSL_get_error, (const SSL *s, int ret))                                   \
    S(int, SSL_read, (SSL *s, void *buf, int num))                                   \
    S(int, SSL_shutdown, (SSL *s))                                                   \
    S(SSL_SESSION *, SSL_get1_session, (SSL *s))                                     \
    S(int, SSL_set_fd, (SSL *s, int fd))                                             \
    S(int, SSL_connect, (SSL *s))                                                    \
    S(int, SSL_write, (SSL *s, const void *buf, int num))

#ifdef TLSR_BENCH_MODULE
#define TLSR_OSSL_FUNCS(L, S) TLSR_OSSL_CORE_FUNCS(L, S) TLSR_OSSL_BENCH_FUNCS(L, S)
#else
#define TLSR_OSSL_FUNCS(L, S) TLSR_OSSL_CORE_FUNCS(L, S)
#endif

#define TLSR_FIELD(ret, name, args) ret(*name) args;
struct tlsr_ossl_table {
    TLSR_OSSL_FUNCS(TLSR_FIELD, TLSR_FIELD)
    int bound;
};
#undef TLSR_FIELD

extern struct tlsr_ossl_table tlsr_ossl;
#define OSSL(fn) (tlsr_ossl.fn)

/* Time in milliseconds since the epoch (wall clock: keys are shared across
 * machines, so their times must be comparable between them). */
int64_t tlsr_now_ms(void);
/* Wipe secrets so the compiler cannot elide it. */
void tlsr_wipe(void *p, size_t n);

/* t + d in milliseconds, saturating at INT64_MIN / INT64_MAX instead of
 * overflowing (undefined behaviour). Times and durations reach the core from
 * callers, files and other machines; "huge" must mean "never", not wrap around. */
static inline int64_t tlsr_time_add(int64_t t, int64_t d)
{
    if (d > 0 && t > INT64_MAX - d)
        return INT64_MAX;
    if (d < 0 && t < INT64_MIN - d)
        return INT64_MIN;
    return t + d;
}

/* Seconds to milliseconds, saturating likewise (session times can come from
 * DER another machine or a saved file supplied). */
static inline int64_t tlsr_s_to_ms(int64_t s)
{
    return s > INT64_MAX / 1000 ? INT64_MAX : s < INT64_MIN / 1000 ? INT64_MIN : s * 1000;
}

#endif /* TLSR_OSSL_H */
