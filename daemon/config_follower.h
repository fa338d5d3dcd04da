// Keeps a mount's keys in step with wardfs.conf when something else changes it: a
// read-only mount beside the read-write one that rotates, rekeys and retires. Polls the
// file's identity (inode, size, change time: the config is always replaced by rename)
// and calls back when it changed, so a rotation elsewhere reaches this mount within one
// interval, with no restart.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <tuple>

#include "base/periodic_task.h"

namespace wardfs::daemon {

// How often a mount looks at its config: the bound the README ("Shared and network
// storage") promises for a rotation through another mount to be seen here.
inline constexpr std::chrono::seconds kConfigPollInterval{2};

class ConfigFollower {
 public:
  // Starts the polling thread. `on_change` runs on it; it reports its own errors.
  // `on_tick`, if given, runs after every poll (the mount's heartbeat work).
  ConfigFollower(std::filesystem::path config_path, std::chrono::milliseconds interval,
                 std::function<void()> on_change, std::function<void()> on_tick = nullptr);
  ~ConfigFollower();  // stops and joins the thread
  // Runs `on_change` on the polling thread now rather than at the next interval (a file
  // sealed under a generation this mount does not know yet) and waits for it, up to
  // `timeout`. True when it ran.
  bool follow_now(std::chrono::milliseconds timeout);
  ConfigFollower(const ConfigFollower&) = delete;
  ConfigFollower& operator=(const ConfigFollower&) = delete;

 private:
  using FileIdentity = std::tuple<dev_t, ino_t, off_t, std::int64_t, long>;
  static std::optional<FileIdentity> identity_of(const std::filesystem::path& path);
  bool poll(bool asked);

  std::filesystem::path config_path_;
  std::function<void()> on_change_;
  std::function<void()> on_tick_;
  // Nothing seen yet: the first look adopts whatever changed since the mount unlocked.
  std::optional<FileIdentity> seen_;  // the polling thread's only
  base::PeriodicTask task_;           // last: stops before the fields it reads
};

}  // namespace wardfs::daemon
