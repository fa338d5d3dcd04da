#include "daemon/log_file.h"

#include <fcntl.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "crypto/errors.h"

namespace wardfs::daemon {

namespace {

[[noreturn]] void refuse(const std::filesystem::path& path, const std::string& why) {
  throw WardError(ErrorKind::usage, "log file " + path.string() + " " + why);
}

class FdSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit FdSink(volume::UniqueFd fd) : fd_(std::move(fd)) {}

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
  volume::UniqueFd fd_;
};

}  // namespace

volume::UniqueFd open_private_log_file(const std::filesystem::path& path) {
  if (path.has_parent_path()) volume::create_private_directories(path.parent_path());
  volume::UniqueFd fd(::open(
      path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0600));
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

std::shared_ptr<spdlog::sinks::sink> fd_sink(volume::UniqueFd fd) {
  return std::make_shared<FdSink>(std::move(fd));
}

}  // namespace wardfs::daemon
