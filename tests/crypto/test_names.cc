// Name encryption: AES-256-SIV under the parent dir id, padding, base64url, long names.
#include <sodium.h>

#include <catch2/catch.hpp>
#include <set>
#include <stdexcept>
#include <string>

#include "crypto/kdf.h"
#include "crypto/name_codec.h"
#include "tests/crypto/test_util.h"

using namespace wardfs::crypto;
using wardfs::test::key_of;
using wardfs::test::pattern;

namespace {

constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

DirId dir_of(std::uint32_t seed) {
  DirId d{};
  const Bytes b = pattern(d.size(), seed + 500);
  std::copy(b.begin(), b.end(), d.begin());
  return d;
}

NameCipher cipher_of(std::uint32_t seed) { return NameCipher(key_of(seed, kNameKeySize)); }

bool only_base64url(std::string_view s) { return s.find_first_not_of(kAlphabet) == s.npos; }

// A name of exactly n bytes, made of printable characters (never '/').
std::string name_of(std::size_t n) {
  std::string s;
  for (std::size_t i = 0; i < n; ++i) s.push_back(static_cast<char>('a' + i % 26));
  return s;
}

std::size_t expected_encoding_length(std::size_t name_len) {
  const std::size_t padded = (name_len / 16 + 1) * 16;  // always at least one pad byte
  return ((16 + padded) * 4 + 2) / 3;
}

}  // namespace

TEST_CASE("names round trip", "[names]") {
  const NameCipher names = cipher_of(1);
  const DirId dir = dir_of(1);
  const std::string unicode[] = {"Grüße.txt",
                                 "日本語のファイル名.pdf",
                                 "🐟🐠🐡",
                                 "Ωμέγα",
                                 "e\xcc\x81" /* e + combining */,
                                 "tab\tand space ",
                                 "..hidden",
                                 ".x",
                                 "...",
                                 "a\\b",
                                 "\x7f\x01\xff"};
  for (const std::string& name : unicode) {
    INFO(name);
    const std::string enc = names.encrypt(dir, name);
    CHECK(only_base64url(enc));
    CHECK(names.decrypt(dir, enc) == name);
  }
  for (std::size_t n = 1; n <= 255; ++n) {
    const std::string name = name_of(n);
    const std::string enc = names.encrypt(dir, name);
    INFO("length " << n);
    CHECK(enc.size() == expected_encoding_length(n));
    CHECK(only_base64url(enc));
    CHECK(names.decrypt(dir, enc) == name);
  }
  CHECK(names.decrypt(dir, names.encrypt(dir, "a")) == "a");
  CHECK(names.decrypt(dir, names.encrypt(dir, std::string(255, 'z'))) == std::string(255, 'z'));
}

TEST_CASE("name encryption is deterministic per directory and key", "[names]") {
  const NameCipher names = cipher_of(2);
  const DirId dir = dir_of(2), other_dir = dir_of(3);
  const std::string enc = names.encrypt(dir, "hello.txt");
  CHECK(names.encrypt(dir, "hello.txt") == enc);
  CHECK(cipher_of(2).encrypt(dir, "hello.txt") == enc);  // a second instance with the same key

  const std::string in_other = names.encrypt(other_dir, "hello.txt");
  CHECK(in_other != enc);
  CHECK_FALSE(names.decrypt(other_dir, enc).has_value());
  CHECK_FALSE(names.decrypt(dir, in_other).has_value());
  CHECK(names.decrypt(other_dir, in_other) == "hello.txt");

  for (std::size_t i = 0; i < dir.size(); ++i) {
    DirId d = dir;
    d[i] ^= 1;
    CHECK_FALSE(names.decrypt(d, enc).has_value());
  }
  CHECK_FALSE(cipher_of(3).decrypt(dir, enc).has_value());
  CHECK(cipher_of(3).encrypt(dir, "hello.txt") != enc);

  // Distinct names give distinct encodings; lengths leak only to the 16-byte block.
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) seen.insert(names.encrypt(dir, "file" + std::to_string(i)));
  CHECK(seen.size() == 200);
  CHECK(names.encrypt(dir, "a").size() == names.encrypt(dir, name_of(15)).size());
  CHECK(names.encrypt(dir, name_of(16)).size() > names.encrypt(dir, name_of(15)).size());
}

TEST_CASE("a changed encoding does not decrypt", "[names][tamper]") {
  const NameCipher names = cipher_of(4);
  const DirId dir = dir_of(4);
  for (const std::string& name : {std::string("a"), std::string("hello.txt"), name_of(100)}) {
    const std::string enc = names.encrypt(dir, name);
    std::size_t accepted = 0;
    for (std::size_t i = 0; i < enc.size(); ++i) {
      for (char c : {'A', 'B', 'g', 'z', '0', '9', '-', '_'}) {
        if (c == enc[i]) continue;
        std::string bad = enc;
        bad[i] = c;
        std::optional<std::string> out;
        REQUIRE_NOTHROW(out = names.decrypt(dir, bad));
        if (out.has_value()) ++accepted;
      }
    }
    CHECK(accepted == 0);
    for (std::size_t n = 0; n < enc.size(); ++n) {
      CHECK_FALSE(names.decrypt(dir, enc.substr(0, n)).has_value());
    }
    CHECK_FALSE(names.decrypt(dir, enc + "A").has_value());
    CHECK_FALSE(names.decrypt(dir, enc + "AAAA").has_value());
    CHECK_FALSE(names.decrypt(dir, enc + "=").has_value());
  }
}

