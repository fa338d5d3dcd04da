// Shared by the fuzz entry points: a property check that crashes loudly, and the fixed
// keys of tests/vectors/format-v1.json, so the vectors double as seeds that authenticate.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "crypto/bytes.h"
#include "crypto/file_format.h"
#include "crypto/name_codec.h"

namespace wardfs::fuzz {

// Like assert, but kept in release builds: a broken property is a crash the fuzzer saves.
inline void check(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz property violated: %s\n", what);
    std::abort();
  }
}

inline crypto::Bytes seq(std::uint8_t start, std::size_t n) {
  crypto::Bytes out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>(start + i);
  return out;
}

// Generation 1 of the vectors: DEK 00..1f, file id a0..af, volume id c0..cf, dir id d0..df.
inline const crypto::Bytes& vector_dek() {
  static const crypto::Bytes dek = seq(0x00, 32);
  return dek;
}
inline crypto::FileId vector_file_id() {
  crypto::FileId id{};
  for (std::size_t i = 0; i < id.size(); ++i) id[i] = static_cast<std::uint8_t>(0xa0 + i);
  return id;
}
inline crypto::DirId vector_dir_id() {
  crypto::DirId id{};
  for (std::size_t i = 0; i < id.size(); ++i) id[i] = static_cast<std::uint8_t>(0xd0 + i);
  return id;
}
inline const crypto::Bytes& vector_volume_id() {
  static const crypto::Bytes id = seq(0xc0, 16);
  return id;
}

// Reads little-endian fields off the front of the input, zero-padding when it runs out.
class Reader {
 public:
  Reader(const std::uint8_t* data, std::size_t size) : data_(data), size_(size) {}
  std::uint8_t u8() { return pos_ < size_ ? data_[pos_++] : 0; }
  std::uint64_t uint(int bytes) {
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= std::uint64_t{u8()} << (8 * i);
    return v;
  }
  crypto::ByteView rest() const {
    return pos_ < size_ ? crypto::ByteView(data_ + pos_, size_ - pos_) : crypto::ByteView();
  }

 private:
  const std::uint8_t* data_;
  std::size_t size_;
  std::size_t pos_ = 0;
};

}  // namespace wardfs::fuzz
