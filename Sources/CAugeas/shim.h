#ifndef OSQUERY_SWIFT_CAUGEAS_SHIM_H
#define OSQUERY_SWIFT_CAUGEAS_SHIM_H
/* libaugeas (Debian libaugeas-dev), as osquery's augeas table uses it. The calls are declared
   here rather than through <augeas.h>: it includes libxml2, whose ICU headers clash with the
   toolchain's own ICU module in the same build. The signatures are libaugeas' stable ABI. */
typedef struct augeas augeas;

enum {
    OSQ_AUG_NO_STDINC = 1 << 3,
    OSQ_AUG_SAVE_NOOP = 1 << 4,
    OSQ_AUG_NO_LOAD = 1 << 5,
    OSQ_AUG_NO_ERR_CLOSE = 1 << 8,
    OSQ_AUG_NOERROR = 0,
};

/* libaugeas is opened on first use, not linked: linked, it and libxml2 with ICU cost every
   osqueryi and osqueryd start ~1.3 ms of loading and relocation, for one table. Each call goes
   through an osq_ wrapper that resolves the function once; without the library the wrappers
   fail as libaugeas does (NULL, -1) and osq_aug_available() says why. */
#include <dlfcn.h>
#include <stddef.h>

static inline void *osq_aug_library(void) {
    static void *handle;
    static int tried;
    if (__atomic_load_n(&tried, __ATOMIC_ACQUIRE)) return __atomic_load_n(&handle, __ATOMIC_ACQUIRE);
    void *h = dlopen("libaugeas.so.0", RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) h = dlopen("libaugeas.so", RTLD_NOW | RTLD_LOCAL);
    __atomic_store_n(&handle, h, __ATOMIC_RELEASE);
    __atomic_store_n(&tried, 1, __ATOMIC_RELEASE);
    return h;
}

/* Whether libaugeas could be opened. */
static inline int osq_aug_available(void) { return osq_aug_library() != NULL; }

static inline void *osq_aug_symbol(const char *name, void **slot) {
    void *f = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (f != NULL) return f;
    void *library = osq_aug_library();
    f = library != NULL ? dlsym(library, name) : NULL;
    if (f != NULL) __atomic_store_n(slot, f, __ATOMIC_RELEASE);
    return f;
}

#define OSQ_AUG_CALL(ret, name, failed, params, args)                   \
    static inline ret osq_##name params {                               \
        static void *slot;                                              \
        ret(*f) params = (ret(*) params)osq_aug_symbol(#name, &slot);   \
        return f != NULL ? f args : failed;                             \
    }

OSQ_AUG_CALL(augeas *, aug_init, NULL, (const char *root, const char *loadpath, unsigned int flags), (root, loadpath, flags))
OSQ_AUG_CALL(int, aug_defvar, -1, (augeas *aug, const char *name, const char *expr), (aug, name, expr))
OSQ_AUG_CALL(int, aug_match, -1, (const augeas *aug, const char *path, char ***matches), (aug, path, matches))
OSQ_AUG_CALL(int, aug_load, -1, (augeas *aug), (aug))
OSQ_AUG_CALL(int, aug_ns_attr, -1, (const augeas *aug, const char *var, int i, const char **value, const char **label, char **file_path), (aug, var, i, value, label, file_path))
OSQ_AUG_CALL(int, aug_error, -1, (augeas *aug), (aug))
OSQ_AUG_CALL(const char *, aug_error_message, "libaugeas is not loaded", (augeas *aug), (aug))

static inline void osq_aug_close(augeas *aug) {
    static void *slot;
    void (*f)(augeas *) = (void (*)(augeas *))osq_aug_symbol("aug_close", &slot);
    if (f != NULL) f(aug);
}

#undef OSQ_AUG_CALL
#endif
