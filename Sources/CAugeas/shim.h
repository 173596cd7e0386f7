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
   osqueryi and osqueryd start ~1.3 ms of loading and relocation, for one table. Without the
   library the wrappers fail as libaugeas does (NULL, -1) and osq_aug_available() says why. */
#include "../CSystemHeaders/lazy_library.h"

OSQ_LAZY_LIBRARY(osq_aug, "libaugeas.so.0", "libaugeas.so")

OSQ_LAZY_CALL(osq_aug_library, augeas *, aug_init, NULL, (const char *root, const char *loadpath, unsigned int flags), (root, loadpath, flags))
OSQ_LAZY_CALL(osq_aug_library, int, aug_defvar, -1, (augeas *aug, const char *name, const char *expr), (aug, name, expr))
OSQ_LAZY_CALL(osq_aug_library, int, aug_match, -1, (const augeas *aug, const char *path, char ***matches), (aug, path, matches))
OSQ_LAZY_CALL(osq_aug_library, int, aug_load, -1, (augeas *aug), (aug))
OSQ_LAZY_CALL(osq_aug_library, int, aug_ns_attr, -1, (const augeas *aug, const char *var, int i, const char **value, const char **label, char **file_path), (aug, var, i, value, label, file_path))
OSQ_LAZY_CALL(osq_aug_library, int, aug_error, -1, (augeas *aug), (aug))
OSQ_LAZY_CALL(osq_aug_library, const char *, aug_error_message, "libaugeas is not loaded", (augeas *aug), (aug))
OSQ_LAZY_VOID(osq_aug_library, aug_close, (augeas *aug), (aug))
#endif
