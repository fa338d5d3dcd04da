// --keystore arguments and create_keystore for the local backends.
#include <sodium.h>
#include <sys/stat.h>

#include "crypto/config.h"
#include "keystore/keystore.h"
#include "tests/keystore/keystore_test_util.h"

using namespace wardfs;
using namespace wardfs::keystore;
using namespace wardfs::keystore::test;

TEST_CASE("--keystore arguments map to config keystore specs", "[spec]") {
  CHECK(parse_keystore_arg("passphrase").type == "passphrase");
  const auto kf = parse_keystore_arg("keyfile:rel/key");
  CHECK(kf.type == "keyfile");
  CHECK(kf.location == (std::filesystem::current_path() / "rel/key").string());
  const auto cmd = parse_keystore_arg("command:vault kv get -field=key secret/wardfs");
  CHECK(cmd.type == "command");
  CHECK(cmd.location == "vault kv get -field=key secret/wardfs");
  CHECK(parse_keystore_arg("command:sh:pass show wardfs | head -1").location ==
        "sh:pass show wardfs | head -1");
  const auto p11 = parse_keystore_arg("pkcs11:token=t;object=k");
  CHECK(p11.type == "pkcs11");
  CHECK(p11.location == "pkcs11:token=t;object=k");
  for (const char* bad : {"", "keyfile:", "command:", "command:'x", "pkcs11:token=t", "tpm:0"}) {
    INFO(bad);
    error_of([&] { (void)parse_keystore_arg(bad); }, ErrorKind::usage);
  }
}

TEST_CASE("create_keystore fills in what the config must keep", "[spec]") {
  TempDir dir;
  Credentials creds;
  creds.interactive = false;
  creds.notify = nullptr;
  creds.passfile = dir.path() / "pass";
  write_text(*creds.passfile, "correct horse\n", 0600);
  NewKeystoreOptions opts;
  opts.kdf_ops = 1;
  opts.kdf_mem = 8 << 20;
  opts.allow_weak_kdf = true;  // fast; the floor has its own test
  crypto::KeystoreSpec spec = parse_keystore_arg("passphrase");
  auto ks = create_keystore(spec, creds, opts);
  REQUIRE(spec.kdf.has_value());
  CHECK(spec.kdf->opslimit == 1);
  CHECK(spec.kdf->memlimit == 8U << 20);
  CHECK(spec.kdf->salt.size() == crypto_pwhash_SALTBYTES);
  const crypto::ByteView ad = crypto::as_bytes("ad");
  const auto dek = fixed_key(3);
  const auto wrapped = ks->wrap(dek.view(), ad);
  CHECK(open_keystore(spec, creds)->unwrap(wrapped, ad).has_value());

  // A second passphrase keystore gets a new salt: the same passphrase, another KEK.
  crypto::KeystoreSpec spec2 = parse_keystore_arg("passphrase");
  (void)create_keystore(spec2, creds, opts);
  CHECK(spec2.kdf->salt != spec.kdf->salt);
  CHECK_FALSE(open_keystore(spec2, creds)->unwrap(wrapped, ad).has_value());

  crypto::KeystoreSpec kf = parse_keystore_arg("keyfile:" + (dir.path() / "key").string());
  error_of([&] { (void)create_keystore(kf, creds, {}); }, ErrorKind::usage);  // missing
  NewKeystoreOptions create;
  create.create_keyfile = true;
  auto kks = create_keystore(kf, creds, create);
  CHECK(kks->identity() == "keyfile:" + (dir.path() / "key").string());
  CHECK((std::filesystem::status(dir.path() / "key").permissions() &
         std::filesystem::perms::group_read) == std::filesystem::perms::none);
  ::chmod((dir.path() / "key").c_str(), 0644);
  creds.passfile.reset();  // a passphrase is never used for another keystore
  CHECK(error_of([&] { (void)open_keystore(kf, creds); }, ErrorKind::usage).find("chmod 600") !=
        std::string::npos);
}

namespace {

// Keeps the tests' approvals out of the real ~/.config: XDG_CONFIG_HOME points to a
// temp dir for the whole test binary (set before main, so before any test runs).
struct TempConfigHome {
  TempConfigHome() {
    char tmpl[] = "/tmp/wardfs-ks-xdg-XXXXXX";
    if (::mkdtemp(tmpl) != nullptr) path = tmpl;
    ::setenv("XDG_CONFIG_HOME", path.c_str(), 1);
  }
  ~TempConfigHome() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string path;
};
const TempConfigHome config_home;

}  // namespace

TEST_CASE("command and pkcs11 keystores named by a config run only once approved", "[trust]") {
  const std::string key_hex = crypto::hex_encode(to_bytes(fixed_key(9).view()));
  TempDir dir;
  const auto marker = dir.path() / "ran";
  const crypto::KeystoreSpec spec{"command", "sh:touch " + marker.string() + "; echo " + key_hex,
                                  std::nullopt};
  Credentials creds;
  creds.interactive = false;
  creds.notify = nullptr;
  const std::string msg = error_of([&] { (void)open_keystore(spec, creds); }, ErrorKind::usage);
  CHECK(msg.find("not approved") != std::string::npos);
  CHECK(msg.find(config_home.path + "/wardfs/trusted-keystores") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(marker));  // never ran
  const crypto::KeystoreSpec p11{"pkcs11", "pkcs11:token=t;object=k?module-path=/tmp/evil.so",
                                 std::nullopt};
  CHECK(error_of([&] { (void)open_keystore(p11, creds); }, ErrorKind::usage).find("PKCS#11") !=
        std::string::npos);

  // create_keystore (init, rewrap --to: the user typed the spec) approves it.
  crypto::KeystoreSpec given = spec;
  (void)create_keystore(given, creds, {});
  CHECK(std::filesystem::exists(marker));
  std::filesystem::remove(marker);
  CHECK_NOTHROW(open_keystore(spec, creds));
  CHECK(std::filesystem::exists(marker));
  const auto file = std::filesystem::path(config_home.path) / "wardfs" / "trusted-keystores";
  struct stat st {};
  REQUIRE(::stat(file.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(read_text(file).find("[\"command\",\"sh:touch ") != std::string::npos);
  // Approving twice adds no second line.
  (void)create_keystore(given, creds, {});
  const std::string text = read_text(file);
  const auto first = text.find("sh:touch ");
  CHECK(text.find("sh:touch ", first + 1) == std::string::npos);

  // Another command is not approved by the first.
  crypto::KeystoreSpec other = spec;
  other.location += " ";
  error_of([&] { (void)open_keystore(other, creds); }, ErrorKind::usage);
  creds.trust_config_keystore = true;
  CHECK_NOTHROW(open_keystore(other, creds));
}
