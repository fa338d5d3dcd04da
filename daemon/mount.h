// The mounted process: unlock the volume, mount it through FUSE, serve until unmounted.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "keystore/keystore.h"

namespace wardfs::daemon {

struct MountRequest {
  std::filesystem::path cipher_dir;
  std::filesystem::path mount_point;
  keystore::Credentials credentials;
  std::chrono::milliseconds idle{0};  // --idle / idle=: unmount when unused (daemon/monitor.h)
  bool foreground = false;
  bool read_only = false;
  bool allow_other = false;
  bool nonempty = false;
  std::optional<std::filesystem::path> log_file;
  unsigned max_threads = 16;
};

// Returns the process exit code. Without `foreground` the caller's process returns
// only once the mount is live (0) or has failed (non-zero, message on stderr), while a
// detached child keeps serving.
int run_mount(const MountRequest& request);

// True if `path` is a mount point of this machine right now.
bool is_mount_point(const std::filesystem::path& path);

}  // namespace wardfs::daemon
