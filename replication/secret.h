// The cluster secret: how it is read from a file, and when a node must have one.
//
// The secret is what makes a peer a member (docs/protocol.md): whoever knows
// it can join the cluster as a backup, read its log, and promote a node. So,
// as PostgreSQL refuses a server key file that group or others may read, keel
// refuses a secret file whose mode gives group or others any access; and a
// node that listens on an address other machines can reach refuses to start
// without a secret. Every node and tool gets the secret through these
// functions, so the rule is written once.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <keel/io/status.h>

namespace keel::replication {

// The longest secret file read; a longer one is refused, never cut short.
inline constexpr size_t kMaxSecretBytes = 4096;

// Reads a cluster secret from a file, trailing newlines dropped; an empty
// path is the empty secret. InvalidArgument for an empty or overlong file
// and for one that group or others may access (the message names the file,
// its mode and the fix, chmod 600); an I/O error when it cannot be read.
Status ReadSecretFile(const std::string& path, std::string* secret);

// Reads a file that must stay private to its owner (a secret, a password):
// InvalidArgument for one that group or others may access (the message
// names what, the file, its mode and the fix, chmod 600) or that is longer
// than kMaxSecretBytes; an I/O error when it cannot be read. what names the
// file in messages ("secret file", "password file").
Status ReadPrivateFile(const std::string& path, const std::string& what, std::string* contents);

// Reads a password: the first line of a private file (ReadPrivateFile), its
// line end dropped; an empty path is no password. InvalidArgument when the
// first line is empty.
Status ReadPasswordFile(const std::string& path, std::string* password);

// Whether host ("localhost" or an IPv4 address) is a loopback address, one
// that only this machine can reach (127.0.0.0/8).
bool IsLoopbackHost(std::string_view host);

// OK unless a node would listen on listen_host, which other machines can
// reach, without a secret: then InvalidArgument saying what to do.
Status CheckListenerSecret(std::string_view listen_host, std::string_view secret);

}  // namespace keel::replication
