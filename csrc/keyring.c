/*
 * keyring.c - the session-ticket key ring in shared memory, and the OpenSSL
 * ticket key callback that reads it.
 *
 * One file: the seqlock readers, the writers and the callback share the ring's
 * private layout, which no other file may see.
 *
 * Layout: the ring's state exists twice (st[0], st[1]); `active` says which one
 * readers use. A writer (under the region's robust lock) only ever writes the
 * inactive copy: it marks it odd in its sequence counter, copies the active state
 * over it, applies the change, marks it even, publishes it as active, then mirrors
 * it into the other copy so no wiped key survives there. Readers copy what they
 * need from the active state and retry if its sequence moved: they never block,
 * and a writer that dies mid-write leaves the active copy intact.
 *
 * Roles: one CURRENT key encrypts; the NEXT key (pre-published) and RETIRED keys
 * within their acceptance window decrypt. Rotation: NEXT becomes CURRENT, CURRENT
 * becomes RETIRED, a fresh NEXT is drawn. Whichever process first sees the
 * rotation due (in the callback or from Python) performs it with a try-lock.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define RING_KIND 1
#define RING_VERSION 3      /* 3: fourteen counters, the repair gate */
#define GRAVE_SLOTS 32
#define READ_TRIES 64
#define NEVER INT64_MAX
#define DEFAULT_PERIOD_MS (3600LL * 1000)
#define CFG_SALT 0x5453524b /* "TSRK" */
#define CLOCK_SLACK_MS (300LL * 1000)

typedef struct {
    uint64_t generation;
    int64_t period_ms;
    int64_t window_ms;          /* < 0: retired keys never expire by time */
    int64_t due_ms;
    uint32_t flags;
    uint32_t config_check;      /* cfg_sum of period, window and flags */
    int32_t current;            /* slot of the CURRENT key, -1 if none */
    tlsr_key_info slots[TLSR_RING_SLOTS];
    uint8_t grave[GRAVE_SLOTS][TLSR_NAME_LEN]; /* names of wiped keys, for stats */
    uint32_t grave_next;
    uint32_t grave_count;
} ring_state;

typedef struct {
    tlsr_region_hdr hdr;
    _Atomic uint32_t active;
    _Atomic uint32_t repair_gate;  /* pid re-initialising a lock nobody holds */
    _Atomic uint64_t seq[2];
    _Atomic uint64_t counters[TLSR_RING_NCOUNTERS];
    ring_state st[2];
} ring_shm;

struct tlsr_ring {
    _Atomic long refs;
    tlsr_map map;
    ring_shm *shm;
};

static void count(ring_shm *r, int which)
{
    atomic_fetch_add_explicit(&r->counters[which], 1, memory_order_relaxed);
}

/* Which copy is active. Masked: the word lives in shared memory another process
 * may have scribbled on, and it indexes st[2]. */
static uint32_t active_of(ring_shm *r, memory_order order)
{
    return atomic_load_explicit(&r->active, order) & 1u;
}

/* ---- pure state operations (called on a private copy under the lock) ------- */

static void grave_add(ring_state *s, const uint8_t *name)
{
    uint32_t at = s->grave_next % GRAVE_SLOTS; /* from shared memory: bound it */

    memcpy(s->grave[at], name, TLSR_NAME_LEN);
    s->grave_next = (at + 1) % GRAVE_SLOTS;
    if (s->grave_count < GRAVE_SLOTS)
        s->grave_count++;
}

static void slot_wipe(ring_state *s, int i)
{
    if (s->slots[i].role != TLSR_KEY_FREE)
        grave_add(s, s->slots[i].name);
    tlsr_wipe(&s->slots[i], sizeof s->slots[i]);
}

static int retired_expired(const ring_state *s, const tlsr_key_info *k, int64_t now)
{
    return k->role == TLSR_KEY_RETIRED && s->window_ms >= 0 &&
           now >= tlsr_time_add(k->retired_ms, s->window_ms);
}

static void recompute_due(ring_state *s)
{
    int64_t due = NEVER;
    int i;

    if ((s->flags & TLSR_RING_AUTO_ROTATE) && s->current >= 0)
        due = tlsr_time_add(s->slots[s->current].activated_ms, s->period_ms);
    for (i = 0; i < TLSR_RING_SLOTS; i++) {
        const tlsr_key_info *k = &s->slots[i];
        if (k->role == TLSR_KEY_RETIRED && s->window_ms >= 0 &&
            tlsr_time_add(k->retired_ms, s->window_ms) < due)
            due = tlsr_time_add(k->retired_ms, s->window_ms);
    }
    s->due_ms = due;
}

static int find_role(const ring_state *s, uint32_t role)
{
    int i;
    for (i = 0; i < TLSR_RING_SLOTS; i++)
        if (s->slots[i].role == role)
            return i;
    return -1;
}

/* A free slot, evicting the oldest retired key if the ring is full. */
static int take_slot(ring_state *s)
{
    int i, oldest = -1;

    if ((i = find_role(s, TLSR_KEY_FREE)) >= 0)
        return i;
    for (i = 0; i < TLSR_RING_SLOTS; i++)
        if (s->slots[i].role == TLSR_KEY_RETIRED &&
            (oldest < 0 || s->slots[i].retired_ms < s->slots[oldest].retired_ms))
            oldest = i;
    if (oldest >= 0)
        slot_wipe(s, oldest);
    return oldest;
}

