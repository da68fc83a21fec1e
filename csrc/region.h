/*
 * region.h - shared-memory regions and the lock that guards their writers.
 *
 * A region is either anonymous MAP_SHARED memory (shared with children forked
 * after it was made) or a file, mode 0600, in this user's private directory on
 * tmpfs (see tlsr_dir_check), that unrelated processes of the same user attach
 * to by name. Every region starts with tlsr_region_hdr.
 * Writers take a process-shared robust mutex: a writer that dies holding it
 * hands the next locker EOWNERDEAD, which we turn into "recovered" so the caller
 * can repair what the dead writer left half done. Readers never take the lock.
 */
#ifndef TLSR_REGION_H
#define TLSR_REGION_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "tlsresume.h"

#define TLSR_REGION_MAGIC 0x544c53524553554dULL /* "TLSRESUM" */

typedef struct {
    uint64_t magic;
    uint32_t version;           /* layout version of the region's kind */
    uint32_t kind;              /* what the region holds (ring, store, ...) */
    uint64_t size;              /* bytes mapped */
    _Atomic uint32_t ready;     /* set last, with release order, by the creator */
    uint32_t reserved;          /* the store's hash seed */
    pthread_mutex_t lock;
} tlsr_region_hdr;

typedef struct {
    void *base;
    size_t size;
    int named;
    int mlocked;
} tlsr_map;

/* Create a zero-filled region of size bytes. name NULL: anonymous. Named regions
 * are created exclusively (-TLSR_E_EXISTS if present) in the adopted directory
 * (-TLSR_E_NOTFOUND if none was adopted). Returns 0 or -TLSR_E_*. */
int tlsr_region_create(const char *kind_prefix, const char *name, size_t size,
                       int lock_in_ram, tlsr_map *out);
/* Attach an existing named region after checking owner, mode, magic, kind,
 * version and readiness. Returns 0 or -TLSR_E_*. */
int tlsr_region_attach(const char *kind_prefix, const char *name, uint32_t kind,
                       uint32_t version, int lock_in_ram, tlsr_map *out);
/* Publish a freshly initialised region (header filled, ready set last). */
void tlsr_region_publish(tlsr_region_hdr *h, uint32_t kind, uint32_t version,
                         uint64_t size);
/* A process that maps a region knows what it is: write its identity back if bytes
 * over the header changed it (under the region's lock), so that processes that
 * attach later find it. Returns 1 if it had to. */
int tlsr_region_reidentify(tlsr_region_hdr *h, uint32_t kind, uint32_t version,
                           uint64_t size);
void tlsr_region_unmap(tlsr_map *m);
/* Lock the mapping in RAM again (mlock is not inherited across fork). Returns 1 if
 * locked, 0 if not (RLIMIT_MEMLOCK, most often); m->mlocked says the same. */
int tlsr_region_relock(tlsr_map *m);
int tlsr_region_unlink(const char *kind_prefix, const char *name);

int tlsr_lock_init(pthread_mutex_t *m);
/* timeout_us 0: try once; otherwise wait up to timeout_us microseconds. Returns 0
 * when held (*recovered = 1 if the previous owner died holding it), or
 * -TLSR_E_BUSY. */
int tlsr_lock(pthread_mutex_t *m, int64_t timeout_us, int *recovered);
/* tlsr_lock, and when the lock stays busy because its word names an owner that
 * does not exist (or is invalid) for a while, re-initialise it under `gate` (a
 * word of the region: the pid of the process repairing) and take it:
 * *recovered = 2, and the caller repairs the data as for a dead owner (1). */
int tlsr_lock_gated(pthread_mutex_t *m, _Atomic uint32_t *gate, int64_t timeout_us,
                    int *recovered);
/* Map an existing named region whatever its content (owner and mode checked). */
int tlsr_region_map_existing(const char *kind_prefix, const char *name, tlsr_map *out);
void tlsr_unlock(pthread_mutex_t *m);

#endif /* TLSR_REGION_H */
