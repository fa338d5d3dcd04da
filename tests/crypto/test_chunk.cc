// The chunk codec and ChunkLayout: round trips, file assembly, size mapping, tampering.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>

#include "crypto/file_format.h"
#include "tests/crypto/test_util.h"

using namespace wardfs::crypto;
using wardfs::test::all_zero;
using wardfs::test::file_id_of;
using wardfs::test::key_of;
using wardfs::test::pattern;

namespace {

Bytes seal(const ChunkLayout& layout, const FileKeys& keys, std::uint32_t generation,
           const FileId& fid, std::uint64_t index, bool final, ByteView pt) {
  Bytes out(layout.overhead() + pt.size());
  seal_chunk(layout, keys.content(), generation, ChunkPosition{fid, index, final}, pt, out);
  return out;
}

struct Opened {
  bool ok = false;
  Bytes out;
};

// Opens and checks the failure contract: no throw, and a failed open hands out no data:
// the buffer is either zeroed (the tag failed) or untouched (refused before decrypting).
Opened open(const ChunkLayout& layout, const FileKeys& keys, const FileId& fid, std::uint64_t index,
            bool final, ByteView sealed) {
  Opened r;
  r.out.assign(sealed.size() >= layout.overhead() ? sealed.size() - layout.overhead() : 0, 0xa5);
  REQUIRE_NOTHROW(
      r.ok = open_chunk(layout, keys.content(), ChunkPosition{fid, index, final}, sealed, r.out));
  if (!r.ok) {
    const bool untouched =
        std::all_of(r.out.begin(), r.out.end(), [](auto b) { return b == 0xa5; });
    CHECK((all_zero(r.out) || untouched));
  }
  return r;
}

std::uint32_t chunk_size_for(int which) { return which == 0 ? 4096 : 65536; }

}  // namespace

TEST_CASE("chunk layout arithmetic", "[chunk][layout]") {
  const CipherId cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const std::uint32_t chunk = chunk_size_for(GENERATE(0, 1));
  const ChunkLayout layout(cipher, chunk);
  const std::size_t nonce = cipher == CipherId::aes256gcm ? 12 : 24;
  CHECK(layout.chunk_size() == chunk);
  CHECK(layout.nonce_size() == nonce);
  CHECK(layout.overhead() == 4 + nonce + 16);
  CHECK(layout.slot_size() == chunk + 4 + nonce + 16);
  CHECK(layout.slot_offset(0) == kHeaderSize);
  CHECK(layout.slot_offset(1) == kHeaderSize + layout.slot_size());
  CHECK(layout.slot_offset(1000000) == kHeaderSize + 1000000ULL * layout.slot_size());
  CHECK(layout.final_index(0) == 0);
  CHECK(layout.final_index(1) == 0);
  CHECK(layout.final_index(chunk) == 0);
  CHECK(layout.final_index(chunk + 1ULL) == 1);
  CHECK(layout.final_index(3ULL * chunk) == 2);

  const std::uint64_t h = kHeaderSize, o = layout.overhead(), s = layout.slot_size();
  CHECK(layout.backing_size(0) == h + o);
  CHECK(layout.backing_size(1) == h + o + 1);
  CHECK(layout.backing_size(chunk) == h + s);
  CHECK(layout.backing_size(chunk + 1ULL) == h + s + o + 1);

  SECTION("valid backing sizes") {
    CHECK(layout.plaintext_size(h + o) == 0U);
    CHECK(layout.plaintext_size(h + o + 1) == 1U);
    CHECK(layout.plaintext_size(h + s - 1) == chunk - 1ULL);
    CHECK(layout.plaintext_size(h + s) == chunk);
    CHECK(layout.plaintext_size(h + s + o + 1) == chunk + 1ULL);
    CHECK(layout.plaintext_size(h + 3 * s) == 3ULL * chunk);
  }
  SECTION("invalid backing sizes give nullopt") {
    CHECK_FALSE(layout.plaintext_size(0).has_value());
    CHECK_FALSE(layout.plaintext_size(h - 1).has_value());
    CHECK_FALSE(layout.plaintext_size(h).has_value());  // header only
    CHECK_FALSE(layout.plaintext_size(h + o - 1).has_value());
    CHECK_FALSE(layout.plaintext_size(h + s + 1).has_value());      // cut mid-slot
    CHECK_FALSE(layout.plaintext_size(h + s + o - 1).has_value());  // cut mid-slot
    CHECK_FALSE(layout.plaintext_size(h + 2 * s + 5).has_value());
    CHECK_FALSE(layout.plaintext_size(h + s + o).has_value());  // empty slot after full ones
    CHECK_FALSE(layout.plaintext_size(h + 4 * s + o).has_value());
  }
  SECTION("huge sizes do not overflow") {
    const std::uint64_t big = (1ULL << 50) + 12345;
    CHECK(layout.plaintext_size(layout.backing_size(big)) == big);
    CHECK_NOTHROW(layout.plaintext_size(std::numeric_limits<std::uint64_t>::max()));
  }
}

