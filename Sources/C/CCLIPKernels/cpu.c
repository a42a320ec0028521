// The one place that decides which instruction-set extensions the kernels may use: what the CPU and OS support,
// limited by the CLIP_CPU environment variable. Every kernel, test, benchmark and error message asks here, so
// `CLIP_CPU=avx2` on an AVX-512 machine runs exactly the code an AVX2-only machine runs.
#if defined(__linux__)
#define _GNU_SOURCE
#include <sched.h>
#endif
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "CCLIPKernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMD
#define HWCAP_ASIMD (1 << 1)
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#elif defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

static unsigned detect_hardware(void) {
    unsigned f = 0;
#if defined(__x86_64__) || defined(__i386__)
    // compiler-rt's CPU model also checks that the OS saves the wider registers (XCR0), not only CPUID.
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) f |= CLIP_CPU_AVX2;
#if defined(__x86_64__)
    unsigned a, b, c, d;
    // CPUID leaf 7, EBX bit 29: the SHA extensions (XMM registers only, so no OS state to check).
    if (__get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 29)) && __builtin_cpu_supports("sse4.1")) f |= CLIP_CPU_SHA;
#endif
    if (f & CLIP_CPU_AVX2) {
        if (__builtin_cpu_supports("avxvnni")) f |= CLIP_CPU_AVX_VNNI;
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
            __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl")) {
            f |= CLIP_CPU_AVX512;
            if (__builtin_cpu_supports("avx512vnni")) f |= CLIP_CPU_AVX512_VNNI;
            if (__builtin_cpu_supports("avx512bf16")) f |= CLIP_CPU_AVX512_BF16;
        }
    }
#elif defined(__aarch64__)
    f |= CLIP_CPU_NEON;  // Advanced SIMD is part of every AArch64 CPU
#if defined(__linux__)
    if (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) f |= CLIP_CPU_NEON_DOTPROD;
#elif defined(__APPLE__)
    int has = 0;
    size_t size = sizeof has;
    if (sysctlbyname("hw.optional.arm.FEAT_DotProd", &has, &size, NULL, 0) == 0 && has) f |= CLIP_CPU_NEON_DOTPROD;
#endif
#endif
    return f;
}

// What each CLIP_CPU level needs from the CPU and which detected features it keeps.
static const struct {
    const char *name;
    unsigned needs, keeps;
} levels[] = {
    {"portable", 0, 0},
    {"avx2", CLIP_CPU_AVX2, CLIP_CPU_AVX2 | CLIP_CPU_AVX_VNNI | CLIP_CPU_SHA},
    {"avx512", CLIP_CPU_AVX512, CLIP_CPU_X86_ALL | CLIP_CPU_SHA},
    {"neon", CLIP_CPU_NEON, CLIP_CPU_NEON | CLIP_CPU_NEON_DOTPROD},
};

typedef struct {
    unsigned hardware, features;
    char error[200];
} cpu_state;

static cpu_state state;
static pthread_once_t state_once = PTHREAD_ONCE_INIT;

// The levels this CPU can run, for error messages: "portable, avx2".
static void supported_levels(unsigned hardware, char *out, size_t size) {
    out[0] = 0;
    for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++) {
        if ((hardware & levels[i].needs) != levels[i].needs) continue;
        if (out[0]) strncat(out, ", ", size - strlen(out) - 1);
        strncat(out, levels[i].name, size - strlen(out) - 1);
    }
}

static void resolve(void) {
    cpu_state s = {0, 0, {0}};
    s.hardware = detect_hardware();
    s.features = s.hardware;
    const char *want = getenv("CLIP_CPU");
    if (want && *want && strcmp(want, "native") != 0) {
        char names[64];
        supported_levels(s.hardware, names, sizeof names);
        size_t i = 0;
        while (i < sizeof levels / sizeof levels[0] && strcmp(want, levels[i].name) != 0) i++;
        if (i == sizeof levels / sizeof levels[0]) {
            snprintf(s.error, sizeof s.error, "CLIP_CPU=%.40s: unknown level (this CPU can run: %s, or native)", want,
                     names);
        } else if ((s.hardware & levels[i].needs) != levels[i].needs) {
            // A level above what the CPU has cannot be forced: it would only die of SIGILL later.
            snprintf(s.error, sizeof s.error, "CLIP_CPU=%s: this CPU lacks %s (it can run: %s, or native)", want,
                     levels[i].name, names);
        } else {
            s.features = s.hardware & levels[i].keeps;
        }
    }
    state = s;
}

static const cpu_state *current(void) {
    pthread_once(&state_once, resolve);
    return &state;
}

unsigned clip_cpu_hardware(void) { return current()->hardware; }

unsigned clip_cpu_features(void) { return current()->features; }

const char *clip_cpu_error(void) { return current()->error[0] ? current()->error : NULL; }

int clip_cpu_level(void) {
    const unsigned f = clip_cpu_features();
    if (f & CLIP_CPU_AVX512) return CLIP_LEVEL_AVX512;
    if (f & CLIP_CPU_AVX2) return CLIP_LEVEL_AVX2;
    if (f & CLIP_CPU_NEON) return CLIP_LEVEL_NEON;
    return CLIP_LEVEL_PORTABLE;
}

int clip_available_cpus(void) {
#if defined(__linux__)
    // The affinity mask honours taskset and cgroup CPU pinning; the count of online CPUs does not.
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
#endif
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}
