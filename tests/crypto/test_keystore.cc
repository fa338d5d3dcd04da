// Envelope encryption: DEKs wrapped under the KEK with the config bound into the AD;
// passphrase KDF; key files.
#include <sodium.h>

#include <catch2/catch.hpp>
#include <cctype>
#include <string>

#include "base/errors.h"
#include "crypto/config.h"
#include "keystore/keystore.h"
#include "tests/crypto/test_util.h"

using namespace wardfs::crypto;
using namespace wardfs::keystore;
using wardfs::ErrorKind;
using wardfs::WardError;
using wardfs::test::key_of;
using wardfs::test::pattern;
using wardfs::test::TempDir;
using wardfs::test::to_bytes;
using wardfs::test::write_file;

namespace {

VolumeConfig base_config() {
  VolumeConfig cfg;
  cfg.version = 1;
  cfg.volume_id = pattern(16, 60);
  cfg.cipher = CipherId::aes256gcm;
  cfg.chunk_size = 4096;
  cfg.holes = HolesPolicy::allow;
  cfg.keystore.type = "keyfile";
  cfg.active_generation = 1;
  return cfg;
}

KdfParams small_kdf(std::uint32_t salt_seed = 1) {
  return KdfParams{1, 8192 * 1024, pattern(crypto_pwhash_SALTBYTES, salt_seed)};
}

template <typename F>
std::string error_of(F&& f, ErrorKind kind) {
  try {
    f();
  } catch (const WardError& e) {
    CHECK(e.kind() == kind);
    return e.what();
  }
  FAIL("expected a WardError");
  return {};
}

}  // namespace

TEST_CASE("a wrapped DEK unwraps under the same KEK and config", "[keystore][envelope]") {
  const VolumeConfig cfg = base_config();
  const auto dek = key_of(61);
  auto ks = make_local_keystore(key_of(62), "test");
  CHECK(ks->identity() == "test");
  const Bytes wrapped = ks->wrap(dek.view(), cfg.wrap_ad(1));
  CHECK(wrapped.size() == 24 + 32 + 16);                   // XChaCha nonce | sealed DEK | tag
  CHECK(ks->wrap(dek.view(), cfg.wrap_ad(1)) != wrapped);  // fresh nonce

  const auto back = ks->unwrap(wrapped, cfg.wrap_ad(1));
  REQUIRE(back.has_value());
  CHECK(to_bytes(back->view()) == to_bytes(dek.view()));
  // A second keystore built from the same KEK (the next mount) unwraps it too.
  const auto again = make_local_keystore(key_of(62), "again")->unwrap(wrapped, cfg.wrap_ad(1));
  REQUIRE(again.has_value());
  CHECK(to_bytes(again->view()) == to_bytes(dek.view()));
}

TEST_CASE("editing a bound config field makes unwrapping fail", "[keystore][envelope]") {
  const VolumeConfig cfg = base_config();
  const auto dek = key_of(63);
  auto ks = make_local_keystore(key_of(64), "test");
  const Bytes wrapped = ks->wrap(dek.view(), cfg.wrap_ad(1));
  REQUIRE(ks->unwrap(wrapped, cfg.wrap_ad(1)).has_value());

  auto fails_with = [&](const VolumeConfig& edited, std::uint32_t generation) {
    CHECK(edited.wrap_ad(generation) != cfg.wrap_ad(1));
    CHECK_FALSE(ks->unwrap(wrapped, edited.wrap_ad(generation)).has_value());
  };
  VolumeConfig c = cfg;
  c.cipher = CipherId::xchacha20poly1305;
  fails_with(c, 1);
  c = cfg;
  c.chunk_size = 65536;
  fails_with(c, 1);
  c = cfg;
  c.chunk_size = 8192;
  fails_with(c, 1);
  c = cfg;
  c.version = 2;
  fails_with(c, 1);
  c = cfg;
  c.holes = HolesPolicy::never;
  fails_with(c, 1);
  for (std::size_t i = 0; i < cfg.volume_id.size(); ++i) {
    c = cfg;
    c.volume_id[i] ^= 0x20;
    fails_with(c, 1);
  }
  fails_with(cfg, 2);
  fails_with(cfg, 0);
  fails_with(cfg, 1U << 8);
  // The active generation is bound too, so it cannot be pointed back at an old key.
  c = cfg;
  c.active_generation = 2;
  fails_with(c, 1);
}

