#include <keel/replication/transport.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cstring>
#include <utility>

#include <keel/io/endian.h>

namespace keel::replication {
namespace {

using Clock = std::chrono::steady_clock;

// Linux takes at most UIO_MAXIOV (1024) pieces per sendmsg; longer lists go
// in several calls.
constexpr size_t kMaxIovecsPerCall = 1024;
constexpr int kListenBacklog = 64;

// Always IoError: the transport keeps NotFound for timeouts (IsTimeout), so it
// does not use Status::FromErrno, which turns ENOENT into NotFound.
Status SocketError(const std::string& what, int error_number) {
  char buffer[128];
  return Status::IoError(what + ": " + strerror_r(error_number, buffer, sizeof(buffer)));
}

std::string Milliseconds(std::chrono::milliseconds duration) { return std::to_string(duration.count()) + " ms"; }

// The poll() timeout that ends at deadline: rounded up, so that a poll never
// returns early only to spin, and never negative.
int PollTimeoutMs(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, INT_MAX));
}

// Waits until fd is ready for events or deadline passes: 1 ready (or in an
// error state the next call will report), 0 timed out, -1 with errno.
int PollUntil(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd entry{fd, events, 0};
    const int ready = ::poll(&entry, 1, PollTimeoutMs(deadline));
    if (ready >= 0) return ready;
    if (errno != EINTR) return -1;
  }
}

bool ResolveIpv4(const std::string& host, uint16_t port, sockaddr_in* address) {
  *address = sockaddr_in{};
  address->sin_family = AF_INET;
  address->sin_port = htons(port);
  const char* dotted = host == "localhost" ? "127.0.0.1" : host.c_str();
  return ::inet_pton(AF_INET, dotted, &address->sin_addr) == 1;
}

std::string FormatAddress(const sockaddr_in& address) {
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &address.sin_addr, text, sizeof(text));
  return std::string(text) + ":" + std::to_string(ntohs(address.sin_port));
}

// TCP_NODELAY: frames are whole messages, and an Ack or Heartbeat must not
// wait for Nagle. SO_KEEPALIVE off: keel's heartbeats detect a dead peer.
Status SetConnectionOptions(int fd, const std::string& peer) {
  const int on = 1;
  const int off = 0;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on)) != 0) {
    return SocketError("set TCP_NODELAY on the connection with " + peer, errno);
  }
  if (::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &off, sizeof(off)) != 0) {
    return SocketError("clear SO_KEEPALIVE on the connection with " + peer, errno);
  }
  return Status::Ok();
}

}  // namespace

Status ParseHostPort(std::string_view text, std::string* host, uint16_t* port, bool allow_zero_port) {
  const std::string quoted = "address \"" + std::string(text) + "\": ";
  const std::string_view expected = "; expected HOST:PORT, e.g. 127.0.0.1:7000";
  const size_t colon = text.rfind(':');
  if (text.empty()) return Status::InvalidArgument("empty address" + std::string(expected));
  if (colon == std::string_view::npos) return Status::InvalidArgument(quoted + "no port" + std::string(expected));
  const std::string host_text(text.substr(0, colon));
  const std::string_view port_text = text.substr(colon + 1);
  if (host_text.empty()) return Status::InvalidArgument(quoted + "no host" + std::string(expected));
  sockaddr_in unused{};
  if (!ResolveIpv4(host_text, 0, &unused)) {
    return Status::InvalidArgument(quoted + "host \"" + host_text + "\" is not an IPv4 address (a.b.c.d) or localhost");
  }
  if (port_text.empty()) return Status::InvalidArgument(quoted + "no port" + std::string(expected));
  // Digits only (from_chars alone would accept a prefix), at most 5 of them.
  const bool digits = port_text.size() <= 5 &&
                      std::all_of(port_text.begin(), port_text.end(), [](char c) { return c >= '0' && c <= '9'; });
  uint32_t value = 0;
  if (digits) std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
  if (!digits || value > UINT16_MAX) {
    return Status::InvalidArgument(quoted + "port \"" + std::string(port_text) + "\" is not a number from " +
                                   (allow_zero_port ? "0" : "1") + " to 65535");
  }
  if (value == 0 && !allow_zero_port) return Status::InvalidArgument(quoted + "port 0 is not allowed here");
  *host = host_text;
  *port = static_cast<uint16_t>(value);
  return Status::Ok();
}

