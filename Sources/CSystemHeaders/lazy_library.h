#ifndef OSQUERY_SWIFT_LAZY_LIBRARY_H
#define OSQUERY_SWIFT_LAZY_LIBRARY_H
/* A C library opened on first use, not linked, for tables few queries name: linked, a library
   and what it needs cost every osqueryi and osqueryd start its loading and relocation. A shim
   names the library once (OSQ_LAZY_LIBRARY) and wraps each call it uses (OSQ_LAZY_CALL,
   OSQ_LAZY_VOID): the wrapper resolves its function once and, without the library, fails with
   the value the shim gives; <prefix>_available() says whether the library could be opened. */
#include <dlfcn.h>
#include <stddef.h>

/* `soname`, else `fallback`, opened once: the first attempt is the only one. */
static inline void *osq_lazy_open(void **handle, int *tried, const char *soname, const char *fallback) {
    if (__atomic_load_n(tried, __ATOMIC_ACQUIRE)) return __atomic_load_n(handle, __ATOMIC_ACQUIRE);
    void *h = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) h = dlopen(fallback, RTLD_NOW | RTLD_LOCAL);
    __atomic_store_n(handle, h, __ATOMIC_RELEASE);
    __atomic_store_n(tried, 1, __ATOMIC_RELEASE);
    return h;
}

/* `name` in the library, kept in `slot` once found (NULL without the library or the symbol). */
static inline void *osq_lazy_symbol(void *(*library)(void), const char *name, void **slot) {
    void *f = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (f != NULL) return f;
    void *opened = library();
    f = opened != NULL ? dlsym(opened, name) : NULL;
    if (f != NULL) __atomic_store_n(slot, f, __ATOMIC_RELEASE);
    return f;
}

/* <prefix>_library(): the handle (NULL when it cannot be opened); <prefix>_available(). */
#define OSQ_LAZY_LIBRARY(prefix, soname, fallback)                                      \
    static inline void *prefix##_library(void) {                                        \
        static void *handle;                                                            \
        static int tried;                                                               \
        return osq_lazy_open(&handle, &tried, soname, fallback);                        \
    }                                                                                   \
    static inline int prefix##_available(void) { return prefix##_library() != NULL; }

/* osq_<name>(params): calls `name` from `library`, or returns `failed` without it. */
#define OSQ_LAZY_CALL(library, ret, name, failed, params, args)                         \
    static inline ret osq_##name params {                                               \
        static void *slot;                                                              \
        ret(*f) params = (ret(*) params)osq_lazy_symbol(library, #name, &slot);         \
        return f != NULL ? f args : failed;                                             \
    }

/* osq_<name>(params) for a void function: nothing happens without the library. */
#define OSQ_LAZY_VOID(library, name, params, args)                                      \
    static inline void osq_##name params {                                              \
        static void *slot;                                                              \
        void(*f) params = (void(*) params)osq_lazy_symbol(library, #name, &slot);       \
        if (f != NULL) f args;                                                          \
    }
#endif
