/*
 * region.c - create, attach and lock shared-memory regions (see region.h).
 *
 * One file (over 500 lines) because the region directory, mapping and the robust,
 * repairable lock are one mechanism: every region kind takes all three together.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* ---- the directory of named regions ------------------------------------------
 *
 * Named regions are files in one private directory per user on tmpfs, which the
 * Python layer chooses (see _rundir.py) and hands to tlsr_regions_use_dir. We
 * open it once, check the open descriptor (a directory, not a symlink, owned by
 * us, mode 0700, on tmpfs), and from then on reach region files only with
 * openat/unlinkat relative to it, so renaming or replacing the path afterwards
 * cannot redirect us. Swapping directories keeps the old descriptor open: a
 * region operation running in another thread may still be using it, and a
 * process switches at most a handful of times (tests, a changed environment).
 */

#define TLSR_TMPFS_MAGIC 0x01021994L
#define TLSR_RAMFS_MAGIC 0x858458f6L

static _Atomic int dir_fd = -1;

static int check_dir_fd(int fd, int require_tmpfs, tlsr_dir_status *out)
{
    struct stat st;
    struct statfs sf;

    if (fstat(fd, &st) != 0 || fstatfs(fd, &sf) != 0) {
        out->reason = TLSR_DIR_SYS;
        out->err = errno;
        return -TLSR_E_SYS;
    }
    out->uid = st.st_uid;
    out->mode = st.st_mode & 07777;
    out->fstype = (int64_t)sf.f_type;
    if (!S_ISDIR(st.st_mode))
        out->reason = TLSR_DIR_NOTDIR;
    else if (st.st_uid != geteuid())
        out->reason = TLSR_DIR_OWNER;
    else if ((st.st_mode & 07777) != 0700)
        out->reason = TLSR_DIR_MODE;
    else if (require_tmpfs && sf.f_type != TLSR_TMPFS_MAGIC && sf.f_type != TLSR_RAMFS_MAGIC)
        out->reason = TLSR_DIR_NOTTMPFS;
    else
        return 0;
    return -TLSR_E_NOTOWNER;
}

int tlsr_dir_check(const char *path, int create, int adopt, tlsr_dir_status *out)
{
    int fd, made = 0, rc;

    memset(out, 0, sizeof *out);
    if (path == NULL || path[0] != '/')
        return -TLSR_E_ARG;
    if (create) {
        if (mkdir(path, 0700) == 0)
            made = 1;
        else if (errno != EEXIST) {
            out->reason = errno == ENOENT ? TLSR_DIR_MISSING : TLSR_DIR_SYS;
            out->err = errno;
            return errno == ENOENT ? -TLSR_E_NOTFOUND : -TLSR_E_SYS;
        }
    }
    fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        out->err = errno;
        if (errno == ENOENT) {
            out->reason = TLSR_DIR_MISSING;
            return -TLSR_E_NOTFOUND;
        }
        /* ELOOP: the last component is a symlink; ENOTDIR: not a directory. */
        out->reason = (errno == ELOOP || errno == ENOTDIR) ? TLSR_DIR_NOTDIR : TLSR_DIR_SYS;
        return out->reason == TLSR_DIR_NOTDIR ? -TLSR_E_NOTOWNER : -TLSR_E_SYS;
    }
    /* We just made it: the umask may have taken bits off 0700; put them back. Only
     * ever on a directory the descriptor proves is ours. */
    if (made) {
        struct stat st;
        if (fstat(fd, &st) == 0 && st.st_uid == geteuid() && S_ISDIR(st.st_mode))
            fchmod(fd, 0700);
    }
    rc = check_dir_fd(fd, 1, out);
    if (rc < 0 && !(out->reason == TLSR_DIR_NOTTMPFS && !adopt)) {
        close(fd);
        if (made)
            rmdir(path); /* e.g. made on a disk: leave nothing behind */
        return rc;
    }
    if (!adopt) {
        close(fd);
        return 0;
    }
    {
        int old = atomic_load(&dir_fd);
        struct stat a, b;
        if (old >= 0 && fstat(old, &a) == 0 && fstat(fd, &b) == 0 && a.st_dev == b.st_dev &&
            a.st_ino == b.st_ino) {
            close(fd); /* the same directory: keep the descriptor we have */
            return 0;
        }
        atomic_store(&dir_fd, fd);
    }
    return 0;
}

