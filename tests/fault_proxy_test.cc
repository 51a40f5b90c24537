// What this proves: the fault-injecting proxy (testing/fault_proxy.h)
// forwards a replication connection byte for byte when told to inject
// nothing, and that each fault it injects reaches the peers as the fault it
// stands for: a cut ends both connections, a flipped bit is refused by the
// receiver's frame decoder (P8) rather than taken as data, a stall makes a
// short receive time out and a longer one succeed, a delay only slows
// frames, and a partition cuts every pair and refuses new connections until
// it heals. The later replication and process-level tests rely on exactly
// these behaviours.
//
// How: a Listener is the target; a Connection dials the proxy's ephemeral
// port; frames go through it both ways over real sockets on 127.0.0.1.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "testing/fault_proxy.h"
#include <keel/replication/protocol.h>
#include <keel/replication/transport.h>

namespace keel::replication {
namespace {

using namespace std::chrono_literals;
using Bytes = std::vector<std::byte>;
using Clock = std::chrono::steady_clock;

Bytes Pattern(size_t size, uint64_t seed) {
  Bytes out(size);
  for (size_t i = 0; i < size; ++i) out[i] = static_cast<std::byte>((seed * 131 + i * 7 + (i >> 9)) & 0xFF);
  return out;
}

// A target listener, a proxy in front of it, and one connection through it.
struct Rig {
  std::unique_ptr<Listener> target;
  std::unique_ptr<FaultProxy> proxy;
  std::unique_ptr<Connection> client;  // dialled the proxy
  std::unique_ptr<Connection> server;  // accepted by the target, from the proxy
};

FaultProxyOptions OptionsFor(const Listener& target) {
  FaultProxyOptions options;
  options.target_port = target.port();
  options.seed = 7;
  return options;
}

// Connects a client through the proxy and accepts it at the target.
void ConnectThrough(Rig* rig) {
  Status status = Connection::Connect("127.0.0.1", rig->proxy->port(), 2s, &rig->client);
  ASSERT_TRUE(status.ok()) << status.ToString();
  status = rig->target->Accept(2s, &rig->server);
  ASSERT_TRUE(status.ok()) << status.ToString();
}

// A proxy with the given faults, and one connection through it.
Rig StartWith(void (*configure)(FaultProxyOptions*)) {
  Rig rig;
  EXPECT_TRUE(Listener::Bind("127.0.0.1", 0, &rig.target).ok());
  FaultProxyOptions options = OptionsFor(*rig.target);
  if (configure != nullptr) configure(&options);
  const Status status = FaultProxy::Start(options, &rig.proxy);
  EXPECT_TRUE(status.ok()) << status.ToString();
  ConnectThrough(&rig);
  return rig;
}

// Receives frames until a receive fails other than by a timeout, or limit passes.
Status ReceiveUntilFailure(Connection* connection, Frame* frame, std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  Status status;
  do {
    status = connection->Receive(frame, 50ms);
  } while ((status.ok() || IsTimeout(status)) && Clock::now() < deadline);
  return status;
}

TEST(FaultProxy, ForwardsCleanlyWithoutFaults) {
  Rig rig = StartWith(nullptr);
  ASSERT_TRUE(rig.server);
  const size_t sizes[] = {0, 1, 100, 65536, 65537, 1 << 20, 3 << 20, 12};
  std::thread sender([&] {
    for (size_t i = 0; i < std::size(sizes); ++i) {
      ASSERT_TRUE(rig.client->Send(MessageType::kRecords, Pattern(sizes[i], i)).ok());
    }
  });
  for (size_t i = 0; i < std::size(sizes); ++i) {
    Frame frame;
    const Status status = rig.server->Receive(&frame, 5s);
    ASSERT_TRUE(status.ok()) << status.ToString();
    EXPECT_EQ(frame.sequence, i + 1);
    EXPECT_TRUE(frame.body == Pattern(sizes[i], i)) << i;
    ASSERT_TRUE(rig.server->Send(MessageType::kAck, Pattern(16, i)).ok());
  }
  sender.join();
  for (size_t i = 0; i < std::size(sizes); ++i) {
    Frame frame;
    ASSERT_TRUE(rig.client->Receive(&frame, 5s).ok());
    EXPECT_EQ(frame.sequence, i + 1);
    EXPECT_TRUE(frame.body == Pattern(16, i));
  }
  const FaultProxy::Stats stats = rig.proxy->stats();
  EXPECT_EQ(stats.connections, 1U);
  EXPECT_EQ(stats.bytes_forwarded, rig.client->bytes_sent() + rig.server->bytes_sent());
  EXPECT_EQ(stats.cuts + stats.stalls + stats.delays + stats.corruptions, 0U);

  // An orderly close passes through as an orderly close.
  rig.client.reset();
  Frame frame;
  EXPECT_TRUE(rig.server->Receive(&frame, 2s).IsIoError());
  EXPECT_TRUE(rig.server->closed_by_peer());
}

TEST(FaultProxy, CutEndsBothConnections) {
  Rig rig = StartWith([](FaultProxyOptions* options) { options->cut_probability = 1; });
  ASSERT_TRUE(rig.server);
  // The send itself may succeed: the kernel took the bytes before the cut.
  (void)rig.client->Send(MessageType::kAck, Pattern(16, 1));
  Frame frame;
  Status status = rig.server->Receive(&frame, 2s);
  EXPECT_FALSE(status.ok());
  EXPECT_FALSE(IsTimeout(status)) << status.ToString();
  status = rig.client->Receive(&frame, 2s);
  EXPECT_FALSE(status.ok());
  EXPECT_FALSE(IsTimeout(status)) << status.ToString();
  EXPECT_EQ(rig.proxy->stats().cuts, 1U);
  EXPECT_EQ(rig.proxy->stats().bytes_forwarded, 0U);
}

TEST(FaultProxy, CorruptionIsRefusedByTheReceiversDecoder) {
  Rig rig = StartWith([](FaultProxyOptions* options) { options->corrupt_probability = 1; });
  ASSERT_TRUE(rig.server);
  // One bit flips per chunk the proxy reads, which may hold several frames:
  // the frames before the flipped bit arrive intact, the one holding it is
  // refused. A small limit refuses a flipped high bit of a body length at
  // once; enough frames follow for a flipped low bit to be filled up and
  // fail its checksum.
  rig.server->set_max_body_bytes(64 * 1024);
  for (int i = 0; i < 24; ++i) {
    if (!rig.client->Send(MessageType::kRecords, Pattern(4096, static_cast<uint64_t>(i))).ok()) break;
  }
  Frame frame;
  const Status status = ReceiveUntilFailure(rig.server.get(), &frame, 2s);
  EXPECT_TRUE(status.IsCorruption()) << status.ToString();
  EXPECT_NE(status.message().find("peer " + rig.server->peer()), std::string::npos) << status.message();
  EXPECT_GE(rig.proxy->stats().corruptions, 1U);
}

TEST(FaultProxy, StallMakesAShortReceiveTimeOutAndALongerOneSucceed) {
  Rig rig = StartWith([](FaultProxyOptions* options) {
    options->stall_probability = 1;
    options->stall_ms = 300;
  });
  ASSERT_TRUE(rig.server);
  const auto start = Clock::now();
  ASSERT_TRUE(rig.client->Send(MessageType::kAck, Pattern(16, 1)).ok());
  Frame frame;
  Status status = rig.server->Receive(&frame, 50ms);
  EXPECT_TRUE(IsTimeout(status)) << status.ToString();
  status = rig.server->Receive(&frame, 2s);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_TRUE(frame.body == Pattern(16, 1));
  EXPECT_GE(Clock::now() - start, 300ms);
  EXPECT_GE(rig.proxy->stats().stalls, 1U);
}

TEST(FaultProxy, DelayOnlySlowsFrames) {
  Rig rig = StartWith([](FaultProxyOptions* options) {
    options->delay_probability = 1;
    options->delay_ms = 10;
  });
  ASSERT_TRUE(rig.server);
  for (uint64_t i = 1; i <= 5; ++i) {
    const auto start = Clock::now();
    ASSERT_TRUE(rig.client->Send(MessageType::kAck, Pattern(16, i)).ok());
    Frame frame;
    ASSERT_TRUE(rig.server->Receive(&frame, 2s).ok());
    EXPECT_GE(Clock::now() - start, 9ms);
    EXPECT_EQ(frame.sequence, i);
    EXPECT_TRUE(frame.body == Pattern(16, i));
  }
  EXPECT_EQ(rig.proxy->stats().delays, 5U);
}

TEST(FaultProxy, PartitionCutsEverythingAndRefusesNewConnectionsUntilItHeals) {
  Rig rig = StartWith(nullptr);
  ASSERT_TRUE(rig.server);
  ASSERT_TRUE(rig.client->Send(MessageType::kAck, Pattern(16, 1)).ok());
  Frame frame;
  ASSERT_TRUE(rig.server->Receive(&frame, 2s).ok());

  rig.proxy->Partition(true);
  Status status = rig.server->Receive(&frame, 2s);
  EXPECT_FALSE(status.ok());
  EXPECT_FALSE(IsTimeout(status)) << status.ToString();
  status = rig.client->Receive(&frame, 2s);
  EXPECT_FALSE(IsTimeout(status)) << status.ToString();

  // A new connection reaches the proxy but is closed, and nothing reaches the target.
  std::unique_ptr<Connection> refused;
  if (Connection::Connect("127.0.0.1", rig.proxy->port(), 1s, &refused).ok()) {
    status = refused->Receive(&frame, 2s);
    EXPECT_FALSE(status.ok());
    EXPECT_FALSE(IsTimeout(status)) << status.ToString();
  }
  std::unique_ptr<Connection> nothing;
  EXPECT_TRUE(IsTimeout(rig.target->Accept(100ms, &nothing)));
  EXPECT_EQ(rig.proxy->stats().connections, 1U);

  rig.proxy->Partition(false);
  ConnectThrough(&rig);
  ASSERT_TRUE(rig.client->Send(MessageType::kAck, Pattern(16, 2)).ok());
  ASSERT_TRUE(rig.server->Receive(&frame, 2s).ok());
  EXPECT_TRUE(frame.body == Pattern(16, 2));
  EXPECT_EQ(rig.proxy->stats().connections, 2U);
}

TEST(FaultProxy, CutAllEndsCurrentPairsButNotLaterOnes) {
  Rig rig = StartWith(nullptr);
  ASSERT_TRUE(rig.server);
  rig.proxy->CutAll();
  Frame frame;
  Status status = rig.server->Receive(&frame, 2s);
  EXPECT_FALSE(IsTimeout(status)) << status.ToString();
  EXPECT_FALSE(status.ok());
  ConnectThrough(&rig);
  ASSERT_TRUE(rig.client->Send(MessageType::kAck, Pattern(16, 3)).ok());
  ASSERT_TRUE(rig.server->Receive(&frame, 2s).ok());
  EXPECT_EQ(rig.proxy->stats().cuts, 0U);  // only cut_probability counts as a cut
}

TEST(FaultProxy, SetOptionsChangesFaultsAtRunTime) {
  Rig rig = StartWith(nullptr);
  ASSERT_TRUE(rig.server);
  ASSERT_TRUE(rig.client->Send(MessageType::kAck, Pattern(16, 1)).ok());
  Frame frame;
  ASSERT_TRUE(rig.server->Receive(&frame, 2s).ok());
  FaultProxyOptions options = OptionsFor(*rig.target);
  options.cut_probability = 1;
  rig.proxy->SetOptions(options);
  (void)rig.client->Send(MessageType::kAck, Pattern(16, 2));
  const Status status = rig.server->Receive(&frame, 2s);
  EXPECT_FALSE(status.ok());
  EXPECT_FALSE(IsTimeout(status)) << status.ToString();
  EXPECT_EQ(rig.proxy->stats().cuts, 1U);
}

// A loopback port that refuses connections for as long as the result lives:
// bound, so no other test can take it, but not listening. (A port freed after
// Listener::Bind could be handed to another test's listener meanwhile.)
class RefusingPort {
 public:
  RefusingPort() : fd_(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof(address);
    if (fd_ >= 0 && ::bind(fd_, reinterpret_cast<sockaddr*>(&address), length) == 0 &&
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
      port_ = ntohs(address.sin_port);
    }
  }
  ~RefusingPort() {
    if (fd_ >= 0) ::close(fd_);
  }
  RefusingPort(const RefusingPort&) = delete;
  RefusingPort& operator=(const RefusingPort&) = delete;
  uint16_t port() const { return port_; }

