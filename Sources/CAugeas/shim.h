#ifndef OSQUERY_SWIFT_CAUGEAS_SHIM_H
#define OSQUERY_SWIFT_CAUGEAS_SHIM_H
/* libaugeas (Debian libaugeas-dev), as osquery's augeas table uses it. The calls are declared
   here rather than through <augeas.h>: it includes libxml2, whose ICU headers clash with the
   toolchain's own ICU module in the same build. The declarations are libaugeas' stable ABI. */
typedef struct augeas augeas;

enum {
    OSQ_AUG_NO_STDINC = 1 << 3,
    OSQ_AUG_SAVE_NOOP = 1 << 4,
    OSQ_AUG_NO_LOAD = 1 << 5,
    OSQ_AUG_NO_ERR_CLOSE = 1 << 8,
    OSQ_AUG_NOERROR = 0,
};

augeas *aug_init(const char *root, const char *loadpath, unsigned int flags);
int aug_defvar(augeas *aug, const char *name, const char *expr);
int aug_match(const augeas *aug, const char *path, char ***matches);
int aug_load(augeas *aug);
void aug_close(augeas *aug);
int aug_ns_attr(const augeas *aug, const char *var, int i, const char **value, const char **label, char **file_path);
int aug_error(augeas *aug);
const char *aug_error_message(augeas *aug);
#endif
