// Authenticated encryption with associated data: one interface, two ciphers.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "crypto/bytes.h"
#include "crypto/secret.h"

namespace wardfs::crypto {

enum class CipherId : std::uint8_t { aes256gcm = 1, xchacha20poly1305 = 2 };

std::string_view cipher_name(CipherId id);
std::optional<CipherId> cipher_from_name(std::string_view name);
// AES-256-GCM when the CPU has AES instructions (OpenSSL reports the AES-NI path), else
// XChaCha20-Poly1305, which is fast in software everywhere.
CipherId default_cipher();

constexpr std::size_t kAeadKeySize = 32;
constexpr std::size_t kAeadTagSize = 16;

class Aead {
 public:
  virtual ~Aead() = default;
  virtual CipherId id() const = 0;
  virtual std::size_t nonce_size() const = 0;

  // Writes ciphertext followed by the 16-byte tag: out.size() == plaintext.size() + 16.
  virtual void seal(std::span<std::uint8_t> out, ByteView plaintext, ByteView nonce,
                    ByteView ad) const = 0;
  // Returns false, and leaves out zeroed, when the tag does not verify.
  // out.size() == sealed.size() - 16.
  [[nodiscard]] virtual bool open(std::span<std::uint8_t> out, ByteView sealed, ByteView nonce,
                                  ByteView ad) const = 0;
};

std::unique_ptr<Aead> make_aead(CipherId id, ByteView key);

std::size_t nonce_size_of(CipherId id);

}  // namespace wardfs::crypto
