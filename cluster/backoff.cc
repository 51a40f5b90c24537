#include <keel/cluster/backoff.h>

#include <algorithm>
#include <cassert>
#include <random>

namespace keel::cluster {

int64_t BackoffDelayMs(int attempt, const BackoffOptions& options, uint64_t random) {
  assert(attempt >= 0);
  assert(options.initial_ms >= 0 && options.max_ms >= options.initial_ms);
  // Doubling stops once the cap is reached, so the shift never overflows.
  int64_t ceiling_ms = options.initial_ms;
  for (int i = 0; i < attempt && ceiling_ms < options.max_ms; ++i) ceiling_ms *= 2;
  ceiling_ms = std::min(ceiling_ms, options.max_ms);
  const int64_t delay_ms = static_cast<int64_t>(random % static_cast<uint64_t>(ceiling_ms + 1));
  assert(delay_ms >= 0 && delay_ms <= options.max_ms);
  return delay_ms;
}

int64_t BackoffDelayMs(int attempt, const BackoffOptions& options) {
  thread_local std::mt19937_64 generator{std::random_device{}()};
  return BackoffDelayMs(attempt, options, generator());
}

}  // namespace keel::cluster
