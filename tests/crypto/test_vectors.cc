// Recomputes every value in tests/vectors/format-v1.json and compares byte for byte,
// so any change to the on-disk format shows up here (regenerate only on purpose).
#include <catch2/catch.hpp>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "crypto/blob.h"
#include "crypto/config.h"
#include "crypto/file_format.h"
#include "crypto/kdf.h"
#include "crypto/name_codec.h"
#include "keystore/keystore.h"
#include "tests/crypto/test_util.h"

#ifndef WARDFS_VECTOR_DIR
#error "WARDFS_VECTOR_DIR must name tests/vectors"
#endif

using namespace wardfs::crypto;
using nlohmann::json;
using wardfs::test::from_hex;
using wardfs::test::to_bytes;

namespace {

const json& vectors() {
  static const json doc = [] {
    std::ifstream in(std::string(WARDFS_VECTOR_DIR) + "/format-v1.json");
    if (!in) throw std::runtime_error("cannot open " WARDFS_VECTOR_DIR "/format-v1.json");
    return json::parse(in);
  }();
  return doc;
}

Bytes hex_field(const json& obj, const char* field) {
  return from_hex(obj.at(field).get<std::string>());
}

template <std::size_t N>
std::array<std::uint8_t, N> arr(const Bytes& b) {
  REQUIRE(b.size() == N);
  std::array<std::uint8_t, N> a{};
  std::copy(b.begin(), b.end(), a.begin());
  return a;
}

FileId file_id() { return arr<16>(hex_field(vectors(), "file_id")); }

std::map<std::uint32_t, Bytes> deks() {
  std::map<std::uint32_t, Bytes> out;
  for (const auto& g : vectors().at("generations")) {
    out[g.at("generation").get<std::uint32_t>()] = hex_field(g, "dek");
  }
  return out;
}

CipherId cipher_of(const json& obj) {
  const auto c = cipher_from_name(obj.at("cipher").get<std::string>());
  REQUIRE(c.has_value());
  return *c;
}

}  // namespace

TEST_CASE("vector file is complete", "[vectors]") {
  const json& v = vectors();
  CHECK(v.at("format_version") == kFormatVersion);
  CHECK(v.at("generations").size() == 2);
  CHECK(v.at("headers").size() == 3);
  CHECK(v.at("chunks").size() == 24);
  CHECK(v.at("names").at("entries").size() == 6);
  CHECK(v.at("dek_wraps").size() == 2);
  CHECK(v.at("blobs").size() == 3);
  CHECK(v.at("xattr_names").size() == 3);
  CHECK(v.at("long_symlink_targets").size() == 3);
}

TEST_CASE("vectors: key derivation", "[vectors]") {
  const FileId fid = file_id();
  const Bytes volume_id = hex_field(vectors().at("names"), "volume_id");
  for (const auto& g : vectors().at("generations")) {
    const Bytes dek = hex_field(g, "dek");
    INFO("generation " << g.at("generation"));
    CHECK(to_bytes(hkdf_sha256(dek, fid, label::kFileContent, 32).view()) ==
          hex_field(g, "file_content_key"));
    CHECK(to_bytes(hkdf_sha256(dek, fid, label::kFileHeader, 32).view()) ==
          hex_field(g, "file_header_key"));
    CHECK(to_bytes(FileKeys(CipherId::aes256gcm, dek, fid).header_mac_key()) ==
          hex_field(g, "file_header_key"));
    CHECK(to_bytes(hkdf_sha256(dek, volume_id, label::kNames, 64).view()) ==
          hex_field(g, "name_key"));
    CHECK(to_bytes(hkdf_sha256(dek, volume_id, label::kSymlinks, 32).view()) ==
          hex_field(g, "symlink_key"));
    CHECK(to_bytes(hkdf_sha256(dek, volume_id, label::kXattrs, 32).view()) ==
          hex_field(g, "xattr_key"));
  }
}

