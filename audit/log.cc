#include "audit/log.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>

#include "audit/files.h"
#include "base/errors.h"
#include "base/posix_io.h"

namespace wardfs::audit {

namespace stdfs = std::filesystem;

namespace {
constexpr auto kComplaintInterval = std::chrono::seconds(10);
constexpr std::size_t kBatchRecords = 4096;

Event internal_event(std::string name, nlohmann::json detail) {
  Event e;
  e.event = std::move(name);
  e.detail = std::move(detail);
  return e;
}
}  // namespace

AuditLog::AuditLog(LogOptions options, std::string volume_id)
    : options_(std::move(options)), volume_id_(std::move(volume_id)) {}

AuditLog::~AuditLog() {
  if (anchor_ && flush()) {
    // The last checkpoint (the unmount) is the one a cut-back would remove first.
    anchor_->finish();
    flush();  // a failure of that hand-over, on record
  }
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (writer_.joinable()) writer_.join();
  anchor_.reset();
  if (!queue_.empty()) {
    spdlog::error(
        "audit log {}: {} records were never written (no audit key: the volume was not unlocked)",
        options_.path.string(), queue_.size());
  }
}

void AuditLog::start(crypto::SecretBytes mac_key) {
  std::lock_guard lock(mutex_);
  if (started_) return;
  key_ = std::move(mac_key);
  started_ = true;
  if (!options_.anchor.argv.empty()) {
    anchor_ = std::make_unique<CheckpointAnchor>(
        options_.anchor, volume_id_,
        CheckpointAnchor::Hooks{[this](const Checkpoint& c, const std::string& error, bool first) {
                                  anchor_failed(c, error, first);
                                },
                                [this](const Checkpoint& c) {
                                  spdlog::warn(
                                      "audit log {}: the anchor command took checkpoint {} again",
                                      options_.path.string(), c.seq);
                                }});
  }
  writer_ = std::thread([this] { run(); });
}

void AuditLog::record(Event event) {
  if (event.time.empty()) event.time = utc_time_micros();
  bool wake = false;
  {
    std::lock_guard lock(mutex_);
    if (queue_.size() >= options_.queue_capacity) {
      dropped_++;
    } else {
      queue_.push_back(std::move(event));
      enqueued_++;
      // The writer only cares about the first record of a batch and a full batch.
      wake = queue_.size() == 1 || queue_.size() >= kBatchRecords;
    }
  }
  if (wake) wake_.notify_one();
}

bool AuditLog::flush(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  if (!started_) return false;
  const std::uint64_t target = enqueued_;
  flush_requested_ = true;
  wake_.notify_one();
  const bool done =
      drained_.wait_for(lock, timeout, [&] { return settled_ >= target || !healthy_.load(); });
  return done && healthy_.load() && settled_ >= target;
}

void AuditLog::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait_for(lock, options_.flush_interval, [&] { return stopping_ || !queue_.empty(); });
    if (queue_.empty()) {
      if (stopping_) return;
      continue;
    }
    // Let the batch fill for one interval: every batch costs two fsyncs, and a busy
    // mount must not turn each open into its own.
    wake_.wait_for(lock, options_.flush_interval,
                   [&] { return stopping_ || flush_requested_ || queue_.size() >= kBatchRecords; });
    flush_requested_ = false;
    std::deque<Event> batch;
    batch.swap(queue_);
    const std::size_t n = batch.size();
    lock.unlock();
    const bool ok = write_batch(batch);
    lock.lock();
    healthy_ = ok;
    if (!ok && options_.on_failure == OnFailure::fail_closed && !stopping_) {
      // Kept for a retry: fail-closed promises no access goes unrecorded.
      while (!batch.empty() && queue_.size() < options_.queue_capacity) {
        queue_.push_front(std::move(batch.back()));
        batch.pop_back();
      }
      dropped_ += batch.size();
      settled_ += batch.size();
      drained_.notify_all();
      wake_.wait_for(lock, options_.flush_interval, [&] { return stopping_; });
      continue;
    }
    if (!ok) dropped_ += n;
    settled_ += n;
    drained_.notify_all();
  }
}

