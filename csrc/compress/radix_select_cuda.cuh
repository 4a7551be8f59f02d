// Exact top-k selection over unsigned keys on the GPU, the CUDA counterpart of radix_select_cpu.h.
// The host launches a fixed sequence of kernels and never learns when the threshold is found; a
// state in the workspace drives them:
//   1. init (one block): resets the state; for large inputs with a small k/n it reads kSample
//      evenly spaced keys and sets `lower` so that, with overwhelming probability, at least k keys
//      reach it and only a few times k do.
//   2. prefilter (those inputs only): one streaming read that counts NaN keys, marks the keys
//      >= lower in a bitmap and copies them into a candidate buffer. Its last block reports the
//      NaN count, aborts on NaN when NaN is not allowed, and falls back to selecting over the whole
//      input when the candidates cannot hold the k largest (fewer than k, or the buffer overflowed).
//   3. per 12-bit digit of the key, top first: hist (a shared-memory histogram per block of the
//      digit of the keys in the current bucket, merged into a global one); its last block finds
//      the bucket holding the need-th largest key, extends the prefix and zeroes the histogram.
//      The state is done once the bucket holds exactly `need` keys or the whole key is known;
//      later passes return at once.
//   4. count (block per chunk): keys above the bucket and in it; its last block turns the counts
//      into exclusive offsets over the chunks. write (block per chunk): walks its chunk in index
//      order and takes every key above the bucket and the first `need` keys in it, so ties go to
//      the lowest indices and the output order depends on the input only.
// The chunks are a function of n; histograms are integer sums, so atomics never decide a result.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/checks.h"
#include "common/cuda_utils.cuh"
#include "compress/compress.h"

