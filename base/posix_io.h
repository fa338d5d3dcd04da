// RAII file descriptors, full-length positional I/O that retries short transfers, and the
// small readers of directories and kernel files built on them.
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string_view>
#include <utility>

namespace wardfs {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

using DirEntryFn = std::function<void(std::string_view name, ino_t ino, unsigned char type)>;

// Calls `fn(name, inode, type)` for each entry of directory `dir_fd` but "." and "..",
// read through a descriptor of its own (`dir_fd`, which may be O_PATH, is left alone).
// 0 or -errno.
int for_each_dir_entry(int dir_fd, const DirEntryFn& fn);

// The same over `dir_fd` itself, a directory opened for this listing (not O_PATH), read
// from where it stands (the start, on a fresh descriptor): saves opening another.
int list_open_directory(int dir_fd, const DirEntryFn& fn);

// Both return the bytes transferred (short only at EOF for reads) or -errno.
ssize_t pread_full(int fd, void* buf, std::size_t len, off_t offset);
ssize_t pwrite_full(int fd, const void* buf, std::size_t len, off_t offset);

// Creates `dir` and every missing parent with mode 0700, whatever the umask (the daemon
// runs with umask 0, under which create_directories made them 0777). Directories that
// exist are left alone. 0 or -errno.
int create_private_directories(const std::filesystem::path& dir);

// The unsigned number a kernel file such as /proc/sys/vm/dirty_ratio holds; 0 when it
// cannot be read.
std::uint64_t read_number_file(const char* path);

}  // namespace wardfs
