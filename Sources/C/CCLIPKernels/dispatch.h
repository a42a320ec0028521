// Calls the build of a kernel that suits this CPU. The plain-C kernels (element-wise layers, their backward passes,
// the depthwise convolution) are compiled three times on x86-64 under target attributes, as NAME_avx512, NAME_avx2
// and NAME_generic; elsewhere only NAME_generic exists, which the compiler vectorises for the baseline (NEON on
// arm64). clip_cpu_level() is read at every call: after its first call it is a load of the level chosen then (the
// CPU's, or a lower one named by CLIP_CPU).
#ifndef CLIP_DISPATCH_H
#define CLIP_DISPATCH_H

#include "CCLIPKernels.h"

#if defined(__x86_64__) || defined(__i386__)
#define CLIP_CALL_BEST(NAME, ...)                                                                               \
    do {                                                                                                       \
        switch (clip_cpu_level()) {                                                                            \
        case CLIP_LEVEL_AVX512: NAME##_avx512(__VA_ARGS__); break;                                             \
        case CLIP_LEVEL_AVX2: NAME##_avx2(__VA_ARGS__); break;                                                 \
        default: NAME##_generic(__VA_ARGS__); break;                                                           \
        }                                                                                                      \
    } while (0)
#else
#define CLIP_CALL_BEST(NAME, ...) NAME##_generic(__VA_ARGS__)
#endif

#endif
