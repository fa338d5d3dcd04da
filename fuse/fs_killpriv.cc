// FUSE_CAP_HANDLE_KILLPRIV_V2: the daemon, not the kernel, clears setuid and setgid when a
// file's content changes, as a local filesystem's VFS does. In return the kernel stops
// asking for security.capability (a GETXATTR round trip) before every write. The rules
// (include/fuse_kernel.h, Documentation/filesystems/fuse.rst, and the VFS's
// setattr_should_drop_suidgid): on a write, a truncate or an open with O_TRUNC by a
// caller without CAP_FSETID, setuid goes, and setgid goes when the file is
// group-executable or the caller is not in its group. A chown is the backing
// filesystem's own: it clears both itself. File capabilities need no clearing: wardfs
// keeps only user.* extended attributes, so a file on it never has security.capability.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "fuse/filesystem.h"

namespace wardfs::fuse {

namespace {

constexpr int kCapFsetid = 4;  // linux/capability.h

// CapEff of /proc/<pid>/status; nullopt when the process cannot be read (gone, or in
// another pid namespace).
std::optional<std::uint64_t> effective_capabilities(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("CapEff:", 0) == 0) return std::strtoull(line.c_str() + 7, nullptr, 16);
  }
  return std::nullopt;
}

bool caller_in_group(fuse_req_t req, gid_t gid) {
  if (fuse_req_ctx(req)->gid == gid) return true;
  std::vector<gid_t> groups(64);
  int n = fuse_req_getgroups(req, static_cast<int>(groups.size()), groups.data());
  if (n > static_cast<int>(groups.size())) {
    groups.resize(static_cast<std::size_t>(n));
    n = fuse_req_getgroups(req, n, groups.data());
  }
  if (n <= 0) return false;
  const auto end = groups.begin() + std::min<std::ptrdiff_t>(n, std::ssize(groups));
  return std::find(groups.begin(), end, gid) != end;
}

}  // namespace

// The kernel knows, and sets FUSE_WRITE_KILL_SUIDGID or FUSE_OPEN_KILL_SUIDGID, but
// libfuse 3.18 does not pass those flags on. Asked only for a file with a bit to lose: a
// non-root caller has no CAP_FSETID (in the rare other case we clear what the kernel
// would have kept: the safe side); root's capabilities are read from /proc.
bool WardFs::caller_has_fsetid(fuse_req_t req) {
  const fuse_ctx* ctx = fuse_req_ctx(req);
  if (ctx->uid != 0) return false;
  if (ctx->pid <= 0) return true;
  const auto caps = effective_capabilities(ctx->pid);
  return !caps || (*caps & (1ULL << kCapFsetid)) != 0;
}

void WardFs::note_mode(Inode& inode, mode_t mode, std::uint64_t changes_before_look) {
  // Another mount may chmod the file behind our back: there, look every time.
  if (follows_other_mounts() || (mode & (S_ISUID | S_ISGID)) != 0) return;
  inode.unprivileged_as_of.store(changes_before_look);
}

int WardFs::drop_privileges(fuse_req_t req, fuse_ino_t ino, int fd, PrivilegeChange change) {
  if (!killpriv_active_.load(std::memory_order_relaxed)) return 0;
  Inode& inode = inode_of(ino);
  const std::uint64_t changes = inode.mode_changes.load();
  if (inode.unprivileged_as_of.load() == changes) return 0;
  struct stat st {};
  if (::fstat(fd, &st) != 0) return -errno;
  const mode_t mode = st.st_mode & 07777;
  if (!S_ISREG(st.st_mode) || (mode & (S_ISUID | S_ISGID)) == 0) {
    note_mode(inode, st.st_mode, changes);
    return 0;
  }
  if (change == PrivilegeChange::truncate_by_capable) return 0;
  if (change == PrivilegeChange::write && caller_has_fsetid(req)) return 0;
  mode_t kept = mode & ~S_ISUID;
  if ((mode & S_ISGID) != 0 && ((mode & S_IXGRP) != 0 || !caller_in_group(req, st.st_gid)))
    kept &= ~S_ISGID;
  if (kept == mode) return 0;
  if (::fchmod(fd, kept) != 0) return -errno;
  notifier_.invalidate_attrs(ino);
  return 0;
}

}  // namespace wardfs::fuse
