#include "audit/anchor.h"

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "base/errors.h"
#include "keystore/command_runner.h"

namespace wardfs::audit {

namespace stdfs = std::filesystem;

namespace {
// The anchor command prints nothing we need; a chatty one may print this much.
constexpr std::size_t kMaxAnchorOutput = 4096;

// The runner speaks of a "key command"; ours is the anchor command.
std::string anchor_error(std::string what) {
  constexpr std::string_view kRunnerWords = "key command ";
  if (what.starts_with(kRunnerWords)) what.replace(0, kRunnerWords.size(), "anchor command ");
  return what;
}
}  // namespace

std::string anchor_line(const Checkpoint& checkpoint, std::string_view volume_id) {
  const nlohmann::json doc = {{"volume", volume_id},
                              {"seq", checkpoint.seq},
                              {"mac", crypto::hex_encode(checkpoint.mac)},
                              {"time", checkpoint.time}};
  return doc.dump() + "\n";
}

CheckpointAnchor::CheckpointAnchor(AnchorOptions options, std::string volume_id, Hooks hooks)
    : options_(std::move(options)), volume_id_(std::move(volume_id)), hooks_(std::move(hooks)) {
  thread_ = std::thread([this] { run(); });
}

CheckpointAnchor::~CheckpointAnchor() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void CheckpointAnchor::offer(const Checkpoint& checkpoint) {
  {
    std::lock_guard lock(mutex_);
    if (!pending_ || pending_->seq <= checkpoint.seq) pending_ = checkpoint;
  }
  wake_.notify_one();
}

bool CheckpointAnchor::finish() {
  std::unique_lock lock(mutex_);
  const std::uint64_t target = attempts_ + (busy_ ? 2 : 1);
  finishing_++;
  wake_.notify_one();
  done_.wait_for(lock, options_.timeout * 2,
                 [&] { return !busy_ && (!pending_ || attempts_ >= target); });
  finishing_--;
  return !busy_ && !pending_;
}

bool CheckpointAnchor::healthy() const { return healthy_.load(); }

std::uint64_t CheckpointAnchor::anchored_seq() const {
  std::lock_guard lock(mutex_);
  return anchored_seq_;
}

void CheckpointAnchor::run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    if (stopping_) return;
    if (!pending_) {
      wake_.wait(lock);
      continue;
    }
    if (!healthy_.load() && finishing_ == 0 && Clock::now() < retry_at_) {
      wake_.wait_until(lock, retry_at_);
      continue;
    }
    const Checkpoint checkpoint = *pending_;
    pending_.reset();
    busy_ = true;
    lock.unlock();
    const std::string error = hand_over(checkpoint);
    lock.lock();
    busy_ = false;
    attempts_++;
    const bool was_healthy = healthy_.load();
    const bool ok = error.empty();
    healthy_ = ok;
    if (ok) {
      anchored_seq_ = std::max(anchored_seq_, checkpoint.seq);
    } else {
      if (!pending_) pending_ = checkpoint;  // retried, unless a newer one supersedes it
      retry_at_ = Clock::now() + options_.retry_interval;
    }
    done_.notify_all();
    // The hooks record audit events, which come back here as a new checkpoint.
    lock.unlock();
    if (!ok && hooks_.failed) hooks_.failed(checkpoint, error, was_healthy);
    if (ok && !was_healthy && hooks_.recovered) hooks_.recovered(checkpoint);
    lock.lock();
  }
}

std::string CheckpointAnchor::hand_over(const Checkpoint& checkpoint) const {
  const std::string line = anchor_line(checkpoint, volume_id_);
  try {
    keystore::run_secret_command(options_.argv, {options_.timeout, kMaxAnchorOutput},
                                 {crypto::as_bytes(line), {}});
    return {};
  } catch (const std::exception& e) {
    return anchor_error(e.what());
  }
}

nlohmann::json AnchorReport::to_json() const {
  nlohmann::json out = {
      {"ok", ok}, {"anchors", anchors}, {"checked", checked}, {"latest_seq", latest_seq}};
  if (!problem.empty()) out["problem"] = problem;
  if (!note.empty()) out["note"] = note;
  return out;
}

