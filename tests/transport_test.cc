// What this proves: the TCP transport (replication/transport.h) carries
// replication frames intact in both directions, whatever their size and
// however many threads send at once, and that every way a connection can go
// wrong ends in a bounded time with a status the caller can act on: a
// timeout leaves the connection usable, a local Shutdown wakes a blocked
// receiver, an orderly close is told apart from a close inside a frame,
// garbage is refused by the frame decoder naming the peer (P8), and a peer
// that stops reading fails the sender after its send timeout instead of
// holding it forever.
//
// How: real sockets on 127.0.0.1 with ports chosen by the kernel (port 0).
// The far end is either another Connection or a raw socket, so that tests
// can write bytes a Connection never would, read the exact bytes it sends,
// or refuse to read at all.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <keel/replication/protocol.h>
#include <keel/replication/transport.h>

namespace keel::replication {
namespace {

using namespace std::chrono_literals;
using Bytes = std::vector<std::byte>;
using Clock = std::chrono::steady_clock;

Bytes Pattern(size_t size, uint64_t seed) {
  Bytes out(size);
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
  for (size_t i = 0; i < size; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = static_cast<std::byte>(x);
  }
  return out;
}

Bytes Text(std::string_view text) {
  Bytes out(text.size());
  std::memcpy(out.data(), text.data(), text.size());
  return out;
}

struct Pair {
  std::unique_ptr<Listener> listener;
  std::unique_ptr<Connection> client;  // connected
  std::unique_ptr<Connection> server;  // accepted
};

Pair ConnectedPair() {
  Pair pair;
  EXPECT_TRUE(Listener::Bind("127.0.0.1", 0, &pair.listener).ok());
  const Status connected = Connection::Connect("127.0.0.1", pair.listener->port(), 2s, &pair.client);
  EXPECT_TRUE(connected.ok()) << connected.ToString();
  const Status accepted = pair.listener->Accept(2s, &pair.server);
  EXPECT_TRUE(accepted.ok()) << accepted.ToString();
  return pair;
}

// A plain socket, closed on destruction: the far end a Connection never is.
class RawSocket {
 public:
  explicit RawSocket(int fd = -1) : fd_(fd) {}
  ~RawSocket() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawSocket(RawSocket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  int fd() const { return fd_; }
  void Close() {
    ::close(fd_);
    fd_ = -1;
  }
  void WriteAll(std::span<const std::byte> bytes) const {
    size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      ASSERT_GT(n, 0) << std::strerror(errno);
      done += static_cast<size_t>(n);
    }
  }
  Bytes ReadExactly(size_t size) const {
    Bytes out(size);
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::recv(fd_, out.data() + done, size - done, 0);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    out.resize(done);
    return out;
  }

