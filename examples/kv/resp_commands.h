// The commands keel-kv answers over RESP2 (docs/operations.md, "Serving Redis
// clients"), each turned into a reply or into something the server waits for.
//
//   PING [msg]  ECHO msg  SET key value  GET key  DEL key...  EXISTS key...
//   SCAN cursor [MATCH pattern] [COUNT n]  DBSIZE  INFO [section]  ROLE
//   LASTLSN  WAITLSN lsn timeout_ms  SELECT 0  QUIT
//   COMMAND ..., CONFIG GET ..., CLIENT ..., minimal: what redis-cli and
//   redis-benchmark send as they start.
//
// Writes (SET, DEL) are appended here and answered by the server once their
// LSN is committed (Execution::kAfterCommit): the reply is decided now, sent
// then. Reads run at once on the applied state (a read pipelined after a
// write sees it, as every reader does once it is applied) and their replies
// wait in the connection's queue behind the write's.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "examples/kv/resp_backend.h"

namespace keel::kv {

// What a connection remembers between its commands.
struct ClientContext {
  Lsn last_write_lsn = 0;                       // LASTLSN
  bool authenticated = false;                   // AUTH succeeded (resp_auth.h)
  // SCAN cursors handed out on this connection: cursor -> the last key it
  // returned. Bounded (the oldest is forgotten; a forgotten cursor restarts
  // at the first key, so a scan never skips a key, it may repeat some).
  std::map<uint64_t, std::string> scan_cursors;
  uint64_t next_cursor = 1;
};
inline constexpr size_t kMaxScanCursorsPerClient = 64;
inline constexpr size_t kMaxScanCount = 10000;

struct Execution {
  enum class Kind {
    kReply,          // send reply now (in order)
    kAfterCommit,    // send reply once lsn is committed; an error reply if the commit fails
    kAfterApplied,   // WAITLSN: ":1" once this member applied lsn, ":0" at the deadline
    kReplyAndClose,  // send reply, then close the connection
  };
  Kind kind = Kind::kReply;
  std::string reply;
  Lsn lsn = 0;
  std::chrono::milliseconds timeout{0};         // kAfterApplied; 0: no deadline
};

// Runs one command (args non-empty) against backend.
Execution ExecuteCommand(RespBackend* backend, const std::vector<std::string>& args, ClientContext* client);

// The reply to a failed write or commit: -READONLY for NotPrimary, else -ERR.
std::string WriteFailedReply(const Status& status);

// The longer commands, each in its own file: SCAN (resp_scan.cc), INFO and
// ROLE (resp_role.cc). args[0] names the command.
Execution ExecuteScan(RespBackend* backend, const std::vector<std::string>& args, ClientContext* client);
Execution ExecuteInfo(RespBackend* backend, const std::vector<std::string>& args, ClientContext* client);
Execution ExecuteRole(RespBackend* backend, const std::vector<std::string>& args, ClientContext* client);

}  // namespace keel::kv
