// Key derivation: HKDF-SHA256 (RFC 5869) through OpenSSL's EVP_KDF, and HMAC-SHA256.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "crypto/bytes.h"
#include "crypto/secret.h"

namespace wardfs::crypto {

SecretBytes hkdf_sha256(ByteView ikm, ByteView salt, std::string_view info, std::size_t length);

using Mac32 = std::array<std::uint8_t, 32>;
Mac32 hmac_sha256(ByteView key, ByteView message);
Mac32 sha256(ByteView message);

// The audit log's HMAC key: HKDF(audit root key, salt = volume id, "wardfs v1 audit").
SecretBytes derive_audit_mac_key(ByteView audit_root, ByteView volume_id);

// Labels for everything derived from a generation's data key. Changing one is a
// format change: they are part of docs/FORMAT.md.
namespace label {
inline constexpr std::string_view kFileContent = "wardfs v1 file content";
inline constexpr std::string_view kFileHeader = "wardfs v1 file header";
inline constexpr std::string_view kNames = "wardfs v1 names";
inline constexpr std::string_view kSymlinks = "wardfs v1 symlinks";
inline constexpr std::string_view kXattrs = "wardfs v1 xattrs";
inline constexpr std::string_view kAudit = "wardfs v1 audit";
}  // namespace label

}  // namespace wardfs::crypto
