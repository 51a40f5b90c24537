// The JSON codec of etcd's v3 gateway: requests as JSON text, and replies
// parsed from JSON text into the structs of etcd_types.h. Pure functions with
// no I/O, so that the parsers can be fuzzed (keel's fuzz targets).
//
// The gateway's conventions: keys and values are base64; int64 and uint64
// fields are JSON strings (numbers are accepted too); fields holding their
// default (0, false, "", PUT) are left out. A parser never throws: any text,
// however malformed, gives Corruption with what was wrong and where.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <keel/cluster/etcd_types.h>
#include <keel/io/status.h>

namespace keel::cluster {

// The smallest key greater than every key starting with `prefix`: the
// range_end that makes [prefix, range_end) a prefix range. For an empty prefix
// or one made only of 0xff bytes, "\0": etcd's spelling of "to the end".
std::string PrefixRangeEnd(std::string_view prefix);

// At most max_bytes of `bytes` as printable text (others as \xNN), for
// messages that name a key or quote a reply.
std::string PrintableExcerpt(std::string_view bytes, size_t max_bytes = 80);

// Requests. An empty range_end reads one key.
std::string EncodeRangeRequest(std::string_view key, std::string_view range_end);
std::string EncodePutRequest(std::string_view key, std::string_view value, int64_t lease_id);
std::string EncodeDeleteRequest(std::string_view key, std::string_view range_end);
std::string EncodeTxnRequest(const Txn& txn);
std::string EncodeLeaseGrantRequest(int64_t ttl_seconds);
std::string EncodeLeaseIdRequest(int64_t lease_id);  // keepalive and revoke
// POST /v3/auth/authenticate: {"name", "password"}.
std::string EncodeAuthenticateRequest(std::string_view name, std::string_view password);
std::string EncodeWatchCreateRequest(std::string_view key, std::string_view range_end, int64_t start_revision);

// Replies of a successful (HTTP 200) call.
Status ParseRangeReply(std::string_view json, RangeReply* reply);
Status ParsePutReply(std::string_view json, PutReply* reply);
Status ParseDeleteReply(std::string_view json, DeleteReply* reply);
Status ParseTxnReply(std::string_view json, TxnReply* reply);
Status ParseLeaseGrantReply(std::string_view json, LeaseGrantReply* reply);
// The keepalive endpoint streams: its one reply is wrapped as {"result": {...}}.
Status ParseLeaseKeepAliveReply(std::string_view json, LeaseKeepAliveReply* reply);
Status ParseLeaseRevokeReply(std::string_view json, ResponseHeader* header);

// One line of a watch stream: {"result": {...}} or {"error": {...}}. An error
// line gives a Status carrying etcd's message.
// The token of an authenticate reply; Corruption when it has none.
Status ParseAuthenticateReply(std::string_view json, std::string* token);
// Whether etcd refused a request for its token (expired, or from before a
// restart or an auth disable/enable): HTTP 401, or a body that says so.
bool IsAuthTokenRefusal(long status_code, std::string_view body);
Status ParseWatchLine(std::string_view json, WatchReply* reply);

// The body etcd sends with a non-200 status: {"error", "message", "code"}.
// grpc_code is the gRPC status code (5 not found, 14 unavailable, ...), or -1
// when the body is not such an object; message is etcd's text, or the start of
// the body.
struct ErrorReply {
  int grpc_code = -1;
  std::string message;
};
ErrorReply ParseErrorReply(std::string_view body);

}  // namespace keel::cluster
