#include "examples/kv/resp_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <set>
#include <vector>

#include "examples/kv/resp_committer.h"
#include "examples/kv/resp_connection.h"
#include "examples/kv/resp_writer.h"

namespace keel::kv {
namespace {

constexpr int kMaxEventsPerWait = 256;
// How often WAITLSN waiters look at the applied LSN (there is no event for
// "applied", so the loop polls it while someone waits).
constexpr int kAppliedPollMs = 5;
constexpr int kListenBacklog = 512;
constexpr int kMaxRoundsPerServe = 8;

Status Errno(const std::string& what) { return Status::FromErrno(what, errno); }

// A listening non-blocking socket on host:port; *port_out gets the port.
// flag: the flag that asked for it, for the errors.
Status Listen(const std::string& flag, const std::string& host, uint16_t port, int* fd_out, uint16_t* port_out) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const int error = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (error != 0) return Status::InvalidArgument(flag + " " + host + ": " + gai_strerror(error));
  const int fd = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    freeaddrinfo(found);
    return Errno("socket");
  }
  const int on = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  const bool bound = bind(fd, found->ai_addr, found->ai_addrlen) == 0;
  freeaddrinfo(found);
  if (!bound || listen(fd, kListenBacklog) != 0) {
    const Status status = Errno(flag + " " + host + ":" + std::to_string(port));
    close(fd);
    return status;
  }
  sockaddr_storage address{};
  socklen_t length = sizeof(address);
  getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  *port_out = ntohs(address.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&address)->sin6_port
                                                  : reinterpret_cast<sockaddr_in*>(&address)->sin_port);
  *fd_out = fd;
  return Status::Ok();
}

// The listeners options asks for (-1 for one it does not), with their ports.
Status ListenAll(const RespServerOptions& options, int* plain_fd, uint16_t* plain_port, int* tls_fd,
                 uint16_t* tls_port) {
  *plain_fd = -1;
  *tls_fd = -1;
  if (options.plain) KEEL_RETURN_IF_ERROR(Listen("--serve", options.host, options.port, plain_fd, plain_port));
  if (options.tls == nullptr) return Status::Ok();
  const Status status = Listen("--tls-serve", options.tls_host, options.tls_port, tls_fd, tls_port);
  if (!status.ok() && *plain_fd >= 0) close(*plain_fd);
  return status;
}

void Log(const std::string& line) {
  if (line.empty()) return;
  std::fprintf(stderr, "%s\n", line.c_str());
  std::fflush(stderr);
}

}  // namespace

// The event loop: every socket, the committer's eventfd and the stop eventfd
// in one epoll set, served by one thread.
class RespServer::Loop {
 public:
  // listen_fd, tls_listen_fd: the plaintext and TLS listeners, -1 for one not asked for.
  Loop(const RespServerOptions& options, RespBackend* backend, int listen_fd, int tls_listen_fd, int epoll_fd,
       int wake_fd)
      : options_(options), backend_(backend), listen_fd_(listen_fd), tls_listen_fd_(tls_listen_fd),
        epoll_fd_(epoll_fd), wake_fd_(wake_fd), committer_(backend, wake_fd) {}
  ~Loop() {
    connections_.clear();
    if (listen_fd_ >= 0) close(listen_fd_);
    if (tls_listen_fd_ >= 0) close(tls_listen_fd_);
    close(wake_fd_);
    close(epoll_fd_);
  }

  void Run();
  void RequestStop() {
    stopping_.store(true);
    const uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof(one));
  }
  Committer* committer() { return &committer_; }

 private:
  // Takes the connections waiting on listen_fd (either listener).
  void Accept(int listen_fd);
  // Whether a connection accepted on listen_fd may join: the client limit,
  // and a TLS session for the TLS listener's (into *tls).
  bool Admit(int listen_fd, int fd, std::unique_ptr<RespTls>* tls);
  // One handshake step: true when it is done, false when the connection
  // waits for its socket or was refused (and closed).
  bool Handshake(Connection* connection);
  void OnCommitted();
  // Brings one connection up to date: reads (if readable), runs, resolves,
  // sends, and closes it when it is finished or broken.
  void Serve(int fd, bool readable);
  void Close(int fd);
  void Watch(Connection* connection);
  int PollTimeoutMs() const;

  const RespServerOptions options_;
  RespBackend* const backend_;
  const int listen_fd_;
  const int tls_listen_fd_;
  const int epoll_fd_;
  const int wake_fd_;
  Committer committer_;
  std::atomic<bool> stopping_{false};
  AuthFailureLog auth_log_;
  TlsFailureLog tls_log_;
  std::map<int, std::unique_ptr<Connection>> connections_;
  std::map<int, uint32_t> watched_;  // fd -> the epoll events registered
  std::set<int> again_;              // connections to serve on the next pass without an event
  Lsn committed_lsn_ = 0;            // every write through it is acknowledged
  Lsn settled_lsn_ = 0;              // every write through it is answered (acknowledged or failed)
};

