// Errors that cross library boundaries carry a kind, which the CLI maps to its exit code.
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>

namespace wardfs {

enum class ErrorKind {
  usage = 1,           // bad flags or arguments
  wrong_key = 2,       // passphrase or key does not unlock the volume
  corrupt_volume = 3,  // config or metadata fails to parse or authenticate
  mount_failure = 4,   // FUSE mount, mount point or backing dir problem
  io = 5,              // any other system error
};

class WardError : public std::runtime_error {
 public:
  WardError(ErrorKind kind, const std::string& message)
      : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }
  int exit_code() const { return static_cast<int>(kind_); }

 private:
  ErrorKind kind_;
};

// What a FUSE mount answers once its daemon is gone: ENOTCONN, or for a moment after the
// daemon dies while the kernel still tears the connection down, ECONNABORTED (seen with
// FUSE over io_uring: statfs gave it for ~3 ms, then ENOTCONN) or ECANCELED (a request
// the kernel had queued to the dead daemon's ring; seen once in a test under load).
inline bool is_lost_fuse_connection(int err) {
  return err == ENOTCONN || err == ECONNABORTED || err == ECANCELED;
}

}  // namespace wardfs