namespace fbk {
namespace radix {

constexpr int kDigitBits = 12;
constexpr int kBins = 1 << kDigitBits;
constexpr int kThreads = 256;                        // every kernel but init
constexpr int kBinsPerThread = kBins / kThreads;     // the bucket search
constexpr int64_t kChunk = 16384;                    // elements per chunk of count and write
constexpr int kSampleThreads = 1024;
constexpr int kSamplePerThread = 16;
constexpr int kSample = kSampleThreads * kSamplePerThread;
constexpr int kSlabs = 64;                           // candidate sub-buffers, to spread the atomics
constexpr int64_t kPrefilterMin = int64_t(1) << 18;  // smaller inputs always select over everything

using ull = unsigned long long;

struct State {
  ull prefix;               // the bucket: keys whose top prefix_bits bits equal prefix
  ull lower;                // keys >= lower are eligible (the prefilter's bound; 0: every key)
  ull nan_count;
  long long above_total;    // keys above the bucket (set by count)
  long long need;           // how many keys of the bucket are selected
  int prefix_bits;
  int done;                 // the bucket is final
  int abort;                // NaN seen and not allowed: nothing but status is written
  int full;                 // select over the whole input (1) or over the candidates (0)
  unsigned int blocks_done;  // for last-block detection
  long long slab_most;      // the fullest slab's count
  ull slab_count[kSlabs];   // candidates appended to each slab (may exceed slab_cap: overflow)
};

// Workspace layout for n elements; compress_workspace_bytes(n) is `total`.
struct Layout {
  int64_t chunks = 0, words = 0, cand_bytes = 0;
  int64_t state = 0, hist = 0, above = 0, equal = 0, bitmap = 0, cand = 0, total = 0;
};

inline int64_t align256(int64_t bytes) { return (bytes + 255) / 256 * 256; }

inline Layout layout(int64_t n) {
  Layout l;
  l.chunks = std::max<int64_t>(1, (n + kChunk - 1) / kChunk);
  const bool prefilter = n >= kPrefilterMin;
  l.words = prefilter ? (n + 31) / 32 : 0;
  l.cand_bytes = prefilter ? n / 4 : 0;  // n/8 16-bit keys, n/16 32-bit keys, n/32 64-bit keys
  int64_t at = 0;
  const auto take = [&at](int64_t bytes) {
    const int64_t offset = at;
    at += align256(bytes);
    return offset;
  };
  l.state = take(int64_t(sizeof(State)));
  l.hist = take(int64_t(kBins) * 8);
  l.above = take(l.chunks * 8);
  l.equal = take(l.chunks * 8);
  l.bitmap = take(l.words * 4);
  l.cand = take(l.cand_bytes);
  l.total = at;
  return l;
}

template <class U>
struct Work {
  State* st;
  ull* hist;          // [kBins]
  long long* above;   // [chunks]: keys above the bucket per chunk, then their exclusive offsets
  long long* equal;   // [chunks]: keys in the bucket per chunk, then their exclusive offsets
  uint32_t* bitmap;   // [ceil(n/32)]: bit i%32 of word i/32 is set when key i >= lower
  U* cand;            // [kSlabs][slab_cap]: the candidate keys, unordered
  int64_t slab_cap;
  int64_t n;
};

// ---- device helpers ---------------------------------------------------------------------------

__device__ inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
__device__ inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// Elements [i, i + count) of p (count <= V; the rest zero), with one 16-byte load when possible.
template <class T, int V>
__device__ inline void load_span(const T* p, int64_t i, int count, bool vec, T (&out)[V]) {
  static_assert(sizeof(T) * V == 16, "a span is 16 bytes");
  if (vec && count == V) {
    const uint4 raw = *reinterpret_cast<const uint4*>(p + i);
    memcpy(out, &raw, 16);
    return;
  }
#pragma unroll
  for (int j = 0; j < V; ++j) out[j] = j < count ? p[i + j] : T{};
}

template <class T, int V>
__device__ inline void store_span(T* p, int64_t i, int count, bool vec, const T (&in)[V]) {
  if (vec && count == V) {
    uint4 raw;
    memcpy(&raw, in, 16);
    *reinterpret_cast<uint4*>(p + i) = raw;
    return;
  }
#pragma unroll
  for (int j = 0; j < V; ++j)
    if (j < count) p[i + j] = in[j];
}

// Exclusive prefix sum over the block (in thread order) and the block's total, in every thread.
template <class V>
__device__ inline V block_exclusive_scan(V v, V& total) {
  __shared__ V warp_total[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  V inclusive = v;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const V other = __shfl_up_sync(0xffffffffu, inclusive, d);
    if (lane >= d) inclusive += other;
  }
  if (lane == 31) warp_total[warp] = inclusive;
  __syncthreads();
  V before = 0;
  total = 0;
  for (int q = 0; q < warps; ++q) {
    const V t = warp_total[q];
    if (q < warp) before += t;
    total += t;
  }
  __syncthreads();  // warp_total may be reused by the next call
  return before + inclusive - v;
}

// Sum over the threads after this one (in thread order), in every thread.
template <class V>
__device__ inline V block_suffix_exclusive(V v) {
  __shared__ V warp_total[32];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = blockDim.x >> 5;
  V inclusive = v;
#pragma unroll
  for (int d = 1; d < 32; d <<= 1) {
    const V other = __shfl_down_sync(0xffffffffu, inclusive, d);
    if (lane + d < 32) inclusive += other;
  }
  if (lane == 0) warp_total[warp] = inclusive;
  __syncthreads();
  V after = inclusive - v;
  for (int q = warp + 1; q < warps; ++q) after += warp_total[q];
  __syncthreads();
  return after;
}

// True in every thread of the block that finishes last; the global writes of every other block
// (made before its call) are visible to it. Every thread of every block must call it.
__device__ inline bool last_block(unsigned int* counter) {
  __shared__ bool last;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) {
    last = atomicAdd(counter, 1u) == gridDim.x - 1;
    if (last) *counter = 0;  // for the next kernel
  }
  __syncthreads();
  if (last) __threadfence();
  return last;
}

// The final bucket, and whether a key is above it (2), in it and eligible (1), or neither (0).
template <class U>
struct Bucket {
  U prefix;
  U lower;
  int shift;  // key_bits − prefix_bits

