// Requests on one inode: attributes, file contents, symlink targets.
#include <fcntl.h>
#include <linux/falloc.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "fuse/filesystem.h"
#include "volume/buffer_pool.h"

namespace wardfs::fuse {

namespace {
FileHandle& handle_of(fuse_file_info* fi) { return *reinterpret_cast<FileHandle*>(fi->fh); }

bool backing_unlinked(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 && st.st_nlink == 0;
}

// -o shared: another mount may have just created the file (O_EXCL), and not yet written
// its header under the lock it takes right after. Holds the gate (exclusive for a
// writer) on return.
int wait_for_header(volume::SharedFileGate& gate, int fd, bool exclusive,
                    volume::SharedFileGate::Pass& pass) {
  for (int attempt = 0;; ++attempt) {
    if (const int rc = gate.enter(fd, exclusive, pass); rc != 0) return rc;
    struct stat st {};
    if (::fstat(fd, &st) != 0) return -errno;
    if (st.st_size != 0 || attempt == 100) return 0;  // then load() reports the cut file
    pass.release();
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}
}  // namespace

int WardFs::load_for_open(volume::FileContent& content, int fd, bool truncate,
                          bool& changed_elsewhere) {
  changed_elsewhere = false;
  if (follows_other_mounts() && backing_unlinked(fd)) {
    // Another mount replaced or deleted the file since the kernel looked its name up:
    // ESTALE makes the kernel look the name up again (LOOKUP_REVAL) and retry the open.
    return -ESTALE;
  }
  int rc = 0;
  volume::SharedFileGate::Pass pass;
  if (follows_other_mounts()) {
    if (options_.shared) rc = wait_for_header(content.shared_gate(), fd, false, pass);
    if (rc == 0) rc = content.reload_if_changed(fd);
    changed_elsewhere = rc == 1 || options_.shared;
    rc = std::min(rc, 0);
  } else {
    rc = content.load(fd);
  }
  pass.release();  // a reader cannot become the writer in place: leave, then enter again
  if (rc == 0 && truncate) {
    rc = begin_shared_access(content, fd, true, pass);
    if (rc == 0) rc = content.truncate(fd, 0);
  }
  return rc;
}

int WardFs::LiveTreeAccess::with_file(int dir_fd, const std::string& backing,
                                      const std::string& path,
                                      const std::function<int(volume::FileContent&, int)>& fn) {
  UniqueFd pfd(::openat(dir_fd, backing.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!pfd) return -errno;
  struct stat st {};
  if (::fstatat(pfd.get(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return -errno;
  // Through the inode table, so a concurrent FUSE open shares this very FileContent.
  Inode& inode = fs_.inodes_.acquire(std::move(pfd), st, path);
  UniqueFd fd;
  int rc = fs_.open_backing(inode, O_RDWR, fd);
  auto& content = fs_.content_of(inode);
  // -o shared: under the file's cross-mount lock, and from what is on disk now, so that
  // fsck and rekey never meet a file another mount is half-way through writing.
  volume::SharedFileGate::Pass pass;
  const bool shared = fs_.options_.shared;
  if (rc == 0 && shared) rc = wait_for_header(content.shared_gate(), fd.get(), true, pass);
  if (rc == 0) rc = shared ? content.reload(fd.get()) : content.load(fd.get());
  if (rc == 0) rc = fn(content, fd.get());
  pass.release();
  fs_.inodes_.forget(inode, 1);
  return rc;
}

int WardFs::begin_shared_access(volume::FileContent& content, int fd, bool modify,
                                volume::SharedFileGate::Pass& pass) {
  if (!options_.shared) return 0;
  if (const int rc = content.shared_gate().enter(fd, modify, pass); rc != 0) return rc;
  return content.reload(fd);
}

void WardFs::getattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  // The kernel asks with the file handle before a cached write() once told the
  // attributes are stale (fuse/writeback_space.h): while the disk is full, that write()
  // fails here. fstat() and stat() ask without a handle and still work.
  if (fi != nullptr && handle_of(fi).cached_writer && writeback_space_.tight() &&
      !writeback_space_.try_recover()) {
    fuse_reply_err(req, ENOSPC);
    return;
  }
  reply_attr(req, ino, fi);
}

void WardFs::reply_attr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  struct stat st {};
  Inode& inode = inode_of(ino);
  int rc = 0;
  // Through the open file where the kernel names one: a network backing (GlusterFS)
  // answers nothing through a path, even /proc/self/fd's, once the file was unlinked.
  if (fi != nullptr && S_ISREG(inode.type)) {
    rc = ::fstat(handle_of(fi).backing(), &st) == 0 ? plain_stat(inode, st) : -errno;
  } else {
    rc = stat_inode(inode, st);
  }
  if (rc != 0) {
    fuse_reply_err(req, -rc);
    return;
  }
  fuse_reply_attr(req, &st, options_.attr_timeout);
}

void WardFs::setattr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                     fuse_file_info* fi) {
  Inode& inode = inode_of(ino);
  std::string proc;
  int rc = proc_path(inode, proc);
  if (rc == 0 && (to_set & FUSE_SET_ATTR_MODE)) {
    if (::chmod(proc.c_str(), attr->st_mode & 07777) != 0) rc = -errno;
  }
  if (rc == 0 && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID))) {
    const uid_t uid = (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : static_cast<uid_t>(-1);
    const gid_t gid = (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : static_cast<gid_t>(-1);
    if (::fchownat(inode.fd(), "", uid, gid, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) rc = -errno;
  }
  // After the change, so a look at the mode that began before it does not count.
  if (to_set & (FUSE_SET_ATTR_MODE | FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)) ++inode.mode_changes;
  if (rc == 0 && (to_set & FUSE_SET_ATTR_SIZE)) {
    if (!S_ISREG(inode.type)) {
      rc = -EINVAL;
    } else if (options_.read_only) {
      rc = -EROFS;
    } else {
      UniqueFd own;
      int fd = fi != nullptr ? handle_of(fi).backing() : -1;
      if (fd < 0) {
        rc = open_backing(inode, O_RDWR, own);
        fd = own.get();
      }
      auto& content = content_of(inode);
      if (rc == 0) {
        rc = with_current_keys(inode, [&] {
          volume::SharedFileGate::Pass pass;
          int r = content.load(fd);
          if (r == 0) r = begin_shared_access(content, fd, true, pass);
          // The kernel sets FATTR_KILL_SUIDGID (== FUSE_SET_ATTR_KILL_SUID) for a caller
          // without CAP_FSETID.
          if (r == 0)
            r = drop_privileges(req, ino, fd,
                                (to_set & FUSE_SET_ATTR_KILL_SUID) != 0
                                    ? PrivilegeChange::truncate_by_other
                                    : PrivilegeChange::truncate_by_capable);
          if (r == 0) r = content.truncate(fd, static_cast<std::uint64_t>(attr->st_size));
          if (r == 0 && static_cast<std::uint64_t>(attr->st_size) <= inode.unlanded_from.load())
            inode.unlanded_from.store(UINT64_MAX);
          return r;
        });
      }
    }
  }
  if (rc == 0 && (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME))) {
    struct timespec tv[2];
    tv[0].tv_nsec = UTIME_OMIT;
    tv[1].tv_nsec = UTIME_OMIT;
    if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
      tv[0].tv_nsec = UTIME_NOW;
    } else if (to_set & FUSE_SET_ATTR_ATIME) {
      tv[0] = attr->st_atim;
    }
    if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
      tv[1].tv_nsec = UTIME_NOW;
    } else if (to_set & FUSE_SET_ATTR_MTIME) {
      tv[1] = attr->st_mtim;
    }
    // Through the handle where the kernel names one (the writeback cache sends a file's
    // times at fsync and close): a network backing (GlusterFS) refuses a path, even
    // /proc/self/fd's, to a file that has since been unlinked or replaced.
    int r = 0;
    if (fi != nullptr && S_ISREG(inode.type)) {
      r = ::futimens(handle_of(fi).backing(), tv);
    } else if (S_ISLNK(inode.type)) {
      r = ::utimensat(inode.fd(), "", tv, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW);
    } else {
      r = ::utimensat(AT_FDCWD, proc.c_str(), tv, 0);
    }
    if (r != 0) rc = -errno;
  }
  if (rc != 0) {
    fuse_reply_err(req, -rc);
    return;
  }
  reply_attr(req, ino, fi);
}

void WardFs::readlink(fuse_req_t req, fuse_ino_t ino) {
  Inode& inode = inode_of(ino);
  std::string target;
  const int rc = link_target(inode, target);
  if (rc == -ESTALE) {
    fuse_reply_err(req, ESTALE);
    return;
  }
  if (rc != 0) {
    report_integrity(inode, volume::kHeaderChunk, "symlink target failed authentication");
    fuse_reply_err(req, EIO);
    return;
  }
  fuse_reply_readlink(req, target.c_str());
}

void WardFs::open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  Inode& inode = inode_of(ino);
  const int access = fi->flags & O_ACCMODE;
  if (options_.read_only && access != O_RDONLY) {
    fuse_reply_err(req, EROFS);
    return;
  }
  if (audit_.blocks_access(req, inode.path())) {
    fuse_reply_err(req, EACCES);
    return;
  }
  auto handle = std::make_unique<FileHandle>();
  // Even write-only opens read: partial chunks are read, modified and re-sealed.
  int rc = open_backing(inode, options_.read_only ? O_RDONLY : O_RDWR, handle->fd);
  // A backing file we may only read (its mode, or a read-only mount over it) still
  // serves read-only opens; opens for writing still get the error.
  if ((rc == -EACCES || rc == -EROFS) && access == O_RDONLY)
    rc = open_backing(inode, O_RDONLY, handle->fd);
  auto& content = content_of(inode);
  // A read-write mount holds the volume's writer lease: only it changes the backing
  // files, so what the kernel cached stays true. A read-only one may sit beside a
  // writer elsewhere: it looks again at each open and drops the cache when the file
  // changed (close-to-open, as NFS clients do).
  bool changed_elsewhere = false;
  if (rc == 0) {
    rc = with_current_keys(inode, [&] {
      return load_for_open(content, handle->backing(), (fi->flags & O_TRUNC) != 0,
                           changed_elsewhere);
    });
  }
  if (rc == 0 && (fi->flags & O_TRUNC) != 0)
    rc = drop_privileges(req, ino, handle->backing(), PrivilegeChange::write);
  if (rc != 0) {
    fuse_reply_err(req, -rc);
    return;
  }
  hand_out(ino, std::move(handle), fi);
  fi->keep_cache = changed_elsewhere ? 0 : 1;
  if (changed_elsewhere) notifier_.invalidate_attrs(ino);
  audit_open(req, inode, fi->flags, false);
  fuse_reply_open(req, fi);
}

