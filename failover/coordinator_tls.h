// The TLS files for the connection to etcd as the command line gives them
// (--coordinator-ca, --coordinator-cert, --coordinator-key), checked the same
// way by keel-kv and the keel tools before any connection is made.
#pragma once

#include <string>
#include <vector>

#include <keel/cluster/http_transport.h>
#include <keel/io/status.h>

namespace keel::failover {

// InvalidArgument, naming the flag, when TLS files are given for a plain
// http:// endpoint, when --coordinator-cert comes without --coordinator-key or
// the other way round, or when the key file is not private to its owner (the
// rule of replication::ReadPrivateFile: no access for group or others). An I/O
// error when the key file cannot be read.
Status CheckCoordinatorTls(const std::vector<std::string>& endpoints, const cluster::EtcdTls& tls);

}  // namespace keel::failover
