// Directory listing, statfs and extended attributes.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/errors.h"
#include "fuse/filesystem.h"

namespace wardfs::fuse {

namespace {
DirHandle& dir_handle_of(fuse_file_info* fi) { return *reinterpret_cast<DirHandle*>(fi->fh); }
constexpr std::string_view kUserPrefix = "user.";
}  // namespace

void WardFs::opendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Inode& dir = inode_of(ino);
  auto handle = std::make_unique<DirHandle>();
  handle->fd.reset(::openat(dir.fd(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!handle->fd) {
    fuse_reply_err(req, errno);
    return;
  }
  // Inode numbers for "." and "..", as a local file system lists them (glibc's readdir
  // hides entries with inode 0). The mount root's ".." is the root itself, as on the
  // root of any file system: the kernel, not the listing, steps out of a mount.
  struct stat up {};
  const bool is_root = ino == FUSE_ROOT_ID;
  if (!is_root && ::fstatat(handle->fd.get(), "..", &up, AT_SYMLINK_NOFOLLOW) != 0) {
    fuse_reply_err(req, errno);
    return;
  }
  handle->dot_ino = dir.ino;
  handle->dotdot_ino = is_root ? dir.ino : up.st_ino;
  crypto::DirId dir_id{};
  int rc = dir_id_of(dir, dir_id);
  // Under the entries lock: a rekey renames entries (and drops long-name sidecars) under
  // it, and a listing taken half before and half after would miss or repeat names.
  std::lock_guard entries_lock(dir.entries_mutex);
  if (rc == 0) {
    rc = names_.list_open(handle->fd.get(), dir_id, handle->entries,
                          [&](std::string_view backing, std::string_view why) {
                            counters_.integrity_failures++;
                            spdlog::error("integrity failure in directory {}: entry {}: {}",
                                          dir.path(), backing, why);
                            audit_.integrity(
                                dir.path(), volume::kHeaderChunk,
                                "entry " + std::string(backing) + ": " + std::string(why));
                          });
  }
  if (rc != 0) {
    fuse_reply_err(req, -rc);
    return;
  }
  fi->fh = reinterpret_cast<std::uint64_t>(handle.release());
  fuse_reply_open(req, fi);
}

void WardFs::readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi,
                     bool plus) {
  DirHandle& handle = dir_handle_of(fi);
  Inode& dir = inode_of(ino);
  std::vector<char> buf(size);
  size_t used = 0;
  // The call that finds the end sends nothing: it is no batch to decide (or probe) for.
  const bool at_end = static_cast<std::size_t>(off) >= handle.entries.size() + 2;
  const bool with_attrs =
      plus && !at_end &&
      (options_.readdirplus != ReaddirPlus::adaptive || listing_attrs_.with_attrs(off == 0));
  std::uint32_t bare = 0;
  std::uint32_t with_attrs_sent = 0;
  // Offsets: 1 and 2 are "." and "..", entry k sits at k + 3.
  for (auto next = static_cast<std::size_t>(off); next < handle.entries.size() + 2; ++next) {
    std::string name;
    struct stat st {};
    fuse_entry_param e{};
    bool looked_up = false;
    if (next < 2) {
      name = next == 0 ? "." : "..";
      st.st_ino = next == 0 ? handle.dot_ino : handle.dotdot_ino;
      st.st_mode = S_IFDIR;
      e.attr = st;
    } else {
      const auto& entry = handle.entries[next - 2];
      name = entry.name;
      st.st_ino = entry.ino;
      st.st_mode = static_cast<mode_t>(entry.type) << 12;
      if (with_attrs) {
        if (lookup_listed_entry(dir, entry, e) != 0) continue;  // vanished since opendir
        looked_up = true;
      } else {
        e.attr = st;  // node id 0: a plain entry, which the kernel looks up when used
      }
    }
    const auto next_off = static_cast<off_t>(next + 1);
    size_t len = 0;
    if (plus) {
      len = fuse_add_direntry_plus(req, buf.data() + used, size - used, name.c_str(), &e, next_off);
    } else {
      len = fuse_add_direntry(req, buf.data() + used, size - used, name.c_str(), &st, next_off);
    }
    if (len > size - used) {
      if (looked_up) forget(e.ino, 1);  // the kernel never saw this entry
      break;
    }
    used += len;
    if (!looked_up && next >= 2) ++bare;
    if (looked_up) ++with_attrs_sent;
  }
  note_listed(dir, plus, with_attrs_sent, bare);
  fuse_reply_buf(req, buf.data(), used);
}

void WardFs::note_listed(Inode& dir, bool plus, std::uint32_t with_attrs, std::uint32_t bare) {
  counters_.listed_with_attrs.fetch_add(with_attrs, std::memory_order_relaxed);
  counters_.listed_bare.fetch_add(bare, std::memory_order_relaxed);
  if (!plus || bare == 0) return;
  // Only what readdirplus=adaptive sent bare counts: the kernel's own auto mode looks up
  // plain READDIR entries as a matter of course.
  constexpr std::uint32_t kMaxCounted = 1U << 20;
  if (dir.listed_bare.load(std::memory_order_relaxed) < kMaxCounted)
    dir.listed_bare.fetch_add(bare, std::memory_order_relaxed);
  listing_attrs_.note_sent_bare(bare);
}

void WardFs::releasedir(fuse_req_t req, fuse_ino_t, fuse_file_info* fi) {
  delete reinterpret_cast<DirHandle*>(fi->fh);
  fuse_reply_err(req, 0);
}

void WardFs::fsyncdir(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
  const int fd = dir_handle_of(fi).fd.get();
  const int r = datasync ? ::fdatasync(fd) : ::fsync(fd);
  fuse_reply_err(req, r == 0 ? 0 : errno);
}

int WardFs::check_backing_root() {
  struct stat st {};
  if (::fstatat(inodes_.root().fd(), ".", &st, 0) != 0) return -errno;
  struct statvfs vfs {};
  if (::fstatvfs(inodes_.root().fd(), &vfs) != 0) return -errno;
  return 0;
}

void WardFs::statfs(fuse_req_t req, fuse_ino_t) {
  struct statvfs st {};
  if (::fstatvfs(inodes_.root().fd(), &st) != 0) {
    // ENOTCONN from a wardfs mount means its own daemon is gone (wardfs status reads it
    // so); a backing file system that lost its server is an I/O error here.
    fuse_reply_err(req, is_lost_fuse_connection(errno) ? EIO : errno);
    return;
  }
  // Report what fits as plaintext: each chunk costs a slot on disk.
  const double ratio =
      static_cast<double>(volume_.layout().chunk_size()) / volume_.layout().slot_size();
  st.f_blocks = static_cast<fsblkcnt_t>(static_cast<double>(st.f_blocks) * ratio);
  st.f_bfree = static_cast<fsblkcnt_t>(static_cast<double>(st.f_bfree) * ratio);
  st.f_bavail = static_cast<fsblkcnt_t>(static_cast<double>(st.f_bavail) * ratio);
  st.f_namemax = volume::kMaxPlainNameLength;
  fuse_reply_statfs(req, &st);
}

int WardFs::xattr_find(Inode& inode, std::string_view name, std::string& proc,
                       std::string& backing_name) {
  if (const int rc = proc_path(inode, proc); rc != 0) return rc;
  for (const auto& gen : volume_.keys().generations_for_lookup()) {
    std::string candidate = names_.xattr_backing_name(name, gen->generation);
    if (candidate.empty()) return -ENOTSUP;
    if (::getxattr(proc.c_str(), candidate.c_str(), nullptr, 0) >= 0) {
      backing_name = std::move(candidate);
      return 0;
    }
    if (errno != ENODATA) return -errno;
  }
  return -ENODATA;
}

void WardFs::setxattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value,
                      size_t size, int flags) {
  Inode& inode = inode_of(ino);
  if (!std::string_view(name).starts_with(kUserPrefix) || S_ISLNK(inode.type)) {
    fuse_reply_err(req, ENOTSUP);
    return;
  }
  std::string proc;
  std::string existing;
  const int found = xattr_find(inode, name, proc, existing);
  if (found != 0 && found != -ENODATA) {
    fuse_reply_err(req, -found);
    return;
  }
  if ((flags & XATTR_CREATE) && found == 0) {
    fuse_reply_err(req, EEXIST);
    return;
  }
  if ((flags & XATTR_REPLACE) && found != 0) {
    fuse_reply_err(req, ENODATA);
    return;
  }
  const std::string backing = names_.xattr_backing_name(name, volume_.keys().active_generation());
  const auto sealed =
      names_.seal_xattr_value(name, {reinterpret_cast<const std::uint8_t*>(value), size});
  if (::setxattr(proc.c_str(), backing.c_str(), sealed.data(), sealed.size(), 0) != 0) {
    // ext4 keeps all xattrs of an inode in one block: a large value may not fit twice.
    // Then the old copy (under an older generation's name) goes first.
    const bool retry = (errno == ENOSPC || errno == E2BIG) && found == 0 && existing != backing &&
                       ::removexattr(proc.c_str(), existing.c_str()) == 0;
    if (!retry || ::setxattr(proc.c_str(), backing.c_str(), sealed.data(), sealed.size(), 0) != 0) {
      fuse_reply_err(req, errno);
      return;
    }
  }
  if (found == 0 && existing != backing) ::removexattr(proc.c_str(), existing.c_str());
  fuse_reply_err(req, 0);
}