// ---------------------------------------------------------------- Connection

Connection::Connection(int fd, std::string peer)
    : fd_(fd), peer_(std::move(peer)) {
  assert(fd_ >= 0);
}

Connection::~Connection() { ::close(fd_); }

Status Connection::Connect(const std::string& host, uint16_t port, std::chrono::milliseconds timeout,
                           std::unique_ptr<Connection>* out, const std::atomic<bool>* cancel, TlsContext* tls) {
  sockaddr_in address{};
  if (!ResolveIpv4(host, port, &address)) {
    return Status::InvalidArgument("connect: host \"" + host + "\" is not an IPv4 address (a.b.c.d) or localhost");
  }
  const std::string peer = FormatAddress(address);
  const Clock::time_point deadline = Clock::now() + timeout;
  // Non-blocking only while connecting, so that the timeout holds.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return SocketError("connect to " + peer + ": socket", errno);
  auto fail = [fd](Status status) {
    ::close(fd);
    return status;
  };
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    // EINTR leaves the connection being made in the background, like EINPROGRESS.
    if (errno != EINPROGRESS && errno != EINTR) return fail(SocketError("connect to " + peer, errno));
    int ready = 0;
    while (ready == 0 && Clock::now() < deadline) {
      if (cancel != nullptr && cancel->load()) return fail(Status::IoError("connect to " + peer + ": cancelled"));
      const Clock::time_point slice_end = Clock::now() + kCancelCheckInterval;
      ready = PollUntil(fd, POLLOUT, cancel == nullptr ? deadline : std::min(deadline, slice_end));
    }
    if (ready < 0) return fail(SocketError("connect to " + peer + ": poll", errno));
    if (ready == 0) return fail(Status::IoError("connect to " + peer + ": no answer within " + Milliseconds(timeout)));
    int error = 0;
    socklen_t length = sizeof(error);
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
    if (error != 0) return fail(SocketError("connect to " + peer, error));
  }
  // TLS keeps the socket non-blocking (see tls_); plain frames use MSG_DONTWAIT.
  const int flags = ::fcntl(fd, F_GETFL);
  if (tls == nullptr && (flags < 0 || ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) != 0)) {
    return fail(SocketError("connect to " + peer + ": make the socket blocking", errno));
  }
  Status status = SetConnectionOptions(fd, peer);
  if (!status.ok()) return fail(std::move(status));
  std::unique_ptr<Connection> connection(new Connection(fd, peer));
  if (tls != nullptr) KEEL_RETURN_IF_ERROR(connection->StartTls(tls, TlsRole::kClient, host, deadline));
  *out = std::move(connection);
  return Status::Ok();
}

Status Connection::StartTls(TlsContext* tls, TlsRole role, const std::string& expected_host,
                            Clock::time_point deadline) {
  assert(tls_ == nullptr);
  const int flags = ::fcntl(fd_, F_GETFL);
  if (flags < 0 || ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK) != 0) {
    return SocketError("TLS with " + peer_ + ": make the socket non-blocking", errno);
  }
  std::unique_ptr<TlsSession> session;
  KEEL_RETURN_IF_ERROR(tls->NewSession(fd_, role, expected_host, &session));
  const Status status = HandshakeUntil(session.get(), fd_, peer_, deadline);
  if (!status.ok()) {
    Shutdown();
    return status;
  }
  tls_ = std::move(session);
  return Status::Ok();
}

Status Connection::AcceptTls(TlsContext* tls, std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  // A member without TLS waits for this node's first frame, and a tool
  // without TLS may send a plaintext frame: say so plainly rather than time
  // out in the handshake or repeat OpenSSL's guess at what the bytes were.
  const int ready = PollUntil(fd_, POLLIN, deadline);
  if (ready == 0) {
    Shutdown();
    return Status::IoError("TLS with " + peer_ + ": the peer sent nothing within " + Milliseconds(timeout) +
                           "; a member without TLS waits silently (does it have --tls-cert, --tls-key and --tls-ca?)");
  }
  if (ready == 1) {
    std::array<std::byte, 4> first{};
    const ssize_t peeked = ::recv(fd_, first.data(), first.size(), MSG_PEEK | MSG_DONTWAIT);
    std::array<std::byte, 4> magic{};
    io::PutLittleEndian<uint32_t>(magic.data(), 0, kFrameMagic);
    if (peeked > 0 && std::equal(first.begin(), first.begin() + peeked, magic.begin())) {
      Shutdown();
      return Status::IoError("TLS with " + peer_ +
                             ": the peer sent a plaintext keel frame; it needs --tls-cert, --tls-key and --tls-ca too");
    }
  }
  return StartTls(tls, TlsRole::kServer, "", deadline);
}

