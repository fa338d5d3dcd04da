#include "base/posix_io.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <fstream>

namespace wardfs {

ssize_t pread_full(int fd, void* buf, std::size_t len, off_t offset) {
  std::size_t done = 0;
  auto* p = static_cast<char*>(buf);
  while (done < len) {
    const ssize_t n = ::pread(fd, p + done, len - done, offset + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) break;
    done += static_cast<std::size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

ssize_t pwrite_full(int fd, const void* buf, std::size_t len, off_t offset) {
  std::size_t done = 0;
  const auto* p = static_cast<const char*>(buf);
  while (done < len) {
    const ssize_t n = ::pwrite(fd, p + done, len - done, offset + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) return -EIO;
    done += static_cast<std::size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

int create_private_directories(const std::filesystem::path& dir) {
  std::filesystem::path prefix;
  for (const auto& part : dir.lexically_normal()) {
    prefix /= part;
    if (part.empty() || part == prefix.root_path()) continue;
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) return -errno;
  }
  return 0;
}

int for_each_dir_entry(int dir_fd, const DirEntryFn& fn) {
  const UniqueFd fd(::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return -errno;
  return list_open_directory(fd.get(), fn);
}

// getdents64 directly: readdir(3) would cost an fdopendir (two fcntl) and a 32 KiB
// buffer per listing, on the path of every cold opendir.
int list_open_directory(int dir_fd, const DirEntryFn& fn) {
  alignas(dirent64) std::array<char, 16384> buf;
  for (;;) {
    const long n = ::syscall(SYS_getdents64, dir_fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -errno;
    if (n == 0) return 0;
    for (long pos = 0; pos < n;) {
      const auto* d = reinterpret_cast<const dirent64*>(buf.data() + pos);
      const std::string_view name = d->d_name;
      if (name != "." && name != "..") fn(name, d->d_ino, d->d_type);
      pos += d->d_reclen;
    }
  }
}

std::uint64_t read_number_file(const char* path) {
  std::ifstream in(path);
  std::uint64_t value = 0;
  return (in >> value) ? value : 0;
}

}  // namespace wardfs
