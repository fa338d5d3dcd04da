// The audit log writer: callers enqueue events (never blocking on disk); a writer
// thread appends them in batches, chained and fsync'd, then moves the signed
// checkpoint. Records given before start() (e.g. the keystore unwraps that produced
// the audit key itself) wait in the queue until the key is there.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "audit/anchor.h"
#include "audit/record.h"
#include "crypto/secret.h"

namespace wardfs::audit {

struct Tail;

struct LogOptions {
  std::filesystem::path path;  // the live file
  Level level = Level::keys;
  OnFailure on_failure = OnFailure::fail_open;
  std::uint64_t rotate_bytes = 64ULL << 20;
  std::size_t queue_capacity = 1U << 16;
  std::chrono::milliseconds flush_interval{200};
  AnchorOptions anchor;  // hands each new checkpoint to an external command
};

class AuditLog {
 public:
  AuditLog(LogOptions options, std::string volume_id);
  ~AuditLog();  // writes what is queued, anchors the last checkpoint, then stops
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Begins writing under `mac_key` (the HKDF-derived audit key). Throws WardError(io)
  // when the log's directory or file cannot be opened at all.
  void start(crypto::SecretBytes mac_key);

  void record(Event event);
  // Waits until everything queued so far is on disk (or has failed). False on failure.
  bool flush(std::chrono::milliseconds timeout = std::chrono::seconds(10));

  const LogOptions& options() const { return options_; }
  bool wants(Level level) const {
    return static_cast<int>(options_.level) >= static_cast<int>(level);
  }
  // False when fail-closed and the last write, or the last hand-over to the anchor
  // command, failed: new opens must be refused.
  bool allows_access() const {
    return options_.on_failure == OnFailure::fail_open || (healthy_.load() && anchor_healthy());
  }
  bool healthy() const { return healthy_.load(); }
  bool anchor_healthy() const { return !anchor_ || anchor_->healthy(); }
  std::uint64_t anchored_seq() const { return anchor_ ? anchor_->anchored_seq() : 0; }
  std::uint64_t dropped() const { return dropped_.load(); }
  std::uint64_t written() const { return written_.load(); }

 private:
  struct Head {
    std::uint64_t seq = 0;
    Mac mac{};
  };
  void run();
  bool write_batch(std::deque<Event>& batch);
  bool append_locked(int log_fd, std::deque<Event>& batch, Head& head);
  bool rotate_if_large(int& log_fd, Head& head);
  Head chain_head(int log_fd, std::deque<Event>& batch);
  void repair_torn_tail(int log_fd, Tail& tail, std::deque<Event>& batch);
  void complain(const std::string& what);
  void anchor_failed(const Checkpoint& checkpoint, const std::string& error, bool first);

  // Where the live file ended after our last append, and the chain head there, so the
  // next batch need not re-read it. Only the writer thread touches it.
  struct KnownTail {
    dev_t dev = 0;
    ino_t ino = 0;
    off_t size = -1;
    Head head;
  };

  LogOptions options_;
  std::string volume_id_;
  crypto::SecretBytes key_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable drained_;
  std::deque<Event> queue_;
  std::uint64_t enqueued_ = 0;  // under mutex_
  std::uint64_t settled_ = 0;   // written or given up, under mutex_
  bool started_ = false;
  bool flush_requested_ = false;  // someone waits in flush(): write without delay
  bool stopping_ = false;
  std::atomic<bool> healthy_{true};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> written_{0};
  std::chrono::steady_clock::time_point last_complaint_{};
  KnownTail known_;
  std::unique_ptr<CheckpointAnchor> anchor_;  // set in start(), before the writer runs
  std::thread writer_;
};

}  // namespace wardfs::audit