/* The directory descriptor, re-checked (it may have been chmod'ed since), or
 * -TLSR_E_NOTFOUND when no directory was chosen yet. */
static int current_dir(void)
{
    tlsr_dir_status unused;
    int fd = atomic_load(&dir_fd);

    if (fd < 0)
        return -TLSR_E_NOTFOUND;
    if (check_dir_fd(fd, 1, &unused) < 0)
        return -TLSR_E_NOTOWNER;
    return fd;
}

/* "tlsresume.<kind>.<name>"; names are checked by the Python layer, and again
 * here: letters, digits, '.', '_', '-' only (and not "." or ".."), so no path
 * tricks reach openat. */
static int region_file(const char *prefix, const char *name, char *out, size_t len)
{
    size_t i, n = strlen(name);

    if (n == 0 || n > TLSR_RING_NAME_MAX)
        return -TLSR_E_ARG;
    for (i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
            return -TLSR_E_ARG;
    }
    if ((size_t)snprintf(out, len, "tlsresume.%s.%s", prefix, name) >= len)
        return -TLSR_E_ARG;
    return 0;
}

static void map_extras(tlsr_map *m, int lock_in_ram)
{
#ifdef MADV_DONTDUMP
    /* Keys and sessions have no place in core dumps. */
    madvise(m->base, m->size, MADV_DONTDUMP);
#endif
    m->mlocked = lock_in_ram && mlock(m->base, m->size) == 0;
}

int tlsr_region_relock(tlsr_map *m)
{
    /* After fork the child's mlocked flag is its parent's, but not the lock. */
    m->mlocked = m->base != NULL && mlock(m->base, m->size) == 0;
    return m->mlocked;
}

int tlsr_region_create(const char *prefix, const char *name, size_t size,
                       int lock_in_ram, tlsr_map *out)
{
    char path[256];
    void *base;
    int fd, dfd, rc;

    memset(out, 0, sizeof *out);
    if (name == NULL) {
        base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED)
            return -TLSR_E_SYS;
    } else {
        if ((rc = region_file(prefix, name, path, sizeof path)) < 0)
            return rc;
        if ((dfd = current_dir()) < 0)
            return dfd;
        fd = openat(dfd, path, O_CREAT | O_EXCL | O_NOFOLLOW | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0)
            return errno == EEXIST ? -TLSR_E_EXISTS : -TLSR_E_SYS;
        /* Whatever the umask, the region is for this user only. */
        if (fchmod(fd, 0600) != 0 || ftruncate(fd, (off_t)size) != 0) {
            int saved = errno;
            close(fd);
            unlinkat(dfd, path, 0);
            errno = saved;
            return -TLSR_E_SYS;
        }
        base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (base == MAP_FAILED) {
            int saved = errno;
            unlinkat(dfd, path, 0);
            errno = saved;
            return -TLSR_E_SYS;
        }
        out->named = 1;
    }
    out->base = base;
    out->size = size;
    map_extras(out, lock_in_ram);
    return 0;
}

