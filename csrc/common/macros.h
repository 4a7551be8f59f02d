// Portability macros shared by the CPU (g++) and CUDA (nvcc) builds.
#pragma once

#if defined(__CUDACC__)
#define FBK_HD __host__ __device__
#else
#define FBK_HD
#endif

#define FBK_HD_INLINE FBK_HD inline
