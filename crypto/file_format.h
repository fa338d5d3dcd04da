// The content format of one encrypted file: a 64-byte authenticated header followed by
// fixed-size chunk slots. docs/FORMAT.md is the byte-exact specification.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>

#include "crypto/aead.h"
#include "crypto/bytes.h"
#include "crypto/secret.h"

namespace wardfs::crypto {

inline constexpr std::uint16_t kFormatVersion = 1;
inline constexpr std::size_t kHeaderSize = 64;
inline constexpr std::size_t kFileIdSize = 16;
inline constexpr std::size_t kGenerationSize = 4;
inline constexpr std::array<std::uint8_t, 4> kHeaderMagic = {'W', 'D', 'F', 'S'};

using FileId = std::array<std::uint8_t, kFileIdSize>;
FileId random_file_id();

enum HeaderFlag : std::uint16_t {
  // Set once a gap was left in the file; only then may an all-zero slot read as zeros.
  kHeaderHasHoles = 1U << 0,
};

struct FileHeader {
  FileId file_id{};
  std::uint16_t flags = 0;
  std::uint32_t generation = 0;  // generation whose key made the header tag
  bool has_holes() const { return (flags & kHeaderHasHoles) != 0; }
};

// The two keys of one file under one generation, derived from that generation's DEK.
class FileKeys {
 public:
  FileKeys(CipherId cipher, ByteView dek, const FileId& file_id);
  const Aead& content() const { return *content_; }
  ByteView header_mac_key() const { return header_key_.view(); }

 private:
  std::unique_ptr<Aead> content_;
  SecretBytes header_key_;
};

using RawHeader = std::array<std::uint8_t, kHeaderSize>;
RawHeader encode_header(const FileHeader& header, const FileKeys& keys);

enum class HeaderStatus { ok, too_short, bad_magic, unsupported_version, bad_reserved, bad_tag };
// Reads the fields without checking the tag (the caller needs the generation first).
HeaderStatus parse_header(ByteView raw, FileHeader& out);
bool verify_header_tag(ByteView raw, const FileKeys& keys);

// Where chunks live in the backing file and how sizes map between the two views.
class ChunkLayout {
 public:
  ChunkLayout(CipherId cipher, std::uint32_t chunk_size);
  std::uint32_t chunk_size() const { return chunk_size_; }
  std::size_t nonce_size() const { return nonce_size_; }
  std::size_t overhead() const { return kGenerationSize + nonce_size_ + kAeadTagSize; }
  std::size_t slot_size() const { return chunk_size_ + overhead(); }
  std::uint64_t slot_offset(std::uint64_t index) const { return kHeaderSize + index * slot_size(); }
  // nullopt when no valid file has this backing size (cut mid-slot or into the header).
  std::optional<std::uint64_t> plaintext_size(std::uint64_t backing_size) const;
  std::uint64_t backing_size(std::uint64_t plaintext_size) const;
  // Index of the chunk that carries the final flag; an empty file still has chunk 0.
  std::uint64_t final_index(std::uint64_t plaintext_size) const {
    return plaintext_size == 0 ? 0 : (plaintext_size - 1) / chunk_size_;
  }

 private:
  std::uint32_t chunk_size_;
  std::size_t nonce_size_;
};

// A sealed chunk is: generation (u32 LE) | nonce | ciphertext | tag.
// out.size() must be layout.overhead() + plaintext.size().
struct ChunkPosition {
  const FileId& file_id;
  std::uint64_t index;
  bool final;
};
void seal_chunk(const ChunkLayout& layout, const Aead& aead, std::uint32_t generation,
                ChunkPosition pos, ByteView plaintext, std::span<std::uint8_t> out);
// Same, with a caller-chosen nonce: only for known-answer test vectors.
void seal_chunk_with_nonce(const ChunkLayout& layout, const Aead& aead, std::uint32_t generation,
                           ChunkPosition pos, ByteView plaintext, ByteView nonce,
                           std::span<std::uint8_t> out);
std::uint32_t chunk_generation(ByteView sealed);
// out.size() must be sealed.size() - layout.overhead().
[[nodiscard]] bool open_chunk(const ChunkLayout& layout, const Aead& aead, ChunkPosition pos,
                              ByteView sealed, std::span<std::uint8_t> out);

}  // namespace wardfs::crypto
