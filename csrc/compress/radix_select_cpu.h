// Exact top-k selection over unsigned keys on the CPU: histogram passes over 12-bit digits of
// the keys, from the most significant, narrow the k-th largest key down to one bucket; once
// that bucket is small its members are gathered and finished with nth_element. Ties at the
// threshold go to the lowest indices. The array is cut into a fixed number of chunks (a
// function of n only), so the output order does not depend on the number of threads.
#pragma once

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "compress/compress.h"

namespace fbk {

struct RadixChunks {
  int64_t n = 0;
  int64_t count = 1;
  FBK_HD int64_t begin(int64_t c) const { return n * c / count; }
  FBK_HD int64_t end(int64_t c) const { return n * (c + 1) / count; }
};

inline RadixChunks radix_chunks(int64_t n) {
  constexpr int64_t kMaxChunks = 64, kMinChunk = 16384;
  return RadixChunks{n, std::max<int64_t>(1, std::min<int64_t>(kMaxChunks, n / kMinChunk))};
}

// How the final pass takes the members of the threshold bucket.
enum class BucketRule { TakeAll, TakeLowestIndices, Gather };

template <class U>
struct RadixState {
  U prefix = 0;               // the threshold bucket: keys whose top `prefix_bits` equal `prefix`
  int prefix_bits = 0;
  int64_t need = 0;           // how many members of the bucket are selected
  int64_t bucket_size = 0;
  BucketRule rule = BucketRule::TakeAll;
  std::vector<int64_t> above;  // per chunk: keys above the bucket (all selected)
  std::vector<int64_t> equal;  // per chunk: keys in the bucket

  FBK_HD_INLINE bool in_or_above(U key, bool& above_bucket) const {
    if (prefix_bits == 0) {
      above_bucket = false;
      return true;
    }
    const U top = static_cast<U>(key >> (key_bits<U>() - prefix_bits));
    above_bucket = top > prefix;
    return top >= prefix;
  }
};

// Takes the `need` largest of `gathered` (key, index) pairs, which are in index order, ties to
// the lowest index, into slots first_slot, first_slot + 1, …
template <class U, class Take>
void take_largest(const std::vector<std::pair<U, int64_t>>& gathered, int64_t need, int64_t first_slot, Take take) {
  std::vector<U> keys(gathered.size());
  for (size_t j = 0; j < gathered.size(); ++j) keys[j] = gathered[j].first;
  std::nth_element(keys.begin(), keys.begin() + (need - 1), keys.end(), std::greater<U>());
  const U threshold = keys[need - 1];
  int64_t strictly_above = 0;
  for (const auto& g : gathered) strictly_above += g.first > threshold;
  int64_t slot = first_slot, ties = need - strictly_above;
  for (const auto& [key, i] : gathered) {
    if (key > threshold || (key == threshold && ties-- > 0)) take(slot++, i);
  }
}

// The sweep of selections that write nothing but the selected entries.
struct NoSweep {
  void operator()(int64_t) const {}
};

// Selection over every key by histogram passes (see the top of this file); the contract of
// radix_select_cpu.
template <class U, class KeyAt, class Sweep, class Take>
int64_t radix_select_full_cpu(int64_t n, int64_t k, bool allow_nan, KeyAt key_at, Sweep sweep, Take take) {
  constexpr int kDigitBits = 12;
  constexpr int64_t kBins = int64_t(1) << kDigitBits;
  const RadixChunks chunks = radix_chunks(n);
  const int64_t C = chunks.count;
  const int64_t gather_cap = std::max<int64_t>(4096, n / 16);

  RadixState<U> st;
  st.need = k;
  st.above.assign(C, 0);
  st.equal.assign(C, 0);
  std::vector<uint32_t> hist(C * kBins);
  std::vector<int64_t> total(kBins);
  std::vector<int64_t> nan_per_chunk(C, 0);
  int64_t nan_count = 0;

  for (;;) {
    const int digit_bits = std::min(kDigitBits, key_bits<U>() - st.prefix_bits);
    const int shift = key_bits<U>() - st.prefix_bits - digit_bits;
    const U digit_mask = static_cast<U>((U(1) << digit_bits) - 1);
    const bool first = st.prefix_bits == 0;
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < C; ++c) {
      uint32_t* h = hist.data() + c * kBins;
      std::fill(h, h + kBins, 0u);
      int64_t nans = 0;
      for (int64_t i = chunks.begin(c), end = chunks.end(c); i < end; ++i) {
        const U key = key_at(i);
        if (first) {
          nans += key == key_max<U>();
          ++h[key >> shift];
        } else if (static_cast<U>(key >> (shift + digit_bits)) == st.prefix) {
          ++h[(key >> shift) & digit_mask];
        }
      }
      if (first) nan_per_chunk[c] = nans;
    }
    if (first) {
      for (int64_t c = 0; c < C; ++c) nan_count += nan_per_chunk[c];
      if (nan_count > 0 && !allow_nan) return nan_count;
    }
    // The bucket holding the need-th largest key, scanning the summed histogram from the top.
    std::fill(total.begin(), total.end(), 0);
    for (int64_t c = 0; c < C; ++c)
      for (int64_t b = 0; b < kBins; ++b) total[b] += hist[c * kBins + b];
    int64_t bucket = (int64_t(1) << digit_bits) - 1, above_total = 0;
    while (above_total + total[bucket] < st.need) above_total += total[bucket--];
    const int64_t size = total[bucket];
    for (int64_t c = 0; c < C; ++c) {
      const uint32_t* h = hist.data() + c * kBins;
      for (int64_t b = bucket + 1; b <= int64_t(digit_mask); ++b) st.above[c] += h[b];
      st.equal[c] = h[bucket];
    }
    st.need -= above_total;
    st.prefix = static_cast<U>((st.prefix << digit_bits) | U(bucket));
    st.prefix_bits += digit_bits;
    st.bucket_size = size;
    if (size == st.need) { st.rule = BucketRule::TakeAll; break; }
    if (st.prefix_bits == key_bits<U>()) { st.rule = BucketRule::TakeLowestIndices; break; }
    if (size <= gather_cap) { st.rule = BucketRule::Gather; break; }
  }

