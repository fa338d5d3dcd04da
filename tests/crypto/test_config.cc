// The volume config: round trips, atomic saves, and an error naming the field for
// every kind of malformed input.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>

#include "base/errors.h"
#include "crypto/config.h"
#include "tests/crypto/test_util.h"
#include "volume/config_file.h"  // the [file] cases: the config on disk

using namespace wardfs::crypto;
using nlohmann::json;
using wardfs::ErrorKind;
using wardfs::WardError;
using wardfs::test::pattern;
using wardfs::volume::ConfigLock;
using wardfs::volume::load_config;
using wardfs::volume::save_config_atomic;

namespace {

VolumeConfig sample_config() {
  VolumeConfig cfg;
  cfg.version = 1;
  cfg.volume_id = pattern(16, 1);
  cfg.cipher = CipherId::xchacha20poly1305;
  cfg.chunk_size = 65536;
  cfg.holes = HolesPolicy::never;
  cfg.keystore.type = "passphrase";
  cfg.keystore.kdf = KdfParams{3, 64ULL << 20, pattern(16, 2)};
  cfg.active_generation = 2;
  cfg.keys.push_back(WrappedKey{1, pattern(72, 3), "2024-01-02T03:04:05Z"});
  cfg.keys.push_back(WrappedKey{2, pattern(72, 4), "2024-06-07T08:09:10Z"});
  return cfg;
}

json sample_json() { return json::parse(serialize_config(sample_config())); }

// Parses and expects a corrupt_volume error whose message names `field`.
void expect_error(const std::string& text, const std::string& field) {
  INFO("input: " << text.substr(0, 300));
  INFO("expected the message to name: " << field);
  try {
    (void)parse_config(text);
    FAIL("parse_config accepted the input");
  } catch (const WardError& e) {
    INFO("message: " << e.what());
    CHECK(e.kind() == ErrorKind::corrupt_volume);
    CHECK(std::string(e.what()).find(field) != std::string::npos);
  } catch (const std::exception& e) {
    FAIL_CHECK("parse_config threw something other than WardError: " << e.what());
  }
}

void expect_error_doc(const json& doc, const std::string& field) {
  expect_error(doc.dump(), field);
}

void check_equal(const VolumeConfig& a, const VolumeConfig& b) {
  CHECK(a.version == b.version);
  CHECK(a.volume_id == b.volume_id);
  CHECK(a.cipher == b.cipher);
  CHECK(a.chunk_size == b.chunk_size);
  CHECK(a.holes == b.holes);
  CHECK(a.keystore.type == b.keystore.type);
  CHECK(a.keystore.location == b.keystore.location);
  REQUIRE(a.keystore.kdf.has_value() == b.keystore.kdf.has_value());
  if (a.keystore.kdf) {
    CHECK(a.keystore.kdf->opslimit == b.keystore.kdf->opslimit);
    CHECK(a.keystore.kdf->memlimit == b.keystore.kdf->memlimit);
    CHECK(a.keystore.kdf->salt == b.keystore.kdf->salt);
  }
  CHECK(a.active_generation == b.active_generation);
  REQUIRE(a.keys.size() == b.keys.size());
  for (std::size_t i = 0; i < a.keys.size(); ++i) {
    CHECK(a.keys[i].generation == b.keys[i].generation);
    CHECK(a.keys[i].wrapped == b.keys[i].wrapped);
    CHECK(a.keys[i].created == b.keys[i].created);
  }
}

}  // namespace

TEST_CASE("config serialize/parse round trip", "[config]") {
  const VolumeConfig cfg = sample_config();
  const std::string text = serialize_config(cfg);
  const VolumeConfig back = parse_config(text);
  check_equal(cfg, back);
  CHECK(back.wrap_ad(1) == cfg.wrap_ad(1));
  CHECK(serialize_config(back) == text);
  CHECK(text.back() == '\n');

  VolumeConfig keyfile = sample_config();
  keyfile.cipher = CipherId::aes256gcm;
  keyfile.chunk_size = 4096;
  keyfile.holes = HolesPolicy::allow;
  keyfile.keystore = KeystoreSpec{"keyfile", "/etc/wardfs/key", std::nullopt};
  keyfile.active_generation = 1;
  check_equal(keyfile, parse_config(serialize_config(keyfile)));

  for (const char* type : {"command", "pkcs11"}) {
    VolumeConfig other = keyfile;
    other.keystore = KeystoreSpec{type, "some location", std::nullopt};
    check_equal(other, parse_config(serialize_config(other)));
  }
  for (std::uint32_t size : {4096U, 8192U, 65536U, 1U << 20}) {
    VolumeConfig c = keyfile;
    c.chunk_size = size;
    CHECK(parse_config(serialize_config(c)).chunk_size == size);
  }
}

