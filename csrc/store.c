/*
 * store.c - the server-side session store in shared memory.
 *
 * One file: the index, LRU, free list, repair and callbacks all read the one
 * shared layout, whose invariants (see docs/design.md) must be kept in one place.
 *
 * Memory: a header, a bucket array (one uint32 per slot) and fixed 256-byte
 * slots. An entry is the session ID followed by the session's DER, spread over a
 * chain of slots; the first slot (the head) sits in its bucket's chain and in one
 * LRU list (most recent first). Free slots form a free list. An ordinary session
 * (ID + ~150-byte DER) fits one slot, so 1 MB holds ~4,000 sessions, as nginx's
 * shared cache does.
 *
 * Concurrency: every operation takes the region's robust mutex, waiting at most
 * lock_timeout_us (a handshake that cannot get it in time treats the lookup as a
 * miss). Each operation does O(entry size / slot) work, plus evictions bounded by
 * the slots a put needs. An entry carries a checksum and becomes visible only once
 * fully written, so when a process dies holding the lock (EOWNERDEAD) or the index
 * is found inconsistent, the next locker rebuilds the index from the slots,
 * keeping every intact entry and dropping only what was half written.
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "internal.h"

#define STORE_KIND 2
#define STORE_VERSION 3 /* 2: one more counter; 3: the repair gate */
#define SLOT TLSR_STORE_SLOT_SIZE
#define DEFAULT_LOCK_TIMEOUT_US 10000
#define PY_LOCK_TIMEOUT_US 2000000

enum { S_FREE = 0, S_HEAD = 1, S_CONT = 2 };
#define E_TLS13 1

typedef struct {
    uint32_t hnext;        /* next head in the bucket (slot number, 0 = end) */
    uint32_t prev, next;   /* LRU neighbours (heads); next doubles as free-list link */
    uint32_t cont;         /* next slot of this entry's bytes (0 = last) */
    uint32_t checksum;     /* over lengths, expiry, id and DER */
    uint32_t stamp;        /* last use, for rebuilding the LRU order */
    int64_t expires_ms;
    uint16_t der_len;
    uint8_t state;
    uint8_t id_len;
    uint8_t eflags;
    uint8_t pad[3];
} slot_hdr;

#define PAYLOAD (SLOT - (int)sizeof(slot_hdr))

typedef struct {
    tlsr_region_hdr hdr;
    uint32_t nslots;
    uint32_t free_head, free_count;
    uint32_t lru_head, lru_tail;
    uint32_t entries, used_slots;
    uint32_t flags, stamp;
    int32_t lock_timeout_us;
    uint64_t buckets_off, slots_off;
    _Atomic uint64_t counters[TLSR_STORE_NCOUNTERS];
    _Atomic uint32_t repair_gate; /* pid re-initialising a lock nobody holds */
} store_shm;

/* Decoded sessions this process handed to OpenSSL recently, so a hit in the
 * shared store can skip copying and decoding the DER. The shared entry stays the
 * authority: a local copy is used only while the shared entry (checked under the
 * lock) has the same checksum and expiry. Direct-mapped, guarded by a try-lock
 * (a busy or, after fork, orphaned lock just means "decode"). */
#define LOCAL_SLOTS 256

typedef struct {
    uint8_t id[TLSR_STORE_MAX_ID];
    uint8_t id_len;
    uint32_t checksum;
    int64_t expires_ms;
    SSL_SESSION *sess;
} local_entry;

/* A remote tier as published to the callbacks: immutable once published, kept
 * (on the store's `tiers` list) until the store handle is freed, so a callback
 * that loaded it never reads freed memory. inflight counts the callbacks inside
 * it; tlsr_store_set_remote waits for the old tier's to drain, so that once it
 * returns nothing calls the old functions with the old ctx (the caller may then
 * free what ctx points to). */
typedef struct remote_tier {
    tlsr_remote_get_fn get;
    tlsr_remote_put_fn put;
    tlsr_remote_remove_fn remove;
    void *ctx;
    _Atomic long inflight;
    struct remote_tier *older;
} remote_tier;

#define REMOTE_DRAIN_MS 5000

struct tlsr_store {
    _Atomic long refs;
    tlsr_map map;
    store_shm *shm;
    int reinitialised;
    pthread_mutex_t local_lock;
    local_entry *local;
    /* remote tier (process-local) */
    _Atomic(remote_tier *) remote;   /* the one in use, or NULL */
    _Atomic(remote_tier *) tiers;    /* every tier ever published, newest first */
    /* The geometry, derived once from this process's mapping: slot and bucket
     * addresses never come from bytes in the region, so a header written over
     * while an operation runs cannot send it outside the mapping. */
    uint32_t nslots;
    uint64_t buckets_off, slots_off;
    uint32_t flags; /* as created (or found on attach); the region's copy is only written */
};

/* ---- geometry -------------------------------------------------------------- */

#define ALIGN64(x) (((x) + 63) & ~(uint64_t)63)

static uint32_t slots_for_size(uint64_t size)
{
    uint64_t head = ALIGN64(sizeof(store_shm));
    if (size < head + 2 * 64 + 16 * (SLOT + 4))
        return 0;
    return (uint32_t)((size - head - 128) / (SLOT + 4));
}

static void bind_geometry(tlsr_store *st)
{
    st->shm = st->map.base;
    st->nslots = slots_for_size(st->map.size);
    st->buckets_off = ALIGN64(sizeof(store_shm));
    st->slots_off = ALIGN64(st->buckets_off + (uint64_t)st->nslots * 4);
}

static uint32_t *buckets(tlsr_store *st) { return (uint32_t *)((char *)st->shm + st->buckets_off); }

static slot_hdr *slot_at(tlsr_store *st, uint32_t i) /* i in 1..nslots */
{
    return (slot_hdr *)((char *)st->shm + st->slots_off + (uint64_t)(i - 1) * SLOT);
}

static uint8_t *payload(slot_hdr *h) { return (uint8_t *)(h + 1); }

static int valid_index(tlsr_store *st, uint32_t i) { return i >= 1 && i <= st->nslots; }

static void count(store_shm *s, int which)
{
    atomic_fetch_add_explicit(&s->counters[which], 1, memory_order_relaxed);
}

static uint32_t fnv1a(uint32_t h, const uint8_t *p, size_t n)
{
    while (n--)
        h = (h ^ *p++) * 16777619u;
    return h;
}