  __device__ explicit Bucket(const State& st)
      : prefix(U(st.prefix)), lower(U(st.lower)), shift(key_bits<U>() - st.prefix_bits) {}

  __device__ int classify(U key) const {
    const U top = shift >= key_bits<U>() ? U(0) : U(key >> shift);
    if (top > prefix) return 2;
    return top == prefix && key >= lower ? 1 : 0;
  }
};

// With the histogram of the next digit complete: the bucket holding the need-th largest key.
// Every thread of the block must call it; zeroes the histogram.
template <class U>
__device__ void find_bucket(const Work<U>& w, int prefix_bits, ull prefix, long long need) {
  const int digit_bits = min(kDigitBits, key_bits<U>() - prefix_bits);
  ull count[kBinsPerThread], sum = 0;
#pragma unroll
  for (int q = 0; q < kBinsPerThread; ++q) {
    const int b = threadIdx.x * kBinsPerThread + q;
    count[q] = __ldcg(&w.hist[b]);
    sum += count[q];
    w.hist[b] = 0;
  }
  ull above = block_suffix_exclusive(sum);
  for (int q = kBinsPerThread - 1; q >= 0; --q) {
    if (above < ull(need) && above + count[q] >= ull(need)) {
      const long long rest = need - (long long)above;
      const int bits = prefix_bits + digit_bits;
      w.st->need = rest;
      w.st->prefix = (prefix << digit_bits) | ull(threadIdx.x * kBinsPerThread + q);
      w.st->prefix_bits = bits;
      w.st->done = count[q] == ull(rest) || bits == key_bits<U>();
    }
    above += count[q];
  }
}

// The key at rank `rank` (1 = largest) of kSample evenly spaced keys, cut to its top 16 bits:
// a lower bound that about rank/kSample of the keys reach. Called by every thread of the block.
template <class Src>
__device__ typename Src::U sample_lower(const Src& src, int64_t n, int rank) {
  using U = typename Src::U;
  constexpr int kTop = key_bits<U>() - 16;
  __shared__ unsigned int h[256];
  __shared__ unsigned int digit;
  __shared__ int rest;
  U keys[kSamplePerThread];
#pragma unroll
  for (int j = 0; j < kSamplePerThread; ++j) {
    const int64_t s = int64_t(j) * kSampleThreads + threadIdx.x;
    keys[j] = src.key((2 * s + 1) * n / (2 * int64_t(kSample)));
  }
  unsigned int prefix = 0;
  int need = rank;
  for (int pass = 0; pass < 2; ++pass) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x) h[b] = 0;
    __syncthreads();
#pragma unroll
    for (int j = 0; j < kSamplePerThread; ++j) {
      const unsigned int top = unsigned(keys[j] >> kTop);
      if (pass == 0 || (top >> 8) == prefix) atomicAdd(&h[pass == 0 ? top >> 8 : top & 255u], 1u);
    }
    __syncthreads();
    if (threadIdx.x < 32) {
      const int lane = threadIdx.x;
      unsigned int count[8], sum = 0;
#pragma unroll
      for (int q = 0; q < 8; ++q) sum += count[q] = h[lane * 8 + q];
      unsigned int inclusive = sum;
#pragma unroll
      for (int d = 1; d < 32; d <<= 1) {
        const unsigned int other = __shfl_down_sync(0xffffffffu, inclusive, d);
        if (lane + d < 32) inclusive += other;
      }
      unsigned int above = inclusive - sum;
      for (int q = 7; q >= 0; --q) {
        if (above < unsigned(need) && above + count[q] >= unsigned(need)) {
          digit = lane * 8 + q;
          rest = need - int(above);
        }
        above += count[q];
      }
    }
    __syncthreads();
    prefix = (prefix << 8) | digit;
    need = rest;
    __syncthreads();
  }
  return U(U(prefix) << kTop);
}

