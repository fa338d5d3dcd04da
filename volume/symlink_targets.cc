// Symlink targets in both forms (docs/FORMAT.md §7 and §7.1). A sealed target whose
// base64url encoding fits in a backing symlink is that symlink's target; a longer one
// goes into a sidecar file beside the link, named after the SHA-256 of its contents, and
// the backing symlink points at the sidecar's name. The backing tree is untrusted: the
// sidecar is only ever opened with O_NOFOLLOW, must be a regular file of bounded size,
// and must hash to the name the link gives, so a swapped or edited sidecar is refused.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "base/posix_io.h"
#include "crypto/blob.h"
#include "crypto/kdf.h"
#include "volume/names.h"

namespace wardfs::volume {

namespace {
constexpr std::string_view kSymlinkAd = "wardfs v1 symlink";
// Far above the largest blob of a PATH_MAX target (4095 + 44 bytes); a bigger sidecar is
// not ours, and is not read into memory.
constexpr std::size_t kMaxTargetSidecarSize = 8192;

int write_target_sidecar(int dir_fd, const std::string& name, crypto::ByteView blob) {
  // An orphan from a crash can be there under this very name only if it holds these very
  // bytes; anything else there was planted. Replace it either way.
  ::unlinkat(dir_fd, name.c_str(), 0);
  UniqueFd fd(
      ::openat(dir_fd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return -errno;
  const ssize_t n = pwrite_full(fd.get(), blob.data(), blob.size(), 0);
  if (n < 0) {
    ::unlinkat(dir_fd, name.c_str(), 0);
    return static_cast<int>(n);
  }
  return 0;
}

std::optional<crypto::Bytes> read_target_sidecar(int dir_fd, std::string_view name) {
  // O_NONBLOCK: a FIFO planted under the name must not hang the daemon.
  UniqueFd fd(::openat(dir_fd, std::string(name).c_str(),
                       O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
  if (!fd) return std::nullopt;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
      static_cast<std::size_t>(st.st_size) > kMaxTargetSidecarSize) {
    return std::nullopt;
  }
  crypto::Bytes blob(kMaxTargetSidecarSize + 1);
  const ssize_t n = pread_full(fd.get(), blob.data(), blob.size(), 0);
  if (n <= 0 || static_cast<std::size_t>(n) > kMaxTargetSidecarSize) return std::nullopt;
  blob.resize(static_cast<std::size_t>(n));
  // The link names the hash of its sidecar: another link's sidecar, or an edited one,
  // does not match.
  if (crypto::target_sidecar_name(blob) != name) return std::nullopt;
  return blob;
}
}  // namespace

std::string NameMapper::seal_symlink(std::string_view target) const {
  const auto gen = volume_.keys().active();
  return crypto::base64url_encode(crypto::seal_blob(
      *gen->symlinks, gen->generation, crypto::as_bytes(kSymlinkAd), crypto::as_bytes(target)));
}

std::optional<std::string> NameMapper::open_symlink(std::string_view backing_target) const {
  const auto blob = crypto::base64url_decode(backing_target);
  if (!blob) return std::nullopt;
  return open_symlink_blob(*blob);
}

std::optional<std::string> NameMapper::open_symlink_blob(crypto::ByteView blob) const {
  if (blob.size() < crypto::kGenerationSize) return std::nullopt;
  const auto gen = volume_.keys().generation(crypto::get_le32(blob.data()));
  if (!gen) return std::nullopt;
  const auto plain = crypto::open_blob(*gen->symlinks, crypto::as_bytes(kSymlinkAd), blob);
  if (!plain) return std::nullopt;
  return std::string(plain->begin(), plain->end());
}

int NameMapper::make_symlink_target(int dir_fd, std::string_view target,
                                    std::string& backing_target) const {
  if (target.empty()) return -ENOENT;
  if (target.size() > crypto::kMaxBackingTargetLength) return -ENAMETOOLONG;
  const auto gen = volume_.keys().active();
  const crypto::Bytes blob = crypto::seal_blob(
      *gen->symlinks, gen->generation, crypto::as_bytes(kSymlinkAd), crypto::as_bytes(target));
  std::string encoded = crypto::base64url_encode(blob);
  if (encoded.size() <= crypto::kMaxBackingTargetLength) {
    backing_target = std::move(encoded);
    return 0;
  }
  std::string name = crypto::target_sidecar_name(blob);
  if (const int rc = write_target_sidecar(dir_fd, name, blob); rc != 0) return rc;
  backing_target = std::move(name);
  return 0;
}

std::optional<crypto::Bytes> NameMapper::symlink_blob(int dir_fd,
                                                      std::string_view backing_target) const {
  if (crypto::is_target_sidecar_name(backing_target))
    return read_target_sidecar(dir_fd, backing_target);
  return crypto::base64url_decode(backing_target);
}

std::optional<std::string> NameMapper::read_symlink_target(int dir_fd,
                                                           std::string_view backing_target) const {
  const auto blob = symlink_blob(dir_fd, backing_target);
  if (!blob) return std::nullopt;
  return open_symlink_blob(*blob);
}

int NameMapper::share_target_sidecar(int from_dir, int to_dir,
                                     std::string_view backing_target) const {
  if (!crypto::is_target_sidecar_name(backing_target)) return 0;
  const std::string name(backing_target);
  // flags 0: a symlink planted under the name is linked as itself, never followed, and
  // then fails the O_NOFOLLOW open on reading.
  if (::linkat(from_dir, name.c_str(), to_dir, name.c_str(), 0) == 0 || errno == EEXIST) return 0;
  return -errno;
}

void NameMapper::drop_target_sidecar(int dir_fd, std::string_view backing_target) const {
  if (crypto::is_target_sidecar_name(backing_target))
    ::unlinkat(dir_fd, std::string(backing_target).c_str(), 0);
}

}  // namespace wardfs::volume
