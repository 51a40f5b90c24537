// etcd_codec_fuzz: the parsers of etcd's v3 JSON gateway replies
// (cluster/etcd_codec.h) and the base64 decoder on arbitrary bytes.
//
// What it proves: whatever an endpoint answers (it may not be etcd at all, or
// be cut off mid-reply), no parser crashes, throws, reads out of bounds, leaks
// or loops; each either fills its struct or returns Corruption (or, for an
// error line in a watch stream, IoError); and every text the base64 decoder
// accepts re-encodes to the same bytes it decoded.
//
// How: the input goes, whole, to every reply parser, to the error-body parser
// and to the base64 decoder. Seeds in tests/fuzz/corpus/etcd_codec/ are replies
// etcd 3.4 gave.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include <keel/cluster/base64.h>
#include <keel/cluster/etcd_codec.h>

namespace {

using namespace keel::cluster;

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "etcd_codec_fuzz: broken invariant: %s\n", what);
    std::abort();
  }
}

// A parser's failure is Corruption, except a watch stream's own error line.
void CheckFailure(const keel::Status& status, bool io_error_allowed) {
  if (status.ok()) return;
  Check(status.IsCorruption() || (io_error_allowed && status.IsIoError()), "a parse failure is Corruption");
  Check(!status.message().empty(), "a parse failure says why");
}

void CheckBase64(std::string_view text) {
  std::string bytes;
  if (!Base64Decode(text, &bytes).ok()) return;
  Check(bytes.size() <= text.size() / 4 * 3, "decoded size");
  std::string again;
  Check(Base64Decode(Base64Encode(bytes), &again).ok(), "re-encoded base64 decodes");
  Check(again == bytes, "base64 round trip");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  RangeReply range;
  CheckFailure(ParseRangeReply(text, &range), false);
  if (ParseRangeReply(text, &range).ok()) {
    for (const KeyValue& kv : range.kvs) Check(kv.key.size() <= size && kv.value.size() <= size, "kv sizes");
  }
  PutReply put;
  CheckFailure(ParsePutReply(text, &put), false);
  DeleteReply deleted;
  CheckFailure(ParseDeleteReply(text, &deleted), false);
  TxnReply txn;
  CheckFailure(ParseTxnReply(text, &txn), false);
  LeaseGrantReply grant;
  CheckFailure(ParseLeaseGrantReply(text, &grant), true);
  LeaseKeepAliveReply keepalive;
  CheckFailure(ParseLeaseKeepAliveReply(text, &keepalive), false);
  ResponseHeader header;
  CheckFailure(ParseLeaseRevokeReply(text, &header), false);
  WatchReply watch;
  CheckFailure(ParseWatchLine(text, &watch), true);
  std::string token;
  const keel::Status authenticated = ParseAuthenticateReply(text, &token);
  CheckFailure(authenticated, false);
  Check(!authenticated.ok() || !token.empty(), "an accepted authenticate reply has a token");
  (void)IsAuthTokenRefusal(200, text);
  const ErrorReply error = ParseErrorReply(text);
  Check(error.message.size() <= 4 * 80 + 3, "an error message is an excerpt");
  CheckBase64(text);
  return 0;
}
