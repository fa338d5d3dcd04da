#include "volume/rekey_lease.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/errors.h"
#include "crypto/config.h"
#include "volume/presence.h"

namespace wardfs::volume {

namespace {

constexpr off_t kRunnerByte = 0;

UniqueFd open_record(const std::filesystem::path& cipher_dir, int flags) {
  const auto path = cipher_dir / kRekeyRecordName;
  UniqueFd fd(::open(path.c_str(), flags | O_NOFOLLOW | O_CLOEXEC, 0600));
  struct stat st {};
  if (fd && (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))) fd.reset();
  return fd;
}

std::optional<RekeyRecord> parse(int fd, const std::filesystem::path& path) {
  const auto j = read_presence_record(fd);
  if (!j) return std::nullopt;
  RekeyRecord r;
  r.running = j->value("state", "") == "running";
  r.target_generation = j->value("target_generation", 0U);
  r.where = j->value("where", "");
  r.raw = *j;
  r.alive = byte_is_locked(fd, F_RDLCK, kRunnerByte, path) || alive_without_lock(*j);
  return r;
}

}  // namespace

std::string RekeyRecord::owner() const {
  return "`wardfs rekey` " + (where == "offline" ? std::string("offline") : "at " + where) + " (" +
         presence_owner(raw) + ")";
}

std::optional<RekeyRecord> read_rekey_record(const std::filesystem::path& cipher_dir) {
  const UniqueFd fd = open_record(cipher_dir, O_RDONLY);
  if (!fd) return std::nullopt;
  return parse(fd.get(), cipher_dir / kRekeyRecordName);
}

RekeyLease::RekeyLease(const std::filesystem::path& cipher_dir, std::string where,
                       std::uint32_t target_generation)
    : fd_(open_record(cipher_dir, O_RDWR | O_CREAT)) {
  const auto path = cipher_dir / kRekeyRecordName;
  if (!fd_)
    throw WardError(ErrorKind::io, "cannot open " + path.string() + ": " + std::strerror(errno));
  const auto previous = read_presence_record(fd_.get());
  const bool free = try_lock_byte(fd_.get(), F_WRLCK, kRunnerByte, path);
  const bool running_elsewhere =
      previous && previous->value("state", "") == "running" && alive_without_lock(*previous);
  if (!free || running_elsewhere) {
    RekeyRecord r;
    r.where = previous ? previous->value("where", "") : "";
    r.raw = previous.value_or(nlohmann::json::object());
    throw WardError(ErrorKind::usage,
                    "a rekey of " + cipher_dir.string() + " is already running: " + r.owner() +
                        "; follow it with `wardfs status` on that mount, or wait for it");
  }
  record_ = {{"state", "running"},
             {"target_generation", target_generation},
             {"where", std::move(where)},
             {"host", host_name()},
             {"pid", static_cast<long>(::getpid())},
             {"started", crypto::utc_now_iso8601()}};
  write_beating_record(fd_.get(), record_);
}

void RekeyLease::renew_if_due() {
  std::lock_guard lock(*mutex_);
  if (heartbeat_due(record_)) write_beating_record(fd_.get(), record_);
}

void RekeyLease::finished() {
  std::lock_guard lock(*mutex_);
  record_["state"] = "done";
  record_["finished"] = crypto::utc_now_iso8601();
  write_beating_record(fd_.get(), record_);
}

}  // namespace wardfs::volume
