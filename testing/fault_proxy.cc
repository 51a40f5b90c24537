#include "testing/fault_proxy.h"

#include <poll.h>
#include <sys/socket.h>

#include <cassert>
#include <cerrno>
#include <utility>

namespace keel::replication {
namespace {

// How long a forwarding or accepting thread waits before it looks at the
// stop and cut flags again (a cut also wakes it through the socket).
constexpr int kPollSliceMs = 100;
constexpr std::chrono::milliseconds kAcceptSlice{100};

bool ValidProbability(double probability) { return probability >= 0 && probability <= 1; }

Status Validate(const FaultProxyOptions& options) {
  std::string host;
  uint16_t port = 0;
  KEEL_RETURN_IF_ERROR(
      ParseHostPort(options.target_host + ":" + std::to_string(options.target_port), &host, &port));
  const std::pair<const char*, double> probabilities[] = {
      {"cut_probability", options.cut_probability},
      {"stall_probability", options.stall_probability},
      {"delay_probability", options.delay_probability},
      {"corrupt_probability", options.corrupt_probability},
  };
  for (const auto& [name, probability] : probabilities) {
    if (!ValidProbability(probability)) {
      return Status::InvalidArgument(std::string("fault proxy: ") + name + " " + std::to_string(probability) +
                                     " is outside [0, 1]");
    }
  }
  return Status::Ok();
}

}  // namespace

// SplitMix64: small, fast, and the same sequence on every platform, which
// std::uniform_real_distribution does not promise.
class FaultProxy::Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // True with the given probability: never for 0, always for 1.
  bool Chance(double probability) {
    const double uniform = static_cast<double>(Next() >> 11) * 0x1.0p-53;  // in [0, 1)
    return uniform < probability;
  }

 private:
  uint64_t state_;
};

struct FaultProxy::Pair {
  Pair(uint64_t pair_index, std::unique_ptr<Connection> accepted) : index(pair_index), client(std::move(accepted)) {}

  const uint64_t index;  // accept order, for the seeds
  // Both guarded by mutex_ while they change; server is set once, before the
  // forwarding threads start, and both live until the pair is reaped.
  std::unique_ptr<Connection> client;
  std::unique_ptr<Connection> server;
  std::atomic<bool> cut{false};
  std::atomic<bool> finished{false};  // both directions are done; the thread can be joined
  std::thread thread;
};

Status FaultProxy::Start(const FaultProxyOptions& options, std::unique_ptr<FaultProxy>* out) {
  KEEL_RETURN_IF_ERROR(Validate(options));
  std::unique_ptr<Listener> listener;
  KEEL_RETURN_IF_ERROR(Listener::Bind("127.0.0.1", 0, &listener));
  out->reset(new FaultProxy(options, std::move(listener)));
  return Status::Ok();
}

FaultProxy::FaultProxy(const FaultProxyOptions& options, std::unique_ptr<Listener> listener)
    : listener_(std::move(listener)), options_(options) {
  accept_thread_ = std::thread(&FaultProxy::AcceptLoop, this);
}

FaultProxy::~FaultProxy() {
  stopping_.store(true);
  listener_->Shutdown();
  accept_thread_.join();
  // No pair is added from here on; cutting wakes every forwarding thread.
  CutAll();
  ReapFinishedPairs(/*all=*/true);
}

FaultProxyOptions FaultProxy::options() const {
  std::lock_guard<std::mutex> lock(options_mutex_);
  return options_;
}

void FaultProxy::SetOptions(const FaultProxyOptions& options) {
  assert(Validate(options).ok());
  std::lock_guard<std::mutex> lock(options_mutex_);
  options_ = options;
}

void FaultProxy::Partition(bool on) {
  partitioned_.store(on);
  if (on) CutAll();
}

void FaultProxy::CutAll() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& pair : pairs_) {
      pair->cut.store(true);
      pair->client->Shutdown();
      if (pair->server) pair->server->Shutdown();
    }
  }
  cut_or_stop_.notify_all();
}

void FaultProxy::Cut(Pair* pair) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    pair->cut.store(true);
    pair->client->Shutdown();
    if (pair->server) pair->server->Shutdown();
  }
  cut_or_stop_.notify_all();
}

std::string FaultProxy::recorded() const {
  std::lock_guard lock(recorded_mutex_);
  return recorded_;
}

FaultProxy::Stats FaultProxy::stats() const {
  Stats stats;
  stats.connections = connections_.load();
  stats.cuts = cuts_.load();
  stats.stalls = stalls_.load();
  stats.delays = delays_.load();
  stats.corruptions = corruptions_.load();
  stats.bytes_forwarded = bytes_forwarded_.load();
  return stats;
}

bool FaultProxy::ShouldStop(const Pair* pair) const { return pair->cut.load() || stopping_.load(); }

void FaultProxy::SleepUnlessCut(Pair* pair, std::chrono::milliseconds duration) {
  std::unique_lock<std::mutex> lock(mutex_);
  cut_or_stop_.wait_for(lock, duration, [&] { return ShouldStop(pair); });
}

