#include <keel/failover/coordinator_tls.h>

#include <keel/replication/secret.h>

namespace keel::failover {
namespace {

// The first TLS flag given, for messages.
std::string FirstTlsFlag(const cluster::EtcdTls& tls) {
  if (!tls.ca_file.empty()) return "--coordinator-ca";
  if (!tls.cert_file.empty()) return "--coordinator-cert";
  return "--coordinator-key";
}

}  // namespace

Status CheckCoordinatorTls(const std::vector<std::string>& endpoints, const cluster::EtcdTls& tls) {
  if (!tls.given()) return Status::Ok();
  for (const std::string& endpoint : endpoints) {
    if (endpoint.rfind("https://", 0) != 0) {
      return Status::InvalidArgument(FirstTlsFlag(tls) + " needs https:// coordinator URLs; '" + endpoint +
                                     "' is not one");
    }
  }
  if (tls.cert_file.empty() != tls.key_file.empty()) {
    return Status::InvalidArgument("--coordinator-cert and --coordinator-key go together");
  }
  if (tls.key_file.empty()) return Status::Ok();
  // Read only for the check: libcurl reads the key itself, from the same path.
  std::string key;
  const Status status = replication::ReadPrivateFile(tls.key_file, "coordinator key file", &key);
  key.assign(key.size(), '\0');
  return status.WithContext("--coordinator-key");
}

}  // namespace keel::failover