TEST_CASE("the wrap AD is stable under changes that must not matter", "[keystore][envelope]") {
  // Adding keys and changing the keystore (rewrap) must not invalidate existing wraps.
  const VolumeConfig cfg = base_config();
  VolumeConfig c = cfg;
  c.keys.push_back(WrappedKey{1, pattern(72), "x"});
  c.keys.push_back(WrappedKey{2, pattern(72), "y"});
  c.keystore = KeystoreSpec{"passphrase", "", small_kdf()};
  CHECK(c.wrap_ad(1) == cfg.wrap_ad(1));
  c.active_generation = 2;
  // And it survives a trip through the config file.
  CHECK(parse_config(serialize_config(c)).wrap_ad(2) == c.wrap_ad(2));
}

TEST_CASE("the wrap AD has the documented layout", "[keystore][envelope]") {
  VolumeConfig cfg = base_config();
  cfg.cipher = CipherId::xchacha20poly1305;
  cfg.chunk_size = 65536;
  cfg.holes = HolesPolicy::never;
  cfg.active_generation = 0x0a0b0c0d;
  const Bytes ad = cfg.wrap_ad(0x01020304);
  const std::string label = "wardfs v1 dek wrap";
  Bytes expected(label.begin(), label.end());
  expected.push_back(0);
  expected.insert(expected.end(), cfg.volume_id.begin(), cfg.volume_id.end());
  for (std::uint8_t b : {0x04, 0x03, 0x02, 0x01,     // generation, u32 LE
                         0x01, 0x00,                 // format version, u16 LE
                         0x02,                       // cipher id
                         0x00, 0x00, 0x01, 0x00,     // chunk size, u32 LE
                         0x01,                       // holes: never
                         0x0d, 0x0c, 0x0b, 0x0a}) {  // active generation, u32 LE
    expected.push_back(b);
  }
  CHECK(ad == expected);
  CHECK(ad.size() == 51);
}

TEST_CASE("a different KEK, or a damaged wrap, fails", "[keystore][envelope]") {
  const VolumeConfig cfg = base_config();
  const auto dek = key_of(65);
  auto ks = make_local_keystore(key_of(66), "a");
  auto other = make_local_keystore(key_of(67), "b");
  const Bytes ad = cfg.wrap_ad(1);
  const Bytes wrapped = ks->wrap(dek.view(), ad);
  CHECK_FALSE(other->unwrap(wrapped, ad).has_value());
  for (std::size_t i = 0; i < wrapped.size(); ++i) {
    Bytes bad = wrapped;
    bad[i] ^= static_cast<std::uint8_t>(1U << (i % 8));
    CHECK_FALSE(ks->unwrap(bad, ad).has_value());
  }
  for (std::size_t n = 0; n < wrapped.size(); ++n) {
    std::optional<SecretBytes> out;
    REQUIRE_NOTHROW(out = ks->unwrap(ByteView(wrapped.data(), n), ad));
    CHECK_FALSE(out.has_value());
  }
}

TEST_CASE("make_local_keystore wants a 32-byte KEK", "[keystore]") {
  const std::string msg =
      error_of([] { (void)make_local_keystore(key_of(1, 16), "x"); }, ErrorKind::usage);
  CHECK(msg.find("32 bytes") != std::string::npos);
  error_of([] { (void)make_local_keystore(SecretBytes(), "x"); }, ErrorKind::usage);
}

TEST_CASE("passphrase KDF is deterministic and depends on salt and passphrase", "[keystore][kdf]") {
  const SecretBytes pass = SecretBytes::copy_of(as_bytes("correct horse battery staple"));
  const SecretBytes pass2 = SecretBytes::copy_of(as_bytes("correct horse battery stapler"));
  const auto k1 = derive_passphrase_kek(pass, small_kdf(1));
  const auto k1_again = derive_passphrase_kek(pass, small_kdf(1));
  const auto k_salt = derive_passphrase_kek(pass, small_kdf(2));
  const auto k_pass = derive_passphrase_kek(pass2, small_kdf(1));
  CHECK(k1.size() == 32);
  CHECK(to_bytes(k1.view()) == to_bytes(k1_again.view()));
  CHECK(to_bytes(k1.view()) != to_bytes(k_salt.view()));
  CHECK(to_bytes(k1.view()) != to_bytes(k_pass.view()));
  KdfParams more_ops = small_kdf(1);
  more_ops.opslimit = 2;
  CHECK(to_bytes(derive_passphrase_kek(pass, more_ops).view()) != to_bytes(k1.view()));

  // Independently: the same call straight into libsodium gives the same key.
  std::uint8_t direct[32];
  const KdfParams p = small_kdf(1);
  REQUIRE(crypto_pwhash(direct, sizeof direct, "correct horse battery staple", 28, p.salt.data(),
                        p.opslimit, p.memlimit, crypto_pwhash_ALG_ARGON2ID13) == 0);
  CHECK(to_bytes(k1.view()) == Bytes(direct, direct + 32));

  KdfParams bad_salt = small_kdf(1);
  bad_salt.salt.resize(8);
  const std::string msg =
      error_of([&] { (void)derive_passphrase_kek(pass, bad_salt); }, ErrorKind::corrupt_volume);
  CHECK(msg.find("salt") != std::string::npos);
}

