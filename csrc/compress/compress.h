// The `compress` family: exact TopK by magnitude, fused EF14 / EF21 steps, and deterministic
// decompression. Selection runs on order-preserving unsigned integer keys: a radix select over
// their bits finds the k-th largest key exactly, then ties go to the lowest indices.
// Per-element math lives here, shared by the CPU and CUDA kernels; the entry points are
// implemented in <op>_cpu.cpp and <op>_cuda.cu.
#pragma once

#include <cstdint>
#include <limits>
#include <type_traits>

#include "common/dtype.h"
#include "common/macros.h"
#include "common/tensor_view.h"

namespace fbk {

// Codes must match feedbackkit/ops/compress.py.
enum class TopKBy : int { Abs = 0, Value = 1 };

// The unsigned key type of a storage or accumulation type.
template <class T> struct KeyOf { using type = bits_t<T>; };
template <> struct KeyOf<float> { using type = uint32_t; };
template <> struct KeyOf<double> { using type = uint64_t; };
template <class T> using key_t = typename KeyOf<T>::type;

template <class U> FBK_HD_INLINE constexpr U key_max() { return static_cast<U>(~U(0)); }
template <class U> FBK_HD_INLINE constexpr U sign_bit() { return static_cast<U>(U(1) << (8 * sizeof(U) - 1)); }
template <class U> FBK_HD_INLINE constexpr int key_bits() { return int(8 * sizeof(U)); }

// Exponent-all-ones pattern of each storage type: magnitudes above it are NaN.
template <class T> FBK_HD_INLINE constexpr key_t<T> inf_bits();
template <> FBK_HD_INLINE constexpr uint32_t inf_bits<float>() { return 0x7F800000u; }
template <> FBK_HD_INLINE constexpr uint64_t inf_bits<double>() { return 0x7FF0000000000000ull; }
template <> FBK_HD_INLINE constexpr uint16_t inf_bits<bf16>() { return 0x7F80u; }
template <> FBK_HD_INLINE constexpr uint16_t inf_bits<f16>() { return 0x7C00u; }

FBK_HD_INLINE uint32_t raw_bits(float x) { return float_to_bits(x); }
FBK_HD_INLINE uint64_t raw_bits(double x) { return double_to_bits(x); }
FBK_HD_INLINE uint16_t raw_bits(bf16 x) { return x.bits; }
FBK_HD_INLINE uint16_t raw_bits(f16 x) { return x.bits; }

// Order-preserving key of x: larger |x| (by=Abs) or larger x (by=Value) gives a larger key;
// -0 and +0 share a key. Every NaN maps to the maximum key, which no number has,
// so NaNs rank above +inf and are counted by comparing with key_max.
template <class T>
FBK_HD_INLINE key_t<T> order_key(T x, TopKBy by) {
  using U = key_t<T>;
  const U bits = raw_bits(x);
  const U magnitude = static_cast<U>(bits & static_cast<U>(~sign_bit<U>()));
  if (magnitude > inf_bits<T>()) return key_max<U>();
  if (by == TopKBy::Abs) return magnitude;
  if (magnitude == 0) return sign_bit<U>();  // -0 ties with +0
  return (bits & sign_bit<U>()) ? static_cast<U>(~bits) : static_cast<U>(bits | sign_bit<U>());
}

template <class T>
FBK_HD_INLINE key_t<T> magnitude_key(T x) {
  return order_key(x, TopKBy::Abs);
}

// EF21 (Richtárik et al. 2021): the compressor's input c = grad − g_i, in the accumulation type.
template <class T, class S>
FBK_HD_INLINE acc_t<T> ef21_difference(T grad, S g_i) {
  return to_acc<acc_t<T>>(grad) - to_acc<acc_t<T>>(g_i);
}

// EF14 (Seide et al. 2014; Stich et al. 2018): the compressor's input t = e + lr·grad,
// rounded once per operation (no fused multiply-add) so every device gives the same bits.
template <class T, class S>
FBK_HD_INLINE acc_t<T> ef14_accumulate(T grad, S error, acc_t<T> lr) {
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<acc_t<T>, double>)
    return __dadd_rn(to_acc<double>(error), __dmul_rn(lr, to_acc<double>(grad)));
  else
    return __fadd_rn(to_acc<float>(error), __fmul_rn(lr, to_acc<float>(grad)));
#else
  return to_acc<acc_t<T>>(error) + lr * to_acc<acc_t<T>>(grad);
#endif
}

// out + scale·v in the accumulation type, rounded once per operation, stored back.
template <class T>
FBK_HD_INLINE T scaled_add(T out, T v, acc_t<T> scale) {
  using A = acc_t<T>;
#if defined(__CUDA_ARCH__)
  if constexpr (std::is_same_v<A, double>) return __dadd_rn(out, __dmul_rn(scale, v));
  else return from_acc<T>(__fadd_rn(to_acc<float>(out), __fmul_rn(scale, to_acc<float>(v))));
#else
  return from_acc<T>(to_acc<A>(out) + scale * to_acc<A>(v));
#endif
}

// Calls f(TypeTag<T>{}, TypeTag<I>{}) for a float tensor and the index type of a message.
template <class F>
void dispatch_message(DType value_dtype, DType index_dtype, F&& f) {
  dispatch_float_index(value_dtype, "values", index_dtype, "indices", f);
}

// ---- entry points (status: int64[1], receives the number of NaN keys seen) -------------------
// When allow_nan is false and a NaN is seen, nothing is written except status: no output,
// message or state changes.

void topk_cpu(const TensorView& x, int64_t k, TopKBy by, bool allow_nan, const TensorView& values,
              const TensorView& indices, const TensorView& status);
void ef21_step_cpu(const TensorView& grad, const TensorView& g_i, int64_t k, bool allow_nan,
                   const TensorView& values, const TensorView& indices, const TensorView& status);
void ef14_step_cpu(const TensorView& grad, const TensorView& error, int64_t k, double lr, bool allow_nan,
                   const TensorView& values, const TensorView& indices, const TensorView& status);
void decompress_add_cpu(const TensorView& out, const TensorView& indices, const TensorView& values, double scale);

// CUDA: `workspace` is a uint8 buffer of at least compress_workspace_bytes(n) bytes.
int64_t compress_workspace_bytes(int64_t n);
void topk_cuda(const TensorView& x, int64_t k, TopKBy by, bool allow_nan, const TensorView& values,
               const TensorView& indices, const TensorView& status, const TensorView& workspace, uintptr_t stream);
void ef21_step_cuda(const TensorView& grad, const TensorView& g_i, int64_t k, bool allow_nan,
                    const TensorView& values, const TensorView& indices, const TensorView& status,
                    const TensorView& workspace, uintptr_t stream);
void ef14_step_cuda(const TensorView& grad, const TensorView& error, int64_t k, double lr, bool allow_nan,
                    const TensorView& values, const TensorView& indices, const TensorView& status,
                    const TensorView& workspace, uintptr_t stream);
void decompress_add_cuda(const TensorView& out, const TensorView& indices, const TensorView& values, double scale,
                         uintptr_t stream);

}  // namespace fbk
