#include "crypto/aead.h"

#include <openssl/evp.h>
#include <sodium.h>

#include <cstring>
#include <stdexcept>
#include <string>

#include "crypto/thread_contexts.h"

namespace wardfs::crypto {

std::string_view cipher_name(CipherId id) {
  return id == CipherId::aes256gcm ? "aes-256-gcm" : "xchacha20-poly1305";
}

std::optional<CipherId> cipher_from_name(std::string_view name) {
  if (name == "aes-256-gcm") return CipherId::aes256gcm;
  if (name == "xchacha20-poly1305") return CipherId::xchacha20poly1305;
  return std::nullopt;
}

CipherId default_cipher() {
  ensure_sodium();
  // libsodium probes the same CPUID bits OpenSSL uses for its AES-NI code path.
  return crypto_aead_aes256gcm_is_available() ? CipherId::aes256gcm : CipherId::xchacha20poly1305;
}

std::size_t nonce_size_of(CipherId id) {
  return id == CipherId::aes256gcm ? 12 : crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
}

namespace {

void check_sizes(std::size_t out, std::size_t in, bool sealing) {
  const std::size_t expected = sealing ? in + kAeadTagSize : in - kAeadTagSize;
  if ((!sealing && in < kAeadTagSize) || out != expected) {
    throw std::invalid_argument("aead: output buffer has the wrong size");
  }
}

// Setting a key expands its schedule (AES) or resets the context (ChaCha20 through
// OpenSSL), which costs as much as sealing a small chunk. Each thread keeps one context
// per cipher and direction and remembers which key it holds (crypto/thread_contexts.h), so
// a run of chunks under one file key only resets the nonce; the key's destructor wipes it.

// Once a context holds key and nonce, sealing and opening are the same EVP calls for both
// ciphers. The tag follows the ciphertext.
void evp_seal(EVP_CIPHER_CTX* ctx, std::span<std::uint8_t> out, ByteView plaintext, ByteView ad,
              const char* cipher) {
  int len = 0;
  const bool ok =
      (ad.empty() || EVP_EncryptUpdate(ctx, nullptr, &len, ad.data(), int(ad.size()))) &&
      (plaintext.empty() ||
       EVP_EncryptUpdate(ctx, out.data(), &len, plaintext.data(), int(plaintext.size()))) &&
      EVP_EncryptFinal_ex(ctx, out.data() + plaintext.size(), &len) &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kAeadTagSize, out.data() + plaintext.size());
  if (!ok) throw std::runtime_error(std::string(cipher) + " seal failed");
}

// False when the tag does not match; `out` then holds zeros, never unauthenticated bytes.
bool evp_open(EVP_CIPHER_CTX* ctx, std::span<std::uint8_t> out, ByteView sealed, ByteView ad) {
  const std::size_t ct_len = sealed.size() - kAeadTagSize;
  std::uint8_t tag[kAeadTagSize];
  std::memcpy(tag, sealed.data() + ct_len, kAeadTagSize);
  int len = 0;
  const bool ok =
      (ad.empty() || EVP_DecryptUpdate(ctx, nullptr, &len, ad.data(), int(ad.size()))) &&
      (ct_len == 0 || EVP_DecryptUpdate(ctx, out.data(), &len, sealed.data(), int(ct_len))) &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, kAeadTagSize, tag) &&
      EVP_DecryptFinal_ex(ctx, nullptr, &len) > 0;
  if (!ok && !out.empty()) sodium_memzero(out.data(), out.size());
  return ok;
}

const EVP_CIPHER* aes256gcm_cipher() {
  static EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  if (cipher == nullptr) throw std::runtime_error("OpenSSL has no AES-256-GCM");
  return cipher;
}

class Aes256Gcm final : public Aead {
 public:
  explicit Aes256Gcm(ByteView key) : key_(SecretBytes::copy_of(key)) {}
  CipherId id() const override { return CipherId::aes256gcm; }
  std::size_t nonce_size() const override { return 12; }

  void seal(std::span<std::uint8_t> out, ByteView plaintext, ByteView nonce,
            ByteView ad) const override {
    check_sizes(out.size(), plaintext.size(), true);
    thread_local ThreadCipherContexts enc(1);
    const auto in_use = enc.lock();
    evp_seal(prepare(enc, nonce, 1), out, plaintext, ad, "AES-256-GCM");
  }

  bool open(std::span<std::uint8_t> out, ByteView sealed, ByteView nonce,
            ByteView ad) const override {
    check_sizes(out.size(), sealed.size(), false);
    thread_local ThreadCipherContexts dec(1);
    const auto in_use = dec.lock();
    return evp_open(prepare(dec, nonce, 0), out, sealed, ad);
  }