void WardFs::read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
  // From the shared pool: libfuse would otherwise allocate per read.
  const volume::ScratchBuffer buf(size);
  Inode& inode = inode_of(ino);
  auto& content = content_of(inode);
  const int fd = handle_of(fi).backing();
  if (static_cast<std::uint64_t>(off) + size > inode.unlanded_from.load()) {
    spdlog::error(
        "{}: read of bytes a full backing disk kept from landing (from offset {}): EIO "
        "until the file is truncated there or the kernel drops it from its cache",
        inode.path(), inode.unlanded_from.load());
    fuse_reply_err(req, EIO);
    return;
  }
  const ssize_t n = with_current_keys(inode, [&]() -> ssize_t {
    volume::SharedFileGate::Pass pass;
    if (const int rc = begin_shared_access(content, fd, false, pass); rc != 0) return rc;
    return content.read(fd, {buf.data(), size}, static_cast<std::uint64_t>(off));
  });
  if (n < 0) {
    fuse_reply_err(req, static_cast<int>(-n));
    return;
  }
  counters_.bytes_read += static_cast<std::uint64_t>(n);
  fuse_reply_buf(req, reinterpret_cast<const char*>(buf.data()), static_cast<size_t>(n));
}

void WardFs::write(fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
                   fuse_file_info* fi) {
  Inode& inode = inode_of(ino);
  auto& content = content_of(inode);
  FileHandle& handle = handle_of(fi);
  // Page-cache writeback carries no caller; for a file with privileges to lose the
  // kernel writes through instead, so those writes come here with their caller.
  if (!fi->writepage) {
    if (const int rc = drop_privileges(req, ino, handle.backing(), PrivilegeChange::write);
        rc != 0) {
      fuse_reply_err(req, -rc);
      return;
    }
  }
  const std::uint64_t offset =
      handle.append ? volume::kAppendOffset : static_cast<std::uint64_t>(off);
  const auto write_once = [&]() -> ssize_t {
    return with_current_keys(inode, [&]() -> ssize_t {
      volume::SharedFileGate::Pass pass;
      if (const int rc = begin_shared_access(content, handle.backing(), true, pass); rc != 0)
        return rc;
      return content.write(handle.backing(), {reinterpret_cast<const std::uint8_t*>(buf), size},
                           offset);
    });
  };
  ssize_t n = 0;
  if (fi->writepage && writeback_space_.enabled()) {
    n = land_cached_write(inode, handle.backing(), write_once, size, offset);
  } else {
    n = write_once();
  }
  if (n < 0) {
    fuse_reply_err(req, static_cast<int>(-n));
    return;
  }
  counters_.bytes_written += static_cast<std::uint64_t>(n);
  fuse_reply_write(req, static_cast<size_t>(n));
}