TEST_CASE("plaintext_size and backing_size are inverse bijections", "[chunk][layout]") {
  const CipherId cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const ChunkLayout layout(cipher, 4096);
  const std::uint64_t limit = layout.slot_offset(4) + 100;
  std::uint64_t valid = 0, bad = 0, first_bad = 0;
  for (std::uint64_t b = 0; b < limit; ++b) {
    const auto p = layout.plaintext_size(b);
    if (!p) continue;
    ++valid;
    if (layout.backing_size(*p) != b && bad++ == 0) first_bad = b;
  }
  INFO("first backing size that does not round trip: " << first_bad);
  CHECK(bad == 0);
  std::uint64_t prev = 0;
  for (std::uint64_t n = 0; n <= 4ULL * 4096 + 50; ++n) {
    const std::uint64_t b = layout.backing_size(n);
    if ((layout.plaintext_size(b) != n || (n > 0 && b <= prev)) && bad++ == 0) first_bad = n;
    prev = b;
  }
  INFO("first plaintext size that does not round trip: " << first_bad);
  CHECK(bad == 0);
  // Every plaintext size up to 4 chunks + 50 has exactly one backing size below the limit.
  CHECK(valid == 4ULL * 4096 + 1 + (limit - layout.slot_offset(4) - layout.overhead() - 1));
}

TEST_CASE("ChunkLayout rejects a zero chunk size", "[chunk][layout]") {
  CHECK_THROWS_AS(ChunkLayout(CipherId::aes256gcm, 0), std::invalid_argument);
  CHECK_THROWS_AS(ChunkLayout(CipherId::xchacha20poly1305, 0), std::invalid_argument);
}

TEST_CASE("chunks round trip at the edge sizes", "[chunk]") {
  const CipherId cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const std::uint32_t chunk = chunk_size_for(GENERATE(0, 1));
  const ChunkLayout layout(cipher, chunk);
  const auto dek = key_of(1);
  const FileId fid = file_id_of(1);
  const FileKeys keys(cipher, dek.view(), fid);
  for (std::size_t size :
       {std::size_t{0}, std::size_t{1}, std::size_t{chunk - 1}, std::size_t{chunk}}) {
    for (bool final : {false, true}) {
      INFO("size " << size << " final " << final);
      const Bytes pt = pattern(size, static_cast<std::uint32_t>(size));
      const std::uint64_t index = final ? 7 : (1ULL << 40) + 3;
      const Bytes sealed = seal(layout, keys, 5, fid, index, final, pt);
      CHECK(sealed.size() == layout.overhead() + size);
      CHECK(chunk_generation(sealed) == 5);
      CHECK(get_le32(sealed.data()) == 5);
      const Opened r = open(layout, keys, fid, index, final, sealed);
      CHECK(r.ok);
      CHECK(r.out == pt);
      // Same plaintext, same position: a fresh nonce makes a different chunk.
      CHECK(seal(layout, keys, 5, fid, index, final, pt) != sealed);
    }
  }
}