static uint32_t bucket_of(tlsr_store *st, const uint8_t *id, size_t len)
{
    /* Session IDs are random, but clients choose what they send: a keyed hash
     * (hdr.reserved holds a per-region seed) keeps chains short regardless. */
    return fnv1a(2166136261u ^ st->shm->hdr.reserved, id, len) % st->nslots;
}

static uint32_t entry_checksum(const slot_hdr *h, const uint8_t *id, const uint8_t *der)
{
    uint32_t c = 2166136261u;
    c = fnv1a(c, (const uint8_t *)&h->expires_ms, sizeof h->expires_ms);
    c = fnv1a(c, (const uint8_t *)&h->der_len, sizeof h->der_len);
    c = fnv1a(c, &h->id_len, 1);
    c = fnv1a(c, &h->eflags, 1);
    c = fnv1a(c, id, h->id_len);
    return fnv1a(c, der, h->der_len);
}

static uint32_t slots_needed(size_t id_len, size_t der_len)
{
    return (uint32_t)((id_len + der_len + PAYLOAD - 1) / PAYLOAD);
}

/* ---- structure (called with the lock held) --------------------------------- */

/* Also the store's re-initialisation (clear, a scribbled header, no memory to
 * rebuild with): everything after the header is wiped, buckets and every slot's
 * payload, since sessions hold master secrets that must not stay readable in the
 * region. size is the mapping's (callers pass st->map.size or a header checked
 * equal to it). */
static void init_layout(tlsr_store *st, uint64_t size, uint32_t flags)
{
    store_shm *s = st->shm;
    uint32_t i, seed = 0;
    uint64_t head = ALIGN64(sizeof(store_shm));

    if (size > head)
        tlsr_wipe((char *)s + head, (size_t)(size - head));
    s->nslots = st->nslots;
    s->buckets_off = st->buckets_off;
    s->slots_off = st->slots_off;
    s->flags = flags;
    s->lock_timeout_us = DEFAULT_LOCK_TIMEOUT_US;
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed)
        seed = (uint32_t)tlsr_now_ms();
    s->hdr.reserved = seed;
    s->lru_head = s->lru_tail = 0;
    s->entries = s->used_slots = 0;
    s->free_head = 0;
    s->free_count = s->nslots;
    for (i = st->nslots; i >= 1; i--) {
        slot_hdr *h = slot_at(st, i);
        h->next = s->free_head;
        s->free_head = i;
    }
}

/* The LRU links come from shared memory that another process may have scribbled
 * on; find() validates only the bucket chain. A link out of range is treated as
 * the end of the list, so a damaged list costs order (and, at the next eviction,
 * a rebuild: drop_by_head notices a tail that is not a live head), never a write
 * outside the region. */
static uint32_t link_or_end(tlsr_store *st, uint32_t i) { return valid_index(st, i) ? i : 0; }

static void lru_unlink(tlsr_store *st, uint32_t i)
{
    store_shm *s = st->shm;
    slot_hdr *h = slot_at(st, i);
    uint32_t prev = link_or_end(st, h->prev), next = link_or_end(st, h->next);

    if (prev)
        slot_at(st, prev)->next = next;
    else
        s->lru_head = next;
    if (next)
        slot_at(st, next)->prev = prev;
    else
        s->lru_tail = prev;
    h->prev = h->next = 0;
}

static void lru_push_front(tlsr_store *st, uint32_t i)
{
    store_shm *s = st->shm;
    slot_hdr *h = slot_at(st, i);
    h->prev = 0;
    h->next = s->lru_head = link_or_end(st, s->lru_head);
    if (s->lru_head)
        slot_at(st, s->lru_head)->prev = i;
    s->lru_head = i;
    if (!s->lru_tail)
        s->lru_tail = i;
    h->stamp = ++s->stamp;
}

static void free_slot(tlsr_store *st, uint32_t i)
{
    store_shm *s = st->shm;
    slot_hdr *h = slot_at(st, i);
    memset(h, 0, SLOT); /* sessions hold master secrets: do not leave them behind */
    h->next = s->free_head;
    s->free_head = i;
    s->free_count++;
}

/* Corruption found while walking the index: the caller rebuilds. */
#define CORRUPT UINT32_MAX

/* Find the head of id. *pprev gets the previous head in the bucket (0 = first).
 * Returns 0 when absent, CORRUPT if the chain is broken. At most nslots steps. */
static uint32_t find(tlsr_store *st, const uint8_t *id, size_t len, uint32_t *pprev)
{
    uint32_t i = buckets(st)[bucket_of(st, id, len)], prev = 0, steps = 0;

    while (i) {
        slot_hdr *h;
        if (!valid_index(st, i) || ++steps > st->nslots)
            return CORRUPT;
        h = slot_at(st, i);
        if (h->state != S_HEAD)
            return CORRUPT;
        if (h->id_len == len && memcmp(payload(h), id, len) == 0) {
            *pprev = prev;
            return i;
        }
        prev = i;
        i = h->hnext;
    }
    return 0;
}

/* Remove the entry at head i (prev: previous head in its bucket). */
static void drop_entry(tlsr_store *st, uint32_t i, uint32_t prev)
{
    store_shm *s = st->shm;
    slot_hdr *h = slot_at(st, i);
    uint32_t n = 0, c, next;

    if (prev)
        slot_at(st, prev)->hnext = h->hnext;
    else
        buckets(st)[bucket_of(st, payload(h), h->id_len)] = h->hnext;
    lru_unlink(st, i);
    c = h->cont;
    free_slot(st, i);
    n++;
    while (c && valid_index(st, c) && slot_at(st, c)->state == S_CONT && n < st->nslots) {
        next = slot_at(st, c)->cont;
        free_slot(st, c);
        n++;
        c = next;
    }
    s->entries--;
    s->used_slots -= n;
}

static int drop_by_head(tlsr_store *st, uint32_t i)
{
    slot_hdr *h = slot_at(st, i);
    uint32_t prev = 0, found = find(st, payload(h), h->id_len, &prev);
    if (found != i)
        return -1;
    drop_entry(st, i, prev);
    return 0;
}

