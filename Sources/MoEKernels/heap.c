/* Process-level allocator setting for the runtime's per-step activation buffers. */
#include "MoEKernels.h"
#if defined(__GLIBC__)
#include <malloc.h>
#endif

void moe_keep_heap_memory(void) {
#if defined(__GLIBC__)
    /* Buffers of a few MB (a batch's logits) are allocated and freed every
     * decode step. glibc would serve them with mmap and unmap them on free,
     * costing a page fault and a page clear per 4 KiB each time. */
    mallopt(M_MMAP_THRESHOLD, 256 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
#endif
}