std::string Connection::tls_description() const {
  if (tls_ == nullptr) return "plaintext";
  std::lock_guard lock(tls_mutex_);
  return tls_->Describe();
}

void Connection::Shutdown() {
  // The flag first, so that a woken Receive or Send reports a local shutdown
  // rather than the end of stream or broken pipe the shutdown causes.
  shut_down_.store(true, std::memory_order_release);
  ::shutdown(fd_, SHUT_RDWR);  // ENOTCONN when the peer already reset it: nothing left to wake
}

Status Connection::Send(MessageType type, std::span<const std::byte> body) {
  const std::span<const std::byte> parts[1] = {body};
  return SendParts(type, parts);
}

Status Connection::SendParts(MessageType type, std::span<const std::span<const std::byte>> parts) {
  uint64_t body_length = 0;
  for (const auto& part : parts) body_length += part.size();
  if (body_length > kMaxBodyBytes) {
    return Status::InvalidArgument("send " + std::string(MessageTypeName(type)) + " to " + peer_ + ": body of " +
                                   std::to_string(body_length) + " bytes over limit " + std::to_string(kMaxBodyBytes));
  }
  std::lock_guard<std::mutex> lock(send_mutex_);
  if (!send_status_.ok()) return send_status_;
  if (shut_down_.load(std::memory_order_acquire)) {
    send_status_ = Status::IoError("send to " + peer_ + ": the connection was shut down");
    return send_status_;
  }
  std::array<std::byte, kFrameHeaderSize> header;
  EncodeFrameHeader(static_cast<uint16_t>(type), next_send_sequence_, parts, header);
  Status status = WriteFrame(type, header, parts);
  if (!status.ok()) {
    // Part of the frame may be in the stream: nothing after it could be read.
    send_status_ = status;
    Shutdown();
    return status;
  }
  ++next_send_sequence_;
  return Status::Ok();
}

// Writes header and parts fully, or fails once send_timeout has passed
// without the peer taking all of them. Called with send_mutex_ held.
Status Connection::WriteFrame(MessageType type, std::span<const std::byte> header,
                              std::span<const std::span<const std::byte>> parts) {
  std::vector<iovec> pieces;
  pieces.reserve(parts.size() + 1);
  pieces.push_back(iovec{const_cast<std::byte*>(header.data()), header.size()});
  uint64_t frame_bytes = header.size();
  for (const auto& part : parts) {
    if (part.empty()) continue;
    pieces.push_back(iovec{const_cast<std::byte*>(part.data()), part.size()});
    frame_bytes += part.size();
  }
  const std::chrono::milliseconds timeout(send_timeout_ms_.load(std::memory_order_relaxed));
  const Clock::time_point deadline = Clock::now() + timeout;
  const std::string what =
      "send " + std::string(MessageTypeName(type)) + " frame " + std::to_string(next_send_sequence_) + " to " + peer_;
  if (tls_ != nullptr) return WriteFrameTls(what, pieces, frame_bytes, deadline);
  uint64_t written = 0;
  size_t index = 0;
  while (index < pieces.size()) {
    msghdr message{};
    message.msg_iov = &pieces[index];
    message.msg_iovlen = std::min(pieces.size() - index, kMaxIovecsPerCall);
    const ssize_t sent = ::sendmsg(fd_, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        if (shut_down_.load(std::memory_order_acquire)) return Status::IoError(what + ": the connection was shut down");
        return SocketError(what, errno);
      }
      const int ready = PollUntil(fd_, POLLOUT, deadline);
      if (ready < 0) return SocketError(what + ": poll", errno);
      if (ready == 0) {
        return Status::IoError(what + ": the peer took " + std::to_string(written) + " of " +
                               std::to_string(frame_bytes) + " bytes in " + Milliseconds(timeout) +
                               " (send timeout); connection shut down");
      }
      continue;
    }
    written += static_cast<uint64_t>(sent);
    bytes_sent_.fetch_add(static_cast<uint64_t>(sent), std::memory_order_relaxed);
    // Skip the pieces written whole; trim the one written in part.
    size_t left = static_cast<size_t>(sent);
    while (index < pieces.size() && left >= pieces[index].iov_len) left -= pieces[index++].iov_len;
    if (left > 0) {
      pieces[index].iov_base = static_cast<std::byte*>(pieces[index].iov_base) + left;
      pieces[index].iov_len -= left;
    }
  }
  assert(written == frame_bytes);
  return Status::Ok();
}