/* Copy an entry's id+DER bytes into out (id_len + der_len bytes). 0 ok, -1 corrupt. */
static int read_bytes(tlsr_store *st, uint32_t i, uint8_t *out)
{
    slot_hdr *h = slot_at(st, i);
    size_t total = (size_t)h->id_len + h->der_len, done = 0;
    uint32_t c = i, steps = 0;

    while (done < total) {
        size_t n = total - done < (size_t)PAYLOAD ? total - done : (size_t)PAYLOAD;
        slot_hdr *x;
        if (!valid_index(st, c) || ++steps > st->nslots)
            return -1;
        x = slot_at(st, c);
        if (x->state != (c == i ? S_HEAD : S_CONT))
            return -1;
        memcpy(out + done, payload(x), n);
        done += n;
        c = x->cont;
    }
    return 0;
}

/* ---- rebuilding the index --------------------------------------------------- */

typedef struct {
    uint32_t head, stamp;
} live_entry;

static int by_stamp(const void *a, const void *b)
{
    uint32_t x = ((const live_entry *)a)->stamp, y = ((const live_entry *)b)->stamp;
    return x < y ? -1 : x > y;
}

/* Keep every entry whose chain is intact and whose checksum matches; everything
 * else becomes free. Returns the number of entries dropped.
 *
 * Bound: one pass over every slot (size / 256: 4,096 per MB, 40,960 for "10M"),
 * one checksum per live entry, and a sort of the live entries by age: linear in
 * the store's size, under the region's lock. It runs only when the lock was found
 * abandoned by a process that died holding it, or the index is inconsistent, never
 * on an ordinary handshake; the one callback that meets that state pays it once
 * (and every other worker's callbacks time out on the lock meanwhile, which is a
 * miss and a full handshake, never an error). */
static int rebuild(tlsr_store *st)
{
    store_shm *s = st->shm;
    uint32_t n = st->nslots, i, k, kept = 0, dropped = 0;
    uint8_t *claimed = calloc(n + 1, 1);
    live_entry *live = calloc(n + 1, sizeof *live);
    uint8_t *buf = malloc(TLSR_STORE_MAX_ID + TLSR_STORE_MAX_DER);

    count(s, TLSR_SC_REPAIRS);
    if (claimed == NULL || live == NULL || buf == NULL) {
        /* No memory to be careful with: start empty, which is always safe. */
        for (i = 1; i <= n; i++)
            dropped += slot_at(st, i)->state == S_HEAD;
        init_layout(st, st->map.size, st->flags);
        free(claimed), free(live), free(buf);
        return (int)dropped;
    }
    for (i = 1; i <= n; i++) {
        slot_hdr *h = slot_at(st, i);
        uint32_t need, c, ok = 1;
        if (h->state != S_HEAD)
            continue;
        need = slots_needed(h->id_len, h->der_len);
        /* der_len is bounded by what put() accepts: buf holds no more. */
        if (h->id_len == 0 || h->id_len > TLSR_STORE_MAX_ID || h->der_len == 0 ||
            h->der_len > TLSR_STORE_MAX_DER || need == 0 || need > n || claimed[i]) {
            dropped++;
            continue;
        }
        claimed[i] = 1;
        for (c = h->cont, k = 1; k < need; k++) {
            if (!valid_index(st, c) || claimed[c] || slot_at(st, c)->state != S_CONT) {
                ok = 0;
                break;
            }
            claimed[c] = 1;
            c = slot_at(st, c)->cont;
        }
        if (ok && read_bytes(st, i, buf) == 0 &&
            entry_checksum(h, buf, buf + h->id_len) == h->checksum) {
            live[kept].head = i;
            live[kept].stamp = h->stamp;
            kept++;
        } else {
            /* Release the k - 1 continuation slots this entry claimed, so an intact
             * entry whose chain a damaged one ran into is still kept. */
            uint32_t j;
            for (c = h->cont, j = 1; j < k; j++) {
                claimed[c] = 0;
                c = slot_at(st, c)->cont;
            }
            claimed[i] = 0;
            dropped++;
        }
    }
    /* Second pass: chains of dropped entries are not claimed by live ones. Walk
     * exactly the slots the first pass checked: the last one's cont link is not
     * part of the entry and may point anywhere (or back into the chain). */
    memset(claimed, 0, n + 1);
    for (k = 0; k < kept; k++) {
        const slot_hdr *h = slot_at(st, live[k].head);
        uint32_t c = live[k].head, left = slots_needed(h->id_len, h->der_len);
        while (left-- > 0) {
            claimed[c] = 1;
            c = slot_at(st, c)->cont;
        }
    }
    memset(buckets(st), 0, (size_t)n * 4);
    s->lru_head = s->lru_tail = 0;
    s->free_head = 0;
    s->free_count = 0;
    s->entries = s->used_slots = 0;
    for (i = n; i >= 1; i--)
        if (!claimed[i])
            free_slot(st, i);
    qsort(live, kept, sizeof *live, by_stamp);
    for (k = 0; k < kept; k++) {
        slot_hdr *h = slot_at(st, live[k].head);
        uint32_t b = bucket_of(st, payload(h), h->id_len);
        h->hnext = buckets(st)[b];
        buckets(st)[b] = live[k].head;
        lru_push_front(st, live[k].head);
        s->entries++;
        s->used_slots += slots_needed(h->id_len, h->der_len);
    }
    free(claimed), free(live), free(buf);
    return (int)dropped;
}

/* Cheap consistency check of the header fields every operation relies on. */
static int header_sane(tlsr_store *st)
{
    store_shm *s = st->shm;
    /* nslots >= 16: a mapping too small for any slot (slots_for_size 0) would
     * otherwise pass, and bucket_of divides by nslots. */
    return s->hdr.magic == TLSR_REGION_MAGIC && s->hdr.kind == STORE_KIND &&
           s->hdr.version == STORE_VERSION && s->hdr.size == st->map.size &&
           s->nslots >= 16 && s->nslots == slots_for_size(st->map.size) &&
           s->buckets_off == ALIGN64(sizeof(store_shm)) &&
           s->slots_off == ALIGN64(s->buckets_off + (uint64_t)s->nslots * 4) &&
           s->free_count <= s->nslots && s->used_slots <= s->nslots &&
           (s->lru_head == 0 || valid_index(st, s->lru_head)) &&
           (s->lru_tail == 0 || valid_index(st, s->lru_tail)) &&
           (s->free_head == 0 || valid_index(st, s->free_head));
}

