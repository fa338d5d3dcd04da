#include "volume/lease.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "crypto/config.h"
#include "crypto/errors.h"

namespace wardfs::volume {

namespace {

constexpr off_t kWriterByte = 0;
constexpr off_t kUsersByte = 1;
constexpr std::size_t kMaxHolderBytes = 4096;

// What the writer wrote about itself into the lease file.
struct Holder {
  std::string host;
  long pid = 0;
  std::string command;  // "mount", or the offline command
  std::string mount_point;
  std::string started;
};

std::string host_name() {
  std::array<char, 256> name{};
  if (::gethostname(name.data(), name.size() - 1) != 0) return "?";
  return name.data();
}

// True when taken, false when another open file holds a conflicting lock.
bool try_lock(int fd, short type, off_t byte, const std::filesystem::path& path) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  while (::fcntl(fd, F_OFD_SETLK, &fl) != 0) {
    if (errno == EAGAIN || errno == EACCES) return false;
    if (errno != EINTR)
      throw WardError(ErrorKind::io, "cannot lock " + path.string() + ": " + std::strerror(errno));
  }
  return true;
}

void write_holder(int fd, LeaseUse use, const std::string& what) {
  const bool mount = use != LeaseUse::offline_change;
  const nlohmann::json holder = {{"host", host_name()},
                                 {"pid", static_cast<long>(::getpid())},
                                 {"command", mount ? "mount" : what},
                                 {"mount_point", mount ? what : ""},
                                 {"started", crypto::utc_now_iso8601()}};
  const std::string text = holder.dump() + "\n";
  // Only for the messages of those refused: a failure here costs nothing else.
  if (::ftruncate(fd, 0) == 0) (void)pwrite_full(fd, text.data(), text.size(), 0);
}

std::optional<Holder> read_holder(int fd) {
  std::string text(kMaxHolderBytes, '\0');
  const ssize_t n = pread_full(fd, text.data(), text.size(), 0);
  if (n <= 0) return std::nullopt;
  text.resize(static_cast<std::size_t>(n));
  const auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  Holder h;
  h.host = j.value("host", "?");
  h.pid = j.value("pid", 0L);
  h.command = j.value("command", "");
  h.mount_point = j.value("mount_point", "");
  h.started = j.value("started", "");
  if (h.command.empty()) return std::nullopt;
  return h;
}

std::string by_whom(const Holder& h) {
  return "pid " + std::to_string(h.pid) + " on host " + h.host +
         (h.started.empty() ? "" : ", since " + h.started);
}

// The refusal when the writer byte (or, for a mount, the users byte) is taken.
[[noreturn]] void refuse_for_holder(const std::filesystem::path& cipher_dir, LeaseUse use,
                                    const std::string& what, const std::optional<Holder>& h) {
  const std::string volume = "volume " + cipher_dir.string();
  const ErrorKind kind =
      use == LeaseUse::offline_change ? ErrorKind::usage : ErrorKind::mount_failure;
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
  throw WardError(kind, volume + " is already mounted read-write at " + h->mount_point + " by " +
                            by_whom(*h) +
                            "; a second read-write mount is refused (mount it with -o ro, or "
                            "unmount " +
                            h->mount_point + " first)");
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
  while (!try_lock(fd, type, byte, path)) {
    if (std::chrono::steady_clock::now() > deadline || !holder_is_exiting(fd, is_mounted))
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return true;
}

}  // namespace

VolumeLease::VolumeLease(const std::filesystem::path& cipher_dir, LeaseUse use,
                         const std::string& what, const MountedCheck& is_mounted) {
  const auto path = cipher_dir / kLeaseFileName;
  fd_ = open_lease_file(path, use);
  if (!fd_) {
    if (use == LeaseUse::read_only_mount && errno == ENOENT) return;
    throw WardError(use == LeaseUse::offline_change ? ErrorKind::io : ErrorKind::mount_failure,
                    "cannot open " + path.string() + ": " + std::strerror(errno));
  }
  const int fd = fd_.get();
  const bool writer = use != LeaseUse::read_only_mount;
  if (writer && !lock_waiting_for_exit(fd, F_WRLCK, kWriterByte, path, is_mounted))
    refuse_for_holder(cipher_dir, use, what, read_holder(fd));
  const short users = use == LeaseUse::offline_change ? F_WRLCK : F_RDLCK;
  if (!lock_waiting_for_exit(fd, users, kUsersByte, path, is_mounted)) {
    // The writer byte was free (or not asked for): the users byte is held exclusively by
    // an offline change (which wrote its name), or shared by read-only mounts.
    if (use == LeaseUse::offline_change) refuse_for_readers(cipher_dir, what);
    refuse_for_holder(cipher_dir, use, what, read_holder(fd));
  }
  if (writer) write_holder(fd, use, what);
}

}  // namespace wardfs::volume
