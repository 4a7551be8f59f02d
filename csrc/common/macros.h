// Portability macros shared by the CPU (g++) and CUDA (nvcc) builds.
#pragma once

#if defined(__CUDACC__)
#define FBK_HD __host__ __device__
#else
#define FBK_HD
#endif

#define FBK_HD_INLINE FBK_HD inline

// Hot CPU loops are compiled twice, for x86-64-v3 (AVX2, FMA) and for the baseline, and the
// loader picks one for the running CPU; wheels stay portable.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#define FBK_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define FBK_CPU_CLONES
#endif