static int fresh_key(ring_state *s, uint32_t secret_len, int64_t now, uint32_t role)
{
    int i = take_slot(s);
    tlsr_key_info *k;

    if (i < 0)
        return -1;
    k = &s->slots[i];
    memset(k, 0, sizeof *k);
    if (OSSL(RAND_bytes)(k->name, TLSR_NAME_LEN) != 1 ||
        OSSL(RAND_bytes)(k->hmac, (int)secret_len) != 1 ||
        OSSL(RAND_bytes)(k->aes, (int)secret_len) != 1) {
        tlsr_wipe(k, sizeof *k);
        return -1;
    }
    k->secret_len = secret_len;
    k->created_ms = now;
    k->role = role;
    if (role == TLSR_KEY_CURRENT)
        k->activated_ms = now;
    return i;
}

/* Wipe retired keys past their window; rotate if due or forced.
 * Returns 1 if anything changed, 0 if not, -1 if randomness failed. */
static int state_maintain(ring_state *s, int64_t now, int force, int *rotated)
{
    int i, changed = 0, next;
    uint32_t secret_len = 32;

    *rotated = 0;
    for (i = 0; i < TLSR_RING_SLOTS; i++)
        if (retired_expired(s, &s->slots[i], now)) {
            slot_wipe(s, i);
            changed = 1;
        }
    if (s->current >= 0 && s->slots[s->current].secret_len == 16)
        secret_len = 16; /* else 32: never a length read from shared memory */
    if (force || s->current < 0 ||
        ((s->flags & TLSR_RING_AUTO_ROTATE) &&
         now >= tlsr_time_add(s->slots[s->current].activated_ms, s->period_ms))) {
        next = find_role(s, TLSR_KEY_NEXT);
        if (next < 0 && (next = fresh_key(s, secret_len, now, TLSR_KEY_NEXT)) < 0)
            return -1;
        if (s->current >= 0) {
            tlsr_key_info *old = &s->slots[s->current];
            old->role = TLSR_KEY_RETIRED;
            old->retired_ms = now;
            if (s->window_ms == 0)
                slot_wipe(s, s->current);
        }
        s->slots[next].role = TLSR_KEY_CURRENT;
        s->slots[next].activated_ms = now;
        s->current = next;
        if (fresh_key(s, secret_len, now, TLSR_KEY_NEXT) < 0)
            return -1;
        *rotated = 1;
        changed = 1;
    }
    if (changed)
        recompute_due(s);
    return changed;
}

/* ---- seqlock writer -------------------------------------------------------- */

typedef int (*state_fn)(ring_state *s, void *arg);

/* The writer's copy came from shared memory: make the fields used as indices or
 * lengths safe before any state function trusts them. A CURRENT index that does
 * not name the CURRENT key is looked up again (-1 if there is none: the next
 * maintain draws one); a key with an impossible secret length is dropped. */
/* The ring's configuration carries a check word that every writer sets: any
 * period, window and flags are legitimate (a period near INT64_MAX means "never
 * rotate"), so only the check tells bytes written over the region from a
 * configuration someone chose. */
static uint32_t cfg_sum(int64_t period, int64_t window, uint32_t flags)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ CFG_SALT;
    h = (h ^ (uint64_t)period) * 0x100000001b3ULL;
    h = (h ^ (uint64_t)window) * 0x100000001b3ULL;
    h = (h ^ flags) * 0x100000001b3ULL;
    h ^= h >> 29;
    return (uint32_t)(h ^ (h >> 32));
}

static int cfg_ok(int64_t period, int64_t window, uint32_t flags, uint32_t check)
{
    return period > 0 && window >= -1 && !(flags & ~(uint32_t)TLSR_RING_AUTO_ROTATE) &&
           check == cfg_sum(period, window, flags);
}

static void cfg_seal(ring_state *s)
{
    s->config_check = cfg_sum(s->period_ms, s->window_ms, s->flags);
}

/* Returns how many fields it had to fix (0 for a state only we wrote). Times
 * further in the future than a period (plus CLOCK_SLACK_MS for the clocks of a
 * fleet's machines) are damage too: a key "activated" next year would encrypt
 * until then, so it is made due at once. */
