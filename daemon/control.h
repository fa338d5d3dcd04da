// The per-mount control socket: JSON-lines requests from the CLI (status, rotate,
// rekey, retire) to the running daemon. The socket is mode 0600 and every peer's
// credentials are checked: only root and the mount's owner may talk to it.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <list>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "audit/log.h"
#include "base/posix_io.h"

namespace wardfs::daemon {

// /run/wardfs/<id>.sock for root, $XDG_RUNTIME_DIR/wardfs/<id>.sock otherwise (without
// it /tmp/wardfs-<uid>/<id>.sock), where id derives from the canonical mount point path.
std::filesystem::path control_socket_path(const std::filesystem::path& mount_point);

// The public status socket of an allow_other mount made by `owner`, for every user:
// /run/wardfs-public/<id>.sock for root, /tmp/wardfs-public-<uid>/<id>.sock otherwise (a
// directory others may enter but only its owner write), the socket mode 0666.
std::filesystem::path public_socket_path(const std::filesystem::path& mount_point, uid_t owner);

// Each connection is served on a thread of its own, so that `status` answers while a
// rotate waits on its keystore or a retire walks the tree (the handler serializes what
// must not overlap), and a client that connects and sends nothing holds up only itself.
// At most kMaxConnections are served at once; one more is told the daemon is busy.
class ControlServer {
 public:
  static constexpr std::size_t kMaxConnections = 4;
  // The peer is who asked (from SO_PEERCRED), for the audit log.
  using Handler =
      std::function<nlohmann::json(const nlohmann::json& request, const audit::Principal& peer)>;
  // Who may connect: root and the owner, or anyone (the public socket, whose handler must
  // answer nothing but what everyone may know).
  enum class Peers { owner_and_root, anyone };
  // Refused peers are recorded in `audit` (may be null).
  ControlServer(std::filesystem::path socket_path, uid_t owner, Handler handler,
                audit::AuditLog* audit = nullptr, Peers peers = Peers::owner_and_root);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

 private:
  struct Connection {
    std::thread thread;
    std::atomic<bool> done{false};
  };
  void serve();
  void start_connection(UniqueFd connection);
  void join_finished_connections();
  void handle(int connection);

  std::filesystem::path path_;
  uid_t owner_;
  Handler handler_;
  audit::AuditLog* audit_;
  Peers peers_;
  UniqueFd listener_;
  UniqueFd stop_read_;
  UniqueFd stop_write_;
  // Touched by the accepting thread only, and by the destructor once that has stopped.
  std::list<Connection> connections_;
  std::thread thread_;  // accepts; last, so that it starts after everything it uses
};

// Sends one request to the daemon serving `mount_point`; throws WardError when no
// daemon answers or it reports an error ({"error": "...", "code": N}), and before
// sending anything when the socket's directory is not private to the user (or root) or
// the listener is neither the user nor root (SO_PEERCRED).
// With `timeout`, a daemon that does not answer within it is an error (WardError(io)).
nlohmann::json control_request(const std::filesystem::path& mount_point,
                               const nlohmann::json& request,
                               std::optional<std::chrono::milliseconds> timeout = std::nullopt);

// Asks the public socket of the mount at `mount_point` for its public status, as any
// user; the listener must be the mount's owner (the kernel's user_id=) or root.
nlohmann::json public_status_request(const std::filesystem::path& mount_point);

}  // namespace wardfs::daemon
