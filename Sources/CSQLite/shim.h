#ifndef OSQUERY_SWIFT_CSQLITE_SHIM_H
#define OSQUERY_SWIFT_CSQLITE_SHIM_H

#include <sqlite3.h>
#include <stdio.h>
#include <string.h>

/* Virtual table and cursor structs with a slot for the Swift owner object.
   SQLite only requires the base struct to come first. */
typedef struct osq_vtab {
    sqlite3_vtab base;
    void *owner;
} osq_vtab;

typedef struct osq_vtab_cursor {
    sqlite3_vtab_cursor base;
    void *owner;
} osq_vtab_cursor;

/* Macros and variadic APIs Swift cannot import directly. */
static inline sqlite3_destructor_type osq_sqlite_transient(void) {
    return SQLITE_TRANSIENT;
}

static inline sqlite3_destructor_type osq_sqlite_static(void) {
    return SQLITE_STATIC;
}

/* SQLite's own text form of a REAL ("%!.15g": 1.0, 1.0e+20). */
static inline int osq_sqlite_format_double(char *buf, int size, double value) {
    sqlite3_snprintf(size, buf, "%!.15g", value);
    return (int)strlen(buf);
}

/* osquery's API form of a REAL: "%.15g" (".0" is appended by the caller). */
static inline int osq_format_double_15g(char *buf, int size, double value) {
    return snprintf(buf, (size_t)size, "%.15g", value);
}

/* Set the error message of a virtual table (sqlite3_mprintf is variadic). */
static inline void osq_vtab_set_error(sqlite3_vtab *vtab, const char *message) {
    if (vtab->zErrMsg != NULL) {
        sqlite3_free(vtab->zErrMsg);
    }
    vtab->zErrMsg = sqlite3_mprintf("%s", message);
}

static inline char *osq_sqlite_strdup(const char *text) {
    return sqlite3_mprintf("%s", text);
}

static inline int osq_vtab_config_innocuous(sqlite3 *db) {
    return sqlite3_vtab_config(db, SQLITE_VTAB_INNOCUOUS);
}

/* Turns off SQLite's memory statistics, which take a global mutex on every allocation (one per
   text cell a virtual table returns). Only works before SQLite initializes; a no-op after. */
static inline int osq_sqlite_disable_memstatus(void) {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

#endif