// ---- kernels ----------------------------------------------------------------------------------

// rank > 0: prefilter with the rank-th largest sampled key as the bound.
template <class Src>
__global__ void __launch_bounds__(kSampleThreads) init_kernel(Src src, Work<typename Src::U> w, int64_t k,
                                                              int rank) {
  using U = typename Src::U;
  State* st = w.st;
  for (int b = threadIdx.x; b < kBins; b += blockDim.x) w.hist[b] = 0;
  if (threadIdx.x < kSlabs) st->slab_count[threadIdx.x] = 0;
  const U lower = rank > 0 ? sample_lower(src, w.n, rank) : U(0);
  if (threadIdx.x == 0) {
    st->prefix = 0;
    st->lower = lower;
    st->nan_count = 0;
    st->above_total = 0;
    st->need = k;
    st->prefix_bits = 0;
    st->done = 0;
    st->abort = 0;
    st->full = lower == U(0);  // every key would be a candidate
    st->blocks_done = 0;
  }
}

// One streaming read: NaN count, bitmap and candidates. A warp handles 32·V consecutive keys
// (V per lane, so V bitmap words) and appends its candidates to slab (warp id mod kSlabs).
template <class Src>
__global__ void __launch_bounds__(kThreads) prefilter_kernel(Src src, Work<typename Src::U> w, int64_t k,
                                                             bool allow_nan, int64_t* status) {
  using U = typename Src::U;
  constexpr int V = Src::V, kLanesPerWord = 32 / V;
  State* st = w.st;
  const bool collect = !st->full;
  const U lower = U(st->lower);
  const int lane = threadIdx.x & 31;
  const int64_t warp = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t warps = (int64_t(gridDim.x) * blockDim.x) >> 5;
  const int slab = int(warp % kSlabs);
  U* cand = w.cand + slab * w.slab_cap;
  const int64_t tiles = (w.n + 32 * V - 1) / (32 * V);
  long long nans = 0;
  for (int64_t t = warp; t < tiles; t += warps) {
    const int64_t i = t * 32 * V + int64_t(lane) * V;
    const int count = int(max64(0, min64(V, w.n - i)));
    U key[V];
    src.keys(i, count, key);
    unsigned int flags = 0;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      if (j < count) {
        nans += key[j] == key_max<U>();
        if (key[j] >= lower) flags |= 1u << j;
      }
    }
    if (!collect) continue;
    unsigned int word = flags << ((lane * V) & 31);
#pragma unroll
    for (int d = 1; d < kLanesPerWord; d <<= 1) word |= __shfl_xor_sync(0xffffffffu, word, d);
    const int64_t word_index = t * V + lane / kLanesPerWord;
    if (lane % kLanesPerWord == 0 && word_index * 32 < w.n) w.bitmap[word_index] = word;
    const int c = __popc(flags);
    if (__any_sync(0xffffffffu, c != 0)) {
      int inclusive = c;
#pragma unroll
      for (int d = 1; d < 32; d <<= 1) {
        const int other = __shfl_up_sync(0xffffffffu, inclusive, d);
        if (lane >= d) inclusive += other;
      }
      ull base = 0;
      if (lane == 31) base = atomicAdd(&st->slab_count[slab], ull(inclusive));
      long long at = (long long)__shfl_sync(0xffffffffu, base, 31) + inclusive - c;
#pragma unroll
      for (int j = 0; j < V; ++j) {
        if ((flags >> j) & 1u) {
          if (at < w.slab_cap) cand[at] = key[j];
          ++at;
        }
      }
    }
  }
  nans = block_sum(nans);
  if (threadIdx.x == 0 && nans > 0) atomicAdd(&st->nan_count, ull(nans));
  if (!last_block(&st->blocks_done) || threadIdx.x != 0) return;
  const ull total_nans = __ldcg(&st->nan_count);
  status[0] = (int64_t)total_nans;
  if (total_nans > 0 && !allow_nan) {
    st->abort = 1;
    st->done = 1;
    return;
  }
  if (!collect) return;
  ull total = 0, most = 0;
  for (int s = 0; s < kSlabs; ++s) {
    const ull c = __ldcg(&st->slab_count[s]);
    most = c > most ? c : most;
    total += c;
  }
  st->slab_most = (long long)most;
  const bool overflow = most > ull(w.slab_cap);
  if (overflow || total < ull(k)) {
    st->full = 1;
    st->lower = 0;
  }
}

