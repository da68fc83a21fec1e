/*
 * ossl.c - resolve libssl/libcrypto at run time from the copy CPython loaded.
 *
 * The Python side finds the paths of the libssl and libcrypto that _ssl mapped
 * (from /proc/self/maps) and passes them here. We dlopen them with RTLD_NOLOAD,
 * which only returns a handle to a library already in the process and never
 * loads a second copy, then dlsym every function in TLSR_OSSL_FUNCS. A Python that
 * links OpenSSL statically with hidden symbols has nothing to resolve: we report
 * the first missing function and the caller turns that into a clear error.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ossl.h"

struct tlsr_ossl_table tlsr_ossl;

static void *open_loaded(const char *path, char *err, size_t errlen)
{
    void *h;

    if (path == NULL)
        return RTLD_DEFAULT;
    h = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (h == NULL)
        snprintf(err, errlen, "%s is not loaded in this process (%s)", path, dlerror());
    return h;
}

/* Contract: returns 1 when every symbol resolved; else 0 with a message in err.
 * On failure the table stays unbound. The functions resolved are this module's
 * list (ossl.h): the product's, or the benchmark module's, which adds its own. */
int tlsr_binding_init(const char *libssl_path, const char *libcrypto_path,
                      char *err, size_t errlen)
{
    struct tlsr_ossl_table t;
    void *hssl, *hcrypto;

    if (tlsr_ossl.bound)
        return 1;
    if (errlen)
        err[0] = '\0';
    memset(&t, 0, sizeof t);
    hcrypto = open_loaded(libcrypto_path, err, errlen);
    if (hcrypto == NULL)
        return 0;
    hssl = open_loaded(libssl_path, err, errlen);
    if (hssl == NULL)
        return 0;

#define TLSR_RESOLVE(handle, ret, name, args)                                    \
    *(void **)(&t.name) = dlsym(handle, #name);                                  \
    if (t.name == NULL) {                                                        \
        snprintf(err, errlen, "OpenSSL function %s is not visible to tlsresume", \
                 #name);                                                         \
        return 0;                                                                \
    }
#define TLSR_L(ret, name, args) TLSR_RESOLVE(hcrypto, ret, name, args)
#define TLSR_S(ret, name, args) TLSR_RESOLVE(hssl, ret, name, args)
    TLSR_OSSL_FUNCS(TLSR_L, TLSR_S)
#undef TLSR_L
#undef TLSR_S
#undef TLSR_RESOLVE

    t.bound = 1;
    tlsr_ossl = t;
    return 1;
}

unsigned long tlsr_openssl_version_num(void)
{
    return tlsr_ossl.bound ? OSSL(OpenSSL_version_num)() : 0;
}

void tlsr_drain_errors(char *buf, size_t len)
{
    unsigned long e;
    size_t used = 0;

    if (len == 0)
        return;
    buf[0] = '\0';
    if (!tlsr_ossl.bound)
        return;
    while ((e = OSSL(ERR_get_error)()) != 0) {
        char one[256];
        OSSL(ERR_error_string_n)(e, one, sizeof one);
        if (used + strlen(one) + 3 < len) {
            if (used) {
                memcpy(buf + used, "; ", 2);
                used += 2;
            }
            memcpy(buf + used, one, strlen(one) + 1);
            used += strlen(one);
        }
    }
}

int64_t tlsr_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tlsr_wipe(void *p, size_t n)
{
    if (tlsr_ossl.bound) {
        OSSL(OPENSSL_cleanse)(p, n);
    } else {
        volatile unsigned char *v = p;
        while (n--)
            *v++ = 0;
    }
}
