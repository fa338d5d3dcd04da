// systemd's readiness protocol (sd_notify(3)), spoken directly: one datagram of
// "KEY=VALUE\n" lines to the AF_UNIX socket named by $NOTIFY_SOCKET. No libsystemd, so
// the package depends on nothing systemd ships and runs the same outside systemd.
#pragma once

#include <spdlog/logger.h>

#include <memory>
#include <string>
#include <string_view>

namespace wardfs::daemon {

class Notifier {
 public:
  // Reads $NOTIFY_SOCKET once; without it (not under systemd) every send is a no-op.
  static Notifier from_environment();
  explicit Notifier(std::string socket_address);  // "/path" or "@abstract"

  bool enabled() const { return !address_.empty(); }
  // Sends `message` ("READY=1\nSTATUS=..."); false if it could not be delivered.
  bool send(std::string_view message) const;

 private:
  std::string address_;
};

// True when systemd started this process as a service (it sets $INVOCATION_ID).
bool running_under_systemd();

// A stderr logger for the journal: every line carries the mount point, since one
// journal holds the lines of every wardfs@ instance.
std::shared_ptr<spdlog::logger> journal_logger(const std::string& mount_point);

// A keystore::Credentials::notify that logs "keystore IDENTITY" instead of printing it.
void log_keystore_identity(const std::string& identity);

}  // namespace wardfs::daemon
