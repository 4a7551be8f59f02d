// Element types crossing the Python boundary, their storage structs, and dtype dispatch.
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "common/macros.h"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace fbk {

// Codes must match feedbackkit/ops/_library.py::DTYPE_CODES.
enum class DType : int {
  Float32 = 0,
  Float64 = 1,
  BFloat16 = 2,
  Float16 = 3,
  Bool = 4,
  UInt8 = 5,
  Int32 = 6,
  Int64 = 7,
};

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::BFloat16: return "bfloat16";
    case DType::Float16: return "float16";
    case DType::Bool: return "bool";
    case DType::UInt8: return "uint8";
    case DType::Int32: return "int32";
    case DType::Int64: return "int64";
  }
  return "unknown";
}

// 16-bit float storage: plain bit containers so host and device code share one layout.
struct bf16 { uint16_t bits; };
struct f16 { uint16_t bits; };

FBK_HD_INLINE float bits_to_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

FBK_HD_INLINE uint32_t float_to_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}

FBK_HD_INLINE double bits_to_double(uint64_t u) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(static_cast<long long>(u));
#else
  double d;
  std::memcpy(&d, &u, sizeof d);
  return d;
#endif
}

FBK_HD_INLINE uint64_t double_to_bits(double d) {
#if defined(__CUDA_ARCH__)
  return static_cast<uint64_t>(__double_as_longlong(d));
#else
  uint64_t u;
  std::memcpy(&u, &d, sizeof u);
  return u;
#endif
}

// Converts any supported element to the accumulation type A (float or double).
template <class A> FBK_HD_INLINE A to_acc(float x) { return static_cast<A>(x); }
template <class A> FBK_HD_INLINE A to_acc(double x) { return static_cast<A>(x); }
template <class A> FBK_HD_INLINE A to_acc(bf16 x) { return static_cast<A>(bits_to_float(uint32_t(x.bits) << 16)); }
template <class A> FBK_HD_INLINE A to_acc(f16 x) {
#if defined(__CUDA_ARCH__)
  return static_cast<A>(__half2float(__ushort_as_half(x.bits)));
#else
  // Branch-free (so it vectorises): moving exponent and mantissa into float position and
  // scaling by 2^112 re-biases normals and subnormals alike; inf and NaN are selected apart.
  const uint32_t magnitude = x.bits & 0x7FFFu;
  const uint32_t sign = uint32_t(x.bits & 0x8000u) << 16;
  const uint32_t scaled = float_to_bits(bits_to_float(magnitude << 13) * 5.192296858534828e+33f);
  const uint32_t special = (magnitude << 13) | 0x7F800000u;
  return static_cast<A>(bits_to_float(sign | (magnitude >= 0x7C00u ? special : scaled)));
#endif
}

// Converts a float result to a storage element, rounding to nearest even.
template <class T> FBK_HD_INLINE T from_float(float x);
template <> FBK_HD_INLINE float from_float<float>(float x) { return x; }
template <> FBK_HD_INLINE double from_float<double>(float x) { return x; }
template <> FBK_HD_INLINE bf16 from_float<bf16>(float x) {
  const uint32_t u = float_to_bits(x);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return bf16{uint16_t((u >> 16) | 0x40u)};  // quiet nan
  return bf16{uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16)};
}
template <> FBK_HD_INLINE f16 from_float<f16>(float x) {
#if defined(__CUDA_ARCH__)
  return f16{__half_as_ushort(__float2half_rn(x))};
#else
  const uint32_t u = float_to_bits(x);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7FFFFFFFu;
  if (abs > 0x7F800000u) return f16{uint16_t(sign | 0x7E00u)};  // nan
  if (abs >= 0x477FF000u) return f16{uint16_t(sign | 0x7C00u)};  // rounds to inf
  if (abs < 0x38800000u) {
    // Result is subnormal or zero: scale into units of 2^-24 and round to nearest even.
    const float mag = bits_to_float(abs) * 16777216.0f;
    const float floor_mag = static_cast<float>(static_cast<uint32_t>(mag));
    uint32_t q = static_cast<uint32_t>(floor_mag);
    const float rem = mag - floor_mag;
    if (rem > 0.5f || (rem == 0.5f && (q & 1u))) ++q;
    return f16{uint16_t(sign | q)};
  }
  const uint32_t rounded = abs + 0xFFFu + ((abs >> 13) & 1u);
  return f16{uint16_t(sign | ((rounded - 0x38000000u) >> 13))};
#endif
}

// Stores an accumulator value: exact for double, rounded to nearest even for narrower types.
template <class T, class A> FBK_HD_INLINE T from_acc(A x) {
  if constexpr (std::is_same_v<T, double>) {
    return x;
  } else {
    return from_float<T>(static_cast<float>(x));
  }
}

// The unsigned integer holding a storage element's bits, and the conversion to it.
template <class T> struct BitsOf { using type = T; };
template <> struct BitsOf<bf16> { using type = uint16_t; };
template <> struct BitsOf<f16> { using type = uint16_t; };
template <class T> using bits_t = typename BitsOf<T>::type;
template <class T> FBK_HD_INLINE T as_bits(T x) { return x; }
FBK_HD_INLINE uint16_t as_bits(bf16 x) { return x.bits; }
FBK_HD_INLINE uint16_t as_bits(f16 x) { return x.bits; }

template <class T> struct TypeTag { using type = T; };

// Calls f(TypeTag<T>{}) for the floating storage type T behind `dtype`.
template <class F>
void dispatch_float(DType dtype, const char* arg, F&& f) {
  switch (dtype) {
    case DType::Float32: return f(TypeTag<float>{});
    case DType::Float64: return f(TypeTag<double>{});
    case DType::BFloat16: return f(TypeTag<bf16>{});
    case DType::Float16: return f(TypeTag<f16>{});
    default:
      throw std::invalid_argument(std::string(arg) + ": expected float32, float64, bfloat16 or float16, got " +
                                  dtype_name(dtype));
  }
}

// Calls f(TypeTag<T>{}) for a mask type (nonzero = valid). Bool is read as its byte.
template <class F>
void dispatch_mask(DType dtype, const char* arg, F&& f) {
  switch (dtype) {
    case DType::Bool:
    case DType::UInt8: return f(TypeTag<uint8_t>{});
    case DType::Int32: return f(TypeTag<int32_t>{});
    case DType::Int64: return f(TypeTag<int64_t>{});
    default:
      throw std::invalid_argument(std::string(arg) + ": expected bool, uint8, int32 or int64, got " +
                                  dtype_name(dtype));
  }
}

// Calls f(TypeTag<T>{}) for an index type.
template <class F>
void dispatch_index(DType dtype, const char* arg, F&& f) {
  switch (dtype) {
    case DType::Int32: return f(TypeTag<int32_t>{});
    case DType::Int64: return f(TypeTag<int64_t>{});
    default:
      throw std::invalid_argument(std::string(arg) + ": expected int32 or int64, got " + dtype_name(dtype));
  }
}

// Calls f(TypeTag<T>{}, TypeTag<I>{}) for a floating value type and an index type.
template <class F>
void dispatch_float_index(DType value_dtype, const char* value_arg, DType index_dtype, const char* index_arg, F&& f) {
  dispatch_float(value_dtype, value_arg, [&](auto vt) {
    dispatch_index(index_dtype, index_arg, [&](auto it) { f(vt, it); });
  });
}

// Accumulation type: double for double storage, float for everything narrower.
template <class T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };
template <class T> using acc_t = typename AccOf<T>::type;

}  // namespace fbk