 private:
  int fd_;
};

RawSocket RawConnect(uint16_t port) {
  RawSocket socket(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(socket.fd(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0) << std::strerror(errno);
  return socket;
}

// A listening raw socket on an ephemeral port.
RawSocket RawListen(uint16_t* port) {
  RawSocket socket(::socket(AF_INET, SOCK_STREAM, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(socket.fd(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
  EXPECT_EQ(::listen(socket.fd(), 4), 0);
  socklen_t length = sizeof(address);
  EXPECT_EQ(::getsockname(socket.fd(), reinterpret_cast<sockaddr*>(&address), &length), 0);
  *port = ntohs(address.sin_port);
  return socket;
}

TEST(ParseHostPort, AcceptsIpv4AndLocalhost) {
  std::string host;
  uint16_t port = 0;
  ASSERT_TRUE(ParseHostPort("127.0.0.1:7000", &host, &port).ok());
  EXPECT_EQ(host, "127.0.0.1");
  EXPECT_EQ(port, 7000);
  ASSERT_TRUE(ParseHostPort("localhost:65535", &host, &port).ok());
  EXPECT_EQ(host, "localhost");
  EXPECT_EQ(port, 65535);
  ASSERT_TRUE(ParseHostPort("0.0.0.0:1", &host, &port).ok());
  EXPECT_EQ(port, 1);
  ASSERT_TRUE(ParseHostPort("10.1.2.3:0", &host, &port, /*allow_zero_port=*/true).ok());
  EXPECT_EQ(host, "10.1.2.3");
  EXPECT_EQ(port, 0);
}

TEST(ParseHostPort, RefusesEverythingElseByName) {
  struct Case {
    const char* text;
    const char* reason;
  };
  const Case cases[] = {
      {"", "empty address"},
      {"127.0.0.1", "no port"},
      {"127.0.0.1:", "no port"},
      {":7000", "no host"},
      {"127.0.0.1:0", "port 0 is not allowed"},
      {"127.0.0.1:65536", "not a number from 1 to 65535"},
      {"127.0.0.1:99999999999999999999", "not a number"},
      {"127.0.0.1:-1", "not a number"},
      {"127.0.0.1:+80", "not a number"},
      {"127.0.0.1:80x", "not a number"},
      {"127.0.0.1: 80", "not a number"},
      {"example.com:80", "not an IPv4 address"},
      {"1.2.3:80", "not an IPv4 address"},
      {"256.0.0.1:80", "not an IPv4 address"},
      {"::1:80", "not an IPv4 address"},
      {"[::1]:80", "not an IPv4 address"},
      {"garbage", "no port"},
  };
  for (const Case& c : cases) {
    std::string host = "unchanged";
    uint16_t port = 42;
    const Status status = ParseHostPort(c.text, &host, &port);
    EXPECT_TRUE(status.IsInvalidArgument()) << c.text;
    EXPECT_NE(status.message().find(c.reason), std::string::npos) << c.text << " -> " << status.message();
    EXPECT_EQ(host, "unchanged");
    EXPECT_EQ(port, 42);
  }
}

TEST(Transport, ConnectAcceptAndExchangeFramesBothWays) {
  Pair pair = ConnectedPair();
  ASSERT_TRUE(pair.server);
  EXPECT_EQ(pair.client->peer(), "127.0.0.1:" + std::to_string(pair.listener->port()));
  EXPECT_EQ(pair.server->peer().rfind("127.0.0.1:", 0), 0U) << pair.server->peer();

  Bytes heartbeat;
  EncodeHeartbeat(Heartbeat{.sent_unix_micros = 1, .last_lsn = 9, .durable_lsn = 7, .epoch = 2}, &heartbeat);
  ASSERT_TRUE(pair.client->Send(MessageType::kHeartbeat, heartbeat).ok());
  Frame frame;
  ASSERT_TRUE(pair.server->Receive(&frame, 2s).ok());
  EXPECT_EQ(frame.type, MessageType::kHeartbeat);
  EXPECT_EQ(frame.sequence, 1U);
  Heartbeat decoded;
  ASSERT_TRUE(DecodeHeartbeat(frame.body, &decoded).ok());
  EXPECT_EQ(decoded.last_lsn, 9U);

  Bytes ack;
  EncodeAck(Ack{.received_lsn = 9, .durable_lsn = 7}, &ack);
  ASSERT_TRUE(pair.server->Send(MessageType::kAck, ack).ok());
  ASSERT_TRUE(pair.client->Receive(&frame, 2s).ok());
  EXPECT_EQ(frame.type, MessageType::kAck);
  EXPECT_EQ(frame.sequence, 1U);
  EXPECT_EQ(frame.body, ack);

  EXPECT_EQ(pair.client->bytes_sent(), kFrameHeaderSize + heartbeat.size());
  EXPECT_EQ(pair.server->bytes_received(), kFrameHeaderSize + heartbeat.size());
  EXPECT_EQ(pair.server->bytes_sent(), kFrameHeaderSize + ack.size());
  EXPECT_EQ(pair.client->bytes_received(), kFrameHeaderSize + ack.size());
}

TEST(Transport, ManyFramesOfVariousSizesIncludingMultiMiB) {
  Pair pair = ConnectedPair();
  const size_t sizes[] = {0,     1,          31,         32,          33,      4095, 65536, 256 * 1024 - 1,
                          256 * 1024, 256 * 1024 + 7, 3 * 1024 * 1024 + 5, 0, 17, 5 * 1024 * 1024, 1};
  std::thread sender([&] {
    for (size_t i = 0; i < std::size(sizes); ++i) {
      const Bytes body = Pattern(sizes[i], i);
      ASSERT_TRUE(pair.client->Send(MessageType::kRecords, body).ok()) << i;
    }
  });
  for (size_t i = 0; i < std::size(sizes); ++i) {
    Frame frame;
    const Status status = pair.server->Receive(&frame, 5s);
    ASSERT_TRUE(status.ok()) << i << ": " << status.ToString();
    EXPECT_EQ(frame.sequence, i + 1);
    EXPECT_EQ(frame.type, MessageType::kRecords);
    ASSERT_EQ(frame.body.size(), sizes[i]);
    EXPECT_TRUE(frame.body == Pattern(sizes[i], i)) << "frame " << i << " damaged";
  }
  sender.join();
}

// SendParts writes the very bytes EncodeFrame would for the joined body, so
// its header (checksum streamed over the parts) is the protocol's header.
TEST(Transport, SendPartsWritesExactlyWhatEncodeFrameWrites) {
  uint16_t port = 0;
  RawSocket listening = RawListen(&port);
  std::unique_ptr<Connection> client;
  ASSERT_TRUE(Connection::Connect("localhost", port, 2s, &client).ok());
  RawSocket server(::accept(listening.fd(), nullptr, nullptr));

  const Bytes body = Pattern(100'000, 7);
  const std::span<const std::byte> whole(body);
  const std::span<const std::byte> parts[] = {whole.subspan(0, 16), {}, whole.subspan(16, 1), whole.subspan(17)};
  ASSERT_TRUE(client->SendParts(MessageType::kRecords, parts).ok());
  ASSERT_TRUE(client->Send(MessageType::kAck, whole.subspan(0, 16)).ok());
  ASSERT_TRUE(client->SendParts(MessageType::kHeartbeat, {}).ok());

  Bytes expected;
  EncodeFrame(static_cast<uint16_t>(MessageType::kRecords), 1, body, &expected);
  EncodeFrame(static_cast<uint16_t>(MessageType::kAck), 2, whole.subspan(0, 16), &expected);
  EncodeFrame(static_cast<uint16_t>(MessageType::kHeartbeat), 3, {}, &expected);
  EXPECT_TRUE(server.ReadExactly(expected.size()) == expected);
}

TEST(Transport, ConcurrentSendersDeliverEveryFrameIntactAndInSequence) {
  Pair pair = ConnectedPair();
  constexpr int kThreads = 4;
  constexpr int kFramesPerThread = 250;
  std::vector<std::thread> senders;
  for (int t = 0; t < kThreads; ++t) {
    senders.emplace_back([&, t] {
      for (int i = 0; i < kFramesPerThread; ++i) {
        // Body: thread, index, then a pattern of a size that varies.
        Bytes body = Pattern(8 + static_cast<size_t>((i * 977 + t * 131) % 20000), static_cast<uint64_t>(t * 100000 + i));
        body[0] = static_cast<std::byte>(t);
        std::memcpy(body.data() + 4, &i, sizeof(i));
        const std::span<const std::byte> whole(body);
        const std::span<const std::byte> parts[] = {whole.subspan(0, 8), whole.subspan(8)};
        const Status status = (i % 2 == 0) ? pair.client->Send(MessageType::kRecords, body)
                                           : pair.client->SendParts(MessageType::kRecords, parts);
        ASSERT_TRUE(status.ok()) << status.ToString();
      }
    });
  }
  int next_index[kThreads] = {};
  for (uint64_t sequence = 1; sequence <= kThreads * kFramesPerThread; ++sequence) {
    Frame frame;
    const Status status = pair.server->Receive(&frame, 5s);
    ASSERT_TRUE(status.ok()) << status.ToString();
    ASSERT_EQ(frame.sequence, sequence);
    ASSERT_GE(frame.body.size(), 8U);
    const int t = static_cast<int>(frame.body[0]);
    ASSERT_LT(t, kThreads);
    int i = 0;
    std::memcpy(&i, frame.body.data() + 4, sizeof(i));
    // Each sender's frames arrive whole and in its own order.
    ASSERT_EQ(i, next_index[t]++);
    Bytes expected = Pattern(frame.body.size(), static_cast<uint64_t>(t * 100000 + i));
    expected[0] = static_cast<std::byte>(t);
    std::memcpy(expected.data() + 4, &i, sizeof(i));
    ASSERT_TRUE(frame.body == expected) << "sequence " << sequence;
  }
  for (auto& sender : senders) sender.join();
}

TEST(Transport, ReceiveTimeoutLeavesTheConnectionUsable) {
  Pair pair = ConnectedPair();
  Frame frame;
  const auto start = Clock::now();
  Status status = pair.server->Receive(&frame, 50ms);
  EXPECT_TRUE(IsTimeout(status)) << status.ToString();
  EXPECT_GE(Clock::now() - start, 50ms);
  EXPECT_NE(status.message().find(pair.server->peer()), std::string::npos) << status.message();

  ASSERT_TRUE(pair.client->Send(MessageType::kAck, Pattern(16, 1)).ok());
  status = pair.server->Receive(&frame, 2s);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(frame.sequence, 1U);
}

// A frame that arrives in pieces across timeouts is kept and completed.
TEST(Transport, ReceiveTimeoutInsideAFrameKeepsTheBytes) {
  std::unique_ptr<Listener> listener;
  ASSERT_TRUE(Listener::Bind("127.0.0.1", 0, &listener).ok());
  RawSocket raw = RawConnect(listener->port());
  std::unique_ptr<Connection> server;
  ASSERT_TRUE(listener->Accept(2s, &server).ok());
  server->set_max_body_bytes(4096);  // the header is then held back whole

  Bytes frames;
  EncodeFrame(static_cast<uint16_t>(MessageType::kRecords), 1, Pattern(1000, 3), &frames);
  EncodeFrame(static_cast<uint16_t>(MessageType::kAck), 2, Pattern(16, 4), &frames);
  const std::span<const std::byte> bytes(frames);
  // Frame 1 arrives in pieces, each followed by a timeout: inside the held-back
  // header, at its end, and inside the body.
  Frame frame;
  size_t sent = 0;
  for (size_t upto : {size_t{5}, size_t{31}, size_t{32}, size_t{40}, size_t{900}}) {
    raw.WriteAll(bytes.subspan(sent, upto - sent));
    sent = upto;
    EXPECT_TRUE(IsTimeout(server->Receive(&frame, 20ms))) << upto;
  }
  raw.WriteAll(bytes.subspan(sent, kFrameHeaderSize + 1000 - sent));
  const Status status = server->Receive(&frame, 2s);
  ASSERT_TRUE(status.ok()) << status.ToString();
  EXPECT_EQ(frame.sequence, 1U);
  EXPECT_TRUE(frame.body == Pattern(1000, 3));
  raw.WriteAll(bytes.subspan(kFrameHeaderSize + 1000, 10));
  EXPECT_TRUE(IsTimeout(server->Receive(&frame, 20ms)));
  raw.WriteAll(bytes.subspan(kFrameHeaderSize + 1010));
  ASSERT_TRUE(server->Receive(&frame, 2s).ok());
  EXPECT_EQ(frame.sequence, 2U);
  EXPECT_EQ(frame.type, MessageType::kAck);
}

TEST(Transport, ShutdownWakesABlockedReceive) {
  Pair pair = ConnectedPair();
  auto receiver = std::async(std::launch::async, [&] {
    Frame frame;
    const auto start = Clock::now();
    Status status = pair.server->Receive(&frame, 10s);
    return std::make_pair(std::move(status), Clock::now() - start);
  });
  std::this_thread::sleep_for(50ms);
  pair.server->Shutdown();
  pair.server->Shutdown();  // idempotent
  auto [status, waited] = receiver.get();
  EXPECT_TRUE(status.IsIoError()) << status.ToString();
  EXPECT_NE(status.message().find("shut down"), std::string::npos) << status.message();
  EXPECT_FALSE(pair.server->closed_by_peer());
  EXPECT_LT(waited, 2s);
  // Sending on a shut-down connection fails too, and the peer sees the end.
  EXPECT_FALSE(pair.server->Send(MessageType::kAck, Pattern(16, 1)).ok());
  Frame frame;
  EXPECT_TRUE(pair.client->Receive(&frame, 2s).IsIoError());
}

TEST(Transport, OrderlyCloseByThePeerIsToldApart) {
  Pair pair = ConnectedPair();
  ASSERT_TRUE(pair.client->Send(MessageType::kAck, Pattern(16, 1)).ok());
  pair.client.reset();  // closes after a whole frame
  Frame frame;
  ASSERT_TRUE(pair.server->Receive(&frame, 2s).ok());
  const Status status = pair.server->Receive(&frame, 2s);
  EXPECT_TRUE(status.IsIoError()) << status.ToString();
  EXPECT_TRUE(pair.server->closed_by_peer());
  EXPECT_NE(status.message().find(pair.server->peer() + " closed the connection"), std::string::npos)
      << status.message();
  // Sticky.
  EXPECT_EQ(pair.server->Receive(&frame, 10ms).message(), status.message());
}

TEST(Transport, CloseInsideAFrameIsNotAnOrderlyClose) {
  std::unique_ptr<Listener> listener;
  ASSERT_TRUE(Listener::Bind("127.0.0.1", 0, &listener).ok());
  RawSocket raw = RawConnect(listener->port());
  std::unique_ptr<Connection> server;
  ASSERT_TRUE(listener->Accept(2s, &server).ok());
  Bytes frame_bytes;
  EncodeFrame(static_cast<uint16_t>(MessageType::kAck), 1, Pattern(16, 1), &frame_bytes);
  raw.WriteAll(std::span<const std::byte>(frame_bytes).subspan(0, 40));
  raw.Close();
  Frame frame;
  const Status status = server->Receive(&frame, 2s);
  EXPECT_TRUE(status.IsIoError()) << status.ToString();
  EXPECT_FALSE(server->closed_by_peer());
  EXPECT_NE(status.message().find("closed the connection inside a frame"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("40 bytes of 48"), std::string::npos) << status.message();
}

TEST(Transport, GarbageFromARawSocketIsADecodeErrorNamingThePeer) {
  std::unique_ptr<Listener> listener;
  ASSERT_TRUE(Listener::Bind("127.0.0.1", 0, &listener).ok());
  RawSocket raw = RawConnect(listener->port());
  std::unique_ptr<Connection> server;
  ASSERT_TRUE(listener->Accept(2s, &server).ok());
  raw.WriteAll(Text("GET / HTTP/1.1\r\nHost: keel\r\n\r\nand some more bytes to fill a header"));
  Frame frame;
  const Status status = server->Receive(&frame, 2s);
  EXPECT_TRUE(status.IsCorruption()) << status.ToString();
  EXPECT_NE(status.message().find("peer " + server->peer()), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("bad magic"), std::string::npos) << status.message();
  // Refused for good: the stream cannot be resynchronised.
  raw.WriteAll(Bytes(64));
  EXPECT_TRUE(server->Receive(&frame, 10ms).IsCorruption());
}

TEST(Transport, BodyLimitRefusesALargeFrameAndCanBeRaised) {
  Pair pair = ConnectedPair();
  pair.server->set_max_body_bytes(1024);
  ASSERT_TRUE(pair.client->Send(MessageType::kRecords, Pattern(1024, 1)).ok());
  Frame frame;
  ASSERT_TRUE(pair.server->Receive(&frame, 2s).ok());
  pair.server->set_max_body_bytes(kMaxBodyBytes);  // e.g. once the handshake is over
  ASSERT_TRUE(pair.client->Send(MessageType::kRecords, Pattern(100'000, 2)).ok());
  ASSERT_TRUE(pair.server->Receive(&frame, 2s).ok());
  EXPECT_EQ(frame.sequence, 2U);
  pair.server->set_max_body_bytes(1024);
  ASSERT_TRUE(pair.client->Send(MessageType::kRecords, Pattern(1025, 3)).ok());
  const Status status = pair.server->Receive(&frame, 2s);
  EXPECT_TRUE(status.IsCorruption()) << status.ToString();
  EXPECT_NE(status.message().find("frame 3: body length 1025 over limit 1024"), std::string::npos)
      << status.message();
}

TEST(Transport, APeerThatNeverReadsFailsTheSenderAfterTheSendTimeout) {
  uint16_t port = 0;
  RawSocket listening = RawListen(&port);
  std::unique_ptr<Connection> client;
  ASSERT_TRUE(Connection::Connect("127.0.0.1", port, 2s, &client).ok());
  RawSocket server(::accept(listening.fd(), nullptr, nullptr));  // and never reads
  client->set_send_timeout(200ms);
  // More than loopback's socket buffers hold on both sides.
  const Bytes body(24 << 20);
  const auto start = Clock::now();
  const Status status = client->Send(MessageType::kRecords, body);
  const auto waited = Clock::now() - start;
  EXPECT_TRUE(status.IsIoError()) << status.ToString();
  EXPECT_NE(status.message().find("send timeout"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find(client->peer()), std::string::npos) << status.message();
  EXPECT_GE(waited, 200ms);
  EXPECT_LT(waited, 1500ms);
  // The frame was cut short: the connection is shut down for good.
  EXPECT_TRUE(client->Send(MessageType::kAck, Pattern(16, 1)).IsIoError());
  Frame frame;
  EXPECT_TRUE(client->Receive(&frame, 10ms).IsIoError());
}

TEST(Transport, ABodyOverTheLimitIsRefusedBeforeAnythingIsSent) {
  Pair pair = ConnectedPair();
  const Bytes megabyte(1 << 20);
  std::vector<std::span<const std::byte>> parts(kMaxBodyBytes / megabyte.size() + 1, megabyte);
  const Status status = pair.client->SendParts(MessageType::kRecords, parts);
  EXPECT_TRUE(status.IsInvalidArgument()) << status.ToString();
  EXPECT_EQ(pair.client->bytes_sent(), 0U);
  // Nothing changed: the next frame is still number 1.
  ASSERT_TRUE(pair.client->Send(MessageType::kAck, Pattern(16, 1)).ok());
  Frame frame;
  ASSERT_TRUE(pair.server->Receive(&frame, 2s).ok());
  EXPECT_EQ(frame.sequence, 1U);
}

TEST(Listener, AcceptTimesOutAndShutdownWakesIt) {
  std::unique_ptr<Listener> listener;
  ASSERT_TRUE(Listener::Bind("localhost", 0, &listener).ok());
  EXPECT_NE(listener->port(), 0);
  EXPECT_EQ(listener->address(), "127.0.0.1:" + std::to_string(listener->port()));
  std::unique_ptr<Connection> connection;
  Status status = listener->Accept(30ms, &connection);
  EXPECT_TRUE(IsTimeout(status)) << status.ToString();

  auto acceptor = std::async(std::launch::async, [&] {
    std::unique_ptr<Connection> accepted;
    return listener->Accept(10s, &accepted);
  });
  std::this_thread::sleep_for(50ms);
  listener->Shutdown();
  listener->Shutdown();  // idempotent
  ASSERT_EQ(acceptor.wait_for(2s), std::future_status::ready);
  status = acceptor.get();
  EXPECT_TRUE(status.IsIoError()) << status.ToString();
  EXPECT_FALSE(IsTimeout(status));
}

TEST(Listener, BindingABusyPortFailsNamingTheAddress) {
  std::unique_ptr<Listener> first;
  ASSERT_TRUE(Listener::Bind("127.0.0.1", 0, &first).ok());
  std::unique_ptr<Listener> second;
  const Status status = Listener::Bind("127.0.0.1", first->port(), &second);
  EXPECT_TRUE(status.IsIoError()) << status.ToString();
  EXPECT_NE(status.message().find(first->address()), std::string::npos) << status.message();
  EXPECT_TRUE(Listener::Bind("example.com", 0, &second).IsInvalidArgument());
}

TEST(Connection, ConnectToAClosedPortFailsNamingTheAddress) {
  uint16_t port = 0;
  {
    std::unique_ptr<Listener> listener;
    ASSERT_TRUE(Listener::Bind("127.0.0.1", 0, &listener).ok());
    port = listener->port();
  }  // closed again: nothing listens there now
  std::unique_ptr<Connection> connection;
  const Status status = Connection::Connect("127.0.0.1", port, 1s, &connection);
  EXPECT_TRUE(status.IsIoError()) << status.ToString();
  EXPECT_FALSE(IsTimeout(status));
  EXPECT_NE(status.message().find("connect to 127.0.0.1:" + std::to_string(port)), std::string::npos)
      << status.message();
  EXPECT_TRUE(Connection::Connect("nowhere", port, 1s, &connection).IsInvalidArgument());
}

}  // namespace
}  // namespace keel::replication