ssize_t WardFs::land_cached_write(Inode& inode, int fd, const std::function<ssize_t()>& write,
                                  std::uint64_t size, std::uint64_t offset) {
  std::unique_lock landing(inode.landing_mutex);
  // Past a write that could not land, nothing more lands: the file stays a prefix of
  // what was written, never a hole of zeros where data was lost.
  ssize_t n = offset > inode.unlanded_from.load() ? -ENOSPC : write();
  bool tell_writers = false;
  for (bool became_tight = false; n == -ENOSPC && offset <= inode.unlanded_from.load() &&
                                  writeback_space_.make_room(size, became_tight);) {
    tell_writers = tell_writers || became_tight;
    n = write();
  }
  if (tell_writers) {
    landing.unlock();  // no inode lock is held across a notification (ARCHITECTURE.md)
    // Their next write() asks GETATTR first, which getattr() then refuses.
    std::vector<fuse_ino_t> writers;
    {
      std::lock_guard lock(cached_writers_mutex_);
      for (const auto& [writer, count] : cached_writers_) writers.push_back(writer);
    }
    for (const fuse_ino_t writer : writers) notifier_.invalidate_attrs(writer);
    landing.lock();
  }
  if (n != -ENOSPC) return n;
  writeback_space_.note_write_lost();
  if (offset < inode.unlanded_from.load()) {
    inode.unlanded_from.store(offset);
    // Later pages may have landed before this one failed: cut them off.
    auto& content = content_of(inode);
    const int rc = offset < content.size() ? content.truncate(fd, offset) : 0;
    spdlog::error(
        "{}: {} bytes the kernel had cached at offset {} cannot land: the backing "
        "disk is full and the writeback reserve is spent. fsync()/close() report "
        "ENOSPC, and reads from there on fail with EIO until the kernel drops the "
        "file from its cache{}. Free space in the backing directory and write the "
        "file again",
        inode.path(), size, offset,
        rc == 0 ? "" : std::string("; cutting the file there failed: ") + std::strerror(-rc));
  }
  return n;
}

