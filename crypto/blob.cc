#include "crypto/blob.h"

#include <cstring>

#include "crypto/file_format.h"

namespace wardfs::crypto {

namespace {
// The generation is bound into the associated data so a relabelled blob fails to open.
Bytes blob_ad(std::uint32_t generation, ByteView ad) {
  Bytes full(kGenerationSize);
  put_le32(full.data(), generation);
  full.insert(full.end(), ad.begin(), ad.end());
  return full;
}
}  // namespace

Bytes seal_blob(const Aead& aead, std::uint32_t generation, ByteView ad, ByteView plaintext) {
  const std::size_t nonce_len = aead.nonce_size();
  Bytes out(kGenerationSize + nonce_len + plaintext.size() + kAeadTagSize);
  put_le32(out.data(), generation);
  const std::span<std::uint8_t> nonce(out.data() + kGenerationSize, nonce_len);
  random_nonce(nonce);
  aead.seal(std::span(out).subspan(kGenerationSize + nonce_len), plaintext, nonce,
            blob_ad(generation, ad));
  return out;
}

std::optional<std::uint32_t> blob_generation(ByteView blob, const Aead& aead) {
  if (blob.size() < kGenerationSize + aead.nonce_size() + kAeadTagSize) return std::nullopt;
  return get_le32(blob.data());
}

std::optional<Bytes> open_blob(const Aead& aead, ByteView ad, ByteView blob) {
  const auto generation = blob_generation(blob, aead);
  if (!generation) return std::nullopt;
  const std::size_t nonce_len = aead.nonce_size();
  Bytes out(blob.size() - kGenerationSize - nonce_len - kAeadTagSize);
  if (!aead.open(out, blob.subspan(kGenerationSize + nonce_len),
                 blob.subspan(kGenerationSize, nonce_len), blob_ad(*generation, ad))) {
    return std::nullopt;
  }
  return out;
}

}  // namespace wardfs::crypto