TEST_CASE("vectors: headers", "[vectors]") {
  const FileId fid = file_id();
  const auto dek = deks();
  for (const auto& h : vectors().at("headers")) {
    const auto g = h.at("generation").get<std::uint32_t>();
    const auto flags = h.at("flags").get<std::uint16_t>();
    const Bytes raw = hex_field(h, "raw");
    INFO("header " << h.dump());
    const FileKeys keys(CipherId::xchacha20poly1305, dek.at(g), fid);
    const RawHeader encoded = encode_header(FileHeader{fid, flags, g}, keys);
    CHECK(Bytes(encoded.begin(), encoded.end()) == raw);
    FileHeader parsed;
    REQUIRE(parse_header(raw, parsed) == HeaderStatus::ok);
    CHECK(parsed.file_id == fid);
    CHECK(parsed.flags == flags);
    CHECK(parsed.has_holes() == h.at("has_holes").get<bool>());
    CHECK(parsed.generation == g);
    CHECK(verify_header_tag(raw, keys));
    // The tag, from its definition.
    const Mac32 tag = hmac_sha256(keys.header_mac_key(), ByteView(raw.data(), 32));
    CHECK(Bytes(tag.begin(), tag.end()) == Bytes(raw.begin() + 32, raw.end()));
    for (const auto& [other_g, other_dek] : dek) {
      if (other_g != g)
        CHECK_FALSE(verify_header_tag(raw, FileKeys(CipherId::aes256gcm, other_dek, fid)));
    }
  }
}

TEST_CASE("vectors: chunks", "[vectors]") {
  const FileId fid = file_id();
  const auto dek = deks();
  std::size_t finals = 0, sizes_seen = 0;
  for (const auto& c : vectors().at("chunks")) {
    const CipherId cipher = cipher_of(c);
    const auto g = c.at("generation").get<std::uint32_t>();
    const auto index = c.at("index").get<std::uint64_t>();
    const bool final = c.at("final").get<bool>();
    const Bytes nonce = hex_field(c, "nonce");
    const Bytes pt = hex_field(c, "plaintext");
    const Bytes ad = hex_field(c, "ad");
    const Bytes sealed = hex_field(c, "sealed");
    INFO(cipher_name(cipher) << " gen " << g << " index " << index << " final " << final << " size "
                             << pt.size());
    finals += final ? 1 : 0;
    sizes_seen |= pt.size() == 0 ? 1 : pt.size() == 5 ? 2 : pt.size() == 4096 ? 4 : 8;

    const ChunkLayout layout(cipher, c.at("chunk_size").get<std::uint32_t>());
    const FileKeys keys(cipher, dek.at(g), fid);
    const ChunkPosition pos{fid, index, final};
    Bytes out(layout.overhead() + pt.size());
    seal_chunk_with_nonce(layout, keys.content(), g, pos, pt, nonce, out);
    CHECK(out == sealed);
    CHECK(chunk_generation(sealed) == g);
    Bytes opened(pt.size());
    REQUIRE(open_chunk(layout, keys.content(), pos, sealed, opened));
    CHECK(opened == pt);
    CHECK_FALSE(
        open_chunk(layout, keys.content(), ChunkPosition{fid, index, !final}, sealed, opened));

    // The same chunk from the format's definition, without the chunk codec.
    Bytes expected_ad(fid.begin(), fid.end());
    expected_ad.resize(29);
    put_le64(expected_ad.data() + 16, index);
    put_le32(expected_ad.data() + 24, g);
    expected_ad[28] = final ? 1 : 0;
    CHECK(ad == expected_ad);
    const auto content_key = hkdf_sha256(dek.at(g), fid, label::kFileContent, 32);
    const auto aead = make_aead(cipher, content_key.view());
    REQUIRE(sealed.size() == 4 + nonce.size() + pt.size() + 16);
    CHECK(get_le32(sealed.data()) == g);
    CHECK(Bytes(sealed.begin() + 4, sealed.begin() + 4 + nonce.size()) == nonce);
    Bytes direct(pt.size());
    CHECK(aead->open(direct, ByteView(sealed).subspan(4 + nonce.size()), nonce, expected_ad));
    CHECK(direct == pt);
  }
  CHECK(finals == 12);
  CHECK(sizes_seen == 7);
}

