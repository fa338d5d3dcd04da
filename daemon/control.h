// The per-mount control socket: JSON-lines requests from the CLI (status, rotate,
// rekey, retire) to the running daemon. The socket is mode 0600 and every peer's
// credentials are checked: only root and the mount's owner may talk to it.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "audit/log.h"
#include "volume/posix_io.h"

namespace wardfs::daemon {

// /run/wardfs/<id>.sock for root, $XDG_RUNTIME_DIR/wardfs/<id>.sock otherwise (without
// it /tmp/wardfs-<uid>/<id>.sock), where id derives from the canonical mount point path.
std::filesystem::path control_socket_path(const std::filesystem::path& mount_point);

class ControlServer {
 public:
  // The peer is who asked (from SO_PEERCRED), for the audit log.
  using Handler =
      std::function<nlohmann::json(const nlohmann::json& request, const audit::Principal& peer)>;
  // Refused peers are recorded in `audit` (may be null).
  ControlServer(std::filesystem::path socket_path, uid_t owner, Handler handler,
                audit::AuditLog* audit = nullptr);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

 private:
  void serve();
  void handle(int connection);

  std::filesystem::path path_;
  uid_t owner_;
  Handler handler_;
  audit::AuditLog* audit_;
  volume::UniqueFd listener_;
  volume::UniqueFd stop_read_;
  volume::UniqueFd stop_write_;
  std::thread thread_;
};

// Sends one request to the daemon serving `mount_point`; throws WardError when no
// daemon answers or it reports an error ({"error": "...", "code": N}), and before
// sending anything when the socket's directory is not private to the user (or root) or
// the listener is neither the user nor root (SO_PEERCRED).
// With `timeout`, a daemon that does not answer within it is an error (WardError(io)).
nlohmann::json control_request(const std::filesystem::path& mount_point,
                               const nlohmann::json& request,
                               std::optional<std::chrono::milliseconds> timeout = std::nullopt);

}  // namespace wardfs::daemon
