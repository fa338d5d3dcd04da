#include "daemon/monitor.h"

#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>

extern char** environ;

namespace wardfs::daemon {

namespace {

using Clock = std::chrono::steady_clock;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
      .count();
}

int run_fusermount_unmount(const std::filesystem::path& mount_point) {
  // posix_spawn, not fork: this process is multi-threaded.
  const char* argv[] = {"fusermount3", "-u", mount_point.c_str(), nullptr};
  pid_t pid = 0;
  if (posix_spawnp(&pid, "fusermount3", nullptr, nullptr, const_cast<char**>(argv), environ) != 0) {
    return ENOENT;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : EBUSY;
}

}  // namespace

std::string human_bytes(std::uint64_t bytes) {
  if (bytes < 1024) return std::to_string(bytes) + " B";
  const char* units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  double value = static_cast<double>(bytes) / 1024;
  int unit = 0;
  while (value >= 1024 && unit < 4) {
    value /= 1024;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", value, units[unit]);
  return buf;
}

int unmount_if_unused(const std::filesystem::path& mount_point) {
  if (::geteuid() != 0) return run_fusermount_unmount(mount_point);
  // No MNT_DETACH: a file opened since the last look makes this fail with EBUSY,
  // which is exactly the "still in use" answer we want.
  return ::umount2(mount_point.c_str(), 0) == 0 ? 0 : errno;
}

std::optional<std::chrono::milliseconds> parse_duration(const std::string& text) {
  std::size_t used = 0;
  double value = 0;
  try {
    value = std::stod(text, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  const std::string unit = text.substr(used);
  double ms_per_unit = 0;
  if (unit.empty() || unit == "s") ms_per_unit = 1000;
  if (unit == "ms") ms_per_unit = 1;
  if (unit == "m" || unit == "min") ms_per_unit = 60'000;
  if (unit == "h") ms_per_unit = 3'600'000;
  if (ms_per_unit == 0 || value < 0 || !std::isfinite(value)) return std::nullopt;
  return std::chrono::milliseconds(static_cast<std::int64_t>(value * ms_per_unit));
}

namespace {
// How often the monitor looks: often enough to honour a short --idle within a quarter of it.
std::chrono::milliseconds tick_of(const MonitorOptions& options) {
  if (options.idle.count() == 0) return std::chrono::milliseconds(1000);
  return std::clamp(options.idle / 4, std::chrono::milliseconds(100),
                    std::chrono::milliseconds(1000));
}
}  // namespace

MountMonitor::MountMonitor(MonitorOptions options, const fuse::FsCounters& counters,
                           Notifier notifier)
    : options_(std::move(options)),
      counters_(counters),
      notifier_(std::move(notifier)),
      task_(
          tick_of(options_), [this](bool) { return tick(); },
          base::PeriodicTask::FirstRun::at_once) {}

MountMonitor::~MountMonitor() = default;

void MountMonitor::stopping() {
  notifier_.send("STOPPING=1\nSTATUS=Unmounted " + options_.mount_point.string());
}

bool MountMonitor::wait_until_answering() {
  // A stat of the mount point's root is a FUSE request: it returns only once the worker
  // threads serve, which is what "ready" must mean to whoever waits on the service.
  struct stat st {};
  while (::stat(options_.mount_point.c_str(), &st) != 0) {
    if (!task_.pause(std::chrono::milliseconds(50))) return false;
  }
  return true;
}

std::string MountMonitor::status_line() const {
  const auto open = std::max<std::int64_t>(0, counters_.open_handles.load());
  return "Serving " + options_.mount_point.string() + " (" + options_.description + "); read " +
         human_bytes(counters_.bytes_read.load()) + ", wrote " +
         human_bytes(counters_.bytes_written.load()) + ", " + std::to_string(open) + " open, " +
         std::to_string(counters_.integrity_failures.load()) + " integrity failures";
}

bool MountMonitor::idle_expired() const {
  if (options_.idle.count() == 0 || counters_.open_handles.load() > 0) return false;
  const auto last = std::max(ready_ns_, counters_.last_request_ns.load());
  const auto quiet = std::chrono::nanoseconds(now_ns() - last);
  return quiet >= options_.idle;
}

void MountMonitor::try_idle_unmount() {
  const int err = unmount_if_unused(options_.mount_point);
  if (err == 0) {
    spdlog::info("no requests for {} ms and nothing open: unmounted {}", options_.idle.count(),
                 options_.mount_point.string());
    return;
  }
  // Busy (a process's working directory, a racing open): try again after the next quiet spell.
  if (!busy_logged_)
    spdlog::info("idle, but {} is still in use ({})", options_.mount_point.string(),
                 std::strerror(err));
  busy_logged_ = true;
}

bool MountMonitor::stop_if_lease_lost() {
  const auto why = options_.lease_lost ? options_.lease_lost() : std::nullopt;
  if (!why) return false;
  spdlog::critical("{}; stopping the mount of {} so that two writers never share the volume", *why,
                   options_.mount_point.string());
  notifier_.send("STATUS=Lease lost; stopping");
  if (options_.stop_serving) options_.stop_serving();
  return true;
}

void MountMonitor::announce_ready() {
  notifier_.send("READY=1\nSTATUS=" + status_line());
  spdlog::info("ready: {} answers requests", options_.mount_point.string());
  ready_ns_ = now_ns();
  next_status_ = Clock::now();
  ready_ = true;
}

bool MountMonitor::tick() {
  if (!ready_) {
    if (!wait_until_answering()) return false;
    announce_ready();
    return true;
  }
  if (stop_if_lease_lost()) return false;
  if (idle_expired()) try_idle_unmount();
  if (notifier_.enabled() && Clock::now() >= next_status_) {
    std::string line = status_line();
    if (line != last_status_) notifier_.send("STATUS=" + line);
    last_status_ = std::move(line);
    next_status_ = Clock::now() + std::chrono::seconds(5);
  }
  return true;
}

}  // namespace wardfs::daemon
