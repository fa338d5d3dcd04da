// Small byte helpers shared by the format code: little-endian fields, base64url,
// random bytes. Encoding goes through libsodium; nothing here is hand-rolled crypto.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace wardfs::crypto {

using Bytes = std::vector<std::uint8_t>;
using ByteView = std::span<const std::uint8_t>;

inline ByteView as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

void put_le16(std::uint8_t* p, std::uint16_t v);
void put_le32(std::uint8_t* p, std::uint32_t v);
void put_le64(std::uint8_t* p, std::uint64_t v);
std::uint16_t get_le16(const std::uint8_t* p);
std::uint32_t get_le32(const std::uint8_t* p);
std::uint64_t get_le64(const std::uint8_t* p);

void random_fill(std::span<std::uint8_t> out);
// Random bytes for nonces, drawn from a per-thread pool that one getrandom call refills
// every 4 KiB: a syscall per 4 KiB chunk would cost as much as sealing it. The pools
// are discarded in a forked child, so parent and child never hand out the same bytes.
void random_nonce(std::span<std::uint8_t> out);

// RFC 4648 section 5 alphabet, no padding: safe in file names.
std::string base64url_encode(ByteView bytes);
std::optional<Bytes> base64url_decode(std::string_view text);

std::string hex_encode(ByteView bytes);

bool is_all_zero(ByteView bytes);

}  // namespace wardfs::crypto
