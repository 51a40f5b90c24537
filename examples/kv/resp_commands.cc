#include "examples/kv/resp_commands.h"

#include <algorithm>
#include <cassert>
#include <cctype>
#include <charconv>
#include <string_view>

#include "examples/kv/resp_writer.h"
#include "testing/kv_state.h"

namespace keel::kv {
namespace {

using Args = std::vector<std::string>;
using Handler = Execution (*)(RespBackend*, const Args&, ClientContext*);

Execution Reply(std::string reply) {
  Execution execution;
  execution.reply = std::move(reply);
  return execution;
}

Execution Error(std::string_view text) {
  std::string reply;
  AppendError(&reply, text);
  return Reply(std::move(reply));
}

Execution Simple(std::string_view text) {
  std::string reply;
  AppendSimpleString(&reply, text);
  return Reply(std::move(reply));
}

Execution Integer(int64_t value) {
  std::string reply;
  AppendInteger(&reply, value);
  return Reply(std::move(reply));
}

std::string Upper(std::string_view text) {
  std::string upper(text);
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return upper;
}

bool ParseUnsigned(std::string_view text, uint64_t* value) {
  if (text.empty()) return false;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), *value);
  return error == std::errc() && end == text.data() + text.size();
}

Execution WrongArity(const Args& args) {
  return Error("ERR wrong number of arguments for '" + ErrorText(args[0]) + "' command");
}

// Appends each payload; the reply (the outcome codes summed, for DEL, or
// +OK) waits for the last one's commit.
Execution Write(RespBackend* backend, const std::vector<std::string>& payloads, bool reply_count,
                ClientContext* client) {
  int64_t count = 0;
  Lsn last = 0;
  for (const std::string& payload : payloads) {
    Outcome outcome;
    const Status status = backend->Append(AsBytes(payload), &last, &outcome);
    // Earlier payloads stay logged and are committed with later writes.
    if (!status.ok()) return Reply(WriteFailedReply(status));
    count += outcome.code;
  }
  Execution execution;
  execution.kind = Execution::Kind::kAfterCommit;
  execution.lsn = last;
  client->last_write_lsn = last;
  if (reply_count) {
    AppendInteger(&execution.reply, count);
  } else {
    AppendSimpleString(&execution.reply, "OK");
  }
  return execution;
}

Execution Set(RespBackend* backend, const Args& args, ClientContext* client) {
  if (args.size() != 3) {
    return args.size() < 3 ? WrongArity(args) : Error("ERR syntax error (SET takes no options here)");
  }
  return Write(backend, {EncodePut(args[1], args[2])}, /*reply_count=*/false, client);
}

Execution Del(RespBackend* backend, const Args& args, ClientContext* client) {
  if (args.size() < 2) return WrongArity(args);
  std::vector<std::string> payloads;
  for (size_t i = 1; i < args.size(); ++i) payloads.push_back(EncodeDelete(args[i]));
  return Write(backend, payloads, /*reply_count=*/true, client);
}

Execution Get(RespBackend* backend, const Args& args, ClientContext*) {
  if (args.size() != 2) return WrongArity(args);
  std::string value;
  bool found = false;
  const Status status = backend->Read([&](const KvStateMachine& state) { found = state.Get(args[1], &value); });
  if (!status.ok()) return Reply(WriteFailedReply(status));
  std::string reply;
  found ? AppendBulkString(&reply, value) : AppendNullBulkString(&reply);
  return Reply(std::move(reply));
}

Execution Exists(RespBackend* backend, const Args& args, ClientContext*) {
  if (args.size() < 2) return WrongArity(args);
  int64_t count = 0;
  const Status status = backend->Read([&](const KvStateMachine& state) {
    for (size_t i = 1; i < args.size(); ++i) count += state.map().contains(args[i]) ? 1 : 0;
  });
  if (!status.ok()) return Reply(WriteFailedReply(status));
  return Integer(count);
}

Execution DbSize(RespBackend* backend, const Args& args, ClientContext*) {
  if (args.size() != 1) return WrongArity(args);
  size_t keys = 0;
  const Status status = backend->Read([&](const KvStateMachine& state) { keys = state.size(); });
  if (!status.ok()) return Reply(WriteFailedReply(status));
  return Integer(static_cast<int64_t>(keys));
}

Execution Ping(RespBackend*, const Args& args, ClientContext*) {
  if (args.size() > 2) return WrongArity(args);
  if (args.size() == 1) return Simple("PONG");
  std::string reply;
  AppendBulkString(&reply, args[1]);
  return Reply(std::move(reply));
}

