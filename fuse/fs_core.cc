// Shared plumbing of WardFs: inode lookup, attribute translation, directory ids.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "fuse/filesystem.h"
#include "volume/backing_tree.h"

namespace wardfs::fuse {

WardFs::WardFs(const volume::Volume& volume, FsOptions options)
    : volume_(volume), options_(options), names_(volume), running_as_root_(::geteuid() == 0) {}

int WardFs::open_root() {
  UniqueFd fd(::open(volume_.cipher_dir().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return -errno;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return -errno;
  crypto::DirId id{};
  if (const int rc = volume::read_dir_id(fd.get(), id); rc != 0) return rc;
  auto root = std::make_unique<Inode>();
  root->dev = st.st_dev;
  root->ino = st.st_ino;
  root->type = S_IFDIR;
  root->nlookup = 2;
  root->display_path = "/";
  root->dir_id = id;
  inodes_.set_root(std::move(root), std::move(fd));
  return 0;
}

Inode& WardFs::inode_of(fuse_ino_t ino) {
  if (ino == FUSE_ROOT_ID) return inodes_.root();
  return *reinterpret_cast<Inode*>(ino);
}

fuse_ino_t WardFs::ino_of(Inode& inode) {
  return &inode == &inodes_.root() ? FUSE_ROOT_ID : reinterpret_cast<fuse_ino_t>(&inode);
}

int WardFs::fd_of(Inode& inode) { return inodes_.fd_of(inode); }

int WardFs::proc_path(Inode& inode, std::string& out) {
  const int fd = fd_of(inode);
  if (fd < 0) return fd;
  out = "/proc/self/fd/" + std::to_string(fd);
  return 0;
}

std::string WardFs::child_path(Inode& parent, std::string_view name) {
  std::string base = parent.path();
  if (base != "/") base += "/";
  return base + std::string(name);
}

void WardFs::report_integrity(Inode& inode, std::uint64_t chunk, std::string_view reason) {
  counters_.integrity_failures++;
  if (chunk == volume::kHeaderChunk) {
    spdlog::error("integrity failure in {}: {}", inode.path(), reason);
  } else {
    spdlog::error("integrity failure in {} at chunk {}: {}", inode.path(), chunk, reason);
  }
  audit_.integrity(inode.path(), chunk, reason);
}

volume::FileContent& WardFs::content_of(Inode& inode) {
  std::lock_guard lock(inode.state_mutex);
  if (!inode.content) {
    inode.content = std::make_unique<volume::FileContent>(volume_);
    inode.content->set_reporter([this, &inode](std::uint64_t chunk, std::string_view reason) {
      report_integrity(inode, chunk, reason);
    });
  }
  return *inode.content;
}

int WardFs::stat_inode(Inode& inode, struct stat& st) {
  const int fd = fd_of(inode);
  if (fd < 0) return fd;
  if (::fstatat(fd, "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) != 0) return -errno;
  return plain_stat(inode, st);
}

int WardFs::plain_stat(Inode& inode, struct stat& st) {
  if (S_ISREG(st.st_mode)) {
    // An open file's engine knows its size exactly; otherwise the backing size tells.
    volume::FileContent* content = nullptr;
    {
      std::lock_guard lock(inode.state_mutex);
      content = inode.content.get();
    }
    // Under -o shared another mount may have changed it since: the backing size tells.
    if (content != nullptr && content->loaded() && !options_.shared) {
      st.st_size = static_cast<off_t>(content->size());
    } else {
      const auto plain = volume_.layout().plaintext_size(static_cast<std::uint64_t>(st.st_size));
      st.st_size = plain ? static_cast<off_t>(*plain) : 0;
    }
  } else if (S_ISLNK(st.st_mode)) {
    std::string target;
    const int rc = link_target(inode, target);
    if (rc == -ESTALE) return rc;
    st.st_size = static_cast<off_t>(target.size());  // 0 when it fails authentication
  }
  return 0;
}

int WardFs::backing_link(Inode& inode, std::string& backing, UniqueFd& dir) {
  char buf[PATH_MAX];
  const ssize_t n = ::readlinkat(inode.fd(), "", buf, sizeof buf);
  if (n < 0) return -errno;
  backing.assign(buf, static_cast<std::size_t>(n));
  if (!crypto::is_target_sidecar_name(backing)) return 0;
  std::lock_guard lock(inode.state_mutex);
  if (inode.link_dir) dir.reset(::fcntl(inode.link_dir.get(), F_DUPFD_CLOEXEC, 0));
  return dir ? 0 : -EIO;
}

int WardFs::link_target(Inode& inode, std::string& out) {
  std::string backing;
  UniqueFd dir;
  if (const int rc = backing_link(inode, backing, dir); rc != 0) return rc;
  auto target = dir ? names_.read_symlink_target(dir.get(), backing) : names_.open_symlink(backing);
  if (target) {
    out = std::move(*target);
    return 0;
  }
  // A rekey replaces a link by a re-sealed one and removes the old long target's
  // sidecar. The kernel may still hold the old link for a moment: ESTALE makes it look
  // the name up again (readlink and path walks retry on it) instead of reading EIO.
  struct stat st {};
  const bool replaced = dir &&
                        ::fstatat(inode.fd(), "", &st, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW) == 0 &&
                        st.st_nlink == 0;
  return replaced ? -ESTALE : -EIO;
}

int WardFs::share_link_target(Inode& inode, Inode& to_dir) {
  std::string backing;
  UniqueFd dir;
  const int rc = backing_link(inode, backing, dir);
  if (rc != 0 || !dir) return rc;
  return names_.share_target_sidecar(dir.get(), to_dir.fd(), backing);
}

void WardFs::remember_link_dir(Inode& inode, Inode& dir) {
  if (!S_ISLNK(inode.type)) return;
  // Only links with a long target keep a second fd: a short link needs no directory.
  char buf[PATH_MAX];
  const ssize_t n = ::readlinkat(inode.fd(), "", buf, sizeof buf);
  const bool is_long =
      n > 0 && crypto::is_target_sidecar_name(std::string_view(buf, static_cast<std::size_t>(n)));
  UniqueFd fd(is_long ? ::fcntl(dir.fd(), F_DUPFD_CLOEXEC, 0) : -1);
  std::lock_guard lock(inode.state_mutex);
  if (fd || !is_long) inode.link_dir = std::move(fd);
}

int WardFs::dir_id_of(Inode& dir, crypto::DirId& out) {
  std::lock_guard lock(dir.state_mutex);
  if (!dir.dir_id) {
    crypto::DirId id{};
    if (const int rc = volume::read_dir_id(dir.fd(), id); rc != 0) {
      spdlog::error("directory {} has no readable {}: {}", dir.display_path, volume::kDirIdFileName,
                    std::strerror(-rc));
      return -EIO;
    }
    dir.dir_id = id;
  }
  out = *dir.dir_id;
  return 0;
}

int WardFs::resolve_in(Inode& parent, std::string_view name, volume::ResolvedName& out) {
  crypto::DirId dir_id{};
  if (const int rc = dir_id_of(parent, dir_id); rc != 0) return rc;
  return names_.resolve(parent.fd(), dir_id, name, out);
}

int WardFs::lookup_entry(Inode& parent, std::string_view name, fuse_entry_param& e) {
  auto attempt = [&]() -> int {
    crypto::DirId dir_id{};
    if (const int rc = dir_id_of(parent, dir_id); rc != 0) return rc;
    std::string backing;
    struct stat st {};
    if (const int rc = names_.stat_entry(parent.fd(), dir_id, name, backing, st); rc != 0)
      return rc;
    return entry_at(parent, name, backing, st, e);
  };
  const int rc = attempt();
  if (rc != -ENOENT || volume_.keys().generations_for_lookup().size() < 2) return rc;
  // A rekey may have renamed the entry to its new-generation name between our probes of
  // the new and the old name. It renames under the directory's entries lock, so a second
  // look under that lock is definitive; only misses pay for it.
  std::lock_guard lock(parent.entries_mutex);
  return attempt();
}

// READDIRPLUS: the listing holds each entry's backing name, already authenticated, so
// looking it up skips sealing the plaintext name again. A rename since opendir (a rekey
// moving the entry to its new-generation name) falls back to a lookup by name.
int WardFs::lookup_listed_entry(Inode& parent, const volume::DirEntry& entry, fuse_entry_param& e) {
  struct stat st {};
  if (::fstatat(parent.fd(), entry.backing.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
    return errno == ENOENT ? lookup_entry(parent, entry.name, e) : -errno;
  return entry_at(parent, entry.name, entry.backing, st, e);
}

// A regular file needs no fd to be known (one fstatat was the whole lookup); anything
// else is opened now, and the stat of what was opened is what counts.
int WardFs::entry_at(Inode& parent, std::string_view name, const std::string& backing,
                     const struct stat& st, fuse_entry_param& e) {
  if (S_ISREG(st.st_mode))
    return make_entry(parent, name, UniqueFd(), st, {parent.dir_fd_shared(), backing}, e);
  UniqueFd fd(::openat(parent.fd(), backing.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return -errno;
  return entry_from_fd(parent, name, std::move(fd), e);
}

int WardFs::entry_from_fd(Inode& parent, std::string_view name, UniqueFd fd, fuse_entry_param& e) {
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return -errno;
  return make_entry(parent, name, std::move(fd), st, {}, e);
}

int WardFs::make_entry(Inode& parent, std::string_view name, UniqueFd fd, struct stat st,
                       BackingPlace place, fuse_entry_param& e) {
  std::memset(&e, 0, sizeof e);
  Inode& inode =
      inodes_.acquire(std::move(fd), st, child_path(parent, name), &parent, name, std::move(place));
  notifier_.note_inode_count();
  remember_link_dir(inode, parent);
  if (const int rc = plain_stat(inode, st); rc != 0) {
    inodes_.forget(inode, 1);
    return rc;
  }
  e.attr = st;
  e.ino = ino_of(inode);
  e.attr_timeout = options_.attr_timeout;
  e.entry_timeout = options_.entry_timeout;
  return 0;
}

int WardFs::publish_new_entry(fuse_req_t req, Inode& parent, std::string_view name, UniqueFd fd,
                              fuse_entry_param& e) {
  if (const int rc = entry_from_fd(parent, name, std::move(fd), e); rc != 0) return rc;
  hand_to_caller(req, parent, inode_of(e.ino).fd(), e.attr);
  return 0;
}

volume::Owner WardFs::owner_for(fuse_req_t req, Inode& parent, const struct stat* made) {
  if (!running_as_root_) return {};
  const fuse_ctx* ctx = fuse_req_ctx(req);
  volume::Owner owner{ctx->uid, ctx->gid};
  if (made != nullptr && made->st_gid == ctx->gid) return owner;
  // In a setgid directory the backing filesystem gives new entries the directory's
  // group, which is what a local filesystem does; the caller's group would be wrong.
  struct stat dir {};
  if (::fstat(parent.fd(), &dir) == 0 && (dir.st_mode & S_ISGID) != 0) {
    owner.gid = static_cast<gid_t>(-1);
  }
  return owner;
}

void WardFs::hand_to_caller(fuse_req_t req, Inode& parent, int fd, struct stat& st) {
  if (!running_as_root_) return;
  const volume::Owner owner = owner_for(req, parent, &st);
  if (const int rc = volume::hand_over(fd, owner, st); rc != 0) {
    spdlog::warn("cannot give a new entry in {} to uid {}: {}", parent.path(), owner.uid,
                 std::strerror(-rc));
  }
}

int WardFs::open_backing(Inode& inode, int flags, UniqueFd& out) {
  std::string proc;
  if (const int rc = proc_path(inode, proc); rc != 0) return rc;
  out.reset(::open(proc.c_str(), flags | O_CLOEXEC));
  return out ? 0 : -errno;
}

void WardFs::forget(fuse_ino_t ino, std::uint64_t n) { inodes_.forget(inode_of(ino), n); }

int WardFs::LiveTreeAccess::with_dir(int dir_fd, const std::string& path,
                                     const std::function<int()>& fn) {
  UniqueFd pfd(::openat(dir_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!pfd) return -errno;
  struct stat st {};
  if (::fstat(pfd.get(), &st) != 0) return -errno;
  Inode& inode = fs_.inodes_.acquire(std::move(pfd), st, path);
  int rc = 0;
  {
    std::lock_guard lock(inode.entries_mutex);
    rc = fn();
  }
  fs_.inodes_.forget(inode, 1);
  return rc;
}

void WardFs::init(fuse_conn_info* conn) {
  // Large requests amortise the per-request cost, which dominates over the cipher.
  conn->max_write = kMaxWriteBytes;
  conn->max_readahead = 1U << 20;
  if (conn->capable & FUSE_CAP_PARALLEL_DIROPS) conn->want |= FUSE_CAP_PARALLEL_DIROPS;
  // Adaptive decides per batch here, so the kernel asks for attributes with every one.
  if (options_.readdirplus != ReaddirPlus::kernel_auto)
    fuse_unset_feature_flag(conn, FUSE_CAP_READDIRPLUS_AUTO);
  // Only with a reserve: it keeps a full disk failing write() (fuse/writeback_space.h).
  const bool writeback = writeback_space_.enabled() && !options_.read_only &&
                         (conn->capable & FUSE_CAP_WRITEBACK_CACHE) != 0;
  if (writeback) {
    conn->want |= FUSE_CAP_WRITEBACK_CACHE;
    // Files opened while the disk is full bypass the cache (FOPEN_DIRECT_IO) and must
    // still map shared.
    fuse_set_feature_flag(conn, FUSE_CAP_DIRECT_IO_ALLOW_MMAP);
  } else {
    conn->want &= ~static_cast<unsigned>(FUSE_CAP_WRITEBACK_CACHE);
  }
  writeback_active_.store(writeback, std::memory_order_relaxed);
  // The daemon clears setuid/setgid itself (fs_killpriv.cc), which spares the kernel a
  // GETXATTR security.capability before each write.
  killpriv_active_.store(fuse_set_feature_flag(conn, FUSE_CAP_HANDLE_KILLPRIV_V2),
                         std::memory_order_relaxed);
}

}  // namespace wardfs::fuse
