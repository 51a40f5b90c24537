// SCAN cursor [MATCH pattern] [COUNT n]: walks the keys in order, COUNT keys
// examined per call (10 by default). A cursor stands for the last key it
// returned, remembered by the connection (ClientContext), so a key present
// for the whole scan is returned, as Redis promises, whatever is written
// meanwhile. MATCH is a glob (fnmatch(3): * ? [...] and \ escapes), applied
// after COUNT keys were examined, as in Redis.
#include <fnmatch.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <string_view>

#include "examples/kv/resp_commands.h"
#include "examples/kv/resp_writer.h"
#include "testing/kv_state.h"

namespace keel::kv {
namespace {

constexpr uint64_t kDefaultScanCount = 10;

struct ScanRequest {
  uint64_t cursor = 0;
  std::string pattern;  // empty: every key
  uint64_t count = kDefaultScanCount;
};

bool ParseNumber(std::string_view text, uint64_t* value) {
  if (text.empty()) return false;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return error == std::errc() && end == text.data() + text.size();
}

bool EqualsIgnoringCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::toupper(static_cast<unsigned char>(a[i])) != std::toupper(static_cast<unsigned char>(b[i]))) return false;
  }
  return true;
}

// Empty on success, else the error text.
std::string ParseScan(const std::vector<std::string>& args, ScanRequest* request) {
  if (args.size() < 2) return "ERR wrong number of arguments for 'scan' command";
  if (!ParseNumber(args[1], &request->cursor)) return "ERR invalid cursor";
  for (size_t i = 2; i < args.size(); i += 2) {
    if (i + 1 >= args.size()) return "ERR syntax error";
    if (EqualsIgnoringCase(args[i], "MATCH")) {
      request->pattern = args[i + 1];
    } else if (EqualsIgnoringCase(args[i], "COUNT")) {
      if (!ParseNumber(args[i + 1], &request->count) || request->count == 0) {
        return "ERR value is not an integer or out of range";
      }
      request->count = std::min<uint64_t>(request->count, kMaxScanCount);
    } else {
      return "ERR syntax error";
    }
  }
  return {};
}

bool Matches(const std::string& pattern, const std::string& key) {
  return pattern.empty() || fnmatch(pattern.c_str(), key.c_str(), 0) == 0;
}

// A new cursor standing for after_key; the connection's oldest is forgotten
// beyond the bound.
uint64_t SaveCursor(ClientContext* client, const std::string& after_key) {
  if (client->scan_cursors.size() >= kMaxScanCursorsPerClient) client->scan_cursors.erase(client->scan_cursors.begin());
  const uint64_t cursor = client->next_cursor++;
  client->scan_cursors[cursor] = after_key;
  return cursor;
}

}  // namespace

Execution ExecuteScan(RespBackend* backend, const std::vector<std::string>& args, ClientContext* client) {
  Execution execution;
  ScanRequest request;
  const std::string error = ParseScan(args, &request);
  if (!error.empty()) {
    AppendError(&execution.reply, error);
    return execution;
  }
  // Cursor 0, or one this connection forgot, starts at the first key.
  std::string after;
  bool from_start = true;
  const auto saved = client->scan_cursors.find(request.cursor);
  if (request.cursor != 0 && saved != client->scan_cursors.end()) {
    after = saved->second;
    from_start = false;
    client->scan_cursors.erase(saved);
  }
  std::vector<std::string> keys;
  std::string last;
  bool done = false;
  const Status status = backend->Read([&](const KvStateMachine& state) {
    auto it = from_start ? state.map().begin() : state.map().upper_bound(after);
    for (uint64_t examined = 0; it != state.map().end() && examined < request.count; ++it, ++examined) {
      if (Matches(request.pattern, it->first)) keys.push_back(it->first);
      last = it->first;
    }
    done = it == state.map().end();
  });
  if (!status.ok()) {
    execution.reply = WriteFailedReply(status);
    return execution;
  }
  const uint64_t next = done ? 0 : SaveCursor(client, last);
  AppendArrayHeader(&execution.reply, 2);
  AppendBulkString(&execution.reply, std::to_string(next));
  AppendArrayHeader(&execution.reply, keys.size());
  for (const std::string& key : keys) AppendBulkString(&execution.reply, key);
  return execution;
}

}  // namespace keel::kv
