// SecretBytes ownership rules and the small sealed blobs (symlink targets, xattr values).
#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <type_traits>
#include <utility>

#include "crypto/blob.h"
#include "crypto/file_format.h"
#include "crypto/secret.h"
#include "tests/crypto/test_util.h"

using namespace wardfs::crypto;
using wardfs::test::pattern;
using wardfs::test::to_bytes;

TEST_CASE("SecretBytes: construction zeroes, default is empty", "[secret]") {
  SecretBytes none;
  CHECK(none.empty());
  CHECK(none.size() == 0);
  CHECK(none.data() == nullptr);
  CHECK(none.view().empty());

  SecretBytes zero(0);
  CHECK(zero.empty());

  SecretBytes s(48);
  CHECK(s.size() == 48);
  CHECK_FALSE(s.empty());
  REQUIRE(s.data() != nullptr);
  CHECK(wardfs::test::all_zero(s.view()));
  CHECK(s.span().size() == 48);
  s.span()[47] = 9;
  CHECK(s.view()[47] == 9);
}

TEST_CASE("SecretBytes: moves transfer the one buffer and empty the source", "[secret]") {
  SecretBytes a = SecretBytes::copy_of(pattern(32, 5));
  const std::uint8_t* buffer = a.data();

  SecretBytes b(std::move(a));
  CHECK(b.data() == buffer);
  CHECK(b.size() == 32);
  CHECK(to_bytes(b.view()) == pattern(32, 5));
  CHECK(a.empty());  // NOLINT(bugprone-use-after-move): the moved-from state is specified
  CHECK(a.data() == nullptr);

  SecretBytes c = SecretBytes::copy_of(pattern(8, 6));
  c = std::move(b);
  CHECK(c.data() == buffer);
  CHECK(c.size() == 32);
  CHECK(to_bytes(c.view()) == pattern(32, 5));
  CHECK(b.empty());  // NOLINT(bugprone-use-after-move)

  // Self-move leaves the value intact.
  SecretBytes& alias = c;
  c = std::move(alias);
  CHECK(c.size() == 32);
  CHECK(to_bytes(c.view()) == pattern(32, 5));

  // Moving into an empty one and back.
  SecretBytes d;
  d = std::move(c);
  CHECK(d.size() == 32);
  CHECK(c.empty());  // NOLINT(bugprone-use-after-move)
  static_assert(!std::is_copy_constructible_v<SecretBytes>);
  static_assert(!std::is_copy_assignable_v<SecretBytes>);
  static_assert(std::is_nothrow_move_constructible_v<SecretBytes>);
}

TEST_CASE("SecretBytes: random and copy_of", "[secret]") {
  const SecretBytes r1 = SecretBytes::random(32);
  const SecretBytes r2 = SecretBytes::random(32);
  CHECK(r1.size() == 32);
  CHECK_FALSE(wardfs::test::all_zero(r1.view()));
  CHECK(to_bytes(r1.view()) != to_bytes(r2.view()));
  // Not SecretBytes::random(0): crypto/secret.cc passes its null buffer to randombytes_buf,
  // which libsodium declares nonnull (UBSan aborts WARDFS_SANITIZE builds). Known bug.

  const Bytes src = pattern(17, 3);
  const SecretBytes c = SecretBytes::copy_of(src);
  CHECK(c.size() == 17);
  CHECK(c.data() != src.data());
  CHECK(to_bytes(c.view()) == src);
  CHECK(SecretBytes::copy_of({}).empty());
}

TEST_CASE("blobs round trip and bind their associated data and generation", "[blob]") {
  const CipherId cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const auto aead = make_aead(cipher, pattern(32, 40));
  const Bytes ad = pattern(16, 41);
  const std::size_t size = GENERATE(0, 1, 300, 10000);
  const Bytes pt = pattern(size, 42);
  const std::uint32_t generation = 3;

  const Bytes blob = seal_blob(*aead, generation, ad, pt);
  REQUIRE(blob.size() == kGenerationSize + aead->nonce_size() + size + kAeadTagSize);
  CHECK(get_le32(blob.data()) == generation);
  CHECK(blob_generation(blob, *aead) == generation);
  const auto opened = open_blob(*aead, ad, blob);
  REQUIRE(opened.has_value());
  CHECK(*opened == pt);
  CHECK(seal_blob(*aead, generation, ad, pt) != blob);  // fresh nonce each time

  SECTION("wrong associated data fails") {
    Bytes bad_ad = ad;
    bad_ad[0] ^= 1;
    CHECK_FALSE(open_blob(*aead, bad_ad, blob).has_value());
    CHECK_FALSE(open_blob(*aead, {}, blob).has_value());
  }
  SECTION("a relabelled generation fails") {
    for (std::uint32_t g : {0U, 1U, 2U, 4U, 0xffffffffU}) {
      Bytes relabelled = blob;
      put_le32(relabelled.data(), g);
      CHECK(blob_generation(relabelled, *aead) == g);
      CHECK_FALSE(open_blob(*aead, ad, relabelled).has_value());
    }
  }
  SECTION("any flipped bit fails") {
    for (std::size_t i = 0; i < std::min<std::size_t>(blob.size(), 400); ++i) {
      Bytes bad = blob;
      bad[i] ^= static_cast<std::uint8_t>(0x80U >> (i % 8));
      CHECK_FALSE(open_blob(*aead, ad, bad).has_value());
    }
  }
  SECTION("another key or cipher fails") {
    CHECK_FALSE(open_blob(*make_aead(cipher, pattern(32, 43)), ad, blob).has_value());
    const CipherId other =
        cipher == CipherId::aes256gcm ? CipherId::xchacha20poly1305 : CipherId::aes256gcm;
    CHECK_NOTHROW(open_blob(*make_aead(other, pattern(32, 40)), ad, blob));
    CHECK_FALSE(open_blob(*make_aead(other, pattern(32, 40)), ad, blob).has_value());
  }
  SECTION("truncated blobs fail without throwing") {
    for (std::size_t n = 0; n < blob.size(); n += (n < 64 ? 1 : 97)) {
      const ByteView cut(blob.data(), n);
      CHECK_NOTHROW(open_blob(*aead, ad, cut));
      CHECK_FALSE(open_blob(*aead, ad, cut).has_value());
    }
    const std::size_t min = kGenerationSize + aead->nonce_size() + kAeadTagSize;
    CHECK_FALSE(blob_generation(ByteView(blob.data(), min - 1), *aead).has_value());
    CHECK(blob_generation(ByteView(blob.data(), min), *aead).has_value());
  }
}
