// --keystore arguments and create_keystore for the local backends.
#include <sodium.h>

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
  CHECK(error_of([&] { (void)open_keystore(kf, creds); }, ErrorKind::usage).find("chmod 600") !=
        std::string::npos);
}
