// The mounted process: unlock the volume, mount it through FUSE, serve until unmounted.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "audit/key_loss.h"
#include "audit/record.h"
#include "daemon/transport.h"
#include "fuse/listing_attrs.h"
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
  // --protect-mountpoint: the mount point directory itself is made mode 000 first, so
  // that while the volume is not mounted nobody but root can put plaintext in it.
  bool protect_mount_point = false;
  // -o private_backing: with allow_other, a backing directory other users can reach is
  // refused instead of warned about.
  bool require_private_backing = false;
  // --force: take over the volume's lease from a writer of another host whose heartbeat
  // has not yet timed out (volume/lease.h); for a host known to be down.
  bool take_over_lease = false;
  std::optional<std::filesystem::path> log_file;  // --log-file, -o log_file=
  std::string log_level = "info";                 // --log-level, -o log_level= (daemon/logging.h)
  unsigned max_threads = 16;
  // -o writeback_cache=1, with a reserve of backing space (fuse/writeback_space.h)
  bool writeback_cache = false;
  bool shared = false;  // -o shared: one of several read-write mounts (fuse/filesystem.h)
  fuse::ReaddirPlus readdirplus =
      fuse::ReaddirPlus::adaptive;                // -o readdirplus= (fuse/filesystem.h)
  IoUringMode io_uring = IoUringMode::automatic;  // -o io_uring= (daemon/transport.h)
  std::size_t max_inodes = 0;  // -o max_inodes=N; 0: as many as RLIMIT_NOFILE allows
  // -o metrics_file=, metrics_interval=: Prometheus text kept current there (daemon/metrics.h)
  std::optional<std::filesystem::path> metrics_file;
  std::optional<std::chrono::milliseconds> metrics_interval;  // default 15 s
  std::optional<std::filesystem::path> audit_log;             // default: audit::default_log_path
  audit::Level audit_level = audit::Level::keys;
  audit::OnFailure audit_on_failure = audit::OnFailure::fail_open;
  std::uint64_t audit_rotate_bytes = 64ULL << 20;  // the live log file moves aside beyond this
  // --audit-key-missing: what to do when wardfs.conf lost the audit key but the log exists
  audit::MissingKey audit_key_missing = audit::MissingKey::refuse;
  std::vector<std::string> audit_anchor_argv;  // --audit-anchor-cmd, split; empty: none
};

// Returns the process exit code. Without `foreground` the caller's process returns
// only once the mount is live (0) or has failed (non-zero, message on stderr), while a
// detached child keeps serving.
int run_mount(const MountRequest& request);

// True if `path` is a mount point of this machine right now.
bool is_mount_point(const std::filesystem::path& path);

}  // namespace wardfs::daemon
