#include "volume/rename_intent.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <vector>

#include "base/posix_io.h"
#include "crypto/bytes.h"
#include "crypto/name_codec.h"
#include "volume/volume.h"

namespace wardfs::volume {

namespace {

// Backing names are at most 255 bytes; two of them, an id and a number fit in this.
constexpr std::size_t kMaxIntentSize = 1024;

std::string target_dir_id(int from_dir, int to_dir) {
  struct stat a {};
  struct stat b {};
  if (::fstat(from_dir, &a) == 0 && ::fstat(to_dir, &b) == 0 && a.st_dev == b.st_dev &&
      a.st_ino == b.st_ino)
    return ".";
  crypto::DirId id{};
  // Empty when the target holds no id (not a wardfs directory): fsck then keeps both names.
  if (read_dir_id(to_dir, id) != 0) return "";
  return crypto::hex_encode(id);
}

int write_intent(int dir_fd, const RenameIntent& intent, std::string& name) {
  std::array<std::uint8_t, 12> rnd{};
  crypto::random_fill(rnd);
  name = std::string(kRenameIntentPrefix) + crypto::hex_encode(rnd);
  UniqueFd fd(
      ::openat(dir_fd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd) return -errno;
  const std::string text = intent.from + "\n" + intent.to_dir_id + "\n" + intent.to + "\n" +
                           std::to_string(intent.ino) + "\n";
  if (pwrite_full(fd.get(), text.data(), text.size(), 0) != static_cast<ssize_t>(text.size())) {
    const int err = errno != 0 ? -errno : -EIO;
    ::unlinkat(dir_fd, name.c_str(), 0);
    return err;
  }
  return 0;
}

// Removes the old name once the new one exists, if it still names the entry moved: a
// writer elsewhere may have put another entry there since (theirs now, and kept), or an
// fsck --repair finished the move already.
int unlink_old_name(int from_dir, const std::string& from, ino_t ino, int to_dir,
                    const std::string& to) {
  struct stat now {};
  if (::fstatat(from_dir, from.c_str(), &now, AT_SYMLINK_NOFOLLOW) != 0)
    return errno == ENOENT ? 0 : -errno;
  if (now.st_ino != ino) return 0;
  if (::unlinkat(from_dir, from.c_str(), 0) == 0 || errno == ENOENT) return 0;
  const int err = -errno;
  ::unlinkat(to_dir, to.c_str(), 0);  // back to the old name only
  return err;
}

}  // namespace

bool is_rename_intent_name(std::string_view name) { return name.starts_with(kRenameIntentPrefix); }

int read_rename_intent(int dir_fd, const std::string& name, RenameIntent& out) {
  UniqueFd fd(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd) return -errno;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return -errno;
  if (!S_ISREG(st.st_mode) || st.st_size > static_cast<off_t>(kMaxIntentSize)) return -EINVAL;
  std::string text(kMaxIntentSize, '\0');
  const ssize_t n = pread_full(fd.get(), text.data(), text.size(), 0);
  if (n < 0) return -errno;
  text.resize(static_cast<std::size_t>(n));
  std::vector<std::string> fields;
  for (std::size_t at = 0; at < text.size();) {
    const std::size_t end = text.find('\n', at);
    if (end == std::string::npos) return -EINVAL;  // cut short by a crash while written
    fields.push_back(text.substr(at, end - at));
    at = end + 1;
  }
  if (fields.size() != 4 || fields[0].empty() || fields[2].empty()) return -EINVAL;
  for (const auto* f : {&fields[0], &fields[2]})
    if (f->find('/') != std::string::npos || *f == "." || *f == "..") return -EINVAL;
  unsigned long long ino = 0;
  const auto& num = fields[3];
  const auto [end, ec] = std::from_chars(num.data(), num.data() + num.size(), ino);
  if (ec != std::errc() || end != num.data() + num.size()) return -EINVAL;
  out = {fields[0], fields[1], fields[2], static_cast<ino_t>(ino)};
  return 0;
}

int link_then_unlink(int from_dir, const std::string& from, int to_dir, const std::string& to) {
  struct stat st {};
  if (::fstatat(from_dir, from.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return -errno;
  if (S_ISDIR(st.st_mode)) return -EISDIR;
  std::string intent_name;
  const RenameIntent intent{from, target_dir_id(from_dir, to_dir), to, st.st_ino};
  if (const int rc = write_intent(from_dir, intent, intent_name); rc != 0) return rc;
  // Without AT_SYMLINK_FOLLOW: a symlink is linked itself, never its target.
  int rc = ::linkat(from_dir, from.c_str(), to_dir, to.c_str(), 0) == 0 ? 0 : -errno;
  if (rc == 0) rc = unlink_old_name(from_dir, from, st.st_ino, to_dir, to);
  ::unlinkat(from_dir, intent_name.c_str(), 0);
  return rc;
}

IntentState intent_state(int from_dir, int to_dir, const RenameIntent& intent) {
  const auto names_entry = [&](int dir, const std::string& name) {
    struct stat st {};
    return dir >= 0 && ::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
           st.st_ino == intent.ino;
  };
  const bool old_name = names_entry(from_dir, intent.from);
  const bool new_name = names_entry(to_dir, intent.to);
  if (old_name && new_name) return IntentState::both_names;
  return new_name ? IntentState::finished : IntentState::not_linked;
}

int finish_rename(int from_dir, const std::string& name, const RenameIntent& intent) {
  if (::unlinkat(from_dir, intent.from.c_str(), 0) != 0 && errno != ENOENT) return -errno;
  if (crypto::is_long_name(intent.from)) {
    const std::string sidecar = intent.from + std::string(crypto::kLongNameSidecarSuffix);
    ::unlinkat(from_dir, sidecar.c_str(), 0);
  }
  if (::unlinkat(from_dir, name.c_str(), 0) != 0 && errno != ENOENT) return -errno;
  return 0;
}

}  // namespace wardfs::volume
