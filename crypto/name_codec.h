// File name encryption: AES-256-SIV (deterministic, authenticated) with the parent
// directory's id as associated data, padded to 16 bytes and encoded base64url.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>

#include "crypto/bytes.h"
#include "crypto/secret.h"
#include "crypto/thread_contexts.h"

namespace wardfs::crypto {

inline constexpr std::size_t kDirIdSize = 16;
using DirId = std::array<std::uint8_t, kDirIdSize>;
inline constexpr std::size_t kNameKeySize = 64;  // AES-256-SIV takes two 256-bit keys
inline constexpr std::size_t kMaxBackingNameLength = 255;

class NameCipher {
 public:
  explicit NameCipher(SecretBytes key);
  // The base64url encoding of SIV(pad16(name)); may be longer than 255 bytes.
  std::string encrypt(const DirId& dir, std::string_view name) const;
  std::optional<std::string> decrypt(const DirId& dir, std::string_view encoded) const;
  // Raw SIV over arbitrary bytes with a caller-given AD (xattr names use it).
  Bytes seal_deterministic(ByteView ad, ByteView plaintext) const;
  std::optional<Bytes> open_deterministic(ByteView ad, ByteView sealed) const;

 private:
  SecretBytes key_;
  KeySerial serial_;  // wipes the threads' contexts keyed with key_ when it goes
};

// Long-name scheme: encodings longer than 255 bytes are stored under a fixed-length
// hashed name, with the full encoding in a sidecar file beside it.
inline constexpr std::string_view kLongNamePrefix = "L.";
inline constexpr std::string_view kLongNameSidecarSuffix = ".n";
bool needs_long_name(std::string_view encoded);
std::string long_name_for(std::string_view encoded);
bool is_long_name(std::string_view backing_name);
bool is_long_name_sidecar(std::string_view backing_name);

// Long symlink targets (docs/FORMAT.md §7.1): a sealed target whose encoding does not fit
// in a backing symlink (4095 bytes) is kept in a sidecar file beside the link, named
// "T." + base64url(SHA-256(blob)); the backing symlink points at that name.
inline constexpr std::string_view kTargetSidecarPrefix = "T.";
inline constexpr std::size_t kMaxBackingTargetLength = 4095;
std::string target_sidecar_name(ByteView blob);
bool is_target_sidecar_name(std::string_view backing_target);

}  // namespace wardfs::crypto
