#include "crypto/bytes.h"

#include <pthread.h>
#include <sodium.h>

#include <atomic>
#include <cstring>

#include "crypto/secret.h"

namespace wardfs::crypto {

void put_le16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v);
  p[1] = static_cast<std::uint8_t>(v >> 8);
}
void put_le32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
void put_le64(std::uint8_t* p, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::uint8_t>(v >> (8 * i));
}
std::uint16_t get_le16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>(p[0] | (p[1] << 8));
}
std::uint32_t get_le32(const std::uint8_t* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
std::uint64_t get_le64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void random_fill(std::span<std::uint8_t> out) {
  ensure_sodium();
  randombytes_buf(out.data(), out.size());
}

namespace {
std::atomic<std::uint64_t> fork_epoch{0};

struct NoncePool {
  std::uint8_t bytes[4096];
  std::size_t used = sizeof bytes;
  std::uint64_t epoch = 0;
};
}  // namespace

void random_nonce(std::span<std::uint8_t> out) {
  static const bool registered = [] {
    ensure_sodium();
    return pthread_atfork(nullptr, nullptr, [] { fork_epoch.fetch_add(1); }) == 0;
  }();
  (void)registered;
  thread_local NoncePool pool;
  if (out.size() > sizeof pool.bytes) {
    random_fill(out);
    return;
  }
  const std::uint64_t epoch = fork_epoch.load();
  if (pool.epoch != epoch || pool.used + out.size() > sizeof pool.bytes) {
    randombytes_buf(pool.bytes, sizeof pool.bytes);
    pool.used = 0;
    pool.epoch = epoch;
  }
  std::memcpy(out.data(), pool.bytes + pool.used, out.size());
  sodium_memzero(pool.bytes + pool.used, out.size());  // never hand out the same bytes twice
  pool.used += out.size();
}

std::string base64url_encode(ByteView bytes) {
  constexpr int kVariant = sodium_base64_VARIANT_URLSAFE_NO_PADDING;
  std::string out(sodium_base64_ENCODED_LEN(bytes.size(), kVariant), '\0');
  sodium_bin2base64(out.data(), out.size(), bytes.data(), bytes.size(), kVariant);
  out.resize(out.size() - 1);  // drop the terminating NUL libsodium writes
  return out;
}

std::optional<Bytes> base64url_decode(std::string_view text) {
  // libsodium maps some bytes outside the alphabet onto '_': an attacker could then
  // give one name many spellings. Only the canonical alphabet is accepted.
  for (const char c : text) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '_';
    if (!ok) return std::nullopt;
  }
  Bytes out(text.size() * 3 / 4 + 3);
  std::size_t len = 0;
  const char* end = nullptr;
  if (sodium_base642bin(out.data(), out.size(), text.data(), text.size(), nullptr, &len, &end,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 ||
      end != text.data() + text.size()) {
    return std::nullopt;
  }
  out.resize(len);
  return out;
}

std::string hex_encode(ByteView bytes) {
  std::string out(bytes.size() * 2 + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), bytes.data(), bytes.size());
  out.pop_back();
  return out;
}

bool is_all_zero(ByteView bytes) {
  // Only ever asked of public bytes (sealed chunks), so no constant-time scan is needed:
  // sodium_is_zero read every byte of every chunk and was two thirds of the daemon's CPU
  // on sequential reads. Ciphertext differs from zero in its first bytes; memcmp of the
  // buffer against itself shifted by one stops there.
  if (bytes.empty()) return true;
  return bytes[0] == 0 && std::memcmp(bytes.data(), bytes.data() + 1, bytes.size() - 1) == 0;
}

}  // namespace wardfs::crypto
