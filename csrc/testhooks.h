/*
 * testhooks.h - the C contract of tlsresume._testhooks, for crash-recovery tests.
 *
 * The hooks leave a region as a process killed mid-write would: lock held, a write
 * half done. They are compiled (with TLSR_TEST_HOOKS) only into this module, which
 * is built from the same sources as the product but is not the product: the
 * product module neither contains nor exports them. A test attaches to the region
 * it wants to damage through this module's own copy of the code (same layout).
 */
#ifndef TLSR_TESTHOOKS_H
#define TLSR_TESTHOOKS_H

#include "tlsresume.h"

/* CDEF-BEGIN */
/* Take the ring's lock and, if scribble, start a write (inactive copy marked odd
 * and filled with garbage), then return WITHOUT unlocking. */
int tlsr_ring_debug_die_in_write(tlsr_ring *ring, int scribble);
/* Die inside a put, leaving the lock held and a half-linked entry. */
int tlsr_store_debug_die_in_put(tlsr_store *st, const uint8_t *id, size_t id_len);
/* Where the ring's fields lie in its region (bytes from the start), for tests
 * that write over them as damage would. */
typedef struct {
    size_t lock, active, seq, state, state_size;
    size_t period, window, due, flags, check, current, slots, grave_count, key_size;
    size_t key_activated, key_role, key_secret_len;
} tlsr_ring_layout;
void tlsr_ring_debug_layout(tlsr_ring_layout *out);
/* Hold a client cache's lock for ms milliseconds (from a thread, to fork meanwhile). */
int tlsr_client_debug_hold_lock(tlsr_client_cache *c, unsigned ms);
/* CDEF-END */

#endif /* TLSR_TESTHOOKS_H */
