// Backing space held back for writes the kernel has already accepted. With the writeback
// cache a write() returns once its bytes are in the kernel's page cache; the daemon sees
// them later, and a full backing disk would then lose them with nothing left to tell the
// writer but a later fsync() or close(). A daemon that holds a reserve as large as what
// the kernel may hold dirty for its mount can always land those bytes: on ENOSPC it gives
// part of the reserve back and writes again (fuse/writeback_space.h decides when).
//
// The reserve is one preallocated file, wardfs.reserve, in the backing root. Only the
// mount holding the writer lease makes one. The backing directory is untrusted: whatever
// is found under that name is removed (never opened), the file is created O_EXCL without
// following links, and at the end it is unlinked only if the name still is our file.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>

#include "base/posix_io.h"

namespace wardfs::volume {

inline constexpr std::string_view kReserveFileName = "wardfs.reserve";

// Whether the file system of `fd` is a local one (ext4, XFS, Btrfs, tmpfs, F2FS, ZFS,
// bcachefs), where a reserve is space no one else takes and an unlinked open file still
// answers through a path. On a network or FUSE file system (NFS, GlusterFS, CephFS,
// Lustre, sshfs...) other clients fill the same space and a quota may apply, so a
// reserve promises nothing there (the mount warns). `name` gets the f_type in hex.
bool is_local_file_system(int fd, std::string& name);

class SpaceReserve {
 public:
  SpaceReserve() = default;
  ~SpaceReserve() { remove(); }
  SpaceReserve(const SpaceReserve&) = delete;
  SpaceReserve& operator=(const SpaceReserve&) = delete;

  // Makes the reserve file in `root_fd` (a directory fd, O_PATH will do) and allocates
  // `bytes` in it. 0, or -errno with nothing left behind: -ENOSPC when the file system
  // has not that much free, -EOPNOTSUPP when it cannot preallocate (some network file
  // systems), -EEXIST when something keeps reappearing under the name.
  int create(int root_fd, std::uint64_t bytes);
  bool active() const;
  // Gives up to `bytes` back to the file system (never more than is held). Returns what
  // was given back: 0 once the reserve is spent.
  std::uint64_t release(std::uint64_t bytes);
  // Tries to hold the whole reserve again; true when it does.
  bool refill();
  std::uint64_t held() const;
  std::uint64_t target() const { return target_; }
  // Unlinks the reserve file (if the name still is ours) and frees its space.
  void remove();

 private:
  // Lock order: a leaf; held across the fallocate/ftruncate of the reserve file only.
  mutable std::mutex mutex_;
  UniqueFd root_;  // O_PATH dup of the backing root
  UniqueFd file_;
  dev_t dev_ = 0;
  ino_t ino_ = 0;
  std::uint64_t target_ = 0;
  std::uint64_t held_ = 0;
};

}  // namespace wardfs::volume
