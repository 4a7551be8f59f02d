#include <cstdint>
#include <vector>

#include "common/checks.h"
#include "reward/reward.h"

namespace fbk {

namespace {

// Stable LSD radix sort of indices by 64-bit key, a byte per pass; passes whose byte is the same
// for every key (all of them when ids are small) are skipped.
std::vector<int64_t> stable_order(const std::vector<uint64_t>& keys) {
  const size_t n = keys.size();
  std::vector<int64_t> order(n), next(n);
  for (size_t i = 0; i < n; ++i) order[i] = int64_t(i);
  uint64_t all_or = 0, all_and = ~uint64_t(0);
  for (uint64_t k : keys) all_or |= k, all_and &= k;
  for (int shift = 0; shift < 64; shift += 8) {
    if (((all_or ^ all_and) >> shift & 0xFFu) == 0) continue;  // this byte never varies
    size_t count[257] = {};
    for (uint64_t k : keys) ++count[(k >> shift & 0xFFu) + 1];
    for (int d = 0; d < 256; ++d) count[d + 1] += count[d];
    for (int64_t i : order) next[count[keys[size_t(i)] >> shift & 0xFFu]++] = i;
    order.swap(next);
  }
  return order;
}

}  // namespace

void group_runs_cpu(const TensorView& group_ids, const TensorView& order, const TensorView& starts) {
  check_ndim(group_ids, "group_ids", 1);
  const int64_t n = group_ids.sizes[0];
  check_size(order, "order", 0, n);
  check_size(starts, "starts", 0, n + 2);
  FBK_CHECK(order.dtype == DType::Int64 && starts.dtype == DType::Int64, "order, starts: expected int64");
  dispatch_index(group_ids.dtype, "group_ids", [&](auto it) {
    using I = typename decltype(it)::type;
    const auto ids = matrix<const I>(group_ids);
    std::vector<uint64_t> keys(static_cast<size_t>(n));
    // Flipping the sign bit maps signed order onto unsigned order.
    for (int64_t i = 0; i < n; ++i) keys[size_t(i)] = uint64_t(int64_t(ids(i, 0))) ^ (uint64_t(1) << 63);
    const std::vector<int64_t> sorted = stable_order(keys);
    const auto perm = matrix<int64_t>(order), first = matrix<int64_t>(starts);
    int64_t runs = 0;
    for (int64_t i = 0; i < n; ++i) {
      perm(i, 0) = sorted[size_t(i)];
      if (i == 0 || keys[size_t(sorted[size_t(i)])] != keys[size_t(sorted[size_t(i - 1)])]) first(runs++, 0) = i;
    }
    for (int64_t g = runs; g < n + 2; ++g) first(g, 0) = n;
  });
}

void group_advantage_cpu(const TensorView& scores, const TensorView& order, const TensorView& starts, GroupMode mode,
                         bool unbiased, double eps, Singleton singleton, const TensorView& out) {
  check_ndim(scores, "scores", 1);
  const int64_t n = scores.sizes[0];
  check_size(order, "order", 0, n);
  check_size(starts, "starts", 0, n + 2);
  dispatch_float(scores.dtype, "scores", [&](auto tt) {
    using T = typename decltype(tt)::type;
    using A = acc_t<T>;
    const auto x = matrix<const T>(scores);
    const auto perm = matrix<const int64_t>(order), first = matrix<const int64_t>(starts);
    const auto o = matrix<A>(out);
#pragma omp parallel for schedule(dynamic, 64)
    for (int64_t g = 0; g < n; ++g) {
      const int64_t begin = first(g, 0), end = first(g + 1, 0);
      if (begin >= n) continue;  // past the last group
      const Moments stats = group_moments(begin, end, [&](int64_t i) { return to_acc<double>(x(perm(i, 0), 0)); });
      for (int64_t i = begin; i < end; ++i) {
        const int64_t j = perm(i, 0);
        o(j, 0) = group_advantage_of(to_acc<A>(x(j, 0)), stats, mode, unbiased, eps, singleton);
      }
    }
  });
}

}  // namespace fbk