static int store_lock(tlsr_store *st, int64_t timeout_us)
{
    store_shm *s = st->shm;
    int recovered, rc = tlsr_lock_gated(&s->hdr.lock, &s->repair_gate, timeout_us, &recovered);

    if (rc < 0) {
        count(s, TLSR_SC_LOCK_TIMEOUTS);
        return rc;
    }
    if (!header_sane(st)) {
        /* Scribbled header: rebuild geometry and start empty. */
        s->hdr.magic = TLSR_REGION_MAGIC;
        s->hdr.kind = STORE_KIND;
        s->hdr.version = STORE_VERSION;
        s->hdr.size = st->map.size;
        init_layout(st, st->map.size, st->flags);
        count(s, TLSR_SC_REPAIRS);
    } else if (recovered) {
        rebuild(st);
    }
    return 0;
}

static void store_unlock(tlsr_store *st)
{
    tlsr_unlock(&st->shm->hdr.lock);
}

/* ---- operations ------------------------------------------------------------ */

static int64_t timeout_for_callbacks(tlsr_store *st)
{
    int32_t t = st->shm->lock_timeout_us;
    return t > 0 && t <= 1000000 ? t : DEFAULT_LOCK_TIMEOUT_US;
}

static int put_locked(tlsr_store *st, const uint8_t *id, size_t id_len, const uint8_t *der,
                      size_t der_len, int64_t expires_ms, int64_t now_ms, uint8_t eflags,
                      int die_midway)
{
    store_shm *s = st->shm;
    uint32_t need = slots_needed(id_len, der_len), prev = 0, old, head = 0, last = 0, k;
    size_t done = 0, total = id_len + der_len;
    slot_hdr *h;

    old = find(st, id, id_len, &prev);
    if (old == CORRUPT) {
        rebuild(st);
        old = find(st, id, id_len, &prev);
        if (old == CORRUPT)
            return -TLSR_E_BADREGION;
    }
    if (old)
        drop_entry(st, old, prev);
    /* Make room: drop from the cold end, expired or not (counted apart). */
    while (s->free_count < need && s->lru_tail) {
        slot_hdr *t = slot_at(st, s->lru_tail);
        count(s, t->expires_ms <= now_ms ? TLSR_SC_EXPIRATIONS : TLSR_SC_EVICTIONS);
        if (drop_by_head(st, s->lru_tail) < 0) {
            rebuild(st);
            return -TLSR_E_BADREGION;
        }
    }
    if (s->free_count < need)
        return 0;
    for (k = 0; k < need; k++) {
        uint32_t i = s->free_head;
        size_t n = total - done < (size_t)PAYLOAD ? total - done : (size_t)PAYLOAD;
        slot_hdr *x;
        if (!valid_index(st, i)) {
            rebuild(st);
            return -TLSR_E_BADREGION;
        }
        x = slot_at(st, i);
        s->free_head = x->next;
        s->free_count--;
        memset(x, 0, sizeof *x);
        x->state = k == 0 ? S_FREE : S_CONT; /* the head becomes visible last */
        /* copy this slot's share of id+DER */
        if (done < id_len) {
            size_t from_id = id_len - done < n ? id_len - done : n;
            memcpy(payload(x), id + done, from_id);
            memcpy(payload(x) + from_id, der, n - from_id);
        } else {
            memcpy(payload(x), der + (done - id_len), n);
        }
        done += n;
        if (last)
            slot_at(st, last)->cont = i;
        else
            head = i;
        last = i;
        if (die_midway && k == 0)
            return 1; /* leave a half-built entry behind for the crash test */
    }
    h = slot_at(st, head);
    h->id_len = (uint8_t)id_len;
    h->der_len = (uint16_t)der_len;
    h->expires_ms = expires_ms;
    h->eflags = eflags;
    h->checksum = entry_checksum(h, id, der);
    h->state = S_HEAD;
    {
        uint32_t b = bucket_of(st, id, id_len);
        h->hnext = buckets(st)[b];
        buckets(st)[b] = head;
    }
    lru_push_front(st, head);
    s->entries++;
    s->used_slots += need;
    count(s, TLSR_SC_STORES);
    return 1;
}

static int put(tlsr_store *st, const uint8_t *id, size_t id_len, const uint8_t *der,
               size_t der_len, int64_t expires_ms, int64_t now_ms, uint8_t eflags,
               int64_t timeout_us)
{
    int rc;

    if (id_len == 0 || id_len > TLSR_STORE_MAX_ID || der_len == 0)
        return -TLSR_E_ARG;
    /* Too big for this store (more than an eighth of it, or the hard cap):
     * skip and count, never truncate. */
    if (der_len > TLSR_STORE_MAX_DER || slots_needed(id_len, der_len) > st->shm->nslots / 8) {
        count(st->shm, TLSR_SC_OVERSIZE);
        return 0;
    }
    if ((rc = store_lock(st, timeout_us)) < 0)
        return rc;
    rc = put_locked(st, id, id_len, der, der_len, expires_ms, now_ms, eflags, 0);
    store_unlock(st);
    if (rc < 0)
        count(st->shm, TLSR_SC_ERRORS);
    return rc;
}

/* consume: 0 never, 1 always, 2 only TLS 1.3 entries (single-use tickets).
 * The DER goes to buf if it fits in len bytes, else (when heap is not NULL) to a
 * malloc'ed *heap the caller frees; else the lookup is a miss. */
typedef struct {
    uint32_t checksum;     /* in: what the caller holds (when have_local); out: the entry's */
    int64_t expires_ms;
    int have_local;
    int unchanged;         /* out: the entry matches what the caller holds; nothing copied */
    int consumed;          /* out: the entry was taken (single use) */
} get_probe;