Status Connection::WriteFrameTls(const std::string& what, std::span<const iovec> pieces, uint64_t frame_bytes,
                                 Clock::time_point deadline) {
  // Gathered into one buffer: a TLS record per piece would cost a record's
  // overhead (and a system call) for every small header.
  tls_out_.clear();
  for (const iovec& piece : pieces) {
    const auto* begin = static_cast<const std::byte*>(piece.iov_base);
    tls_out_.insert(tls_out_.end(), begin, begin + piece.iov_len);
  }
  size_t written = 0;
  while (written < tls_out_.size()) {
    size_t put = 0;
    TlsWant want = TlsWant::kNothing;
    Status status;
    {
      std::lock_guard lock(tls_mutex_);
      status = tls_->Write(tls_out_.data() + written, tls_out_.size() - written, &put, &want);
    }
    if (!status.ok()) {
      if (shut_down_.load(std::memory_order_acquire)) return Status::IoError(what + ": the connection was shut down");
      return Status::IoError(what + ": " + status.message());
    }
    written += put;
    bytes_sent_.fetch_add(put, std::memory_order_relaxed);
    if (want == TlsWant::kNothing) continue;
    const int ready = PollUntil(fd_, want == TlsWant::kRead ? POLLIN : POLLOUT, deadline);
    if (ready < 0) return SocketError(what + ": poll", errno);
    if (ready == 0) {
      return Status::IoError(what + ": the peer took " + std::to_string(written) + " of " + std::to_string(frame_bytes) +
                             " bytes before the send timeout; connection shut down");
    }
  }
  return Status::Ok();
}

void Connection::set_max_body_bytes(uint32_t max_body_bytes) {
  assert(max_body_bytes <= kMaxBodyBytes);
  assert(!receiving_.load(std::memory_order_relaxed));
  max_body_bytes_ = std::min(max_body_bytes, kMaxBodyBytes);
}

Status Connection::FailReceive(Status status) {
  assert(!status.ok());
  receive_status_ = std::move(status);
  return receive_status_;
}

// The decoder itself is built with kMaxBodyBytes, since its limit is fixed
// and a sequence cannot be carried over to a new decoder. A lower limit is
// checked here on the whole header before the decoder sees its last byte, so
// no memory is committed for an oversized body either way.
Status Connection::CheckBodyLimit() const {
  assert(frame_bytes_fed_ == 0);
  assert(read_end_ - read_begin_ >= kFrameHeaderSize);
  const std::byte* header = read_buffer_.data() + read_begin_;
  // A bad magic is left for the decoder to name.
  if (io::GetLittleEndian<uint32_t>(header, 0) != kFrameMagic) return Status::Ok();
  const uint32_t body_length = io::GetLittleEndian<uint32_t>(header, kFrameBodyLengthOffset);
  if (body_length <= max_body_bytes_) return Status::Ok();
  return Status::Corruption("peer " + peer_ + ": frame " + std::to_string(decoder_.next_sequence()) +
                            ": body length " + std::to_string(body_length) + " over limit " +
                            std::to_string(max_body_bytes_));
}

