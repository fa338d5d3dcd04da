#include "daemon/control.h"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

#include "base/errors.h"
#include "crypto/bytes.h"
#include "crypto/kdf.h"
#include "daemon/mount_table.h"

namespace wardfs::daemon {

namespace stdfs = std::filesystem;

namespace {
constexpr std::size_t kMaxRequest = 64 * 1024;

bool read_line(int fd, std::string& out) {
  char buf[4096];
  while (out.find('\n') == std::string::npos && out.size() < kMaxRequest) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return !out.empty();
    out.append(buf, static_cast<std::size_t>(n));
  }
  if (const auto nl = out.find('\n'); nl != std::string::npos) out.resize(nl);
  return true;
}

void write_line(int fd, const std::string& text) {
  const std::string line = text + "\n";
  std::size_t done = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<std::size_t>(n);
  }
}

sockaddr_un address_of(const stdfs::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.string().size() >= sizeof addr.sun_path) {
    throw WardError(ErrorKind::io, "control socket path too long: " + path.string());
  }
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  return addr;
}

// Without XDG_RUNTIME_DIR the socket lives under the shared /tmp, where anyone could have
// made the directory first and answer in the daemon's place. Only a real directory that
// belongs to us (or root) and that nobody else may write into is trusted.
// `me`: who else but root may own it (the mount's owner, for a public socket).
void require_private_directory(const stdfs::path& dir, uid_t me = ::geteuid()) {
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0) {
    throw WardError(ErrorKind::mount_failure,
                    "control socket directory " + dir.string() + ": " + std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode) || (st.st_uid != me && st.st_uid != 0) || (st.st_mode & 022) != 0) {
    throw WardError(ErrorKind::mount_failure,
                    "control socket directory " + dir.string() +
                        " is not a directory owned by uid " + std::to_string(me) +
                        " (or root) that only its owner may write to, so wardfs does not trust "
                        "it; remove it (or set XDG_RUNTIME_DIR to a private directory)");
  }
}

// The daemon's side: our own directory, 0700 even if an older wardfs made it wider (0755
// for the public socket, which others must reach).
void prepare_socket_directory(const stdfs::path& dir, mode_t mode) {
  create_private_directories(dir);
  struct stat st {};
  if (::lstat(dir.c_str(), &st) == 0 && S_ISDIR(st.st_mode) && st.st_uid == ::geteuid())
    ::chmod(dir.c_str(), mode);
  require_private_directory(dir);
}

// The client's side: the process listening must be the user's own daemon or root's
// (`trusted`: the mount's owner, for a public socket).
void require_trusted_peer(int fd, const stdfs::path& path, uid_t trusted = ::geteuid()) {
  ucred peer{};
  socklen_t len = sizeof peer;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) {
    throw WardError(ErrorKind::io,
                    "cannot ask who listens on " + path.string() + ": " + std::strerror(errno));
  }
  if (peer.uid != trusted && peer.uid != 0) {
    throw WardError(ErrorKind::mount_failure,
                    "the control socket " + path.string() + " is served by uid " +
                        std::to_string(peer.uid) + " (pid " + std::to_string(peer.pid) +
                        "), not by uid " + std::to_string(trusted) +
                        " or root: refusing to trust it; remove the socket and "
                        "check who made it");
  }
}
}  // namespace

namespace {

std::string socket_id(const stdfs::path& mount_point) {
  std::error_code ec;
  std::string canonical = stdfs::weakly_canonical(mount_point, ec).string();
  // Another user may not stat a FUSE mount (nor a dead one): the daemon's own path then.
  if (ec) canonical = stdfs::absolute(mount_point).lexically_normal().string();
  const auto digest = crypto::sha256(crypto::as_bytes(canonical));
  return crypto::hex_encode(crypto::ByteView(digest.data(), 12)) + ".sock";
}

const stdfs::path kRootSocketDir = "/run/wardfs";

}  // namespace

stdfs::path public_socket_path(const stdfs::path& mount_point, uid_t owner) {
  const stdfs::path dir = owner == 0
                              ? stdfs::path("/run/wardfs-public")
                              : stdfs::path("/tmp") / ("wardfs-public-" + std::to_string(owner));
  return dir / socket_id(mount_point);
}

stdfs::path control_socket_path(const stdfs::path& mount_point) {
  stdfs::path dir = kRootSocketDir;
  if (::geteuid() != 0) {
    const char* runtime = std::getenv("XDG_RUNTIME_DIR");
    // In the shared /tmp, one directory per user, so users do not fight over one name.
    dir = runtime != nullptr && *runtime != '\0'
              ? stdfs::path(runtime) / "wardfs"
              : stdfs::path("/tmp") / ("wardfs-" + std::to_string(::geteuid()));
  }
  return dir / socket_id(mount_point);
}

