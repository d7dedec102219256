#ifndef CFUZZHOOKS_H
#define CFUZZHOOKS_H

#include <stddef.h>
#include <stdint.h>

/// 1 when libFuzzer is linked in (tools/fuzz.sh builds the driver with it), 0 otherwise.
int moepack_fuzzer_linked(void);

/// Hands the process to libFuzzer, which calls `test_one` per input. Only when linked.
int moepack_fuzzer_run(int *argc, char ***argv, int (*test_one)(const uint8_t *data, size_t size));

#endif
