// The AEAD layer, the byte helpers and the KDFs, checked against published answers
// where they exist (GCM spec, XChaCha draft, RFC 5869, RFC 4231, FIPS 180).
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <set>
#include <stdexcept>
#include <thread>

#include "crypto/aead.h"
#include "crypto/bytes.h"
#include "crypto/kdf.h"
#include "tests/crypto/test_util.h"

using namespace wardfs::crypto;
using wardfs::test::from_hex;
using wardfs::test::pattern;
using wardfs::test::to_bytes;

namespace {

Bytes seal(const Aead& aead, ByteView pt, ByteView nonce, ByteView ad) {
  Bytes out(pt.size() + kAeadTagSize);
  aead.seal(out, pt, nonce, ad);
  return out;
}

}  // namespace

TEST_CASE("cipher names round trip and reject unknown names", "[aead]") {
  CHECK(cipher_name(CipherId::aes256gcm) == "aes-256-gcm");
  CHECK(cipher_name(CipherId::xchacha20poly1305) == "xchacha20-poly1305");
  CHECK(cipher_from_name("aes-256-gcm") == CipherId::aes256gcm);
  CHECK(cipher_from_name("xchacha20-poly1305") == CipherId::xchacha20poly1305);
  CHECK_FALSE(cipher_from_name("AES-256-GCM").has_value());
  CHECK_FALSE(cipher_from_name("aes-128-gcm").has_value());
  CHECK_FALSE(cipher_from_name("").has_value());
  const CipherId d = default_cipher();
  CHECK((d == CipherId::aes256gcm || d == CipherId::xchacha20poly1305));
  CHECK(nonce_size_of(CipherId::aes256gcm) == 12);
  CHECK(nonce_size_of(CipherId::xchacha20poly1305) == 24);
}

TEST_CASE("AES-256-GCM matches the GCM specification's test cases 13 and 14", "[aead][kat]") {
  const Bytes key(32, 0);
  const Bytes nonce(12, 0);
  const auto aead = make_aead(CipherId::aes256gcm, key);
  CHECK(aead->id() == CipherId::aes256gcm);
  CHECK(aead->nonce_size() == 12);
  // Test case 13: empty plaintext, only a tag.
  CHECK(seal(*aead, {}, nonce, {}) == from_hex("530f8afbc74536b9a963b4f1c4cb738b"));
  // Test case 14: one zero block.
  const Bytes pt(16, 0);
  const Bytes sealed = seal(*aead, pt, nonce, {});
  CHECK(sealed == from_hex("cea7403d4d606b6e074ec5d3baf39d18d0d1c8a799996bf0265b98b5d48ab919"));
  Bytes out(16, 0xff);
  CHECK(aead->open(out, sealed, nonce, {}));
  CHECK(out == pt);
}

TEST_CASE("XChaCha20-Poly1305 matches draft-irtf-cfrg-xchacha A.3.1", "[aead][kat]") {
  const Bytes key = from_hex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
  const Bytes nonce = from_hex("404142434445464748494a4b4c4d4e4f5051525354555657");
  const Bytes ad = from_hex("50515253c0c1c2c3c4c5c6c7");
  const std::string_view text =
      "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the "
      "future, sunscreen would be it.";
  const auto aead = make_aead(CipherId::xchacha20poly1305, key);
  CHECK(aead->id() == CipherId::xchacha20poly1305);
  CHECK(aead->nonce_size() == 24);
  const Bytes expected = from_hex(
      "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb731c7f1b0b4aa6440bf3a82f4eda"
      "7e39ae64c6708c54c216cb96b72e1213b4522f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383"
      "565d3fff921f9664c97637da9768812f615c68b13b52e"
      "c0875924c1c7987947deafd8780acf49");
  const Bytes sealed = seal(*aead, as_bytes(text), nonce, ad);
  CHECK(sealed == expected);
  Bytes out(text.size());
  REQUIRE(aead->open(out, sealed, nonce, ad));
  CHECK(std::string(out.begin(), out.end()) == text);
}