static int get(tlsr_store *st, const uint8_t *id, size_t id_len, uint8_t *buf, size_t len,
               uint8_t **heap, int consume, int64_t now_ms, int64_t timeout_us,
               get_probe *probe)
{
    store_shm *s = st->shm;
    uint32_t i, prev = 0;
    slot_hdr *h;
    int rc;

    count(s, TLSR_SC_LOOKUPS);
    if (id_len == 0 || id_len > TLSR_STORE_MAX_ID) {
        count(s, TLSR_SC_MISSES);
        return 0;
    }
    if ((rc = store_lock(st, timeout_us)) < 0) {
        count(s, TLSR_SC_MISSES);
        return rc;
    }
    i = find(st, id, id_len, &prev);
    if (i == CORRUPT) {
        rebuild(st);
        store_unlock(st);
        count(s, TLSR_SC_ERRORS);
        count(s, TLSR_SC_MISSES);
        return 0;
    }
    if (i == 0) {
        store_unlock(st);
        count(s, TLSR_SC_MISSES);
        return 0;
    }
    h = slot_at(st, i);
    if (h->expires_ms <= now_ms) {
        drop_entry(st, i, prev);
        store_unlock(st);
        count(s, TLSR_SC_EXPIRATIONS);
        count(s, TLSR_SC_MISSES);
        return 0;
    }
    if (probe != NULL && probe->have_local && probe->checksum == h->checksum &&
        probe->expires_ms == h->expires_ms && !(consume == 1 || (consume == 2 &&
                                                                 (h->eflags & E_TLS13)))) {
        rc = h->der_len;
        probe->unchanged = 1;
        lru_unlink(st, i);
        lru_push_front(st, i);
        store_unlock(st);
        count(s, TLSR_SC_HITS);
        return rc;
    }
    if (probe != NULL) {
        probe->checksum = h->checksum;
        probe->expires_ms = h->expires_ms;
    }
    {
        size_t total = (size_t)h->id_len + h->der_len;
        uint8_t local[1024], *tmp = total <= sizeof local ? local : malloc(total);
        uint8_t *dst = buf;
        int ok = tmp != NULL && read_bytes(st, i, tmp) == 0 &&
                 entry_checksum(h, tmp, tmp + h->id_len) == h->checksum;
        if (ok && h->der_len > len) {
            dst = heap != NULL ? malloc(h->der_len) : NULL;
            if (dst == NULL) {
                /* The caller cannot take it: a miss, but the entry is fine. */
                if (tmp != local)
                    free(tmp);
                store_unlock(st);
                count(s, TLSR_SC_MISSES);
                return 0;
            }
            *heap = dst;
        }
        rc = ok ? h->der_len : 0;
        if (ok)
            memcpy(dst, tmp + h->id_len, h->der_len);
        if (tmp != NULL && tmp != local) {
            tlsr_wipe(tmp, total);
            free(tmp);
        } else {
            tlsr_wipe(local, total < sizeof local ? total : sizeof local);
        }
        if (!ok) {
            drop_entry(st, i, prev); /* corrupt: never serve it */
            store_unlock(st);
            count(s, TLSR_SC_ERRORS);
            count(s, TLSR_SC_MISSES);
            return 0;
        }
    }
    if (consume == 1 || (consume == 2 && (h->eflags & E_TLS13))) {
        drop_entry(st, i, prev);
        count(s, TLSR_SC_CONSUMED);
        if (probe != NULL)
            probe->consumed = 1;
    } else {
        lru_unlink(st, i);
        lru_push_front(st, i);
    }
    store_unlock(st);
    count(s, TLSR_SC_HITS);
    return rc;
}

static int remove_id(tlsr_store *st, const uint8_t *id, size_t id_len, int64_t timeout_us)
{
    uint32_t i, prev = 0;
    int rc;

    if (id_len == 0 || id_len > TLSR_STORE_MAX_ID)
        return 0;
    if ((rc = store_lock(st, timeout_us)) < 0)
        return rc;
    i = find(st, id, id_len, &prev);
    if (i == CORRUPT) {
        rebuild(st);
        i = 0;
    }
    if (i)
        drop_entry(st, i, prev);
    store_unlock(st);
    if (i)
        count(st->shm, TLSR_SC_REMOVALS);
    return i ? 1 : 0;
}

/* ---- public API ------------------------------------------------------------ */

static tlsr_store *fresh_handle(void)
{
    tlsr_store *st = calloc(1, sizeof *st);
    if (st != NULL) {
        atomic_store(&st->refs, 1);
        pthread_mutex_init(&st->local_lock, NULL);
    }
    return st;
}

static void local_free_all(tlsr_store *st)
{
    int i;
    if (st->local == NULL)
        return;
    for (i = 0; i < LOCAL_SLOTS; i++)
        if (st->local[i].sess != NULL && tlsr_ossl.bound)
            OSSL(SSL_SESSION_free)(st->local[i].sess);
    free(st->local);
    st->local = NULL;
}

/* Enter the current tier (NULL: none). Pairs with remote_leave. The re-check
 * after counting ourselves in closes the race with tlsr_store_set_remote: either
 * it sees our count and waits, or we see its new tier and back off. */
static remote_tier *remote_enter(tlsr_store *st)
{
    remote_tier *t = atomic_load(&st->remote);

    if (t == NULL)
        return NULL;
    atomic_fetch_add(&t->inflight, 1);
    if (atomic_load(&st->remote) != t) {
        atomic_fetch_sub(&t->inflight, 1);
        return NULL; /* being replaced: treat this one call as tier-less */
    }
    return t;
}

static void remote_leave(remote_tier *t)
{
    atomic_fetch_sub(&t->inflight, 1);
}

static void remote_free_all(tlsr_store *st)
{
    remote_tier *t = atomic_load(&st->tiers), *older;

    for (; t != NULL; t = older) {
        older = t->older;
        free(t);
    }
    atomic_store(&st->tiers, NULL);
    atomic_store(&st->remote, NULL);
}

static int init_region(tlsr_store *st, uint32_t flags)
{
    store_shm *s = st->shm;
    if (tlsr_lock_init(&s->hdr.lock) < 0)
        return -TLSR_E_SYS;
    s->hdr.size = st->map.size;
    init_layout(st, st->map.size, flags);
    tlsr_region_publish(&s->hdr, STORE_KIND, STORE_VERSION, st->map.size);
    return 0;
}

static int create_region(tlsr_store *st, const char *name, uint64_t size, uint32_t flags)
{
    int rc = tlsr_region_create("store", name, size, 1, &st->map);
    if (rc < 0)
        return rc;
    st->flags = flags & TLSR_STORE_SINGLE_USE;
    bind_geometry(st);
    if ((rc = init_region(st, flags)) < 0) {
        if (name != NULL)
            tlsr_region_unlink("store", name);
        tlsr_region_unmap(&st->map);
    }
    return rc;
}