// One digit pass. report: the first pass without prefilter, which counts NaN keys, writes status
// and aborts on NaN when NaN is not allowed.
template <class Src>
__global__ void __launch_bounds__(kThreads) hist_kernel(Src src, Work<typename Src::U> w, bool report,
                                                        bool allow_nan, int64_t* status) {
  using U = typename Src::U;
  constexpr int V = Src::V;
  __shared__ unsigned int h[kBins];
  State* st = w.st;
  if (st->done) return;
  const bool full = st->full;
  const int prefix_bits = st->prefix_bits;
  const ull prefix = st->prefix;
  const long long need = st->need;
  const int digit_bits = min(kDigitBits, key_bits<U>() - prefix_bits);
  const int shift = key_bits<U>() - prefix_bits - digit_bits;
  const unsigned int mask = (1u << digit_bits) - 1u;
  const int64_t first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t groups = (w.n + V - 1) / V;
  const int64_t most = full ? groups : st->slab_most;  // blocks past it have nothing to do
  // Called by every lane of a warp together; a warp whose keys share a bin (ties) adds once.
  const int lane = threadIdx.x & 31;
  const auto add = [&](U key, bool on) {
    const bool counted = on && (prefix_bits == 0 || ull(key >> (shift + digit_bits)) == prefix);
    const unsigned int bin = counted ? unsigned(key >> shift) & mask : unsigned(kBins);
    if (__all_sync(0xffffffffu, bin == __shfl_sync(0xffffffffu, bin, 0))) {
      if (lane == 0 && bin < unsigned(kBins)) atomicAdd(&h[bin], 32u);
    } else if (bin < unsigned(kBins)) {
      atomicAdd(&h[bin], 1u);
    }
  };
  long long nans = 0;
  if (int64_t(blockIdx.x) * blockDim.x < most) {
    for (int b = threadIdx.x; b < kBins; b += blockDim.x) h[b] = 0;
    __syncthreads();
    // Warp-uniform loops (a warp's threads are consecutive in `first`), so add() is convergent.
    const int64_t warp_first = first - lane;
    if (full) {
      for (int64_t base = warp_first; base < groups; base += stride) {
        const int64_t i = (base + lane) * V;
        const int count = int(max64(0, min64(V, w.n - i)));
        U key[V];
        src.keys(i, count, key);
#pragma unroll
        for (int j = 0; j < V; ++j) {
          nans += j < count && key[j] == key_max<U>();
          add(key[j], j < count);
        }
      }
    } else {
      for (int s = 0; s < kSlabs; ++s) {
        const int64_t count = min64(int64_t(st->slab_count[s]), w.slab_cap);
        const U* cand = w.cand + s * w.slab_cap;
        for (int64_t base = warp_first; base < count; base += stride)
          add(base + lane < count ? cand[base + lane] : U(0), base + lane < count);
      }
    }
    __syncthreads();
    for (int b = threadIdx.x; b <= int(mask); b += blockDim.x)
      if (h[b] != 0) atomicAdd(&w.hist[b], ull(h[b]));
  }
  if (report) {
    nans = block_sum(nans);
    if (threadIdx.x == 0 && nans > 0) atomicAdd(&st->nan_count, ull(nans));
  }
  if (!last_block(&st->blocks_done)) return;
  if (report) {
    const ull total_nans = __ldcg(&st->nan_count);
    if (threadIdx.x == 0) status[0] = (int64_t)total_nans;
    if (total_nans > 0 && !allow_nan) {
      if (threadIdx.x == 0) {
        st->abort = 1;
        st->done = 1;
      }
      return;
    }
  }
  find_bucket(w, prefix_bits, prefix, need);
}