// Replacing a '_' of a stored name with a byte >= 0x80 must not give an alias that
// still decrypts (libsodium alone would decode it as '_').
TEST_CASE("a stored name with a foreign byte in place of '_' does not decrypt", "[names][tamper]") {
  const NameCipher names = cipher_of(11);
  const DirId dir = dir_of(11);
  std::string enc;
  for (int i = 0; enc.find('_') == std::string::npos; ++i) {
    enc = names.encrypt(dir, "file" + std::to_string(i));
  }
  std::string alias = enc;
  alias[alias.find('_')] = '\x9a';
  CHECK_FALSE(names.decrypt(dir, alias).has_value());
}

TEST_CASE("garbage encodings are refused without throwing", "[names][tamper]") {
  const NameCipher names = cipher_of(5);
  const DirId dir = dir_of(5);
  for (const std::string& bad :
       {std::string(), std::string("A"), std::string("AAAA"), std::string(43, 'A'),
        std::string(43, '_'), std::string("L.") + std::string(43, 'A'), std::string("..."),
        std::string("a/b"), std::string(300, 'Q'), std::string("hello.txt"),
        std::string(22, 'A') + "==", std::string("\0\0\0\0", 4)}) {
    std::optional<std::string> out;
    REQUIRE_NOTHROW(out = names.decrypt(dir, bad));
    CHECK_FALSE(out.has_value());
  }
}

TEST_CASE("authentic encodings of forbidden names are refused", "[names]") {
  // encrypt() seals whatever it is given; decrypt() must still never hand out a name
  // that could escape the directory or confuse a path walk.
  const NameCipher names = cipher_of(6);
  const DirId dir = dir_of(6);
  for (const std::string& bad :
       {std::string(), std::string("."), std::string(".."), std::string("a/b"), std::string("/"),
        std::string("../etc"), std::string("nul\0inside", 10), std::string(1, '\0')}) {
    INFO(bad);
    CHECK_FALSE(names.decrypt(dir, names.encrypt(dir, bad)).has_value());
  }
}

TEST_CASE("malformed padding under a valid SIV tag is refused", "[names]") {
  const NameCipher names = cipher_of(7);
  const DirId dir = dir_of(7);
  auto wrap = [&](Bytes padded) { return base64url_encode(names.seal_deterministic(dir, padded)); };
  Bytes ok(16, 15);
  ok[0] = 'x';
  CHECK(names.decrypt(dir, wrap(ok)) == "x");
  Bytes zero_pad(16, 0);
  zero_pad[0] = 'x';
  CHECK_FALSE(names.decrypt(dir, wrap(zero_pad)).has_value());
  Bytes big_pad(16, 17);
  CHECK_FALSE(names.decrypt(dir, wrap(big_pad)).has_value());
  Bytes mixed(16, 4);
  mixed[0] = 'x';
  mixed[13] = 3;  // pad says 4, but one of the last four bytes is 3
  CHECK_FALSE(names.decrypt(dir, wrap(mixed)).has_value());
  Bytes all_pad(16, 16);  // the empty name
  CHECK_FALSE(names.decrypt(dir, wrap(all_pad)).has_value());
  Bytes not_block(17, 1);  // authentic but not a multiple of 16
  CHECK_FALSE(names.decrypt(dir, wrap(not_block)).has_value());
  Bytes too_short(15, 1);
  CHECK_FALSE(names.decrypt(dir, wrap(too_short)).has_value());
}

TEST_CASE("raw deterministic sealing", "[names]") {
  const NameCipher names = cipher_of(8);
  const Bytes ad = pattern(20, 1);
  const Bytes pt = pattern(33, 2);
  const Bytes sealed = names.seal_deterministic(ad, pt);
  CHECK(sealed.size() == 16 + pt.size());
  CHECK(names.seal_deterministic(ad, pt) == sealed);
  CHECK(names.open_deterministic(ad, sealed) == pt);
  Bytes other_ad = ad;
  other_ad[3] ^= 4;
  CHECK_FALSE(names.open_deterministic(other_ad, sealed).has_value());
  for (std::size_t i = 0; i < sealed.size(); ++i) {
    Bytes bad = sealed;
    bad[i] ^= 0x10;
    CHECK_FALSE(names.open_deterministic(ad, bad).has_value());
  }
  for (std::size_t n = 0; n <= 16; ++n) {
    std::optional<Bytes> out;
    REQUIRE_NOTHROW(out = names.open_deterministic(ad, ByteView(sealed.data(), n)));
    CHECK_FALSE(out.has_value());
  }
}

