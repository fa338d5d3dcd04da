// The rules for changing the backing tree. The backing directory is not trusted: under
// `allow_other` other users own their own backing directories, and on shared storage
// anyone with write access may plant symlinks or rename entries while the daemon works.
// So every rule here works through directory fds, never follows a symlink, and hands an
// entry over (chown, chmod, contents) only through an fd that provably refers to the
// entry this process just made. The FUSE layer and rekey both call these; nothing else
// creates directories, temp entries or hands entries over.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <string>
#include <vector>

#include "base/posix_io.h"

namespace wardfs::volume {

// Which of the rename flags the backing file system honours. Network file systems do not
// all: the GlusterFS and NFS clients reject RENAME_NOREPLACE and RENAME_EXCHANGE with
// EINVAL. Probed once at mount, and also learned from the first EINVAL, so a volume
// opened without a probe (an offline command, a backing root it may not write) works too.
// One per volume; safe to share between threads.
class BackingFeatures {
 public:
  // Tries both flags on scratch entries in `root_fd` and removes them again. Leaves the
  // defaults (supported) where it cannot write there.
  void probe(int root_fd);
  bool rename_noreplace() const { return rename_noreplace_.load(std::memory_order_relaxed); }
  bool rename_exchange() const { return rename_exchange_.load(std::memory_order_relaxed); }
  void lacks_rename_noreplace() { rename_noreplace_.store(false, std::memory_order_relaxed); }
  void lacks_rename_exchange() { rename_exchange_.store(false, std::memory_order_relaxed); }
  // The equivalents in use instead, one line each, for `wardfs status` and the log.
  std::vector<std::string> fallbacks() const;

 private:
  std::atomic<bool> rename_noreplace_{true};
  std::atomic<bool> rename_exchange_{true};
};

// Moves entry `from` of `from_dir` to `to` in `to_dir`, -EEXIST if `to` exists. Where the
// backing file system lacks RENAME_NOREPLACE: a non-directory by link + unlink
// (volume/rename_intent.h: atomic against any other client; a crash may leave both names,
// which fsck --repair resolves); a directory by a check that `to` is absent, then
// rename(2). For directories the caller holds both directories' entry locks, so no thread
// of this daemon creates `to` in between; rename(2) refuses to replace a non-empty one.
int rename_no_replace(BackingFeatures& features, int from_dir, const std::string& from, int to_dir,
                      const std::string& to);

// rename for the FUSE layer: `flags` 0, RENAME_NOREPLACE (through rename_no_replace) or
// RENAME_EXCHANGE (-EINVAL where the backing file system has none). 0 or -errno.
int rename_entry(BackingFeatures& features, int from_dir, const std::string& from, int to_dir,
                 const std::string& to, unsigned int flags);

// The owner a new entry should end with; -1 keeps what the backing file system gave it.
struct Owner {
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
};

// A fresh name for an entry being built before it is moved into place (wardfs.tmp.*).
std::string temp_entry_name();

// True if `st` describes an entry of type `type` (S_IFDIR, S_IFLNK...) that this process
// made a moment ago: owned by our effective uid and with no other name. Someone who
// swapped in their own entry, a hard link or a symlink fails this.
bool is_fresh_entry(const struct stat& st, mode_t type);

// Opens (O_PATH, symlinks not followed) the entry this process just created as `name`
// in `dir_fd`, and checks it is still that entry. -EIO with a log line if it was swapped.
// `st`, if given, receives its stat.
int open_fresh_entry(int dir_fd, const std::string& name, mode_t type, UniqueFd& out,
                     struct stat* st = nullptr);

// Gives the entry behind `fd` to `owner` (only the ids that differ from `st`), through
// the fd. Updates st's ids and mode (a chown may clear setuid/setgid). 0 or -errno.
int hand_over(int fd, const Owner& owner, struct stat& st);

// Makes directory `name` in `parent_fd` with a new directory id, owned by `owner`, mode
// `mode`: built under a temp name in a private mode and renamed into place without
// replacing anything (rename_no_replace), so no crash leaves a directory without its id
// and no one can swap the half-built directory for a symlink. `out` receives an O_PATH fd
// of the new directory. -EEXIST if `name` exists.
int make_directory(BackingFeatures& features, int parent_fd, const std::string& name, mode_t mode,
                   const Owner& owner, UniqueFd& out);

// Removes the wardfs metadata of directory `dir_fd` (long-name sidecars, leftover temp
// entries) but not its id; -ENOTEMPTY, touching nothing, if it holds any real entry.
int remove_dir_metadata(int dir_fd);

// Removes a half-built directory `name` of `parent_fd` (it holds at most its id).
void remove_leftover_dir(int parent_fd, const std::string& name);

}  // namespace wardfs::volume
