// The volume config (wardfs.conf in the backing dir's root), parsed with nlohmann-json.
// Reading, replacing and locking the file: volume/config_file.h.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "crypto/aead.h"
#include "crypto/bytes.h"
#include "crypto/name_codec.h"

namespace wardfs::crypto {

inline constexpr std::string_view kConfigFileName = "wardfs.conf";
inline constexpr std::uint32_t kMinChunkSize = 4096;
inline constexpr std::uint32_t kMaxChunkSize = 1U << 20;
inline constexpr std::size_t kVolumeIdSize = 16;
inline constexpr std::size_t kDekSize = 32;

enum class HolesPolicy { allow, never };

struct KdfParams {
  std::uint64_t opslimit = 0;
  std::uint64_t memlimit = 0;
  Bytes salt;
};

struct KeystoreSpec {
  std::string type;      // "passphrase" | "keyfile" | "command" | "pkcs11"
  std::string location;  // key file path, command line or URI; empty for passphrase
  std::optional<KdfParams> kdf;
};

struct WrappedKey {
  std::uint32_t generation = 0;
  Bytes wrapped;
  std::string created;  // UTC, ISO 8601
};

struct VolumeConfig {
  int version = 1;
  Bytes volume_id;
  CipherId cipher = CipherId::aes256gcm;
  std::uint32_t chunk_size = kMinChunkSize;
  HolesPolicy holes = HolesPolicy::allow;
  KeystoreSpec keystore;
  std::uint32_t active_generation = 1;
  std::vector<WrappedKey> keys;
  // The audit log's root key (FORMAT.md §2.3), wrapped like a DEK but outside the
  // generations: rotation leaves it alone so the log's chain survives retirement.
  // Absent in volumes made before the audit log; the first mount adds it.
  std::optional<WrappedKey> audit_key;

  // Associated data for wrapping DEK `generation`: binds the fields that, if edited,
  // would change how data is sealed, so an edit makes unwrapping fail.
  Bytes wrap_ad(std::uint32_t generation) const;
  Bytes audit_wrap_ad() const;
  const WrappedKey* key_for(std::uint32_t generation) const;
};

// Throws WardError(corrupt_volume) naming the offending field.
VolumeConfig parse_config(std::string_view json_text);
std::string serialize_config(const VolumeConfig& config);

bool valid_chunk_size(std::uint64_t size);
std::string utc_now_iso8601();

}  // namespace wardfs::crypto
