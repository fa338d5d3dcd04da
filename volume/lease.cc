#include "volume/lease.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>

#include "base/errors.h"
#include "base/periodic_task.h"
#include "crypto/bytes.h"
#include "crypto/config.h"
#include "volume/presence.h"

namespace wardfs::volume {

namespace {

constexpr off_t kWriterByte = 0;
constexpr off_t kUsersByte = 1;

// What the writer wrote about itself into the lease file.
struct Holder {
  std::string host;
  long pid = 0;
  std::string command;  // "mount", or the offline command
  std::string mount_point;
  std::string started;
  std::string mount_id;        // random, per lease taken
  std::int64_t heartbeat = 0;  // Unix seconds of the last renewal; 0 in older records
  nlohmann::json record;
};

nlohmann::json holder_record(LeaseUse use, const std::string& what) {
  const bool mount = use != LeaseUse::offline_change;
  return {{"host", host_name()},
          {"pid", static_cast<long>(::getpid())},
          {"command", mount ? "mount" : what},
          {"mount_point", mount ? what : ""},
          {"started", crypto::utc_now_iso8601()},
          {"mount_id", random_record_id()},
          {"heartbeat", unix_now()}};
}

std::optional<Holder> read_holder(int fd) {
  const auto j = read_presence_record(fd);
  if (!j) return std::nullopt;
  Holder h;
  h.host = j->value("host", "?");
  h.pid = j->value("pid", 0L);
  h.command = j->value("command", "");
  h.mount_point = j->value("mount_point", "");
  h.started = j->value("started", "");
  h.mount_id = j->value("mount_id", "");
  h.heartbeat = j->value("heartbeat", std::int64_t{0});
  h.record = *j;
  if (h.command.empty()) return std::nullopt;
  return h;
}

std::string by_whom(const Holder& h) { return presence_owner(h.record); }

// The refusal when the writer byte (or, for a mount, the users byte) is taken.
[[noreturn]] void refuse_for_holder(const std::filesystem::path& cipher_dir, LeaseUse use,
                                    const std::string& what, const std::optional<Holder>& h) {
  const std::string volume = "volume " + cipher_dir.string();
  const ErrorKind kind =
      use == LeaseUse::offline_change ? ErrorKind::usage : ErrorKind::mount_failure;
  if (!h && use != LeaseUse::offline_change) {
    throw WardError(kind, volume +
                              " is mounted read-write with -o shared (or is being changed by "
                              "another command): mount it with -o shared too, or -o ro, or "
                              "unmount those mounts first");
  }
  if (!h) {
    throw WardError(kind, volume + " is in use by another process (it holds " +
                              (cipher_dir / kLeaseFileName).string() +
                              "): unmount it or wait for the other command, then retry");
  }
  if (h->command != "mount") {
    throw WardError(kind, volume + " is being changed by `wardfs " + h->command + "` (" +
                              by_whom(*h) + "): wait for it to finish, then retry");
  }
  if (use == LeaseUse::offline_change) {
    throw WardError(kind, volume + " is mounted at " + h->mount_point + " by " + by_whom(*h) +
                              ": run `wardfs " + what + " " + h->mount_point + "` instead");
  }
  throw WardError(
      kind, volume + " is already mounted read-write at " + h->mount_point + " by " + by_whom(*h) +
                "; a second read-write mount is refused (mount it with -o ro, or "
                "unmount " +
                h->mount_point + " first; several read-write mounts need -o shared on every one)");
}

// A writer that renewed its heartbeat lately, of another host or still running here:
// alive, although its lock did not keep us out (the backend does not share locks
// between machines, or even between two of its mounts here, as sshfs).
bool alive_without_lock(const Holder& h) { return volume::alive_without_lock(h.record); }

[[noreturn]] void refuse_beating(const std::filesystem::path& cipher_dir, LeaseUse use,
                                 const Holder& h) {
  const std::string holder =
      h.command == "mount" ? "`wardfs mount` at " + h.mount_point : "`wardfs " + h.command + "`";
  throw WardError(
      use == LeaseUse::offline_change ? ErrorKind::usage : ErrorKind::mount_failure,
      "volume " + cipher_dir.string() + " is held by " + holder + ", " + by_whom(h) +
          ", whose heartbeat is " + std::to_string(unix_now() - h.heartbeat) +
          " s old (its lock does not reach this mount: the backing file system does not "
          "share locks). If host " +
          h.host + " is down, retry once the heartbeat is " +
          std::to_string(kHeartbeatTimeout.count()) + " s old" +
          (use == LeaseUse::offline_change ? "" : ", or mount with --force"));
}

// Read-only mounts hold only the users byte and write nothing: no name to give.
[[noreturn]] void refuse_for_readers(const std::filesystem::path& cipher_dir,
                                     const std::string& what) {
  throw WardError(ErrorKind::usage,
                  "volume " + cipher_dir.string() +
                      " is mounted read-only (`wardfs status` lists this host's mounts): "
                      "unmount it first, then run `wardfs " +
                      what + "` again");
}

UniqueFd open_lease_file(const std::filesystem::path& path, LeaseUse use) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (fd || use != LeaseUse::read_only_mount) return fd;
  // A read-only mount of a backing directory it may not write: a shared lock needs
  // only read access, and where even the file is missing nobody can change the volume.
  if (errno == EROFS || errno == EACCES || errno == EPERM)
    fd.reset(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  return fd;
}

// True while the lease is held by a daemon of this host that has already lost its mount.
bool holder_is_exiting(int fd, const VolumeLease::MountedCheck& is_mounted) {
  const auto h = read_holder(fd);
  return is_mounted && h && h->command == "mount" && h->host == host_name() &&
         !h->mount_point.empty() && !is_mounted(h->mount_point);
}

// try_lock, waiting out an exiting holder for up to kExitWait.
bool lock_waiting_for_exit(int fd, short type, off_t byte, const std::filesystem::path& path,
                           const VolumeLease::MountedCheck& is_mounted) {
  constexpr auto kExitWait = std::chrono::seconds(10);
  const auto deadline = std::chrono::steady_clock::now() + kExitWait;
  while (!try_lock_byte(fd, type, byte, path)) {
    if (std::chrono::steady_clock::now() > deadline || !holder_is_exiting(fd, is_mounted))
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

}  // namespace

// The writer's renewals, on a thread of their own. Stopped before the lease's fd closes.
struct VolumeLease::Heartbeat {
  int fd = -1;
  nlohmann::json record;
  std::mutex mutex;  // guards lost; taken alone
  std::optional<std::string> lost;
  std::optional<base::PeriodicTask> task;  // last: stops before the fields it reads

  bool beat() {
    auto why = renew();
    if (!why) return true;
    spdlog::error("{}", *why);
    std::lock_guard lock(mutex);
    lost = std::move(why);
    return false;
  }

  // nullopt when renewed; else why the lease is no longer ours.
  std::optional<std::string> renew() {
    const auto current = read_holder(fd);
    const std::string ours = record.value("mount_id", "");
    if (current && current->mount_id == ours) {
      write_beating_record(fd, record);
      return std::nullopt;
    }
    return "the lease on this volume was taken over" +
           (current ? " by " + by_whom(*current) : std::string(" (wardfs.lease was cleared)")) +
           ": this process no longer holds it";
  }

  bool still_ours() {
    const auto current = read_holder(fd);
    return current && current->mount_id == record.value("mount_id", "");
  }
};

VolumeLease::VolumeLease(VolumeLease&& other) noexcept = default;

VolumeLease::~VolumeLease() {
  if (!heartbeat_) return;
  heartbeat_->task.reset();
  // Cleared, so that the next writer of another host need not wait out our heartbeat.
  if (!heartbeat_->lost && heartbeat_->still_ours()) (void)::ftruncate(fd_.get(), 0);
}

std::optional<std::string> VolumeLease::lost() const {
  if (!heartbeat_) return std::nullopt;
  std::lock_guard lock(heartbeat_->mutex);
  return heartbeat_->lost;
}

VolumeLease::VolumeLease(const std::filesystem::path& cipher_dir, LeaseUse use,
                         const std::string& what, const MountedCheck& is_mounted, bool force) {
  const auto path = cipher_dir / kLeaseFileName;
  fd_ = open_lease_file(path, use);
  if (!fd_) {
    if (use == LeaseUse::read_only_mount && errno == ENOENT) return;
    throw WardError(use == LeaseUse::offline_change ? ErrorKind::io : ErrorKind::mount_failure,
                    "cannot open " + path.string() + ": " + std::strerror(errno));
  }
  const int fd = fd_.get();
  const bool shared = use == LeaseUse::shared_write_mount;
  const bool writer = use == LeaseUse::read_write_mount || use == LeaseUse::offline_change;
  if ((writer || shared) &&
      !lock_waiting_for_exit(fd, shared ? F_RDLCK : F_WRLCK, kWriterByte, path, is_mounted)) {
    refuse_for_holder(cipher_dir, use, what, read_holder(fd));
  }
  const short users = use == LeaseUse::offline_change ? F_WRLCK : F_RDLCK;
  if (!lock_waiting_for_exit(fd, users, kUsersByte, path, is_mounted)) {
    // The writer byte was free (or not asked for): the users byte is held exclusively by
    // an offline change (which wrote its name), or shared by read-only mounts.
    if (use == LeaseUse::offline_change) refuse_for_readers(cipher_dir, what);
    refuse_for_holder(cipher_dir, use, what, read_holder(fd));
  }
  const auto previous = read_holder(fd);
  // Shared mounts write no record (there are many of them), but do not join an exclusive
  // writer of another host whose lock did not reach us either.
  if (shared && previous && alive_without_lock(*previous))
    refuse_beating(cipher_dir, use, *previous);
  if (!writer) return;
  if (previous && alive_without_lock(*previous)) {
    if (!force) refuse_beating(cipher_dir, use, *previous);
    spdlog::warn("taking over the lease of {} from {} (--force)", cipher_dir.string(),
                 by_whom(*previous));
  }
  heartbeat_ = std::make_unique<Heartbeat>();
  heartbeat_->fd = fd;
  heartbeat_->record = holder_record(use, what);
  if (::ftruncate(fd, 0) != 0) spdlog::debug("cannot truncate {}", path.string());
  write_presence_record(fd, heartbeat_->record);
  heartbeat_->task.emplace(kHeartbeatInterval,
                           [hb = heartbeat_.get()](bool) { return hb->beat(); });
}

}  // namespace wardfs::volume