TEST_CASE("chunk codec rejects misuse", "[chunk]") {
  const CipherId cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const ChunkLayout small(cipher, 4096), large(cipher, 65536);
  const auto dek = key_of(2);
  const FileId fid = file_id_of(2);
  const FileKeys keys(cipher, dek.view(), fid);
  const ChunkPosition pos{fid, 0, true};
  Bytes too_big_out(small.overhead() + 4097);
  CHECK_THROWS_AS(seal_chunk(small, keys.content(), 1, pos, pattern(4097), too_big_out),
                  std::invalid_argument);
  Bytes wrong_out(small.overhead() + 9);
  CHECK_THROWS_AS(seal_chunk(small, keys.content(), 1, pos, pattern(10), wrong_out),
                  std::invalid_argument);
  Bytes out(small.overhead() + 10);
  CHECK_THROWS_AS(seal_chunk_with_nonce(small, keys.content(), 1, pos, pattern(10),
                                        pattern(small.nonce_size() + 1), out),
                  std::invalid_argument);

  // A chunk bigger than this layout's chunk size, or too short, is refused without throwing.
  const Bytes big = seal(large, keys, 1, fid, 0, true, pattern(5000));
  CHECK(open(large, keys, fid, 0, true, big).ok);
  CHECK_FALSE(open(small, keys, fid, 0, true, big).ok);
  const Bytes sealed = seal(small, keys, 1, fid, 0, true, pattern(10));
  for (std::size_t n = 0; n < small.overhead(); ++n) {
    Bytes o(0);
    bool ok = true;
    CHECK_NOTHROW(ok = open_chunk(small, keys.content(), pos, ByteView(sealed.data(), n), o));
    CHECK_FALSE(ok);
  }
  Bytes wrong(9);
  CHECK_FALSE(open_chunk(small, keys.content(), pos, sealed, wrong));
  CHECK(chunk_generation(ByteView(sealed.data(), 3)) == 0);
}

