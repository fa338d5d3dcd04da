// Small sealed values outside file contents (symlink targets, xattr values):
// generation (u32 LE) | nonce | ciphertext | tag, under a per-generation key.
#pragma once

#include <cstdint>
#include <optional>

#include "crypto/aead.h"
#include "crypto/bytes.h"

namespace wardfs::crypto {

Bytes seal_blob(const Aead& aead, std::uint32_t generation, ByteView ad, ByteView plaintext);
// The generation a blob claims; nullopt when it is too short to be one.
std::optional<std::uint32_t> blob_generation(ByteView blob, const Aead& aead);
std::optional<Bytes> open_blob(const Aead& aead, ByteView ad, ByteView blob);

}  // namespace wardfs::crypto