Status Connection::DecodeBuffered(Frame* frame, bool* got_frame) {
  *got_frame = false;
  while (read_begin_ < read_end_) {
    if (frame_bytes_fed_ == 0 && max_body_bytes_ < kMaxBodyBytes) {
      if (read_end_ - read_begin_ < kFrameHeaderSize) return Status::Ok();  // wait for the whole header
      KEEL_RETURN_IF_ERROR(CheckBodyLimit());
    }
    const size_t taken =
        decoder_.Feed(std::span<const std::byte>(read_buffer_.data() + read_begin_, read_end_ - read_begin_));
    read_begin_ += taken;
    frame_bytes_fed_ += taken;
    switch (decoder_.Next(frame)) {
      case FrameDecoder::Result::kFrame:
        frame_bytes_fed_ = 0;
        *got_frame = true;
        return Status::Ok();
      case FrameDecoder::Result::kError:
        return Status::Corruption("peer " + peer_ + ": " + decoder_.status().message());
      case FrameDecoder::Result::kNeedMore:
        // Feed takes everything the current frame still needs.
        assert(read_begin_ == read_end_);
        break;
    }
  }
  return Status::Ok();
}

Status Connection::OnEndOfStream() {
  if (shut_down_.load(std::memory_order_acquire)) {
    return Status::IoError("receive from " + peer_ + ": the connection was shut down");
  }
  if (frame_bytes_fed_ == 0 && read_begin_ == read_end_) {
    closed_by_peer_.store(true, std::memory_order_release);
    return Status::IoError("peer " + peer_ + " closed the connection");
  }
  // A header kept back for the limit check counts as part of the frame.
  read_begin_ +=
      decoder_.Feed(std::span<const std::byte>(read_buffer_.data() + read_begin_, read_end_ - read_begin_));
  return Status::IoError("peer " + peer_ + " closed the connection inside a frame: " + decoder_.Finish().message());
}

Status Connection::Receive(Frame* frame, std::chrono::milliseconds timeout) {
  [[maybe_unused]] const bool already_receiving = receiving_.exchange(true, std::memory_order_acquire);
  assert(!already_receiving && "one receiving thread at a time");
  struct Release {
    std::atomic<bool>* flag;
    ~Release() { flag->store(false, std::memory_order_release); }
  } release{&receiving_};

  if (!receive_status_.ok()) return receive_status_;
  if (read_buffer_.empty()) read_buffer_.resize(kReadBufferBytes);  // a send-only connection never needs it
  const Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    // Bytes left over from an earlier read may already hold the next frame.
    bool got_frame = false;
    Status status = DecodeBuffered(frame, &got_frame);
    if (!status.ok()) return FailReceive(std::move(status));
    if (got_frame) return Status::Ok();
    if (shut_down_.load(std::memory_order_acquire)) {
      return FailReceive(Status::IoError("receive from " + peer_ + ": the connection was shut down"));
    }
    // Invariant: what is left unfed is less than a header, kept for the limit check.
    assert(read_end_ - read_begin_ < kFrameHeaderSize);
    std::memmove(read_buffer_.data(), read_buffer_.data() + read_begin_, read_end_ - read_begin_);
    read_end_ -= read_begin_;
    read_begin_ = 0;

    if (!TlsPending()) {
      const int ready = PollUntil(fd_, POLLIN, deadline);
      if (ready < 0) return FailReceive(SocketError("receive from " + peer_ + ": poll", errno));
      if (ready == 0) {
        return Status::NotFound("receive from " + peer_ + ": no frame within " + Milliseconds(timeout));
      }
    }
    size_t got = 0;
    bool end = false;
    status = ReadSome(&got, &end, deadline);
    if (!status.ok()) {
      if (shut_down_.load(std::memory_order_acquire)) {
        return FailReceive(Status::IoError("receive from " + peer_ + ": the connection was shut down"));
      }
      return FailReceive(std::move(status));
    }
    if (end) return FailReceive(OnEndOfStream());
    read_end_ += got;
    bytes_received_.fetch_add(got, std::memory_order_relaxed);
  }
}

bool Connection::TlsPending() {
  if (tls_ == nullptr) return false;
  std::lock_guard lock(tls_mutex_);
  return tls_->HasPending();
}