void RespServer::Loop::Run() {
  epoll_event events[kMaxEventsPerWait];
  while (!stopping_.load()) {
    const int ready = epoll_wait(epoll_fd_, events, kMaxEventsPerWait, PollTimeoutMs());
    if (ready < 0 && errno != EINTR) {
      std::fprintf(stderr, "keel-kv: epoll_wait: %s; the server stops\n", std::strerror(errno));
      return;
    }
    bool woken = false;
    for (int i = 0; i < ready; ++i) {
      const int fd = events[i].data.fd;
      if (fd == listen_fd_ || fd == tls_listen_fd_) {
        Accept(fd);
      } else if (fd == wake_fd_) {
        woken = true;
      } else if (connections_.contains(fd)) {
        // Hung up both ways or failed: no reply can reach the client any more.
        if ((events[i].events & (EPOLLHUP | EPOLLERR)) != 0) {
          Close(fd);
        } else {
          Serve(fd, (events[i].events & EPOLLIN) != 0);
        }
      }
    }
    if (woken) OnCommitted();
    // WAITLSN waiters look at the applied LSN on every pass.
    std::vector<int> waiting;
    for (const auto& [fd, connection] : connections_) {
      if (connection->waits_applied()) waiting.push_back(fd);
    }
    for (const int fd : waiting) Serve(fd, false);
    std::set<int> again;
    again.swap(again_);
    for (const int fd : again) {
      if (connections_.contains(fd)) Serve(fd, false);
    }
  }
}

int RespServer::Loop::PollTimeoutMs() const {
  if (!again_.empty()) return 0;
  for (const auto& [fd, connection] : connections_) {
    if (connection->waits_applied()) return kAppliedPollMs;
  }
  return -1;
}

void RespServer::Loop::Accept(int listen_fd) {
  for (int i = 0; i < kMaxEventsPerWait; ++i) {
    const int fd = accept4(listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
        std::fprintf(stderr, "keel-kv: accept: %s\n", std::strerror(errno));
      }
      return;
    }
    std::unique_ptr<RespTls> tls;
    if (!Admit(listen_fd, fd, &tls)) {
      close(fd);
      continue;
    }
    const int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    auto connection = std::make_unique<Connection>(fd, &options_, &auth_log_, std::move(tls));
    Connection* raw = connection.get();
    connections_[fd] = std::move(connection);
    Watch(raw);
  }
}

bool RespServer::Loop::Admit(int listen_fd, int fd, std::unique_ptr<RespTls>* tls) {
  const bool over_tls = listen_fd == tls_listen_fd_;
  if (connections_.size() >= options_.max_clients) {
    // A TLS client could not read the plaintext error: it is only closed.
    static constexpr char kFull[] = "-ERR max number of clients reached\r\n";
    if (!over_tls) (void)!send(fd, kFull, sizeof(kFull) - 1, MSG_NOSIGNAL);
    return false;
  }
  if (!over_tls) return true;
  const std::string peer = PeerAddress(fd);
  const Status status = RespTls::Accept(options_.tls.get(), fd, peer, tls);
  if (!status.ok()) Log(tls_log_.Record(peer, status.message(), TlsFailureLog::Clock::now()));
  return status.ok();
}

bool RespServer::Loop::Handshake(Connection* connection) {
  const int fd = connection->fd();
  const Status status = connection->tls()->Handshake();
  if (!status.ok()) {
    Log(tls_log_.Record(connection->tls()->peer(), status.message(), TlsFailureLog::Clock::now()));
    Close(fd);
    return false;
  }
  if (connection->handshaking()) {
    Watch(connection);
    return false;
  }
  return true;
}