void AuditLog::complain(const std::string& what) {
  const auto now = std::chrono::steady_clock::now();
  if (now - last_complaint_ < kComplaintInterval) return;
  last_complaint_ = now;
  spdlog::critical(
      "AUDIT LOG {} CANNOT BE WRITTEN: {}; policy {}: {} (fix the path or its space, or mount "
      "with --audit-log)",
      options_.path.string(), what, on_failure_name(options_.on_failure),
      options_.on_failure == OnFailure::fail_closed ? "new opens are refused"
                                                    : "serving on, counting dropped records");
}

void AuditLog::anchor_failed(const Checkpoint& checkpoint, const std::string& error, bool first) {
  spdlog::critical(
      "AUDIT CHECKPOINT {} OF {} WAS NOT ANCHORED: {}; policy {}: {} (fix the command given to "
      "--audit-anchor-cmd; it is retried)",
      checkpoint.seq, options_.path.string(), error, on_failure_name(options_.on_failure),
      options_.on_failure == OnFailure::fail_closed ? "new opens are refused"
                                                    : "serving on, the log's tail is unanchored");
  // Once per outage: the record makes a checkpoint of its own, which fails again.
  if (!first) return;
  Event e = internal_event("anchor_failed", {{"checkpoint_seq", checkpoint.seq}, {"error", error}});
  e.result = "failed";
  record(std::move(e));
}