void WardFs::getxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Inode& inode = inode_of(ino);
  if (!std::string_view(name).starts_with(kUserPrefix) || S_ISLNK(inode.type)) {
    fuse_reply_err(req, ENODATA);
    return;
  }
  std::string proc;
  std::string backing;
  if (const int rc = xattr_find(inode, name, proc, backing); rc != 0) {
    fuse_reply_err(req, rc == -ENOTSUP ? ENODATA : -rc);
    return;
  }
  std::vector<std::uint8_t> blob(XATTR_SIZE_MAX);
  const ssize_t n = ::getxattr(proc.c_str(), backing.c_str(), blob.data(), blob.size());
  if (n < 0) {
    fuse_reply_err(req, errno);
    return;
  }
  const auto value = names_.open_xattr_value(name, {blob.data(), static_cast<std::size_t>(n)});
  if (!value) {
    report_integrity(inode, volume::kHeaderChunk,
                     std::string("xattr ") + name + " failed authentication");
    fuse_reply_err(req, EIO);
  } else if (size == 0) {
    fuse_reply_xattr(req, value->size());
  } else if (size < value->size()) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, reinterpret_cast<const char*>(value->data()), value->size());
  }
}

void WardFs::listxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Inode& inode = inode_of(ino);
  std::string plain_list;
  if (!S_ISLNK(inode.type)) {
    std::string proc;
    if (const int rc = proc_path(inode, proc); rc != 0) {
      fuse_reply_err(req, -rc);
      return;
    }
    std::vector<char> raw(XATTR_LIST_MAX);
    const ssize_t n = ::listxattr(proc.c_str(), raw.data(), raw.size());
    if (n < 0) {
      fuse_reply_err(req, errno);
      return;
    }
    for (ssize_t pos = 0; pos < n;) {
      const std::string_view backing(raw.data() + pos);
      pos += static_cast<ssize_t>(backing.size()) + 1;
      if (auto plain = names_.xattr_plain_name(backing)) plain_list += *plain + '\0';
    }
  }
  if (size == 0) {
    fuse_reply_xattr(req, plain_list.size());
  } else if (size < plain_list.size()) {
    fuse_reply_err(req, ERANGE);
  } else {
    fuse_reply_buf(req, plain_list.data(), plain_list.size());
  }
}

void WardFs::removexattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  Inode& inode = inode_of(ino);
  std::string backing;
  if (!std::string_view(name).starts_with(kUserPrefix) || S_ISLNK(inode.type)) {
    fuse_reply_err(req, ENODATA);
    return;
  }
  std::string proc;
  if (const int rc = xattr_find(inode, name, proc, backing); rc != 0) {
    fuse_reply_err(req, -rc);
    return;
  }
  const int r = ::removexattr(proc.c_str(), backing.c_str());
  fuse_reply_err(req, r == 0 ? 0 : errno);
}

}  // namespace wardfs::fuse