// Keys above the bucket and in it, per chunk; the last block turns them into exclusive offsets.
template <class Src>
__global__ void __launch_bounds__(kThreads) count_kernel(Src src, Work<typename Src::U> w, int64_t chunks) {
  using U = typename Src::U;
  constexpr int V = Src::V;
  State* st = w.st;
  if (st->abort) return;
  const Bucket<U> bucket(*st);
  const int64_t c = blockIdx.x, begin = c * kChunk, end = min64(w.n, begin + kChunk);
  long long above = 0, equal = 0;
  const auto tally = [&](U key) {
    const int cls = bucket.classify(key);
    above += cls == 2;
    equal += cls == 1;
  };
  if (!st->full) {
    const int64_t word_end = (end + 31) / 32;
    for (int64_t word = begin / 32 + threadIdx.x; word < word_end; word += blockDim.x)
      for (unsigned int bits = w.bitmap[word]; bits != 0; bits &= bits - 1) tally(src.key(word * 32 + __ffs(bits) - 1));
  } else {
    for (int64_t i = begin + int64_t(threadIdx.x) * V; i < end; i += int64_t(blockDim.x) * V) {
      const int count = int(min64(V, end - i));
      U key[V];
      src.keys(i, count, key);
#pragma unroll
      for (int j = 0; j < V; ++j)
        if (j < count) tally(key[j]);
    }
  }
  above = block_sum(above);
  equal = block_sum(equal);
  if (threadIdx.x == 0) {
    w.above[c] = above;
    w.equal[c] = equal;
  }
  if (!last_block(&st->blocks_done)) return;
  const int64_t per = (chunks + blockDim.x - 1) / blockDim.x;
  const int64_t lo = min64(chunks, int64_t(threadIdx.x) * per), hi = min64(chunks, lo + per);
  long long a = 0, e = 0;
  for (int64_t j = lo; j < hi; ++j) {
    a += __ldcg(&w.above[j]);
    e += __ldcg(&w.equal[j]);
  }
  long long a_total = 0, e_total = 0;
  a = block_exclusive_scan(a, a_total);
  e = block_exclusive_scan(e, e_total);
  for (int64_t j = lo; j < hi; ++j) {
    const long long a_here = __ldcg(&w.above[j]), e_here = __ldcg(&w.equal[j]);
    w.above[j] = a;
    w.equal[j] = e;
    a += a_here;
    e += e_here;
  }
  if (threadIdx.x == 0) st->above_total = a_total;
}

// A thread's keys above the bucket (low 16 bits) and in it (high 16 bits), for one block scan of both:
// at most kThreads · 32 of each per round, so neither field overflows.
__device__ inline unsigned int pack_counts(unsigned int above_bits, unsigned int equal_bits) {
  return unsigned(__popc(above_bits)) | (unsigned(__popc(equal_bits)) << 16);
}