TEST_CASE("the serialized config has the documented fields", "[config]") {
  const json doc = sample_json();
  CHECK(doc.at("format") == "wardfs");
  CHECK(doc.at("version") == 1);
  CHECK(doc.at("volume_id") == base64url_encode(pattern(16, 1)));
  CHECK(doc.at("cipher") == "xchacha20-poly1305");
  CHECK(doc.at("chunk_size") == 65536);
  CHECK(doc.at("holes") == "never");
  CHECK(doc.at("keystore").at("type") == "passphrase");
  CHECK(doc.at("keystore").at("kdf").at("algorithm") == "argon2id13");
  CHECK(doc.at("active_generation") == 2);
  CHECK(doc.at("keys").size() == 2);
  CHECK(doc.at("keys")[1].at("generation") == 2);
}

TEST_CASE("truncated or non-JSON config", "[config][malformed]") {
  const std::string text = serialize_config(sample_config());
  const std::size_t closing = text.rfind('}');
  for (std::size_t n = 0; n < closing; n += 7) expect_error(text.substr(0, n), "JSON");
  expect_error(text.substr(0, closing), "JSON");
  expect_error("{\"format\": \"wardfs\",}", "JSON");
  expect_error("\xff\xfe", "JSON");
}

// nlohmann-json reports a number too large for a double as json::out_of_range, not a
// parse error; it must still become a config error (found by fuzz_config).
TEST_CASE("config with a number out of double range", "[config][malformed]") {
  expect_error("{\"version\": 1e400}", "JSON");
  expect_error("[1e999]", "JSON");
}

TEST_CASE("config that is not an object", "[config][malformed]") {
  for (const char* text : {"[]", "1", "\"wardfs\"", "null", "true", "[{\"format\":\"wardfs\"}]"}) {
    expect_error(text, "top level");
  }
}

TEST_CASE("config missing a required field", "[config][malformed]") {
  for (const char* field : {"format", "version", "volume_id", "cipher", "chunk_size", "holes",
                            "keystore", "active_generation", "keys"}) {
    json doc = sample_json();
    doc.erase(field);
    expect_error_doc(doc, std::string("'") + field + "'");
  }
  for (const char* field : {"type", "kdf"}) {
    json doc = sample_json();
    doc["keystore"].erase(field);
    expect_error_doc(doc, std::string("'keystore.") + field + "'");
  }
  for (const char* field : {"algorithm", "opslimit", "memlimit", "salt"}) {
    json doc = sample_json();
    doc["keystore"]["kdf"].erase(field);
    expect_error_doc(doc, std::string("'keystore.kdf.") + field + "'");
  }
  for (const char* field : {"generation", "wrapped"}) {
    json doc = sample_json();
    doc["keys"][1].erase(field);
    expect_error_doc(doc, std::string("'keys[1].") + field + "'");
  }
  // "created" is informational and may be absent.
  json doc = sample_json();
  doc["keys"][0].erase("created");
  CHECK(parse_config(doc.dump()).keys[0].created.empty());
}

TEST_CASE("config fields of the wrong type", "[config][malformed]") {
  const std::pair<const char*, json> cases[] = {
      {"format", 1},
      {"version", "1"},
      {"version", -1},
      {"version", 1.5},
      {"volume_id", 5},
      {"cipher", 2},
      {"chunk_size", "4096"},
      {"chunk_size", 4096.0},
      {"holes", true},
      {"keystore", "passphrase"},
      {"active_generation", "2"},
      {"active_generation", -2},
      {"keys", json::object()},
      {"keys", "x"},
  };
  for (const auto& [field, value] : cases) {
    json doc = sample_json();
    doc[field] = value;
    expect_error_doc(doc, std::string("'") + field + "'");
  }
  json doc = sample_json();
  doc["keys"][0] = 1;
  expect_error_doc(doc, "'keys[0]'");
  doc = sample_json();
  doc["keys"][0]["generation"] = "1";
  expect_error_doc(doc, "'keys[0].generation'");
  doc = sample_json();
  doc["keys"][0]["wrapped"] = json::array();
  expect_error_doc(doc, "'keys[0].wrapped'");
  doc = sample_json();
  doc["keystore"]["type"] = 7;
  expect_error_doc(doc, "'keystore.type'");
  doc = sample_json();
  doc["keystore"]["location"] = 7;
  expect_error_doc(doc, "'keystore.location'");
  doc = sample_json();
  doc["keystore"]["kdf"] = "argon2id13";
  expect_error_doc(doc, "'keystore.kdf'");
  doc = sample_json();
  doc["keystore"]["kdf"]["opslimit"] = "3";
  expect_error_doc(doc, "'keystore.kdf.opslimit'");
}

