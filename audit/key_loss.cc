#include "audit/key_loss.h"

#include <fcntl.h>
#include <sys/file.h>

#include <cerrno>
#include <cstring>
#include <ctime>

#include "audit/files.h"
#include "base/errors.h"
#include "base/posix_io.h"

namespace wardfs::audit {

namespace stdfs = std::filesystem;

std::optional<MissingKey> missing_key_from_name(std::string_view name) {
  if (name == "refuse") return MissingKey::refuse;
  if (name == "recreate") return MissingKey::recreate;
  return std::nullopt;
}

std::string_view missing_key_name(MissingKey policy) {
  return policy == MissingKey::recreate ? "recreate" : "refuse";
}

bool has_history(const stdfs::path& live) {
  std::error_code ec;
  return !log_segments(live).empty() || stdfs::exists(checkpoint_path(live), ec);
}

void refuse_lost_key(const stdfs::path& cipher_dir, const stdfs::path& live,
                     const std::string& fix) {
  throw WardError(ErrorKind::corrupt_volume,
                  "the audit key is missing from " + (cipher_dir / "wardfs.conf").string() +
                      " but the volume has an audit log (" + live.string() +
                      "): a new key would start a new history in silence and make the old "
                      "records unverifiable. Restore wardfs.conf (its audit_key field) from a "
                      "backup, or, " +
                      fix);
}

namespace {

std::string utc_stamp() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

std::optional<std::uint64_t> last_seq_of(const std::vector<stdfs::path>& segments) {
  for (auto it = segments.rbegin(); it != segments.rend(); ++it) {
    UniqueFd fd(::open(it->c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    Tail tail;
    if (!fd || read_tail(fd.get(), tail) != 0) continue;
    if (const auto rec = parse_record_line(tail.last_line)) return rec->seq;
  }
  return std::nullopt;
}

}  // namespace

SetAside set_aside_history(const stdfs::path& live) {
  UniqueFd lock(::open(lock_path(live).c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!lock || ::flock(lock.get(), LOCK_EX) != 0) {
    throw WardError(ErrorKind::io,
                    "cannot lock " + lock_path(live).string() + ": " + std::strerror(errno));
  }
  SetAside out;
  auto files = log_segments(live);
  out.last_seq = last_seq_of(files);
  std::error_code ec;
  if (stdfs::exists(checkpoint_path(live), ec)) files.push_back(checkpoint_path(live));
  const std::string suffix = ".lost-key-" + utc_stamp();
  for (const auto& f : files) {
    const std::string moved = f.string() + suffix;
    if (::rename(f.c_str(), moved.c_str()) != 0) {
      throw WardError(ErrorKind::io, "cannot move " + f.string() + " aside to " + moved + ": " +
                                         std::strerror(errno));
    }
    out.moved.push_back(moved);
  }
  return out;
}

}  // namespace wardfs::audit