 private:
  EVP_CIPHER_CTX* prepare(ThreadCipherContexts& tc, ByteView nonce, int encrypt) const {
    if (nonce.size() != 12) throw std::invalid_argument("AES-256-GCM needs a 96-bit nonce");
    const bool same_key = tc.key() == serial_.value();
    if (!EVP_CipherInit_ex2(tc.at(0), same_key ? nullptr : aes256gcm_cipher(),
                            same_key ? nullptr : key_.data(), nonce.data(), encrypt, nullptr)) {
      tc.set_key(0);
      throw std::runtime_error("AES-256-GCM init failed");
    }
    tc.set_key(serial_.value());
    return tc.at(0);
  }

  SecretBytes key_;
  KeySerial serial_;
};

const EVP_CIPHER* chacha20poly1305_cipher() {
  static EVP_CIPHER* cipher = EVP_CIPHER_fetch(nullptr, "ChaCha20-Poly1305", nullptr);
  if (cipher == nullptr) throw std::runtime_error("OpenSSL has no ChaCha20-Poly1305");
  return cipher;
}

// XChaCha20-Poly1305 as libsodium defines it (HChaCha20 subkey from the first 16 nonce
// bytes, then IETF ChaCha20-Poly1305 with nonce 0^4 || last 8 bytes), with libsodium
// doing the HChaCha20 step and OpenSSL's vectorised ChaCha20-Poly1305 the bulk, which is
// several times faster here than libsodium's portable code. Output is byte-identical.
class XChaCha20Poly1305 final : public Aead {
 public:
  explicit XChaCha20Poly1305(ByteView key) : key_(SecretBytes::copy_of(key)) {}
  CipherId id() const override { return CipherId::xchacha20poly1305; }
  std::size_t nonce_size() const override { return crypto_aead_xchacha20poly1305_ietf_NPUBBYTES; }

  void seal(std::span<std::uint8_t> out, ByteView plaintext, ByteView nonce,
            ByteView ad) const override {
    check_sizes(out.size(), plaintext.size(), true);
    thread_local ThreadCipherContexts enc(1);
    const auto in_use = enc.lock();
    evp_seal(prepare(enc, nonce, 1), out, plaintext, ad, "XChaCha20-Poly1305");
  }

  bool open(std::span<std::uint8_t> out, ByteView sealed, ByteView nonce,
            ByteView ad) const override {
    check_sizes(out.size(), sealed.size(), false);
    thread_local ThreadCipherContexts dec(1);
    const auto in_use = dec.lock();
    return evp_open(prepare(dec, nonce, 0), out, sealed, ad);
  }

 private:
  EVP_CIPHER_CTX* prepare(ThreadCipherContexts& tc, ByteView nonce, int encrypt) const {
    if (nonce.size() != crypto_aead_xchacha20poly1305_ietf_NPUBBYTES) {
      throw std::invalid_argument("XChaCha20-Poly1305 needs a 192-bit nonce");
    }
    std::uint8_t subkey[crypto_core_hchacha20_OUTPUTBYTES];
    crypto_core_hchacha20(subkey, nonce.data(), key_.data(), nullptr);
    std::uint8_t ietf_nonce[12] = {0, 0, 0, 0};
    std::memcpy(ietf_nonce + 4, nonce.data() + 16, 8);
    // The subkey changes with every nonce, but the cipher stays: after the first call only
    // key and nonce are reset, which skips OpenSSL's per-cipher setup. The context holds a
    // subkey of this key until the next call, so it is marked with this key's serial.
    const bool fresh = tc.key() == 0;
    const bool ok = EVP_CipherInit_ex2(tc.at(0), fresh ? chacha20poly1305_cipher() : nullptr,
                                       subkey, ietf_nonce, encrypt, nullptr) == 1;
    tc.set_key(ok ? serial_.value() : 0);
    sodium_memzero(subkey, sizeof subkey);
    if (!ok) throw std::runtime_error("ChaCha20-Poly1305 init failed");
    return tc.at(0);
  }
  SecretBytes key_;
  KeySerial serial_;
};

}  // namespace

std::unique_ptr<Aead> make_aead(CipherId id, ByteView key) {
  if (key.size() != kAeadKeySize) throw std::invalid_argument("AEAD keys are 32 bytes");
  ensure_sodium();
  if (id == CipherId::aes256gcm) return std::make_unique<Aes256Gcm>(key);
  return std::make_unique<XChaCha20Poly1305>(key);
}

}  // namespace wardfs::crypto
