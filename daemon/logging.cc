#include "daemon/logging.h"

#include <fcntl.h>
#include <signal.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/dist_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>
#include <thread>

#include "base/errors.h"
#include "base/posix_io.h"
#include "daemon/notify.h"

namespace wardfs::daemon {

namespace stdfs = std::filesystem;

namespace {

constexpr std::array<const char*, 5> kLevels = {"trace", "debug", "info", "warn", "error"};

// The file sink behind a switch that a reopen can swap without racing other threads'
// log calls (dist_sink locks around both).
struct LogFile {
  std::mutex mutex;
  stdfs::path path;
  std::shared_ptr<spdlog::sinks::dist_sink_mt> dist;
};

LogFile& log_file_state() {
  static LogFile state;
  return state;
}

[[noreturn]] void refuse(const std::filesystem::path& path, const std::string& why) {
  throw WardError(ErrorKind::usage, "log file " + path.string() + " " + why);
}

class FdSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit FdSink(UniqueFd fd) : fd_(std::move(fd)) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    // O_APPEND: one write() lands whole at the end even if another process appends too.
    std::size_t done = 0;
    while (done < line.size()) {
      const ssize_t n = ::write(fd_.get(), line.data() + done, line.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // a full disk must not stop the filesystem
      done += static_cast<std::size_t>(n);
    }
  }
  void flush_() override {}

 private:
  UniqueFd fd_;
};

// Log lines can name files and users: the file is private to the daemon's user.
std::shared_ptr<spdlog::sinks::sink> open_private_file_sink(const stdfs::path& path) {
  return std::make_shared<FdSink>(open_private_log_file(path));
}

bool syslog_available() {
  const char* socket = std::getenv("WARDFS_SYSLOG_SOCKET");
  const stdfs::path path = socket != nullptr && *socket != '\0' ? socket : "/dev/log";
  std::error_code ec;
  return stdfs::exists(path, ec);
}

int g_hangup_write_fd = -1;

void on_hangup(int) {
  const int saved = errno;
  if (g_hangup_write_fd >= 0) (void)!::write(g_hangup_write_fd, "h", 1);
  errno = saved;
}

void reopen_log_file() {
  auto& state = log_file_state();
  std::lock_guard lock(state.mutex);
  if (!state.dist) return;
  try {
    state.dist->set_sinks({open_private_file_sink(state.path)});
    spdlog::info("log file {} reopened (SIGHUP)", state.path.string());
  } catch (const WardError& e) {
    spdlog::error("SIGHUP: {}; logging on to the old file", e.what());
  }
}

UniqueFd g_hangup_read;
std::thread g_hangup_thread;

}  // namespace

UniqueFd open_private_log_file(const std::filesystem::path& path) {
  if (path.has_parent_path()) create_private_directories(path.parent_path());
  UniqueFd fd(::open(path.c_str(),
                     O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600));
  if (!fd && errno == ELOOP) refuse(path, "is a symlink; give the real path");
  if (!fd) {
    throw WardError(ErrorKind::io,
                    "cannot open the log file " + path.string() + ": " + std::strerror(errno));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) refuse(path, "is not a regular file");
  if (st.st_uid != ::geteuid()) {
    refuse(path, "is owned by uid " + std::to_string(st.st_uid) +
                     ", not to you: remove it or choose another --log-file");
  }
  if ((st.st_mode & 077) != 0 && ::fchmod(fd.get(), 0600) != 0) {
    refuse(path, "is readable by others and cannot be made private (" +
                     std::string(std::strerror(errno)) + "); run: chmod 600 " + path.string());
  }
  return fd;
}

bool is_log_level(const std::string& name) {
  for (const char* level : kLevels) {
    if (name == level) return true;
  }
  return false;
}

stdfs::path default_log_file() {
  stdfs::path dir;
  if (const char* env = std::getenv("WARDFS_LOG_DIR"); env != nullptr && *env != '\0') {
    dir = env;
  } else if (::geteuid() == 0) {
    dir = "/var/log/wardfs";
  } else if (const char* state = std::getenv("XDG_STATE_HOME"); state != nullptr && *state) {
    dir = stdfs::path(state) / "wardfs";
  } else {
    const char* home = std::getenv("HOME");
    dir = stdfs::path(home != nullptr ? home : "/tmp") / ".local/state/wardfs";
  }
  return dir / "wardfs.log";
}

UniqueFd open_log_before_detach(MountRequest& req) {
  if (req.log_file) return open_private_log_file(*req.log_file);
  if (req.foreground || syslog_available()) return {};
  const stdfs::path file = default_log_file();
  req.log_file = file;
  UniqueFd fd = open_private_log_file(file);
  std::cerr << "wardfs: warning: no syslog on this host (/dev/log is missing); the daemon logs "
               "to "
            << file.string() << " (choose another file with --log-file or -o log_file=)\n";
  return fd;
}

void setup_logging(const MountRequest& req, UniqueFd log_file) {
  std::shared_ptr<spdlog::logger> logger;
  if (log_file && req.log_file) {
    auto& state = log_file_state();
    std::lock_guard lock(state.mutex);
    state.path = *req.log_file;
    state.dist = std::make_shared<spdlog::sinks::dist_sink_mt>();
    state.dist->add_sink(std::make_shared<FdSink>(std::move(log_file)));
    logger = std::make_shared<spdlog::logger>("wardfs", state.dist);
    spdlog::register_logger(logger);
  } else if (req.foreground && running_under_systemd()) {
    logger = journal_logger(req.mount_point.string());
  } else if (req.foreground) {
    logger = spdlog::stderr_color_mt("wardfs");
  } else {
    logger = spdlog::syslog_logger_mt("wardfs", "wardfs", LOG_PID, LOG_DAEMON);
  }
  const auto level = spdlog::level::from_str(req.log_level);
  logger->set_level(level);
  logger->flush_on(std::min(level, spdlog::level::info));
  spdlog::set_default_logger(logger);
}

LogReopenOnHangup::LogReopenOnHangup() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return;
  g_hangup_read.reset(fds[0]);
  g_hangup_write_fd = fds[1];
  g_hangup_thread = std::thread([] {
    char c = 0;
    ssize_t n = 0;
    while ((n = ::read(g_hangup_read.get(), &c, 1)) > 0 || (n < 0 && errno == EINTR)) {
      if (n > 0 && c == 'q') return;
      if (n > 0) reopen_log_file();
    }
  });
  struct sigaction sa {};
  sa.sa_handler = on_hangup;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  ::sigaction(SIGHUP, &sa, nullptr);
}

LogReopenOnHangup::~LogReopenOnHangup() {
  if (g_hangup_write_fd < 0) return;
  ::signal(SIGHUP, SIG_IGN);
  (void)!::write(g_hangup_write_fd, "q", 1);
  if (g_hangup_thread.joinable()) g_hangup_thread.join();
  ::close(g_hangup_write_fd);
  g_hangup_write_fd = -1;
  g_hangup_read.reset();
}

}  // namespace wardfs::daemon