TEST_CASE("config field values out of range", "[config][malformed]") {
  auto with = [](const char* field, json value) {
    json doc = sample_json();
    doc[field] = std::move(value);
    return doc;
  };
  expect_error_doc(with("format", "wardfs2"), "'format'");
  expect_error_doc(with("version", 2), "'version'");
  expect_error_doc(with("version", 0), "'version'");
  expect_error_doc(with("version", 1ULL << 17), "'version'");
  for (std::uint64_t size : {0ULL, 1000ULL, 1ULL << 21, 3000ULL, 2048ULL, 4097ULL, 1ULL << 40}) {
    expect_error_doc(with("chunk_size", size), "'chunk_size'");
  }
  expect_error_doc(with("cipher", "aes-128-gcm"), "'cipher'");
  expect_error_doc(with("cipher", "AES-256-GCM"), "'cipher'");
  expect_error_doc(with("holes", "sometimes"), "'holes'");
  expect_error_doc(with("volume_id", "not base64!"), "'volume_id'");
  expect_error_doc(with("volume_id", base64url_encode(pattern(15))), "'volume_id'");
  expect_error_doc(with("volume_id", base64url_encode(pattern(17))), "'volume_id'");
  expect_error_doc(with("active_generation", 0), "'active_generation'");
  expect_error_doc(with("active_generation", 3), "'active_generation'");  // no key for it
  expect_error_doc(with("keys", json::array()), "'keys'");

  json doc = sample_json();
  doc["keys"][1]["generation"] = 1;
  expect_error_doc(doc, "'keys[1].generation'");  // duplicate generation
  doc = sample_json();
  doc["keys"][0]["wrapped"] = base64url_encode(pattern(31));
  expect_error_doc(doc, "'keys[0].wrapped'");
  doc = sample_json();
  doc["keys"][0]["wrapped"] = "***";
  expect_error_doc(doc, "'keys[0].wrapped'");
  doc = sample_json();
  doc["keys"][0]["generation"] = 0;
  expect_error_doc(doc, "'keys[0].generation'");
  doc = sample_json();
  doc["keystore"]["type"] = "tpm";
  expect_error_doc(doc, "'keystore.type'");
  doc = sample_json();
  doc["keystore"]["kdf"]["algorithm"] = "scrypt";
  expect_error_doc(doc, "'keystore.kdf.algorithm'");
  doc = sample_json();
  doc["keystore"]["kdf"]["opslimit"] = 0;
  expect_error_doc(doc, "'keystore.kdf.opslimit'");
  doc = sample_json();
  doc["keystore"]["kdf"]["memlimit"] = 1024;
  expect_error_doc(doc, "'keystore.kdf.memlimit'");
  doc = sample_json();
  doc["keystore"]["kdf"]["salt"] = base64url_encode(pattern(8));
  expect_error_doc(doc, "'keystore.kdf.salt'");
}

TEST_CASE("valid_chunk_size", "[config]") {
  CHECK(valid_chunk_size(4096));
  CHECK(valid_chunk_size(1U << 20));
  CHECK_FALSE(valid_chunk_size(0));
  CHECK_FALSE(valid_chunk_size(2048));
  CHECK_FALSE(valid_chunk_size(4095));
  CHECK_FALSE(valid_chunk_size(12288));
  CHECK_FALSE(valid_chunk_size(1U << 21));
  CHECK_FALSE(valid_chunk_size(1ULL << 32));
}

TEST_CASE("key_for finds wrapped keys by generation", "[config]") {
  const VolumeConfig cfg = sample_config();
  REQUIRE(cfg.key_for(2) != nullptr);
  CHECK(cfg.key_for(2)->wrapped == pattern(72, 4));
  CHECK(cfg.key_for(3) == nullptr);
  CHECK(cfg.key_for(0) == nullptr);
}

TEST_CASE("save_config_atomic and load_config", "[config][file]") {
  wardfs::test::TempDir dir;
  VolumeConfig cfg = sample_config();
  save_config_atomic(dir.path(), cfg);
  const auto path = dir.path() / kConfigFileName;
  REQUIRE(std::filesystem::exists(path));
  CHECK_FALSE(std::filesystem::exists(dir.path() / "wardfs.conf.tmp"));
  CHECK(wardfs::test::read_text(path) == serialize_config(cfg));
  check_equal(cfg, load_config(dir.path()));
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 077) == 0);  // nobody else may read the wrapped keys

  // Replacing it (a rotation) leaves exactly the new file.
  cfg.keys.push_back(WrappedKey{3, pattern(72, 5), "2025-01-01T00:00:00Z"});
  cfg.active_generation = 3;
  save_config_atomic(dir.path(), cfg);
  check_equal(cfg, load_config(dir.path()));
  std::size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir.path())) ++entries;
  CHECK(entries == 1);
}

