// Requests that add, remove or move directory entries.
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <mutex>

#include "fuse/filesystem.h"
#include "volume/backing_tree.h"

namespace wardfs::fuse {

namespace {
// What the backing entry `backing` of `dir_fd` (with `backing` empty: the link `dir_fd`
// itself, an O_PATH fd) points to if it is a symlink whose target lives in a sidecar
// (docs/FORMAT.md §7.1); empty for anything else.
std::string long_target_of(int dir_fd, const std::string& backing) {
  char buf[PATH_MAX];
  const ssize_t n = ::readlinkat(dir_fd, backing.c_str(), buf, sizeof buf);
  if (n <= 0) return {};
  std::string target(buf, static_cast<std::size_t>(n));
  return crypto::is_target_sidecar_name(target) ? target : std::string();
}
}  // namespace

void WardFs::lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  fuse_entry_param e{};
  Inode& dir = inode_of(parent);
  if (dir.take_listed_bare()) listing_attrs_.note_looked_up();
  const int rc = lookup_entry(dir, name, e);
  if (rc == -ENOENT) {
    // A negative entry lets the kernel cache "not there" like any local filesystem;
    // not where other mounts create names: a name made there must open here at once
    // (close-to-open), not after the timeout.
    e.ino = 0;
    e.entry_timeout = follows_other_mounts() ? 0.0 : options_.entry_timeout;
    fuse_reply_entry(req, &e);
  } else if (rc != 0) {
    fuse_reply_err(req, -rc);
  } else {
    fuse_reply_entry(req, &e);
  }
}

void WardFs::mknod(fuse_req_t req, fuse_ino_t parent_ino, const char* name, mode_t mode,
                   dev_t rdev) {
  Inode& parent = inode_of(parent_ino);
  std::lock_guard lock(parent.entries_mutex);
  volume::ResolvedName r;
  int rc = resolve_in(parent, name, r);
  if (rc == 0 && r.exists) rc = -EEXIST;
  if (rc == 0) rc = names_.write_sidecar(parent.fd(), r);
  // The new entry's fd comes from its creation (O_EXCL) or is checked to be the entry
  // just made: never a name someone may have swapped meanwhile.
  UniqueFd fd;
  if (rc == 0 && S_ISREG(mode)) {
    fd.reset(::openat(parent.fd(), r.backing.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                      mode & 07777));
    rc = fd ? volume::FileContent(volume_).create(fd.get()) : -errno;
  } else if (rc == 0) {
    rc = ::mknodat(parent.fd(), r.backing.c_str(), mode, rdev) == 0
             ? volume::open_fresh_entry(parent.fd(), r.backing, mode & S_IFMT, fd)
             : -errno;
  }
  fuse_entry_param e{};
  if (rc == 0) rc = publish_new_entry(req, parent, name, std::move(fd), e);
  if (rc != 0) {
    if (rc != -EEXIST) names_.remove_sidecar(parent.fd(), r);
    fuse_reply_err(req, -rc);
    return;
  }
  fuse_reply_entry(req, &e);
}

void WardFs::mkdir(fuse_req_t req, fuse_ino_t parent_ino, const char* name, mode_t mode) {
  Inode& parent = inode_of(parent_ino);
  std::lock_guard lock(parent.entries_mutex);
  volume::ResolvedName r;
  int rc = resolve_in(parent, name, r);
  if (rc == 0 && r.exists) rc = -EEXIST;
  if (rc == 0) rc = names_.write_sidecar(parent.fd(), r);
  UniqueFd fd;
  if (rc == 0)
    rc = volume::make_directory(volume_.backing_features(), parent.fd(), r.backing, mode,
                                owner_for(req, parent), fd);
  fuse_entry_param e{};
  if (rc == 0) rc = entry_from_fd(parent, name, std::move(fd), e);
  if (rc != 0) {
    if (rc != -EEXIST) names_.remove_sidecar(parent.fd(), r);
    fuse_reply_err(req, -rc);
    return;
  }
  audit_.change(req, "mkdir", child_path(parent, name));
  fuse_reply_entry(req, &e);
}