TEST_CASE("AEAD round trips and rejects every single-bit change", "[aead]") {
  const CipherId cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const Bytes key = pattern(32, 7);
  const auto aead = make_aead(cipher, key);
  const Bytes nonce = pattern(aead->nonce_size(), 8);
  const Bytes ad = pattern(29, 9);
  const std::size_t size = GENERATE(0, 1, 15, 16, 17, 1000);
  const Bytes pt = pattern(size, 10);
  const Bytes sealed = seal(*aead, pt, nonce, ad);
  REQUIRE(sealed.size() == size + kAeadTagSize);
  Bytes out(size);
  REQUIRE(aead->open(out, sealed, nonce, ad));
  CHECK(out == pt);

  for (std::size_t i = 0; i < sealed.size(); ++i) {
    Bytes bad = sealed;
    bad[i] ^= static_cast<std::uint8_t>(1U << (i % 8));
    Bytes o(size, 0xaa);
    CHECK_FALSE(aead->open(o, bad, nonce, ad));
    CHECK(wardfs::test::all_zero(o));
  }
  for (std::size_t i = 0; i < nonce.size(); ++i) {
    Bytes bad = nonce;
    bad[i] ^= 0x80;
    CHECK_FALSE(aead->open(out, sealed, bad, ad));
  }
  for (std::size_t i = 0; i < ad.size(); ++i) {
    Bytes bad = ad;
    bad[i] ^= 0x01;
    CHECK_FALSE(aead->open(out, sealed, nonce, bad));
  }
  CHECK_FALSE(aead->open(out, sealed, nonce, {}));
  const auto other = make_aead(cipher, pattern(32, 11));
  CHECK_FALSE(other->open(out, sealed, nonce, ad));
  // The same key under the other cipher does not open it either.
  const CipherId swapped =
      cipher == CipherId::aes256gcm ? CipherId::xchacha20poly1305 : CipherId::aes256gcm;
  const auto cross = make_aead(swapped, key);
  const Bytes cross_nonce = pattern(cross->nonce_size(), 8);
  CHECK_FALSE(cross->open(out, sealed, cross_nonce, ad));
  // A good open after failures on the same thread still works (GCM caches contexts).
  REQUIRE(aead->open(out, sealed, nonce, ad));
  CHECK(out == pt);
}

TEST_CASE("AEAD rejects bad sizes with invalid_argument", "[aead]") {
  const CipherId cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  CHECK_THROWS_AS(make_aead(cipher, Bytes(31)), std::invalid_argument);
  CHECK_THROWS_AS(make_aead(cipher, Bytes(33)), std::invalid_argument);
  const auto aead = make_aead(cipher, pattern(32));
  const Bytes nonce(aead->nonce_size());
  const Bytes pt(10);
  Bytes wrong_out(10 + kAeadTagSize - 1);
  CHECK_THROWS_AS(aead->seal(wrong_out, pt, nonce, {}), std::invalid_argument);
  Bytes out(10 + kAeadTagSize);
  CHECK_THROWS_AS(aead->seal(out, pt, Bytes(aead->nonce_size() - 1), {}), std::invalid_argument);
  CHECK_THROWS_AS(aead->seal(out, pt, Bytes(aead->nonce_size() + 1), {}), std::invalid_argument);
  Bytes opened(10);
  CHECK_THROWS_AS((void)aead->open(opened, Bytes(kAeadTagSize - 1), nonce, {}),
                  std::invalid_argument);
  CHECK_THROWS_AS((void)aead->open(opened, Bytes(10 + kAeadTagSize + 1), nonce, {}),
                  std::invalid_argument);
}

TEST_CASE("AES-GCM keeps instances apart when they alternate on one thread", "[aead]") {
  // The GCM implementation caches one key schedule per thread; interleave keys,
  // destroy and recreate instances, and compare against fresh instances.
  const Bytes nonce = pattern(12, 3);
  const Bytes pt = pattern(100, 4);
  std::vector<Bytes> expected;
  for (std::uint32_t k = 0; k < 4; ++k) {
    expected.push_back(seal(*make_aead(CipherId::aes256gcm, pattern(32, 100 + k)), pt, nonce, {}));
  }
  CHECK(expected[0] != expected[1]);
  std::vector<std::unique_ptr<Aead>> live;
  for (std::uint32_t k = 0; k < 4; ++k)
    live.push_back(make_aead(CipherId::aes256gcm, pattern(32, 100 + k)));
  for (int round = 0; round < 3; ++round) {
    for (std::uint32_t k = 0; k < 4; ++k) {
      CHECK(seal(*live[k], pt, nonce, {}) == expected[k]);
      Bytes out(pt.size());
      CHECK(live[k]->open(out, expected[k], nonce, {}));
      CHECK_FALSE(live[(k + 1) % 4]->open(out, expected[k], nonce, {}));
    }
    live[round] = make_aead(CipherId::aes256gcm, pattern(32, 100 + round));
  }
}

TEST_CASE("AEAD instances are usable from several threads at once", "[aead]") {
  const CipherId cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  std::vector<std::unique_ptr<Aead>> aeads;
  for (std::uint32_t k = 0; k < 3; ++k) aeads.push_back(make_aead(cipher, pattern(32, 200 + k)));
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 300; ++i) {
        const Aead& a = *aeads[static_cast<std::size_t>(i + t) % aeads.size()];
        const Aead& b = *aeads[static_cast<std::size_t>(i + t + 1) % aeads.size()];
        const Bytes nonce = pattern(a.nonce_size(), static_cast<std::uint32_t>(i * 7 + t));
        const Bytes pt = pattern(static_cast<std::size_t>(i % 64), static_cast<std::uint32_t>(i));
        Bytes sealed(pt.size() + kAeadTagSize);
        a.seal(sealed, pt, nonce, {});
        Bytes out(pt.size());
        if (!a.open(out, sealed, nonce, {}) || out != pt) ++failures;
        if (b.open(out, sealed, nonce, {})) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == 0);
}