  // Output slots: [0, A) keys above the bucket in chunk order, then the bucket's selected keys.
  std::vector<int64_t> above_at(C + 1, 0), equal_at(C + 1, 0);
  for (int64_t c = 0; c < C; ++c) {
    above_at[c + 1] = above_at[c] + st.above[c];
    equal_at[c + 1] = equal_at[c] + st.equal[c];
  }
  const int64_t above_count = above_at[C];
  std::vector<std::pair<U, int64_t>> gathered(st.rule == BucketRule::Gather ? size_t(st.bucket_size) : 0);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < C; ++c) {
    int64_t slot = above_at[c], rank = equal_at[c];
    for (int64_t i = chunks.begin(c), end = chunks.end(c); i < end; ++i) {
      const U key = key_at(i);
      sweep(i);
      bool above_bucket = false;
      if (!st.in_or_above(key, above_bucket)) continue;
      if (above_bucket) {
        take(slot++, i);
      } else if (st.rule == BucketRule::Gather) {
        gathered[rank++] = {key, i};
      } else {
        if (rank < st.need) take(above_count + rank, i);
        ++rank;
      }
    }
  }
  if (st.rule == BucketRule::Gather) take_largest(gathered, st.need, above_count, take);
  return nan_count;
}

// Candidates keys ≥ a bound found from a sample, gathered in index order per chunk; `overflow`
// when a chunk gathered more than it may (the bound was too low for a prefilter to pay off).
template <class U>
struct Prefiltered {
  std::vector<std::pair<U, int64_t>> keys;
  bool overflow = false;
};

