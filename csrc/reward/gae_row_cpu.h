// The GAE recursion over one row on the CPU, shared by gae and rlhf_advantages.
#pragma once

#include <cstdint>

#include "reward/reward.h"

namespace fbk {

// Runs one row right to left. valid(t) tells whether token t counts; reward(t) and value(t) are
// read only at valid tokens (masked tokens count as 0 in "zero" mode and are skipped in "skip"
// mode); γ·bootstrap is added to the reward of the last valid token `last` (−1: none).
// emit(t, valid, advantage, value) receives every position.
template <class A, class Valid, class Reward, class Value, class Emit>
inline void gae_row(int64_t length, int64_t last, const GaeParams& p, A bootstrap, Valid&& valid, Reward&& reward,
                    Value&& value, Emit&& emit) {
  const A gamma = A(p.gamma), gamma_lam = A(p.gamma * p.lam);
  A next_value = 0, advantage = 0;
  for (int64_t t = length - 1; t >= 0; --t) {
    const bool on = valid(t);
    if (!on && p.mode == MaskMode::Skip) {
      emit(t, false, A(0), A(0));
      continue;
    }
    A r = on ? reward(t) : A(0);
    const A v = on ? value(t) : A(0);
    if (t == last) r += gamma * bootstrap;
    GaeMap<A>::step(r, v, gamma, gamma_lam).apply(next_value, advantage);
    emit(t, on, advantage, v);
  }
}

}  // namespace fbk
