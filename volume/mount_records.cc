#include "volume/mount_records.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/errors.h"
#include "crypto/config.h"
#include "volume/presence.h"

namespace wardfs::volume {

namespace {

constexpr off_t kAliveByte = 0;
constexpr std::string_view kRecordSuffix = ".json";

[[noreturn]] void fail(const std::filesystem::path& path, const std::string& what) {
  throw WardError(ErrorKind::io, "cannot " + what + " " + path.string() + ": " +
                                     std::strerror(errno) +
                                     " (the backing directory must be writable for a "
                                     "read-write mount)");
}

UniqueFd open_records_dir(const std::filesystem::path& cipher_dir, bool create) {
  const auto path = cipher_dir / kMountRecordsDir;
  if (create && ::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) fail(path, "create");
  return UniqueFd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
}

std::optional<MountRecord> parse(const nlohmann::json& j) {
  MountRecord r;
  r.host = j.value("host", "?");
  r.pid = j.value("pid", 0L);
  r.mount_point = j.value("mount_point", "");
  r.mount_id = j.value("mount_id", "");
  const auto& active = j.find("active_generation");
  if (r.mount_id.empty() || active == j.end() || !active->is_number_unsigned()) return std::nullopt;
  r.active_generation = active->get<std::uint32_t>();
  r.raw = j;
  return r;
}

// The record behind `name` if its mount is alive; a dead one is removed.
std::optional<MountRecord> read_if_alive(int dir_fd, const std::string& name,
                                         const std::filesystem::path& dir) {
  const UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return std::nullopt;  // removed meanwhile, or not ours to read
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  const auto j = read_presence_record(fd.get());
  const bool locked = byte_is_locked(fd.get(), F_WRLCK, kAliveByte, dir / name);
  if (locked || (j && alive_without_lock(*j))) return j ? parse(*j) : std::nullopt;
  // Nobody holds it and no other host beats for it: its mount is gone.
  (void)::unlinkat(dir_fd, name.c_str(), 0);
  return std::nullopt;
}

}  // namespace

std::string MountRecord::owner() const {
  return (mount_point.empty() ? std::string("a mount") : mount_point) + " (" + presence_owner(raw) +
         ")";
}

PublishedMount::PublishedMount(const std::filesystem::path& cipher_dir,
                               const std::string& mount_point, std::uint32_t active_generation)
    : dir_fd_(open_records_dir(cipher_dir, true)) {
  const auto dir = cipher_dir / kMountRecordsDir;
  if (!dir_fd_) fail(dir, "open");
  const std::string id = random_record_id();
  name_ = id + std::string(kRecordSuffix);
  // Written and locked under a name readers skip, then renamed into place: a reader never
  // meets our record unlocked and takes it for a dead mount's.
  const std::string temp = "." + id + ".tmp";
  fd_.reset(::openat(dir_fd_.get(), temp.c_str(),
                     O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd_) fail(dir / temp, "create");
  if (!try_lock_byte(fd_.get(), F_WRLCK, kAliveByte, dir / temp)) fail(dir / temp, "lock");
  record_ = {{"host", host_name()},
             {"pid", static_cast<long>(::getpid())},
             {"mount_point", mount_point},
             {"mount_id", id},
             {"started", crypto::utc_now_iso8601()},
             {"active_generation", active_generation}};
  write_beating_record(fd_.get(), record_);
  if (::renameat(dir_fd_.get(), temp.c_str(), dir_fd_.get(), name_.c_str()) != 0) {
    (void)::unlinkat(dir_fd_.get(), temp.c_str(), 0);
    fail(dir / name_, "publish");
  }
}

PublishedMount::~PublishedMount() { (void)::unlinkat(dir_fd_.get(), name_.c_str(), 0); }

void PublishedMount::publish(std::uint32_t active_generation) {
  std::lock_guard lock(mutex_);
  record_["active_generation"] = active_generation;
  write_beating_record(fd_.get(), record_);
}

void PublishedMount::renew_if_due() {
  std::lock_guard lock(mutex_);
  if (heartbeat_due(record_)) write_beating_record(fd_.get(), record_);
}

std::vector<MountRecord> live_mounts(const std::filesystem::path& cipher_dir) {
  std::vector<MountRecord> out;
  const UniqueFd dir_fd = open_records_dir(cipher_dir, false);
  if (!dir_fd) return out;  // no mount ever published here
  const auto dir = cipher_dir / kMountRecordsDir;
  std::vector<std::string> names;
  (void)for_each_dir_entry(dir_fd.get(), [&](std::string_view name, ino_t, unsigned char) {
    if (name.size() > kRecordSuffix.size() && name.ends_with(kRecordSuffix) && name[0] != '.')
      names.emplace_back(name);
  });
  for (const auto& name : names) {
    if (auto r = read_if_alive(dir_fd.get(), name, dir)) out.push_back(std::move(*r));
  }
  return out;
}

}  // namespace wardfs::volume