// A key that, judged from evenly spaced sample keys, at least k keys reach (with a margin of
// four standard deviations) and only a few times k exceed; 0 when no bound would filter much.
template <class U, class KeyAt>
U sampled_lower_bound(int64_t n, int64_t k, KeyAt key_at) {
  constexpr int64_t kSample = 16384;
  const double expected = double(k) * double(kSample) / double(n);
  const int64_t rank = int64_t(expected + 4.0 * std::sqrt(expected) + 8.0);
  if (rank * 16 > kSample) return U(0);
  std::vector<U> sample(kSample);
  for (int64_t j = 0; j < kSample; ++j) sample[j] = key_at(j * (n / kSample));
  std::nth_element(sample.begin(), sample.begin() + (rank - 1), sample.end(), std::greater<U>());
  return sample[rank - 1];
}

template <class U, class KeyAt>
Prefiltered<U> prefilter_cpu(int64_t n, U lower, KeyAt key_at) {
  const RadixChunks chunks = radix_chunks(n);
  std::vector<std::vector<std::pair<U, int64_t>>> per_chunk(chunks.count);
  std::vector<uint8_t> overflow(chunks.count, 0);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks.count; ++c) {
    auto& found = per_chunk[c];
    const int64_t cap = (chunks.end(c) - chunks.begin(c)) / 16 + 64;
    // Blocks without a key at or above the bound (almost all) are skipped after a branch-free,
    // vectorisable scan; the rare others are scanned again key by key.
    constexpr int64_t kBlock = 64;
    for (int64_t b = chunks.begin(c), end = chunks.end(c); b < end && !overflow[c]; b += kBlock) {
      const int64_t block_end = std::min(b + kBlock, end);
      unsigned hit = 0;
      for (int64_t i = b; i < block_end; ++i) hit |= unsigned(key_at(i) >= lower);
      if (!hit) continue;
      for (int64_t i = b; i < block_end; ++i) {
        const U key = key_at(i);
        if (key < lower) continue;
        if (int64_t(found.size()) == cap) {
          overflow[c] = 1;
          break;
        }
        found.emplace_back(key, i);
      }
    }
  }
  Prefiltered<U> out;
  for (int64_t c = 0; c < chunks.count; ++c) {
    out.overflow |= overflow[c] != 0;
    out.keys.insert(out.keys.end(), per_chunk[c].begin(), per_chunk[c].end());
  }
  return out;
}

// Selects the k largest of key_at(0), …, key_at(n−1) (1 ≤ k ≤ n), ties to the lowest index.
// sweep(i) is called for every i (after key_at(i) was last read, before take for the same i);
// take(slot, i) once per selected i with distinct slots in [0, k). Returns the number of keys
// equal to key_max (NaN); when it is nonzero and allow_nan is false, nothing is swept or taken.
// Small k/n first tries one streaming pass that gathers only the keys above a sampled bound.
template <class U, class KeyAt, class Sweep, class Take>
int64_t radix_select_cpu(int64_t n, int64_t k, bool allow_nan, KeyAt key_at, Sweep sweep, Take take) {
  const U lower = n >= (int64_t(1) << 17) ? sampled_lower_bound<U>(n, k, key_at) : U(0);
  if (lower != U(0)) {
    Prefiltered<U> found = prefilter_cpu(n, lower, key_at);
    if (!found.overflow && int64_t(found.keys.size()) >= k) {
      int64_t nan_count = 0;
      for (const auto& f : found.keys) nan_count += f.first == key_max<U>();
      if (nan_count > 0 && !allow_nan) return nan_count;
      if constexpr (!std::is_same_v<Sweep, NoSweep>) {
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; ++i) sweep(i);
      }
      take_largest(found.keys, k, 0, take);
      return nan_count;
    }
  }
  return radix_select_full_cpu<U>(n, k, allow_nan, key_at, sweep, take);
}

// Element type of a contiguous 1-D view.
template <class T>
T* flat(const TensorView& v) {
  return static_cast<T*>(v.data);
}

}  // namespace fbk
