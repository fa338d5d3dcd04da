// The external anchor: an operator's command that receives each new checkpoint, so a
// copy of the log's latest position lives somewhere the log's own directory cannot
// reach. The local chain cannot tell a log cut back to an earlier checkpoint, or
// deleted and started afresh, from an honest one; `wardfs audit verify --anchor` can,
// by comparing the log with what was anchored (docs/AUDIT.md).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "audit/files.h"

namespace wardfs::audit {

// What the anchor command reads on stdin: one JSON line of public data only (the
// volume id, the sequence number, the chained MAC and the time; no key, no
// checkpoint_mac), keys sorted, newline-terminated.
std::string anchor_line(const Checkpoint& checkpoint, std::string_view volume_id);

struct AnchorOptions {
  std::vector<std::string> argv;  // empty: no anchor
  std::chrono::milliseconds timeout{10000};
  std::chrono::milliseconds retry_interval{5000};
};

// Runs the anchor command on its own thread, so neither the data path nor the log
// writer waits for it. Checkpoints offered while it runs are coalesced: only the newest
// is handed over next (it vouches for every record before it). A failed checkpoint is
// retried every retry_interval until it, or a newer one, is anchored.
class CheckpointAnchor {
 public:
  struct Hooks {
    // Each failed hand-over; `first` when the anchor was healthy before it.
    std::function<void(const Checkpoint&, const std::string& error, bool first)> failed;
    std::function<void(const Checkpoint&)> recovered;  // failing -> ok
  };
  CheckpointAnchor(AnchorOptions options, std::string volume_id, Hooks hooks);
  ~CheckpointAnchor();  // stops after the command in flight, if any
  CheckpointAnchor(const CheckpointAnchor&) = delete;
  CheckpointAnchor& operator=(const CheckpointAnchor&) = delete;

  void offer(const Checkpoint& checkpoint);
  // Anchors what is pending now, without waiting for a retry; returns when that was
  // tried (true: nothing is left unanchored) or after twice the command's timeout.
  bool finish();
  bool healthy() const;
  std::uint64_t anchored_seq() const;

 private:
  void run();
  // "" when the command took the checkpoint, else why not.
  std::string hand_over(const Checkpoint& checkpoint) const;

  using Clock = std::chrono::steady_clock;
  AnchorOptions options_;
  std::string volume_id_;
  Hooks hooks_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::optional<Checkpoint> pending_;
  bool busy_ = false;
  std::atomic<bool> healthy_{true};  // read on the data path (fail-closed), without the lock
  bool stopping_ = false;
  std::uint64_t finishing_ = 0;  // finish() calls waiting: retry at once
  std::uint64_t attempts_ = 0;   // completed hand-overs, for finish()
  std::uint64_t anchored_seq_ = 0;
  Clock::time_point retry_at_{};
  std::thread thread_;
};

// Compares a log with checkpoints anchored elsewhere. Call it after verify_log passed:
// it trusts the records' MACs and only asks whether the log still holds each anchored
// record, unchanged.
struct AnchorReport {
  bool ok = false;
  std::uint64_t anchors = 0;  // anchored checkpoints of this volume in the file
  std::uint64_t checked = 0;  // of those, found in the log and matching
  std::uint64_t latest_seq = 0;
  std::string problem;
  std::string note;
  nlohmann::json to_json() const;
};
// `anchor_file` holds JSON lines as anchor_line() makes them; lines of other volumes
// are skipped. Throws WardError(usage) when it cannot be read or a line is malformed.
AnchorReport check_anchors(const std::filesystem::path& live, std::string_view volume_id,
                           const std::filesystem::path& anchor_file);

}  // namespace wardfs::audit