TEST_CASE("vectors: names", "[vectors]") {
  const json& n = vectors().at("names");
  const auto g = n.at("generation").get<std::uint32_t>();
  const Bytes volume_id = hex_field(n, "volume_id");
  const NameCipher names(hkdf_sha256(deks().at(g), volume_id, label::kNames, kNameKeySize));
  std::size_t long_names = 0;
  for (const auto& e : n.at("entries")) {
    const DirId dir = arr<16>(hex_field(e, "dir_id"));
    const std::string name = e.at("name").get<std::string>();
    const std::string encoded = e.at("encoded").get<std::string>();
    INFO("name " << name);
    CHECK(to_bytes(as_bytes(name)) == hex_field(e, "name_hex"));
    CHECK(names.encrypt(dir, name) == encoded);
    CHECK(names.decrypt(dir, encoded) == name);
    // From the definition: pad, SIV with the dir id as the one AD element, base64url.
    const Bytes padded = hex_field(e, "padded");
    const std::size_t pad = 16 - name.size() % 16;
    Bytes expected_padded(name.begin(), name.end());
    expected_padded.insert(expected_padded.end(), pad, static_cast<std::uint8_t>(pad));
    CHECK(padded == expected_padded);
    const Bytes siv = hex_field(e, "siv");
    CHECK(names.seal_deterministic(dir, padded) == siv);
    CHECK(names.open_deterministic(dir, siv) == padded);
    CHECK(base64url_encode(siv) == encoded);
    CHECK(needs_long_name(encoded) == e.at("needs_long_name").get<bool>());
    if (needs_long_name(encoded)) {
      ++long_names;
      const std::string hashed = e.at("long_name").get<std::string>();
      CHECK(long_name_for(encoded) == hashed);
      const Mac32 digest = sha256(as_bytes(encoded));
      CHECK(hashed == "L." + base64url_encode(digest));
      CHECK(is_long_name(hashed));
    } else {
      CHECK_FALSE(e.contains("long_name"));
    }
  }
  CHECK(long_names == 1);
}

TEST_CASE("vectors: DEK wraps", "[vectors]") {
  for (const auto& w : vectors().at("dek_wraps")) {
    VolumeConfig cfg;
    cfg.version = w.at("version").get<int>();
    cfg.volume_id = hex_field(w, "volume_id");
    cfg.cipher = cipher_of(w);
    cfg.chunk_size = w.at("chunk_size").get<std::uint32_t>();
    cfg.holes = w.at("holes") == "never" ? HolesPolicy::never : HolesPolicy::allow;
    cfg.active_generation = w.at("active_generation").get<std::uint32_t>();
    const auto g = w.at("generation").get<std::uint32_t>();
    const Bytes ad = hex_field(w, "ad");
    const Bytes nonce = hex_field(w, "nonce");
    const Bytes dek = hex_field(w, "dek");
    const Bytes wrapped = hex_field(w, "wrapped");
    const Bytes kek = hex_field(w, "kek");
    INFO("wrap " << w.dump());
    CHECK(cfg.wrap_ad(g) == ad);
    CHECK(dek == deks().at(g));

    const auto aead = make_aead(CipherId::xchacha20poly1305, kek);
    Bytes sealed(dek.size() + kAeadTagSize);
    aead->seal(sealed, dek, nonce, ad);
    Bytes expected(nonce);
    expected.insert(expected.end(), sealed.begin(), sealed.end());
    CHECK(expected == wrapped);

    auto ks = wardfs::keystore::make_local_keystore(SecretBytes::copy_of(kek), "vectors");
    const auto got = ks->unwrap(wrapped, ad);
    REQUIRE(got.has_value());
    CHECK(to_bytes(got->view()) == dek);
    VolumeConfig edited = cfg;
    edited.chunk_size *= 2;
    CHECK_FALSE(ks->unwrap(wrapped, edited.wrap_ad(g)).has_value());
  }
}