bool AuditLog::write_batch(std::deque<Event>& batch) {
  std::error_code ec;
  const stdfs::path dir = options_.path.parent_path();
  if (!dir.empty() && !stdfs::exists(dir, ec)) create_private_directories(dir);
  UniqueFd lock_fd(
      ::open(lock_path(options_.path).c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lock_fd || ::flock(lock_fd.get(), LOCK_EX) != 0) {
    complain("lock " + lock_path(options_.path).string() + ": " + std::strerror(errno));
    return false;
  }
  int raw =
      ::open(options_.path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (raw < 0) {
    complain(std::strerror(errno));
    return false;
  }
  Head head = chain_head(raw, batch);
  const bool ok = rotate_if_large(raw, head) && append_locked(raw, batch, head);
  if (raw >= 0) ::close(raw);
  return ok;
}

AuditLog::Head AuditLog::chain_head(int log_fd, std::deque<Event>& batch) {
  struct stat st {};
  if (::fstat(log_fd, &st) == 0 && st.st_dev == known_.dev && st.st_ino == known_.ino &&
      st.st_size == known_.size) {
    return known_.head;
  }
  Tail tail;
  if (read_tail(log_fd, tail) == 0 && tail.torn) repair_torn_tail(log_fd, tail, batch);
  if (tail.last_line.empty()) {
    // A fresh live file: the chain continues from the newest rotated segment.
    const auto segments = log_segments(options_.path);
    for (auto it = segments.rbegin(); it != segments.rend() && tail.last_line.empty(); ++it) {
      if (*it == options_.path) continue;
      UniqueFd seg(::open(it->c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
      if (seg) read_tail(seg.get(), tail);
    }
  }
  Head head;
  std::optional<Checkpoint> checkpoint;
  std::string checkpoint_problem;
  std::error_code ec;
  if (std::filesystem::exists(checkpoint_path(options_.path), ec)) {
    try {
      checkpoint = open_checkpoint(read_text_file(checkpoint_path(options_.path)), key_.view(),
                                   checkpoint_problem);
    } catch (const WardError& e) {
      checkpoint_problem = e.what();
    }
  } else {
    checkpoint_problem = "the checkpoint is missing";
  }
  if (auto last = parse_record_line(tail.last_line)) {
    head = {last->seq, last->mac};
  } else if (!tail.last_line.empty()) {
    // An unreadable last record (tampering); the pinned checkpoint still knows the head.
    if (checkpoint) head = {checkpoint->seq, checkpoint->mac};
    batch.push_front(
        internal_event("log_damaged", {{"reason", "the last record of the log is unreadable"}}));
    return head;
  }
  // Appending after a cut-off tail would move the checkpoint and hide the cut: say it
  // in the chain itself, where verify will find it.
  if (!checkpoint && head.seq > 0) {
    batch.push_front(internal_event("log_tampered",
                                    {{"reason", checkpoint_problem}, {"log_last_seq", head.seq}}));
  } else if (checkpoint && (checkpoint->seq > head.seq ||
                            (checkpoint->seq == head.seq && checkpoint->mac != head.mac))) {
    batch.push_front(internal_event(
        "log_tampered",
        {{"reason", "records were cut off: the log ends before the record the checkpoint pins"},
         {"checkpoint_seq", checkpoint->seq},
         {"log_last_seq", head.seq}}));
  }
  return head;
}

void AuditLog::repair_torn_tail(int log_fd, Tail& tail, std::deque<Event>& batch) {
  // A whole record that only lacks its newline is kept: verify accepts it and the
  // checkpoint may pin it, so dropping it would cut the chain and make the writer itself
  // report the log as cut off (found by fuzz_audit).
  if (parse_record_line(tail.fragment) && ::write(log_fd, "\n", 1) == 1) {
    tail.last_line = std::move(tail.fragment);
    batch.push_front(internal_event("log_repaired", {{"added_newline", true}}));
    return;
  }
  // A write cut short by a crash or a full disk: drop the fragment, and say so.
  const std::uint64_t discarded = tail.fragment.size();
  if (::ftruncate(log_fd, static_cast<off_t>(tail.torn_at)) == 0) {
    batch.push_front(internal_event("log_repaired", {{"discarded_bytes", discarded}}));
  }
}

bool AuditLog::rotate_if_large(int& log_fd, Head& head) {
  struct stat st {};
  if (::fstat(log_fd, &st) != 0 || static_cast<std::uint64_t>(st.st_size) < options_.rotate_bytes)
    return true;
  const stdfs::path segment = next_segment_path(options_.path);
  if (::rename(options_.path.c_str(), segment.c_str()) != 0) {
    complain("rotate to " + segment.string() + ": " + std::strerror(errno));
    return true;  // keep appending to the large file rather than lose records
  }
  ::close(log_fd);
  log_fd =
      ::open(options_.path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (log_fd < 0) {
    complain(std::strerror(errno));
    return false;
  }
  known_ = {};
  // The first record of every segment carries the link to the one before, so a
  // segment can be verified even after older ones were shipped away and deleted.
  std::deque<Event> first;
  first.push_back(
      internal_event("log_continued", {{"previous_segment", segment.filename().string()},
                                       {"prev_mac", crypto::hex_encode(head.mac)}}));
  return append_locked(log_fd, first, head);
}

bool AuditLog::append_locked(int log_fd, std::deque<Event>& batch, Head& head) {
  std::string text;
  const std::string time = utc_time_micros();
  Head next = head;
  for (const auto& event : batch) {
    Mac mac{};
    text += seal_record(event, next.seq + 1, volume_id_, next.mac, key_.view(), mac);
    text += '\n';
    next = {next.seq + 1, mac};
  }
  ::fchmod(log_fd, 0600);
  const ssize_t n = ::write(log_fd, text.data(), text.size());
  if (n != static_cast<ssize_t>(text.size()) || ::fdatasync(log_fd) != 0) {
    complain(n < 0 ? std::strerror(errno) : "short write (disk full?)");
    known_ = {};
    return false;
  }
  struct stat st {};
  head = next;
  if (::fstat(log_fd, &st) == 0) known_ = {st.st_dev, st.st_ino, st.st_size, head};
  try {
    write_file_atomic(checkpoint_path(options_.path),
                      seal_checkpoint({head.seq, head.mac, time}, key_.view()));
  } catch (const WardError& e) {
    complain(e.what());
  }
  // The records are on disk: they may be anchored even if the local checkpoint is not.
  if (anchor_) anchor_->offer({head.seq, head.mac, time});
  written_ += batch.size();
  batch.clear();
  return true;
}

}  // namespace wardfs::audit