void RespServer::Loop::OnCommitted() {
  uint64_t count = 0;
  (void)!read(wake_fd_, &count, sizeof(count));
  for (Committer::Result& result : committer_.TakeResults()) {
    assert(result.through > settled_lsn_);
    // Asked again here, as the replies are about to leave (the lease rule's
    // check-to-act gap is this loop's turn, not the committer's hand-off).
    if (result.status.ok()) result.status = backend_->MayAcknowledgeNow(result.through);
    if (result.status.ok()) {
      committed_lsn_ = result.through;
    } else {
      // The writes this commit covered, beyond those acknowledged before,
      // are answered with the error; they stay in the log unacknowledged.
      const std::string reply = WriteFailedReply(result.status);
      for (auto& [fd, connection] : connections_) connection->FailWrites(committed_lsn_, result.through, reply);
      // A later commit that succeeds covers them too, but they are answered already.
      committed_lsn_ = result.through;
    }
    settled_lsn_ = result.through;
  }
  std::vector<int> fds;
  for (const auto& [fd, connection] : connections_) fds.push_back(fd);
  for (const int fd : fds) Serve(fd, false);
}

void RespServer::Loop::Serve(int fd, bool readable) {
  Connection* connection = connections_.at(fd).get();
  if (connection->handshaking()) {
    if (!Handshake(connection)) return;
    readable = true;  // the client's first commands may have come with its last handshake bytes
  }
  if ((readable || connection->input_pending()) && !connection->ReadInput()) {
    Close(fd);
    return;
  }
  std::vector<Lsn> commit_requests;
  // Run commands, answer what is ready, and run again while answering made
  // room, a bounded number of rounds so that one client cannot hold the loop.
  bool first = true;
  for (int round = 0; round < kMaxRoundsPerServe && (first || connection->can_run_more()); ++round) {
    first = false;
    if (connection->can_run_more()) connection->ProcessInput(backend_, &commit_requests);
    connection->Resolve(committed_lsn_, connection->waits_applied() ? backend_->AppliedLsn() : 0,
                        Connection::Clock::now());
    if (!connection->Flush()) {
      Close(fd);
      return;
    }
  }
  for (const Lsn lsn : commit_requests) committer_.Request(lsn);
  if (connection->finished()) {
    Close(fd);
    return;
  }
  // Commands left in its input with room to run them, or input decrypted
  // and waiting in its TLS session: no socket event will say so (the client
  // waits for replies), so the loop comes back by itself.
  if (connection->can_run_more() || connection->input_pending()) again_.insert(fd);
  Watch(connection);
}

void RespServer::Loop::Watch(Connection* connection) {
  const uint32_t wanted = (connection->poll_input() ? EPOLLIN : 0U) | (connection->poll_output() ? EPOLLOUT : 0U);
  const auto known = watched_.find(connection->fd());
  epoll_event event{};
  event.events = wanted;
  event.data.fd = connection->fd();
  if (known == watched_.end()) {
    epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, connection->fd(), &event);
  } else if (known->second != wanted) {
    epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, connection->fd(), &event);
  }
  watched_[connection->fd()] = wanted;
}

void RespServer::Loop::Close(int fd) {
  epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  watched_.erase(fd);
  again_.erase(fd);
  connections_.erase(fd);  // closes the socket
}

Status RespServer::Start(const RespServerOptions& options, RespBackend* backend, std::unique_ptr<RespServer>* server) {
  int listen_fd = -1;
  int tls_listen_fd = -1;
  uint16_t port = 0;
  uint16_t tls_port = 0;
  KEEL_RETURN_IF_ERROR(ListenAll(options, &listen_fd, &port, &tls_listen_fd, &tls_port));
  const int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  const int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd < 0 || wake_fd < 0) {
    const Status status = Errno("epoll_create1 or eventfd");
    for (const int fd : {listen_fd, tls_listen_fd, epoll_fd, wake_fd}) {
      if (fd >= 0) close(fd);
    }
    return status;
  }
  for (const int fd : {listen_fd, tls_listen_fd, wake_fd}) {
    if (fd < 0) continue;
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = fd;
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event);
  }
  std::unique_ptr<RespServer> made(new RespServer());
  made->port_ = port;
  made->tls_port_ = tls_port;
  made->loop_ = std::make_unique<Loop>(options, backend, listen_fd, tls_listen_fd, epoll_fd, wake_fd);
  made->thread_ = std::thread([loop = made->loop_.get()] { loop->Run(); });
  *server = std::move(made);
  return Status::Ok();
}

void RespServer::Stop(const std::function<void()>& interrupt_backend) {
  if (stopped_) return;
  stopped_ = true;
  loop_->RequestStop();
  thread_.join();
  loop_->committer()->Stop(interrupt_backend);
  loop_.reset();
}

RespServer::~RespServer() { Stop({}); }

}  // namespace keel::kv