static int state_sanitize(ring_state *s, int64_t spare_period, int64_t spare_window,
                          uint32_t spare_flags, uint32_t spare_check, int64_t now,
                          int *config_hit)
{
    int i, fixed = 0, current;
    int64_t latest;

    if (!cfg_ok(s->period_ms, s->window_ms, s->flags, s->config_check)) {
        /* Take the configuration from the other copy if it is intact; else the
         * defaults, rotating (the forward-secrecy bound needs rotation). A
         * configuration written over says the region was: *config_hit tells the
         * writer to restart the counters, whose values are then noise. */
        if (cfg_ok(spare_period, spare_window, spare_flags, spare_check)) {
            s->period_ms = spare_period;
            s->window_ms = spare_window;
            s->flags = spare_flags;
        } else {
            s->period_ms = DEFAULT_PERIOD_MS;
            s->window_ms = 2 * DEFAULT_PERIOD_MS;
            s->flags = TLSR_RING_AUTO_ROTATE;
        }
        cfg_seal(s);
        *config_hit = 1;
        fixed++;
    }
    latest = tlsr_time_add(now, tlsr_time_add(s->period_ms, CLOCK_SLACK_MS));
    for (i = 0; i < TLSR_RING_SLOTS; i++) {
        tlsr_key_info *k = &s->slots[i];
        if (k->role == TLSR_KEY_FREE) {
            /* A free slot holds nothing: wiping it again costs ~100 bytes and leaves
             * no key material that a scribble or a lost wipe put there. */
            tlsr_wipe(k, sizeof *k);
            continue;
        }
        if (k->role > TLSR_KEY_RETIRED || (k->secret_len != 16 && k->secret_len != 32)) {
            tlsr_wipe(k, sizeof *k);
            fixed++;
            continue;
        }
        if (k->activated_ms < 0 || k->activated_ms > latest) {
            k->activated_ms = 0; /* due at once: the next maintain rotates it out */
            fixed++;
        }
        if (k->retired_ms < 0 || k->retired_ms > latest) {
            k->retired_ms = 0;
            fixed++;
        }
    }
    current = s->current;
    if (current < 0 || current >= TLSR_RING_SLOTS || s->slots[current].role != TLSR_KEY_CURRENT)
        current = find_role(s, TLSR_KEY_CURRENT);
    fixed += current != s->current;
    s->current = current;
    if (s->grave_next >= GRAVE_SLOTS || s->grave_count > GRAVE_SLOTS) {
        s->grave_next %= GRAVE_SLOTS;
        if (s->grave_count > GRAVE_SLOTS)
            s->grave_count = GRAVE_SLOTS;
        fixed++;
    }
    {
        int64_t due = s->due_ms;
        recompute_due(s); /* derived: never trusted from shared memory */
        fixed += due != s->due_ms;
    }
    return fixed;
}

static void repair(ring_shm *r)
{
    uint32_t a = active_of(r, memory_order_relaxed);
    uint32_t b = 1 - a;
    uint64_t sb = atomic_load_explicit(&r->seq[b], memory_order_relaxed);

    /* Only the inactive copy can be half written; rebuild it from the active one. */
    if (sb & 1) {
        memcpy(&r->st[b], &r->st[a], sizeof r->st[b]);
        atomic_store_explicit(&r->seq[b], sb + 1, memory_order_release);
    }
    count(r, TLSR_RC_LOCK_RECOVERIES);
}

/* Under the lock no writer is mid-copy, so an odd sequence on the active copy is
 * damage: readers would retry it forever. Make it even; the write that follows
 * sanitises what it guards. */
static int even_out(ring_shm *r)
{
    uint32_t a = active_of(r, memory_order_relaxed);
    uint64_t sa = atomic_load_explicit(&r->seq[a], memory_order_relaxed);

    if (!(sa & 1))
        return 0;
    atomic_store_explicit(&r->seq[a], sa + 1, memory_order_release);
    return 1;
}