TEST_CASE("little-endian helpers", "[bytes]") {
  std::uint8_t buf[8] = {};
  put_le16(buf, 0x1234);
  CHECK(buf[0] == 0x34);
  CHECK(buf[1] == 0x12);
  CHECK(get_le16(buf) == 0x1234);
  put_le32(buf, 0xdeadbeef);
  CHECK(Bytes(buf, buf + 4) == from_hex("efbeadde"));
  CHECK(get_le32(buf) == 0xdeadbeefU);
  put_le64(buf, 0x0102030405060708ULL);
  CHECK(Bytes(buf, buf + 8) == from_hex("0807060504030201"));
  CHECK(get_le64(buf) == 0x0102030405060708ULL);
  put_le64(buf, ~0ULL);
  CHECK(get_le64(buf) == ~0ULL);
  CHECK(get_le16(buf) == 0xffff);
}

TEST_CASE("base64url is RFC 4648 section 5 without padding, and strict", "[bytes]") {
  CHECK(base64url_encode(as_bytes("")) == "");
  CHECK(base64url_encode(as_bytes("f")) == "Zg");
  CHECK(base64url_encode(as_bytes("fo")) == "Zm8");
  CHECK(base64url_encode(as_bytes("foo")) == "Zm9v");
  CHECK(base64url_encode(as_bytes("foob")) == "Zm9vYg");
  CHECK(base64url_encode(from_hex("fbff")) == "-_8");
  for (std::size_t n = 0; n <= 70; ++n) {
    const Bytes b = pattern(n, static_cast<std::uint32_t>(n));
    const std::string e = base64url_encode(b);
    CHECK(e.size() == (n * 4 + 2) / 3);
    CHECK(e.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
          std::string::npos);
    const auto d = base64url_decode(e);
    REQUIRE(d.has_value());
    CHECK(*d == b);
  }
  CHECK(base64url_decode("")->empty());
  CHECK_FALSE(base64url_decode("Zg==").has_value());  // padding
  CHECK_FALSE(base64url_decode("+/8").has_value());   // standard alphabet
  CHECK_FALSE(base64url_decode("Zh").has_value());    // non-zero trailing bits
  CHECK_FALSE(base64url_decode("Z").has_value());     // impossible length
  CHECK_FALSE(base64url_decode("Zm9v ").has_value());
  CHECK_FALSE(base64url_decode(std::string_view("Zm\0v", 4)).has_value());
}

TEST_CASE("base64url_decode accepts exactly the URL-safe alphabet among ASCII", "[bytes]") {
  const std::string_view alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  for (int c = 0; c < 0x80; ++c) {
    std::string text = "AAA";
    text.push_back(static_cast<char>(c));
    INFO("byte " << c);
    CHECK(base64url_decode(text).has_value() ==
          (alphabet.find(static_cast<char>(c)) != alphabet.npos));
  }
}

// libsodium 1.0.18 decodes every byte >= 0x80 like '_'; base64url_decode must refuse
// them, or a stored name would have 128 spellings per '_' (found by fuzz_names).
TEST_CASE("base64url_decode refuses bytes outside the alphabet", "[bytes]") {
  std::size_t accepted = 0;
  for (int c = 0x80; c < 0x100; ++c) {
    std::string text = "AAA";
    text.push_back(static_cast<char>(c));
    if (base64url_decode(text).has_value()) ++accepted;
  }
  CHECK(accepted == 0);
}

TEST_CASE("hex_encode and is_all_zero", "[bytes]") {
  CHECK(hex_encode(from_hex("00ff10ab")) == "00ff10ab");
  CHECK(hex_encode({}).empty());
  CHECK(is_all_zero(Bytes(100, 0)));
  Bytes b(100, 0);
  b[99] = 1;
  CHECK_FALSE(is_all_zero(b));
  for (const std::size_t at : {0, 1, 50, 98}) {
    Bytes c(100, 0);
    c[at] = 0x80;
    CHECK_FALSE(is_all_zero(c));
  }
  CHECK(is_all_zero({}));
  CHECK(is_all_zero(Bytes(1, 0)));
  CHECK_FALSE(is_all_zero(Bytes(1, 7)));
  CHECK(is_all_zero(Bytes(65536 + 32, 0)));
}

