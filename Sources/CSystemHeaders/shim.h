#ifndef OSQUERY_SWIFT_CSYSTEMHEADERS_SHIM_H
#define OSQUERY_SWIFT_CSYSTEMHEADERS_SHIM_H
/* glibc headers Swift's Glibc module leaves out: extended attributes; ioctl, whose variadic
   declaration Swift cannot call, through a fixed-argument wrapper; recvmmsg, which glibc
   declares only under _GNU_SOURCE (the module is built without it). */
#include <sys/xattr.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

static inline int osq_ioctl_pointer(int fd, unsigned long request, void *argument) {
    return ioctl(fd, request, argument);
}

/* struct mmsghdr as the kernel lays it out. */
struct osq_mmsghdr {
    struct msghdr msg_hdr;
    unsigned int msg_len;
};

/* recvmmsg(2) without a timeout: datagrams received (msg_len set in each), or -1 and errno. */
static inline int osq_recvmmsg(int fd, struct osq_mmsghdr *messages, unsigned int count, int flags) {
    return (int)syscall(SYS_recvmmsg, fd, messages, count, flags, (void *)0);
}
#endif
