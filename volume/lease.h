// Who is using a volume right now: the one rule that keeps a daemon and an offline key
// command (rotate, rekey, retire), or two read-write daemons, off one backing directory
// at the same time. Both the daemon and the CLI take a VolumeLease; nobody else decides.
//
// The lease is a pair of OFD byte-range locks on wardfs.lease in the backing root
// (wardfs.lock is ConfigLock's, taken briefly and blocking, so it cannot serve here):
//   byte 0, "writer":  read-write mount and offline change: exclusive; -o shared mount:
//                      shared
//   byte 1, "users":   every mount: shared; offline change: exclusive
// so a second read-write mount is refused, -o shared mounts join each other but not an
// exclusive writer, read-only mounts may join any, and an offline change excludes every
// mount and is excluded by any. The kernel drops
// the locks with the last fd, so a daemon killed with SIGKILL leaves no stale lease. The
// writer also writes who it is into the file (JSON: host, pid, mount id, heartbeat), for
// the refusal messages, and renews the heartbeat every kHeartbeatInterval.
//
// The heartbeat guards backends whose locks do not reach other machines (a FUSE client
// such as sshfs, NFS with `nolock`): a writer of another host whose heartbeat is younger
// than kHeartbeatTimeout keeps the lease even where the lock was free; after that (a
// crashed node), or with `force`, it is taken over. The old holder sees its mount id
// replaced at its next renewal and reports the lease lost (lost()), so its daemon stops
// instead of writing beside the new one.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "base/posix_io.h"
#include "volume/presence.h"

namespace wardfs::volume {

inline constexpr std::string_view kLeaseFileName = "wardfs.lease";

enum class LeaseUse {
  read_only_mount,
  read_write_mount,
  shared_write_mount,  // -o shared: read-write beside other shared mounts, not beside
                       // an exclusive one (writer byte shared)
  offline_change,      // an offline rotate, rekey or retire run by the CLI
};

class VolumeLease {
 public:
  // Tells whether a mount point of this host is mounted right now.
  using MountedCheck = std::function<bool(const std::string& mount_point)>;

  // Takes the lease for `use`, or throws WardError naming who holds it: mount_failure
  // for a mount, usage for an offline change. `what` is the mount point of a mount or
  // the command's name ("rotate") for an offline change. With `is_mounted`, a lease held
  // by a daemon of this host whose mount is already gone (it is exiting: `umount` returns
  // before the daemon does) is waited for, up to a few seconds, instead of refused.
  // `force` takes over a lease whose holder on another host still beats (never one whose
  // lock is held: the backend vouches that holder is alive).
  VolumeLease(const std::filesystem::path& cipher_dir, LeaseUse use, const std::string& what,
              const MountedCheck& is_mounted = nullptr, bool force = false);
  ~VolumeLease();  // a writer clears its record if it is still the holder
  VolumeLease(VolumeLease&&) noexcept;
  VolumeLease& operator=(VolumeLease&&) = delete;

  // False only for a read-only mount of a backing directory where the lease file could
  // not be created (a read-only filesystem): nobody can change such a volume anyway.
  bool held() const { return static_cast<bool>(fd_); }

  // Why this writer no longer holds the lease (another host took it over), once its
  // heartbeat found out; nullopt while it holds it.
  std::optional<std::string> lost() const;

 private:
  struct Heartbeat;
  UniqueFd fd_;
  std::unique_ptr<Heartbeat> heartbeat_;  // writers only
};

}  // namespace wardfs::volume