void WardFs::hand_out(fuse_ino_t ino, std::unique_ptr<FileHandle> handle, fuse_file_info* fi) {
  handle->append = engine_appends(fi->flags);
  handle->access = fi->flags & O_ACCMODE;
  if ((fi->flags & O_TRUNC) != 0) inode_of(ino).unlanded_from.store(UINT64_MAX);
  if (writeback_active() && handle->writable()) {
    if (writeback_space_.tight() && !writeback_space_.try_recover()) {
      fi->direct_io = 1;  // its writes reach the daemon, and fail there while the disk is full
    } else {
      handle->cached_writer = true;
      std::lock_guard lock(cached_writers_mutex_);
      ++cached_writers_[ino];
    }
  }
  fi->fh = reinterpret_cast<std::uint64_t>(handle.release());
}

void WardFs::drop_handle(fuse_ino_t ino, FileHandle* handle) {
  if (handle->cached_writer) {
    std::lock_guard lock(cached_writers_mutex_);
    if (const auto it = cached_writers_.find(ino); it != cached_writers_.end() && --it->second == 0)
      cached_writers_.erase(it);
  }
  delete handle;
}

void WardFs::release(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  drop_handle(ino, reinterpret_cast<FileHandle*>(fi->fh));
  // Another handle still appending re-reads the final chunk once; an inode the kernel
  // keeps after its last close keeps no plaintext.
  content_of(inode_of(ino)).drop_tail_cache();
  fuse_reply_err(req, 0);
}