// Takes the selected keys of one chunk in index order: those above the bucket at slots
// [0, above_total) and the first `need` in it after them. Sink::take(slot, i) is called per
// selected key; a Sink with kVisitAll instead gets visit(i, count, selected, slots) for every
// span of V keys (and always walks densely, so it can write every element).
template <class Src, class Sink>
__global__ void __launch_bounds__(kThreads) write_kernel(Src src, Sink sink, Work<typename Src::U> w) {
  using U = typename Src::U;
  constexpr int V = Src::V;
  const State* st = w.st;
  if (st->abort) return;
  const Bucket<U> bucket(*st);
  const long long above_total = st->above_total, need = st->need;
  const int64_t c = blockIdx.x, begin = c * kChunk, end = min64(w.n, begin + kChunk);
  long long above_next = w.above[c], equal_next = w.equal[c];
  if constexpr (!Sink::kVisitAll) {
    if (!st->full) {
      const int64_t word_begin = begin / 32, word_end = (end + 31) / 32;
      for (int64_t base = word_begin; base < word_end; base += blockDim.x) {
        const int64_t word = base + threadIdx.x;
        const unsigned int bits = word < word_end ? w.bitmap[word] : 0u;
        if (!__syncthreads_or(bits != 0)) continue;
        unsigned int above_bits = 0, equal_bits = 0;
        for (unsigned int rest = bits; rest != 0; rest &= rest - 1) {
          const int b = __ffs(rest) - 1;
          const int cls = bucket.classify(src.key(word * 32 + b));
          if (cls == 2) above_bits |= 1u << b;
          if (cls == 1) equal_bits |= 1u << b;
        }
        unsigned int total = 0;
        const unsigned int before = block_exclusive_scan(pack_counts(above_bits, equal_bits), total);
        long long slot = above_next + (before & 0xFFFFu), rank = equal_next + (before >> 16);
        for (unsigned int rest = above_bits; rest != 0; rest &= rest - 1)
          sink.take(slot++, word * 32 + __ffs(rest) - 1);
        for (unsigned int rest = equal_bits; rest != 0 && rank < need; rest &= rest - 1)
          sink.take(above_total + rank++, word * 32 + __ffs(rest) - 1);
        above_next += total & 0xFFFFu;
        equal_next += total >> 16;
      }
      return;
    }
  }
  for (int64_t base = begin; base < end; base += int64_t(blockDim.x) * V) {
    const int64_t i = base + int64_t(threadIdx.x) * V;
    const int count = int(max64(0, min64(V, end - i)));
    U key[V];
    src.keys(i, count, key);
    unsigned int above_bits = 0, equal_bits = 0;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      const int cls = j < count ? bucket.classify(key[j]) : 0;
      if (cls == 2) above_bits |= 1u << j;
      if (cls == 1) equal_bits |= 1u << j;
    }
    unsigned int total = 0;
    const unsigned int before = block_exclusive_scan(pack_counts(above_bits, equal_bits), total);
    long long slot = above_next + (before & 0xFFFFu), rank = equal_next + (before >> 16);
    long long slots[V];
    unsigned int selected = 0;
#pragma unroll
    for (int j = 0; j < V; ++j) {
      slots[j] = 0;
      if ((above_bits >> j) & 1u) {
        slots[j] = slot++;
        selected |= 1u << j;
      } else if ((equal_bits >> j) & 1u) {
        if (rank < need) {
          slots[j] = above_total + rank;
          selected |= 1u << j;
        }
        ++rank;
      }
    }
    if constexpr (Sink::kVisitAll) {
      if (count > 0) sink.visit(i, count, selected, slots);
    } else {
#pragma unroll
      for (int j = 0; j < V; ++j)
        if ((selected >> j) & 1u) sink.take(slots[j], i + j);
    }
    above_next += total & 0xFFFFu;
    equal_next += total >> 16;
  }
}

// ---- host ----------------------------------------------------------------------------------------

// Sample rank of the prefilter's bound for k of n, or 0 to select over the whole input: the
// expected number of sampled keys >= the k-th largest plus a wide margin, so that at least k keys
// reach the bound with overwhelming probability, and only while the candidates fit with room.
inline int prefilter_rank(int64_t n, int64_t k, int64_t capacity) {
  if (n < kPrefilterMin) return 0;
  const double mean = double(kSample) * double(k) / double(n);
  const double rank = std::ceil(mean + 6.0 * std::sqrt(mean) + 16.0);
  if (rank >= kSample || rank / kSample * double(n) > 0.5 * double(capacity)) return 0;
  return int(rank);
}

