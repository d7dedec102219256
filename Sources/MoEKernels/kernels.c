#include "MoEKernels.h"
