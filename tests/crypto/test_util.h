// Helpers shared by the crypto tests: fixed keys, hex, bit flipping, temp dirs.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/aead.h"
#include "crypto/bytes.h"
#include "crypto/file_format.h"
#include "crypto/secret.h"

namespace wardfs::test {

using crypto::Bytes;
using crypto::ByteView;
using crypto::CipherId;

inline constexpr CipherId kCiphers[] = {CipherId::aes256gcm, CipherId::xchacha20poly1305};

// A deterministic byte pattern, different for every seed.
inline Bytes pattern(std::size_t size, std::uint32_t seed = 1) {
  Bytes out(size);
  std::uint32_t x = seed * 2654435761U + 0x9e3779b9U;
  for (auto& b : out) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    b = static_cast<std::uint8_t>(x >> 24);
  }
  return out;
}

inline crypto::SecretBytes key_of(std::uint32_t seed, std::size_t size = 32) {
  const Bytes bytes = pattern(size, seed);
  return crypto::SecretBytes::copy_of(bytes);
}

inline crypto::FileId file_id_of(std::uint32_t seed) {
  crypto::FileId id{};
  const Bytes bytes = pattern(id.size(), seed + 1000);
  std::copy(bytes.begin(), bytes.end(), id.begin());
  return id;
}

inline Bytes from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0) throw std::invalid_argument("odd hex length");
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    throw std::invalid_argument("bad hex digit");
  };
  Bytes out(hex.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<std::uint8_t>(nibble(hex[2 * i]) * 16 + nibble(hex[2 * i + 1]));
  }
  return out;
}

inline Bytes to_bytes(ByteView v) { return Bytes(v.begin(), v.end()); }

inline bool all_zero(ByteView v) {
  for (auto b : v) {
    if (b != 0) return false;
  }
  return true;
}

// A fresh directory under $TMPDIR, removed with everything in it when the object dies.
class TempDir {
 public:
  TempDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "wardfs-test-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = templ;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::filesystem::path& path, ByteView data, mode_t mode) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data.data()),
              static_cast<std::streamsize>(data.size()));
    if (!out) throw std::runtime_error("cannot write " + path.string());
  }
  if (::chmod(path.c_str(), mode) != 0) throw std::runtime_error("chmod failed");
}

inline std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace wardfs::test