int tlsr_region_map_existing(const char *prefix, const char *name, tlsr_map *out)
{
    char path[256];
    struct stat st;
    void *base;
    int fd, dfd, rc;

    memset(out, 0, sizeof *out);
    if ((rc = region_file(prefix, name, path, sizeof path)) < 0)
        return rc;
    if ((dfd = current_dir()) < 0)
        return dfd;
    fd = openat(dfd, path, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        if (errno == ENOENT)
            return -TLSR_E_NOTFOUND;
        return errno == ELOOP ? -TLSR_E_NOTOWNER : -TLSR_E_SYS;
    }
    if (fstat(fd, &st) != 0) {
        close(fd);
        return -TLSR_E_SYS;
    }
    /* Refuse anything but our own regular file that only we can read: a region
     * someone else planted (chown'ed to them, or readable by others) is never
     * mapped. */
    if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
        close(fd);
        return -TLSR_E_NOTOWNER;
    }
    if ((size_t)st.st_size < sizeof(tlsr_region_hdr)) {
        close(fd);
        return -TLSR_E_BADREGION;
    }
    base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd);
    if (base == MAP_FAILED)
        return -TLSR_E_SYS;
    out->base = base;
    out->size = (size_t)st.st_size;
    out->named = 1;
    return 0;
}

int tlsr_region_attach(const char *prefix, const char *name, uint32_t kind,
                       uint32_t version, int lock_in_ram, tlsr_map *out)
{
    tlsr_region_hdr *h;
    int rc, i;

    if ((rc = tlsr_region_map_existing(prefix, name, out)) < 0)
        return rc;
    h = out->base;
    /* The creator may still be initialising: wait up to ~2 s for "ready". */
    for (i = 0; i < 2000 && !atomic_load_explicit(&h->ready, memory_order_acquire); i++) {
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    if (!atomic_load_explicit(&h->ready, memory_order_acquire)) {
        tlsr_region_unmap(out);
        return -TLSR_E_NOTREADY;
    }
    if (h->magic != TLSR_REGION_MAGIC || h->kind != kind || h->version != version ||
        h->size != out->size) {
        tlsr_region_unmap(out);
        return -TLSR_E_BADREGION;
    }
    map_extras(out, lock_in_ram);
    return 0;
}

void tlsr_region_publish(tlsr_region_hdr *h, uint32_t kind, uint32_t version, uint64_t size)
{
    h->magic = TLSR_REGION_MAGIC;
    h->kind = kind;
    h->version = version;
    h->size = size;
    atomic_store_explicit(&h->ready, 1, memory_order_release);
}

int tlsr_region_reidentify(tlsr_region_hdr *h, uint32_t kind, uint32_t version, uint64_t size)
{
    if (h->magic == TLSR_REGION_MAGIC && h->kind == kind && h->version == version &&
        h->size == size && atomic_load_explicit(&h->ready, memory_order_relaxed) == 1)
        return 0;
    h->magic = TLSR_REGION_MAGIC;
    h->kind = kind;
    h->version = version;
    h->size = size;
    atomic_store_explicit(&h->ready, 1, memory_order_release);
    return 1;
}

void tlsr_region_unmap(tlsr_map *m)
{
    if (m->base != NULL) {
        if (m->mlocked)
            munlock(m->base, m->size);
        munmap(m->base, m->size);
    }
    memset(m, 0, sizeof *m);
}

int tlsr_region_unlink(const char *prefix, const char *name)
{
    char path[256];
    int rc, dfd;

    if ((rc = region_file(prefix, name, path, sizeof path)) < 0)
        return rc;
    if ((dfd = current_dir()) < 0)
        return dfd;
    if (unlinkat(dfd, path, 0) != 0)
        return errno == ENOENT ? -TLSR_E_NOTFOUND : -TLSR_E_SYS;
    return 0;
}

int tlsr_lock_init(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    int rc;

    if (pthread_mutexattr_init(&a) != 0)
        return -TLSR_E_SYS;
    rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED) ||
         pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST) ||
         pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return rc ? -TLSR_E_SYS : 0;
}