TEST_CASE("vectors: blobs", "[vectors]") {
  const Bytes volume_id = hex_field(vectors().at("names"), "volume_id");
  for (const auto& b : vectors().at("blobs")) {
    const CipherId cipher = cipher_of(b);
    const auto g = b.at("generation").get<std::uint32_t>();
    const std::string label = b.at("key_label").get<std::string>();
    const Bytes key = hex_field(b, "key");
    const Bytes ad = hex_field(b, "ad");
    const Bytes nonce = hex_field(b, "nonce");
    const Bytes pt = hex_field(b, "plaintext");
    const Bytes blob = hex_field(b, "blob");
    INFO("blob " << b.dump());
    CHECK((label == label::kSymlinks || label == label::kXattrs));
    CHECK(to_bytes(hkdf_sha256(deks().at(g), volume_id, label, 32).view()) == key);
    Bytes aead_ad(4);
    put_le32(aead_ad.data(), g);
    aead_ad.insert(aead_ad.end(), ad.begin(), ad.end());
    CHECK(aead_ad == hex_field(b, "aead_ad"));
    CHECK(base64url_encode(blob) == b.at("blob_base64url").get<std::string>());

    const auto aead = make_aead(cipher, key);
    REQUIRE(blob.size() == 4 + nonce.size() + pt.size() + 16);
    Bytes sealed(pt.size() + 16);
    aead->seal(sealed, pt, nonce, aead_ad);
    CHECK(Bytes(blob.begin() + 4 + static_cast<std::ptrdiff_t>(nonce.size()), blob.end()) ==
          sealed);
    CHECK(blob_generation(blob, *aead) == g);
    CHECK(open_blob(*aead, ad, blob) == pt);
    // What seal_blob makes has the same shape and opens the same way.
    const Bytes fresh = seal_blob(*aead, g, ad, pt);
    CHECK(fresh.size() == blob.size());
    CHECK(open_blob(*aead, ad, fresh) == pt);
  }
}

TEST_CASE("vectors: xattr names", "[vectors]") {
  const Bytes volume_id = hex_field(vectors().at("names"), "volume_id");
  for (const auto& x : vectors().at("xattr_names")) {
    const auto g = x.at("generation").get<std::uint32_t>();
    const NameCipher names(hkdf_sha256(deks().at(g), volume_id, label::kNames, kNameKeySize));
    const std::string name = x.at("name").get<std::string>();
    const Bytes ad = hex_field(x, "ad");
    const Bytes siv = hex_field(x, "siv");
    INFO("xattr " << name);
    REQUIRE(name.starts_with("user."));
    CHECK(ad == to_bytes(as_bytes("wardfs v1 xattr name")));
    CHECK(names.seal_deterministic(ad, as_bytes(name.substr(5))) == siv);
    CHECK(names.open_deterministic(ad, siv) == to_bytes(as_bytes(name.substr(5))));
    CHECK(x.at("backing_name").get<std::string>() == "user." + base64url_encode(siv));
  }
}

TEST_CASE("vectors: long symlink targets", "[vectors]") {
  const Bytes volume_id = hex_field(vectors().at("names"), "volume_id");
  for (const auto& b : vectors().at("long_symlink_targets")) {
    INFO("long target " << b.at("cipher") << " "
                        << b.at("plaintext").get<std::string>().size() / 2);
    const auto g = b.at("generation").get<std::uint32_t>();
    const Bytes key = hex_field(b, "key");
    CHECK(b.at("key_label").get<std::string>() == label::kSymlinks);
    CHECK(to_bytes(hkdf_sha256(deks().at(g), volume_id, label::kSymlinks, 32).view()) == key);
    const auto aead = make_aead(cipher_of(b), key);
    const Bytes blob = hex_field(b, "blob");
    const Bytes pt = hex_field(b, "plaintext");
    CHECK(pt.size() <= kMaxBackingTargetLength);
    CHECK(open_blob(*aead, hex_field(b, "ad"), blob) == pt);
    // Too long for the short form, which is why it has a sidecar.
    CHECK(base64url_encode(blob).size() == b.at("short_form_length").get<std::size_t>());
    CHECK(base64url_encode(blob).size() > kMaxBackingTargetLength);
    const std::string name = target_sidecar_name(blob);
    CHECK(name == b.at("sidecar_name").get<std::string>());
    CHECK(name == b.at("backing_target").get<std::string>());
    CHECK(is_target_sidecar_name(name));
    CHECK(name.size() == 45);
  }
}