Execution Echo(RespBackend*, const Args& args, ClientContext*) {
  if (args.size() != 2) return WrongArity(args);
  std::string reply;
  AppendBulkString(&reply, args[1]);
  return Reply(std::move(reply));
}

Execution LastLsn(RespBackend*, const Args& args, ClientContext* client) {
  if (args.size() != 1) return WrongArity(args);
  return Integer(static_cast<int64_t>(client->last_write_lsn));
}

Execution WaitLsn(RespBackend*, const Args& args, ClientContext*) {
  if (args.size() != 3) return WrongArity(args);
  uint64_t lsn = 0;
  uint64_t timeout_ms = 0;
  if (!ParseUnsigned(args[1], &lsn) || !ParseUnsigned(args[2], &timeout_ms) || timeout_ms > (1ULL << 40)) {
    return Error("ERR WAITLSN lsn timeout_ms: both must be non-negative integers");
  }
  Execution execution;
  execution.kind = Execution::Kind::kAfterApplied;
  execution.lsn = lsn;
  execution.timeout = std::chrono::milliseconds(timeout_ms);
  return execution;
}

Execution Select(RespBackend*, const Args& args, ClientContext*) {
  if (args.size() != 2) return WrongArity(args);
  return args[1] == "0" ? Simple("OK") : Error("ERR DB index is out of range");
}

Execution Quit(RespBackend*, const Args&, ClientContext*) {
  Execution execution = Simple("OK");
  execution.kind = Execution::Kind::kReplyAndClose;
  return execution;
}

// COMMAND and its subcommands: an empty list (clients then use no hints).
Execution Command(RespBackend*, const Args&, ClientContext*) {
  std::string reply;
  AppendArrayHeader(&reply, 0);
  return Reply(std::move(reply));
}

// CONFIG GET: what redis-benchmark asks at start (save, appendonly); other
// parameters are an empty list, as Redis answers an unknown one.
Execution Config(RespBackend*, const Args& args, ClientContext*) {
  if (args.size() != 3 || Upper(args[1]) != "GET") return Error("ERR CONFIG: only CONFIG GET parameter is served");
  const std::string parameter = Upper(args[2]);
  std::string reply;
  if (parameter == "SAVE" || parameter == "APPENDONLY") {
    AppendArrayHeader(&reply, 2);
    AppendBulkString(&reply, parameter == "SAVE" ? "save" : "appendonly");
    AppendBulkString(&reply, parameter == "SAVE" ? "" : "no");
  } else {
    AppendArrayHeader(&reply, 0);
  }
  return Reply(std::move(reply));
}

// CLIENT SETNAME, SETINFO, ...: accepted and forgotten; GETNAME: none.
Execution Client(RespBackend*, const Args& args, ClientContext*) {
  if (args.size() >= 2 && Upper(args[1]) == "GETNAME") {
    std::string reply;
    AppendNullBulkString(&reply);
    return Reply(std::move(reply));
  }
  return Simple("OK");
}

}  // namespace

std::string WriteFailedReply(const Status& status) {
  std::string reply;
  if (status.IsNotPrimary()) {
    AppendError(&reply, "READONLY You can't write against a read only replica.");
  } else {
    AppendError(&reply, "ERR " + ErrorText(status.ToString(), 512));
  }
  return reply;
}

Execution ExecuteCommand(RespBackend* backend, const Args& args, ClientContext* client) {
  assert(!args.empty());
  static const std::map<std::string, Handler, std::less<>> kHandlers = {
      {"PING", Ping},         {"ECHO", Echo},       {"SET", Set},          {"GET", Get},
      {"DEL", Del},           {"EXISTS", Exists},   {"SCAN", ExecuteScan}, {"DBSIZE", DbSize},
      {"INFO", ExecuteInfo},  {"ROLE", ExecuteRole}, {"LASTLSN", LastLsn}, {"WAITLSN", WaitLsn},
      {"SELECT", Select},     {"QUIT", Quit},       {"COMMAND", Command},  {"CONFIG", Config},
      {"CLIENT", Client},
  };
  const auto handler = kHandlers.find(Upper(args[0]));
  if (handler == kHandlers.end()) {
    std::string text = "ERR unknown command '" + ErrorText(args[0]) + "', with args beginning with:";
    for (size_t i = 1; i < args.size() && i <= 4; ++i) text += " '" + ErrorText(args[i], 32) + "'";
    return Error(text);
  }
  return handler->second(backend, args, client);
}

}  // namespace keel::kv
