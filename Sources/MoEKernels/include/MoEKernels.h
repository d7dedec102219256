#ifndef MOE_KERNELS_H
#define MOE_KERNELS_H
#include <stddef.h>
#include <stdint.h>
#endif