TEST_CASE("random_fill fills, and differs between calls", "[bytes]") {
  Bytes a(32), b(32);
  random_fill(a);
  random_fill(b);
  CHECK_FALSE(is_all_zero(a));
  CHECK(a != b);
  const FileId f1 = random_file_id(), f2 = random_file_id();
  CHECK(f1 != f2);
}

TEST_CASE("random_nonce never repeats, across refills and across fork", "[bytes]") {
  std::set<Bytes> seen;
  for (int i = 0; i < 2000; ++i) {  // 2000 x 24 bytes spans several 4 KiB pool refills
    Bytes n(i % 2 == 0 ? 12 : 24);
    random_nonce(n);
    CHECK_FALSE(is_all_zero(n));
    seen.insert(n);
  }
  CHECK(seen.size() == 2000);
  Bytes big(5000);  // larger than the pool
  random_nonce(big);
  CHECK_FALSE(is_all_zero(big));

  // Parent and child must not draw the same bytes from a pool they both inherited.
  Bytes warm(12);
  random_nonce(warm);
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    std::uint8_t n[24];
    random_nonce(std::span<std::uint8_t>(n, sizeof n));
    const bool ok = ::write(fds[1], n, sizeof n) == static_cast<ssize_t>(sizeof n);
    ::_exit(ok ? 0 : 1);
  }
  ::close(fds[1]);
  Bytes parent(24), child(24);
  random_nonce(parent);
  std::size_t got = 0;
  while (got < child.size()) {
    const ssize_t n = ::read(fds[0], child.data() + got, child.size() - got);
    if (n <= 0) break;
    got += static_cast<std::size_t>(n);
  }
  ::close(fds[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(got == child.size());
  CHECK(WIFEXITED(status));
  CHECK(parent != child);
}

TEST_CASE("HKDF-SHA256 matches RFC 5869", "[kdf][kat]") {
  // Test case 1
  const Bytes ikm(22, 0x0b);
  const Bytes salt = from_hex("000102030405060708090a0b0c");
  const Bytes info = from_hex("f0f1f2f3f4f5f6f7f8f9");
  const auto okm = hkdf_sha256(
      ikm, salt, std::string_view(reinterpret_cast<const char*>(info.data()), info.size()), 42);
  CHECK(to_bytes(okm.view()) ==
        from_hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b8871"
                 "85865"));
  // Empty info is allowed (value from Python's cryptography package).
  const auto no_info = hkdf_sha256(ikm, from_hex("0102"), "", 42);
  CHECK(
      to_bytes(no_info.view()) ==
      from_hex("9c46d441c0b83785a21186b0c535ec0fe21e7b28fabffbd0b1cf9cdfd3118b3b6866d1fb7c8f49a6d0"
               "78"));
  // Labels separate keys.
  const Bytes dek = pattern(32);
  const Bytes fid = pattern(16, 2);
  CHECK(to_bytes(hkdf_sha256(dek, fid, label::kFileContent, 32).view()) !=
        to_bytes(hkdf_sha256(dek, fid, label::kFileHeader, 32).view()));
  CHECK(to_bytes(hkdf_sha256(dek, fid, label::kFileContent, 32).view()) !=
        to_bytes(hkdf_sha256(dek, pattern(16, 3), label::kFileContent, 32).view()));
}

// RFC 5869: an empty salt acts as HashLen zero bytes.
TEST_CASE("HKDF-SHA256 with an empty salt matches RFC 5869 test case 3", "[kdf][kat]") {
  const Bytes ikm(22, 0x0b);
  const auto okm = hkdf_sha256(ikm, {}, "", 42);
  CHECK(to_bytes(okm.view()) ==
        from_hex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61"
                 "a96c8"));
}

TEST_CASE("HMAC-SHA256 and SHA-256 match RFC 4231 and FIPS 180-2", "[kdf][kat]") {
  const Mac32 mac = hmac_sha256(Bytes(20, 0x0b), as_bytes("Hi There"));
  CHECK(Bytes(mac.begin(), mac.end()) ==
        from_hex("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"));
  const Mac32 mac2 = hmac_sha256(as_bytes("Jefe"), as_bytes("what do ya want for nothing?"));
  CHECK(Bytes(mac2.begin(), mac2.end()) ==
        from_hex("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
  const Mac32 h = sha256(as_bytes("abc"));
  CHECK(Bytes(h.begin(), h.end()) ==
        from_hex("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
}

TEST_CASE("the derivation labels are the documented strings", "[kdf]") {
  CHECK(label::kFileContent == "wardfs v1 file content");
  CHECK(label::kFileHeader == "wardfs v1 file header");
  CHECK(label::kNames == "wardfs v1 names");
  CHECK(label::kSymlinks == "wardfs v1 symlinks");
  CHECK(label::kXattrs == "wardfs v1 xattrs");
  CHECK(label::kAudit == "wardfs v1 audit");
}
