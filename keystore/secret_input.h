// Internal helpers of the keystores: reading secrets from fds, files and the terminal
// straight into locked memory, and a small RAII file descriptor.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <utility>

#include "crypto/secret.h"

namespace wardfs::keystore::detail {

using crypto::SecretBytes;

inline constexpr std::size_t kMaxSecretInput = 4096;

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// Reads at most kMaxSecretInput bytes from fd into locked memory; more is a usage error.
SecretBytes read_secret_fd(int fd, const std::string& what);
// Reads a whole small file; with `private_only`, refuses files group or others may read
// and files owned by anyone but the caller (effective uid) and root.
SecretBytes read_secret_file(const std::filesystem::path& path, const std::string& what,
                             bool private_only);
// The text up to the first CR or LF.
SecretBytes first_line(const SecretBytes& text);
// Asks on /dev/tty with echo off; throws WardError(usage, no_tty_hint) without a terminal.
SecretBytes prompt_tty(const std::string& prompt, const std::string& no_tty_hint);

}  // namespace wardfs::keystore::detail
