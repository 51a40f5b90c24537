#include <keel/cluster/base64.h>

#include <openssl/evp.h>

#include <cassert>
#include <string>

namespace keel::cluster {
namespace {

bool IsAlphabet(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

// OpenSSL's decoder skips surrounding whitespace and counts '=' as zero bytes,
// so the text is checked here first: only then does its answer mean exactly
// the bytes that were encoded.
Status Validate(std::string_view text, size_t* padding_chars) {
  if (text.size() % 4 != 0) {
    return Status::Corruption("base64 text of " + std::to_string(text.size()) +
                              " characters is not whole groups of four");
  }
  size_t padding = 0;
  while (padding < 2 && padding < text.size() && text[text.size() - 1 - padding] == '=') ++padding;
  for (size_t i = 0; i + padding < text.size(); ++i) {
    if (!IsAlphabet(text[i])) {
      return Status::Corruption("base64 text has a bad character at offset " + std::to_string(i));
    }
  }
  *padding_chars = padding;
  return Status::Ok();
}

}  // namespace

std::string Base64Encode(std::string_view bytes) {
  std::string text(4 * ((bytes.size() + 2) / 3), '\0');
  if (bytes.empty()) return text;
  const int written =
      EVP_EncodeBlock(reinterpret_cast<unsigned char*>(text.data()),
                      reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  assert(written == static_cast<int>(text.size()));
  (void)written;
  return text;
}

Status Base64Decode(std::string_view text, std::string* bytes) {
  size_t padding = 0;
  KEEL_RETURN_IF_ERROR(Validate(text, &padding));
  std::string decoded(text.size() / 4 * 3, '\0');
  if (!text.empty()) {
    const int written =
        EVP_DecodeBlock(reinterpret_cast<unsigned char*>(decoded.data()),
                        reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
    if (written != static_cast<int>(decoded.size())) {
      return Status::Corruption("base64 text of " + std::to_string(text.size()) + " characters did not decode");
    }
  }
  decoded.resize(decoded.size() - padding);
  *bytes = std::move(decoded);
  return Status::Ok();
}

}  // namespace keel::cluster
