// What a machine approves, since configs live in the untrusted backing directory: the key
// file a config names, and the volume id at each backing directory path.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <optional>

#include "crypto/config.h"
#include "keystore/keystore.h"
#include "keystore/known_volumes.h"
#include "tests/keystore/keystore_test_util.h"

using namespace wardfs;
using namespace wardfs::keystore;
using namespace wardfs::keystore::test;

namespace {

// Points XDG_CONFIG_HOME at a temp dir of its own for its lifetime, then puts it back.
class ScopedConfigHome {
 public:
  ScopedConfigHome() {
    if (const char* old = std::getenv("XDG_CONFIG_HOME")) old_ = old;
    ::setenv("XDG_CONFIG_HOME", dir_.path().c_str(), 1);
  }
  ~ScopedConfigHome() {
    if (old_) {
      ::setenv("XDG_CONFIG_HOME", old_->c_str(), 1);
    } else {
      ::unsetenv("XDG_CONFIG_HOME");
    }
  }
  std::filesystem::path file(const std::string& name) const {
    return dir_.path() / "wardfs" / name;
  }

 private:
  TempDir dir_;
  std::optional<std::string> old_;
};

Credentials quiet_credentials() {
  Credentials creds;
  creds.interactive = false;
  creds.notify = nullptr;
  return creds;
}

crypto::Bytes id_of(std::uint8_t seed) {
  crypto::Bytes id(crypto::kVolumeIdSize);
  for (std::size_t i = 0; i < id.size(); ++i) id[i] = static_cast<std::uint8_t>(seed + i);
  return id;
}

std::size_t count_of(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("a key file named by a config is read only once approved", "[trust][keyfile]") {
  const ScopedConfigHome home;
  TempDir dir;
  const auto key = dir.path() / "key";
  write_text(key, crypto::hex_encode(to_bytes(fixed_key(4).view())) + "\n", 0600);
  const crypto::KeystoreSpec spec{"keyfile", key.string(), std::nullopt};
  Credentials creds = quiet_credentials();

  const std::string msg = error_of([&] { (void)open_keystore(spec, creds); }, ErrorKind::usage);
  CHECK(msg.find("not approved") != std::string::npos);
  CHECK(msg.find(key.string()) != std::string::npos);
  CHECK(msg.find(home.file("trusted-keystores").string()) != std::string::npos);
  CHECK(msg.find("--keyfile") != std::string::npos);

  // Unapproved, it is never even opened: a FIFO there cannot hang the mount.
  const auto fifo = dir.path() / "fifo";
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
  const auto start = std::chrono::steady_clock::now();
  CHECK(error_of(
            [&] {
              (void)open_keystore({"keyfile", fifo.string(), std::nullopt}, creds);
            },
            ErrorKind::usage)
            .find("not approved") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));

  // The user's own --keyfile, or an administrator's keystore= option, needs no approval.
  creds.keyfile = key;
  CHECK_NOTHROW(open_keystore(spec, creds));
  creds.keyfile.reset();
  creds.expected_keystore = "keyfile:" + key.string();
  CHECK_NOTHROW(open_keystore(spec, creds));
  creds.expected_keystore.reset();

  // create_keystore (init, rewrap --to: the user typed the path) approves it.
  crypto::KeystoreSpec given = parse_keystore_arg("keyfile:" + key.string());
  (void)create_keystore(given, creds, {});
  CHECK(read_text(home.file("trusted-keystores")).find(R"(["keyfile",")" + key.string() + "\"]") !=
        std::string::npos);
  CHECK_NOTHROW(open_keystore(spec, creds));
  // Another path is not approved by the first.
  error_of(
      [&] {
        (void)open_keystore({"keyfile", key.string() + "2", std::nullopt}, creds);
      },
      ErrorKind::usage);
}

TEST_CASE("a machine remembers the volume id approved at a path", "[trust][known-volumes]") {
  const ScopedConfigHome home;
  TempDir dir;
  const auto cipher = dir.path() / "cipher";
  const crypto::Bytes mine = id_of(1);
  const crypto::Bytes theirs = id_of(100);

  // Unknown path: nothing to compare with (the caller remembers it once it unlocks).
  CHECK_FALSE(known_volume(cipher).has_value());
  CHECK_NOTHROW(require_known_volume(cipher, theirs));

  remember_volume(cipher, mine);
  REQUIRE(known_volume(cipher).has_value());
  CHECK(known_volume(cipher)->id == crypto::base64url_encode(mine));
  CHECK(known_volume(cipher)->file == home.file("known-volumes"));
  CHECK_NOTHROW(require_known_volume(cipher, mine));
  // The same directory however it is spelt.
  CHECK_NOTHROW(require_known_volume(dir.path() / "cipher/", mine));
  CHECK_NOTHROW(require_known_volume(dir.path() / "." / "cipher", mine));
  struct stat st {};
  REQUIRE(::stat(home.file("known-volumes").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);

  // Another volume at that path: refused, saying what changed and how to approve it.
  const std::string msg = error_of([&] { require_known_volume(cipher, theirs); }, ErrorKind::usage);
  CHECK(msg.find(cipher.string()) != std::string::npos);
  CHECK(msg.find(crypto::base64url_encode(mine)) != std::string::npos);
  CHECK(msg.find(crypto::base64url_encode(theirs)) != std::string::npos);
  const std::string approve =
      "echo '" + known_volume_line(cipher, theirs) + "' >> " + home.file("known-volumes").string();
  CHECK(msg.find(approve) != std::string::npos);
  CHECK(msg.find("(in " + home.file("known-volumes").string() + ")") != std::string::npos);
  // Another path is not affected.
  CHECK_NOTHROW(require_known_volume(dir.path() / "other", theirs));

  // Remembering again adds nothing; approving the new id (the last line counts) does.
  remember_volume(cipher, mine);
  CHECK(count_of(read_text(home.file("known-volumes")), "\n") == 1);
  remember_volume(cipher, theirs);
  CHECK_NOTHROW(require_known_volume(cipher, theirs));
  error_of([&] { require_known_volume(cipher, mine); }, ErrorKind::usage);

  // Lines that are not ["path","id"] are skipped, not fatal.
  {
    std::ofstream out(home.file("known-volumes"), std::ios::app);
    out << "not json\n[1,2]\n";
  }
  CHECK_NOTHROW(require_known_volume(cipher, theirs));
}