namespace {

struct Anchored {
  Mac mac{};
  std::string time;
  std::string where;  // FILE:LINE
  bool found = false;
  bool matches = false;
};

// seq -> what was anchored there, for one volume. Two different MACs anchored for one
// seq mean the history was already reset once: the later one is kept as a second entry.
using AnchorMap = std::multimap<std::uint64_t, Anchored>;

AnchorMap read_anchors(const stdfs::path& file, std::string_view volume_id) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw WardError(ErrorKind::usage, "cannot read the anchor file " + file.string());
  AnchorMap out;
  std::string line;
  for (std::uint64_t number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = file.string() + ":" + std::to_string(number);
    const auto doc = nlohmann::json::parse(line, nullptr, false);
    Anchored a;
    a.where = where;
    if (doc.is_discarded() || !doc.is_object() || !doc.contains("volume") ||
        !doc["volume"].is_string() || !doc.contains("seq") || !doc["seq"].is_number_unsigned() ||
        !doc.contains("mac") || !doc["mac"].is_string() ||
        !hex_to_mac(doc["mac"].get<std::string>(), a.mac)) {
      throw WardError(ErrorKind::usage,
                      where +
                          ": not an anchored checkpoint (expected the JSON line the anchor "
                          "command was given: volume, seq, mac, time)");
    }
    if (doc["volume"].get<std::string>() != volume_id) continue;
    a.time = doc.value("time", "");
    out.emplace(doc["seq"].get<std::uint64_t>(), std::move(a));
  }
  return out;
}

struct LogSpan {
  std::uint64_t first = 0;
  std::uint64_t last = 0;
  bool any = false;
};

// Marks every anchored record the log holds, and whether its MAC is the anchored one.
LogSpan match_log(const stdfs::path& live, AnchorMap& anchors) {
  LogSpan span;
  for (const auto& segment : log_segments(live)) {
    std::ifstream in(segment, std::ios::binary);
    if (!in) throw WardError(ErrorKind::io, "cannot read " + segment.string());
    for (std::string line; std::getline(in, line);) {
      const auto rec = parse_record_line(line);
      if (!rec) continue;  // verify_log has judged the lines already
      if (!span.any) span.first = rec->seq;
      span.any = true;
      span.last = rec->seq;
      auto [from, to] = anchors.equal_range(rec->seq);
      for (auto it = from; it != to; ++it) {
        it->second.found = true;
        it->second.matches = it->second.mac == rec->mac;
      }
    }
  }
  return span;
}

std::string anchored_at(std::uint64_t seq, const Anchored& a) {
  return "record " + std::to_string(seq) + " anchored at " + a.time + " (" + a.where + ")";
}

}  // namespace

AnchorReport check_anchors(const stdfs::path& live, std::string_view volume_id,
                           const stdfs::path& anchor_file) {
  AnchorReport report;
  AnchorMap anchors = read_anchors(anchor_file, volume_id);
  report.anchors = anchors.size();
  if (anchors.empty()) {
    report.problem = anchor_file.string() + " holds no anchored checkpoint of volume " +
                     std::string(volume_id) + " (wrong file, or the anchor command never ran)";
    return report;
  }
  report.latest_seq = anchors.rbegin()->first;
  const LogSpan span = match_log(live, anchors);
  std::uint64_t rotated_away = 0;
  std::uint64_t failing = 0;
  std::string first_problem;
  // Newest first: the latest anchor says the most about what happened last.
  for (auto it = anchors.rbegin(); it != anchors.rend(); ++it) {
    const auto& [seq, a] = *it;
    std::string problem;
    if (span.any && seq < span.first) {
      rotated_away++;
      continue;
    }
    if (!span.any || seq > span.last) {
      problem = "the log ends at record " + std::to_string(span.last) + " but " +
                anchored_at(seq, a) + " is not in it: records were cut off (the log was cut " +
                "back to an earlier state), or the log was deleted and started again";
    } else if (!a.found || !a.matches) {
      problem = anchored_at(seq, a) + " differs from the log's record " + std::to_string(seq) +
                ": the log was cut back and written on, deleted and started again, or " +
                "rewritten with the audit key";
    } else {
      report.checked++;
      continue;
    }
    failing++;
    if (first_problem.empty()) first_problem = std::move(problem);
  }
  if (failing > 0) {
    report.problem = first_problem + " (" + std::to_string(failing) + " of " +
                     std::to_string(report.anchors) + " anchored checkpoints do not match)";
    return report;
  }
  if (rotated_away > 0) {
    report.note = std::to_string(rotated_away) +
                  " anchored checkpoints lie in segments rotated away and were not checked";
  }
  report.ok = true;
  return report;
}

}  // namespace wardfs::audit
