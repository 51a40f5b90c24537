// What this proves: the cluster secret is guarded as a key file is (P8, bad
// input refused with a clear message): a secret file that group or others may
// read or write is refused, and the message names the file, its mode and the
// fix (chmod 600), as PostgreSQL refuses such a server key file; a private
// file is read with its trailing newline dropped; empty and overlong files
// are refused. A node may listen without a secret only on loopback, where
// no other machine can reach it.
//
// How: real files in a scratch directory, their modes set with chmod.
#include <sys/stat.h>

#include <gtest/gtest.h>

#include <string>

#include <keel/replication/secret.h>
#include "tests/test_util.h"

namespace keel::replication {
namespace {

std::string WriteSecret(const testing::TempDir& tmp, const std::string& name, const std::string& bytes, mode_t mode) {
  const std::string path = tmp.Join(name);
  testing::WriteFileOrDie(path, bytes);
  EXPECT_EQ(::chmod(path.c_str(), mode), 0);
  return path;
}

TEST(SecretFileTest, P8AFileGroupOrOthersMayReadIsRefusedNamingFileModeAndFix) {
  testing::TempDir tmp;
  for (const mode_t mode : {0644, 0640, 0604, 0660, 0606, 0777}) {
    SCOPED_TRACE(mode);
    const std::string path = WriteSecret(tmp, "secret", "s3cret\n", mode);
    std::string secret = "left over";
    const Status status = ReadSecretFile(path, &secret);
    ASSERT_TRUE(status.IsInvalidArgument()) << status.ToString();
    char octal[8];
    std::snprintf(octal, sizeof(octal), "%04o", static_cast<unsigned>(mode));
    EXPECT_EQ(status.message(), "secret file " + path + " has mode " + octal +
                                    ", which lets group or others read it; make it private to its owner with: "
                                    "chmod 600 " + path);
    EXPECT_TRUE(secret.empty());  // nothing of a refused secret is used
  }
  // Write or execute access for others is refused too, worded for what it is.
  const std::string writable = WriteSecret(tmp, "writable", "s3cret\n", 0620);
  std::string secret;
  const Status status = ReadSecretFile(writable, &secret);
  ASSERT_TRUE(status.IsInvalidArgument());
  EXPECT_NE(status.message().find("has mode 0620, which lets group or others access it"), std::string::npos)
      << status.message();
}

TEST(SecretFileTest, APrivateFileIsReadWithoutItsTrailingNewline) {
  testing::TempDir tmp;
  for (const mode_t mode : {0600, 0400}) {
    const std::string path = WriteSecret(tmp, "secret" + std::to_string(mode), "correct horse\r\n\n", mode);
    std::string secret;
    const Status status = ReadSecretFile(path, &secret);
    ASSERT_TRUE(status.ok()) << status.ToString();
    EXPECT_EQ(secret, "correct horse");
  }
  std::string secret = "x";
  ASSERT_TRUE(ReadSecretFile("", &secret).ok());  // no file: no secret
  EXPECT_EQ(secret, "");
}

TEST(SecretFileTest, P8EmptyOverlongAndMissingFilesAreRefused) {
  testing::TempDir tmp;
  std::string secret;
  const Status empty = ReadSecretFile(WriteSecret(tmp, "empty", "\n", 0600), &secret);
  EXPECT_TRUE(empty.IsInvalidArgument());
  EXPECT_NE(empty.message().find("is empty"), std::string::npos) << empty.message();
  const Status longer =
      ReadSecretFile(WriteSecret(tmp, "long", std::string(kMaxSecretBytes + 1, 'x'), 0600), &secret);
  EXPECT_TRUE(longer.IsInvalidArgument());
  EXPECT_NE(longer.message().find("longer than 4096 bytes"), std::string::npos) << longer.message();
  EXPECT_TRUE(ReadSecretFile(WriteSecret(tmp, "full", std::string(kMaxSecretBytes, 'x'), 0600), &secret).ok());
  EXPECT_EQ(secret.size(), kMaxSecretBytes);
  const Status missing = ReadSecretFile(tmp.Join("missing"), &secret);
  EXPECT_FALSE(missing.ok());
  EXPECT_NE(missing.message().find(tmp.Join("missing")), std::string::npos) << missing.message();
}

TEST(SecretListenerTest, P8OnlyALoopbackListenerMayGoWithoutASecret) {
  for (const char* host : {"127.0.0.1", "127.1.2.3", "localhost"}) {
    EXPECT_TRUE(IsLoopbackHost(host)) << host;
    EXPECT_TRUE(CheckListenerSecret(host, "").ok()) << host;
  }
  for (const char* host : {"0.0.0.0", "10.0.0.1", "192.168.1.20", "128.0.0.1"}) {
    EXPECT_FALSE(IsLoopbackHost(host)) << host;
    const Status refused = CheckListenerSecret(host, "");
    ASSERT_TRUE(refused.IsInvalidArgument()) << host;
    EXPECT_NE(refused.message().find(std::string("refusing to listen on ") + host + " without a cluster secret"),
              std::string::npos)
        << refused.message();
    EXPECT_NE(refused.message().find("--secret-file"), std::string::npos) << refused.message();
    EXPECT_TRUE(CheckListenerSecret(host, "s3cret").ok()) << host;
  }
}

// A password (keel-kv --requirepass-file, --coordinator-password-file) is the
// first line of a file guarded as the secret is.
TEST(PasswordFileTest, TheFirstLineOfAPrivateFileIsThePassword) {
  testing::TempDir tmp;
  std::string password;
  ASSERT_TRUE(ReadPasswordFile(WriteSecret(tmp, "lines", "pass word\r\nsecond line\n", 0600), &password).ok());
  EXPECT_EQ(password, "pass word");
  ASSERT_TRUE(ReadPasswordFile(WriteSecret(tmp, "bare", "pw", 0400), &password).ok());
  EXPECT_EQ(password, "pw");
  ASSERT_TRUE(ReadPasswordFile("", &password).ok());
  EXPECT_EQ(password, "");
  const std::string shared = WriteSecret(tmp, "shared", "pw\n", 0640);
  const Status refused = ReadPasswordFile(shared, &password);
  ASSERT_TRUE(refused.IsInvalidArgument());
  EXPECT_EQ(refused.message(), "password file " + shared +
                                   " has mode 0640, which lets group or others read it; make it private to its "
                                   "owner with: chmod 600 " + shared);
  EXPECT_TRUE(password.empty());
  const std::string blank = WriteSecret(tmp, "blank", "\nsecond\n", 0600);
  EXPECT_EQ(ReadPasswordFile(blank, &password).message(), "password file " + blank + " has an empty first line");
}

}  // namespace
}  // namespace keel::replication
