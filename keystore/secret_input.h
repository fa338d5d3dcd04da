// Internal helpers of the keystores: reading secrets from fds, files and the terminal
// straight into locked memory, and a small RAII file descriptor.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>
#include <utility>

#include "base/posix_io.h"
#include "crypto/secret.h"

namespace wardfs::keystore::detail {

using crypto::SecretBytes;

inline constexpr std::size_t kMaxSecretInput = 4096;

// Reads at most kMaxSecretInput bytes from fd into locked memory; more is a usage error.
SecretBytes read_secret_fd(int fd, const std::string& what);
// Reads a whole small regular file (a FIFO or device is refused at once, never waited
// on); with `private_only`, also refuses files group or others may read and files owned
// by anyone but the caller (effective uid) or root.
SecretBytes read_secret_file(const std::filesystem::path& path, const std::string& what,
                             bool private_only);
// The text up to the first CR or LF.
SecretBytes first_line(const SecretBytes& text);
// Asks on /dev/tty with echo off; throws WardError(usage, no_tty_hint) without a terminal.
SecretBytes prompt_tty(const std::string& prompt, const std::string& no_tty_hint);

}  // namespace wardfs::keystore::detail