TEST_CASE("a many-chunk file assembled with ChunkLayout reads back", "[chunk][file]") {
  const CipherId cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const std::uint32_t chunk = chunk_size_for(GENERATE(0, 1));
  const std::uint64_t size =
      GENERATE_COPY(values<std::uint64_t>({0, 1, 3ULL * chunk, 5ULL * chunk + 123}));
  INFO("file size " << size << " chunk " << chunk);
  const ChunkLayout layout(cipher, chunk);
  const auto dek = key_of(3);
  const FileId fid = file_id_of(3);
  const FileKeys keys(cipher, dek.view(), fid);
  const Bytes plain = pattern(size, 77);

  // Write: header, then every slot at its offset, the last one flagged final.
  Bytes backing(layout.backing_size(size));
  const RawHeader header = encode_header(FileHeader{fid, 0, 2}, keys);
  std::copy(header.begin(), header.end(), backing.begin());
  const std::uint64_t last = layout.final_index(size);
  for (std::uint64_t i = 0; i <= last; ++i) {
    const std::uint64_t begin = i * chunk;
    const std::uint64_t len = std::min<std::uint64_t>(chunk, size - begin);
    const std::uint64_t off = layout.slot_offset(i);
    REQUIRE(off + layout.overhead() + len <= backing.size());
    seal_chunk(layout, keys.content(), 2, ChunkPosition{fid, i, i == last},
               ByteView(plain.data() + begin, len),
               std::span(backing).subspan(off, layout.overhead() + len));
    if (i == last) CHECK(off + layout.overhead() + len == backing.size());
  }

  // Read: the backing size gives the plaintext size, the header verifies, every chunk opens.
  REQUIRE(layout.plaintext_size(backing.size()) == size);
  FileHeader parsed;
  REQUIRE(parse_header(backing, parsed) == HeaderStatus::ok);
  CHECK(parsed.file_id == fid);
  CHECK(parsed.generation == 2);
  CHECK(verify_header_tag(backing, keys));
  Bytes read_back;
  for (std::uint64_t i = 0; i <= last; ++i) {
    const std::uint64_t off = layout.slot_offset(i);
    const std::uint64_t slot_len =
        std::min<std::uint64_t>(layout.slot_size(), backing.size() - off);
    const ByteView sealed(backing.data() + off, slot_len);
    CHECK(chunk_generation(sealed) == 2);
    const Opened r = open(layout, keys, fid, i, i == last, sealed);
    REQUIRE(r.ok);
    read_back.insert(read_back.end(), r.out.begin(), r.out.end());
    if (last > 0) {
      // Swapped into another position, or with the wrong final flag, the chunk fails.
      CHECK_FALSE(open(layout, keys, fid, (i + 1) % (last + 1), i == last, sealed).ok);
      CHECK_FALSE(open(layout, keys, fid, i, i != last, sealed).ok);
    }
  }
  CHECK(read_back == plain);

  SECTION("cutting the file at a chunk boundary is detected") {
    for (std::uint64_t k = 1; k <= last; ++k) {
      const std::uint64_t cut = layout.slot_offset(k);
      const auto cut_size = layout.plaintext_size(cut);
      REQUIRE(cut_size == k * chunk);
      const std::uint64_t new_last = layout.final_index(*cut_size);
      CHECK(new_last == k - 1);
      const ByteView tail(backing.data() + layout.slot_offset(new_last), layout.slot_size());
      CHECK_FALSE(open(layout, keys, fid, new_last, true, tail).ok);
    }
  }
  SECTION("cutting the file down to an empty chunk is detected") {
    if (size > 0) {
      const std::uint64_t cut = kHeaderSize + layout.overhead();
      REQUIRE(layout.plaintext_size(cut) == 0U);
      CHECK_FALSE(open(layout, keys, fid, 0, true,
                       ByteView(backing.data() + kHeaderSize, layout.overhead()))
                      .ok);
    }
    CHECK_FALSE(layout.plaintext_size(kHeaderSize).has_value());
  }
}

TEST_CASE("every single-bit change of a sealed chunk is detected", "[chunk][tamper]") {
  const CipherId cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const ChunkLayout layout(cipher, 4096);
  const auto dek = key_of(4);
  const FileId fid = file_id_of(4);
  const FileKeys keys(cipher, dek.view(), fid);

  SECTION("all 8 bits of every byte of a short chunk") {
    const Bytes sealed = seal(layout, keys, 1, fid, 9, true, pattern(37));
    std::size_t accepted = 0;
    for (std::size_t i = 0; i < sealed.size(); ++i) {
      for (int bit = 0; bit < 8; ++bit) {
        Bytes bad = sealed;
        bad[i] ^= static_cast<std::uint8_t>(1U << bit);
        if (open(layout, keys, fid, 9, true, bad).ok) ++accepted;
      }
    }
    CHECK(accepted == 0);
  }
  SECTION("one bit of every byte of a full chunk: generation, nonce, ciphertext, tag") {
    const Bytes sealed = seal(layout, keys, 1, fid, 0, false, pattern(4096));
    std::size_t accepted = 0;
    for (std::size_t i = 0; i < sealed.size(); ++i) {
      Bytes bad = sealed;
      bad[i] ^= static_cast<std::uint8_t>(1U << (i % 8));
      if (open(layout, keys, fid, 0, false, bad).ok) ++accepted;
    }
    CHECK(accepted == 0);
  }
  SECTION("the empty final chunk") {
    const Bytes sealed = seal(layout, keys, 1, fid, 0, true, {});
    for (std::size_t i = 0; i < sealed.size(); ++i) {
      Bytes bad = sealed;
      bad[i] ^= 0x40;
      CHECK_FALSE(open(layout, keys, fid, 0, true, bad).ok);
    }
  }
}

