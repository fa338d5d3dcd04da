// What the kernel's mount table (/proc/self/mountinfo) says about a mount point, read
// without touching the mounted filesystem: a dead or not yet serving FUSE mount would
// block or fail a stat.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wardfs::daemon {

// The "major:minor" device of the filesystem mounted at `path`, if one is. Resolves
// symlinks in `path` first, which stats it: not for our own mount before it serves.
std::optional<std::string> mounted_device(const std::filesystem::path& path);

// The type of the filesystem on top at `path` ("fuse.wardfs" for a wardfs mount), if
// something is mounted there; symlinks resolved as by mounted_device.
std::optional<std::string> mounted_fstype(const std::filesystem::path& path);

// The uid that mounted the FUSE filesystem at `path` (its user_id= option), as the
// kernel states it: whom a client may trust to serve that mount.
std::optional<uid_t> fuse_mount_owner(const std::filesystem::path& path);

// What mounted_fstype says of a wardfs mount.
inline constexpr std::string_view kWardfsFsType = "fuse.wardfs";

// A wardfs mount as the mount table lists it (alive or not: a dead daemon's mount stays
// listed until it is detached).
struct ListedMount {
  std::string cipher_dir;  // the mount's source
  std::string mount_point;
  bool read_only = false;
};

// Every wardfs mount in this mount namespace, in mount order.
std::vector<ListedMount> wardfs_mounts();

// Lets the kernel read ahead `kib` KiB on the FUSE mount at `canonical_path` (resolved
// before mounting: a stat of it now would wait on this very daemon) when its backing
// device info's read_ahead_kb is lower. The kernel caps a FUSE mount's readahead at
// 128 KiB whatever the daemon asks for in INIT, so sequential reads arrive as 128 KiB
// requests; larger ones halve the requests per byte. Needs root; false if not done.
bool widen_readahead(const std::filesystem::path& canonical_path, unsigned kib);

}  // namespace wardfs::daemon