static void copy_into(ring_shm *r, uint32_t dst, uint32_t src)
{
    uint64_t s = atomic_load_explicit(&r->seq[dst], memory_order_relaxed) | 1;
    atomic_store_explicit(&r->seq[dst], s, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    memcpy(&r->st[dst], &r->st[src], sizeof r->st[dst]);
    atomic_store_explicit(&r->seq[dst], s + 1, memory_order_release);
}

/* Apply fn to the ring's state under the lock. fn returns >0 if it changed the
 * state, 0 if not, <0 on failure (the change is discarded). */
static int ring_write(tlsr_ring *ring, int timeout_ms, int64_t now, state_fn fn, void *arg)
{
    ring_shm *r = ring->shm;
    uint32_t a, b;
    uint64_t sb;
    int recovered, rc, fixed = 0, config_hit = 0, seq_fixed, header_fixed, i;
    int64_t spare_period, spare_window;
    uint32_t spare_flags, spare_check;

    if ((rc = tlsr_lock_gated(&r->hdr.lock, &r->repair_gate, (int64_t)timeout_ms * 1000,
                              &recovered)) < 0)
        return rc;
    if (recovered)
        repair(r);
    seq_fixed = even_out(r);
    header_fixed = tlsr_region_reidentify(&r->hdr, RING_KIND, RING_VERSION, ring->map.size);
    a = active_of(r, memory_order_relaxed);
    b = 1 - a;
    sb = atomic_load_explicit(&r->seq[b], memory_order_relaxed) | 1;
    atomic_store_explicit(&r->seq[b], sb, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
    /* b is the mirror of a (repair() rebuilt it if a writer died in it): keep its
     * configuration as a spare for the sanitiser before a's content covers it. */
    spare_period = r->st[b].period_ms;
    spare_window = r->st[b].window_ms;
    spare_flags = r->st[b].flags;
    spare_check = r->st[b].config_check;
    memcpy(&r->st[b], &r->st[a], sizeof r->st[b]);
    if (state_sanitize(&r->st[b], spare_period, spare_window, spare_flags, spare_check, now,
                       &config_hit) > 0) {
        if (config_hit)
            for (i = 0; i < TLSR_RING_NCOUNTERS; i++)
                atomic_store_explicit(&r->counters[i], 0, memory_order_relaxed);
        count(r, TLSR_RC_REPAIRED_STATE);
        fixed = 1;
    }
    if (recovered == 2)
        count(r, TLSR_RC_REPAIRED_LOCK);
    if (seq_fixed)
        count(r, TLSR_RC_REPAIRED_SEQUENCE);
    if (header_fixed)
        count(r, TLSR_RC_REPAIRED_STATE);
    rc = fn(&r->st[b], arg);
    cfg_seal(&r->st[b]);
    if (rc == 0 && fixed)
        rc = 1; /* publish the repaired state even if fn changed nothing */
    if (rc <= 0) {
        /* Nothing to publish: restore b to a's content (fn may have scribbled). */
        memcpy(&r->st[b], &r->st[a], sizeof r->st[b]);
        atomic_store_explicit(&r->seq[b], sb + 1, memory_order_release);
        tlsr_unlock(&r->hdr.lock);
        return rc < 0 ? -TLSR_E_OPENSSL : 0;
    }
    r->st[b].generation++;
    atomic_store_explicit(&r->seq[b], sb + 1, memory_order_release);
    atomic_store_explicit(&r->active, b, memory_order_release);
    copy_into(r, a, b); /* the old copy must not keep wiped keys */
    tlsr_unlock(&r->hdr.lock);
    return 1;
}

/* ---- seqlock readers ------------------------------------------------------- */

#define READ_BEGIN(r, st_ptr, s1)                                           \
    for (int try_ = 0; try_ < READ_TRIES; try_++) {                         \
        uint32_t a_ = active_of((r), memory_order_acquire);                 \
        uint64_t s1 = atomic_load_explicit(&(r)->seq[a_], memory_order_acquire); \
        const ring_state *st_ptr = &(r)->st[a_];                            \
        if (s1 & 1)                                                         \
            continue;
#define READ_END(r, s1, on_ok)                                              \
        atomic_thread_fence(memory_order_acquire);                          \
        if (atomic_load_explicit(&(r)->seq[a_], memory_order_relaxed) == s1) { \
            on_ok;                                                          \
        }                                                                   \
    }

/* A key the callback may hand to OpenSSL: its secret length is one we made. */
static int key_usable(const tlsr_key_info *k)
{
    return k->secret_len == 16 || k->secret_len == 32;
}

/* The CURRENT key and the state's due time. 1: found, 0: no current key,
 * -1: the state kept moving (a writer is busy); the caller treats it as failure.
 * Readers race writers (the sequence check comes last), so everything read is
 * bounded before use, whatever another process left in the region. */
typedef struct {
    int64_t due_ms, period_ms, window_ms;
    uint32_t flags, check;
} ring_view;

static int read_current(ring_shm *r, tlsr_key_info *out, ring_view *v)
{
    READ_BEGIN(r, s, seq1)
        int cur = s->current;
        ring_view got = {s->due_ms, s->period_ms, s->window_ms, s->flags, s->config_check};
        if (cur >= 0 && cur < TLSR_RING_SLOTS)
            memcpy(out, &s->slots[cur], sizeof *out);
    READ_END(r, seq1, {
        *v = got;
        return cur >= 0 && cur < TLSR_RING_SLOTS && key_usable(out);
    })
    return -1;
}

/* What a reader can check of a snapshot without the lock: the fields a writer
 * would have left in bounds. A snapshot that fails is damage for the writer's
 * sanitiser to repair (the ticket is still issued if the key itself is usable). */
static int view_plausible(const ring_view *v, const tlsr_key_info *k, int64_t now)
{
    if (!cfg_ok(v->period_ms, v->window_ms, v->flags, v->check) || k->activated_ms < 0 ||
        k->activated_ms > tlsr_time_add(now, tlsr_time_add(v->period_ms, CLOCK_SLACK_MS)))
        return 0;
    /* An auto-rotating ring is due no later than its current key's period. */
    return !(v->flags & TLSR_RING_AUTO_ROTATE) ||
           v->due_ms <= tlsr_time_add(k->activated_ms, v->period_ms);
}

/* The current key has encrypted for its period and the whole window after it:
 * the ring could not rotate (a wedged lock, a writer that keeps failing). */
static int key_stale(const ring_view *v, const tlsr_key_info *k, int64_t now)
{
    int64_t window = v->window_ms > 0 ? v->window_ms : 0;
    return (v->flags & TLSR_RING_AUTO_ROTATE) &&
           now >= tlsr_time_add(k->activated_ms, tlsr_time_add(v->period_ms, window));
}

enum { LOOK_CURRENT = 1, LOOK_OTHER = 2, LOOK_EXPIRED = 3, LOOK_UNKNOWN = 4, LOOK_BUSY = -1 };

static int read_lookup(ring_shm *r, const uint8_t *name, int64_t now, tlsr_key_info *out)
{
    READ_BEGIN(r, s, seq1)
        int verdict = LOOK_UNKNOWN, i;
        for (i = 0; i < TLSR_RING_SLOTS; i++) {
            const tlsr_key_info *k = &s->slots[i];
            if (k->role == TLSR_KEY_FREE || memcmp(k->name, name, TLSR_NAME_LEN) != 0)
                continue;
            if (retired_expired(s, k, now)) {
                verdict = LOOK_EXPIRED;
            } else if (!key_usable(k)) {
                verdict = LOOK_BUSY; /* not a key we made: never decrypt with it */
            } else {
                memcpy(out, k, sizeof *out);
                verdict = k->role == TLSR_KEY_CURRENT ? LOOK_CURRENT : LOOK_OTHER;
            }
            break;
        }
        if (verdict == LOOK_UNKNOWN)
            for (i = 0; i < (int)s->grave_count && i < GRAVE_SLOTS; i++)
                if (memcmp(s->grave[i], name, TLSR_NAME_LEN) == 0) {
                    verdict = LOOK_EXPIRED;
                    break;
                }
    READ_END(r, seq1, return verdict)
    return LOOK_BUSY;
}

/* ---- the OpenSSL ticket key callback --------------------------------------- */


static const EVP_CIPHER *cipher_for(const tlsr_key_info *k)
{
    return k->secret_len == 16 ? OSSL(EVP_aes_128_cbc)() : OSSL(EVP_aes_256_cbc)();
}

static int mac_init(EVP_MAC_CTX *hctx, tlsr_key_info *k)
{
    static char digest[] = "SHA256";
    OSSL_PARAM p[3];

    p[0] = OSSL(OSSL_PARAM_construct_octet_string)("key", k->hmac, k->secret_len);
    p[1] = OSSL(OSSL_PARAM_construct_utf8_string)("digest", digest, 0);
    p[2] = OSSL(OSSL_PARAM_construct_end)();
    return OSSL(EVP_MAC_CTX_set_params)(hctx, p) == 1;
}

/*
 * OpenSSL's contract (SSL_CTX_set_tlsext_ticket_key_evp_cb(3)):
 *   enc = 1: fill key_name and iv, initialise cctx for encryption and hctx's key;
 *            return 1 to issue a ticket, 0 to issue none, < 0 for a fatal error.
 *   enc = 0: find the key named key_name, initialise cctx for decryption and hctx;
 *            return 1 to accept, 2 to accept and issue a fresh ticket, 0 if the key
 *            is unknown (full handshake), < 0 for a fatal error.
 * We never return < 0: whatever goes wrong here costs a full handshake, not the
 * connection. Runs in C with the GIL released by CPython around the handshake.
 */
/* ---- counting real resumptions ---------------------------------------------
 *
 * The ticket callback only finds a key; whether the handshake resumes is decided
 * after it. So the callback marks the connection (its own SSL ex_data slot, never
 * slot 0, which is CPython's) with the role of the key it found, and the server's
 * info callback, at handshake done, counts a resumption if SSL_session_reused
 * says so. The mark is then spent: OpenSSL signals handshake done again after
 * each TLS 1.3 NewSessionTicket, and that must not count twice.
 */

#define MARK_CURRENT ((void *)(uintptr_t)1)
#define MARK_OLDER ((void *)(uintptr_t)2)
#define MARK_SPENT ((void *)(uintptr_t)3)

static pthread_once_t mark_once = PTHREAD_ONCE_INIT;
static int mark_index = -1;

static void alloc_mark_index(void)
{
    int i = OSSL(CRYPTO_get_ex_new_index)(TLSR_CRYPTO_EX_INDEX_SSL, 0, NULL, NULL, NULL,
                                          NULL);
    mark_index = i > 0 ? i : -1;
}

/* Remember on s which key its ticket was found under. Failure costs only the count. */
static void mark_ticket(SSL *s, void *mark)
{
    pthread_once(&mark_once, alloc_mark_index);
    if (mark_index > 0)
        OSSL(SSL_set_ex_data)(s, mark_index, mark);
}

/* Called by the server info callback at SSL_CB_HANDSHAKE_DONE: count s as resumed
 * under its ticket's key if it carries a mark and OpenSSL resumed its session.
 * Constant work; never fails the connection. */
void tlsr_ring_handshake_done(tlsr_ring *ring, const SSL *s)
{
    void *mark;

    if (mark_index <= 0 || (mark = OSSL(SSL_get_ex_data)(s, mark_index)) == NULL ||
        mark == MARK_SPENT)
        return;
    OSSL(SSL_set_ex_data)((SSL *)s, mark_index, MARK_SPENT);
    if (ring == NULL || OSSL(SSL_session_reused)(s) != 1)
        return;
    count(ring->shm, mark == MARK_CURRENT ? TLSR_RC_RESUMED_CURRENT
                                          : TLSR_RC_RESUMED_OLDER_KEY);
}

static int write_now(tlsr_ring *ring, int64_t now, int force);

int tlsr_ring_on_ticket(tlsr_ring *ring, SSL *s, unsigned char *key_name, unsigned char *iv,
                        EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc)
{
    tlsr_key_info k;
    ring_view v;
    int64_t now;
    int rc = 0, got, look;
    ring_shm *r;

    if (ring == NULL)
        return 0;
    r = ring->shm;
    now = tlsr_now_ms();
    memset(&k, 0, sizeof k);
    OSSL(ERR_set_mark)();
    if (enc) {
        got = read_current(r, &k, &v);
        /* got == 0: no usable CURRENT key; got == -1: the sequence never settled
         * (odd for good); or a snapshot out of bounds: all only damage to the
         * region causes. A write (under a try-lock; it evens the sequence and
         * sanitises the state, drawing a key if none) repairs it; else rotate
         * when due. */
        if (got != 1 || !view_plausible(&v, &k, now) || r->hdr.magic != TLSR_REGION_MAGIC ||
            r->hdr.kind != RING_KIND || r->hdr.version != RING_VERSION ||
            r->hdr.size != ring->map.size) {
            if (write_now(ring, now, got == 0) == 1)
                got = read_current(r, &k, &v);
        } else if (now >= v.due_ms && tlsr_ring_maintain(ring, now, 0, 0) == 1) {
            got = read_current(r, &k, &v);
        }
        if (got == 1 && key_stale(&v, &k, now)) {
            count(r, TLSR_RC_WITHHELD_STALE_KEY); /* no ticket: a full handshake next time */
            goto out;
        }
        if (got != 1 || OSSL(RAND_bytes)(iv, 16) != 1 ||
            OSSL(EVP_EncryptInit_ex)(cctx, cipher_for(&k), NULL, k.aes, iv) != 1 ||
            !mac_init(hctx, &k))
            goto fail;
        memcpy(key_name, k.name, TLSR_NAME_LEN);
        count(r, TLSR_RC_TICKETS_ISSUED);
        rc = 1;
    } else {
        look = read_lookup(r, key_name, now, &k);
        if (look == LOOK_BUSY && write_now(ring, now, 0) == 1)
            look = read_lookup(r, key_name, now, &k); /* repaired: one more look */
        switch (look) {
        case LOOK_CURRENT:
        case LOOK_OTHER:
            break;
        case LOOK_EXPIRED:
            count(r, TLSR_RC_REJECTED_EXPIRED);
            goto out;
        case LOOK_UNKNOWN:
            count(r, TLSR_RC_REJECTED_UNKNOWN);
            goto out;
        default:
            goto fail;
        }
        if (OSSL(EVP_DecryptInit_ex)(cctx, cipher_for(&k), NULL, k.aes, iv) != 1 ||
            !mac_init(hctx, &k))
            goto fail;
        /* TLS 1.3: always a fresh ticket (clients use each once, and resumption
         * runs (EC)DHE, so the new ticket under the current key exposes nothing
         * recorded). TLS 1.2: never renew. A renewed 1.2 ticket would carry the
         * same master secret under a newer key, so stealing that key would expose
         * sessions that began before it existed; left under its own key, a session
         * is exposed only by the key that was current when it began, and it
         * resumes until its lifetime ends as long as the acceptance window covers
         * the session timeout (install() warns when it does not). */
        if (OSSL(SSL_version)(s) == TLSR_TLS1_3_VERSION)
            rc = 2;
        else
            rc = 1;
        /* OpenSSL has yet to check the HMAC and the session (its sid_ctx, its
         * lifetime): count a resumption only when the handshake finishes resumed
         * (tlsr_ring_handshake_done). */
        count(r, k.role == TLSR_KEY_CURRENT ? TLSR_RC_KEY_FOUND_CURRENT
                                            : TLSR_RC_KEY_FOUND_OLDER_KEY);
        mark_ticket(s, k.role == TLSR_KEY_CURRENT ? MARK_CURRENT : MARK_OLDER);
    }
    goto out;
fail:
    count(r, TLSR_RC_ERRORS);
    rc = 0;
out:
    OSSL(ERR_pop_to_mark)();
    tlsr_wipe(&k, sizeof k);
    return rc;
}

/* ---- public ring API ------------------------------------------------------- */

static ring_state *active_state(ring_shm *r)
{
    return &r->st[active_of(r, memory_order_acquire)];
}

tlsr_ring *tlsr_ring_create(const char *name, int64_t period_ms, int64_t window_ms,
                            uint32_t flags, int64_t now_ms, int *err)
{
    tlsr_ring *ring;
    ring_shm *r;
    ring_state *s;
    int rc, unused;

    if (!tlsr_ossl.bound) {
        *err = TLSR_E_UNBOUND;
        return NULL;
    }
    if (period_ms <= 0) {
        *err = TLSR_E_ARG;
        return NULL;
    }
    ring = calloc(1, sizeof *ring);
    if (ring == NULL) {
        *err = TLSR_E_NOMEM;
        return NULL;
    }
    rc = tlsr_region_create("ring", name, sizeof(ring_shm), 1, &ring->map);
    if (rc < 0) {
        free(ring);
        *err = -rc;
        return NULL;
    }
    r = ring->shm = ring->map.base;
    if (tlsr_lock_init(&r->hdr.lock) < 0)
        goto fail_sys;
    s = &r->st[0];
    s->period_ms = period_ms;
    s->window_ms = window_ms;
    s->flags = flags;
    cfg_seal(s);
    s->current = -1;
    if (state_maintain(s, now_ms, 1, &unused) < 0) {
        *err = TLSR_E_OPENSSL;
        goto fail;
    }
    s->generation = 1;
    memcpy(&r->st[1], s, sizeof *s);
    atomic_store(&ring->refs, 1);
    tlsr_region_publish(&r->hdr, RING_KIND, RING_VERSION, ring->map.size);
    return ring;
fail_sys:
    *err = TLSR_E_SYS;
fail:
    tlsr_wipe(r->st, sizeof r->st);
    if (name != NULL)
        tlsr_region_unlink("ring", name);
    tlsr_region_unmap(&ring->map);
    free(ring);
    return NULL;
}

tlsr_ring *tlsr_ring_attach(const char *name, int *err)
{
    tlsr_ring *ring;
    int rc;

    if (!tlsr_ossl.bound) {
        *err = TLSR_E_UNBOUND;
        return NULL;
    }
    ring = calloc(1, sizeof *ring);
    if (ring == NULL) {
        *err = TLSR_E_NOMEM;
        return NULL;
    }
    rc = tlsr_region_attach("ring", name, RING_KIND, RING_VERSION, 1, &ring->map);
    if (rc < 0) {
        free(ring);
        *err = -rc;
        return NULL;
    }
    ring->shm = ring->map.base;
    atomic_store(&ring->refs, 1);
    return ring;
}

int tlsr_ring_unlink(const char *name)
{
    return tlsr_region_unlink("ring", name);
}

tlsr_ring *tlsr_ring_retain(tlsr_ring *ring)
{
    atomic_fetch_add(&ring->refs, 1);
    return ring;
}

int tlsr_ring_relock(tlsr_ring *ring)
{
    return tlsr_region_relock(&ring->map);
}

void tlsr_ring_release(tlsr_ring *ring)
{
    if (ring != NULL && atomic_fetch_sub(&ring->refs, 1) == 1) {
        tlsr_region_unmap(&ring->map);
        free(ring);
    }
}

struct maintain_arg {
    int64_t now;
    int force;
    int rotated;
};

static int maintain_fn(ring_state *s, void *p)
{
    struct maintain_arg *a = p;
    return state_maintain(s, a->now, a->force, &a->rotated);
}

static int maintain_locked(tlsr_ring *ring, int64_t now_ms, int force, int timeout_ms)
{
    struct maintain_arg a = {now_ms, force, 0};
    /* Callers may simulate time (tests, tools): judge key times against the later
     * of their clock and the real one. */
    int64_t real = tlsr_now_ms();
    int rc = ring_write(ring, timeout_ms, now_ms > real ? now_ms : real, maintain_fn, &a);

    if (rc == 1 && a.rotated)
        count(ring->shm, TLSR_RC_ROTATIONS);
    return rc;
}

/* From the callback: a write under a try-lock whatever the due time says. */
static int write_now(tlsr_ring *ring, int64_t now, int force)
{
    return maintain_locked(ring, now, force, 0);
}

int tlsr_ring_maintain(tlsr_ring *ring, int64_t now_ms, int force, int timeout_ms)
{
    if (!force) {
        /* Cheap unlocked check first: most calls have nothing to do. A due time
         * that damage pushed into the future is caught by the callback's
         * plausibility check, which writes regardless. */
        const ring_state *s = active_state(ring->shm);
        if (now_ms < s->due_ms)
            return 0;
    }
    return maintain_locked(ring, now_ms, force, timeout_ms);
}

struct set_keys_arg {
    const tlsr_key_info *keys;
    size_t n;
    int64_t period_ms, window_ms;
    uint32_t flags;
};

static int set_keys_fn(ring_state *s, void *p)
{
    struct set_keys_arg *a = p;
    size_t i;
    int j, current = -1;

    for (j = 0; j < TLSR_RING_SLOTS; j++) {
        int kept = 0;
        for (i = 0; i < a->n && !kept; i++)
            kept = s->slots[j].role != TLSR_KEY_FREE &&
                   memcmp(s->slots[j].name, a->keys[i].name, TLSR_NAME_LEN) == 0;
        if (kept)
            tlsr_wipe(&s->slots[j], sizeof s->slots[j]); /* replaced below, not retired */
        else
            slot_wipe(s, j);
    }
    for (i = 0; i < a->n; i++) {
        s->slots[i] = a->keys[i];
        if (a->keys[i].role == TLSR_KEY_CURRENT)
            current = (int)i;
    }
    s->current = current;
    s->period_ms = a->period_ms;
    s->window_ms = a->window_ms;
    s->flags = a->flags;
    recompute_due(s);
    return 1;
}

int tlsr_ring_set_keys(tlsr_ring *ring, const tlsr_key_info *keys, size_t n,
                       int64_t period_ms, int64_t window_ms, uint32_t flags,
                       int timeout_ms)
{
    struct set_keys_arg a = {keys, n, period_ms, window_ms, flags};
    size_t i;
    int ncur = 0, nnext = 0;

    if (n == 0 || n > TLSR_RING_SLOTS || period_ms <= 0)
        return -TLSR_E_ARG;
    for (i = 0; i < n; i++) {
        if (keys[i].secret_len != 16 && keys[i].secret_len != 32)
            return -TLSR_E_ARG;
        ncur += keys[i].role == TLSR_KEY_CURRENT;
        nnext += keys[i].role == TLSR_KEY_NEXT;
        if (keys[i].role == TLSR_KEY_FREE || keys[i].role > TLSR_KEY_RETIRED)
            return -TLSR_E_ARG;
    }
    if (ncur != 1 || nnext > 1)
        return -TLSR_E_ARG;
    /* Every slot is replaced by the caller's keys: no time of the old state to judge. */
    return ring_write(ring, timeout_ms, NEVER / 2, set_keys_fn, &a);
}

/* Order for export: retired oldest first, then current, then next. */
static int export_rank(const tlsr_key_info *k)
{
    return k->role == TLSR_KEY_RETIRED ? 0 : k->role == TLSR_KEY_CURRENT ? 1 : 2;
}

int tlsr_ring_get_keys(tlsr_ring *ring, tlsr_key_info *out, size_t max, int with_secrets)
{
    ring_state snap;
    size_t n = 0, i, j;
    int got = 0;

    READ_BEGIN(ring->shm, s, seq1)
        memcpy(&snap, s, sizeof snap);
    READ_END(ring->shm, seq1, { got = 1; break; })
    if (!got)
        return -TLSR_E_BUSY;
    /* Only slots a writer could have left: a damaged one (unknown role, impossible
     * length) is not a key, and the next write wipes it. */
    for (i = 0; i < TLSR_RING_SLOTS && n < max; i++)
        if (snap.slots[i].role != TLSR_KEY_FREE && snap.slots[i].role <= TLSR_KEY_RETIRED &&
            key_usable(&snap.slots[i]))
            out[n++] = snap.slots[i];
    /* insertion sort by (rank, retired time) - at most 16 entries */
    for (i = 1; i < n; i++)
        for (j = i; j > 0; j--) {
            tlsr_key_info *x = &out[j - 1], *y = &out[j], t;
            int rx = export_rank(x), ry = export_rank(y);
            if (rx < ry || (rx == ry && x->retired_ms <= y->retired_ms))
                break;
            t = *x, *x = *y, *y = t;
        }
    if (!with_secrets)
        for (i = 0; i < n; i++) {
            tlsr_wipe(out[i].hmac, sizeof out[i].hmac);
            tlsr_wipe(out[i].aes, sizeof out[i].aes);
        }
    tlsr_wipe(&snap, sizeof snap);
    return (int)n;
}

int tlsr_ring_get_meta(tlsr_ring *ring, tlsr_ring_meta *out)
{
    memset(out, 0, sizeof *out);
    READ_BEGIN(ring->shm, s, seq1)
        tlsr_ring_meta m;
        int i;
        memset(&m, 0, sizeof m);
        m.period_ms = s->period_ms;
        m.window_ms = s->window_ms;
        m.due_ms = s->due_ms;
        m.generation = s->generation;
        m.flags = s->flags;
        for (i = 0; i < TLSR_RING_SLOTS; i++)
            m.nkeys += s->slots[i].role != TLSR_KEY_FREE;
    READ_END(ring->shm, seq1, {
        *out = m;
        out->mlocked = ring->map.mlocked;
        out->named = ring->map.named;
        return 0;
    })
    return -TLSR_E_BUSY;
}

void tlsr_ring_stats(tlsr_ring *ring, uint64_t *out, size_t n)
{
    size_t i;
    for (i = 0; i < n && i < TLSR_RING_NCOUNTERS; i++)
        out[i] = atomic_load_explicit(&ring->shm->counters[i], memory_order_relaxed);
}

int tlsr_ring_classify(tlsr_ring *ring, const uint8_t *name, int64_t now_ms)
{
    tlsr_key_info k;
    int v, role;

    memset(&k, 0, sizeof k);
    v = read_lookup(ring->shm, name, now_ms, &k);
    role = (int)k.role;

    tlsr_wipe(&k, sizeof k);
    switch (v) {
    case LOOK_CURRENT:
    case LOOK_OTHER:
        return role;
    case LOOK_EXPIRED:
        return -1;
    case LOOK_UNKNOWN:
        return -2;
    default:
        return -3;
    }
}

#ifdef TLSR_TEST_HOOKS
#include "testhooks.h"
/* Built only into the tests' module (see testhooks.h). */
int tlsr_ring_debug_die_in_write(tlsr_ring *ring, int scribble)
{
    ring_shm *r = ring->shm;
    int recovered, rc;

    if ((rc = tlsr_lock(&r->hdr.lock, 2000000, &recovered)) < 0)
        return rc;
    if (scribble) {
        uint32_t b = 1 - active_of(r, memory_order_seq_cst);
        atomic_fetch_or(&r->seq[b], 1);
        memset(&r->st[b], 0xA5, sizeof r->st[b]);
    }
    return 0;
}

void tlsr_ring_debug_layout(tlsr_ring_layout *out)
{
    out->lock = offsetof(ring_shm, hdr.lock);
    out->active = offsetof(ring_shm, active);
    out->seq = offsetof(ring_shm, seq);
    out->state = offsetof(ring_shm, st);
    out->state_size = sizeof(ring_state);
    out->period = offsetof(ring_state, period_ms);
    out->window = offsetof(ring_state, window_ms);
    out->due = offsetof(ring_state, due_ms);
    out->flags = offsetof(ring_state, flags);
    out->check = offsetof(ring_state, config_check);
    out->current = offsetof(ring_state, current);
    out->slots = offsetof(ring_state, slots);
    out->grave_count = offsetof(ring_state, grave_count);
    out->key_size = sizeof(tlsr_key_info);
    out->key_activated = offsetof(tlsr_key_info, activated_ms);
    out->key_role = offsetof(tlsr_key_info, role);
    out->key_secret_len = offsetof(tlsr_key_info, secret_len);
}
#endif /* TLSR_TEST_HOOKS */
