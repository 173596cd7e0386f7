#ifndef OSQUERY_SWIFT_SERVER_SOCKET_H
#define OSQUERY_SWIFT_SERVER_SOCKET_H
/* What the RPC server's threads need that Swift's Glibc module leaves out (it is built without
   _GNU_SOURCE): accept4, so an accepted socket is close-on-exec from its first moment, and an
   eventfd to wake a thread blocked in poll. */
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

static inline int osq_accept_cloexec(int fd) {
    return (int)syscall(SYS_accept4, fd, (void *)0, (void *)0, 02000000 /* SOCK_CLOEXEC */);
}

static inline int osq_eventfd_cloexec(void) {
    return eventfd(0, EFD_CLOEXEC);
}
#endif
