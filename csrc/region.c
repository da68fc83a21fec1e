/*
 * region.c - create, attach and lock shared-memory regions (see region.h).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ossl.h"
#include "region.h"

/* "/tlsresume.<kind>.<name>"; names are checked by the Python layer, and again
 * here: letters, digits, '.', '_', '-' only, so no path tricks reach shm_open. */
static int shm_path(const char *prefix, const char *name, char *out, size_t len)
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
    if ((size_t)snprintf(out, len, "/tlsresume.%s.%s", prefix, name) >= len)
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

int tlsr_region_create(const char *prefix, const char *name, size_t size,
                       int lock_in_ram, tlsr_map *out)
{
    char path[256];
    void *base;
    int fd, rc;

    memset(out, 0, sizeof *out);
    if (name == NULL) {
        base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED)
            return -TLSR_E_SYS;
    } else {
        if ((rc = shm_path(prefix, name, path, sizeof path)) < 0)
            return rc;
        fd = shm_open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
        if (fd < 0)
            return errno == EEXIST ? -TLSR_E_EXISTS : -TLSR_E_SYS;
        /* Whatever the umask, the region is for this user only. */
        if (fchmod(fd, 0600) != 0 || ftruncate(fd, (off_t)size) != 0) {
            int saved = errno;
            close(fd);
            shm_unlink(path);
            errno = saved;
            return -TLSR_E_SYS;
        }
        base = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        close(fd);
        if (base == MAP_FAILED) {
            int saved = errno;
            shm_unlink(path);
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
    int fd, rc;

    memset(out, 0, sizeof *out);
    if ((rc = shm_path(prefix, name, path, sizeof path)) < 0)
        return rc;
    fd = shm_open(path, O_RDWR | O_CLOEXEC, 0);
    if (fd < 0)
        return errno == ENOENT ? -TLSR_E_NOTFOUND : -TLSR_E_SYS;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return -TLSR_E_SYS;
    }
    /* Refuse a region someone else planted under our name, or one others can read. */
    if (st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
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
    int rc;

    if ((rc = shm_path(prefix, name, path, sizeof path)) < 0)
        return rc;
    if (shm_unlink(path) != 0)
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

int tlsr_lock(pthread_mutex_t *m, int64_t timeout_us, int *recovered)
{
    int rc;

    *recovered = 0;
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
