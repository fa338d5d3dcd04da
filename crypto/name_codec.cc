#include "crypto/name_codec.h"

#include <openssl/evp.h>

#include <stdexcept>

#include "crypto/kdf.h"
#include "crypto/thread_contexts.h"

namespace wardfs::crypto {

namespace {
constexpr std::size_t kSivTagSize = 16;
constexpr std::size_t kNameBlock = 16;

const EVP_CIPHER* aes256siv() {
  static EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-SIV", nullptr);
  if (cipher == nullptr) throw std::runtime_error("OpenSSL has no AES-256-SIV");
  return cipher;
}

// Keying an AES-SIV context looks up its CBC, CTR and CMAC implementations by name and
// derives the first S2V block, several times the cost of sealing a name. Each thread
// keeps a keyed context per direction for the last key it used (contexts 0 and 1, wiped
// with the key: crypto/thread_contexts.h) and starts every name from a copy of it in
// context 2 (SIV's running state must begin afresh for each message).
constexpr std::size_t kWork = 2;

void key_siv_contexts(ThreadCipherContexts& tc, const SecretBytes& key, std::uint64_t serial) {
  tc.set_key(0);
  for (int dir = 0; dir < 2; ++dir) {
    if (!EVP_CipherInit_ex2(tc.at(dir), aes256siv(), key.data(), nullptr, dir, nullptr))
      throw std::runtime_error("AES-256-SIV init failed");
  }
  tc.set_key(serial);
}

bool siv_run(const SecretBytes& key, std::uint64_t serial, bool encrypt, ByteView ad, ByteView in,
             std::uint8_t* tag, std::uint8_t* out) {
  thread_local ThreadCipherContexts tc(3);
  const auto in_use = tc.lock();
  if (tc.key() != serial) key_siv_contexts(tc, key, serial);
  EVP_CIPHER_CTX* ctx = tc.at(kWork);
  if (!EVP_CIPHER_CTX_copy(ctx, tc.at(encrypt ? 1 : 0)))
    throw std::runtime_error("AES-256-SIV context copy failed");
  int len = 0;
  if (!encrypt && !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, kSivTagSize, tag)) {
    return false;
  }
  // SIV takes exactly one AD element and one plaintext update, in that order.
  if (!EVP_CipherUpdate(ctx, nullptr, &len, ad.data(), int(ad.size()))) return false;
  if (!EVP_CipherUpdate(ctx, out, &len, in.data(), int(in.size()))) return false;
  if (EVP_CipherFinal_ex(ctx, nullptr, &len) <= 0) return false;
  if (encrypt && !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kSivTagSize, tag)) {
    throw std::runtime_error("AES-256-SIV tag failed");
  }
  return true;
}
}  // namespace

NameCipher::NameCipher(SecretBytes key) : key_(std::move(key)) {
  if (key_.size() != kNameKeySize) throw std::invalid_argument("name keys are 64 bytes");
}

Bytes NameCipher::seal_deterministic(ByteView ad, ByteView plaintext) const {
  Bytes out(kSivTagSize + plaintext.size());
  if (!siv_run(key_, serial_.value(), true, ad, plaintext, out.data(), out.data() + kSivTagSize)) {
    throw std::runtime_error("AES-256-SIV encryption failed");
  }
  return out;
}

std::optional<Bytes> NameCipher::open_deterministic(ByteView ad, ByteView sealed) const {
  if (sealed.size() < kSivTagSize) return std::nullopt;
  Bytes tag(sealed.begin(), sealed.begin() + kSivTagSize);
  Bytes out(sealed.size() - kSivTagSize);
  if (!siv_run(key_, serial_.value(), false, ad, sealed.subspan(kSivTagSize), tag.data(),
               out.data())) {
    return std::nullopt;
  }
  return out;
}

std::string NameCipher::encrypt(const DirId& dir, std::string_view name) const {
  // Pad to a block multiple so the encoding leaks the length only to within 16 bytes.
  const std::size_t pad = kNameBlock - name.size() % kNameBlock;
  Bytes padded(name.begin(), name.end());
  padded.insert(padded.end(), pad, static_cast<std::uint8_t>(pad));
  return base64url_encode(seal_deterministic(dir, padded));
}

std::optional<std::string> NameCipher::decrypt(const DirId& dir, std::string_view encoded) const {
  const auto sealed = base64url_decode(encoded);
  if (!sealed || sealed->size() < kSivTagSize + kNameBlock ||
      (sealed->size() - kSivTagSize) % kNameBlock != 0) {
    return std::nullopt;
  }
  auto padded = open_deterministic(dir, *sealed);
  if (!padded) return std::nullopt;
  const std::size_t pad = padded->back();
  if (pad == 0 || pad > kNameBlock || pad > padded->size()) return std::nullopt;
  for (std::size_t i = padded->size() - pad; i < padded->size(); ++i) {
    if ((*padded)[i] != pad) return std::nullopt;
  }
  std::string name(padded->begin(), padded->end() - static_cast<std::ptrdiff_t>(pad));
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos) {
    return std::nullopt;
  }
  return name;
}

bool needs_long_name(std::string_view encoded) { return encoded.size() > kMaxBackingNameLength; }

std::string long_name_for(std::string_view encoded) {
  return std::string(kLongNamePrefix) + base64url_encode(sha256(as_bytes(encoded)));
}

bool is_long_name(std::string_view backing_name) {
  return backing_name.starts_with(kLongNamePrefix) && backing_name.size() == 2 + 43;
}

bool is_long_name_sidecar(std::string_view backing_name) {
  return backing_name.starts_with(kLongNamePrefix) &&
         backing_name.size() == 2 + 43 + kLongNameSidecarSuffix.size() &&
         backing_name.ends_with(kLongNameSidecarSuffix);
}

std::string target_sidecar_name(ByteView blob) {
  return std::string(kTargetSidecarPrefix) + base64url_encode(sha256(blob));
}

bool is_target_sidecar_name(std::string_view backing_target) {
  if (!backing_target.starts_with(kTargetSidecarPrefix)) return false;
  const auto digest = base64url_decode(backing_target.substr(kTargetSidecarPrefix.size()));
  return digest && digest->size() == 32;
}

}  // namespace wardfs::crypto