// OpenSSL's AES-SIV never finalises without a plaintext update, so an empty plaintext
// (or empty AD) cannot be sealed: seal_deterministic throws. Callers must never pass one
// (volume/names.cc seals xattr names after "user.", which may be empty). Pinned here so
// a change in either direction is noticed.
TEST_CASE("seal_deterministic refuses empty inputs by throwing", "[names]") {
  const NameCipher names = cipher_of(12);
  CHECK_THROWS_AS(names.seal_deterministic(as_bytes("ad"), {}), std::runtime_error);
  CHECK_THROWS_AS(names.seal_deterministic({}, as_bytes("x")), std::runtime_error);
  CHECK_NOTHROW(names.seal_deterministic(as_bytes("ad"), as_bytes("x")));
}

TEST_CASE("NameCipher wants a 64-byte key", "[names]") {
  CHECK_THROWS_AS(NameCipher(key_of(1, 32)), std::invalid_argument);
  CHECK_THROWS_AS(NameCipher(key_of(1, 65)), std::invalid_argument);
  CHECK_THROWS_AS(NameCipher(wardfs::crypto::SecretBytes()), std::invalid_argument);
  CHECK_NOTHROW(NameCipher(key_of(1, 64)));
}

TEST_CASE("long names", "[names][long]") {
  const NameCipher names = cipher_of(9);
  const DirId dir = dir_of(9);
  // 159 bytes pad to 160, sealed 176, encoded 235 chars; 160 bytes pad to 176 -> 256 chars.
  const std::string short_enough = names.encrypt(dir, name_of(159));
  const std::string too_long = names.encrypt(dir, name_of(160));
  CHECK(short_enough.size() == 235);
  CHECK(too_long.size() == 256);
  CHECK_FALSE(needs_long_name(short_enough));
  CHECK(needs_long_name(too_long));
  CHECK_FALSE(needs_long_name(std::string(255, 'A')));
  CHECK(needs_long_name(std::string(256, 'A')));

  for (std::size_t n : {std::size_t{160}, std::size_t{200}, std::size_t{255}}) {
    const std::string enc = names.encrypt(dir, name_of(n));
    REQUIRE(needs_long_name(enc));
    const std::string hashed = long_name_for(enc);
    CHECK(hashed.size() == 45);
    CHECK(hashed.substr(0, 2) == "L.");
    CHECK(only_base64url(hashed.substr(2)));
    CHECK(hashed.size() <= kMaxBackingNameLength);
    CHECK(long_name_for(enc) == hashed);
    // "L." + base64url(SHA-256(encoding)), computed here with libsodium directly.
    std::uint8_t digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(digest, reinterpret_cast<const unsigned char*>(enc.data()), enc.size());
    CHECK(hashed == "L." + base64url_encode(ByteView(digest, sizeof digest)));

    CHECK(is_long_name(hashed));
    CHECK_FALSE(is_long_name_sidecar(hashed));
    const std::string sidecar = hashed + std::string(kLongNameSidecarSuffix);
    CHECK(sidecar == hashed + ".n");
    CHECK(is_long_name_sidecar(sidecar));
    CHECK_FALSE(is_long_name(sidecar));
    CHECK(names.decrypt(dir, enc) == name_of(n));
    // The hashed name is not itself a decryptable encoding.
    CHECK_FALSE(names.decrypt(dir, hashed).has_value());
  }
  CHECK(long_name_for(names.encrypt(dir, name_of(200))) !=
        long_name_for(names.encrypt(dir, name_of(201))));
  CHECK(long_name_for(names.encrypt(dir, name_of(200))) !=
        long_name_for(names.encrypt(dir_of(10), name_of(200))));

  // Ordinary encodings never look like long names ('.' is not in base64url).
  for (std::size_t n = 1; n < 160; n += 7) {
    const std::string enc = names.encrypt(dir, name_of(n));
    CHECK_FALSE(is_long_name(enc));
    CHECK_FALSE(is_long_name_sidecar(enc));
  }
  CHECK_FALSE(is_long_name("L." + std::string(42, 'A')));
  CHECK_FALSE(is_long_name("L." + std::string(44, 'A')));
  CHECK_FALSE(is_long_name("X." + std::string(43, 'A')));
  CHECK_FALSE(is_long_name_sidecar("L." + std::string(43, 'A') + ".x"));
  CHECK_FALSE(is_long_name_sidecar("L." + std::string(42, 'A') + ".n"));
  CHECK_FALSE(is_long_name_sidecar("M." + std::string(43, 'A') + ".n"));
}

TEST_CASE("the name key comes from the generation DEK and volume id", "[names]") {
  // VolumeKeys derives it as HKDF-SHA256(dek, salt = volume id, "wardfs v1 names", 64).
  const auto dek = key_of(30);
  const Bytes vol1 = pattern(16, 31), vol2 = pattern(16, 32);
  const NameCipher a(hkdf_sha256(dek.view(), vol1, label::kNames, kNameKeySize));
  const NameCipher b(hkdf_sha256(dek.view(), vol2, label::kNames, kNameKeySize));
  const DirId dir = dir_of(30);
  CHECK(a.encrypt(dir, "x") != b.encrypt(dir, "x"));
  CHECK_FALSE(b.decrypt(dir, a.encrypt(dir, "x")).has_value());
}
