/* CRC-32C with the SSE4.2 crc32 instruction where the CPU has it (bundle checksums). */
#include "MoEKernels.h"
#include <stdatomic.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("sse4.2"))) static uint32_t crc_sse42(uint32_t crc, const uint8_t *p, size_t n) {
    uint64_t c = crc;
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
    }
    uint32_t c32 = (uint32_t)c;
    for (; n > 0; p++, n--) c32 = _mm_crc32_u8(c32, *p);
    return c32;
}
#endif

int moe_crc32c_update(uint32_t *state, const void *data, size_t n) {
#if defined(__x86_64__)
    static _Atomic int available = -1;
    int ok = atomic_load(&available);
    if (ok < 0) {
        __builtin_cpu_init();
        ok = __builtin_cpu_supports("sse4.2") ? 1 : 0;
        atomic_store(&available, ok);
    }
    if (ok) {
        *state = crc_sse42(*state, (const uint8_t *)data, n);
        return 1;
    }
#endif
    (void)state;
    (void)data;
    (void)n;
    return 0;
}
