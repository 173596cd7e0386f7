#ifndef C_ALLOC_COUNTER_H
#define C_ALLOC_COUNTER_H
#include <stdint.h>

/// Heap allocations (malloc, calloc, realloc, posix_memalign, aligned_alloc, memalign)
/// made by every thread of this process since it started.
uint64_t alloc_counter_allocations(void);

#endif
