#ifndef OSQUERY_SWIFT_CSYSTEMHEADERS_SHIM_H
#define OSQUERY_SWIFT_CSYSTEMHEADERS_SHIM_H
/* glibc headers Swift's Glibc module leaves out: extended attributes; ioctl, whose variadic
   declaration Swift cannot call, through a fixed-argument wrapper. */
#include <sys/xattr.h>
#include <sys/ioctl.h>

static inline int osq_ioctl_pointer(int fd, unsigned long request, void *argument) {
    return ioctl(fd, request, argument);
}
#endif
