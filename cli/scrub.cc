// wardfs fsck --scrub MOUNTPOINT: reads every file, symbolic link and extended attribute
// through the mount point, at a bounded rate, so every chunk is authenticated by the
// running daemon; what fails with EIO is reported. Reads only the plaintext view: it
// needs no key and works beside the volume's users.
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "base/errors.h"
#include "base/posix_io.h"
#include "cli/fsck_report.h"

namespace wardfs::cli {

namespace {

// A token bucket holding at most one second's worth of tokens: reads spend tokens, and
// wait for them to refill at `rate` bytes per second.
class TokenBucket {
 public:
  explicit TokenBucket(std::uint64_t rate)
      : rate_(static_cast<double>(rate)), tokens_(0), last_(Clock::now()) {}
  void spend(std::size_t bytes) {
    refill();
    tokens_ -= static_cast<double>(bytes);
    if (tokens_ < 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(-tokens_ / rate_));
      refill();
    }
  }

 private:
  using Clock = std::chrono::steady_clock;
  void refill() {
    const auto now = Clock::now();
    tokens_ = std::min(rate_, tokens_ + rate_ * std::chrono::duration<double>(now - last_).count());
    last_ = now;
  }
  double rate_;
  double tokens_;
  Clock::time_point last_;
};

struct DirCloser {
  void operator()(DIR* d) const { ::closedir(d); }
};

class Scrubber {
 public:
  Scrubber(std::uint64_t rate, FsckReporter& out) : bucket_(rate), out_(out) {}

  void scrub_dir(int dir_fd, const std::string& path) {
    ++counts_.directories;
    check_xattrs(dir_fd, path);
    const int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    std::unique_ptr<DIR, DirCloser> dir(fd < 0 ? nullptr : ::fdopendir(fd));
    if (!dir) {
      if (fd >= 0) ::close(fd);
      failed(path, "cannot list the directory", errno);
      return;
    }
    std::vector<std::string> names;
    errno = 0;
    while (const dirent* d = ::readdir(dir.get())) {
      const std::string_view n = d->d_name;
      if (n != "." && n != "..") names.emplace_back(n);
    }
    if (errno != 0) failed(path, "listing the directory failed", errno);
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
      scrub_entry(dirfd(dir.get()), name, (path == "/" ? "/" : path + "/") + name);
      out_.progress(counts_);
    }
  }

  const volume::FsckCounts& counts() const { return counts_; }

 private:
  void scrub_entry(int dir_fd, const std::string& name, const std::string& path) {
    struct stat st {};
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      failed(path, "stat failed", errno);
      return;
    }
    if (S_ISLNK(st.st_mode)) {
      ++counts_.symlinks;
      char target[4096];
      if (::readlinkat(dir_fd, name.c_str(), target, sizeof target) < 0)
        failed(path, "readlink failed", errno);
      return;
    }
    if (S_ISDIR(st.st_mode)) {
      UniqueFd sub(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub) {
        failed(path, "cannot open the directory", errno);
        return;
      }
      scrub_dir(sub.get(), path);
      return;
    }
    if (!S_ISREG(st.st_mode)) {
      ++counts_.specials;
      return;
    }
    ++counts_.files;
    UniqueFd fd(
        ::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    if (!fd) {
      failed(path, "open failed", errno);
      return;
    }
    check_xattrs(fd.get(), path);
    read_all(fd.get(), path);
  }

  void read_all(int fd, const std::string& path) {
    // What the page cache holds was authenticated once; scrub asks the daemon again.
    ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    std::vector<char> buf(1 << 20);
    for (off_t at = 0;;) {
      const ssize_t n = ::pread(fd, buf.data(), buf.size(), at);
      if (n < 0) {
        if (errno == EINTR) continue;
        failed(path, "read at offset " + std::to_string(at) + " failed", errno);
        return;
      }
      if (n == 0) return;
      at += n;
      counts_.bytes += static_cast<std::uint64_t>(n);
      bucket_.spend(static_cast<std::size_t>(n));
    }
  }

  void check_xattrs(int fd, const std::string& path) {
    std::vector<char> list(65536);
    const ssize_t n = ::flistxattr(fd, list.data(), list.size());
    if (n < 0) {
      if (errno != ENOTSUP && errno != ENODATA) failed(path, "listxattr failed", errno);
      return;
    }
    std::vector<char> value(65536);
    for (ssize_t at = 0; at < n;) {
      const std::string name = list.data() + at;
      at += static_cast<ssize_t>(name.size()) + 1;
      ++counts_.xattrs;
      if (::fgetxattr(fd, name.c_str(), value.data(), value.size()) < 0 && errno != ENODATA)
        failed(path, "reading extended attribute " + name + " failed", errno);
    }
  }

  void failed(const std::string& path, const std::string& what, int err) {
    const bool eio = err == EIO;
    out_.problem({volume::FsckSeverity::damage, eio ? "scrub_eio" : "io_error", path, "",
                  what + ": " + std::strerror(err),
                  eio ? "the daemon's log names the chunk; run wardfs fsck on the backing "
                        "directory for details, restore " +
                            path + " from a backup"
                      : "check permissions and the mount",
                  false});
  }

  TokenBucket bucket_;
  FsckReporter& out_;
  volume::FsckCounts counts_;
};

}  // namespace

int run_scrub(const std::filesystem::path& mount_point, std::uint64_t rate, bool json) {
  UniqueFd root(::open(mount_point.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) {
    throw WardError(ErrorKind::io, "cannot open mount point " + mount_point.string() + ": " +
                                       std::strerror(errno));
  }
  FsckReporter out(json, "scrub of " + mount_point.string());
  Scrubber scrubber(rate, out);
  scrubber.scrub_dir(root.get(), "/");
  return out.finish(scrubber.counts());
}

}  // namespace wardfs::cli
