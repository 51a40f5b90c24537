// Shared by the TLS files of replication/ (tls.h); not installed.
#pragma once

#include <string>

namespace keel::replication {

// Drains this thread's OpenSSL error queue into one line of reasons
// ("certificate verify failed; ..."), or says there was no detail.
std::string OpenSslErrors();

}  // namespace keel::replication
