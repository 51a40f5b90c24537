#include <keel/replication/secret.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <vector>

namespace keel::replication {
namespace {

// "0644": the permission bits as chmod takes them.
std::string OctalMode(mode_t mode) {
  char text[8];
  std::snprintf(text, sizeof(text), "%04o", static_cast<unsigned>(mode & 07777));
  return text;
}

// Refuses a file that group or others may read, write or execute. Checked on
// the open descriptor, so the file checked is the file read.
Status CheckPrivateFileMode(int fd, const std::string& what, const std::string& path) {
  struct stat info {};
  if (::fstat(fd, &info) != 0) return Status::FromErrno("stat " + what + " " + path, errno);
  const mode_t shared = info.st_mode & (S_IRWXG | S_IRWXO);
  if (shared == 0) return Status::Ok();
  const bool readable = (shared & (S_IRGRP | S_IROTH)) != 0;
  return Status::InvalidArgument(what + " " + path + " has mode " + OctalMode(info.st_mode) + ", which lets " +
                                 (readable ? "group or others read it" : "group or others access it") +
                                 "; make it private to its owner with: chmod 600 " + path);
}

}  // namespace

Status ReadPrivateFile(const std::string& path, const std::string& what, std::string* contents) {
  contents->clear();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno("open " + what + " " + path, errno);
  Status status = CheckPrivateFileMode(fd, what, path);
  // One byte more than the limit tells an overlong file from a full one.
  std::vector<char> buffer(kMaxSecretBytes + 1);
  size_t got = 0;
  while (status.ok() && got < buffer.size()) {
    const ssize_t n = ::read(fd, buffer.data() + got, buffer.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) status = Status::FromErrno("read " + what + " " + path, errno);
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  KEEL_RETURN_IF_ERROR(status);
  if (got > kMaxSecretBytes) {
    return Status::InvalidArgument(what + " " + path + " is longer than " + std::to_string(kMaxSecretBytes) +
                                   " bytes");
  }
  contents->assign(buffer.data(), got);
  return Status::Ok();
}

Status ReadSecretFile(const std::string& path, std::string* secret) {
  secret->clear();
  if (path.empty()) return Status::Ok();
  KEEL_RETURN_IF_ERROR(ReadPrivateFile(path, "secret file", secret));
  while (!secret->empty() && (secret->back() == '\n' || secret->back() == '\r')) secret->pop_back();
  if (secret->empty()) return Status::InvalidArgument("secret file " + path + " is empty");
  return Status::Ok();
}

Status ReadPasswordFile(const std::string& path, std::string* password) {
  password->clear();
  if (path.empty()) return Status::Ok();
  KEEL_RETURN_IF_ERROR(ReadPrivateFile(path, "password file", password));
  const size_t end = password->find_first_of("\r\n");
  if (end != std::string::npos) password->resize(end);
  if (password->empty()) return Status::InvalidArgument("password file " + path + " has an empty first line");
  return Status::Ok();
}

bool IsLoopbackHost(std::string_view host) {
  if (host == "localhost") return true;
  in_addr address{};
  if (::inet_pton(AF_INET, std::string(host).c_str(), &address) != 1) return false;
  return (ntohl(address.s_addr) >> 24) == 127;
}

Status CheckListenerSecret(std::string_view listen_host, std::string_view secret) {
  if (!secret.empty() || IsLoopbackHost(listen_host)) return Status::Ok();
  in_addr address{};
  // Not an address at all: the listener names that fault more exactly.
  if (::inet_pton(AF_INET, std::string(listen_host).c_str(), &address) != 1) return Status::Ok();
  return Status::InvalidArgument(
      "refusing to listen on " + std::string(listen_host) +
      " without a cluster secret: any machine that reaches it could join the cluster, read its log or promote a "
      "node; give every node and tool the same --secret-file (mode 600), or listen on 127.0.0.1");
}

}  // namespace keel::replication
