// failover_keys_fuzz: the parsers of the values agents keep in etcd
// (failover/keys.h) on arbitrary bytes.
//
// What it proves: whatever a key holds (written by another version, by hand,
// or damaged), no decoder crashes, throws, reads out of bounds or leaks; each
// either fills its struct or returns Corruption naming the key; and a value
// it accepts, encoded again and decoded, gives the same struct.
//
// How: the input goes, whole, to the leader, member and sync decoders. Seeds in
// tests/fuzz/corpus/failover_keys/ are values agents wrote.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <keel/failover/keys.h>

namespace {

using namespace keel::failover;

void Check(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "failover_keys_fuzz: broken invariant: %s\n", what);
    std::abort();
  }
}

void CheckFailure(const keel::Status& status) {
  Check(status.IsCorruption(), "a bad value is Corruption");
  Check(status.message().find("/keel/f/") != std::string::npos, "a bad value names its key");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  LeaderValue leader;
  keel::Status status = DecodeLeader("/keel/f/leader", text, &leader);
  if (status.ok()) {
    LeaderValue again;
    Check(DecodeLeader("/keel/f/leader", EncodeLeader(leader), &again).ok(), "a leader re-encodes");
    Check(again.node_id == leader.node_id && again.epoch == leader.epoch && again.listen == leader.listen &&
              again.serve == leader.serve,
          "a leader round-trips");
  } else {
    CheckFailure(status);
  }
  MemberValue member;
  status = DecodeMember("/keel/f/members/1", text, &member);
  if (status.ok()) {
    MemberValue again;
    Check(DecodeMember("/keel/f/members/1", EncodeMember(member), &again).ok(), "a member re-encodes");
    Check(again.position == member.position && again.role == member.role && again.healthy == member.healthy,
          "a member round-trips");
  } else {
    CheckFailure(status);
  }
  SyncValue sync;
  status = DecodeSync("/keel/f/sync", text, &sync);
  if (status.ok()) {
    SyncValue again;
    Check(DecodeSync("/keel/f/sync", EncodeSync(sync), &again).ok(), "a sync value re-encodes");
    Check(again.members == sync.members && again.k == sync.k && again.epoch == sync.epoch, "a sync value round-trips");
  } else {
    CheckFailure(status);
  }
  return 0;
}