/* ---- a lock word nobody can release ------------------------------------------
 *
 * The kernel hands EOWNERDEAD to the next locker only for owners that registered
 * the mutex in their robust list and then died. Bytes written over the region
 * (a bug, an attacker with our uid, a bad restore) can leave a lock word that
 * names a thread that never existed, or no thread at all, or a mutex kind glibc
 * refuses: every lock attempt then fails forever, and with it every rotation and
 * every store write. So a locker that keeps finding the lock busy looks at the
 * owner the word names; if that thread does not exist (or the word is invalid),
 * and the word has not changed for STALE_MS, it re-initialises the mutex under the
 * region's repair gate (one repairer at a time, re-checking the word it judged)
 * and takes it, telling the caller to repair the data (*recovered = 2). A live
 * owner is never robbed: kill(tid, 0) succeeds for any live thread of any process
 * (EPERM for another user's). Owners in another PID namespace look dead; regions
 * are per-user files, and processes sharing one across namespaces are not
 * supported. */

#define STALE_MS 200
#define FUTEX_TID_BITS 0x3fffffff

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The lock word (glibc: owner TID and futex bits in __lock). */
static int lock_word(pthread_mutex_t *m)
{
#ifdef __GLIBC__
    return __atomic_load_n(&m->__data.__lock, __ATOMIC_RELAXED);
#else
    (void)m;
    return -1;
#endif
}

/* The kind word of a mutex made by tlsr_lock_init (robust, process-shared), as this
 * glibc encodes it. glibc trusts the kind it finds: bytes written over it can name
 * a priority-protected mutex, and glibc then aborts the process on an assertion in
 * trylock. So the kind is checked before any pthread call; a wrong one is an
 * invalid lock, repaired like one whose owner is gone. */
static pthread_once_t kind_once = PTHREAD_ONCE_INIT;
static int our_kind = -1;

static void learn_kind(void)
{
#ifdef __GLIBC__
    pthread_mutex_t probe;
    if (tlsr_lock_init(&probe) == 0) {
        our_kind = probe.__data.__kind;
        pthread_mutex_destroy(&probe);
    }
#endif
}

static int kind_ok(pthread_mutex_t *m)
{
#ifdef __GLIBC__
    pthread_once(&kind_once, learn_kind);
    return our_kind == -1 || __atomic_load_n(&m->__data.__kind, __ATOMIC_RELAXED) == our_kind;
#else
    (void)m;
    return 1;
#endif
}

static int owner_gone(int word)
{
    pid_t tid = (pid_t)(word & FUTEX_TID_BITS);

    if (word == -1)
        return 0; /* not glibc: we cannot read the owner, so never judge it */
    if (tid == 0)
        return 1; /* busy with no owner: only damage writes that */
    return kill(tid, 0) != 0 && errno == ESRCH;
}

/* One suspect per thread: the lock and the word it has shown since `since`. */
static __thread struct {
    pthread_mutex_t *m;
    int word;
    int64_t since;
} suspect;

/* A repair holds the gate for microseconds. A gate that names a dead process, or
 * has named the same process for STALE_MS as this thread keeps finding it, was
 * left by a repairer that died there or written over: take it. */
static __thread struct {
    _Atomic uint32_t *gate;
    uint32_t pid;
    int64_t since;
} gate_suspect;

static int gate_abandoned(_Atomic uint32_t *gate, uint32_t pid)
{
    if (pid != 0 && kill((pid_t)pid, 0) != 0 && errno == ESRCH)
        return 1;
    if (gate_suspect.gate != gate || gate_suspect.pid != pid) {
        gate_suspect.gate = gate;
        gate_suspect.pid = pid;
        gate_suspect.since = mono_ms();
        return 0;
    }
    return mono_ms() - gate_suspect.since >= STALE_MS;
}

/* Re-initialise *m if its word is still `word`, under the gate; 0 and the lock
 * held on success. */
static int force_repair(pthread_mutex_t *m, _Atomic uint32_t *gate, int word)
{
    uint32_t mine = (uint32_t)getpid(), seen = 0;
    int rc = -TLSR_E_BUSY;

    if (!atomic_compare_exchange_strong(gate, &seen, mine)) {
        /* Another repairer: wait for it, unless it died inside the gate. */
        if (!gate_abandoned(gate, seen) || !atomic_compare_exchange_strong(gate, &seen, mine))
            return -TLSR_E_BUSY;
    }
    gate_suspect.gate = NULL;
    if (lock_word(m) == word && tlsr_lock_init(m) == 0 && pthread_mutex_trylock(m) == 0)
        rc = 0;
    atomic_store(gate, 0);
    return rc;
}

