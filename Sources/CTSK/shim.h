#ifndef OSQUERY_SWIFT_CTSK_SHIM_H
#define OSQUERY_SWIFT_CTSK_SHIM_H
/* The Sleuth Kit (Debian libtsk-dev), as osquery's device_* tables use it.
 *
 * libtsk is opened on first use, not linked: linked, it and what it needs (libewf, libvmdk,
 * afflib with libcurl and its TLS, Kerberos and LDAP stack: some 30 libraries) cost every
 * osqueryi and osqueryd start ~6 ms of loading and relocation, for tables few queries name.
 * Only the declarations of <tsk/libtsk.h> are used; each call goes through an osq_ wrapper
 * that resolves the function once. Without the library the wrappers fail as libtsk's calls
 * do on a bad image (NULL, -1), and osq_tsk_available() says why. */
#include <dlfcn.h>
#include <stddef.h>
#include <tsk/libtsk.h>

/* The handle of libtsk (NULL when it cannot be opened; the first attempt is the only one). */
static inline void *osq_tsk_library(void) {
    static void *handle;
    static int tried;
    if (__atomic_load_n(&tried, __ATOMIC_ACQUIRE)) return __atomic_load_n(&handle, __ATOMIC_ACQUIRE);
    void *h = dlopen("libtsk.so.19", RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) h = dlopen("libtsk.so", RTLD_NOW | RTLD_LOCAL);
    __atomic_store_n(&handle, h, __ATOMIC_RELEASE);
    __atomic_store_n(&tried, 1, __ATOMIC_RELEASE);
    return h;
}

/* Whether libtsk could be opened. */
static inline int osq_tsk_available(void) { return osq_tsk_library() != NULL; }

static inline void *osq_tsk_symbol(const char *name, void **slot) {
    void *f = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
    if (f != NULL) return f;
    void *library = osq_tsk_library();
    f = library != NULL ? dlsym(library, name) : NULL;
    if (f != NULL) __atomic_store_n(slot, f, __ATOMIC_RELEASE);
    return f;
}

#define OSQ_TSK_CALL(ret, name, failed, params, args)                    \
    static inline ret osq_##name params {                                \
        static void *slot;                                               \
        ret(*f) params = (ret(*) params)osq_tsk_symbol(#name, &slot);    \
        return f != NULL ? f args : failed;                              \
    }
#define OSQ_TSK_VOID(name, params, args)                                 \
    static inline void osq_##name params {                               \
        static void *slot;                                               \
        void(*f) params = (void(*) params)osq_tsk_symbol(#name, &slot);  \
        if (f != NULL) f args;                                           \
    }

OSQ_TSK_CALL(TSK_IMG_INFO *, tsk_img_open_sing, NULL, (const TSK_TCHAR *image, TSK_IMG_TYPE_ENUM type, unsigned int ssize), (image, type, ssize))
OSQ_TSK_VOID(tsk_img_close, (TSK_IMG_INFO *image), (image))
OSQ_TSK_CALL(TSK_VS_INFO *, tsk_vs_open, NULL, (TSK_IMG_INFO *image, TSK_DADDR_T offset, TSK_VS_TYPE_ENUM type), (image, offset, type))
OSQ_TSK_VOID(tsk_vs_close, (TSK_VS_INFO *volume), (volume))
OSQ_TSK_CALL(const TSK_VS_PART_INFO *, tsk_vs_part_get, NULL, (const TSK_VS_INFO *volume, TSK_PNUM_T index), (volume, index))
OSQ_TSK_CALL(TSK_FS_INFO *, tsk_fs_open_img, NULL, (TSK_IMG_INFO *image, TSK_OFF_T offset, TSK_FS_TYPE_ENUM type), (image, offset, type))
OSQ_TSK_CALL(TSK_FS_INFO *, tsk_fs_open_vol, NULL, (const TSK_VS_PART_INFO *part, TSK_FS_TYPE_ENUM type), (part, type))
OSQ_TSK_VOID(tsk_fs_close, (TSK_FS_INFO *fs), (fs))
OSQ_TSK_CALL(const char *, tsk_fs_type_toname, NULL, (TSK_FS_TYPE_ENUM type), (type))
OSQ_TSK_CALL(TSK_FS_DIR *, tsk_fs_dir_open_meta, NULL, (TSK_FS_INFO *fs, TSK_INUM_T inode), (fs, inode))
OSQ_TSK_CALL(size_t, tsk_fs_dir_getsize, 0, (const TSK_FS_DIR *dir), (dir))
OSQ_TSK_CALL(TSK_FS_FILE *, tsk_fs_dir_get, NULL, (const TSK_FS_DIR *dir, size_t index), (dir, index))
OSQ_TSK_VOID(tsk_fs_dir_close, (TSK_FS_DIR *dir), (dir))
OSQ_TSK_CALL(TSK_FS_FILE *, tsk_fs_file_open, NULL, (TSK_FS_INFO *fs, TSK_FS_FILE *file, const char *path), (fs, file, path))
OSQ_TSK_CALL(TSK_FS_FILE *, tsk_fs_file_open_meta, NULL, (TSK_FS_INFO *fs, TSK_FS_FILE *file, TSK_INUM_T inode), (fs, file, inode))
OSQ_TSK_VOID(tsk_fs_file_close, (TSK_FS_FILE *file), (file))
OSQ_TSK_CALL(ssize_t, tsk_fs_file_read, -1, (TSK_FS_FILE *file, TSK_OFF_T offset, char *buffer, size_t length, TSK_FS_FILE_READ_FLAG_ENUM flags), (file, offset, buffer, length, flags))
OSQ_TSK_CALL(const char *, tsk_error_get, NULL, (void), ())
OSQ_TSK_VOID(tsk_error_reset, (void), ())

#undef OSQ_TSK_CALL
#undef OSQ_TSK_VOID
#endif