tlsr_store *tlsr_store_open(const char *name, uint64_t size, uint32_t flags, int create,
                            int *err)
{
    tlsr_store *st;
    int rc = 0, attempt;

    if (!tlsr_ossl.bound) {
        *err = TLSR_E_UNBOUND;
        return NULL;
    }
    if (create && slots_for_size(size) < 16) {
        *err = TLSR_E_ARG;
        return NULL;
    }
    if ((st = fresh_handle()) == NULL) {
        *err = TLSR_E_NOMEM;
        return NULL;
    }
    if (name == NULL) {
        rc = create_region(st, NULL, size, flags);
        goto done;
    }
    for (attempt = 0; attempt < 4; attempt++) {
        rc = tlsr_region_attach("store", name, STORE_KIND, STORE_VERSION, 1, &st->map);
        if (rc == 0) {
            bind_geometry(st);
            if (!header_sane(st)) {
                rc = -TLSR_E_BADREGION;
                tlsr_region_unmap(&st->map);
            } else {
                st->flags = st->shm->flags & TLSR_STORE_SINGLE_USE;
            }
        }
        if (rc == 0)
            break;
        if (rc == -TLSR_E_BADREGION || rc == -TLSR_E_NOTREADY) {
            if (!create)
                break;
            /* Another version, or scribbled: replace it under the same name. The
             * processes still mapping the old one keep it until they re-attach. */
            tlsr_region_unlink("store", name);
            st->reinitialised = 1;
            rc = -TLSR_E_NOTFOUND;
        }
        if (rc != -TLSR_E_NOTFOUND || !create)
            break;
        rc = create_region(st, name, size, flags);
        if (rc != -TLSR_E_EXISTS)
            break; /* created (or failed for real); on EXISTS someone beat us: attach */
    }
done:
    if (rc < 0) {
        free(st);
        *err = -rc;
        return NULL;
    }
    return st;
}

tlsr_store *tlsr_store_retain(tlsr_store *st)
{
    atomic_fetch_add(&st->refs, 1);
    return st;
}

void tlsr_store_release(tlsr_store *st)
{
    if (st != NULL && atomic_fetch_sub(&st->refs, 1) == 1) {
        local_free_all(st);
        remote_free_all(st);
        tlsr_region_unmap(&st->map);
        pthread_mutex_destroy(&st->local_lock);
        free(st);
    }
}

int tlsr_store_unlink(const char *name)
{
    return tlsr_region_unlink("store", name);
}

int tlsr_store_put(tlsr_store *st, const uint8_t *id, size_t id_len, const uint8_t *der,
                   size_t der_len, int64_t expires_ms, int64_t now_ms)
{
    return put(st, id, id_len, der, der_len, expires_ms, now_ms, 0, PY_LOCK_TIMEOUT_US);
}

int tlsr_store_get(tlsr_store *st, const uint8_t *id, size_t id_len, uint8_t *buf,
                   size_t len, int consume, int64_t now_ms)
{
    return get(st, id, id_len, buf, len, NULL, consume, now_ms, PY_LOCK_TIMEOUT_US, NULL);
}

int tlsr_store_remove(tlsr_store *st, const uint8_t *id, size_t id_len)
{
    return remove_id(st, id, id_len, PY_LOCK_TIMEOUT_US);
}

int tlsr_store_clear(tlsr_store *st)
{
    int rc = store_lock(st, PY_LOCK_TIMEOUT_US);
    if (rc < 0)
        return rc;
    init_layout(st, st->map.size, st->flags);
    store_unlock(st);
    return 0;
}

/* Contract: publishes the new tier (NULL functions: none) in one atomic store,
 * then waits up to REMOTE_DRAIN_MS for callbacks still inside the previous tier.
 * Returns 0, -TLSR_E_NOMEM, or -TLSR_E_BUSY if the old tier was still in use
 * when the wait ran out (a tier that does not bound its own wait). */
int tlsr_store_set_remote(tlsr_store *st, tlsr_remote_get_fn get, tlsr_remote_put_fn put,
                          tlsr_remote_remove_fn remove, void *ctx)
{
    remote_tier *t = NULL, *old;
    int waited;

    if (get != NULL || put != NULL || remove != NULL) {
        if ((t = calloc(1, sizeof *t)) == NULL)
            return -TLSR_E_NOMEM;
        t->get = get;
        t->put = put;
        t->remove = remove;
        t->ctx = ctx;
        t->older = atomic_load(&st->tiers);
        while (!atomic_compare_exchange_weak(&st->tiers, &t->older, t))
            ;
    }
    old = atomic_exchange(&st->remote, t);
    for (waited = 0; old != NULL && atomic_load(&old->inflight) > 0; waited++) {
        struct timespec ms = {0, 1000000};
        if (waited >= REMOTE_DRAIN_MS)
            return -TLSR_E_BUSY;
        nanosleep(&ms, NULL);
    }
    return 0;
}

long tlsr_store_remote_draining(tlsr_store *st)
{
    remote_tier *cur = atomic_load(&st->remote), *t;
    long n = 0;

    /* The tiers list is append-only and its nodes live as long as st. */
    for (t = atomic_load(&st->tiers); t != NULL; t = t->older)
        if (t != cur)
            n += atomic_load(&t->inflight);
    return n;
}

int tlsr_store_get_meta(tlsr_store *st, tlsr_store_meta *out)
{
    store_shm *s = st->shm;
    memset(out, 0, sizeof *out);
    out->size = st->map.size;
    out->slots = s->nslots;
    out->used_slots = s->used_slots;
    out->entries = s->entries;
    out->flags = st->flags;
    out->lock_timeout_us = s->lock_timeout_us;
    out->named = st->map.named;
    out->reinitialised = st->reinitialised;
    out->mlocked = st->map.mlocked;
    return 0;
}

int tlsr_store_relock(tlsr_store *st)
{
    return tlsr_region_relock(&st->map);
}

void tlsr_store_stats(tlsr_store *st, uint64_t *out, size_t n)
{
    size_t i;
    for (i = 0; i < n && i < TLSR_STORE_NCOUNTERS; i++)
        out[i] = atomic_load_explicit(&st->shm->counters[i], memory_order_relaxed);
}

int tlsr_store_set_lock_timeout(tlsr_store *st, int32_t microseconds)
{
    if (microseconds <= 0 || microseconds > 1000000)
        return -TLSR_E_ARG;
    st->shm->lock_timeout_us = microseconds;
    return 0;
}

int tlsr_store_verify(tlsr_store *st)
{
    int rc = store_lock(st, PY_LOCK_TIMEOUT_US);
    if (rc < 0)
        return rc;
    rc = rebuild(st);
    store_unlock(st);
    return rc;
}

