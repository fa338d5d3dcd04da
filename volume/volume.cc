#include "volume/volume.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/errors.h"
#include "base/posix_io.h"
#include "crypto/kdf.h"
#include "volume/config_file.h"

namespace wardfs::volume {

namespace fs = std::filesystem;

Volume::Volume(fs::path cipher_dir, crypto::VolumeConfig config,
               std::unique_ptr<crypto::VolumeKeys> keys, std::string keystore_identity)
    : cipher_dir_(std::move(cipher_dir)),
      config_(std::move(config)),
      keys_(std::move(keys)),
      layout_(config_.cipher, config_.chunk_size),
      holes_(config_.holes),
      keystore_identity_(std::move(keystore_identity)) {}

crypto::VolumeConfig Volume::config() const {
  std::lock_guard lock(config_mutex_);
  return config_;
}

void Volume::replace_config(crypto::VolumeConfig config) {
  std::lock_guard lock(config_mutex_);
  config_ = std::move(config);
}

void Volume::set_audit_root(const crypto::SecretBytes& root) {
  audit_mac_key_ = crypto::derive_audit_mac_key(root.view(), config_.volume_id);
}

std::string Volume::id_text() const { return crypto::base64url_encode(config_.volume_id); }

crypto::Bytes wrap_audit_root(const crypto::VolumeConfig& config, keystore::Keystore& keystore,
                              crypto::ByteView root) {
  return keystore.wrap(root, config.audit_wrap_ad());
}

std::optional<crypto::SecretBytes> open_audit_root(const crypto::VolumeConfig& config,
                                                   keystore::Keystore& keystore) {
  if (!config.audit_key) return std::nullopt;
  return keystore.unwrap(config.audit_key->wrapped, config.audit_wrap_ad());
}

namespace {
// A fresh audit root, wrapped into `config`; returns it for the MAC key.
crypto::SecretBytes add_audit_key(crypto::VolumeConfig& config, keystore::Keystore& keystore) {
  crypto::SecretBytes root = crypto::SecretBytes::random(crypto::kDekSize);
  config.audit_key = crypto::WrappedKey{0, wrap_audit_root(config, keystore, root.view()),
                                        crypto::utc_now_iso8601()};
  return root;
}
}  // namespace

crypto::SecretBytes init_volume(const fs::path& cipher_dir, const InitOptions& options,
                                keystore::Keystore& keystore) {
  std::error_code ec;
  if (!fs::exists(cipher_dir, ec)) {
    if (!fs::create_directories(cipher_dir, ec)) {
      throw WardError(ErrorKind::io, "cannot create " + cipher_dir.string() + ": " + ec.message());
    }
  } else if (!fs::is_directory(cipher_dir, ec)) {
    throw WardError(ErrorKind::usage, cipher_dir.string() + " is not a directory");
  } else if (!fs::is_empty(cipher_dir, ec)) {
    throw WardError(
        ErrorKind::usage,
        cipher_dir.string() + " is not empty; wardfs init needs an empty or new directory");
  }
  if (!crypto::valid_chunk_size(options.chunk_size)) {
    throw WardError(ErrorKind::usage, "chunk size must be a power of two from 4 KiB to 1 MiB");
  }
  // Private: no other user may enter the backing tree, where under allow_other the
  // daemon hands users their own entries (and they could swap them under it).
  fs::permissions(cipher_dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  if (ec)
    throw WardError(ErrorKind::io, "cannot chmod 700 " + cipher_dir.string() + ": " + ec.message());
  crypto::VolumeConfig cfg;
  cfg.version = crypto::kFormatVersion;
  cfg.volume_id.resize(crypto::kVolumeIdSize);
  crypto::random_fill(cfg.volume_id);
  cfg.cipher = options.cipher;
  cfg.chunk_size = options.chunk_size;
  cfg.holes = options.holes;
  cfg.keystore = options.keystore;
  cfg.active_generation = 1;
  const crypto::SecretBytes dek = crypto::SecretBytes::random(crypto::kDekSize);
  cfg.keys.push_back({1, keystore.wrap(dek.view(), cfg.wrap_ad(1)), crypto::utc_now_iso8601()});
  const crypto::SecretBytes audit_root = add_audit_key(cfg, keystore);

  UniqueFd dir(::open(cipher_dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir)
    throw WardError(ErrorKind::io,
                    "cannot open " + cipher_dir.string() + ": " + std::strerror(errno));
  if (const int rc = write_new_dir_id(dir.get()); rc != 0) {
    throw WardError(ErrorKind::io,
                    "cannot write the root directory id: " + std::string(std::strerror(-rc)));
  }
  volume::save_config_atomic(cipher_dir, cfg);
  return crypto::derive_audit_mac_key(audit_root.view(), cfg.volume_id);
}

std::unique_ptr<Volume> unlock_volume(const fs::path& cipher_dir,
                                      const crypto::VolumeConfig& config,
                                      keystore::Keystore& keystore) {
  auto keys = std::make_unique<crypto::VolumeKeys>(config.cipher, config.volume_id);
  for (const auto& wrapped : config.keys) {
    auto dek = keystore.unwrap(wrapped.wrapped, config.wrap_ad(wrapped.generation));
    if (!dek) {
      throw WardError(ErrorKind::wrong_key, "wrong passphrase or key for " + cipher_dir.string() +
                                                " (or the config's security fields were edited): "
                                                "cannot unwrap the key of generation " +
                                                std::to_string(wrapped.generation));
    }
    keys->add_generation(wrapped.generation, std::move(*dek));
  }
  keys->set_active(config.active_generation);
  auto volume = std::make_unique<Volume>(cipher_dir, config, std::move(keys), keystore.identity());
  if (config.audit_key) {
    const auto root = open_audit_root(config, keystore);
    if (!root) {
      throw WardError(ErrorKind::corrupt_volume,
                      "the audit key in " + cipher_dir.string() +
                          "/wardfs.conf does not unwrap although the data keys do: "
                          "its audit_key field was edited");
    }
    volume->set_audit_root(*root);
  }
  return volume;
}

void ensure_audit_key(Volume& volume, keystore::Keystore& keystore) {
  if (!volume.audit_mac_key().empty()) return;
  volume::ConfigLock lock(volume.cipher_dir());
  auto cfg = volume::load_config(volume.cipher_dir());
  crypto::SecretBytes root;
  if (cfg.audit_key) {  // another process added it meanwhile
    auto opened = open_audit_root(cfg, keystore);
    if (!opened)
      throw WardError(ErrorKind::corrupt_volume, "the config's audit key does not unwrap");
    root = std::move(*opened);
  } else {
    root = add_audit_key(cfg, keystore);
    volume::save_config_atomic(volume.cipher_dir(), cfg);
  }
  volume.set_audit_root(root);
  volume.replace_config(std::move(cfg));
}

int read_dir_id(int dir_fd, crypto::DirId& out) {
  // O_NONBLOCK: a FIFO planted as the id must be refused, not waited on.
  UniqueFd fd(::openat(dir_fd, std::string(kDirIdFileName).c_str(),
                       O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
  if (!fd) return -errno;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return -errno;
  if (!S_ISREG(st.st_mode)) return -EIO;
  const ssize_t n = pread_full(fd.get(), out.data(), out.size(), 0);
  if (n < 0) return static_cast<int>(n);
  return static_cast<std::size_t>(n) == out.size() ? 0 : -EIO;
}

int write_new_dir_id(int dir_fd) {
  crypto::DirId id{};
  crypto::random_fill(id);
  return write_dir_id(dir_fd, id);
}

int write_dir_id(int dir_fd, const crypto::DirId& id) {
  UniqueFd fd(::openat(dir_fd, std::string(kDirIdFileName).c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0400));
  if (!fd) return -errno;
  const ssize_t n = pwrite_full(fd.get(), id.data(), id.size(), 0);
  if (n < 0) return static_cast<int>(n);
  return 0;
}

}  // namespace wardfs::volume
