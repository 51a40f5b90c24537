// Base64, as etcd's JSON gateway carries keys and values (RFC 4648, with
// padding). Not cryptography: a text form for arbitrary bytes.
#pragma once

#include <string>
#include <string_view>

#include <keel/io/status.h>

namespace keel::cluster {

std::string Base64Encode(std::string_view bytes);

// Decodes `text` into *bytes. Anything but whole four-character groups of the
// standard alphabet, with at most two '=' at the very end, is Corruption naming
// the offset of the first bad character; *bytes is then unchanged.
Status Base64Decode(std::string_view text, std::string* bytes);

}  // namespace keel::cluster