#ifdef TLSR_TEST_HOOKS
/* Built only into the tests' module (see testhooks.h). */
int tlsr_store_debug_die_in_put(tlsr_store *st, const uint8_t *id, size_t id_len)
{
    static const uint8_t der[300] = {0x30};
    int rc = store_lock(st, PY_LOCK_TIMEOUT_US);
    if (rc < 0)
        return rc;
    return put_locked(st, id, id_len, der, sizeof der, INT64_MAX, 0, 0, 1);
}
#endif /* TLSR_TEST_HOOKS */

/* ---- OpenSSL callbacks ------------------------------------------------------ */

/* When sess stops being resumable, in ms. Saturating: a session decoded from
 * what the remote tier returned carries whatever times its DER says. */
static int64_t session_expiry_ms(const SSL_SESSION *sess)
{
    return tlsr_time_add(tlsr_s_to_ms(OSSL(SSL_SESSION_get_time)(sess)),
                         tlsr_s_to_ms(OSSL(SSL_SESSION_get_timeout)(sess)));
}

/* OpenSSL's contract: called with a new session the server may cache; return 1
 * if we kept a reference to sess, 0 if not. We copy it (DER), so always 0. */
int tlsr_store_on_new(tlsr_store *st, SSL *s, SSL_SESSION *sess)
{
    unsigned int id_len = 0;
    const unsigned char *id;
    uint8_t local[2048], *der = local;
    unsigned char *p;
    int len;
    int64_t now = tlsr_now_ms(), expires;

    if (st == NULL)
        return 0;
    /* A TLS 1.3 session on a connection with tickets on travels in a stateless
     * ticket and is never looked up by ID: storing it would only push out
     * entries that are (TLS 1.2 session IDs, stateful tickets). */
    if (OSSL(SSL_version)(s) == TLSR_TLS1_3_VERSION &&
        !(OSSL(SSL_get_options)(s) & TLSR_SSL_OP_NO_TICKET))
        return 0;
    id = OSSL(SSL_SESSION_get_id)(sess, &id_len);
    len = OSSL(i2d_SSL_SESSION)(sess, NULL);
    if (id == NULL || id_len == 0 || len <= 0) {
        count(st->shm, TLSR_SC_ERRORS);
        return 0;
    }
    if (len > TLSR_STORE_MAX_DER) {
        count(st->shm, TLSR_SC_OVERSIZE);
        return 0;
    }
    if ((size_t)len > sizeof local && (der = malloc((size_t)len)) == NULL) {
        count(st->shm, TLSR_SC_ERRORS);
        return 0;
    }
    p = der;
    if (OSSL(i2d_SSL_SESSION)(sess, &p) == len) {
        expires = session_expiry_ms(sess);
        put(st, id, id_len, der, (size_t)len, expires, now,
            OSSL(SSL_SESSION_get_protocol_version)(sess) == TLSR_TLS1_3_VERSION ? E_TLS13 : 0,
            timeout_for_callbacks(st));
        remote_tier *t = remote_enter(st);
        if (t != NULL) {
            if (t->put != NULL)
                t->put(t->ctx, id, id_len, der, (size_t)len, expires);
            remote_leave(t);
        }
    } else {
        count(st->shm, TLSR_SC_ERRORS);
    }
    tlsr_wipe(der, (size_t)len);
    if (der != local)
        free(der);
    return 0;
}

/* OpenSSL's contract: return a session for this ID or NULL; *copy = 0 hands
 * OpenSSL our only reference. Anything that goes wrong is a miss. */
static local_entry *local_slot(tlsr_store *st, const uint8_t *id, size_t id_len)
{
    if (st->local == NULL && (st->local = calloc(LOCAL_SLOTS, sizeof *st->local)) == NULL)
        return NULL;
    return &st->local[fnv1a(2166136261u, id, id_len) % LOCAL_SLOTS];
}

/* A new reference to the local decoded copy of id, with its checksum and expiry. */
static SSL_SESSION *local_take(tlsr_store *st, const uint8_t *id, size_t id_len,
                               get_probe *probe)
{
    SSL_SESSION *sess = NULL;
    local_entry *e;

    if (pthread_mutex_trylock(&st->local_lock) != 0)
        return NULL;
    e = local_slot(st, id, id_len);
    /* OpenSSL marks a session object not resumable when a connection using it
     * closes without close_notify; the shared DER is still good, so decode anew. */
    if (e != NULL && e->sess != NULL && e->id_len == id_len && memcmp(e->id, id, id_len) == 0 &&
        OSSL(SSL_SESSION_is_resumable)(e->sess) == 1 && OSSL(SSL_SESSION_up_ref)(e->sess) == 1) {
        sess = e->sess;
        probe->have_local = 1;
        probe->checksum = e->checksum;
        probe->expires_ms = e->expires_ms;
    }
    pthread_mutex_unlock(&st->local_lock);
    return sess;
}

static void local_put(tlsr_store *st, const uint8_t *id, size_t id_len, const get_probe *probe,
                      SSL_SESSION *sess)
{
    local_entry *e;
    SSL_SESSION *old = NULL;

    if (pthread_mutex_trylock(&st->local_lock) != 0)
        return;
    e = local_slot(st, id, id_len);
    if (e != NULL && OSSL(SSL_SESSION_up_ref)(sess) == 1) {
        old = e->sess;
        memcpy(e->id, id, id_len);
        e->id_len = (uint8_t)id_len;
        e->checksum = probe->checksum;
        e->expires_ms = probe->expires_ms;
        e->sess = sess;
    }
    pthread_mutex_unlock(&st->local_lock);
    if (old != NULL)
        OSSL(SSL_SESSION_free)(old);
}

/* Store locally a session the remote tier returned, with the expiry it carries. */
static void remote_backfill(tlsr_store *st, const uint8_t *id, size_t id_len,
                            const uint8_t *der, size_t len)
{
    const unsigned char *p = der;
    SSL_SESSION *sess;
    int64_t expires;

    OSSL(ERR_set_mark)();
    sess = OSSL(d2i_SSL_SESSION)(NULL, &p, (long)len);
    OSSL(ERR_pop_to_mark)();
    if (sess == NULL)
        return;
    expires = session_expiry_ms(sess);
    put(st, id, id_len, der, len, expires, tlsr_now_ms(),
        OSSL(SSL_SESSION_get_protocol_version)(sess) == TLSR_TLS1_3_VERSION ? E_TLS13 : 0,
        timeout_for_callbacks(st));
    OSSL(SSL_SESSION_free)(sess);
}

