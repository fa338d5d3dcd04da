// Where the daemon logs: stderr or the journal in the foreground, syslog in the
// background, or a file (--log-file, -o log_file=). A background mount on a host
// without syslog (no /dev/log, as in most containers) would lose every line, so it
// falls back to a file and says where. SIGHUP reopens the file (for logrotate).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "base/posix_io.h"
#include "daemon/mount.h"

namespace wardfs::daemon {

// True for "trace", "debug", "info", "warn" and "error" (--log-level, -o log_level=).
bool is_log_level(const std::string& name);

// The file a background daemon logs to when syslog is missing: WARDFS_LOG_DIR, else
// /var/log/wardfs as root, else $XDG_STATE_HOME/wardfs (~/.local/state/wardfs), then
// wardfs.log. The directory is made 0700 when it is created.
std::filesystem::path default_log_file();

// Opens `path` for appending: created 0600 (missing parents 0700), never through a
// symlink. An existing file must be a regular file of this user (or root's, for root);
// a wider mode is tightened to 0600. Throws WardError(usage) naming the file and the fix.
// The log names files and extended attributes in plaintext, so it is private to its
// owner like the audit log.
UniqueFd open_private_log_file(const std::filesystem::path& path);

// In the mounting process, before the daemon detaches: sets req.log_file to
// default_log_file() when the daemon would log to syslog but there is none (the socket
// WARDFS_SYSLOG_SOCKET, default /dev/log, is missing), and warns on stderr where it goes.
// Returns the log file opened (created 0600), to be handed to setup_logging() after the
// fork: the daemon then writes to the very file checked here, and a file it could not
// open fails the mount with its reason on stderr. An invalid fd when there is no file.
// Throws WardError when the log file cannot be opened.
UniqueFd open_log_before_detach(MountRequest& req);

// Installs the default logger for this process: `log_file` (from
// open_log_before_detach) when valid, else the journal, stderr or syslog, at the
// request's log level.
void setup_logging(const MountRequest& req, UniqueFd log_file);

// While alive, SIGHUP makes the log file be closed and opened again at its path (so
// that logrotate can move it away) instead of ending the mount.
class LogReopenOnHangup {
 public:
  LogReopenOnHangup();
  ~LogReopenOnHangup();
  LogReopenOnHangup(const LogReopenOnHangup&) = delete;
  LogReopenOnHangup& operator=(const LogReopenOnHangup&) = delete;
};

}  // namespace wardfs::daemon