void WardFs::symlink(fuse_req_t req, const char* target, fuse_ino_t parent_ino, const char* name) {
  Inode& parent = inode_of(parent_ino);
  std::lock_guard lock(parent.entries_mutex);
  volume::ResolvedName r;
  int rc = resolve_in(parent, name, r);
  if (rc == 0 && r.exists) rc = -EEXIST;
  // Both sidecars (a long name's, a long target's) before the link appears.
  std::string sealed;
  if (rc == 0) rc = names_.make_symlink_target(parent.fd(), target, sealed);
  if (rc == 0) rc = names_.write_sidecar(parent.fd(), r);
  UniqueFd fd;
  bool linked = false;
  if (rc == 0) {
    linked = ::symlinkat(sealed.c_str(), parent.fd(), r.backing.c_str()) == 0;
    rc = linked ? volume::open_fresh_entry(parent.fd(), r.backing, S_IFLNK, fd) : -errno;
  }
  fuse_entry_param e{};
  if (rc == 0) rc = publish_new_entry(req, parent, name, std::move(fd), e);
  if (rc != 0) {
    if (rc != -EEXIST) names_.remove_sidecar(parent.fd(), r);
    if (!linked && !sealed.empty()) names_.drop_target_sidecar(parent.fd(), sealed);
    fuse_reply_err(req, -rc);
    return;
  }
  fuse_reply_entry(req, &e);
}

void WardFs::link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent_ino, const char* newname) {
  Inode& inode = inode_of(ino);
  Inode& parent = inode_of(newparent_ino);
  std::lock_guard lock(parent.entries_mutex);
  volume::ResolvedName r;
  int rc = resolve_in(parent, newname, r);
  if (rc == 0 && r.exists) rc = -EEXIST;
  if (rc == 0) rc = names_.write_sidecar(parent.fd(), r);
  if (rc == 0 && S_ISLNK(inode.type)) rc = share_link_target(inode, parent);
  std::string proc;
  if (rc == 0) rc = proc_path(inode, proc);
  if (rc == 0 &&
      ::linkat(AT_FDCWD, proc.c_str(), parent.fd(), r.backing.c_str(), AT_SYMLINK_FOLLOW) != 0) {
    rc = -errno;
  }
  // The new name is another name of `inode`: its fd serves, no lookup of a name that
  // someone may have swapped meanwhile.
  UniqueFd fd;
  if (rc == 0) {
    fd.reset(::fcntl(fd_of(inode), F_DUPFD_CLOEXEC, 0));
    if (!fd) rc = -errno;
  }
  fuse_entry_param e{};
  if (rc == 0) rc = entry_from_fd(parent, newname, std::move(fd), e);
  if (rc != 0) {
    if (rc != -EEXIST) names_.remove_sidecar(parent.fd(), r);
    fuse_reply_err(req, -rc);
    return;
  }
  audit_.change(req, "link", child_path(parent, newname), {{"target", inode.path()}});
  fuse_reply_entry(req, &e);
}

// The kernel knows the file it unlinks. If its inode has no fd yet, it takes `fd` (the
// file's, `st` its stat): the backing file's last reference then goes with the kernel's
// FORGET, so the backing filesystem frees it there and not in the caller's unlink (rm -rf
// waited on ext4 freeing each inode), and an fd the caller still holds reaches the file.
void WardFs::hold_before_unlink(const struct stat& st, UniqueFd fd) {
  if (Inode* inode = inodes_.find(st.st_dev, st.st_ino)) inodes_.adopt_fd(*inode, std::move(fd));
}

