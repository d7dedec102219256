#include "CFuzzHooks.h"

// libFuzzer's entry for programs with their own main (libclang_rt.fuzzer_no_main). Weak, so
// the normal build links without it and the driver only replays files.
extern int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*test_one)(const uint8_t *, size_t))
    __attribute__((weak));

int moepack_fuzzer_linked(void) { return LLVMFuzzerRunDriver != 0; }

int moepack_fuzzer_run(int *argc, char ***argv, int (*test_one)(const uint8_t *, size_t)) {
    return LLVMFuzzerRunDriver(argc, argv, test_one);
}
