#ifndef OSQUERY_SWIFT_CTSK_SHIM_H
#define OSQUERY_SWIFT_CTSK_SHIM_H
/* The Sleuth Kit (Debian libtsk-dev), as osquery's device_* tables use it. */
#include <tsk/libtsk.h>
#endif
