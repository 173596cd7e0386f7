#ifndef OSQUERY_SWIFT_CSYSTEMHEADERS_SHIM_H
#define OSQUERY_SWIFT_CSYSTEMHEADERS_SHIM_H
/* glibc headers Swift's Glibc module leaves out: extended attributes. */
#include <sys/xattr.h>
#endif