SSL_SESSION *tlsr_store_on_get(tlsr_store *st, SSL *s, const unsigned char *id, int id_len,
                               int *copy)
{
    uint8_t local[2048], *heap = NULL, *der;
    const unsigned char *p;
    SSL_SESSION *sess, *mine;
    remote_tier *tier = NULL;
    get_probe probe;
    unsigned int got_len = 0;
    const unsigned char *got;
    int len;

    *copy = 0;
    if (st == NULL || id_len <= 0 || id_len > TLSR_STORE_MAX_ID)
        return NULL;
    memset(&probe, 0, sizeof probe);
    mine = local_take(st, id, (size_t)id_len, &probe);
    len = get(st, id, (size_t)id_len, local, sizeof local, &heap,
              (st->flags & TLSR_STORE_SINGLE_USE) ? 2 : 0, tlsr_now_ms(),
              timeout_for_callbacks(st), &probe);
    if (len > 0 && probe.unchanged)
        return mine; /* our reference goes to OpenSSL (*copy = 0) */
    if (mine != NULL)
        OSSL(SSL_SESSION_free)(mine);
    if (len == 0 && (tier = remote_enter(st)) != NULL) {
        /* Local miss: ask the remote tier (it bounds its own wait), and keep what it
         * returns locally so the next lookup on this machine is local. The remote
         * tier cannot honour single use across machines; it is not consulted for
         * single-use stores. */
        int asked = tier->get != NULL;
        if (asked && !(st->flags & TLSR_STORE_SINGLE_USE))
            len = tier->get(tier->ctx, id, (size_t)id_len, local, sizeof local);
        remote_leave(tier);
        if (asked)
            count(st->shm, len > 0 ? TLSR_SC_REMOTE_HITS : TLSR_SC_REMOTE_MISSES);
        if (len > 0 && (size_t)len <= sizeof local)
            remote_backfill(st, id, (size_t)id_len, local, (size_t)len);
        else
            len = 0;
    }
    if (len <= 0)
        return NULL;
    der = heap != NULL ? heap : local;
    p = der;
    OSSL(ERR_set_mark)();
    sess = OSSL(d2i_SSL_SESSION)(NULL, &p, len);
    OSSL(ERR_pop_to_mark)();
    tlsr_wipe(der, (size_t)len);
    free(heap);
    if (sess == NULL) {
        count(st->shm, TLSR_SC_ERRORS);
        return NULL;
    }
    /* Belt and braces: the session must be the one asked for. */
    got = OSSL(SSL_SESSION_get_id)(sess, &got_len);
    if (got == NULL || got_len != (unsigned int)id_len || memcmp(got, id, got_len) != 0) {
        OSSL(SSL_SESSION_free)(sess);
        count(st->shm, TLSR_SC_ERRORS);
        return NULL;
    }
    if (!probe.consumed)
        local_put(st, id, (size_t)id_len, &probe, sess);
    return sess;
}

/* OpenSSL calls this when it drops a session from a cache, including on every
 * SSL_free of a connection that closed without close_notify. Most Python
 * servers close that way, so we keep the session (it is still good): eviction
 * is by expiry, LRU and proven fatal alerts only (info_cb). */
void tlsr_store_on_remove(tlsr_store *st, SSL_SESSION *sess)
{
    (void)sess;
    if (st != NULL)
        count(st->shm, TLSR_SC_KEPT_ON_UNCLEAN_CLOSE);
}

/* Alerts a server sends in answer to record bytes that failed authentication or
 * framing (bad_record_mac, decryption_failed, record_overflow, and
 * protocol_version, which after the handshake only the record header check
 * sends): anyone who can inject bytes into the connection can provoke them. */
static int answers_unauthenticated_bytes(int description)
{
    return description == 20 || description == 21 || description == 22 || description == 70;
}

/* Whether a fatal alert on s proves that the session must not be resumed again.
 * The session ID travels in clear in a TLS 1.2 ServerHello, so anyone who saw it
 * can send a ClientHello carrying it and then a plaintext fatal alert: if that
 * removed the session, a passive observer could make every later connection of
 * the victim a full handshake on every worker and machine. So an alert counts
 * only once the handshake has finished (both Finished messages verified, which
 * on a resumed connection proves the peer holds the session's master secret):
 * a received alert then came through the record layer's authentication, and a
 * sent one is the server's own verdict, unless it merely answers bytes that
 * failed authentication (see above). Alerts during a handshake cost at most that
 * connection. */
static int alert_is_proven(const SSL *s, int where, int description)
{
    if (!OSSL(SSL_is_init_finished)(s))
        return 0;
    if ((where & TLSR_SSL_CB_WRITE) && answers_unauthenticated_bytes(description))
        return 0;
    return 1;
}

/* The store's part of the server info callback (ctx.c): a fatal alert proven by
 * alert_is_proven means the session must not be resumed again; drop it from the
 * store and the remote tier. OpenSSL calls this inside SSL_read/SSL_write/
 * SSL_do_handshake; it returns nothing and must not fail the connection. */
void tlsr_store_on_info(tlsr_store *st, const SSL *s, int where, int ret)
{
    SSL_SESSION *sess;
    const unsigned char *id;
    unsigned int id_len = 0;

    if (!(where & TLSR_SSL_CB_ALERT) || ((ret >> 8) & 0xff) != 2 /* fatal */)
        return;
    if (st == NULL || (sess = OSSL(SSL_get_session)(s)) == NULL)
        return;
    if (!alert_is_proven(s, where, ret & 0xff)) {
        count(st->shm, TLSR_SC_KEPT_ON_UNPROVEN_ALERT);
        return;
    }
    id = OSSL(SSL_SESSION_get_id)(sess, &id_len);
    if (id != NULL && id_len > 0) {
        remove_id(st, id, id_len, timeout_for_callbacks(st));
        remote_tier *t = remote_enter(st);
        if (t != NULL) {
            if (t->remove != NULL)
                t->remove(t->ctx, id, id_len);
            remote_leave(t);
        }
    }
}

int tlsr_session_der_size(SSL_SESSION *sess)
{
    return tlsr_ossl.bound && sess != NULL ? OSSL(i2d_SSL_SESSION)(sess, NULL) : -1;
}
