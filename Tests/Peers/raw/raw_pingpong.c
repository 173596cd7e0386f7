/*
 * The raw floor for the ping benchmark: the cheapest possible request/reply over a Unix stream
 * socket with plain blocking I/O, no Thrift library. The bytes are exactly a Thrift binary-protocol
 * `ping()` call (17 bytes) and the fixture's reply `{0, "pong", I64MAX}` (50 bytes), so the
 * client also works against a real fixture server.
 *
 *   raw_pingpong server SOCKET      accept one connection; loop: read 17 bytes, write the reply
 *   raw_pingpong client SOCKET N    1000 warm-up round trips, then N timed ones; prints
 *                                   {"bench":"raw_ping","ops":N,"ns_per_op":X}
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ping() call: strict header 0x80010001, name "ping", seqid 0, empty args struct (STOP). */
static const unsigned char kRequest[] = {
    0x80, 0x01, 0x00, 0x01,                                  /* version | CALL */
    0x00, 0x00, 0x00, 0x04, 'p', 'i', 'n', 'g',              /* name */
    0x00, 0x00, 0x00, 0x00,                                  /* seqid */
    0x00,                                                    /* STOP */
};

/* Its reply: ping_result { 0: ExtensionStatus { 1: code 0, 2: message "pong", 3: uuid I64MAX } }. */
static const unsigned char kReply[] = {
    0x80, 0x01, 0x00, 0x02,                                  /* version | REPLY */
    0x00, 0x00, 0x00, 0x04, 'p', 'i', 'n', 'g',              /* name */
    0x00, 0x00, 0x00, 0x00,                                  /* seqid */
    0x0c, 0x00, 0x00,                                        /* field 0: struct */
    0x08, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,                /* 1: i32 code = 0 */
    0x0b, 0x00, 0x02, 0x00, 0x00, 0x00, 0x04, 'p', 'o', 'n', 'g', /* 2: string message */
    0x0a, 0x00, 0x03, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* 3: i64 uuid */
    0x00,                                                    /* STOP (status) */
    0x00,                                                    /* STOP (result) */
};

#define REQ_LEN ((size_t)sizeof kRequest)
#define REPLY_LEN ((size_t)sizeof kReply)
#define WARMUP 1000

static void die(const char *what) {
    fprintf(stderr, "raw_pingpong: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* Reads exactly n bytes; returns 0 on success, 1 on a clean EOF before the first byte. */
static int read_exact(int fd, unsigned char *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r > 0) {
            got += (size_t)r;
        } else if (r == 0) {
            if (got == 0) return 1;
            errno = EPIPE;
            die("short read");
        } else if (errno != EINTR) {
            die("read");
        }
    }
    return 0;
}

static void write_all(int fd, const unsigned char *buf, size_t n) {
    size_t put = 0;
    while (put < n) {
        ssize_t w = write(fd, buf + put, n - put);
        if (w > 0) {
            put += (size_t)w;
        } else if (w < 0 && errno != EINTR) {
            die("write");
        }
    }
}

static struct sockaddr_un address(const char *path) {
    struct sockaddr_un addr;
    memset(&addr, 0, sizeof addr);
    addr.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof addr.sun_path) {
        fprintf(stderr, "raw_pingpong: socket path too long (max %zu bytes): %s\n",
                sizeof addr.sun_path - 1, path);
        exit(2);
    }
    strcpy(addr.sun_path, path);
    return addr;
}

static int run_server(const char *path) {
    struct sockaddr_un addr = address(path);
    unlink(path);
    int lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (lfd < 0) die("socket");
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
    if (listen(lfd, 1) < 0) die("listen");
    printf("READY\n");
    fflush(stdout);

    int fd;
    do {
        fd = accept(lfd, NULL, NULL);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) die("accept");
    close(lfd);
    unlink(path);

    unsigned char req[REQ_LEN];
    while (read_exact(fd, req, REQ_LEN) == 0) write_all(fd, kReply, REPLY_LEN);
    close(fd);
    return 0;
}

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int run_client(const char *path, long long n) {
    struct sockaddr_un addr = address(path);
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");

    unsigned char reply[REPLY_LEN];
    for (int i = 0; i < WARMUP; ++i) {
        write_all(fd, kRequest, REQ_LEN);
        if (read_exact(fd, reply, REPLY_LEN) != 0) {
            errno = EPIPE;
            die("server closed the connection");
        }
        if (i == 0 && memcmp(reply, kReply, REPLY_LEN) != 0) {
            fprintf(stderr, "raw_pingpong: unexpected reply bytes from the server\n");
            return 1;
        }
    }
    double t0 = now_ns();
    for (long long i = 0; i < n; ++i) {
        write_all(fd, kRequest, REQ_LEN);
        if (read_exact(fd, reply, REPLY_LEN) != 0) {
            errno = EPIPE;
            die("server closed the connection");
        }
    }
    double elapsed = now_ns() - t0;
    close(fd);
    printf("{\"bench\":\"raw_ping\",\"ops\":%lld,\"ns_per_op\":%.1f}\n", n, elapsed / (double)n);
    return 0;
}

static int usage(void) {
    fprintf(stderr, "usage: raw_pingpong server SOCKET | raw_pingpong client SOCKET N\n");
    return 2;
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    if (argc == 3 && strcmp(argv[1], "server") == 0) return run_server(argv[2]);
    if (argc == 4 && strcmp(argv[1], "client") == 0) {
        char *end = NULL;
        long long n = strtoll(argv[3], &end, 10);
        if (!end || *end || n <= 0) return usage();
        return run_client(argv[2], n);
    }
    return usage();
}
