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

#include <string>

#include "volume/posix_io.h"

namespace wardfs::volume {

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
// replacing anything, so no crash leaves a directory without its id and no one can
// swap the half-built directory for a symlink. `out` receives an O_PATH fd of the new
// directory. -EEXIST if `name` exists.
int make_directory(int parent_fd, const std::string& name, mode_t mode, const Owner& owner,
                   UniqueFd& out);

// Removes the wardfs metadata of directory `dir_fd` (long-name sidecars, leftover temp
// entries) but not its id; -ENOTEMPTY, touching nothing, if it holds any real entry.
int remove_dir_metadata(int dir_fd);

// Removes a half-built directory `name` of `parent_fd` (it holds at most its id).
void remove_leftover_dir(int parent_fd, const std::string& name);

}  // namespace wardfs::volume
