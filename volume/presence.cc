#include "volume/presence.h"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <thread>

#include "base/errors.h"
#include "base/posix_io.h"
#include "crypto/bytes.h"

namespace wardfs::volume {

namespace {
constexpr std::size_t kMaxRecordBytes = 8192;
// Larger than any record written, so a renewal always overwrites the whole previous one.
constexpr std::size_t kPaddedRecordBytes = 1024;

struct flock one_byte(short type, off_t byte) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  return fl;
}
}  // namespace

std::int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string host_name() {
  std::array<char, 256> name{};
  if (::gethostname(name.data(), name.size() - 1) != 0) return "?";
  return name.data();
}

std::string random_record_id() {
  std::array<std::uint8_t, 12> id{};
  randombytes_buf(id.data(), id.size());
  return crypto::hex_encode(id);
}

bool try_lock_byte(int fd, short type, off_t byte, const std::filesystem::path& path) {
  struct flock fl = one_byte(type, byte);
  while (::fcntl(fd, F_OFD_SETLK, &fl) != 0) {
    if (errno == EAGAIN || errno == EACCES) return false;
    if (errno != EINTR)
      throw WardError(ErrorKind::io, "cannot lock " + path.string() + ": " + std::strerror(errno));
  }
  return true;
}

bool byte_is_locked(int fd, short type, off_t byte, const std::filesystem::path& path) {
  struct flock fl = one_byte(type, byte);
  while (::fcntl(fd, F_OFD_GETLK, &fl) != 0) {
    if (errno != EINTR)
      throw WardError(ErrorKind::io,
                      "cannot test the lock of " + path.string() + ": " + std::strerror(errno));
  }
  return fl.l_type != F_UNLCK;
}

void write_presence_record(int fd, const nlohmann::json& record) {
  std::string text = record.dump();
  if (text.size() < kPaddedRecordBytes - 1) text.resize(kPaddedRecordBytes - 1, ' ');
  text += '\n';
  (void)pwrite_full(fd, text.data(), text.size(), 0);
}

void write_beating_record(int fd, nlohmann::json& record) {
  record["heartbeat"] = unix_now();
  write_presence_record(fd, record);
}

bool heartbeat_due(const nlohmann::json& record) {
  return unix_now() - record.value("heartbeat", std::int64_t{0}) >= kHeartbeatInterval.count();
}

std::optional<nlohmann::json> read_presence_record(int fd) {
  std::string text(kMaxRecordBytes, '\0');
  const ssize_t n = pread_full(fd, text.data(), text.size(), 0);
  if (n <= 0) return std::nullopt;
  text.resize(static_cast<std::size_t>(n));
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_object()) return std::nullopt;
  return j;
}

namespace {
// A process of this host that still runs: not gone, and not a zombie (killed, not yet
// reaped: its locks are gone already, and a container's init may never reap it).
bool process_running(long pid) {
  if (pid <= 0) return false;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const auto paren = line.rfind(')');
  if (paren == std::string::npos || paren + 2 >= line.size()) return false;
  const char state = line[paren + 2];
  return state != 'Z' && state != 'X';
}
}  // namespace

bool alive_without_lock(const nlohmann::json& record) {
  const auto heartbeat = record.value("heartbeat", std::int64_t{0});
  if (heartbeat == 0 || unix_now() - heartbeat >= kHeartbeatTimeout.count()) return false;
  if (record.value("host", "?") != host_name()) return true;
  // A process drops its locks as it exits, a moment before it stops running: give an
  // exiting one that moment rather than take it for alive.
  const long pid = record.value("pid", 0L);
  for (int i = 0; i < 10 && process_running(pid); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
  return process_running(pid);
}

std::string presence_owner(const nlohmann::json& record) {
  const std::string started = record.value("started", "");
  return "pid " + std::to_string(record.value("pid", 0L)) + " on host " +
         record.value("host", "?") + (started.empty() ? "" : ", since " + started);
}

}  // namespace wardfs::volume