void FaultProxy::AcceptLoop() {
  while (!stopping_.load()) {
    std::unique_ptr<Connection> client;
    const Status status = listener_->Accept(kAcceptSlice, &client);
    ReapFinishedPairs(/*all=*/false);
    if (!status.ok()) continue;  // a timeout, or Shutdown (the loop condition ends it)
    // Partitioned: the connection is closed at once, unforwarded.
    if (partitioned_.load()) continue;
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_.load()) break;
    auto pair = std::make_unique<Pair>(next_pair_index_++, std::move(client));
    connections_.fetch_add(1);
    pair->thread = std::thread(&FaultProxy::RunPair, this, pair.get());
    pairs_.push_back(std::move(pair));
  }
}

void FaultProxy::ReapFinishedPairs(bool all) {
  std::vector<std::unique_ptr<Pair>> finished;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto it = pairs_.begin(); it != pairs_.end();) {
      if (all || (*it)->finished.load()) {
        finished.push_back(std::move(*it));
        it = pairs_.erase(it);
      } else {
        ++it;
      }
    }
  }
  // Joined outside the lock: a finishing thread may still be in Cut().
  for (const auto& pair : finished) pair->thread.join();
}

void FaultProxy::RunPair(Pair* pair) {
  const FaultProxyOptions options_now = options();
  std::unique_ptr<Connection> server;
  const Status status =
      Connection::Connect(options_now.target_host, options_now.target_port, kTargetConnectTimeout, &server);
  {
    std::lock_guard<std::mutex> lock(mutex_);
    pair->server = std::move(server);
    if (!status.ok() || ShouldStop(pair)) {
      // The target is not there (or we are stopping): the client sees its connection end.
      pair->client->Shutdown();
      if (pair->server) pair->server->Shutdown();
      pair->finished.store(true);
      return;
    }
  }
  // Each direction of each pair has its own generator, so one direction's
  // traffic does not change the other's decisions.
  const uint64_t seed = options_now.seed ^ (pair->index * 2 + 1) * 0xD1B54A32D192ED03ULL;
  std::thread downstream(&FaultProxy::Forward, this, pair, /*upstream=*/false, seed + 1);
  Forward(pair, /*upstream=*/true, seed);
  downstream.join();
  pair->finished.store(true);
}

void FaultProxy::Forward(Pair* pair, bool upstream, uint64_t seed) {
  Connection* from = upstream ? pair->client.get() : pair->server.get();
  Connection* to = upstream ? pair->server.get() : pair->client.get();
  Random random(seed);
  std::vector<std::byte> chunk(kChunkBytes);
  while (!ShouldStop(pair)) {
    pollfd entry{from->fd_, POLLIN, 0};
    const int ready = ::poll(&entry, 1, kPollSliceMs);
    if (ready < 0 && errno != EINTR) return Cut(pair);
    if (ready <= 0) continue;
    const ssize_t received = ::recv(from->fd_, chunk.data(), chunk.size(), MSG_DONTWAIT);
    if (received < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return Cut(pair);  // a reset on one side resets the pair
    }
    if (received == 0) {
      // An orderly close: pass it on and let the other direction run on.
      if (!ShouldStop(pair)) ::shutdown(to->fd_, SHUT_WR);
      return;
    }
    if (partitioned_.load()) return Cut(pair);
    const size_t size = static_cast<size_t>(received);
    const FaultProxyOptions faults = options();
    // Every chunk draws the same numbers whatever is decided, so that one
    // decision does not shift the ones after it.
    const bool cut = random.Chance(faults.cut_probability);
    const bool stall = random.Chance(faults.stall_probability);
    const bool delay = random.Chance(faults.delay_probability);
    const bool corrupt = random.Chance(faults.corrupt_probability);
    const uint64_t bit = random.Next() % (uint64_t{size} * 8);
    if (cut) {
      cuts_.fetch_add(1);
      return Cut(pair);
    }
    if (stall) {
      stalls_.fetch_add(1);
      SleepUnlessCut(pair, std::chrono::milliseconds(faults.stall_ms));
    }
    if (delay) {
      delays_.fetch_add(1);
      SleepUnlessCut(pair, std::chrono::milliseconds(faults.delay_ms));
    }
    if (corrupt) {
      chunk[bit / 8] ^= static_cast<std::byte>(1U << (bit % 8));
      corruptions_.fetch_add(1);
    }
    if (faults.record) {
      std::lock_guard lock(recorded_mutex_);
      recorded_.append(reinterpret_cast<const char*>(chunk.data()), size);
    }
    if (!WriteAll(pair, to, chunk.data(), size)) return Cut(pair);
    bytes_forwarded_.fetch_add(size);
  }
}

// False when the pair is cut, the proxy stops, or the socket fails.
bool FaultProxy::WriteAll(Pair* pair, Connection* to, const std::byte* data, size_t size) {
  while (size > 0) {
    if (ShouldStop(pair)) return false;
    const ssize_t sent = ::send(to->fd_, data, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent > 0) {
      data += sent;
      size -= static_cast<size_t>(sent);
    } else if (sent < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      // The receiver is slow: wait in slices, so that a cut is noticed.
      pollfd entry{to->fd_, POLLOUT, 0};
      ::poll(&entry, 1, kPollSliceMs);
    } else if (!(sent < 0 && errno == EINTR)) {
      return false;
    }
  }
  return true;
}

}  // namespace keel::replication
