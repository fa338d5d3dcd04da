// What a live mount does beside serving requests: tells systemd when it is ready (only
// once the mount point answers), keeps a STATUS= line current, says STOPPING=1, and with
// `--idle` unmounts itself after a quiet spell with nothing open; stops the mount when
// its volume lease was taken over.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "base/periodic_task.h"
#include "daemon/notify.h"
#include "fuse/filesystem.h"

namespace wardfs::daemon {

struct MonitorOptions {
  std::filesystem::path mount_point;
  std::chrono::milliseconds idle{0};  // 0: never unmount on idle
  std::string description;            // "cipher ..., keystore ..." for STATUS=
  // Why this mount's volume lease was lost (another host took it over), if it was.
  std::function<std::optional<std::string>()> lease_lost;
  // Ends the request loop, which then unmounts: a mount that lost its lease stops
  // rather than write beside the new holder.
  std::function<void()> stop_serving;
};

class MountMonitor {
 public:
  // Starts the monitor thread; call it after the mount exists, before serving.
  MountMonitor(MonitorOptions options, const fuse::FsCounters& counters, Notifier notifier);
  ~MountMonitor();  // stops the thread
  MountMonitor(const MountMonitor&) = delete;
  MountMonitor& operator=(const MountMonitor&) = delete;

  // The request loop ended (unmount, signal or idle): STOPPING=1 to systemd.
  void stopping();

 private:
  bool tick();  // false once the monitor has nothing left to do
  bool wait_until_answering();
  void announce_ready();
  bool idle_expired() const;
  void try_idle_unmount();
  bool stop_if_lease_lost();  // true once it asked the loop to stop
  std::string status_line() const;

  // Everything below but the task is the monitor thread's alone.
  MonitorOptions options_;
  const fuse::FsCounters& counters_;
  Notifier notifier_;
  bool ready_ = false;
  bool busy_logged_ = false;
  std::int64_t ready_ns_ = 0;  // idle time counts from here at the earliest
  std::string last_status_;
  std::chrono::steady_clock::time_point next_status_{};
  base::PeriodicTask task_;  // last: stops before the fields it reads
};

// Unmounts `mount_point` without detaching it: fails (EBUSY) while anything is open or
// in use there. umount2 as root, else fusermount3 -u. 0 or an errno value.
int unmount_if_unused(const std::filesystem::path& mount_point);

// A byte count for people: whole bytes below 1 KiB ("47 B", never "47.0 B"), else one
// decimal in binary units ("1.5 MiB"). Status lines, progress and reports all use it.
std::string human_bytes(std::uint64_t bytes);

// "30s", "5m", "1h", "250ms", "90" (seconds) -> duration; nullopt when malformed.
std::optional<std::chrono::milliseconds> parse_duration(const std::string& text);

}  // namespace wardfs::daemon
