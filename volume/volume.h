// A volume: its config, its unlocked keys and the chunk layout, shared by the
// filesystem, the CLI and the tools. Created by init_volume, opened by unlock_volume.
#pragma once

#include <atomic>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>

#include "crypto/config.h"
#include "crypto/file_format.h"
#include "crypto/volume_keys.h"
#include "keystore/keystore.h"
#include "volume/backing_tree.h"

namespace wardfs::volume {

inline constexpr std::string_view kDirIdFileName = "wardfs.dirid";
inline constexpr std::string_view kTempPrefix = "wardfs.tmp.";

struct InitOptions {
  crypto::CipherId cipher = crypto::default_cipher();
  std::uint32_t chunk_size = 4096;
  crypto::HolesPolicy holes = crypto::HolesPolicy::allow;
  crypto::KeystoreSpec keystore;  // type, location and KDF parameters
};

class Volume {
 public:
  Volume(std::filesystem::path cipher_dir, crypto::VolumeConfig config,
         std::unique_ptr<crypto::VolumeKeys> keys, std::string keystore_identity);

  const std::filesystem::path& cipher_dir() const { return cipher_dir_; }
  // A copy: rotation and retirement replace the config while the volume is in use.
  crypto::VolumeConfig config() const;
  void replace_config(crypto::VolumeConfig config);
  const crypto::VolumeKeys& keys() const { return *keys_; }
  crypto::VolumeKeys& keys() { return *keys_; }
  const crypto::ChunkLayout& layout() const { return layout_; }
  bool holes_allowed() const { return holes_ == crypto::HolesPolicy::allow; }
  const std::string& keystore_identity() const { return keystore_identity_; }
  // HKDF-derived key of the audit log's HMAC chain; empty until the volume has an
  // audit key (see ensure_audit_key).
  const crypto::SecretBytes& audit_mac_key() const { return audit_mac_key_; }
  void set_audit_root(const crypto::SecretBytes& root);
  // The volume id as logs and paths show it (base64url).
  std::string id_text() const;
  // What the backing file system supports, learned as the volume is used: shared by
  // every caller, whatever constness it holds the volume with.
  BackingFeatures& backing_features() const { return backing_features_; }
  // A mounted volume follows wardfs.conf (other mounts may rotate): a key generation
  // newer than the active one is then not yet known rather than gone, and reads return
  // -ENOKEY (FileContent::newer_than_known) so the caller can follow and retry. Off for
  // offline work, which read the whole config just now.
  void set_follows_config(bool follows) { follows_config_ = follows; }
  bool follows_config() const { return follows_config_; }

 private:
  std::filesystem::path cipher_dir_;
  mutable std::mutex config_mutex_;
  crypto::VolumeConfig config_;
  std::unique_ptr<crypto::VolumeKeys> keys_;
  crypto::ChunkLayout layout_;
  crypto::HolesPolicy holes_;
  std::string keystore_identity_;
  crypto::SecretBytes audit_mac_key_;
  mutable BackingFeatures backing_features_;
  std::atomic<bool> follows_config_{false};
};

// Writes a new config with one generation and an audit key, and the root's directory
// id. The directory must be missing or empty. Returns the audit log's MAC key.
crypto::SecretBytes init_volume(const std::filesystem::path& cipher_dir, const InitOptions& options,
                                keystore::Keystore& keystore);

// Throws WardError(wrong_key) when the keystore's KEK does not open the data keys, and
// WardError(corrupt_volume) when the data keys open but the audit key does not.
std::unique_ptr<Volume> unlock_volume(const std::filesystem::path& cipher_dir,
                                      const crypto::VolumeConfig& config,
                                      keystore::Keystore& keystore);

// The audit log's root key as config.audit_key holds it, wrapped by `keystore` and bound
// to this volume only: unlike a DEK's, its wrap outlives rotation and retirement, so
// the log's chain does too.
crypto::Bytes wrap_audit_root(const crypto::VolumeConfig& config, keystore::Keystore& keystore,
                              crypto::ByteView root);
// Unwraps config.audit_key. nullopt when there is none, or when `keystore` does not open
// it: a wrong key, or an edited audit_key field if the data keys did open.
std::optional<crypto::SecretBytes> open_audit_root(const crypto::VolumeConfig& config,
                                                   keystore::Keystore& keystore);

// Gives a volume made before the audit log its audit key (wrapped into the config under
// the config lock). No-op when it has one.
void ensure_audit_key(Volume& volume, keystore::Keystore& keystore);

// Directory ids live in each backing directory; these read and create them.
int read_dir_id(int dir_fd, crypto::DirId& out);        // 0 or -errno
int write_new_dir_id(int dir_fd);                       // 0 or -errno
int write_dir_id(int dir_fd, const crypto::DirId& id);  // 0 or -errno

}  // namespace wardfs::volume
