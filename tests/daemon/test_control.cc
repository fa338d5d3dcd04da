// The control socket serves connections side by side: `status` answers while another
// request is still running or a client sits silent, and a connection past the limit is
// told the daemon is busy instead of waiting.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "base/posix_io.h"
#include "daemon/control.h"
#include "tests/crypto/test_util.h"

using wardfs::UniqueFd;
using wardfs::daemon::ControlServer;
using wardfs::test::TempDir;

namespace {

// A server whose "slow" requests wait until release() and whose "status" answers at once.
struct SlowServer {
  TempDir dir;
  std::filesystem::path socket = dir.path() / "control.sock";
  std::promise<void> released;
  std::shared_future<void> release_signal = released.get_future().share();
  ControlServer server{socket, ::geteuid(),
                       [this](const nlohmann::json& request, const wardfs::audit::Principal&) {
                         if (request.value("op", "") == "slow") release_signal.wait();
                         return nlohmann::json{{"answered", request.value("op", "")}};
                       }};
  void release() { released.set_value(); }
};

UniqueFd connect_to(const std::filesystem::path& socket) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket.c_str(), sizeof addr.sun_path - 1);
  REQUIRE(::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
  const timeval timeout{10, 0};  // a server that does not answer fails the test, not hangs it
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  return fd;
}

void send_op(int fd, const std::string& op) {
  const std::string line = nlohmann::json{{"op", op}}.dump() + "\n";
  REQUIRE(::send(fd, line.data(), line.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(line.size()));
}

// The reply line, or "" when none came within the timeout. Thread-safe (no assertions).
std::string reply_of(int fd) {
  std::string reply;
  char c = 0;
  while (::read(fd, &c, 1) == 1 && c != '\n') reply.push_back(c);
  return reply;
}

std::string answered(const std::string& reply) {
  const auto j = nlohmann::json::parse(reply, nullptr, false);
  return j.is_object() ? j.value("answered", j.value("error", std::string("?"))) : reply;
}

}  // namespace

TEST_CASE("status answers while another control request runs or a client is silent", "[control]") {
  SlowServer s;
  const UniqueFd slow = connect_to(s.socket);
  send_op(slow.get(), "slow");
  const UniqueFd silent = connect_to(s.socket);  // connects, sends nothing

  const UniqueFd status = connect_to(s.socket);
  send_op(status.get(), "status");
  CHECK(answered(reply_of(status.get())) == "status");

  s.release();
  CHECK(answered(reply_of(slow.get())) == "slow");
}

TEST_CASE("A connection past the limit is told the daemon is busy", "[control]") {
  SlowServer s;
  std::vector<UniqueFd> slow;
  for (std::size_t i = 0; i < ControlServer::kMaxConnections; ++i) {
    slow.push_back(connect_to(s.socket));
    send_op(slow.back().get(), "slow");
  }
  // The server takes connections in order: once a status behind them is refused, all
  // the slow ones are in progress.
  const UniqueFd extra = connect_to(s.socket);
  send_op(extra.get(), "status");
  const std::string refusal = reply_of(extra.get());
  CHECK(refusal.find("busy") != std::string::npos);

  s.release();
  for (const auto& fd : slow) CHECK(answered(reply_of(fd.get())) == "slow");
  const UniqueFd after = connect_to(s.socket);  // finished connections free their places
  send_op(after.get(), "status");
  CHECK(answered(reply_of(after.get())) == "status");
}