TEST_CASE("default KDF params are sane", "[keystore][kdf]") {
  const KdfParams p = default_kdf_params();
  CHECK(p.salt.size() == crypto_pwhash_SALTBYTES);
  CHECK(p.opslimit >= crypto_pwhash_OPSLIMIT_MODERATE);
  CHECK(p.memlimit >= crypto_pwhash_MEMLIMIT_MODERATE);
  CHECK(default_kdf_params().salt != p.salt);
}

TEST_CASE("read_key_file accepts raw, hex and base64 keys", "[keystore][keyfile]") {
  TempDir dir;
  const Bytes key = pattern(32, 70);
  const auto path = dir.path() / "key";
  auto check_reads = [&](const std::string& text) {
    INFO("key file content: " << text);
    write_file(path, as_bytes(text), 0600);
    const SecretBytes got = read_key_file(path);
    CHECK(to_bytes(got.view()) == key);
  };
  check_reads(std::string(key.begin(), key.end()));  // raw 32 bytes
  check_reads(hex_encode(key));
  check_reads(hex_encode(key) + "\n");
  check_reads(hex_encode(key) + "\r\n");
  std::string upper = hex_encode(key);
  for (auto& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  check_reads(upper + "\n");
  check_reads(base64url_encode(key));
  check_reads(base64url_encode(key) + "\n");
  char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_ORIGINAL)];
  sodium_bin2base64(b64, sizeof b64, key.data(), key.size(), sodium_base64_VARIANT_ORIGINAL);
  check_reads(std::string(b64) + "\n");  // standard alphabet with '=' padding
  CHECK(std::string(b64).back() == '=');
  write_file(path, key, 0400);  // read-only for the owner is fine too
  CHECK(to_bytes(read_key_file(path).view()) == key);
}

TEST_CASE("read_key_file refuses unsafe or malformed files", "[keystore][keyfile]") {
  TempDir dir;
  const Bytes key = pattern(32, 71);
  const auto path = dir.path() / "key";
  for (mode_t mode : {0644, 0640, 0604, 0660, 0666}) {
    write_file(path, as_bytes(hex_encode(key)), mode);
    const std::string msg = error_of([&] { (void)read_key_file(path); }, ErrorKind::usage);
    CHECK(msg.find("chmod 600") != std::string::npos);
    CHECK(msg.find(path.string()) != std::string::npos);
  }
  for (const std::string& bad :
       {std::string(), std::string(31, 'k'), std::string(33, 'k'), hex_encode(pattern(31)),
        hex_encode(pattern(33)), hex_encode(key).substr(1), base64url_encode(pattern(31)),
        std::string("not a key at all\n"), std::string(5000, 'a')}) {
    write_file(path, as_bytes(bad), 0600);
    error_of([&] { (void)read_key_file(path); }, ErrorKind::usage);
  }
  error_of([&] { (void)read_key_file(dir.path() / "missing"); }, ErrorKind::usage);
  const std::string msg = error_of([&] { (void)read_key_file(dir.path()); }, ErrorKind::usage);
  CHECK(msg.find("regular file") != std::string::npos);
}

TEST_CASE("read_key_file reads only regular files of the caller or root", "[keystore][keyfile]") {
  TempDir dir;
  const Bytes key = pattern(32, 72);
  const auto path = dir.path() / "key";
  write_file(path, as_bytes(hex_encode(key)), 0600);
  const auto link = dir.path() / "link";
  std::filesystem::create_symlink(path, link);
  CHECK(to_bytes(read_key_file(link).view()) == key);  // a symlink: its target is checked

  // Owned by someone else (nobody): that user may know the key, or change it. Only root
  // may chown; CI runs as root, and scripts/check (no root) skips just this part.
  if (::geteuid() == 0) {
    REQUIRE(::chown(path.c_str(), 65534, 65534) == 0);
    for (const auto& p : {path, link}) {
      const std::string msg = error_of([&] { (void)read_key_file(p); }, ErrorKind::usage);
      CHECK(msg.find("owned by uid 65534") != std::string::npos);
      CHECK(msg.find(p.string()) != std::string::npos);
    }
    REQUIRE(::chown(path.c_str(), 0, 0) == 0);
    CHECK(to_bytes(read_key_file(path).view()) == key);
  }

  // A FIFO with no writer, directly or through a symlink: refused at once, never waited on.
  const auto fifo = dir.path() / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const auto fifo_link = dir.path() / "fifo-link";
  std::filesystem::create_symlink(fifo, fifo_link);
  for (const auto& p : {fifo, fifo_link, std::filesystem::path("/dev/zero")}) {
    const std::string msg = error_of([&] { (void)read_key_file(p); }, ErrorKind::usage);
    CHECK(msg.find("not a regular file") != std::string::npos);
  }
}

