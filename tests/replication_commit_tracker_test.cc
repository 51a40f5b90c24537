// What this proves: the primary's commit tracker (replication/commit_tracker.h)
// acknowledges an LSN under a mode only once k distinct backups acknowledged
// it under that mode, and answers Commit and committed_lsn from the same
// table (P7: an acknowledged record is held by the configured number of
// backups).
//
//   - Fewer than k backups known: nothing is acknowledged, whatever they said.
//   - The k-th highest LSN of a mode's column is what k backups hold; a
//     received acknowledgement never counts as durable.
//   - A backup's row outlives its connection: its acknowledgements still
//     count, and it holds the log back (the lowest LSN still needed).
//   - A waiter returns once the acknowledgement it needs arrives, with the
//     error give_up() returns, or with an error at its timeout when none came.
//
// How: the tracker alone, driven by hand; the one waiting test acknowledges
// from another thread, and the waiter has no timeout, so nothing depends on timing.
#include <gtest/gtest.h>

#include <thread>

#include <keel/replication/commit_tracker.h>

namespace keel::replication {
namespace {

using std::chrono::milliseconds;

Status NeverGiveUp() { return Status::Ok(); }

TEST(ReplicationCommitTracker, P7FewerBackupsThanKAcknowledgeNothing) {
  CommitTracker tracker;
  EXPECT_FALSE(tracker.AcknowledgedByK(AckMode::kDurable, 1).has_value());
  tracker.Connected(1, "a", 10, 10);
  EXPECT_EQ(tracker.AcknowledgedByK(AckMode::kDurable, 1), std::optional<Lsn>(10));
  EXPECT_FALSE(tracker.AcknowledgedByK(AckMode::kDurable, 2).has_value());
  EXPECT_FALSE(tracker.AcknowledgedByK(AckMode::kReceived, 2).has_value());
}

TEST(ReplicationCommitTracker, P7TheKthHighestOfTheModesColumnIsWhatKBackupsHold) {
  CommitTracker tracker;
  tracker.Connected(1, "a", 0, 0);
  tracker.Connected(2, "b", 0, 0);
  tracker.Connected(3, "c", 0, 0);
  tracker.Acknowledged(1, 30, 5);
  tracker.Acknowledged(2, 20, 15);
  tracker.Acknowledged(3, 10, 10);
  EXPECT_EQ(tracker.AcknowledgedByK(AckMode::kReceived, 1), std::optional<Lsn>(30));
  EXPECT_EQ(tracker.AcknowledgedByK(AckMode::kReceived, 2), std::optional<Lsn>(20));
  EXPECT_EQ(tracker.AcknowledgedByK(AckMode::kReceived, 3), std::optional<Lsn>(10));
  // Received is not durable: the durable column answers on its own.
  EXPECT_EQ(tracker.AcknowledgedByK(AckMode::kDurable, 1), std::optional<Lsn>(15));
  EXPECT_EQ(tracker.AcknowledgedByK(AckMode::kDurable, 2), std::optional<Lsn>(10));
  EXPECT_EQ(tracker.AcknowledgedByK(AckMode::kDurable, 3), std::optional<Lsn>(5));
}

TEST(ReplicationCommitTracker, P7ARowOutlivesItsConnection) {
  CommitTracker tracker;
  EXPECT_EQ(tracker.LowestNeededLsn(), UINT64_MAX);
  tracker.Connected(1, "a", 0, 0);
  tracker.Acknowledged(1, 9, 7);
  tracker.Disconnected(1);
  EXPECT_EQ(tracker.AcknowledgedByK(AckMode::kDurable, 1), std::optional<Lsn>(7));
  EXPECT_EQ(tracker.LowestNeededLsn(), 8u);
  const auto rows = tracker.Rows();
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_FALSE(rows.at(1).connected);
  EXPECT_EQ(rows.at(1).received_lsn(), 9u);
  EXPECT_EQ(rows.at(1).durable_lsn(), 7u);
}

TEST(ReplicationCommitTracker, P7AWaiterReturnsOnceKBackupsAcknowledged) {
  CommitTracker tracker;
  tracker.Connected(1, "a", 0, 0);
  tracker.Connected(2, "b", 0, 0);
  std::thread acks([&] {
    tracker.Acknowledged(1, 5, 5);
    tracker.Acknowledged(2, 5, 4);  // not yet durable on the second
    tracker.Acknowledged(2, 5, 5);
  });
  EXPECT_TRUE(tracker.WaitFor(5, AckMode::kDurable, 2, milliseconds(0), NeverGiveUp).ok());
  acks.join();
  EXPECT_EQ(tracker.AcknowledgedByK(AckMode::kDurable, 2), std::optional<Lsn>(5));
}

TEST(ReplicationCommitTracker, P7AWaiterGivesUpWhenAskedAndAtItsTimeout) {
  CommitTracker tracker;
  tracker.Connected(1, "a", 3, 3);
  const Status refused = tracker.WaitFor(4, AckMode::kReceived, 1, milliseconds(0),
                                         [] { return Status::Failed("fenced while waiting"); });
  EXPECT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("fenced while waiting"), std::string::npos);
  const Status late = tracker.WaitFor(4, AckMode::kDurable, 1, milliseconds(1), NeverGiveUp);
  EXPECT_FALSE(late.ok());
  EXPECT_NE(late.message().find("not acknowledged by 1 backups (durable)"), std::string::npos) << late.message();
  // What is already acknowledged needs no wait at all.
  EXPECT_TRUE(tracker.WaitFor(3, AckMode::kDurable, 1, milliseconds(1), NeverGiveUp).ok());
}

}  // namespace
}  // namespace keel::replication
