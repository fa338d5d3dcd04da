#include "volume/backing_tree.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string_view>
#include <vector>

#include "crypto/name_codec.h"
#include "volume/names.h"
#include "volume/rename_intent.h"
#include "volume/volume.h"

namespace wardfs::volume {

namespace {
// A directory is built in this mode: no one else may enter it or rename it away (moving
// a directory needs write permission on it), so the fd opened after mkdirat() is ours.
constexpr mode_t kBuildDirMode = 0700;

// How a file system without a rename flag answers it (the FUSE kernel module turns a
// server's ENOSYS into EINVAL).
bool flag_unsupported(int err) { return err == EINVAL || err == ENOSYS || err == EOPNOTSUPP; }

// RENAME_NOREPLACE by hand for a directory (link() cannot move one). The caller's locks
// keep this daemon's threads away from `to` between the check and the rename; should
// anyone else create it meanwhile, rename(2) still refuses a directory over anything but
// an empty directory, and every directory wardfs makes holds its id before it gets a name.
int check_then_rename(int from_dir, const std::string& from, int to_dir, const std::string& to) {
  struct stat st {};
  if (::fstatat(to_dir, to.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) return -EEXIST;
  if (errno != ENOENT) return -errno;
  if (::renameat(from_dir, from.c_str(), to_dir, to.c_str()) == 0) return 0;
  const int err = errno;
  // The target appeared after the check: a directory, or a non-directory in a
  // directory's way.
  if (err == ENOTEMPTY || err == EEXIST || err == ENOTDIR || err == EISDIR) return -EEXIST;
  return -err;
}

// Everything but a directory moves by link + unlink, which refuses an existing name
// atomically, even one another client made a moment ago.
int move_without_noreplace(int from_dir, const std::string& from, int to_dir,
                           const std::string& to) {
  const int rc = link_then_unlink(from_dir, from, to_dir, to);
  // A directory, or a file system without hard links.
  if (rc == -EISDIR || rc == -EPERM || rc == -EOPNOTSUPP || rc == -ENOSYS)
    return check_then_rename(from_dir, from, to_dir, to);
  return rc;
}

int report_swapped(const std::string& name) {
  spdlog::error(
      "backing entry {} changed while wardfs was creating it: someone else writes to the "
      "backing directory (make it private: chmod 700 on the backing root)",
      name);
  return -EIO;
}
}  // namespace

std::string temp_entry_name() {
  std::array<std::uint8_t, 12> rnd{};
  crypto::random_fill(rnd);
  return std::string(kTempPrefix) + crypto::hex_encode(rnd);
}

void BackingFeatures::probe(int root_fd) {
  const std::string a = temp_entry_name();
  const std::string b = temp_entry_name();
  for (const auto& name : {a, b}) {
    UniqueFd fd(::openat(root_fd, name.c_str(),
                         O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) {  // read-only or not ours to write: learn from the first EINVAL instead
      ::unlinkat(root_fd, a.c_str(), 0);
      return;
    }
  }
  // Into an absent name: the GlusterFS client says EEXIST, not EINVAL, for an existing one.
  const std::string c = temp_entry_name();
  if (::renameat2(root_fd, a.c_str(), root_fd, c.c_str(), RENAME_NOREPLACE) != 0 &&
      flag_unsupported(errno)) {
    lacks_rename_noreplace();
    ::renameat(root_fd, a.c_str(), root_fd, c.c_str());
  }
  if (::renameat2(root_fd, b.c_str(), root_fd, c.c_str(), RENAME_EXCHANGE) != 0 &&
      flag_unsupported(errno))
    lacks_rename_exchange();
  for (const auto& name : {a, b, c}) ::unlinkat(root_fd, name.c_str(), 0);
}

std::vector<std::string> BackingFeatures::fallbacks() const {
  std::vector<std::string> out;
  if (!rename_noreplace())
    out.emplace_back(
        "no RENAME_NOREPLACE: rename -n and rekey move files by link + unlink; mkdir and "
        "directories check the name, then rename");
  if (!rename_exchange())
    out.emplace_back("no RENAME_EXCHANGE: an exchanging rename fails with EINVAL");
  return out;
}

int rename_no_replace(BackingFeatures& features, int from_dir, const std::string& from, int to_dir,
                      const std::string& to) {
  if (features.rename_noreplace()) {
    if (::renameat2(from_dir, from.c_str(), to_dir, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
    if (!flag_unsupported(errno)) return -errno;
    spdlog::info(
        "the backing file system rejects RENAME_NOREPLACE: moving files by link + unlink, "
        "directories by a check of the name, then rename");
    features.lacks_rename_noreplace();
  }
  return move_without_noreplace(from_dir, from, to_dir, to);
}

int rename_entry(BackingFeatures& features, int from_dir, const std::string& from, int to_dir,
                 const std::string& to, unsigned int flags) {
  if (flags == 0) return ::renameat(from_dir, from.c_str(), to_dir, to.c_str()) == 0 ? 0 : -errno;
  if (flags == RENAME_NOREPLACE) return rename_no_replace(features, from_dir, from, to_dir, to);
  // An exchange has no safe equivalent (two renames through a temp name would let a crash
  // leave one entry under that name): callers get the backing file system's EINVAL.
  if ((flags & RENAME_EXCHANGE) != 0 && !features.rename_exchange()) return -EINVAL;
  if (::renameat2(from_dir, from.c_str(), to_dir, to.c_str(), flags) == 0) return 0;
  const int err = errno;
  if ((flags & RENAME_EXCHANGE) != 0 && flag_unsupported(err)) features.lacks_rename_exchange();
  return -err;
}

bool is_fresh_entry(const struct stat& st, mode_t type) {
  if ((st.st_mode & S_IFMT) != type) return false;
  if (type == S_IFDIR) return (st.st_mode & 0777) == kBuildDirMode;
  // A hard link planted in place of the new entry has at least two names.
  return st.st_nlink == 1;
}

int open_fresh_entry(int dir_fd, const std::string& name, mode_t type, UniqueFd& out,
                     struct stat* st) {
  out.reset(::openat(dir_fd, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!out) return errno == ENOENT ? report_swapped(name) : -errno;
  struct stat made {};
  if (::fstatat(out.get(), "", &made, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return -errno;
  if (!is_fresh_entry(made, type)) {
    out.reset();
    return report_swapped(name);
  }
  if (st != nullptr) *st = made;
  return 0;
}

int hand_over(int fd, const Owner& owner, struct stat& st) {
  const uid_t uid = owner.uid == st.st_uid ? static_cast<uid_t>(-1) : owner.uid;
  const gid_t gid = owner.gid == st.st_gid ? static_cast<gid_t>(-1) : owner.gid;
  if (uid == static_cast<uid_t>(-1) && gid == static_cast<gid_t>(-1)) return 0;
  // Only what this process owns is given away: an entry someone else owns was not made
  // here (or the backing store maps our ids, e.g. NFS root_squash), and is left as it is.
  if (st.st_uid != ::geteuid()) return 0;
  if (::fchownat(fd, "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return -errno;
  struct stat after {};
  if (::fstatat(fd, "", &after, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return -errno;
  st.st_uid = after.st_uid;
  st.st_gid = after.st_gid;
  st.st_mode = after.st_mode;
  return 0;
}

int make_directory(BackingFeatures& features, int parent_fd, const std::string& name, mode_t mode,
                   const Owner& owner, UniqueFd& out) {
  const std::string temp = temp_entry_name();
  if (::mkdirat(parent_fd, temp.c_str(), kBuildDirMode) != 0) return -errno;
  UniqueFd dir(::openat(parent_fd, temp.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  int rc = dir ? 0 : report_swapped(temp);
  struct stat st {};
  if (rc == 0 && ::fstat(dir.get(), &st) != 0) rc = -errno;
  if (rc == 0 && !is_fresh_entry(st, S_IFDIR)) rc = report_swapped(temp);
  if (rc == 0) rc = write_new_dir_id(dir.get());
  // The backing file system set S_ISGID if the parent has it, as a local one would.
  if (rc == 0 && ::fchmod(dir.get(), (mode & 01777) | (st.st_mode & S_ISGID)) != 0) rc = -errno;
  // Before the rename, so the directory appears with its owner.
  if (rc == 0) {
    if (const int err = hand_over(dir.get(), owner, st); err != 0) {
      spdlog::warn("cannot give new directory {} to uid {}: {}", name, owner.uid,
                   std::strerror(-err));
    }
  }
  if (rc == 0) rc = rename_no_replace(features, parent_fd, temp, parent_fd, name);
  if (rc == 0) out.reset(::openat(dir.get(), ".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (rc == 0 && !out) rc = -errno;
  if (rc != 0) {
    if (dir) ::unlinkat(dir.get(), std::string(kDirIdFileName).c_str(), 0);
    ::unlinkat(parent_fd, temp.c_str(), AT_REMOVEDIR);
  }
  return rc;
}

void remove_leftover_dir(int parent_fd, const std::string& name) {
  UniqueFd dir(::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (dir) ::unlinkat(dir.get(), std::string(kDirIdFileName).c_str(), 0);
  ::unlinkat(parent_fd, name.c_str(), AT_REMOVEDIR);
}

int remove_dir_metadata(int dir_fd) {
  // An encrypted directory is empty when only wardfs metadata remains in it. The
  // directory id goes last, by the caller, once nothing else can fail.
  UniqueFd fd(::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return -errno;
  DIR* dir = ::fdopendir(fd.get());
  if (dir == nullptr) return -errno;
  fd.release();
  std::vector<std::string> metadata;
  int rc = 0;
  while (const dirent* d = ::readdir(dir)) {
    const std::string_view n = d->d_name;
    if (n == "." || n == ".." || n == kDirIdFileName) continue;
    if (!is_metadata_entry(n) || crypto::is_long_name(n)) {
      rc = -ENOTEMPTY;
      break;
    }
    metadata.emplace_back(n);
  }
  const int dfd = ::dirfd(dir);
  for (const auto& m : rc == 0 ? metadata : std::vector<std::string>{}) {
    // A directory here is one a crashed mkdir left behind.
    if (::unlinkat(dfd, m.c_str(), 0) != 0 && errno == EISDIR) remove_leftover_dir(dfd, m);
  }
  ::closedir(dir);
  return rc;
}

}  // namespace wardfs::volume
