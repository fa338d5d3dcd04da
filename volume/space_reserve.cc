#include "volume/space_reserve.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <string>

namespace wardfs::volume {

namespace {

const std::string kName(kReserveFileName);

// What the file system really holds for `fd`, at most `cap`: a fallocate that ran out of
// space may have allocated part of what it was asked for.
std::uint64_t allocated(int fd, std::uint64_t cap) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return 0;
  return std::min(cap, static_cast<std::uint64_t>(st.st_blocks) * 512U);
}

}  // namespace

bool is_local_file_system(int fd, std::string& name) {
  struct statfs fs {};
  if (::fstatfs(fd, &fs) != 0) {
    name = "unknown";
    return false;
  }
  char hex[24];
  std::snprintf(hex, sizeof hex, "0x%lx", static_cast<unsigned long>(fs.f_type));
  name = hex;
  switch (static_cast<unsigned long>(fs.f_type)) {
    case EXT4_SUPER_MAGIC:  // ext2, ext3 and ext4
    case XFS_SUPER_MAGIC:
    case BTRFS_SUPER_MAGIC:
    case TMPFS_MAGIC:
    case F2FS_SUPER_MAGIC:
    case 0x2fc12fc1UL:  // ZFS
    case 0xca451a4eUL:  // bcachefs
      return true;
    default:
      return false;
  }
}

int SpaceReserve::create(int root_fd, std::uint64_t bytes) {
  remove();
  std::lock_guard lock(mutex_);
  UniqueFd root(::openat(root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root) return -errno;
  // A leftover of a daemon that died, or something planted: removed, never opened. A
  // directory under the name fails here, and O_EXCL below fails for anything that
  // reappears in between.
  if (::unlinkat(root.get(), kName.c_str(), 0) != 0 && errno != ENOENT) return -errno;
  UniqueFd file(::openat(root.get(), kName.c_str(),
                         O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!file) return -errno;
  struct stat st {};
  int rc = ::fstat(file.get(), &st) == 0 ? 0 : -errno;
  if (rc == 0 && ::fallocate(file.get(), 0, 0, static_cast<off_t>(bytes)) != 0) rc = -errno;
  if (rc != 0) {
    // Ours (created O_EXCL a moment ago, and checked by inode before it goes).
    struct stat now {};
    if (::fstatat(root.get(), kName.c_str(), &now, AT_SYMLINK_NOFOLLOW) == 0 &&
        now.st_dev == st.st_dev && now.st_ino == st.st_ino)
      ::unlinkat(root.get(), kName.c_str(), 0);
    return rc;
  }
  root_ = std::move(root);
  file_ = std::move(file);
  dev_ = st.st_dev;
  ino_ = st.st_ino;
  target_ = bytes;
  held_ = bytes;
  return 0;
}

bool SpaceReserve::active() const {
  std::lock_guard lock(mutex_);
  return static_cast<bool>(file_);
}

std::uint64_t SpaceReserve::release(std::uint64_t bytes) {
  std::lock_guard lock(mutex_);
  if (!file_ || held_ == 0) return 0;
  const std::uint64_t keep = held_ - std::min(bytes, held_);
  if (::ftruncate(file_.get(), static_cast<off_t>(keep)) != 0) return 0;
  const std::uint64_t given = held_ - keep;
  held_ = keep;
  return given;
}

bool SpaceReserve::refill() {
  std::lock_guard lock(mutex_);
  if (!file_) return false;
  if (held_ == target_) return true;
  if (::fallocate(file_.get(), 0, 0, static_cast<off_t>(target_)) == 0) {
    held_ = target_;
    return true;
  }
  held_ = std::max(held_, allocated(file_.get(), target_));
  return false;
}

std::uint64_t SpaceReserve::held() const {
  std::lock_guard lock(mutex_);
  return held_;
}

void SpaceReserve::remove() {
  std::lock_guard lock(mutex_);
  if (!file_) return;
  struct stat now {};
  if (::fstatat(root_.get(), kName.c_str(), &now, AT_SYMLINK_NOFOLLOW) == 0 && now.st_dev == dev_ &&
      now.st_ino == ino_)
    ::unlinkat(root_.get(), kName.c_str(), 0);
  file_.reset();
  root_.reset();
  held_ = target_ = 0;
}

}  // namespace wardfs::volume