TEST_CASE("load_config errors name the file and the field", "[config][file]") {
  wardfs::test::TempDir dir;
  try {
    (void)load_config(dir.path());
    FAIL("loaded a config that does not exist");
  } catch (const WardError& e) {
    CHECK(e.kind() == ErrorKind::corrupt_volume);
    CHECK(std::string(e.what()).find("wardfs.conf") != std::string::npos);
    CHECK(std::string(e.what()).find("wardfs init") != std::string::npos);
  }
  json doc = sample_json();
  doc["chunk_size"] = 3000;
  const std::string text = doc.dump();
  wardfs::test::write_file(dir.path() / kConfigFileName, as_bytes(text), 0600);
  try {
    (void)load_config(dir.path());
    FAIL("loaded a bad config");
  } catch (const WardError& e) {
    CHECK(e.kind() == ErrorKind::corrupt_volume);
    CHECK(std::string(e.what()).find((dir.path() / "wardfs.conf").string()) != std::string::npos);
    CHECK(std::string(e.what()).find("'chunk_size'") != std::string::npos);
  }
}

TEST_CASE("save_config_atomic fails cleanly when it cannot write", "[config][file]") {
  wardfs::test::TempDir dir;
  const auto missing = dir.path() / "does-not-exist";
  try {
    save_config_atomic(missing, sample_config());
    FAIL("saved into a missing directory");
  } catch (const WardError& e) {
    CHECK(e.kind() == ErrorKind::io);
    CHECK(std::string(e.what()).find("wardfs.conf.tmp") != std::string::npos);
  }
  CHECK_FALSE(std::filesystem::exists(missing));
}

TEST_CASE("ConfigLock holds an exclusive flock on wardfs.lock for its lifetime", "[config][file]") {
  wardfs::test::TempDir dir;
  const auto lock_path = dir.path() / "wardfs.lock";
  auto try_lock = [&] {
    const int fd = ::open(lock_path.c_str(), O_RDWR | O_CLOEXEC);
    REQUIRE(fd >= 0);
    const bool got = ::flock(fd, LOCK_EX | LOCK_NB) == 0;
    ::close(fd);
    return got;
  };
  {
    const ConfigLock lock(dir.path());
    REQUIRE(std::filesystem::exists(lock_path));
    struct stat st {};
    REQUIRE(::stat(lock_path.c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0600);
    CHECK_FALSE(try_lock());  // another open file description cannot take it
  }
  CHECK(try_lock());  // released when the lock object dies
  try {
    const ConfigLock lock(dir.path() / "missing");
    FAIL("locked a missing directory");
  } catch (const WardError& e) {
    CHECK(e.kind() == ErrorKind::io);
    CHECK(std::string(e.what()).find("wardfs.lock") != std::string::npos);
  }
}

TEST_CASE("utc_now_iso8601 is UTC ISO 8601 to the second", "[config]") {
  const std::string now = utc_now_iso8601();
  CHECK(std::regex_match(now, std::regex(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z)")));
}

// Someone who can write the backing directory (in the threat model) may plant a symlink
// at wardfs.conf.tmp; saving must replace it, never write through it.
TEST_CASE("save_config_atomic does not write through a planted symlink", "[config][file]") {
  wardfs::test::TempDir dir;
  const auto victim = dir.path() / "victim";
  wardfs::test::write_file(victim, as_bytes("precious\n"), 0600);
  std::filesystem::create_symlink(victim, dir.path() / "wardfs.conf.tmp");
  try {
    save_config_atomic(dir.path(), sample_config());
  } catch (const WardError&) {
    // Refusing is fine; writing through the link is not.
  }
  CHECK(wardfs::test::read_text(victim) == "precious\n");
  CHECK_FALSE(std::filesystem::is_symlink(dir.path() / "wardfs.conf.tmp"));
}

// A crash between creating the temp file and renaming it leaves wardfs.conf.tmp behind,
// possibly read-only; the next save must still succeed for its non-root owner. Root
// ignores file modes, so the save runs in a child that drops to uid/gid 65534.
TEST_CASE("save_config_atomic recovers from a leftover temp file", "[config][file]") {
  wardfs::test::TempDir dir;
  const auto tmp = dir.path() / "wardfs.conf.tmp";
  wardfs::test::write_file(tmp, as_bytes("half-written"), 0400);
  if (::geteuid() == 0) {
    REQUIRE(::chown(dir.path().c_str(), 65534, 65534) == 0);
    REQUIRE(::chown(tmp.c_str(), 65534, 65534) == 0);
  }
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    int code = 0;
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) code = 3;
    if (code == 0) {
      try {
        save_config_atomic(dir.path(), sample_config());
      } catch (...) {
        code = 1;
      }
    }
    ::_exit(code);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) != 3);
  CHECK(WEXITSTATUS(status) == 0);
  CHECK_FALSE(std::filesystem::exists(tmp));
}
