// Writes tests/vectors/format-v1.json: known-answer vectors for the v1 on-disk format,
// from fixed keys and nonces. Every input is in the file, so another implementation
// can check itself against it. Not run by ctest; test_vectors.cc checks the output.
//
//   make_vectors tests/vectors/format-v1.json
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>

#include "crypto/aead.h"
#include "crypto/bytes.h"
#include "crypto/config.h"
#include "crypto/file_format.h"
#include "crypto/kdf.h"
#include "crypto/name_codec.h"

using namespace wardfs::crypto;
using ojson = nlohmann::ordered_json;

namespace {

// start, start+1, ... (mod 256): inputs anyone can type in.
Bytes seq(std::uint8_t start, std::size_t n) {
  Bytes out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>(start + i);
  return out;
}

std::string hex(ByteView b) { return hex_encode(b); }

template <std::size_t N>
std::array<std::uint8_t, N> arr(const Bytes& b) {
  std::array<std::uint8_t, N> a{};
  std::copy(b.begin(), b.begin() + N, a.begin());
  return a;
}

const Bytes kDek1 = seq(0x00, 32);
const Bytes kDek7 = seq(0x70, 32);
const Bytes kFileId = seq(0xa0, 16);
const Bytes kVolumeId = seq(0xc0, 16);
const Bytes kKek = seq(0x40, 32);

const Bytes& dek_for(std::uint32_t generation) { return generation == 1 ? kDek1 : kDek7; }

ojson generations() {
  ojson out = ojson::array();
  for (std::uint32_t g : {1U, 7U}) {
    const Bytes& dek = dek_for(g);
    out.push_back({
        {"generation", g},
        {"dek", hex(dek)},
        {"file_content_key", hex(hkdf_sha256(dek, kFileId, label::kFileContent, 32).view())},
        {"file_header_key", hex(hkdf_sha256(dek, kFileId, label::kFileHeader, 32).view())},
        {"name_key", hex(hkdf_sha256(dek, kVolumeId, label::kNames, kNameKeySize).view())},
        {"symlink_key", hex(hkdf_sha256(dek, kVolumeId, label::kSymlinks, 32).view())},
        {"xattr_key", hex(hkdf_sha256(dek, kVolumeId, label::kXattrs, 32).view())},
    });
  }
  return out;
}

ojson headers() {
  ojson out = ojson::array();
  const FileId fid = arr<16>(kFileId);
  const std::pair<std::uint32_t, std::uint16_t> cases[] = {
      {1, 0}, {1, kHeaderHasHoles}, {7, kHeaderHasHoles}};
  for (const auto& [g, flags] : cases) {
    const FileKeys keys(CipherId::aes256gcm, dek_for(g), fid);
    const RawHeader raw = encode_header(FileHeader{fid, flags, g}, keys);
    out.push_back(
        {{"generation", g}, {"flags", flags}, {"has_holes", flags != 0}, {"raw", hex(raw)}});
  }
  return out;
}

Bytes chunk_ad(std::uint64_t index, std::uint32_t generation, bool final) {
  Bytes ad(kFileId);
  ad.resize(16 + 8 + 4 + 1);
  put_le64(ad.data() + 16, index);
  put_le32(ad.data() + 24, generation);
  ad[28] = final ? 1 : 0;
  return ad;
}

ojson chunks() {
  ojson out = ojson::array();
  const FileId fid = arr<16>(kFileId);
  std::uint8_t nonce_start = 0x10;
  for (CipherId cipher : {CipherId::aes256gcm, CipherId::xchacha20poly1305}) {
    const ChunkLayout layout(cipher, 4096);
    for (std::uint32_t g : {1U, 7U}) {
      const FileKeys keys(cipher, dek_for(g), fid);
      for (std::size_t size : {0, 5, 4096}) {
        for (bool final : {false, true}) {
          Bytes pt;
          if (size == 5) pt = Bytes{'h', 'e', 'l', 'l', 'o'};
          for (std::size_t i = 0; pt.size() < size; ++i)
            pt.push_back(static_cast<std::uint8_t>(i * 7 + 3));
          // Indexes exercise all 8 bytes of the index field.
          const std::uint64_t index = (size == 0   ? 0
                                       : size == 5 ? 1
                                                   : 0x0102030405060708ULL) +
                                      (final ? 2 : 0) + (g == 7 ? (1ULL << 32) : 0);
          const Bytes nonce = seq(nonce_start, layout.nonce_size());
          nonce_start = static_cast<std::uint8_t>(nonce_start + 0x11);
          Bytes sealed(layout.overhead() + pt.size());
          seal_chunk_with_nonce(layout, keys.content(), g, ChunkPosition{fid, index, final}, pt,
                                nonce, sealed);
          out.push_back({{"cipher", std::string(cipher_name(cipher))},
                         {"chunk_size", layout.chunk_size()},
                         {"generation", g},
                         {"index", index},
                         {"final", final},
                         {"nonce", hex(nonce)},
                         {"plaintext", hex(pt)},
                         {"ad", hex(chunk_ad(index, g, final))},
                         {"sealed", hex(sealed)}});
        }
      }
    }
  }
  return out;
}

ojson names() {
  const NameCipher cipher(hkdf_sha256(kDek1, kVolumeId, label::kNames, kNameKeySize));
  const Bytes dir1 = seq(0xd0, 16), dir2 = seq(0xe0, 16);
  std::string long_name;
  while (long_name.size() < 196) long_name += static_cast<char>('a' + long_name.size() % 26);
  long_name += ".txt";
  std::string boundary(159, 'b');
  const std::pair<const Bytes*, std::string> cases[] = {
      {&dir1, "a"},
      {&dir1, "hello.txt"},
      {&dir2, "hello.txt"},
      {&dir1,
       "Gr\xc3\xbc\xc3\x9f"
       "e, \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x90\x9f.txt"},
      {&dir1, boundary},
      {&dir1, long_name},
  };
  ojson entries = ojson::array();
  for (const auto& [dir, name] : cases) {
    const std::string encoded = cipher.encrypt(arr<16>(*dir), name);
    Bytes padded(name.begin(), name.end());
    const std::size_t pad = 16 - name.size() % 16;
    padded.insert(padded.end(), pad, static_cast<std::uint8_t>(pad));
    ojson e = {{"dir_id", hex(*dir)},
               {"name", name},
               {"name_hex", hex(as_bytes(name))},
               {"padded", hex(padded)},
               {"siv", hex(cipher.seal_deterministic(*dir, padded))},
               {"encoded", encoded},
               {"needs_long_name", needs_long_name(encoded)}};
    if (needs_long_name(encoded)) e["long_name"] = long_name_for(encoded);
    entries.push_back(e);
  }
  return {{"generation", 1}, {"volume_id", hex(kVolumeId)}, {"entries", entries}};
}

ojson dek_wraps() {
  ojson out = ojson::array();
  const auto aead = make_aead(CipherId::xchacha20poly1305, kKek);
  struct Case {
    std::uint32_t generation;
    CipherId cipher;
    std::uint32_t chunk_size;
    HolesPolicy holes;
    std::uint8_t nonce_start;
  };
  for (const Case& c : {Case{1, CipherId::aes256gcm, 4096, HolesPolicy::allow, 0x90},
                        Case{7, CipherId::xchacha20poly1305, 65536, HolesPolicy::never, 0xb0}}) {
    VolumeConfig cfg;
    cfg.version = 1;
    cfg.volume_id = kVolumeId;
    cfg.cipher = c.cipher;
    cfg.chunk_size = c.chunk_size;
    cfg.holes = c.holes;
    cfg.active_generation = c.generation;
    const Bytes ad = cfg.wrap_ad(c.generation);
    const Bytes& dek = dek_for(c.generation);
    const Bytes nonce = seq(c.nonce_start, 24);
    Bytes wrapped(nonce);
    wrapped.resize(24 + dek.size() + kAeadTagSize);
    aead->seal(std::span(wrapped).subspan(24), dek, nonce, ad);
    out.push_back({{"kek", hex(kKek)},
                   {"volume_id", hex(kVolumeId)},
                   {"generation", c.generation},
                   {"version", cfg.version},
                   {"cipher", std::string(cipher_name(c.cipher))},
                   {"chunk_size", c.chunk_size},
                   {"holes", c.holes == HolesPolicy::never ? "never" : "allow"},
                   {"active_generation", cfg.active_generation},
                   {"ad", hex(ad)},
                   {"nonce", hex(nonce)},
                   {"dek", hex(dek)},
                   {"wrapped", hex(wrapped)}});
  }
  return out;
}

// One blob: u32le g | nonce | AEAD(key, nonce, u32le g | context AD, plaintext).
ojson blob(const char* purpose, CipherId cipher, std::uint32_t g, std::string_view label,
           const Bytes& context_ad, std::string_view plaintext, std::uint8_t nonce_start,
           Bytes* raw = nullptr) {
  const auto key = hkdf_sha256(dek_for(g), kVolumeId, label, 32);
  const auto aead = make_aead(cipher, key.view());
  const Bytes nonce = seq(nonce_start, aead->nonce_size());
  Bytes aead_ad(4);
  put_le32(aead_ad.data(), g);
  aead_ad.insert(aead_ad.end(), context_ad.begin(), context_ad.end());
  Bytes out(4);
  put_le32(out.data(), g);
  out.insert(out.end(), nonce.begin(), nonce.end());
  out.resize(4 + nonce.size() + plaintext.size() + kAeadTagSize);
  aead->seal(std::span(out).subspan(4 + nonce.size()), as_bytes(plaintext), nonce, aead_ad);
  if (raw != nullptr) *raw = out;
  return {{"purpose", purpose},
          {"cipher", std::string(cipher_name(cipher))},
          {"generation", g},
          {"key_label", std::string(label)},
          {"key", hex(key.view())},
          {"ad", hex(context_ad)},
          {"aead_ad", hex(aead_ad)},
          {"nonce", hex(nonce)},
          {"plaintext", hex(as_bytes(plaintext))},
          {"blob", hex(out)},
          {"blob_base64url", base64url_encode(out)}};
}

ojson blobs() {
  // Context ADs as volume/names.cc uses them (docs/FORMAT.md sections 7 and 8).
  const std::string_view symlink_ad = "wardfs v1 symlink";
  const std::string_view xattr_label = "wardfs v1 xattr value";
  Bytes xattr_ad(xattr_label.begin(), xattr_label.end());
  xattr_ad.push_back(0);
  const std::string_view xattr_name = "user.comment";
  xattr_ad.insert(xattr_ad.end(), xattr_name.begin(), xattr_name.end());
  ojson out = ojson::array();
  out.push_back(blob("symlink target", CipherId::aes256gcm, 7, label::kSymlinks,
                     Bytes(symlink_ad.begin(), symlink_ad.end()), "../shared/target file.txt",
                     0x30));
  out.push_back(blob("symlink target", CipherId::xchacha20poly1305, 7, label::kSymlinks,
                     Bytes(symlink_ad.begin(), symlink_ad.end()), "../shared/target file.txt",
                     0x70));
  out.push_back(blob("xattr value of user.comment", CipherId::xchacha20poly1305, 1, label::kXattrs,
                     xattr_ad, "reviewed by \xc3\xa5sa", 0x50));
  return out;
}

// Long symlink targets (docs/FORMAT.md 7.1): targets whose short form (base64url of the
// blob) would exceed 4095 bytes. The blob, raw, is the sidecar's contents; the sidecar and
// the backing symlink's target are both "T." + base64url(SHA-256(blob)).
ojson long_symlink_targets() {
  const std::string_view symlink_ad = "wardfs v1 symlink";
  std::string longest;  // PATH_MAX - 1 = 4095 bytes, path components of 255 bytes at most
  while (longest.size() < 4095)
    longest += longest.size() % 200 == 199 ? '/' : 'a' + longest.size() % 26;
  ojson out = ojson::array();
  const struct {
    CipherId cipher;
    std::string target;
    std::uint8_t nonce_start;
  } cases[] = {{CipherId::aes256gcm, std::string(3040, 'z'), 0x40},
               {CipherId::aes256gcm, longest, 0x41},
               {CipherId::xchacha20poly1305, longest, 0x42}};
  for (const auto& c : cases) {
    Bytes raw;
    ojson v = blob("long symlink target", c.cipher, 7, label::kSymlinks,
                   Bytes(symlink_ad.begin(), symlink_ad.end()), c.target, c.nonce_start, &raw);
    v["short_form_length"] = v.at("blob_base64url").get<std::string>().size();
    v.erase("blob_base64url");
    v["sidecar_name"] = target_sidecar_name(raw);
    v["backing_target"] = target_sidecar_name(raw);
    out.push_back(v);
  }
  return out;
}

// Backing xattr names: "user." | base64url(SIV(name key, AD = ["wardfs v1 xattr name"], X)),
// with no padding of X.
ojson xattr_names() {
  const NameCipher cipher(hkdf_sha256(kDek1, kVolumeId, label::kNames, kNameKeySize));
  const std::string_view ad = "wardfs v1 xattr name";
  ojson out = ojson::array();
  for (std::string_view name : {"user.comment", "user.x", "user.mime_type"}) {
    const std::string_view x = name.substr(5);
    const Bytes sealed = cipher.seal_deterministic(as_bytes(ad), as_bytes(x));
    out.push_back({{"generation", 1},
                   {"name", std::string(name)},
                   {"ad", hex(as_bytes(ad))},
                   {"siv", hex(sealed)},
                   {"backing_name", "user." + base64url_encode(sealed)}});
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTPUT.json\n", argv[0]);
    return 2;
  }
  ojson doc = {
      {"title", "wardfs on-disk format v1: known-answer vectors"},
      {"format_version", kFormatVersion},
      {"generated_by", "tests/crypto/make_vectors.cc"},
      {"conventions",
       {"All byte strings are lowercase hex. Integers in byte layouts are little-endian.",
        "HKDF is HKDF-SHA256 (RFC 5869) with ikm = the generation's DEK.",
        "file_content_key = HKDF(dek, salt = file_id, info = 'wardfs v1 file content', 32); "
        "file_header_key uses info 'wardfs v1 file header'.",
        "name_key = HKDF(dek, salt = volume_id, info = 'wardfs v1 names', 64); symlink_key and "
        "xattr_key use 'wardfs v1 symlinks' / 'wardfs v1 xattrs', 32 bytes.",
        "Header (64 bytes): 'WDFS' | u16 version | u16 flags (bit 0 = has holes) | file_id(16) | "
        "u32 generation | 4 zero bytes | HMAC-SHA256(file_header_key, bytes 0..31).",
        "Chunk: u32 generation | nonce (12 bytes AES-256-GCM, 24 XChaCha20-Poly1305) | "
        "ciphertext | 16-byte tag, under file_content_key, with ad = file_id | u64 index | "
        "u32 generation | u8 final.",
        "Names: padded = name + n bytes of value n (n = 16 - len % 16, so 1..16); siv = "
        "AES-256-SIV (RFC 5297, 64-byte key, one AD component = dir_id) output V | C; encoded = "
        "base64url without padding. Encodings over 255 bytes are stored as 'L.' + "
        "base64url(SHA-256(encoded)) with the encoding in a sidecar named that + '.n'.",
        "DEK wrap (local keystores): XChaCha20-Poly1305 under the KEK, wrapped = nonce(24) | "
        "sealed dek | tag; ad = 'wardfs v1 dek wrap' | 0x00 | volume_id | u32 generation | "
        "u16 version | u8 cipher id (1 = aes-256-gcm, 2 = xchacha20-poly1305) | u32 chunk_size | "
        "u8 holes (1 = never) | u32 active_generation.",
        "Blob: u32 generation | nonce | ciphertext | tag, with aead_ad = u32 generation | ad "
        "(the context AD); key = HKDF(dek, salt = volume_id, info = key_label, 32).",
        "long_symlink_targets: blobs whose base64url (short_form_length bytes) would not fit "
        "in a 4095-byte backing symlink; the sidecar file sidecar_name holds the blob bytes and "
        "the backing symlink's target is backing_target = 'T.' + base64url(SHA-256(blob)).",
        "xattr_names: backing_name = 'user.' + base64url(AES-256-SIV(name_key, AD = [ad], X)) "
        "where name = 'user.' + X; no padding."}},
      {"file_id", hex(kFileId)},
      {"generations", generations()},
      {"headers", headers()},
      {"chunks", chunks()},
      {"names", names()},
      {"dek_wraps", dek_wraps()},
      {"blobs", blobs()},
      {"xattr_names", xattr_names()},
      {"long_symlink_targets", long_symlink_targets()},
  };
  std::ofstream out(argv[1], std::ios::trunc);
  out << doc.dump(2) << "\n";
  if (!out) {
    std::fprintf(stderr, "cannot write %s\n", argv[1]);
    return 1;
  }
  std::cout << "wrote " << argv[1] << "\n";
  return 0;
}
