#include "daemon/notify.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "base/posix_io.h"

namespace wardfs::daemon {

Notifier Notifier::from_environment() {
  const char* value = std::getenv("NOTIFY_SOCKET");
  return Notifier(value ? value : "");
}

Notifier::Notifier(std::string socket_address) : address_(std::move(socket_address)) {}

bool Notifier::send(std::string_view message) const {
  if (!enabled()) return false;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (address_.size() >= sizeof(addr.sun_path) || (address_[0] != '/' && address_[0] != '@')) {
    return false;
  }
  std::memcpy(addr.sun_path, address_.data(), address_.size());
  // An abstract socket's name starts with a NUL byte and is exactly as long as the
  // address length says (no trailing NUL); a path socket's name is NUL-terminated.
  socklen_t length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address_.size());
  if (address_[0] == '@') {
    addr.sun_path[0] = '\0';
  } else {
    length += 1;
  }
  const UniqueFd fd(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return false;
  const ssize_t sent = ::sendto(fd.get(), message.data(), message.size(), MSG_NOSIGNAL,
                                reinterpret_cast<const sockaddr*>(&addr), length);
  return sent == static_cast<ssize_t>(message.size());
}

namespace {

// "%*" -> "<N>", the syslog priority journald reads from the start of a stderr line
// (SyslogLevelPrefix=yes, the default), so `journalctl -p warning` filters properly.
class PriorityFlag final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    static constexpr const char* kPriority[] = {"<7>", "<7>", "<6>", "<4>", "<3>", "<2>", "<6>"};
    const std::string_view p = kPriority[static_cast<int>(msg.level)];
    dest.append(p.data(), p.data() + p.size());
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<PriorityFlag>();
  }
};

}  // namespace

bool running_under_systemd() { return std::getenv("INVOCATION_ID") != nullptr; }

std::shared_ptr<spdlog::logger> journal_logger(const std::string& mount_point) {
  auto logger =
      std::make_shared<spdlog::logger>("wardfs", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  // The journal adds its own time stamp and unit name.
  std::string prefix;
  for (const char c : mount_point) {
    prefix += c;
    if (c == '%') prefix += '%';  // spdlog patterns treat % specially
  }
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<PriorityFlag>('*').set_pattern("%*" + prefix + ": %v");
  logger->set_formatter(std::move(formatter));
  return logger;
}

void log_keystore_identity(const std::string& identity) { spdlog::info("keystore {}", identity); }

}  // namespace wardfs::daemon
