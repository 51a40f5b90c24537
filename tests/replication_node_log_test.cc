// What this proves: a replication node's log lines (replication/node_log.h)
// say when and who, in words, and a burst of the same complaint costs a
// couple of lines, not one per event (P8: garbage from the network is
// reported clearly and cannot flood the log).
//
//   - Each line starts with the UTC time to the millisecond and the node id.
//   - A line with a rate-limit key is printed the first time in its window;
//     the rest of the window is counted and summed up in one line when the
//     window ends (at the next line, or at Flush), quoting the last one; the
//     key is then free again. Keys are independent; a flood of distinct keys
//     beyond the bound is printed as is, never lost; Flush(true) ends every
//     window (a node that stops).
//   - Status messages lose their category ("corruption: ", "not found: ")
//     and the peer's address, which the line names once.
//   - Lines from many threads come out whole.
//
// How: an injected clock moved by hand, so no test sleeps or depends on timing.
#include <gtest/gtest.h>

#include <mutex>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <keel/replication/node_log.h>

namespace keel::replication {
namespace {

using namespace std::chrono_literals;
using TimePoint = NodeLog::TimePoint;

// 2026-12-02T08:40:24.123Z
const TimePoint kStart = TimePoint(std::chrono::milliseconds(1796200824123LL));

class NodeLogTest : public ::testing::Test {
 protected:
  NodeLog log_{7, [this](const std::string& line) { lines_.push_back(line); }, [this] { return now_; }};
  TimePoint now_ = kStart;
  std::vector<std::string> lines_;
};

TEST_F(NodeLogTest, ALineStartsWithTheUtcTimeInMillisecondsAndTheNodeId) {
  log_.Line("started as primary on 127.0.0.1:7001");
  ASSERT_EQ(lines_.size(), 1u);
  EXPECT_EQ(lines_[0], "2026-12-02T08:40:24.123Z keel node 7: started as primary on 127.0.0.1:7001");
  EXPECT_EQ(FormatUtcMillis(TimePoint(0ms)), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatUtcMillis(TimePoint(-1ms)), "1969-12-31T23:59:59.999Z");
}

TEST_F(NodeLogTest, P8ABurstOfOneKeyIsOneLineThenACountWhenTheWindowEnds) {
  for (int i = 0; i < 50; ++i) {
    log_.Limited("garbage 127.0.0.1", "garbage from 127.0.0.1:" + std::to_string(40000 + i) + ": bad magic");
    now_ += 100ms;  // 50 in 5 s: one window
  }
  ASSERT_EQ(lines_.size(), 1u);
  EXPECT_NE(lines_[0].find("keel node 7: garbage from 127.0.0.1:40000: bad magic"), std::string::npos) << lines_[0];
  log_.Flush();  // the window is still open: nothing to say yet
  ASSERT_EQ(lines_.size(), 1u);

  now_ = kStart + 10s;
  log_.Flush();
  ASSERT_EQ(lines_.size(), 2u);
  EXPECT_EQ(lines_[1], "2026-12-02T08:40:34.123Z keel node 7: and 49 more like this in 10 s "
                       "(the last: garbage from 127.0.0.1:40049: bad magic)");
  log_.Flush();  // said once
  EXPECT_EQ(lines_.size(), 2u);

  // The key is free again: the next one is printed at once.
  log_.Limited("garbage 127.0.0.1", "garbage from 127.0.0.1:41000: bad magic");
  ASSERT_EQ(lines_.size(), 3u);
  EXPECT_NE(lines_[2].find("41000"), std::string::npos);
}

TEST_F(NodeLogTest, P8AnEndedWindowIsSummedUpAtTheNextLineOfAnyKey) {
  log_.Limited("a", "first a");
  log_.Limited("a", "second a");
  log_.Limited("b", "first b");  // another key: printed, its own window
  ASSERT_EQ(lines_.size(), 2u);
  now_ += 11s;
  log_.Line("something else");
  // "b" had nothing suppressed: no summary for it; the summary comes before the new line.
  ASSERT_EQ(lines_.size(), 4u) << lines_.back();
  EXPECT_NE(lines_[1].find("first b"), std::string::npos);
  EXPECT_NE(lines_[2].find("and 1 more like this in 10 s (the last: second a)"), std::string::npos) << lines_[2];
  EXPECT_NE(lines_[3].find("something else"), std::string::npos);
}

TEST_F(NodeLogTest, FlushAllEndsOpenWindowsAndAClockThatGoesBackEndsThemToo) {
  log_.Limited("k", "one");
  log_.Limited("k", "two");
  log_.Flush(/*all_windows=*/true);
  ASSERT_EQ(lines_.size(), 2u);
  EXPECT_NE(lines_[1].find("and 1 more like this"), std::string::npos);

  log_.Limited("k", "three");
  log_.Limited("k", "four");
  now_ -= 1h;  // the wall clock was set back
  log_.Flush();
  ASSERT_EQ(lines_.size(), 4u);
  EXPECT_NE(lines_[3].find("(the last: four)"), std::string::npos);
}

TEST_F(NodeLogTest, P8MoreKeysThanTheBoundArePrintedNotLost) {
  const size_t keys = NodeLog::kMaxKeys + 10;
  for (size_t i = 0; i < keys; ++i) log_.Limited("peer " + std::to_string(i), "refused peer " + std::to_string(i));
  EXPECT_EQ(lines_.size(), keys);
}

TEST(NodeLogWordsTest, P8StatusMessagesLoseTheirCategoryAndTheRepeatedAddress) {
  const std::string peer = "127.0.0.1:5555";
  const Status silent = Status::NotFound("receive from " + peer + ": no frame within 1000 ms");
  EXPECT_EQ(DescribeRefusedConnection(peer, silent), "refused a connection from 127.0.0.1:5555: no frame within 1000 ms");
  const Status garbage =
      Status::Corruption("peer " + peer + ": frame 1: bad magic 0x20544547 (not a keel replication stream)");
  EXPECT_EQ(DescribeRefusedConnection(peer, garbage),
            "garbage from 127.0.0.1:5555: frame 1: bad magic 0x20544547 (not a keel replication stream)");
  EXPECT_EQ(DescribeForPeer(Status::IoError("peer " + peer + " closed the connection"), peer),
            "the peer closed the connection");
  EXPECT_EQ(DescribeForPeer(Status::IoError("connect to " + peer + ": Connection refused"), peer),
            "Connection refused");
  EXPECT_EQ(DescribeForPeer(Status::IoError("send Records frame 3 to " + peer + ": the connection was shut down"), peer),
            "send Records frame 3: the connection was shut down");
  // Without a peer to leave out, only the category goes.
  EXPECT_EQ(DescribeForPeer(silent, ""), "receive from 127.0.0.1:5555: no frame within 1000 ms");
  EXPECT_EQ(HostOf(peer), "127.0.0.1");
  EXPECT_EQ(HostOf("localhost"), "localhost");
}

TEST(NodeLogThreadsTest, LinesFromManyThreadsComeOutWhole) {
  std::mutex mu;
  std::vector<std::string> lines;
  NodeLog log(3, [&](const std::string& line) {
    std::lock_guard lock(mu);
    lines.push_back(line);
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&log, t] {
      for (int i = 0; i < 200; ++i) {
        log.Line("thread " + std::to_string(t) + " line " + std::to_string(i));
        log.Limited("shared", "a burst from thread " + std::to_string(t));
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  log.Flush(/*all_windows=*/true);
  const std::regex whole(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z keel node 3: .+)");
  size_t plain = 0;
  for (const std::string& line : lines) {
    EXPECT_TRUE(std::regex_match(line, whole)) << line;
    plain += line.find(" line ") != std::string::npos;
  }
  EXPECT_EQ(plain, 800u);
}

}  // namespace
}  // namespace keel::replication
