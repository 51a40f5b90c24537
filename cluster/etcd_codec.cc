#include <keel/cluster/etcd_codec.h>

#include <charconv>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>

#include <keel/cluster/base64.h>

namespace keel::cluster {

std::string PrintableExcerpt(std::string_view text, size_t max_bytes) {
  std::string out;
  for (size_t i = 0; i < text.size() && i < max_bytes; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  if (text.size() > max_bytes) out += "...";
  return out;
}

namespace {

using nlohmann::json;

std::string Excerpt(std::string_view text) { return PrintableExcerpt(text); }

Status BadField(const char* field, const char* why) {
  return Status::Corruption(std::string("field '") + field + "' " + why);
}

// An integer field: a JSON string of decimal digits (the gateway's form for
// 64-bit fields) or a JSON integer. Absent means 0, the protobuf default.
template <typename Int>
Status GetInteger(const json& object, const char* field, Int* out) {
  const auto it = object.find(field);
  if (it == object.end() || it->is_null()) {
    *out = 0;
    return Status::Ok();
  }
  if (it->is_number_integer()) {
    if (it->is_number_unsigned()) {
      const uint64_t value = it->template get<uint64_t>();
      if (value > static_cast<uint64_t>(std::numeric_limits<Int>::max())) return BadField(field, "is out of range");
      *out = static_cast<Int>(value);
    } else {
      const int64_t value = it->template get<int64_t>();
      if (value < 0) {
        if (!std::numeric_limits<Int>::is_signed) return BadField(field, "is negative");
        if (value < static_cast<int64_t>(std::numeric_limits<Int>::min())) return BadField(field, "is out of range");
      } else if (static_cast<uint64_t>(value) > static_cast<uint64_t>(std::numeric_limits<Int>::max())) {
        return BadField(field, "is out of range");
      }
      *out = static_cast<Int>(value);
    }
    return Status::Ok();
  }
  if (!it->is_string()) return BadField(field, "is not an integer");
  const std::string& text = it->template get_ref<const std::string&>();
  Int value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size() || text.empty()) {
    return BadField(field, "is not a decimal integer");
  }
  *out = value;
  return Status::Ok();
}

Status GetBool(const json& object, const char* field, bool* out) {
  const auto it = object.find(field);
  *out = false;
  if (it == object.end() || it->is_null()) return Status::Ok();
  if (!it->is_boolean()) return BadField(field, "is not a boolean");
  *out = it->get<bool>();
  return Status::Ok();
}

Status GetString(const json& object, const char* field, std::string* out) {
  const auto it = object.find(field);
  out->clear();
  if (it == object.end() || it->is_null()) return Status::Ok();
  if (!it->is_string()) return BadField(field, "is not a string");
  *out = it->get<std::string>();
  return Status::Ok();
}

// A bytes field: base64 text in a JSON string.
Status GetBytes(const json& object, const char* field, std::string* out) {
  std::string text;
  KEEL_RETURN_IF_ERROR(GetString(object, field, &text));
  return Base64Decode(text, out).WithContext(std::string("field '") + field + "'");
}

// An object-valued field; absent gives an empty object.
Status GetObject(const json& object, const char* field, json* out) {
  const auto it = object.find(field);
  if (it == object.end() || it->is_null()) {
    *out = json::object();
    return Status::Ok();
  }
  if (!it->is_object()) return BadField(field, "is not an object");
  *out = *it;
  return Status::Ok();
}

// An array-valued field; absent gives an empty array.
Status GetArray(const json& object, const char* field, json* out) {
  const auto it = object.find(field);
  if (it == object.end() || it->is_null()) {
    *out = json::array();
    return Status::Ok();
  }
  if (!it->is_array()) return BadField(field, "is not an array");
  *out = *it;
  return Status::Ok();
}

Status ParseHeader(const json& reply, ResponseHeader* header) {
  json object;
  KEEL_RETURN_IF_ERROR(GetObject(reply, "header", &object));
  KEEL_RETURN_IF_ERROR(GetInteger(object, "cluster_id", &header->cluster_id));
  KEEL_RETURN_IF_ERROR(GetInteger(object, "member_id", &header->member_id));
  KEEL_RETURN_IF_ERROR(GetInteger(object, "revision", &header->revision));
  return GetInteger(object, "raft_term", &header->raft_term);
}

Status ParseKeyValue(const json& object, KeyValue* kv) {
  if (!object.is_object()) return Status::Corruption("a key-value is not an object");
  KEEL_RETURN_IF_ERROR(GetBytes(object, "key", &kv->key));
  KEEL_RETURN_IF_ERROR(GetBytes(object, "value", &kv->value));
  KEEL_RETURN_IF_ERROR(GetInteger(object, "create_revision", &kv->create_revision));
  KEEL_RETURN_IF_ERROR(GetInteger(object, "mod_revision", &kv->mod_revision));
  KEEL_RETURN_IF_ERROR(GetInteger(object, "version", &kv->version));
  return GetInteger(object, "lease", &kv->lease_id);
}

Status ParseRangeObject(const json& object, RangeReply* reply) {
  KEEL_RETURN_IF_ERROR(ParseHeader(object, &reply->header));
  json kvs;
  KEEL_RETURN_IF_ERROR(GetArray(object, "kvs", &kvs));
  reply->kvs.clear();
  for (const json& item : kvs) {
    KeyValue kv;
    KEEL_RETURN_IF_ERROR(ParseKeyValue(item, &kv));
    reply->kvs.push_back(std::move(kv));
  }
  KEEL_RETURN_IF_ERROR(GetInteger(object, "count", &reply->count));
  return GetBool(object, "more", &reply->more);
}

Status ParseWatchEvent(const json& object, WatchEvent* event) {
  if (!object.is_object()) return Status::Corruption("a watch event is not an object");
  std::string type;
  KEEL_RETURN_IF_ERROR(GetString(object, "type", &type));
  if (type.empty() || type == "PUT") {
    event->type = WatchEvent::Type::kPut;
  } else if (type == "DELETE") {
    event->type = WatchEvent::Type::kDelete;
  } else {
    return BadField("type", "is neither PUT nor DELETE");
  }
  json kv;
  KEEL_RETURN_IF_ERROR(GetObject(object, "kv", &kv));
  return ParseKeyValue(kv, &event->kv);
}

Status ParseWatchResult(const json& object, WatchReply* reply) {
  KEEL_RETURN_IF_ERROR(ParseHeader(object, &reply->header));
  KEEL_RETURN_IF_ERROR(GetInteger(object, "watch_id", &reply->watch_id));
  KEEL_RETURN_IF_ERROR(GetBool(object, "created", &reply->created));
  KEEL_RETURN_IF_ERROR(GetBool(object, "canceled", &reply->canceled));
  KEEL_RETURN_IF_ERROR(GetInteger(object, "compact_revision", &reply->compact_revision));
  KEEL_RETURN_IF_ERROR(GetString(object, "cancel_reason", &reply->cancel_reason));
  json events;
  KEEL_RETURN_IF_ERROR(GetArray(object, "events", &events));
  reply->events.clear();
  for (const json& item : events) {
    WatchEvent event;
    KEEL_RETURN_IF_ERROR(ParseWatchEvent(item, &event));
    reply->events.push_back(std::move(event));
  }
  return Status::Ok();
}

// Parses `text` as a JSON object and hands it to `parse`. nlohmann's
// exceptions stop here: none crosses the API.
template <typename Parse>
Status ParseReply(const char* what, std::string_view text, Parse parse) {
  try {
    const json object = json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (object.is_discarded()) {
      return Status::Corruption(std::string(what) + " reply is not JSON: '" + Excerpt(text) + "'");
    }
    if (!object.is_object()) {
      return Status::Corruption(std::string(what) + " reply is not a JSON object: '" + Excerpt(text) + "'");
    }
    return parse(object).WithContext(std::string(what) + " reply");
  } catch (const std::exception& error) {
    return Status::Corruption(std::string(what) + " reply: " + error.what());
  }
}

json EncodeOp(const TxnOp& op) {
  json request = {{"key", Base64Encode(op.key)}};
  switch (op.kind) {
    case TxnOp::Kind::kPut:
      request["value"] = Base64Encode(op.value);
      if (op.lease_id != 0) request["lease"] = std::to_string(op.lease_id);
      return {{"request_put", request}};
    case TxnOp::Kind::kDelete:
      if (!op.range_end.empty()) request["range_end"] = Base64Encode(op.range_end);
      return {{"request_delete_range", request}};
    case TxnOp::Kind::kGet:
      if (!op.range_end.empty()) request["range_end"] = Base64Encode(op.range_end);
      return {{"request_range", request}};
  }
  return json::object();
}

json EncodeCompare(const Compare& compare) {
  static constexpr const char* kTargets[] = {"VERSION", "CREATE", "MOD", "VALUE"};
  static constexpr const char* kResults[] = {"EQUAL", "GREATER", "LESS", "NOT_EQUAL"};
  json request = {{"key", Base64Encode(compare.key)},
                  {"target", kTargets[static_cast<int>(compare.target)]},
                  {"result", kResults[static_cast<int>(compare.result)]}};
  switch (compare.target) {
    case Compare::Target::kVersion:
      request["version"] = std::to_string(compare.number);
      break;
    case Compare::Target::kCreateRevision:
      request["create_revision"] = std::to_string(compare.number);
      break;
    case Compare::Target::kModRevision:
      request["mod_revision"] = std::to_string(compare.number);
      break;
    case Compare::Target::kValue:
      request["value"] = Base64Encode(compare.value);
      break;
  }
  return request;
}

}  // namespace

std::string PrefixRangeEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    unsigned char& last = reinterpret_cast<unsigned char&>(end.back());
    if (last != 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  // No key bounds such a prefix from above: read to the end of the key space,
  // which etcd spells as the single byte 0.
  return std::string(1, '\0');
}

std::string EncodeRangeRequest(std::string_view key, std::string_view range_end) {
  json request = {{"key", Base64Encode(key)}};
  if (!range_end.empty()) request["range_end"] = Base64Encode(range_end);
  return request.dump();
}

std::string EncodePutRequest(std::string_view key, std::string_view value, int64_t lease_id) {
  json request = {{"key", Base64Encode(key)}, {"value", Base64Encode(value)}};
  if (lease_id != 0) request["lease"] = std::to_string(lease_id);
  return request.dump();
}

std::string EncodeDeleteRequest(std::string_view key, std::string_view range_end) {
  return EncodeRangeRequest(key, range_end);
}

std::string EncodeTxnRequest(const Txn& txn) {
  json request = {{"compare", json::array()}, {"success", json::array()}, {"failure", json::array()}};
  for (const Compare& compare : txn.compares) request["compare"].push_back(EncodeCompare(compare));
  for (const TxnOp& op : txn.success) request["success"].push_back(EncodeOp(op));
  for (const TxnOp& op : txn.failure) request["failure"].push_back(EncodeOp(op));
  return request.dump();
}

std::string EncodeLeaseGrantRequest(int64_t ttl_seconds) { return json{{"TTL", std::to_string(ttl_seconds)}}.dump(); }

std::string EncodeLeaseIdRequest(int64_t lease_id) { return json{{"ID", std::to_string(lease_id)}}.dump(); }

std::string EncodeAuthenticateRequest(std::string_view name, std::string_view password) {
  // Bytes that are not UTF-8 cannot be a JSON string: replaced, so that etcd refuses them.
  return json{{"name", std::string(name)}, {"password", std::string(password)}}.dump(
      -1, ' ', false, json::error_handler_t::replace);
}

std::string EncodeWatchCreateRequest(std::string_view key, std::string_view range_end, int64_t start_revision) {
  json create = {{"key", Base64Encode(key)}};
  if (!range_end.empty()) create["range_end"] = Base64Encode(range_end);
  if (start_revision > 0) create["start_revision"] = std::to_string(start_revision);
  return json{{"create_request", create}}.dump();
}

Status ParseRangeReply(std::string_view text, RangeReply* reply) {
  return ParseReply("range", text, [&](const json& object) { return ParseRangeObject(object, reply); });
}

Status ParsePutReply(std::string_view text, PutReply* reply) {
  return ParseReply("put", text, [&](const json& object) { return ParseHeader(object, &reply->header); });
}

Status ParseDeleteReply(std::string_view text, DeleteReply* reply) {
  return ParseReply("delete", text, [&](const json& object) {
    KEEL_RETURN_IF_ERROR(ParseHeader(object, &reply->header));
    return GetInteger(object, "deleted", &reply->deleted_count);
  });
}

Status ParseTxnReply(std::string_view text, TxnReply* reply) {
  return ParseReply("txn", text, [&](const json& object) {
    KEEL_RETURN_IF_ERROR(ParseHeader(object, &reply->header));
    KEEL_RETURN_IF_ERROR(GetBool(object, "succeeded", &reply->succeeded));
    json responses;
    KEEL_RETURN_IF_ERROR(GetArray(object, "responses", &responses));
    reply->ranges.clear();
    for (const json& response : responses) {
      if (!response.is_object()) return Status::Corruption("a txn response is not an object");
      if (!response.contains("response_range")) continue;
      json range;
      KEEL_RETURN_IF_ERROR(GetObject(response, "response_range", &range));
      RangeReply parsed;
      KEEL_RETURN_IF_ERROR(ParseRangeObject(range, &parsed));
      reply->ranges.push_back(std::move(parsed));
    }
    return Status::Ok();
  });
}

Status ParseLeaseGrantReply(std::string_view text, LeaseGrantReply* reply) {
  return ParseReply("lease grant", text, [&](const json& object) {
    KEEL_RETURN_IF_ERROR(ParseHeader(object, &reply->header));
    KEEL_RETURN_IF_ERROR(GetInteger(object, "ID", &reply->lease_id));
    KEEL_RETURN_IF_ERROR(GetInteger(object, "TTL", &reply->ttl_seconds));
    std::string error;
    KEEL_RETURN_IF_ERROR(GetString(object, "error", &error));
    if (!error.empty()) return Status::IoError("etcd refused the lease: " + error);
    return Status::Ok();
  });
}

Status ParseLeaseKeepAliveReply(std::string_view text, LeaseKeepAliveReply* reply) {
  return ParseReply("lease keepalive", text, [&](const json& object) {
    json result;
    KEEL_RETURN_IF_ERROR(GetObject(object, "result", &result));
    KEEL_RETURN_IF_ERROR(ParseHeader(result, &reply->header));
    KEEL_RETURN_IF_ERROR(GetInteger(result, "ID", &reply->lease_id));
    return GetInteger(result, "TTL", &reply->ttl_seconds);
  });
}

Status ParseLeaseRevokeReply(std::string_view text, ResponseHeader* header) {
  return ParseReply("lease revoke", text, [&](const json& object) { return ParseHeader(object, header); });
}

Status ParseWatchLine(std::string_view text, WatchReply* reply) {
  return ParseReply("watch", text, [&](const json& object) {
    if (object.contains("error")) {
      json error;
      KEEL_RETURN_IF_ERROR(GetObject(object, "error", &error));
      std::string message;
      KEEL_RETURN_IF_ERROR(GetString(error, "message", &message));
      return Status::IoError("etcd ended the watch: " + message);
    }
    json result;
    KEEL_RETURN_IF_ERROR(GetObject(object, "result", &result));
    return ParseWatchResult(result, reply);
  });
}

Status ParseAuthenticateReply(std::string_view text, std::string* token) {
  return ParseReply("authenticate", text, [&](const json& object) {
    ResponseHeader header;
    KEEL_RETURN_IF_ERROR(ParseHeader(object, &header));
    KEEL_RETURN_IF_ERROR(GetString(object, "token", token));
    if (token->empty()) return BadField("token", "is missing");
    return Status::Ok();
  });
}

bool IsAuthTokenRefusal(long status_code, std::string_view body) {
  if (status_code == 401) return true;
  // The gateway says it in "error" and "message"; the raw body holds both.
  return body.find("invalid auth token") != std::string_view::npos ||
         body.find("auth token is expired") != std::string_view::npos;
}

ErrorReply ParseErrorReply(std::string_view body) {
  ErrorReply reply;
  reply.message = Excerpt(body);
  try {
    const json object = json::parse(body, nullptr, /*allow_exceptions=*/false);
    if (!object.is_object()) return reply;
    std::string message;
    int code = 0;
    if (!GetString(object, "message", &message).ok() || !GetInteger(object, "code", &code).ok()) return reply;
    if (!object.contains("code")) return reply;
    reply.grpc_code = code;
    reply.message = Excerpt(message);
  } catch (const std::exception&) {
    // The excerpt of the body stands.
  }
  return reply;
}

}  // namespace keel::cluster
