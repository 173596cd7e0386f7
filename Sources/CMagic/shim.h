#ifndef OSQUERY_SWIFT_CMAGIC_SHIM_H
#define OSQUERY_SWIFT_CMAGIC_SHIM_H
/* libmagic (Debian libmagic-dev), as osquery's magic table uses it. */
#include <magic.h>
#endif
