// One rekey at a time across a volume, whichever mount or command runs it, and a rekey
// that outlives whoever ran it. wardfs.rekey in the backing root says that a rekey to
// some generation was asked for and has not finished; its runner holds the record's lock
// and renews its heartbeat (volume/presence.h). When the runner dies or its mount goes
// away before the end, the record stays "running" with nobody alive behind it, and the
// next read-write mount of the volume, on any machine, resumes the work (a rekey is
// idempotent: it re-seals what is not yet under the active generation).
#pragma once

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "base/posix_io.h"

namespace wardfs::volume {

inline constexpr std::string_view kRekeyRecordName = "wardfs.rekey";

struct RekeyRecord {
  bool running = false;  // asked for and not finished
  bool alive = false;    // its runner holds the lock or beats (another host)
  std::uint32_t target_generation = 0;
  std::string where;  // the mount point, or "offline"
  nlohmann::json raw;
  std::string owner() const;  // "wardfs rekey at /mnt/x (pid P on host H, since S)"
};

// What wardfs.rekey says now; nullopt when no rekey was ever asked for or the record is
// unreadable (a rekey then starts afresh).
std::optional<RekeyRecord> read_rekey_record(const std::filesystem::path& cipher_dir);

class RekeyLease {
 public:
  // Takes the volume's rekey slot for a rekey to `target_generation` run at `where`.
  // Throws WardError(usage) naming the runner when a rekey is alive elsewhere.
  RekeyLease(const std::filesystem::path& cipher_dir, std::string where,
             std::uint32_t target_generation);
  ~RekeyLease() = default;  // an unfinished rekey stays "running", for the next mount
  RekeyLease(RekeyLease&&) noexcept = default;
  RekeyLease& operator=(RekeyLease&&) = delete;

  void renew_if_due();  // heartbeat, every kHeartbeatInterval
  void finished();      // the work is done (with or without per-file errors)

 private:
  std::unique_ptr<std::mutex> mutex_ = std::make_unique<std::mutex>();  // guards record_
  UniqueFd fd_;
  nlohmann::json record_;
};

}  // namespace wardfs::volume
