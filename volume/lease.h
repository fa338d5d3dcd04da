// Who is using a volume right now: the one rule that keeps a daemon and an offline key
// command (rotate, rekey, retire), or two read-write daemons, off one backing directory
// at the same time. Both the daemon and the CLI take a VolumeLease; nobody else decides.
//
// The lease is a pair of OFD byte-range locks on wardfs.lease in the backing root
// (wardfs.lock is ConfigLock's, taken briefly and blocking, so it cannot serve here):
//   byte 0, "writer":  read-write mount and offline change: exclusive
//   byte 1, "users":   every mount: shared; offline change: exclusive
// so a second read-write mount is refused, read-only mounts may join a read-write one,
// and an offline change excludes every mount and is excluded by any. The kernel drops
// the locks with the last fd, so a daemon killed with SIGKILL leaves no stale lease. The
// writer also writes who it is into the file (JSON), for the refusal messages.
#pragma once

#include <filesystem>
#include <functional>
#include <string>
#include <string_view>

#include "volume/posix_io.h"

namespace wardfs::volume {

inline constexpr std::string_view kLeaseFileName = "wardfs.lease";

enum class LeaseUse {
  read_only_mount,
  read_write_mount,
  offline_change,  // an offline rotate, rekey or retire run by the CLI
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
  VolumeLease(const std::filesystem::path& cipher_dir, LeaseUse use, const std::string& what,
              const MountedCheck& is_mounted = nullptr);
  VolumeLease(VolumeLease&&) = default;
  VolumeLease& operator=(VolumeLease&&) = default;

  // False only for a read-only mount of a backing directory where the lease file could
  // not be created (a read-only filesystem): nobody can change such a volume anyway.
  bool held() const { return static_cast<bool>(fd_); }

 private:
  UniqueFd fd_;
};

}  // namespace wardfs::volume