void WardFs::fsync(fuse_req_t req, fuse_ino_t, int datasync, fuse_file_info* fi) {
  const int fd = handle_of(fi).backing();
  const int r = datasync ? ::fdatasync(fd) : ::fsync(fd);
  fuse_reply_err(req, r == 0 ? 0 : errno);
}

void WardFs::fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                       fuse_file_info* fi) {
  auto& content = content_of(inode_of(ino));
  const int fd = handle_of(fi).backing();
  const auto offset = static_cast<std::uint64_t>(off);
  const auto length = static_cast<std::uint64_t>(len);
  const bool keep_size = (mode & FALLOC_FL_KEEP_SIZE) != 0;
  volume::SharedFileGate::Pass pass;
  int rc = begin_shared_access(content, fd, true, pass);
  switch (rc == 0 ? mode & ~FALLOC_FL_KEEP_SIZE : -1) {
    case -1:
      break;
    case 0:
      if (!keep_size && offset + length > content.size())
        rc = content.truncate(fd, offset + length);
      break;
    case FALLOC_FL_PUNCH_HOLE:  // the kernel requires KEEP_SIZE with it
      rc = keep_size ? content.punch_hole(fd, offset, length) : -EOPNOTSUPP;
      break;
    case FALLOC_FL_ZERO_RANGE:
      rc = content.zero_range(fd, offset, length, keep_size);
      break;
    default:
      // COLLAPSE_RANGE and INSERT_RANGE would move chunks to other indices, and a chunk is
      // sealed to its index: every chunk after the range would be re-sealed. Not offered.
      rc = -EOPNOTSUPP;
  }
  pass.release();
  fuse_reply_err(req, -rc);
}

void WardFs::copy_file_range(fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info* fi_in,
                             fuse_ino_t ino_out, off_t off_out, fuse_file_info* fi_out, size_t len,
                             int flags) {
  // The kernel checks all of this before asking (and sends only ranges that do not
  // overlap within a file); checked again because a wrong answer here writes files.
  const FileHandle& in = handle_of(fi_in);
  const FileHandle& out = handle_of(fi_out);
  Inode& src = inode_of(ino_in);
  Inode& dst = inode_of(ino_out);
  int rc = 0;
  if (flags != 0 || !S_ISREG(src.type) || !S_ISREG(dst.type)) {
    rc = EINVAL;
  } else if (options_.read_only) {
    rc = EROFS;
  } else if (!in.readable() || !out.writable() || out.append) {
    rc = EBADF;
  } else if (options_.shared) {
    // Copying under two backing files' locks is not offered: the kernel falls back to
    // READ and WRITE requests, each locked as usual.
    rc = EOPNOTSUPP;
  }
  if (rc != 0) {
    fuse_reply_err(req, rc);
    return;
  }
  // A source chunk that fails authentication is EIO, reported (and counted) by the
  // source's reporter like any read; nothing of the block that held it is written. The
  // kernel drops its cached pages of the destination range once we reply (fs/fuse/file.c,
  // after FUSE_COPY_FILE_RANGE), so keep_cache opens never see the old bytes there.
  // The reply's count is 32 bits (fuse_write_out.size): a kernel that does not clamp the
  // length itself would read 4 GiB copied as 0, end of file.
  constexpr size_t kMaxReplyCount = 0xFFFFF000;  // UINT32_MAX rounded down to a 4 KiB page
  const ssize_t n = content_of(src).copy_to(
      in.backing(), static_cast<std::uint64_t>(off_in), content_of(dst), out.backing(),
      static_cast<std::uint64_t>(off_out), std::min(len, kMaxReplyCount));
  if (n < 0) {
    fuse_reply_err(req, static_cast<int>(-n));
    return;
  }
  counters_.copy_ranges.fetch_add(1, std::memory_order_relaxed);
  counters_.bytes_copied.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
  fuse_reply_write(req, static_cast<size_t>(n));
}

}  // namespace wardfs::fuse
