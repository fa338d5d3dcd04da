#include "volume/rekey.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "base/errors.h"
#include "base/posix_io.h"
#include "volume/backing_tree.h"

namespace wardfs::volume {

namespace {

std::string child_path(const std::string& parent, const std::string& name) {
  return parent == "/" ? "/" + name : parent + "/" + name;
}

// backing "." is the directory itself: the root has no parent entry to reach it by.
std::string entry_proc_path(int dir_fd, const std::string& backing) {
  return "/proc/self/fd/" + std::to_string(dir_fd) + "/" + backing;
}

constexpr const char* kSelf = ".";

std::optional<std::uint32_t> blob_generation_of(crypto::ByteView blob) {
  if (blob.size() < crypto::kGenerationSize) return std::nullopt;
  return crypto::get_le32(blob.data());
}

// Calls fn(backing_name, sealed_value) for each user.* xattr of an entry.
int for_each_user_xattr(const std::string& proc,
                        const std::function<void(const std::string&, crypto::ByteView)>& fn) {
  std::vector<char> names(XATTR_LIST_MAX);
  const ssize_t n = ::llistxattr(proc.c_str(), names.data(), names.size());
  if (n < 0) return errno == ENOTSUP ? 0 : -errno;
  std::vector<std::uint8_t> value(XATTR_SIZE_MAX);
  for (ssize_t pos = 0; pos < n;) {
    const std::string name(names.data() + pos);
    pos += static_cast<ssize_t>(name.size()) + 1;
    if (!name.starts_with("user.")) continue;
    const ssize_t len = ::lgetxattr(proc.c_str(), name.c_str(), value.data(), value.size());
    if (len >= 0) fn(name, crypto::ByteView(value.data(), static_cast<std::size_t>(len)));
  }
  return 0;
}

}  // namespace

std::uint64_t VolumeUsage::uses(std::uint32_t generation) const {
  auto count = [generation](const std::map<std::uint32_t, std::uint64_t>& m) {
    const auto it = m.find(generation);
    return it == m.end() ? std::uint64_t{0} : it->second;
  };
  return count(content.chunks) + count(content.headers) + count(names) + count(symlinks) +
         count(xattrs);
}

int OfflineTreeAccess::with_file(int dir_fd, const std::string& backing, const std::string&,
                                 const std::function<int(FileContent&, int)>& fn) {
  UniqueFd fd(::openat(dir_fd, backing.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return -errno;
  FileContent content(volume_);
  if (const int rc = content.load(fd.get()); rc != 0) return rc;
  return fn(content, fd.get());
}

struct Rekeyer::Visitor {
  std::function<int(int dir_fd, const crypto::DirId& id, const std::string& path)> on_dir;
  std::function<int(int dir_fd, const DirEntry& e, const struct stat& st, const std::string& path)>
      on_entry;
  std::uint64_t unreadable = 0;
};

int Rekeyer::walk(int dir_fd, const std::string& path, Visitor& v) {
  crypto::DirId id{};
  if (const int rc = read_dir_id(dir_fd, id); rc != 0) {
    spdlog::error("directory {} has no readable directory id: {}", path, std::strerror(-rc));
    return -EIO;
  }
  int result = v.on_dir ? v.on_dir(dir_fd, id, path) : 0;
  std::vector<DirEntry> entries;
  if (const int rc = names_.list(dir_fd, id, entries,
                                 [&](std::string_view, std::string_view) { v.unreadable++; });
      rc != 0) {
    return rc;
  }
  for (const auto& e : entries) {
    struct stat st {};
    if (::fstatat(dir_fd, e.backing.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
      continue;  // gone meanwhile
    const std::string path_of_entry = child_path(path, e.name);
    if (const int rc = v.on_entry(dir_fd, e, st, path_of_entry); rc != 0 && result == 0)
      result = rc;
    if (S_ISDIR(st.st_mode)) {
      UniqueFd sub(
          ::openat(dir_fd, e.backing.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      const int rc = sub ? walk(sub.get(), path_of_entry, v) : -errno;
      if (rc != 0 && result == 0) result = rc;
    }
  }
  return result;
}

int Rekeyer::scan(VolumeUsage& out) {
  Visitor v;
  v.on_entry = [&](int dir_fd, const DirEntry& e, const struct stat& st,
                   const std::string& path) -> int {
    out.names[e.generation]++;
    const std::string proc = entry_proc_path(dir_fd, e.backing);
    for_each_user_xattr(proc, [&](const std::string&, crypto::ByteView blob) {
      if (auto g = blob_generation_of(blob)) out.xattrs[*g]++;
    });
    if (S_ISLNK(st.st_mode)) {
      char buf[PATH_MAX];
      const ssize_t n = ::readlinkat(dir_fd, e.backing.c_str(), buf, sizeof buf);
      const auto blob =
          n > 0 ? names_.symlink_blob(dir_fd, std::string_view(buf, static_cast<std::size_t>(n)))
                : std::nullopt;
      if (auto g = blob ? blob_generation_of(*blob) : std::nullopt) out.symlinks[*g]++;
      return 0;
    }
    if (!S_ISREG(st.st_mode)) return 0;
    out.files++;
    out.backing_bytes += static_cast<std::uint64_t>(st.st_size);
    const int rc = access_.with_file(
        dir_fd, e.backing, path, [&](FileContent& fc, int fd) { return fc.scan(fd, out.content); });
    if (rc != 0) out.unreadable++;
    return 0;
  };
  UniqueFd root(::open(volume_.cipher_dir().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) return -errno;
  const int root_rc = for_each_user_xattr(entry_proc_path(root.get(), kSelf),
                                          [&](const std::string&, crypto::ByteView blob) {
                                            if (auto g = blob_generation_of(blob)) out.xattrs[*g]++;
                                          });
  const int rc = walk(root.get(), "/", v);
  out.unreadable += v.unreadable;
  return rc != 0 ? rc : root_rc;
}

std::uint64_t Rekeyer::uses_before_retire(std::uint32_t generation, bool force) {
  VolumeUsage usage;
  const int rc = scan(usage);
  // Entries that fail authentication are not a reason to stop: those sealed under a
  // generation already retired stay so for good, and would block every later retire.
  if (rc == 0 || force) return usage.uses(generation);
  throw WardError(ErrorKind::io,
                  "cannot retire generation " + std::to_string(generation) + ": the scan of " +
                      volume_.cipher_dir().string() + " could not walk the whole tree (" +
                      std::strerror(-rc) +
                      ", see the log), so it may still seal data the scan missed. Repair the "
                      "directory named in the log and retry, or retire with --force to shred "
                      "whatever it still seals");
}

int Rekeyer::rekey_names(int dir_fd, const crypto::DirId& dir_id, const std::string& path,
                         RekeyProgress& progress) {
  return access_.with_dir(dir_fd, path, [&]() -> int {
    std::vector<DirEntry> entries;
    if (const int rc = names_.list(dir_fd, dir_id, entries, nullptr); rc != 0) return rc;
    const auto active = volume_.keys().active();
    for (const auto& e : entries) {
      if (e.generation == active->generation) continue;
      ResolvedName to;
      to.encoded = active->names->encrypt(dir_id, e.name);
      to.backing =
          crypto::needs_long_name(to.encoded) ? crypto::long_name_for(to.encoded) : to.encoded;
      ResolvedName from;
      from.backing = e.backing;
      from.encoded =
          crypto::is_long_name(e.backing) ? std::string() : e.backing;  // only is_long() matters
      if (const int rc = names_.write_sidecar(dir_fd, to); rc != 0) return rc;
      if (const int err =
              rename_no_replace(volume_.backing_features(), dir_fd, e.backing, dir_fd, to.backing);
          err != 0) {
        // EEXIST: another mount's rekey moved the entry there first; the sidecar is its.
        if (err != -EEXIST) names_.remove_sidecar(dir_fd, to);
        return err;
      }
      names_.remove_sidecar(dir_fd, from);
      progress.names_done++;
    }
    return 0;
  });
}

int Rekeyer::rekey_symlink(int dir_fd, const std::string& backing, RekeyProgress& progress) {
  char buf[PATH_MAX];
  const ssize_t n = ::readlinkat(dir_fd, backing.c_str(), buf, sizeof buf);
  if (n < 0) return -errno;
  const std::string old_sealed(buf, static_cast<std::size_t>(n));
  const auto blob = names_.symlink_blob(dir_fd, old_sealed);
  const auto generation = blob ? blob_generation_of(*blob) : std::nullopt;
  if (generation && *generation == volume_.keys().active_generation()) return 0;
  const auto target = blob ? names_.open_symlink_blob(*blob) : std::nullopt;
  if (!target) return -EIO;
  struct stat st {};
  if (::fstatat(dir_fd, backing.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return -errno;
  // Build the re-sealed link (and a long target's new sidecar) beside the old one and
  // rename it over: atomic. It gets the old link's owner through an fd checked to be the
  // link just made. The old sidecar goes once no name uses it.
  std::string sealed;
  if (const int rc = names_.make_symlink_target(dir_fd, *target, sealed); rc != 0) return rc;
  const std::string temp = temp_entry_name();
  if (::symlinkat(sealed.c_str(), dir_fd, temp.c_str()) != 0) {
    const int err = errno;
    names_.drop_target_sidecar(dir_fd, sealed);
    return -err;
  }
  UniqueFd link;
  struct stat made {};
  int rc = open_fresh_entry(dir_fd, temp, S_IFLNK, link, &made);
  if (rc == 0) {
    if (const int err = hand_over(link.get(), {st.st_uid, st.st_gid}, made); err != 0)
      spdlog::warn("rekey: cannot keep the owner of a symlink: {}", std::strerror(-err));
  }
  if (rc == 0 && ::renameat(dir_fd, temp.c_str(), dir_fd, backing.c_str()) != 0) rc = -errno;
  if (rc != 0) {
    ::unlinkat(dir_fd, temp.c_str(), 0);
    names_.drop_target_sidecar(dir_fd, sealed);
    return rc;
  }
  if (st.st_nlink == 1) names_.drop_target_sidecar(dir_fd, old_sealed);
  progress.names_done++;
  return 0;
}

int Rekeyer::rekey_xattrs(int dir_fd, const std::string& backing, RekeyProgress& progress) {
  const std::string proc = entry_proc_path(dir_fd, backing);
  const std::uint32_t active = volume_.keys().active_generation();
  int result = 0;
  const int rc = for_each_user_xattr(proc, [&](const std::string& name, crypto::ByteView blob) {
    const auto g = blob_generation_of(blob);
    if (g && *g == active) return;
    const auto plain_name = names_.xattr_plain_name(name);
    const auto value = plain_name ? names_.open_xattr_value(*plain_name, blob) : std::nullopt;
    if (!value) {
      result = -EIO;
      return;
    }
    const std::string new_name = names_.xattr_backing_name(*plain_name, active);
    const auto sealed = names_.seal_xattr_value(*plain_name, *value);
    if (::lsetxattr(proc.c_str(), new_name.c_str(), sealed.data(), sealed.size(), 0) != 0) {
      // Not enough room for both copies (ext4: one block per inode): old one first.
      const bool retry = (errno == ENOSPC || errno == E2BIG) && new_name != name &&
                         ::lremovexattr(proc.c_str(), name.c_str()) == 0;
      if (!retry ||
          ::lsetxattr(proc.c_str(), new_name.c_str(), sealed.data(), sealed.size(), 0) != 0) {
        result = -errno;
        return;
      }
    }
    if (new_name != name) ::lremovexattr(proc.c_str(), name.c_str());
    progress.names_done++;
  });
  return rc != 0 ? rc : result;
}

int Rekeyer::rekey(RekeyProgress& progress, double rate_bytes_per_sec) {
  VolumeUsage usage;
  scan(usage);
  progress.bytes_total = usage.backing_bytes;
  progress.target_generation = volume_.keys().active_generation();
  const auto started = std::chrono::steady_clock::now();
  auto throttle = [&](std::uint64_t bytes) {
    progress.bytes_done += bytes;
    if (!(rate_bytes_per_sec > 0)) return;
    const double due = static_cast<double>(progress.bytes_done) / rate_bytes_per_sec;
    // Short naps, not one long sleep: at a slow rate the wait can be days, and a cancel
    // (unmount, daemon shutdown) must not wait it out.
    for (;;) {
      const double left =
          due - std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      if (progress.cancel || !(left > 0)) return;
      std::this_thread::sleep_for(std::chrono::duration<double>(std::min(left, 0.1)));
    }
  };
  auto note_error = [&](const std::string& what, int rc) {
    progress.errors++;
    std::lock_guard lock(progress.error_mutex);
    progress.last_error = what + ": " + std::strerror(-rc);
    spdlog::error("rekey: {}", progress.last_error);
  };
  Visitor v;
  v.on_dir = [&](int dir_fd, const crypto::DirId& id, const std::string& path) -> int {
    if (progress.cancel) return -ECANCELED;
    const int rc = rekey_names(dir_fd, id, path, progress);
    if (rc != 0) note_error("names in " + path, rc);
    return rc;
  };
  v.on_entry = [&](int dir_fd, const DirEntry& e, const struct stat& st,
                   const std::string& path) -> int {
    if (progress.cancel) return -ECANCELED;
    int rc = rekey_xattrs(dir_fd, e.backing, progress);
    if (rc == 0 && S_ISLNK(st.st_mode)) {
      rc = access_.with_dir(dir_fd, path,
                            [&] { return rekey_symlink(dir_fd, e.backing, progress); });
    } else if (rc == 0 && S_ISREG(st.st_mode)) {
      rc = access_.with_file(dir_fd, e.backing, path,
                             [&](FileContent& fc, int fd) { return fc.rekey(fd, throttle); });
      progress.files_done++;
      if (progress.on_file_done) progress.on_file_done();
    }
    if (rc != 0) note_error(path, rc);
    return rc;
  };
  UniqueFd root(::open(volume_.cipher_dir().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) return -errno;
  const int root_rc = rekey_xattrs(root.get(), kSelf, progress);
  if (root_rc != 0) note_error("xattrs of /", root_rc);
  const int rc = walk(root.get(), "/", v);
  // A directory the walk could not enter (no readable id, not listable) is logged by
  // walk only: count it, or an online rekey would report success having skipped it.
  if (rc != 0 && rc != -ECANCELED && progress.errors == 0)
    note_error("part of the tree (see the log for the directory)", rc);
  return rc != 0 ? rc : root_rc;
}

}  // namespace wardfs::volume