TEST_CASE("generate_key_file writes a readable 0600 key once", "[keystore][keyfile]") {
  TempDir dir;
  const auto path = dir.path() / "new.key";
  const SecretBytes key = generate_key_file(path);
  CHECK(key.size() == 32);
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(to_bytes(read_key_file(path).view()) == to_bytes(key.view()));
  CHECK(wardfs::test::read_text(path) == hex_encode(key.view()) + "\n");
  error_of([&] { (void)generate_key_file(path); }, ErrorKind::usage);  // never overwrites
}

TEST_CASE("open_keystore builds the keystore the config names", "[keystore]") {
  TempDir dir;
  const auto key_path = dir.path() / "key";
  const Bytes kek = pattern(32, 80);
  write_file(key_path, as_bytes(hex_encode(kek)), 0600);
  const auto dek = key_of(81);
  const VolumeConfig cfg = base_config();
  const Bytes wrapped =
      make_local_keystore(SecretBytes::copy_of(kek), "x")->wrap(dek.view(), cfg.wrap_ad(1));

  auto unwraps = [&](Keystore& ks) {
    const auto got = ks.unwrap(wrapped, cfg.wrap_ad(1));
    return got.has_value() && to_bytes(got->view()) == to_bytes(dek.view());
  };
  Credentials creds;
  creds.interactive = false;
  creds.keyfile = key_path;
  CHECK(unwraps(*open_keystore(KeystoreSpec{"keyfile", "", std::nullopt}, creds)));
  creds.keyfile.reset();
  creds.trust_config_keystore = true;  // approvals of config key files: tests/keystore
  CHECK(unwraps(*open_keystore(KeystoreSpec{"keyfile", key_path.string(), std::nullopt}, creds)));
  error_of(
      [&] {
        (void)open_keystore(KeystoreSpec{"keyfile", "", std::nullopt}, creds);
      },
      ErrorKind::usage);

  // A passphrase volume, fed from a passfile: only the first line counts.
  const auto pass_path = dir.path() / "pass";
  write_file(pass_path, as_bytes("hunter2 is long enough\nsecond line\n"), 0600);
  const KdfParams kdf = small_kdf(9);
  const SecretBytes pass = SecretBytes::copy_of(as_bytes("hunter2 is long enough"));
  const Bytes wrapped_pw =
      make_local_keystore(derive_passphrase_kek(pass, kdf), "p")->wrap(dek.view(), cfg.wrap_ad(1));
  creds.passfile = pass_path;
  auto pw_ks = open_keystore(KeystoreSpec{"passphrase", "", kdf}, creds);
  const auto got = pw_ks->unwrap(wrapped_pw, cfg.wrap_ad(1));
  REQUIRE(got.has_value());
  CHECK(to_bytes(got->view()) == to_bytes(dek.view()));

  write_file(pass_path, as_bytes("\nsecret on line two\n"), 0600);
  const std::string empty = error_of(
      [&] {
        (void)open_keystore(KeystoreSpec{"passphrase", "", kdf}, creds);
      },
      ErrorKind::usage);
  CHECK(empty.find("empty") != std::string::npos);

  creds.passfile.reset();
  error_of(
      [&] {
        (void)open_keystore(KeystoreSpec{"passphrase", "", kdf}, creds);
      },
      ErrorKind::usage);
  error_of(
      [&] {
        (void)open_keystore(KeystoreSpec{"passphrase", "", std::nullopt}, creds);
      },
      ErrorKind::corrupt_volume);
  creds.keyfile = key_path;
  const std::string mismatch = error_of(
      [&] {
        (void)open_keystore(KeystoreSpec{"passphrase", "", kdf}, creds);
      },
      ErrorKind::usage);
  CHECK(mismatch.find("passphrase") != std::string::npos);
}