 private:
  int fd_;
  uint16_t port_ = 0;
};

TEST(FaultProxy, ATargetThatIsNotThereEndsTheClientsConnection) {
  const RefusingPort refusing;
  ASSERT_NE(refusing.port(), 0) << "could not bind a loopback port";
  FaultProxyOptions options;
  options.target_port = refusing.port();
  std::unique_ptr<FaultProxy> proxy;
  ASSERT_TRUE(FaultProxy::Start(options, &proxy).ok());
  std::unique_ptr<Connection> client;
  ASSERT_TRUE(Connection::Connect("127.0.0.1", proxy->port(), 2s, &client).ok());
  Frame frame;
  // Generous: a refused target ends the connection at once; the bound only
  // keeps a loaded machine from passing for a hang.
  const Status status = client->Receive(&frame, 10s);
  EXPECT_FALSE(status.ok());
  EXPECT_FALSE(IsTimeout(status)) << status.ToString();
}

TEST(FaultProxy, StartRefusesBadOptions) {
  std::unique_ptr<FaultProxy> proxy;
  FaultProxyOptions options;
  EXPECT_TRUE(FaultProxy::Start(options, &proxy).IsInvalidArgument());  // no target port
  options.target_port = 9;
  options.corrupt_probability = 1.5;
  const Status status = FaultProxy::Start(options, &proxy);
  EXPECT_TRUE(status.IsInvalidArgument());
  EXPECT_NE(status.message().find("corrupt_probability"), std::string::npos) << status.message();
  options.corrupt_probability = 0;
  options.target_host = "example.com";
  EXPECT_TRUE(FaultProxy::Start(options, &proxy).IsInvalidArgument());
  EXPECT_EQ(proxy, nullptr);
}

TEST(FaultProxy, StopsPromptlyWithConnectionsOpenAndStalled) {
  Rig rig = StartWith([](FaultProxyOptions* options) {
    options->stall_probability = 1;
    options->stall_ms = 10'000;
  });
  ASSERT_TRUE(rig.server);
  ASSERT_TRUE(rig.client->Send(MessageType::kAck, Pattern(16, 1)).ok());
  std::this_thread::sleep_for(50ms);  // the proxy is now inside the stall
  const auto start = Clock::now();
  rig.proxy.reset();
  EXPECT_LT(Clock::now() - start, 1s);
  Frame frame;
  EXPECT_FALSE(IsTimeout(rig.server->Receive(&frame, 2s)));
}

}  // namespace
}  // namespace keel::replication
