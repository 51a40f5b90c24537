// etcd's user/password authentication through the v3 gateway: POST
// /v3/auth/authenticate {"name", "password"} answers {"token"}, and later
// requests carry it as their Authorization header. A token dies with the
// member that issued it (a restart) or when auth is disabled and enabled
// again; the client then authenticates again, once, and retries
// (etcd_client.cc; docs/cluster.md, "Authentication").
#pragma once

#include <string>

#include <keel/cluster/etcd_client.h>
#include <keel/io/status.h>

namespace keel::cluster {

// Authenticates options.user with options.password at endpoint and sets
// *token. On failure the Status names the user, the endpoint and etcd's
// reason ("authentication failed, invalid user ID or password"); *retry
// says whether another endpoint or round is worth trying (no reply, or a
// 5xx), never for a refused password.
Status EtcdAuthenticate(const EtcdClientOptions& options, const std::string& endpoint, std::string* token,
                        bool* retry);

}  // namespace keel::cluster
