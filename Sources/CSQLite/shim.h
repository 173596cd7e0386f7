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

/* Per-connection guard state shared by the authorizer and the progress handler (one per
   Database; only its thread touches it, except `deadline_ns`, set before a statement runs). */
typedef struct osq_guard {
    /* The engine's own statements (alias views, state reset): every action allowed. */
    int trusted;
    /* Set when a statement was authorized that may leave state on the connection
       (schema objects, a transaction, a pragma value): the pool then resets it. */
    int changed;
    /* The first action denied since the last `osq_guard_take_denial` (0: none). */
    int denied_code;
    char denied_detail[512];
    /* CLOCK_MONOTONIC nanoseconds past which statements stop (0: no deadline). */
    long long deadline_ns;
    /* Set by the progress handler when it stopped a statement at the deadline. */
    int expired;
} osq_guard;

#include <time.h>

static inline long long osq_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline int osq_guard_allowed_pragma(const char *name) {
    /* osquery's allowlist (kAllowedSQLitePragmas), compared without case. */
    static const char *const allowed[] = {
        "table_info", "table_xinfo", "function_list", "journal_mode", "case_sensitive_like", "collation_list",
    };
    for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
        if (sqlite3_stricmp(name, allowed[i]) == 0) return 1;
    }
    return 0;
}

/* osquery's action allowlist (kAllowedSQLiteActionCodes); everything else is denied. Two
   functions osquery allows are denied too: fts3_tokenizer (reads and sets a C function
   pointer) and load_extension (loads code). */
static int osq_guard_authorize(void *p, int code, const char *a3, const char *a4, const char *a5, const char *a6) {
    osq_guard *g = (osq_guard *)p;
    if (g->trusted) return SQLITE_OK;
    switch (code) {
    case SQLITE_READ:
    case SQLITE_SELECT:
    case SQLITE_INSERT:
    case SQLITE_UPDATE:
    case SQLITE_DELETE:
    case SQLITE_RECURSIVE:
        return SQLITE_OK;
    case SQLITE_CREATE_VTABLE:
    case SQLITE_DROP_VTABLE:
    case SQLITE_CREATE_VIEW:
    case SQLITE_DROP_VIEW:
    case SQLITE_CREATE_TABLE:
    case SQLITE_DROP_TABLE:
    case SQLITE_CREATE_TEMP_TABLE:
    case SQLITE_DROP_TEMP_TABLE:
    case SQLITE_CREATE_TEMP_VIEW:
    case SQLITE_DROP_TEMP_VIEW:
    case SQLITE_TRANSACTION:
        g->changed = 1;
        return SQLITE_OK;
    case SQLITE_FUNCTION:
        if (a4 == NULL || (sqlite3_stricmp(a4, "fts3_tokenizer") != 0 && sqlite3_stricmp(a4, "load_extension") != 0)) {
            return SQLITE_OK;
        }
        break;
    case SQLITE_PRAGMA:
        if (a3 != NULL && osq_guard_allowed_pragma(a3)) {
            if (a4 != NULL) g->changed = 1;
            return SQLITE_OK;
        }
        break;
    default:
        break;
    }
    if (g->denied_code == 0) {
        g->denied_code = code;
        snprintf(g->denied_detail, sizeof(g->denied_detail), "%s %s %s %s", a3 ? a3 : "null", a4 ? a4 : "null",
                 a5 ? a5 : "null", a6 ? a6 : "null");
    }
    return SQLITE_DENY;
}

/* Called every few thousand VM instructions: one clock read, no lock. */
static int osq_guard_progress(void *p) {
    osq_guard *g = (osq_guard *)p;
    if (g->deadline_ns == 0 || osq_monotonic_ns() < g->deadline_ns) return 0;
    g->expired = 1;
    return 1;
}

/* Installs the guard on a connection: the authorizer, the progress handler and defensive
   settings (the variadic sqlite3_db_config cannot be called from Swift). */
static inline int osq_guard_install(sqlite3 *db, osq_guard *g, int progress_ops) {
    int rc;
    if ((rc = sqlite3_db_config(db, SQLITE_DBCONFIG_DEFENSIVE, 1, (int *)0)) != SQLITE_OK) return rc;
    if ((rc = sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_FTS3_TOKENIZER, 0, (int *)0)) != SQLITE_OK) return rc;
    if ((rc = sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, (int *)0)) != SQLITE_OK) return rc;
    if ((rc = sqlite3_db_config(db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, (int *)0)) != SQLITE_OK) return rc;
    if ((rc = sqlite3_db_config(db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, (int *)0)) != SQLITE_OK) return rc;
    if ((rc = sqlite3_set_authorizer(db, osq_guard_authorize, g)) != SQLITE_OK) return rc;
    sqlite3_progress_handler(db, progress_ops, osq_guard_progress, g);
    return SQLITE_OK;
}

/* For tests: whether a db_config switch is on (-1: the call failed). */
static inline int osq_db_config_get(sqlite3 *db, int op) {
    int value = -1;
    if (sqlite3_db_config(db, op, -1, &value) != SQLITE_OK) return -1;
    return value;
}

#endif
