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
Status Listen(const std::string& host, uint16_t port, int* fd_out, uint16_t* port_out) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const int error = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
  if (error != 0) return Status::InvalidArgument("--serve " + host + ": " + gai_strerror(error));
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
    const Status status = Errno("--serve " + host + ":" + std::to_string(port));
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

}  // namespace

// The event loop: every socket, the committer's eventfd and the stop eventfd
// in one epoll set, served by one thread.
class RespServer::Loop {
 public:
  Loop(const RespServerOptions& options, RespBackend* backend, int listen_fd, int epoll_fd, int wake_fd)
      : options_(options), backend_(backend), listen_fd_(listen_fd), epoll_fd_(epoll_fd), wake_fd_(wake_fd),
        committer_(backend, wake_fd) {}
  ~Loop() {
    connections_.clear();
    close(listen_fd_);
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
  void Accept();
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
  const int epoll_fd_;
  const int wake_fd_;
  Committer committer_;
  std::atomic<bool> stopping_{false};
  AuthFailureLog auth_log_;
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
      if (fd == listen_fd_) {
        Accept();
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

void RespServer::Loop::Accept() {
  for (int i = 0; i < kMaxEventsPerWait; ++i) {
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED) {
        std::fprintf(stderr, "keel-kv: accept: %s\n", std::strerror(errno));
      }
      return;
    }
    if (connections_.size() >= options_.max_clients) {
      static constexpr char kFull[] = "-ERR max number of clients reached\r\n";
      (void)!send(fd, kFull, sizeof(kFull) - 1, MSG_NOSIGNAL);
      close(fd);
      continue;
    }
    const int on = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    auto connection = std::make_unique<Connection>(fd, &options_, &auth_log_);
    Connection* raw = connection.get();
    connections_[fd] = std::move(connection);
    Watch(raw);
  }
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
  if (readable && !connection->ReadInput()) {
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
  // Commands left in its input with room to run them: no socket event will
  // say so (the client waits for replies), so the loop comes back by itself.
  if (connection->can_run_more()) again_.insert(fd);
  Watch(connection);
}

void RespServer::Loop::Watch(Connection* connection) {
  const uint32_t wanted = (connection->wants_input() ? EPOLLIN : 0U) | (connection->wants_output() ? EPOLLOUT : 0U);
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
  uint16_t port = 0;
  KEEL_RETURN_IF_ERROR(Listen(options.host, options.port, &listen_fd, &port));
  const int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  const int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (epoll_fd < 0 || wake_fd < 0) {
    const Status status = Errno("epoll_create1 or eventfd");
    close(listen_fd);
    if (epoll_fd >= 0) close(epoll_fd);
    if (wake_fd >= 0) close(wake_fd);
    return status;
  }
  for (const int fd : {listen_fd, wake_fd}) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.fd = fd;
    epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &event);
  }
  std::unique_ptr<RespServer> made(new RespServer());
  made->port_ = port;
  made->loop_ = std::make_unique<Loop>(options, backend, listen_fd, epoll_fd, wake_fd);
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
