#ifndef OSQUERY_SWIFT_CTSK_SHIM_H
#define OSQUERY_SWIFT_CTSK_SHIM_H
/* The Sleuth Kit (Debian libtsk-dev), as osquery's device_* tables use it.
 *
 * libtsk is opened on first use, not linked: linked, it and what it needs (libewf, libvmdk,
 * afflib with libcurl and its TLS, Kerberos and LDAP stack: some 30 libraries) cost every
 * osqueryi and osqueryd start ~6 ms of loading and relocation, for tables few queries name.
 * Only the declarations of <tsk/libtsk.h> are used. Without the library the wrappers fail as
 * libtsk's calls do on a bad image (NULL, -1), and osq_tsk_available() says why. */
#include <tsk/libtsk.h>
#include "../CSystemHeaders/lazy_library.h"

OSQ_LAZY_LIBRARY(osq_tsk, "libtsk.so.19", "libtsk.so")

OSQ_LAZY_CALL(osq_tsk_library, TSK_IMG_INFO *, tsk_img_open_sing, NULL, (const TSK_TCHAR *image, TSK_IMG_TYPE_ENUM type, unsigned int ssize), (image, type, ssize))
OSQ_LAZY_VOID(osq_tsk_library, tsk_img_close, (TSK_IMG_INFO *image), (image))
OSQ_LAZY_CALL(osq_tsk_library, TSK_VS_INFO *, tsk_vs_open, NULL, (TSK_IMG_INFO *image, TSK_DADDR_T offset, TSK_VS_TYPE_ENUM type), (image, offset, type))
OSQ_LAZY_VOID(osq_tsk_library, tsk_vs_close, (TSK_VS_INFO *volume), (volume))
OSQ_LAZY_CALL(osq_tsk_library, const TSK_VS_PART_INFO *, tsk_vs_part_get, NULL, (const TSK_VS_INFO *volume, TSK_PNUM_T index), (volume, index))
OSQ_LAZY_CALL(osq_tsk_library, TSK_FS_INFO *, tsk_fs_open_img, NULL, (TSK_IMG_INFO *image, TSK_OFF_T offset, TSK_FS_TYPE_ENUM type), (image, offset, type))
OSQ_LAZY_CALL(osq_tsk_library, TSK_FS_INFO *, tsk_fs_open_vol, NULL, (const TSK_VS_PART_INFO *part, TSK_FS_TYPE_ENUM type), (part, type))
OSQ_LAZY_VOID(osq_tsk_library, tsk_fs_close, (TSK_FS_INFO *fs), (fs))
OSQ_LAZY_CALL(osq_tsk_library, const char *, tsk_fs_type_toname, NULL, (TSK_FS_TYPE_ENUM type), (type))
OSQ_LAZY_CALL(osq_tsk_library, TSK_FS_DIR *, tsk_fs_dir_open_meta, NULL, (TSK_FS_INFO *fs, TSK_INUM_T inode), (fs, inode))
OSQ_LAZY_CALL(osq_tsk_library, size_t, tsk_fs_dir_getsize, 0, (const TSK_FS_DIR *dir), (dir))
OSQ_LAZY_CALL(osq_tsk_library, TSK_FS_FILE *, tsk_fs_dir_get, NULL, (const TSK_FS_DIR *dir, size_t index), (dir, index))
OSQ_LAZY_VOID(osq_tsk_library, tsk_fs_dir_close, (TSK_FS_DIR *dir), (dir))
OSQ_LAZY_CALL(osq_tsk_library, TSK_FS_FILE *, tsk_fs_file_open, NULL, (TSK_FS_INFO *fs, TSK_FS_FILE *file, const char *path), (fs, file, path))
OSQ_LAZY_CALL(osq_tsk_library, TSK_FS_FILE *, tsk_fs_file_open_meta, NULL, (TSK_FS_INFO *fs, TSK_FS_FILE *file, TSK_INUM_T inode), (fs, file, inode))
OSQ_LAZY_VOID(osq_tsk_library, tsk_fs_file_close, (TSK_FS_FILE *file), (file))
OSQ_LAZY_CALL(osq_tsk_library, ssize_t, tsk_fs_file_read, -1, (TSK_FS_FILE *file, TSK_OFF_T offset, char *buffer, size_t length, TSK_FS_FILE_READ_FLAG_ENUM flags), (file, offset, buffer, length, flags))
OSQ_LAZY_CALL(osq_tsk_library, const char *, tsk_error_get, NULL, (void), ())
OSQ_LAZY_VOID(osq_tsk_library, tsk_error_reset, (void), ())
#endif
