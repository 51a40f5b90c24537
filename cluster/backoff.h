// Exponential backoff with full jitter between retries of an etcd call: the
// n-th wait is drawn uniformly from [0, min(max_ms, initial_ms * 2^n)], so
// that clients failing together do not retry together.
#pragma once

#include <cstdint>

namespace keel::cluster {

struct BackoffOptions {
  int64_t initial_ms = 50;
  int64_t max_ms = 1000;
};

// The wait before retry number `attempt` (0 for the first retry), computed
// from `random` (any 64-bit value, uniformly drawn).
int64_t BackoffDelayMs(int attempt, const BackoffOptions& options, uint64_t random);

// The same with a random draw from a per-thread generator.
int64_t BackoffDelayMs(int attempt, const BackoffOptions& options);

}  // namespace keel::cluster
