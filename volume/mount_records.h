// Every mount that may write a volume publishes what it seals new data under, so that a
// key command run anywhere can tell whether retiring a generation would strand a mount
// that has not yet followed a rotation (a -o shared mount on another machine follows
// wardfs.conf only every few seconds). One record per mount, in wardfs.mounts/ of the
// backing root, kept alive by the rules of volume/presence.h (lock, heartbeat).
#pragma once

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "base/posix_io.h"

namespace wardfs::volume {

inline constexpr std::string_view kMountRecordsDir = "wardfs.mounts";

struct MountRecord {
  std::string host;
  long pid = 0;
  std::string mount_point;
  std::string mount_id;
  std::uint32_t active_generation = 0;  // the generation new data is sealed under
  nlohmann::json raw;
  std::string owner() const;  // "/mnt/x (pid P on host H, since S)"
};

// This mount's own record, from construction to destruction (which removes it).
class PublishedMount {
 public:
  // Throws WardError(io) when the record cannot be written: a mount that cannot say
  // what it writes under must not write.
  PublishedMount(const std::filesystem::path& cipher_dir, const std::string& mount_point,
                 std::uint32_t active_generation);
  ~PublishedMount();
  PublishedMount(const PublishedMount&) = delete;
  PublishedMount& operator=(const PublishedMount&) = delete;

  // Rewrites the record now: after a rotation here or one followed from elsewhere, and
  // every kHeartbeatInterval as its heartbeat (nothing written in between).
  void publish(std::uint32_t active_generation);
  void renew_if_due();

 private:
  std::mutex mutex_;  // guards record_ and the file's contents; taken alone
  UniqueFd dir_fd_;
  UniqueFd fd_;
  std::string name_;
  nlohmann::json record_;
};

// The records of the mounts alive now (lock held, or a fresh heartbeat of another
// host), ours included. Records of dead mounts are removed on the way.
std::vector<MountRecord> live_mounts(const std::filesystem::path& cipher_dir);

}  // namespace wardfs::volume
