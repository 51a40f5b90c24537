// Node, fencing: what a node does when it learns that a higher epoch exists
// (it records it durably, stops following a lower primary, and a primary is
// deposed), and what a newly promoted primary tells every member it knows of.
#include <keel/replication/node.h>

#include <algorithm>

#include <keel/replication/commit_tracker.h>
#include <keel/replication/node_internal.h>

namespace keel::replication {

using std::chrono::milliseconds;

void Node::Fence(Epoch seen, const std::string& why) {
  {
    std::lock_guard lock(state_mu_);
    if (role_ != NodeRole::kPrimary || deposed_.load()) return;
    fenced_by_ = seen;
    deposed_.store(true);
  }
  Log("deposed: " + why + "; this node acknowledges nothing more (restart it as a backup to rejoin)");
  NotifyAckWaiters();
}

Epoch Node::KnownEpoch() const {
  std::lock_guard lock(state_mu_);
  return std::max(history_.current(), fenced_epoch_.load());
}

// A peer showed that epoch `seen` exists. The fence file is synced first, so
// that the knowledge survives a crash the moment anything acts on it; then a
// backup stops taking records from a lower epoch and drops such a session,
// and a primary is deposed. When this returns, the follower is not in the
// middle of writing anything it received before.
Status Node::LearnEpoch(Epoch seen, const std::string& why) {
  {
    std::lock_guard file_lock(fence_file_mu_);
    if (seen <= KnownEpoch()) return Status::Ok();
    KEEL_RETURN_IF_ERROR(SaveFencedEpoch(fs_, options_.dir, seen));
    fenced_epoch_.store(seen);
  }
  Log("learned of epoch " + std::to_string(seen) + " (" + why + "); nothing from a lower epoch is taken any more");
  {
    std::lock_guard lock(follow_mu_);
    if (primary_connection_ != nullptr && session_epoch_ < seen) {
      // The session is over from here on: no Ack, no Heartbeat, not "streaming".
      primary_connection_->Shutdown();
      primary_connection_ = nullptr;
    }
  }
  { std::lock_guard work(follow_work_mu_); }
  Fence(seen, why);
  return Status::Ok();
}

// Where to tell the new epoch: the old primary and every member the primary
// listed, never this node itself.
std::vector<std::string> Node::FenceTargets() const {
  std::vector<std::string> targets;
  if (!options_.primary_host.empty() && options_.primary_port != 0) {
    targets.push_back(options_.primary_host + ":" + std::to_string(options_.primary_port));
  }
  {
    std::lock_guard lock(backups_mu_);
    for (const auto& [id, address] : members_) {
      if (id != options_.node_id) targets.push_back(address);
    }
  }
  for (const auto& [id, known] : commits_->Rows()) {
    if (id != options_.node_id && !known.listen.empty()) targets.push_back(known.listen);
  }
  const std::string self = options_.listen_host + ":" + std::to_string(port_);
  std::sort(targets.begin(), targets.end());
  targets.erase(std::unique(targets.begin(), targets.end()), targets.end());
  targets.erase(std::remove(targets.begin(), targets.end(), self), targets.end());
  if (targets.size() > kMaxMembers + 1) targets.resize(kMaxMembers + 1);
  return targets;
}

// Introduces this node, as primary at its epoch, to the member at address: a
// member below the epoch takes it up (LearnEpoch) and answers. OK when the
// member's answer shows it at this epoch or above.
Status Node::FenceOne(const std::string& address, std::string* outcome) {
  std::string host;
  uint16_t port = 0;
  KEEL_RETURN_IF_ERROR(ParseHostPort(address, &host, &port));
  std::unique_ptr<Connection> connection;
  KEEL_RETURN_IF_ERROR(Connection::Connect(host, port, options_.connect_timeout, &connection, &stopping_, tls_.get()));
  connection->set_max_body_bytes(kHandshakeMaxBodyBytes);
  Hello mine = MakeHello(NodeRole::kPrimary);
  std::string who;
  // Before the member's HelloReply: a member above this epoch deposed this
  // node, and a primary at this epoch means both must stop.
  auto check = [&](const Hello& theirs) -> Status {
    std::string why;
    RejectReason reason = RejectReason::kNone;
    if (!CheckPeerHello(theirs, HelloNonceBytes(mine.nonce), &why, &reason).ok()) return Status::Failed(why);
    who = "node " + std::to_string(theirs.node_id) + " at " + address;
    if (theirs.epoch > mine.epoch) {
      KEEL_RETURN_IF_ERROR(LearnEpoch(theirs.epoch, who + " is at epoch " + std::to_string(theirs.epoch)));
      return Status::Failed(who + " is at epoch " + std::to_string(theirs.epoch) +
                            ", above this node's: this node was deposed");
    }
    if (theirs.role == NodeRole::kPrimary && theirs.epoch == mine.epoch) {
      Fence(mine.epoch, who + " is a primary at this node's epoch too");
      return Status::Failed(who + " is a primary at epoch " + std::to_string(mine.epoch) +
                            " too: both stop acknowledging");
    }
    return Status::Ok();
  };
  HelloAnswer answer;
  KEEL_RETURN_IF_ERROR(ExchangeHello(connection.get(), &mine, std::as_bytes(std::span(options_.secret)),
                                     options_.connect_timeout, check, &answer));
  if (!answer.peer_said_hello) return Status::Failed("refused: " + answer.reply.text);
  if (answer.reply.epoch < mine.epoch) {
    return Status::Failed(who + " did not take up epoch " + std::to_string(mine.epoch) + ": " + answer.reply.text);
  }
  *outcome = who + " (last LSN " + std::to_string(answer.peer.last_lsn) + ")";
  return Status::Ok();
}

// Fences every target at once: each gets its own thread, which keeps trying
// in the background (backing off, until this node stops or is deposed) if
// the first attempt fails. Waits at most fence_wait for the first answers:
// a member that can be reached answers within milliseconds, and one that
// cannot must not hold the promotion up for a connect timeout.
void Node::FenceMembers(const std::vector<std::string>& targets, PromoteResult* result) {
  struct Round {
    std::mutex mu;
    std::condition_variable cv;
    std::map<std::string, std::pair<bool, std::string>> first;  // address -> (fenced, what happened)
  };
  auto round = std::make_shared<Round>();
  for (const std::string& address : targets) {
    std::thread fencer([this, round, address] {
      std::string outcome;
      Status fenced = FenceOne(address, &outcome);
      {
        std::lock_guard lock(round->mu);
        round->first[address] = {fenced.ok(), fenced.ok() ? outcome : address + " (" + fenced.message() + ")"};
      }
      round->cv.notify_all();
      if (!fenced.ok()) FenceInBackground(address);
    });
    std::lock_guard lock(fencers_mu_);
    fencers_.push_back(std::move(fencer));
  }
  std::unique_lock lock(round->mu);
  round->cv.wait_for(lock, options_.fence_wait, [&] { return round->first.size() == targets.size(); });
  for (const std::string& address : targets) {
    auto it = round->first.find(address);
    if (it != round->first.end() && it->second.first) {
      result->fenced.push_back(it->second.second);
    } else {
      result->unreached.push_back(it != round->first.end() ? it->second.second : address + " (no answer yet)");
    }
  }
}

// Retries fencing address until it answers, this node stops, or it is no
// longer the primary. The delay doubles from reconnect_min to reconnect_max.
void Node::FenceInBackground(const std::string& address) {
  milliseconds delay = options_.reconnect_min;
  for (uint64_t attempt = 1; !stopping_.load() && is_primary(); ++attempt) {
    for (auto until = Clock::now() + delay; Clock::now() < until && !stopping_.load();) {
      std::this_thread::sleep_for(std::min<milliseconds>(delay, Connection::kCancelCheckInterval));
    }
    if (stopping_.load() || !is_primary()) return;
    std::string outcome;
    if (FenceOne(address, &outcome).ok()) {
      Log("fenced " + outcome + " after " + std::to_string(attempt) + " more attempts");
      return;
    }
    delay = std::min(delay * 2, options_.reconnect_max);
  }
}

}  // namespace keel::replication