ControlServer::ControlServer(stdfs::path socket_path, uid_t owner, Handler handler,
                             audit::AuditLog* audit, Peers peers)
    : path_(std::move(socket_path)),
      owner_(owner),
      handler_(std::move(handler)),
      audit_(audit),
      peers_(peers) {
  prepare_socket_directory(path_.parent_path(), peers_ == Peers::anyone ? 0755 : 0700);
  ::unlink(path_.c_str());  // a stale socket of a daemon that died
  listener_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listener_) throw WardError(ErrorKind::io, "socket: " + std::string(std::strerror(errno)));
  const sockaddr_un addr = address_of(path_);
  // The socket is born 0600 (0666 for anyone: connecting needs write permission).
  const mode_t old_mask = ::umask(peers_ == Peers::anyone ? 0111 : 0177);
  const int bound = ::bind(listener_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  ::umask(old_mask);
  if (bound != 0 || ::listen(listener_.get(), 8) != 0) {
    throw WardError(ErrorKind::io,
                    "cannot listen on " + path_.string() + ": " + std::strerror(errno));
  }
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    throw WardError(ErrorKind::io, "pipe: " + std::string(std::strerror(errno)));
  stop_read_.reset(fds[0]);
  stop_write_.reset(fds[1]);
  thread_ = std::thread([this] { serve(); });
}

ControlServer::~ControlServer() {
  (void)!::write(stop_write_.get(), "x", 1);
  if (thread_.joinable()) thread_.join();
  for (auto& c : connections_) c.thread.join();  // a request in progress finishes first
  ::unlink(path_.c_str());
}

