#include "volume/names.h"

#include <fcntl.h>

#include <cerrno>
#include <memory>

#include "base/posix_io.h"
#include "crypto/blob.h"

namespace wardfs::volume {

namespace {
constexpr std::string_view kXattrNameAd = "wardfs v1 xattr name";
constexpr std::string_view kXattrValueAd = "wardfs v1 xattr value";
constexpr std::string_view kUserPrefix = "user.";

std::string sidecar_name(std::string_view backing) {
  return std::string(backing) + std::string(crypto::kLongNameSidecarSuffix);
}

crypto::Bytes xattr_value_ad(std::string_view plain_name) {
  crypto::Bytes ad(kXattrValueAd.begin(), kXattrValueAd.end());
  ad.push_back(0);
  ad.insert(ad.end(), plain_name.begin(), plain_name.end());
  return ad;
}
}  // namespace

bool is_metadata_entry(std::string_view backing_name) {
  return backing_name.find('.') != std::string_view::npos && !crypto::is_long_name(backing_name);
}

namespace {
int check_plain_name(std::string_view name) {
  if (name.empty() || name.find('/') != std::string_view::npos) return -EINVAL;
  if (name.size() > kMaxPlainNameLength) return -ENAMETOOLONG;
  return 0;
}

ResolvedName encode_with(const crypto::GenerationKeys& gen, const crypto::DirId& dir_id,
                         std::string_view name) {
  ResolvedName out;
  out.encoded = gen.names->encrypt(dir_id, name);
  out.backing =
      crypto::needs_long_name(out.encoded) ? crypto::long_name_for(out.encoded) : out.encoded;
  return out;
}
}  // namespace

int NameMapper::resolve(int dir_fd, const crypto::DirId& dir_id, std::string_view name,
                        ResolvedName& out) const {
  if (const int rc = check_plain_name(name); rc != 0) return rc;
  bool first = true;
  for (const auto& gen : volume_.keys().generations_for_lookup()) {
    ResolvedName candidate = encode_with(*gen, dir_id, name);
    if (::fstatat(dir_fd, candidate.backing.c_str(), &candidate.st, AT_SYMLINK_NOFOLLOW) == 0) {
      candidate.exists = true;
      out = std::move(candidate);
      return 0;
    }
    if (errno != ENOENT) return -errno;
    if (first) out = std::move(candidate);
    first = false;
  }
  return 0;
}

int NameMapper::stat_entry(int dir_fd, const crypto::DirId& dir_id, std::string_view name,
                           std::string& backing, struct stat& st) const {
  if (const int rc = check_plain_name(name); rc != 0) return rc;
  for (const auto& gen : volume_.keys().generations_for_lookup()) {
    ResolvedName candidate = encode_with(*gen, dir_id, name);
    if (::fstatat(dir_fd, candidate.backing.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      backing = std::move(candidate.backing);
      return 0;
    }
    if (errno != ENOENT) return -errno;
  }
  return -ENOENT;
}

bool NameMapper::encode_for_create(const crypto::DirId& dir_id, std::string_view name,
                                   ResolvedName& out) const {
  if (check_plain_name(name) != 0) return false;
  const auto generations = volume_.keys().generations_for_lookup();
  if (generations.size() != 1) return false;
  ResolvedName candidate = encode_with(*generations.front(), dir_id, name);
  if (candidate.is_long()) return false;
  out = std::move(candidate);
  return true;
}

int NameMapper::write_sidecar(int dir_fd, const ResolvedName& name) const {
  if (!name.is_long()) return 0;
  const std::string path = sidecar_name(name.backing);
  // An orphan sidecar from a crash may be there, possibly read-only: replace it.
  ::unlinkat(dir_fd, path.c_str(), 0);
  UniqueFd fd(
      ::openat(dir_fd, path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return -errno;
  const ssize_t n = pwrite_full(fd.get(), name.encoded.data(), name.encoded.size(), 0);
  return n < 0 ? static_cast<int>(n) : 0;
}

void NameMapper::remove_sidecar(int dir_fd, const ResolvedName& name) const {
  if (name.is_long()) ::unlinkat(dir_fd, sidecar_name(name.backing).c_str(), 0);
}

std::optional<std::string> NameMapper::decrypt_entry(int dir_fd, const crypto::DirId& dir_id,
                                                     std::string_view backing,
                                                     std::uint32_t* generation) const {
  std::string encoded(backing);
  if (crypto::is_long_name(backing)) {
    // O_NONBLOCK: a FIFO planted under the sidecar's name must not hang the listing.
    UniqueFd fd(::openat(dir_fd, sidecar_name(backing).c_str(),
                         O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
    struct stat st {};
    if (!fd || ::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
    encoded.assign(4096, '\0');
    const ssize_t n = pread_full(fd.get(), encoded.data(), encoded.size(), 0);
    if (n <= 0) return std::nullopt;
    encoded.resize(static_cast<std::size_t>(n));
    // The sidecar must hash to the entry's name, or it belongs to another entry.
    if (!crypto::needs_long_name(encoded) || crypto::long_name_for(encoded) != backing)
      return std::nullopt;
  }
  for (const auto& gen : volume_.keys().generations_for_lookup()) {
    if (auto name = gen->names->decrypt(dir_id, encoded)) {
      if (generation != nullptr) *generation = gen->generation;
      return name;
    }
  }
  return std::nullopt;
}

int NameMapper::list(int dir_fd, const crypto::DirId& dir_id, std::vector<DirEntry>& out,
                     const NameReporter& reporter) const {
  return for_each_dir_entry(dir_fd, collector(dir_fd, dir_id, out, reporter));
}

int NameMapper::list_open(int dir_fd, const crypto::DirId& dir_id, std::vector<DirEntry>& out,
                          const NameReporter& reporter) const {
  return list_open_directory(dir_fd, collector(dir_fd, dir_id, out, reporter));
}

DirEntryFn NameMapper::collector(int dir_fd, const crypto::DirId& dir_id,
                                 std::vector<DirEntry>& out, const NameReporter& reporter) const {
  return [this, dir_fd, &dir_id, &out, &reporter](std::string_view backing, ino_t ino,
                                                  unsigned char type) {
    if (is_metadata_entry(backing)) return;
    std::uint32_t generation = 0;
    auto name = decrypt_entry(dir_fd, dir_id, backing, &generation);
    if (!name) {
      if (reporter)
        reporter(backing,
                 "entry name failed authentication (edited, or moved from another directory)");
      return;
    }
    out.push_back({std::move(*name), std::string(backing), ino, type, generation});
  };
}

std::string NameMapper::xattr_backing_name(std::string_view plain_name,
                                           std::uint32_t generation) const {
  const auto gen = volume_.keys().generation(generation);
  // "user." alone names nothing; SIV cannot seal an empty string anyway.
  if (!gen || !plain_name.starts_with(kUserPrefix) || plain_name.size() == kUserPrefix.size())
    return {};
  const auto sealed = gen->names->seal_deterministic(
      crypto::as_bytes(kXattrNameAd), crypto::as_bytes(plain_name.substr(kUserPrefix.size())));
  return std::string(kUserPrefix) + crypto::base64url_encode(sealed);
}

std::optional<std::string> NameMapper::xattr_plain_name(std::string_view backing_name) const {
  if (!backing_name.starts_with(kUserPrefix)) return std::nullopt;
  const auto sealed = crypto::base64url_decode(backing_name.substr(kUserPrefix.size()));
  if (!sealed) return std::nullopt;
  for (const auto& gen : volume_.keys().generations_for_lookup()) {
    if (auto plain = gen->names->open_deterministic(crypto::as_bytes(kXattrNameAd), *sealed)) {
      return std::string(kUserPrefix) + std::string(plain->begin(), plain->end());
    }
  }
  return std::nullopt;
}

crypto::Bytes NameMapper::seal_xattr_value(std::string_view plain_name,
                                           crypto::ByteView value) const {
  const auto gen = volume_.keys().active();
  return crypto::seal_blob(*gen->xattrs, gen->generation, xattr_value_ad(plain_name), value);
}

std::optional<crypto::Bytes> NameMapper::open_xattr_value(std::string_view plain_name,
                                                          crypto::ByteView blob) const {
  if (blob.size() < crypto::kGenerationSize) return std::nullopt;
  const auto gen = volume_.keys().generation(crypto::get_le32(blob.data()));
  if (!gen) return std::nullopt;
  return crypto::open_blob(*gen->xattrs, xattr_value_ad(plain_name), blob);
}

}  // namespace wardfs::volume
