#include "crypto/derive_in_child.h"

#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

namespace wardfs::crypto {

namespace {

class PipeEnd {
 public:
  explicit PipeEnd(int fd = -1) : fd_(fd) {}
  ~PipeEnd() { reset(); }
  PipeEnd(const PipeEnd&) = delete;
  PipeEnd& operator=(const PipeEnd&) = delete;
  int get() const { return fd_; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

std::optional<SecretBytes> derive_here(std::size_t length,
                                       const std::function<bool(std::span<std::uint8_t>)>& derive) {
  SecretBytes out(length);
  if (!derive(out.span())) return std::nullopt;
  return out;
}

bool write_all(int fd, const std::uint8_t* data, std::size_t len) {
  while (len > 0) {
    const ssize_t n = ::write(fd, data, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    len -= static_cast<std::size_t>(n);
  }
  return true;
}

std::size_t read_all(int fd, std::uint8_t* data, std::size_t len) {
  std::size_t got = 0;
  while (got < len) {
    const ssize_t n = ::read(fd, data + got, len - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  return got;
}

// In the child: only derive(), sodium_malloc (mmap), write() and _exit(), so no lock
// another thread of the parent held at fork() matters (glibc's malloc, which Argon2
// uses, resets its own). Not SecretBytes: its small-key pool has a mutex a worker thread
// may have held at fork(). The working memory is locked like the daemon's, so it never
// reaches swap.
[[noreturn]] void run_child(int out_fd, std::size_t length,
                            const std::function<bool(std::span<std::uint8_t>)>& derive) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  (void)lock_process_memory();
  auto* out = static_cast<std::uint8_t*>(sodium_malloc(length));
  bool ok = out != nullptr;
  try {
    ok = ok && derive({out, length}) && write_all(out_fd, out, length);
  } catch (...) {
    ok = false;
  }
  if (out != nullptr) sodium_free(out);  // zeroes it
  ::_exit(ok ? 0 : 1);
}

bool child_succeeded(pid_t child) {
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) return false;
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

}  // namespace

std::optional<SecretBytes> derive_in_child(
    std::size_t length, const std::function<bool(std::span<std::uint8_t>)>& derive) {
  ensure_sodium();
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return derive_here(length, derive);
  PipeEnd read_end(fds[0]);
  PipeEnd write_end(fds[1]);
  const pid_t child = ::fork();
  if (child < 0) return derive_here(length, derive);
  if (child == 0) {
    read_end.reset();
    run_child(write_end.get(), length, derive);
  }
  write_end.reset();
  SecretBytes out(length);
  const std::size_t got = read_all(read_end.get(), out.data(), length);
  const bool ok = child_succeeded(child);
  if (!ok || got != length) return std::nullopt;
  return out;
}

}  // namespace wardfs::crypto
