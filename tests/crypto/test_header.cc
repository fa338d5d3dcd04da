// The 64-byte file header: layout, round trip, and that any change is caught.
#include <catch2/catch.hpp>
#include <cstring>

#include "crypto/file_format.h"
#include "crypto/kdf.h"
#include "tests/crypto/test_util.h"

using namespace wardfs::crypto;
using wardfs::test::file_id_of;
using wardfs::test::key_of;
using wardfs::test::to_bytes;

namespace {

// Accepted means: the fields parse and the tag verifies under these keys.
bool accepted(ByteView raw, const FileKeys& keys) {
  FileHeader h;
  HeaderStatus status = HeaderStatus::ok;
  bool tag_ok = false;
  REQUIRE_NOTHROW(status = parse_header(raw, h));
  REQUIRE_NOTHROW(tag_ok = verify_header_tag(raw, keys));
  return status == HeaderStatus::ok && tag_ok;
}

}  // namespace

TEST_CASE("header encodes the documented layout", "[header]") {
  const CipherId cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const auto dek = key_of(21);
  const FileId fid = file_id_of(21);
  const FileKeys keys(cipher, dek.view(), fid);
  const std::uint16_t flags = GENERATE(std::uint16_t{0}, std::uint16_t{kHeaderHasHoles});
  const RawHeader raw = encode_header(FileHeader{fid, flags, 0x01020304}, keys);

  CHECK(std::memcmp(raw.data(), "WDFS", 4) == 0);
  CHECK(get_le16(raw.data() + 4) == kFormatVersion);
  CHECK(get_le16(raw.data() + 6) == flags);
  CHECK(std::memcmp(raw.data() + 8, fid.data(), 16) == 0);
  CHECK(get_le32(raw.data() + 24) == 0x01020304U);
  CHECK(get_le32(raw.data() + 28) == 0U);
  // The tag is HMAC-SHA256 over bytes 0..31 under HKDF(dek, file id, "wardfs v1 file header").
  const auto mac_key = hkdf_sha256(dek.view(), fid, label::kFileHeader, 32);
  CHECK(to_bytes(keys.header_mac_key()) == to_bytes(mac_key.view()));
  const Mac32 tag = hmac_sha256(mac_key.view(), ByteView(raw.data(), 32));
  CHECK(std::memcmp(raw.data() + 32, tag.data(), 32) == 0);

  FileHeader parsed;
  REQUIRE(parse_header(raw, parsed) == HeaderStatus::ok);
  CHECK(parsed.file_id == fid);
  CHECK(parsed.flags == flags);
  CHECK(parsed.has_holes() == (flags != 0));
  CHECK(parsed.generation == 0x01020304U);
  CHECK(verify_header_tag(raw, keys));
}

TEST_CASE("the header MAC key does not depend on the cipher", "[header]") {
  const auto dek = key_of(22);
  const FileId fid = file_id_of(22);
  const FileKeys a(CipherId::aes256gcm, dek.view(), fid);
  const FileKeys b(CipherId::xchacha20poly1305, dek.view(), fid);
  CHECK(to_bytes(a.header_mac_key()) == to_bytes(b.header_mac_key()));
}

TEST_CASE("header parse statuses", "[header]") {
  const auto dek = key_of(23);
  const FileId fid = file_id_of(23);
  const FileKeys keys(CipherId::aes256gcm, dek.view(), fid);
  const RawHeader raw = encode_header(FileHeader{fid, 0, 1}, keys);
  FileHeader h;
  for (std::size_t n = 0; n < kHeaderSize; ++n) {
    CHECK(parse_header(ByteView(raw.data(), n), h) == HeaderStatus::too_short);
    CHECK_FALSE(verify_header_tag(ByteView(raw.data(), n), keys));
  }
  // A longer buffer (the header followed by chunk data) parses from its first 64 bytes.
  Bytes longer(raw.begin(), raw.end());
  longer.resize(200, 0x77);
  CHECK(parse_header(longer, h) == HeaderStatus::ok);
  CHECK(verify_header_tag(longer, keys));

  RawHeader bad = raw;
  bad[0] = 'X';
  CHECK(parse_header(bad, h) == HeaderStatus::bad_magic);
  bad = raw;
  put_le16(bad.data() + 4, 2);
  CHECK(parse_header(bad, h) == HeaderStatus::unsupported_version);
  bad = raw;
  bad[31] = 1;
  CHECK(parse_header(bad, h) == HeaderStatus::bad_reserved);
  bad = raw;
  put_le16(bad.data() + 6, 2);  // an undefined flag bit
  CHECK(parse_header(bad, h) == HeaderStatus::unsupported_version);
  const RawHeader zeros{};
  CHECK(parse_header(zeros, h) == HeaderStatus::bad_magic);
  CHECK_FALSE(verify_header_tag(zeros, keys));
}

