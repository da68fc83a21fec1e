/*
 * internal.h - what the C files of the core share among themselves.
 *
 * tlsresume.h is the contract with Python; this header holds the prototypes one C
 * file of the core calls in another, so the compiler checks every such call
 * against one declaration. The files form layers, each calling only those below:
 *
 *     ossl.c    binding: OpenSSL functions resolved at run time (ossl.h)
 *     region.c  shared-memory regions and their robust locks (region.h)
 *     keyring.c store.c client.c    key ring, session store, client cache
 *     ctx.c     what is attached to an SSL_CTX, and every OpenSSL callback
 *               that must find it (it alone owns the SSL_CTX ex_data slot)
 *
 * Nothing here is exported from the module (-fvisibility=hidden).
 */
#ifndef TLSR_INTERNAL_H
#define TLSR_INTERNAL_H

#include "ossl.h"
#include "region.h"

/* keyring.c: a reference for a context's state; the ticket key callback's work
 * on a ring (OpenSSL's contract for SSL_CTX_set_tlsext_ticket_key_evp_cb). */
tlsr_ring *tlsr_ring_retain(tlsr_ring *ring);
int tlsr_ring_on_ticket(tlsr_ring *ring, SSL *s, unsigned char *key_name, unsigned char *iv,
                        EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc);
/* At handshake done (server info callback): count s as resumed under the key its
 * ticket was found with, if OpenSSL really resumed it. Constant work. */
void tlsr_ring_handshake_done(tlsr_ring *ring, const SSL *s);

/* store.c: a reference for a context's state; the session callbacks' work on a
 * store (st may be NULL: the context has none). */
tlsr_store *tlsr_store_retain(tlsr_store *st);
int tlsr_store_on_new(tlsr_store *st, SSL *s, SSL_SESSION *sess);
SSL_SESSION *tlsr_store_on_get(tlsr_store *st, SSL *s, const unsigned char *id, int id_len,
                               int *copy);
void tlsr_store_on_remove(tlsr_store *st, SSL_SESSION *sess);
void tlsr_store_on_info(tlsr_store *st, const SSL *s, int where, int ret);

#endif /* TLSR_INTERNAL_H */