inline int multiprocessors(int device) {
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || sms <= 0) {
    (void)cudaGetLastError();
    sms = 132;
  }
  return sms;
}

// Blocks of a streaming kernel (grid-stride over `units` threads' work): as many as fit on the
// device at once, so the grid runs in a single wave.
template <class Kernel>
unsigned int stream_blocks(Kernel kernel, int64_t units, int sms) {
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0) != cudaSuccess || per_sm <= 0) {
    (void)cudaGetLastError();
    per_sm = 4;
  }
  const int64_t wanted = (units + kThreads - 1) / kThreads;
  return unsigned(std::max<int64_t>(1, std::min<int64_t>(wanted, int64_t(sms) * per_sm)));
}

// Selects the k largest keys of src (1 <= k <= n), ties to the lowest index, and hands them to
// sink; writes the NaN count to status[0]. Src provides U, V, key(i) and keys(i, count, out[V]).
template <class Src, class Sink>
void select_cuda(const char* op, const Src& src, const Sink& sink, int64_t n, int64_t k, bool allow_nan,
                 const TensorView& status, const TensorView& workspace, uintptr_t stream) {
  using U = typename Src::U;
  const Layout l = layout(n);
  FBK_CHECK(workspace.dtype == DType::UInt8 && workspace.numel() >= l.total, "workspace: expected at least ",
            l.total, " bytes (compress_workspace_bytes)");
  FBK_CHECK(reinterpret_cast<uintptr_t>(workspace.data) % 16 == 0, "workspace: expected 16-byte alignment");
  FBK_CHECK(l.chunks <= 0x7FFFFFFF, op, ": too many elements, ", n);
  char* base = static_cast<char*>(workspace.data);
  Work<U> w;
  w.st = reinterpret_cast<State*>(base + l.state);
  w.hist = reinterpret_cast<ull*>(base + l.hist);
  w.above = reinterpret_cast<long long*>(base + l.above);
  w.equal = reinterpret_cast<long long*>(base + l.equal);
  w.bitmap = reinterpret_cast<uint32_t*>(base + l.bitmap);
  w.cand = reinterpret_cast<U*>(base + l.cand);
  w.slab_cap = l.cand_bytes / int64_t(sizeof(U)) / kSlabs;
  w.n = n;
  int64_t* out_status = status.ptr<int64_t>();
  const int rank = prefilter_rank(n, k, w.slab_cap * kSlabs);
  const cudaStream_t s = as_stream(stream);
  const int64_t units = (n + Src::V - 1) / Src::V;
  const int sms = multiprocessors(workspace.device_index);
  const unsigned int chunks = unsigned(l.chunks);

  init_kernel<<<1, kSampleThreads, 0, s>>>(src, w, k, rank);
  check_launch(op);
  if (rank > 0) {
    const unsigned int prefilter_blocks = stream_blocks(prefilter_kernel<Src>, units, sms);
    prefilter_kernel<<<prefilter_blocks, kThreads, 0, s>>>(src, w, k, allow_nan, out_status);
    check_launch(op);
  }
  const unsigned int blocks = stream_blocks(hist_kernel<Src>, units, sms);
  for (int pass = 0; pass * kDigitBits < key_bits<U>(); ++pass) {
    hist_kernel<<<blocks, kThreads, 0, s>>>(src, w, pass == 0 && rank == 0, allow_nan, out_status);
    check_launch(op);
  }
  count_kernel<<<chunks, kThreads, 0, s>>>(src, w, l.chunks);
  check_launch(op);
  write_kernel<<<chunks, kThreads, 0, s>>>(src, sink, w);
  check_launch(op);
}

}  // namespace radix
}  // namespace fbk