TEST_CASE("chunks are bound to their position, file, flag, generation and key", "[chunk][tamper]") {
  const CipherId cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const ChunkLayout layout(cipher, 4096);
  const auto dek1 = key_of(11);
  const auto dek7 = key_of(17);
  const FileId fid = file_id_of(5);
  const FileKeys keys1(cipher, dek1.view(), fid);
  const FileKeys keys7(cipher, dek7.view(), fid);
  const Bytes pt = pattern(500, 5);
  const std::uint64_t index = 12;
  const Bytes sealed = seal(layout, keys1, 1, fid, index, false, pt);
  REQUIRE(open(layout, keys1, fid, index, false, sealed).ok);

  SECTION("another index") {
    for (std::uint64_t other :
         {std::uint64_t{0}, index - 1, index + 1, index + (std::uint64_t{1} << 32),
          index | (std::uint64_t{1} << 63)}) {
      CHECK_FALSE(open(layout, keys1, fid, other, false, sealed).ok);
    }
  }
  SECTION("another file id, with the keys of the other file or of this one") {
    for (std::size_t i = 0; i < fid.size(); ++i) {
      FileId other = fid;
      other[i] ^= 0x01;
      CHECK_FALSE(open(layout, keys1, other, index, false, sealed).ok);
      const FileKeys other_keys(cipher, dek1.view(), other);
      CHECK_FALSE(open(layout, other_keys, other, index, false, sealed).ok);
      CHECK_FALSE(open(layout, other_keys, fid, index, false, sealed).ok);
    }
  }
  SECTION("final flag flipped, both ways") {
    CHECK_FALSE(open(layout, keys1, fid, index, true, sealed).ok);
    const Bytes final_chunk = seal(layout, keys1, 1, fid, index, true, pt);
    CHECK(open(layout, keys1, fid, index, true, final_chunk).ok);
    CHECK_FALSE(open(layout, keys1, fid, index, false, final_chunk).ok);
  }
  SECTION("generation field relabelled") {
    Bytes relabelled = sealed;
    put_le32(relabelled.data(), 7);
    CHECK(chunk_generation(relabelled) == 7);
    CHECK_FALSE(open(layout, keys7, fid, index, false, relabelled).ok);  // claimed generation
    CHECK_FALSE(open(layout, keys1, fid, index, false, relabelled).ok);  // original key
    // And the other way round: a generation-7 chunk claiming generation 1.
    const Bytes sealed7 = seal(layout, keys7, 7, fid, index, false, pt);
    REQUIRE(open(layout, keys7, fid, index, false, sealed7).ok);
    Bytes back = sealed7;
    put_le32(back.data(), 1);
    CHECK(chunk_generation(back) == 1);
    CHECK_FALSE(open(layout, keys1, fid, index, false, back).ok);
    CHECK_FALSE(open(layout, keys7, fid, index, false, back).ok);
  }
  SECTION("another data key for the same generation") {
    CHECK_FALSE(open(layout, keys7, fid, index, false, sealed).ok);
  }
  SECTION("truncated, extended, zeroed") {
    CHECK_FALSE(
        open(layout, keys1, fid, index, false, ByteView(sealed.data(), sealed.size() - 1)).ok);
    Bytes longer = sealed;
    longer.push_back(0);
    CHECK_FALSE(open(layout, keys1, fid, index, false, longer).ok);
    const Bytes zeros(sealed.size(), 0);
    CHECK_FALSE(open(layout, keys1, fid, index, false, zeros).ok);
    const Bytes zero_slot(layout.slot_size(), 0);
    CHECK_FALSE(open(layout, keys1, fid, index, false, zero_slot).ok);
  }
  SECTION("a chunk moved from another file at the same index") {
    const FileId fid2 = file_id_of(6);
    const FileKeys keys2(cipher, dek1.view(), fid2);
    const Bytes foreign = seal(layout, keys2, 1, fid2, index, false, pt);
    CHECK_FALSE(open(layout, keys1, fid, index, false, foreign).ok);
  }
}