void ControlServer::serve() {
  for (;;) {
    pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {stop_read_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    UniqueFd connection(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (connection) start_connection(std::move(connection));
  }
}

namespace {

void refuse_busy(int connection, std::size_t in_progress) {
  const timeval timeout{1, 0};
  ::setsockopt(connection, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  write_line(connection, nlohmann::json{{"error", "the wardfs daemon is busy with " +
                                                      std::to_string(in_progress) +
                                                      " control requests; try again shortly"},
                                        {"code", static_cast<int>(ErrorKind::io)}}
                             .dump());
}

}  // namespace

void ControlServer::start_connection(UniqueFd connection) {
  join_finished_connections();
  if (connections_.size() >= kMaxConnections) {
    refuse_busy(connection.get(), connections_.size());
    return;
  }
  auto& c = connections_.emplace_back();
  try {
    c.thread = std::thread([this, &c, owned = std::move(connection)] {
      handle(owned.get());
      c.done.store(true, std::memory_order_release);
    });
  } catch (const std::system_error&) {
    // No thread to be had (EAGAIN): the connection, already inside the failed thread's
    // state, closes unanswered, and the server goes on.
    connections_.pop_back();
  }
}

void ControlServer::join_finished_connections() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (!it->done.load(std::memory_order_acquire)) {
      ++it;
      continue;
    }
    it->thread.join();
    it = connections_.erase(it);
  }
}

void ControlServer::handle(int connection) {
  ucred peer{};
  socklen_t len = sizeof peer;
  if (::getsockopt(connection, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0 ||
      (peers_ == Peers::owner_and_root && peer.uid != 0 && peer.uid != owner_)) {
    spdlog::warn("control socket: refused a request from uid {} pid {}", peer.uid, peer.pid);
    if (audit_ != nullptr) {
      audit::Event e;
      e.event = "access_denied";
      e.principal = audit::Principal::of_process(peer.uid, peer.gid, peer.pid);
      e.result = "denied";
      e.detail = {{"reason", "control socket: only root and the mount's owner may ask"}};
      audit_->record(std::move(e));
    }
    write_line(
        connection,
        nlohmann::json{{"error", "permission denied: only root and uid " + std::to_string(owner_) +
                                     " (who mounted it) may use this control socket; "
                                     "run as root (sudo) or as that user"},
                       {"code", 1}}
            .dump());
    return;
  }
  const timeval timeout{5, 0};
  ::setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::string line;
  if (!read_line(connection, line)) return;
  nlohmann::json reply;
  try {
    reply = handler_(nlohmann::json::parse(line),
                     audit::Principal::of_process(peer.uid, peer.gid, peer.pid));
  } catch (const WardError& e) {
    reply = {{"error", e.what()}, {"code", e.exit_code()}};
  } catch (const std::exception& e) {
    reply = {{"error", e.what()}, {"code", static_cast<int>(ErrorKind::io)}};
  }
  // An error message can quote the request's bytes, which need not be UTF-8: replace them
  // rather than let dump() throw out of the server thread (std::terminate, a dead mount).
  write_line(connection, reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

namespace {

// Connects to the daemon's socket: the caller's own one first, then (for a user other
// than root) root's, so that a job of another user learns that it may not ask rather
// than that nobody answers.
UniqueFd connect_to_daemon(const stdfs::path& mount_point) {
  std::vector<stdfs::path> candidates = {control_socket_path(mount_point)};
  if (::geteuid() != 0) candidates.push_back(kRootSocketDir / socket_id(mount_point));
  std::string tried;
  bool denied = false;
  for (const auto& path : candidates) {
    std::error_code ec;
    // A missing directory means no daemon: connect() says so below.
    if (stdfs::exists(path.parent_path(), ec)) require_private_directory(path.parent_path());
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) throw WardError(ErrorKind::io, "socket: " + std::string(std::strerror(errno)));
    const sockaddr_un addr = address_of(path);
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
      require_trusted_peer(fd.get(), path);
      return fd;
    }
    denied = denied || errno == EACCES || errno == EPERM;
    tried += (tried.empty() ? "" : ", ") + path.string() + ": " + std::strerror(errno);
  }
  if (denied) {
    throw WardError(ErrorKind::mount_failure,
                    "permission denied: the control socket of the wardfs daemon for " +
                        mount_point.string() +
                        " is only for root and the user who mounted it; run this as root "
                        "(sudo) or as that user, or ask for the public counters of an "
                        "allow_other mount with 'wardfs status --public' (" +
                        tried + ")");
  }
  throw WardError(ErrorKind::mount_failure,
                  "no wardfs daemon answers for " + mount_point.string() + " (" + tried + ")");
}

}  // namespace

nlohmann::json control_request(const stdfs::path& mount_point, const nlohmann::json& request,
                               std::optional<std::chrono::milliseconds> timeout) {
  const UniqueFd fd = connect_to_daemon(mount_point);
  if (timeout) {
    const auto ms = timeout->count();
    const timeval tv{static_cast<time_t>(ms / 1000), static_cast<suseconds_t>(ms % 1000 * 1000)};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  }
  write_line(fd.get(), request.dump());
  std::string line;
  errno = 0;
  if (!read_line(fd.get(), line)) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      throw WardError(ErrorKind::mount_failure, "the wardfs daemon for " + mount_point.string() +
                                                    " did not answer within the timeout");
    }
    throw WardError(ErrorKind::io, "the daemon closed the control connection");
  }
  nlohmann::json reply = nlohmann::json::parse(line);
  if (reply.contains("error")) {
    throw WardError(static_cast<ErrorKind>(reply.value("code", 5)),
                    reply["error"].get<std::string>());
  }
  return reply;
}

nlohmann::json public_status_request(const stdfs::path& mount_point) {
  const auto owner = fuse_mount_owner(mount_point);
  if (!owner) throw WardError(ErrorKind::mount_failure, mount_point.string() + " is not mounted");
  const stdfs::path path = public_socket_path(mount_point, *owner);
  std::error_code ec;
  if (!stdfs::exists(path, ec)) {
    throw WardError(ErrorKind::mount_failure,
                    "no public status for " + mount_point.string() + " (" + path.string() +
                        " is missing): only a mount with -o allow_other offers one");
  }
  require_private_directory(path.parent_path(), *owner);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw WardError(ErrorKind::io, "socket: " + std::string(std::strerror(errno)));
  const sockaddr_un addr = address_of(path);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    throw WardError(ErrorKind::mount_failure, "no wardfs daemon answers for " +
                                                  mount_point.string() + " (" + path.string() +
                                                  ": " + std::strerror(errno) + ")");
  }
  require_trusted_peer(fd.get(), path, *owner);
  const timeval tv{10, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  write_line(fd.get(), nlohmann::json{{"op", "public_status"}}.dump());
  std::string line;
  if (!read_line(fd.get(), line))
    throw WardError(ErrorKind::mount_failure, "the wardfs daemon for " + mount_point.string() +
                                                  " did not answer its public socket");
  nlohmann::json reply = nlohmann::json::parse(line);
  if (reply.contains("error")) {
    throw WardError(static_cast<ErrorKind>(reply.value("code", 5)),
                    reply["error"].get<std::string>());
  }
  return reply;
}

}  // namespace wardfs::daemon
