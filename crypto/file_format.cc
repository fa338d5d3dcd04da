#include "crypto/file_format.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "crypto/kdf.h"

namespace wardfs::crypto {

namespace {
constexpr std::size_t kTaggedHeaderPart = 32;  // bytes covered by the header MAC
constexpr std::size_t kChunkAdSize = kFileIdSize + 8 + 4 + 1;

std::array<std::uint8_t, kChunkAdSize> chunk_ad(ChunkPosition pos, std::uint32_t generation) {
  std::array<std::uint8_t, kChunkAdSize> ad{};
  std::memcpy(ad.data(), pos.file_id.data(), kFileIdSize);
  put_le64(ad.data() + kFileIdSize, pos.index);
  put_le32(ad.data() + kFileIdSize + 8, generation);
  ad[kChunkAdSize - 1] = pos.final ? 1 : 0;
  return ad;
}
}  // namespace

FileId random_file_id() {
  FileId id{};
  // Public like a nonce (it is stored in the clear), so it may come from the same
  // buffered CSPRNG output: one getrandom() per 4 KiB instead of one per file.
  random_nonce(id);
  return id;
}

FileKeys::FileKeys(CipherId cipher, ByteView dek, const FileId& file_id) {
  const SecretBytes content = hkdf_sha256(dek, file_id, label::kFileContent, kAeadKeySize);
  content_ = make_aead(cipher, content.view());
  header_key_ = hkdf_sha256(dek, file_id, label::kFileHeader, 32);
}

RawHeader encode_header(const FileHeader& header, const FileKeys& keys) {
  RawHeader raw{};
  std::memcpy(raw.data(), kHeaderMagic.data(), kHeaderMagic.size());
  put_le16(raw.data() + 4, kFormatVersion);
  put_le16(raw.data() + 6, header.flags);
  std::memcpy(raw.data() + 8, header.file_id.data(), kFileIdSize);
  put_le32(raw.data() + 24, header.generation);
  // bytes 28..31 are reserved and zero
  const Mac32 tag = hmac_sha256(keys.header_mac_key(), ByteView(raw.data(), kTaggedHeaderPart));
  std::memcpy(raw.data() + kTaggedHeaderPart, tag.data(), tag.size());
  return raw;
}

HeaderStatus parse_header(ByteView raw, FileHeader& out) {
  if (raw.size() < kHeaderSize) return HeaderStatus::too_short;
  if (!std::equal(kHeaderMagic.begin(), kHeaderMagic.end(), raw.begin())) {
    return HeaderStatus::bad_magic;
  }
  if (get_le16(raw.data() + 4) != kFormatVersion) return HeaderStatus::unsupported_version;
  if (get_le32(raw.data() + 28) != 0) return HeaderStatus::bad_reserved;
  out.flags = get_le16(raw.data() + 6);
  if ((out.flags & ~static_cast<std::uint16_t>(kHeaderHasHoles)) != 0)
    return HeaderStatus::unsupported_version;
  std::memcpy(out.file_id.data(), raw.data() + 8, kFileIdSize);
  out.generation = get_le32(raw.data() + 24);
  return HeaderStatus::ok;
}

bool verify_header_tag(ByteView raw, const FileKeys& keys) {
  if (raw.size() < kHeaderSize) return false;
  const Mac32 tag = hmac_sha256(keys.header_mac_key(), raw.first(kTaggedHeaderPart));
  return sodium_memcmp(tag.data(), raw.data() + kTaggedHeaderPart, tag.size()) == 0;
}

ChunkLayout::ChunkLayout(CipherId cipher, std::uint32_t chunk_size)
    : chunk_size_(chunk_size), nonce_size_(nonce_size_of(cipher)) {
  if (chunk_size == 0) throw std::invalid_argument("chunk size must be positive");
}

std::optional<std::uint64_t> ChunkLayout::plaintext_size(std::uint64_t backing_size) const {
  if (backing_size < kHeaderSize + overhead()) return std::nullopt;
  const std::uint64_t body = backing_size - kHeaderSize;
  const std::uint64_t full_slots = body / slot_size();
  const std::uint64_t rest = body % slot_size();
  if (rest == 0) return full_slots * chunk_size_;
  if (rest < overhead()) return std::nullopt;
  // A short last slot holding an empty chunk exists only in the empty file.
  if (rest == overhead() && full_slots != 0) return std::nullopt;
  return full_slots * chunk_size_ + (rest - overhead());
}

std::uint64_t ChunkLayout::backing_size(std::uint64_t plaintext_size) const {
  if (plaintext_size == 0) return kHeaderSize + overhead();
  const std::uint64_t full = plaintext_size / chunk_size_;
  const std::uint64_t rest = plaintext_size % chunk_size_;
  return kHeaderSize + full * slot_size() + (rest == 0 ? 0 : rest + overhead());
}

void seal_chunk_with_nonce(const ChunkLayout& layout, const Aead& aead, std::uint32_t generation,
                           ChunkPosition pos, ByteView plaintext, ByteView nonce,
                           std::span<std::uint8_t> out) {
  if (out.size() != layout.overhead() + plaintext.size() ||
      plaintext.size() > layout.chunk_size() || nonce.size() != layout.nonce_size()) {
    throw std::invalid_argument("seal_chunk: bad buffer sizes");
  }
  put_le32(out.data(), generation);
  std::memcpy(out.data() + kGenerationSize, nonce.data(), nonce.size());
  const auto ad = chunk_ad(pos, generation);
  aead.seal(out.subspan(kGenerationSize + nonce.size()), plaintext, nonce, ad);
}

void seal_chunk(const ChunkLayout& layout, const Aead& aead, std::uint32_t generation,
                ChunkPosition pos, ByteView plaintext, std::span<std::uint8_t> out) {
  std::array<std::uint8_t, 24> nonce{};
  const std::span<std::uint8_t> n(nonce.data(), layout.nonce_size());
  random_nonce(n);
  seal_chunk_with_nonce(layout, aead, generation, pos, plaintext, n, out);
}

std::uint32_t chunk_generation(ByteView sealed) {
  return sealed.size() < kGenerationSize ? 0 : get_le32(sealed.data());
}

bool open_chunk(const ChunkLayout& layout, const Aead& aead, ChunkPosition pos, ByteView sealed,
                std::span<std::uint8_t> out) {
  if (sealed.size() < layout.overhead() || out.size() != sealed.size() - layout.overhead() ||
      out.size() > layout.chunk_size()) {
    return false;
  }
  const std::uint32_t generation = chunk_generation(sealed);
  const ByteView nonce = sealed.subspan(kGenerationSize, layout.nonce_size());
  const auto ad = chunk_ad(pos, generation);
  return aead.open(out, sealed.subspan(kGenerationSize + layout.nonce_size()), nonce, ad);
}

}  // namespace wardfs::crypto