Status Connection::ReadSome(size_t* got, bool* end, Clock::time_point deadline) {
  *got = 0;
  *end = false;
  std::byte* into = read_buffer_.data() + read_end_;
  const size_t room = read_buffer_.size() - read_end_;
  if (tls_ == nullptr) {
    const ssize_t received = ::recv(fd_, into, room, MSG_DONTWAIT);
    if (received > 0) *got = static_cast<size_t>(received);
    if (received == 0) *end = true;
    if (received < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
      return SocketError("receive from " + peer_, errno);
    }
    return Status::Ok();
  }
  TlsWant want = TlsWant::kNothing;
  Status status;
  {
    std::lock_guard lock(tls_mutex_);
    status = tls_->Read(into, room, got, &want);
  }
  if (!status.ok()) return Status::IoError("receive from " + peer_ + ": " + status.message());
  if (*got == 0 && want == TlsWant::kNothing) *end = true;
  // TLS may need to send before it can read on (rarely, in TLS 1.3): wait
  // for room, a little at a time.
  if (want == TlsWant::kWrite) (void)PollUntil(fd_, POLLOUT, std::min(deadline, Clock::now() + kCancelCheckInterval));
  return Status::Ok();
}

// ------------------------------------------------------------------ Listener

Listener::Listener(int fd, int wake_fd, uint16_t port, std::string address)
    : fd_(fd), wake_fd_(wake_fd), port_(port), address_(std::move(address)) {}

Listener::~Listener() {
  ::close(fd_);
  ::close(wake_fd_);
}

Status Listener::Bind(const std::string& host, uint16_t port, std::unique_ptr<Listener>* out) {
  sockaddr_in address{};
  if (!ResolveIpv4(host, port, &address)) {
    return Status::InvalidArgument("listen: host \"" + host + "\" is not an IPv4 address (a.b.c.d) or localhost");
  }
  const std::string where = FormatAddress(address);
  // Non-blocking, so that a connection that vanishes between poll and accept
  // cannot block Accept past its timeout.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return SocketError("listen on " + where + ": socket", errno);
  auto fail = [fd](Status status) {
    ::close(fd);
    return status;
  };
  const int on = 1;
  if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0) {
    return fail(SocketError("listen on " + where + ": set SO_REUSEADDR", errno));
  }
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    return fail(SocketError("bind " + where, errno));
  }
  if (::listen(fd, kListenBacklog) != 0) return fail(SocketError("listen on " + where, errno));
  sockaddr_in bound{};
  socklen_t length = sizeof(bound);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &length) != 0) {
    return fail(SocketError("listen on " + where + ": getsockname", errno));
  }
  const int wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd < 0) return fail(SocketError("listen on " + where + ": eventfd", errno));
  out->reset(new Listener(fd, wake_fd, ntohs(bound.sin_port), FormatAddress(bound)));
  return Status::Ok();
}

void Listener::Shutdown() {
  shut_down_.store(true, std::memory_order_release);
  const uint64_t one = 1;
  // Fails only if the counter would overflow, which leaves it readable anyway.
  [[maybe_unused]] const ssize_t written = ::write(wake_fd_, &one, sizeof(one));
}

Status Listener::Accept(std::chrono::milliseconds timeout, std::unique_ptr<Connection>* out) {
  const Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    if (shut_down_.load(std::memory_order_acquire)) {
      return Status::IoError("accept on " + address_ + ": the listener was shut down");
    }
    pollfd entries[2] = {{fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    const int ready = ::poll(entries, 2, PollTimeoutMs(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return SocketError("accept on " + address_ + ": poll", errno);
    if (ready == 0) return Status::NotFound("accept on " + address_ + ": no connection within " + Milliseconds(timeout));
    if (entries[1].revents != 0) continue;  // Shutdown: reported at the top
    sockaddr_in peer_address{};
    socklen_t length = sizeof(peer_address);
    const int fd = ::accept4(fd_, reinterpret_cast<sockaddr*>(&peer_address), &length, SOCK_CLOEXEC);
    if (fd < 0) {
      // The connection went away before we took it, or a signal: wait on.
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED || errno == EPROTO) {
        continue;
      }
      return SocketError("accept on " + address_, errno);
    }
    const std::string peer = FormatAddress(peer_address);
    Status status = SetConnectionOptions(fd, peer);
    if (!status.ok()) {
      ::close(fd);
      return status;
    }
    out->reset(new Connection(fd, peer));
    return Status::Ok();
  }
}

}  // namespace keel::replication