void WardFs::unlink(fuse_req_t req, fuse_ino_t parent_ino, const char* name) {
  Inode& parent = inode_of(parent_ino);
  std::lock_guard lock(parent.entries_mutex);
  crypto::DirId dir_id{};
  int rc = dir_id_of(parent, dir_id);
  volume::ResolvedName r;
  // With one key generation the name has one encoding: unlinkat() itself reports a
  // missing entry (ENOENT) or a directory (EISDIR), no probe first.
  if (rc == 0 && !names_.encode_for_create(dir_id, name, r)) {
    rc = names_.resolve(parent.fd(), dir_id, name, r);
    if (rc == 0 && !r.exists) rc = -ENOENT;
  }
  // One O_PATH open tells the entry's type and links (empty: let unlinkat say why).
  struct stat st {};
  UniqueFd entry;
  if (rc == 0) {
    entry.reset(::openat(parent.fd(), r.backing.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
    if (entry && ::fstat(entry.get(), &st) != 0) entry.reset();
  }
  // A long symlink target's sidecar goes with the link's last name.
  const std::string long_target =
      entry && S_ISLNK(st.st_mode) ? long_target_of(entry.get(), "") : "";
  const bool last_name = !long_target.empty() && st.st_nlink == 1;
  if (entry && S_ISREG(st.st_mode)) hold_before_unlink(st, std::move(entry));
  if (rc == 0 && ::unlinkat(parent.fd(), r.backing.c_str(), 0) != 0) rc = -errno;
  if (rc == 0) names_.remove_sidecar(parent.fd(), r);
  if (rc == 0 && last_name) names_.drop_target_sidecar(parent.fd(), long_target);
  if (rc == 0) audit_.change(req, "unlink", child_path(parent, name));
  fuse_reply_err(req, -rc);
}

void WardFs::rmdir(fuse_req_t req, fuse_ino_t parent_ino, const char* name) {
  Inode& parent = inode_of(parent_ino);
  std::lock_guard lock(parent.entries_mutex);
  volume::ResolvedName r;
  int rc = resolve_in(parent, name, r);
  if (rc == 0 && !r.exists) rc = -ENOENT;
  if (rc == 0 && !S_ISDIR(r.st.st_mode)) rc = -ENOTDIR;
  if (rc == 0) {
    Inode* child = inodes_.find(r.st.st_dev, r.st.st_ino);
    std::unique_lock<std::mutex> child_lock;
    if (child != nullptr) child_lock = std::unique_lock(child->entries_mutex);
    UniqueFd dir(
        ::openat(parent.fd(), r.backing.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    crypto::DirId saved_id{};
    rc = dir ? volume::read_dir_id(dir.get(), saved_id) : -errno;
    if (rc == 0) rc = volume::remove_dir_metadata(dir.get());
    if (rc == 0) {
      ::unlinkat(dir.get(), std::string(volume::kDirIdFileName).c_str(), 0);
      if (::unlinkat(parent.fd(), r.backing.c_str(), AT_REMOVEDIR) != 0) {
        rc = -errno;
        volume::write_dir_id(dir.get(), saved_id);  // keep the directory usable
      }
    }
    if (rc == 0 && child != nullptr) {
      std::lock_guard state(child->state_mutex);
      child->dir_id.reset();
    }
  }
  if (rc == 0) names_.remove_sidecar(parent.fd(), r);
  if (rc == 0) audit_.change(req, "rmdir", child_path(parent, name));
  fuse_reply_err(req, -rc);
}

void WardFs::rename(fuse_req_t req, fuse_ino_t parent_ino, const char* name,
                    fuse_ino_t newparent_ino, const char* newname, unsigned int flags) {
  Inode& parent = inode_of(parent_ino);
  Inode& newparent = inode_of(newparent_ino);
  std::unique_lock<std::mutex> a(parent.entries_mutex, std::defer_lock);
  std::unique_lock<std::mutex> b(newparent.entries_mutex, std::defer_lock);
  if (&parent == &newparent) {
    a.lock();
  } else {
    std::lock(a, b);
  }
  volume::ResolvedName from;
  volume::ResolvedName to;
  int rc = resolve_in(parent, name, from);
  if (rc == 0 && !from.exists) rc = -ENOENT;
  if (rc == 0) rc = resolve_in(newparent, newname, to);
  if (rc == 0 && &parent == &newparent && from.backing == to.backing) {
    fuse_reply_err(req, 0);
    return;
  }
  // A directory replacing an empty one: the target is empty in plaintext terms but
  // holds its directory id, which rename(2) would call ENOTEMPTY. Clear it first and
  // put the id back if the rename fails.
  UniqueFd replaced_dir;
  crypto::DirId replaced_id{};
  if (rc == 0 && to.exists && S_ISDIR(to.st.st_mode) && S_ISDIR(from.st.st_mode) &&
      (flags & RENAME_EXCHANGE) == 0) {
    replaced_dir.reset(::openat(newparent.fd(), to.backing.c_str(),
                                O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    rc = replaced_dir ? volume::read_dir_id(replaced_dir.get(), replaced_id) : -errno;
    if (rc == 0) rc = volume::remove_dir_metadata(replaced_dir.get());
    if (rc == 0) ::unlinkat(replaced_dir.get(), std::string(volume::kDirIdFileName).c_str(), 0);
  }
  if (rc == 0) rc = names_.write_sidecar(newparent.fd(), to);
  // Long symlink targets: the sidecar of a link moving to another directory goes there
  // first; that of a link being replaced goes after it (its last name only).
  const bool exchange = (flags & RENAME_EXCHANGE) != 0;
  const std::string from_target =
      rc == 0 && S_ISLNK(from.st.st_mode) ? long_target_of(parent.fd(), from.backing) : "";
  const std::string to_target = rc == 0 && to.exists && S_ISLNK(to.st.st_mode)
                                    ? long_target_of(newparent.fd(), to.backing)
                                    : "";
  if (rc == 0 && &parent != &newparent) {
    rc = names_.share_target_sidecar(parent.fd(), newparent.fd(), from_target);
    if (rc == 0 && exchange)
      rc = names_.share_target_sidecar(newparent.fd(), parent.fd(), to_target);
  }
  if (rc == 0) {
    rc = volume::rename_entry(volume_.backing_features(), parent.fd(), from.backing, newparent.fd(),
                              to.backing, flags);
    // EEXIST: another mount made `to` meanwhile, and the sidecar is its entry's now.
    if (rc != 0 && rc != -EEXIST && !to.exists) names_.remove_sidecar(newparent.fd(), to);
  }
  if (rc != 0 && replaced_dir) volume::write_dir_id(replaced_dir.get(), replaced_id);
  if (rc == 0 && !exchange) {
    names_.remove_sidecar(parent.fd(), from);
    if (&parent != &newparent && from.st.st_nlink == 1)
      names_.drop_target_sidecar(parent.fd(), from_target);
    const bool replaced_other = to.st.st_dev != from.st.st_dev || to.st.st_ino != from.st.st_ino;
    if (replaced_other && to.st.st_nlink == 1 && to_target != from_target)
      names_.drop_target_sidecar(newparent.fd(), to_target);
    if (Inode* moved = inodes_.find(from.st.st_dev, from.st.st_ino)) {
      moved->set_path(child_path(newparent, newname));
      inodes_.relocate(*moved, &newparent, newname);
      inodes_.move_place(*moved, newparent.dir_fd_shared(), to.backing);
      remember_link_dir(*moved, newparent);
    }
  }
  if (rc == 0 && exchange) {
    if (Inode* moved = inodes_.find(from.st.st_dev, from.st.st_ino)) {
      inodes_.move_place(*moved, newparent.dir_fd_shared(), to.backing);
      remember_link_dir(*moved, newparent);
    }
    if (Inode* other = inodes_.find(to.st.st_dev, to.st.st_ino)) {
      inodes_.move_place(*other, parent.dir_fd_shared(), from.backing);
      remember_link_dir(*other, parent);
    }
  }
  if (rc == 0)
    audit_.change(req, "rename", child_path(parent, name),
                  {{"to", child_path(newparent, newname)}});
  fuse_reply_err(req, -rc);
}

void WardFs::create(fuse_req_t req, fuse_ino_t parent_ino, const char* name, mode_t mode,
                    fuse_file_info* fi) {
  if (options_.read_only) {
    fuse_reply_err(req, EROFS);
    return;
  }
  Inode& parent = inode_of(parent_ino);
  if (audit_.blocks_access(req, child_path(parent, name))) {
    fuse_reply_err(req, EACCES);
    return;
  }
  std::unique_lock lock(parent.entries_mutex);
  crypto::DirId dir_id{};
  int rc = dir_id_of(parent, dir_id);
  volume::ResolvedName r;
  // With one key generation, O_EXCL alone tells whether the name exists: no probe first.
  if (rc == 0 && !names_.encode_for_create(dir_id, name, r)) {
    rc = names_.resolve(parent.fd(), dir_id, name, r);
  }
  UniqueFd fd;
  if (rc == 0 && !r.exists) {
    rc = names_.write_sidecar(parent.fd(), r);
    if (rc == 0) {
      fd.reset(::openat(parent.fd(), r.backing.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC,
                        mode & 07777));
      if (!fd) rc = -errno;
    }
    if (rc == -EEXIST && !r.is_long()) {
      r.exists = true;
      rc = 0;
    }
  }
  if (rc == 0 && r.exists) {
    lock.unlock();
    create_existing(req, parent, name, fi);
    return;
  }
  fuse_entry_param e{};
  auto handle = std::make_unique<FileHandle>();
  const int created = fd.get();
  // The inode takes the new fd (no second lookup of the name) and the handle borrows it.
  if (rc == 0) rc = entry_from_fd(parent, name, std::move(fd), e);
  if (rc == 0) {
    Inode& made = inode_of(e.ino);
    // A lookup racing this one (readdirplus) may have put the inode in the table first,
    // with its own fd, and ours is closed: then the handle opens its own.
    if (made.fd() == created && !options_.shared) {
      handle->borrowed_fd = created;
    } else {
      rc = open_backing(made, O_RDWR, handle->fd);
    }
    auto& content = content_of(made);
    // -o shared: held until the header is written, so that another mount opening the
    // name meanwhile waits for it (wait_for_header) instead of reading a cut file.
    volume::SharedFileGate::Pass pass;
    if (rc == 0 && options_.shared) rc = content.shared_gate().enter(handle->backing(), true, pass);
    if (rc == 0) rc = content.create(handle->backing());
    pass.release();
    if (rc != 0) {
      ::unlinkat(parent.fd(), r.backing.c_str(), 0);
      forget(e.ino, 1);
    }
  }
  if (rc != 0) {
    if (rc != -EEXIST) names_.remove_sidecar(parent.fd(), r);
    fuse_reply_err(req, -rc);
    return;
  }
  hand_to_caller(req, parent, handle->backing(), e.attr);
  // The kernel knows nothing of the file yet, so no chmod can race this look at its mode.
  Inode& made = inode_of(e.ino);
  note_mode(made, e.attr.st_mode, made.mode_changes.load());
  hand_out(e.ino, std::move(handle), fi);
  fi->keep_cache = options_.shared ? 0 : 1;
  audit_open(req, inode_of(e.ino), fi->flags, true);
  fuse_reply_create(req, &e, fi);
}

// CREATE of a name that exists (a race with another creator, or O_CREAT without
// O_EXCL that the kernel sent without a LOOKUP first): open what is there.
void WardFs::create_existing(fuse_req_t req, Inode& parent, const char* name, fuse_file_info* fi) {
  if (fi->flags & O_EXCL) {
    fuse_reply_err(req, EEXIST);
    return;
  }
  fuse_entry_param e{};
  int rc = lookup_entry(parent, name, e);
  if (rc != 0) {
    fuse_reply_err(req, -rc);
    return;
  }
  fi->flags &= ~(O_CREAT | O_EXCL);
  Inode& inode = inode_of(e.ino);
  auto handle = std::make_unique<FileHandle>();
  rc = open_backing(inode, options_.read_only ? O_RDONLY : O_RDWR, handle->fd);
  bool changed_elsewhere = false;
  if (rc == 0) {
    rc = with_current_keys(inode, [&] {
      return load_for_open(content_of(inode), handle->backing(), (fi->flags & O_TRUNC) != 0,
                           changed_elsewhere);
    });
  }
  if (rc == 0 && (fi->flags & O_TRUNC) != 0) {
    rc = drop_privileges(req, e.ino, handle->backing(), PrivilegeChange::write);
    struct stat st {};
    if (rc == 0 && ::fstat(handle->backing(), &st) == 0) e.attr.st_mode = st.st_mode;
  }
  if (rc != 0) {
    forget(e.ino, 1);
    fuse_reply_err(req, -rc);
    return;
  }
  hand_out(e.ino, std::move(handle), fi);
  fi->keep_cache = changed_elsewhere ? 0 : 1;
  if (changed_elsewhere) notifier_.invalidate_attrs(e.ino);
  audit_open(req, inode, fi->flags, false);
  fuse_reply_create(req, &e, fi);
}

}  // namespace wardfs::fuse