TEST_CASE("every single-bit change of the header is caught", "[header][tamper]") {
  const CipherId cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const std::uint16_t flags = GENERATE(std::uint16_t{0}, std::uint16_t{kHeaderHasHoles});
  const auto dek = key_of(24);
  const FileId fid = file_id_of(24);
  const FileKeys keys(cipher, dek.view(), fid);
  const RawHeader raw = encode_header(FileHeader{fid, flags, 3}, keys);
  REQUIRE(accepted(raw, keys));

  std::size_t accepted_count = 0;
  for (std::size_t i = 0; i < kHeaderSize; ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      RawHeader bad = raw;
      bad[i] ^= static_cast<std::uint8_t>(1U << bit);
      if (accepted(bad, keys)) ++accepted_count;
      // Where the parser itself must object, it does so with the right status.
      FileHeader h;
      const HeaderStatus s = parse_header(bad, h);
      if (i < 4) CHECK(s == HeaderStatus::bad_magic);
      if (i >= 4 && i < 6) CHECK(s == HeaderStatus::unsupported_version);
      if (i >= 28 && i < 32) CHECK(s == HeaderStatus::bad_reserved);
      if (i >= 6 && i < 8) {
        // Flags: the defined bit parses and fails the tag; undefined bits are refused.
        CHECK(s == (i == 6 && bit == 0 ? HeaderStatus::ok : HeaderStatus::unsupported_version));
        CHECK_FALSE(verify_header_tag(bad, keys));
      }
      if ((i >= 8 && i < 28) || i >= 32) {
        CHECK(s == HeaderStatus::ok);
        CHECK_FALSE(verify_header_tag(bad, keys));
      }
    }
  }
  CHECK(accepted_count == 0);
}

TEST_CASE("the has-holes flag cannot be removed or added", "[header][tamper]") {
  const auto dek = key_of(25);
  const FileId fid = file_id_of(25);
  const FileKeys keys(CipherId::aes256gcm, dek.view(), fid);
  RawHeader holes = encode_header(FileHeader{fid, kHeaderHasHoles, 1}, keys);
  put_le16(holes.data() + 6, 0);
  CHECK_FALSE(accepted(holes, keys));
  RawHeader plain = encode_header(FileHeader{fid, 0, 1}, keys);
  put_le16(plain.data() + 6, kHeaderHasHoles);
  CHECK_FALSE(accepted(plain, keys));
}

TEST_CASE("a header verified with another file's or another key's keys fails", "[header][tamper]") {
  const CipherId cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  const auto dek = key_of(26);
  const auto other_dek = key_of(27);
  const FileId fid = file_id_of(26);
  const FileKeys keys(cipher, dek.view(), fid);
  const RawHeader raw = encode_header(FileHeader{fid, 0, 1}, keys);
  REQUIRE(accepted(raw, keys));

  FileId other = fid;
  other[15] ^= 0x80;
  CHECK_FALSE(accepted(raw, FileKeys(cipher, dek.view(), other)));
  CHECK_FALSE(accepted(raw, FileKeys(cipher, other_dek.view(), fid)));

  // Copying the header of another file (even under the same DEK) is caught too.
  const FileKeys other_keys(cipher, dek.view(), other);
  const RawHeader foreign = encode_header(FileHeader{other, 0, 1}, other_keys);
  CHECK(accepted(foreign, other_keys));
  CHECK_FALSE(accepted(foreign, keys));

  // A header relabelled with another generation fails under both generations' keys.
  RawHeader relabelled = raw;
  put_le32(relabelled.data() + 24, 2);
  CHECK_FALSE(accepted(relabelled, keys));
  CHECK_FALSE(accepted(relabelled, FileKeys(cipher, other_dek.view(), fid)));
}