static int judge_stuck(pthread_mutex_t *m, _Atomic uint32_t *gate, int busy_rc)
{
    int word = lock_word(m);

    if (busy_rc != EINVAL && !owner_gone(word)) {
        suspect.m = NULL;
        return -TLSR_E_BUSY;
    }
    if (suspect.m != m || suspect.word != word) {
        suspect.m = m;
        suspect.word = word;
        suspect.since = mono_ms();
        return -TLSR_E_BUSY;
    }
    if (mono_ms() - suspect.since < STALE_MS)
        return -TLSR_E_BUSY;
    suspect.m = NULL;
    return force_repair(m, gate, word);
}

/* One more look at a busy lock: 0 if we got it (*recovered set), else busy. */
static int look_again(pthread_mutex_t *m, _Atomic uint32_t *gate, int *recovered)
{
    int busy = kind_ok(m) ? pthread_mutex_trylock(m) : EINVAL;

    if (busy == 0)
        return 0;
    if (busy == EOWNERDEAD) {
        pthread_mutex_consistent(m);
        *recovered = 1;
        return 0;
    }
    if (busy == ENOTRECOVERABLE)
        busy = EINVAL; /* nobody will ever mark it consistent: rebuild it */
    if (judge_stuck(m, gate, busy) == 0) {
        *recovered = 2;
        return 0;
    }
    return -TLSR_E_BUSY;
}

int tlsr_lock_gated(pthread_mutex_t *m, _Atomic uint32_t *gate, int64_t timeout_us,
                    int *recovered)
{
    int rc;

    if (gate == NULL)
        return tlsr_lock(m, timeout_us, recovered);
    /* Judge a busy lock before waiting on it: a lock whose owner is gone would
     * otherwise cost every caller its whole timeout (2 s for calls from Python). */
    if ((rc = tlsr_lock(m, 0, recovered)) != -TLSR_E_BUSY)
        return rc;
    if (look_again(m, gate, recovered) == 0)
        return 0;
    if (suspect.m == m && timeout_us >= STALE_MS * 1000) {
        /* A caller that can wait: give the suspect its STALE_MS and look again. */
        struct timespec pause = {0, STALE_MS * 1000000L};
        nanosleep(&pause, NULL);
        if (look_again(m, gate, recovered) == 0)
            return 0;
        timeout_us -= STALE_MS * 1000;
    }
    return timeout_us > 0 ? tlsr_lock(m, timeout_us, recovered) : -TLSR_E_BUSY;
}

int tlsr_lock(pthread_mutex_t *m, int64_t timeout_us, int *recovered)
{
    int rc;

    *recovered = 0;
    if (!kind_ok(m))
        return -TLSR_E_BUSY; /* never hand glibc a kind it would abort on */
    rc = pthread_mutex_trylock(m);
    if (rc == EBUSY && timeout_us > 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += timeout_us / 1000000;
        ts.tv_nsec += (long)(timeout_us % 1000000) * 1000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        rc = pthread_mutex_timedlock(m, &ts);
    }
    if (rc == EOWNERDEAD) {
        /* The owner died mid-write. We hold the lock now; mark it usable again
         * and let the caller repair the data it guards. */
        pthread_mutex_consistent(m);
        *recovered = 1;
        return 0;
    }
    if (rc == ENOTRECOVERABLE) {
        /* Only reachable if a recoverer died before marking it consistent:
         * rebuild the mutex in place. Racy only against that same rare case. */
        tlsr_lock_init(m);
        return -TLSR_E_BUSY;
    }
    return rc == 0 ? 0 : -TLSR_E_BUSY;
}

void tlsr_unlock(pthread_mutex_t *m)
{
    pthread_mutex_unlock(m);
}
