// The PKCS#11 keystore against SoftHSM2: a token made in a temp dir, an AES key that
// never leaves it, AES-GCM wrapping inside the token, and the errors users meet.
#include <cstdlib>

#include "crypto/config.h"
#include "keystore/keystore.h"
#include "keystore/pkcs11_uri.h"
#include "tests/keystore/keystore_test_util.h"

using namespace wardfs;
using namespace wardfs::keystore;
using namespace wardfs::keystore::test;

namespace {

// One SoftHSM2 token dir for the whole test binary: SOFTHSM2_CONF is read when the
// module initialises, so it is set before any test loads the module.
class SoftHsm {
 public:
  SoftHsm() {
    REQUIRE(std::filesystem::exists(kDefaultPkcs11Module));
    std::filesystem::create_directory(dir_.path() / "tokens");
    write_text(conf(),
               "directories.tokendir = " + (dir_.path() / "tokens").string() +
                   "\nobjectstore.backend = file\nlog.level = ERROR\n",
               0600);
    ::setenv("SOFTHSM2_CONF", conf().c_str(), 1);
    init_token("wardfs-test");
    init_token("wardfs-other");
    write_text(pin_file(), "1234\n", 0600);
  }
  std::filesystem::path conf() const { return dir_.path() / "softhsm2.conf"; }
  std::filesystem::path pin_file() const { return dir_.path() / "pin"; }
  const std::filesystem::path& dir() const { return dir_.path(); }

 private:
  static void init_token(const std::string& label) {
    const std::string cmd = "softhsm2-util --init-token --free --label " + label +
                            " --pin 1234 --so-pin 5678 >/dev/null";
    REQUIRE(std::system(cmd.c_str()) == 0);
  }
  TempDir dir_;
};

SoftHsm& hsm() {
  static SoftHsm instance;
  return instance;
}

Credentials pin_creds() {
  Credentials creds;
  creds.interactive = false;
  creds.notify = nullptr;
  creds.pin_file = hsm().pin_file();
  creds.trust_config_keystore = true;  // approvals are tested in test_spec.cc
  return creds;
}

std::unique_ptr<Keystore> token_key(const std::string& uri, bool create = true,
                                    const Credentials& creds = pin_creds()) {
  crypto::KeystoreSpec spec{"pkcs11", uri, std::nullopt};
  NewKeystoreOptions opts;
  opts.create_token_key = create;
  return create_keystore(spec, creds, opts);
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

crypto::VolumeConfig config() {
  crypto::VolumeConfig cfg;
  cfg.volume_id = crypto::Bytes(16, 5);
  cfg.keystore.type = "pkcs11";
  return cfg;
}

}  // namespace

TEST_CASE("PKCS#11 URIs name the token, the key, the module and the PIN source", "[pkcs11]") {
  const Pkcs11Uri uri = parse_pkcs11_uri(
      "pkcs11:token=my%20token;object=wardfs-kek;manufacturer=x"
      "?module-path=/opt/hsm/lib.so&pin-source=file:/etc/wardfs/pin");
  CHECK(uri.token == "my token");
  CHECK(uri.object == "wardfs-kek");
  CHECK(uri.module_path == "/opt/hsm/lib.so");
  CHECK(uri.pin_source == "/etc/wardfs/pin");
  CHECK(pkcs11_module_for(uri) == "/opt/hsm/lib.so");
  CHECK(parse_pkcs11_uri("pkcs11:serial=42;object=k").serial == "42");
  CHECK(pkcs11_module_for(parse_pkcs11_uri("pkcs11:token=t;object=k")) == kDefaultPkcs11Module);
  CHECK(contains(error_of([] { (void)parse_pkcs11_uri("pkcs11:token=t"); }, ErrorKind::usage),
                 "object="));
  CHECK(contains(error_of([] { (void)parse_pkcs11_uri("pkcs11:object=k"); }, ErrorKind::usage),
                 "token="));
  CHECK(contains(error_of([] { (void)parse_pkcs11_uri("pkcs11:token=t;object=k?pin-value=1234"); },
                          ErrorKind::usage),
                 "pin-source"));
  error_of([] { (void)parse_pkcs11_uri("pkcs11:token=t%2;object=k"); }, ErrorKind::usage);
  error_of([] { (void)parse_pkcs11_uri("pkcs12:token=t;object=k"); }, ErrorKind::usage);
}

TEST_CASE("the token wraps and unwraps DEKs with AES-GCM bound to the AD", "[pkcs11]") {
  auto ks = token_key("pkcs11:token=wardfs-test;object=kek-a");
  CHECK(ks->identity() ==
        "pkcs11:token=wardfs-test;object=kek-a (module " + std::string(kDefaultPkcs11Module) + ")");
  const crypto::VolumeConfig cfg = config();
  const auto dek = fixed_key(90);
  const crypto::Bytes wrapped = ks->wrap(dek.view(), cfg.wrap_ad(1));
  CHECK(wrapped.size() == 12 + 32 + 16);
  CHECK(ks->wrap(dek.view(), cfg.wrap_ad(1)) != wrapped);  // fresh IV

  const auto back = ks->unwrap(wrapped, cfg.wrap_ad(1));
  REQUIRE(back.has_value());
  CHECK(to_bytes(back->view()) == to_bytes(dek.view()));
  CHECK_FALSE(ks->unwrap(wrapped, cfg.wrap_ad(2)).has_value());  // other generation
  crypto::Bytes tampered = wrapped;
  tampered[20] ^= 1;
  CHECK_FALSE(ks->unwrap(tampered, cfg.wrap_ad(1)).has_value());
  CHECK_FALSE(ks->unwrap(crypto::ByteView(wrapped).first(20), cfg.wrap_ad(1)).has_value());
  // The session still works after failed unwraps.
  CHECK(ks->unwrap(wrapped, cfg.wrap_ad(1)).has_value());

  // A later open (the next mount) finds the same key by its label.
  auto again =
      open_keystore({"pkcs11", "pkcs11:token=wardfs-test;object=kek-a", std::nullopt}, pin_creds());
  REQUIRE(again->unwrap(wrapped, cfg.wrap_ad(1)).has_value());

  // Another key, on the same or another token, does not unwrap it.
  auto other = token_key("pkcs11:token=wardfs-test;object=kek-b");
  CHECK_FALSE(other->unwrap(wrapped, cfg.wrap_ad(1)).has_value());
  auto elsewhere = token_key("pkcs11:token=wardfs-other;object=kek-a");
  CHECK_FALSE(elsewhere->unwrap(wrapped, cfg.wrap_ad(1)).has_value());
}

TEST_CASE("PKCS#11 mistakes give clear errors", "[pkcs11]") {
  (void)token_key("pkcs11:token=wardfs-test;object=kek-a");
  Credentials wrong = pin_creds();
  wrong.pin_file = hsm().dir() / "wrong-pin";
  write_text(*wrong.pin_file, "9999\n", 0600);
  CHECK(contains(
      error_of([&] { (void)token_key("pkcs11:token=wardfs-test;object=kek-a", false, wrong); },
               ErrorKind::wrong_key),
      "wrong PIN for PKCS#11 token 'wardfs-test'"));
  CHECK(contains(error_of([] { (void)token_key("pkcs11:token=wardfs-test;object=nope", false); },
                          ErrorKind::wrong_key),
                 "has no AES key labelled 'nope'"));
  const std::string no_token = error_of(
      [] { (void)token_key("pkcs11:token=absent;object=kek-a", false); }, ErrorKind::wrong_key);
  CHECK(contains(no_token, "no PKCS#11 token 'absent'"));
  CHECK(contains(no_token, "wardfs-test"));  // lists what is there
  CHECK(contains(
      error_of([] { (void)token_key("pkcs11:token=t;object=k?module-path=/nonexistent.so"); },
               ErrorKind::usage),
      "cannot load the PKCS#11 module /nonexistent.so"));

  Credentials no_pin;
  no_pin.interactive = false;
  no_pin.notify = nullptr;
  ::unsetenv("WARDFS_PKCS11_PIN");
  CHECK(contains(
      error_of([&] { (void)token_key("pkcs11:token=wardfs-test;object=kek-a", false, no_pin); },
               ErrorKind::usage),
      "WARDFS_PKCS11_PIN"));
  const auto loose = hsm().dir() / "loose-pin";
  write_text(loose, "1234\n", 0644);
  Credentials loose_creds = pin_creds();
  loose_creds.pin_file = loose;
  CHECK(contains(
      error_of(
          [&] { (void)token_key("pkcs11:token=wardfs-test;object=kek-a", false, loose_creds); },
          ErrorKind::usage),
      "chmod 600"));
}

TEST_CASE("the PIN comes from the environment or the URI's pin-source", "[pkcs11]") {
  (void)token_key("pkcs11:token=wardfs-test;object=kek-a");
  Credentials none;
  none.interactive = false;
  none.notify = nullptr;
  ::setenv("WARDFS_PKCS11_PIN", "1234", 1);
  CHECK_NOTHROW(token_key("pkcs11:token=wardfs-test;object=kek-a", false, none));
  ::setenv("WARDFS_PKCS11_PIN", "0000", 1);
  error_of([&] { (void)token_key("pkcs11:token=wardfs-test;object=kek-a", false, none); },
           ErrorKind::wrong_key);
  ::unsetenv("WARDFS_PKCS11_PIN");
  const std::string uri =
      "pkcs11:token=wardfs-test;object=kek-a?pin-source=file:" + hsm().pin_file().string();
  CHECK_NOTHROW(token_key(uri, false, none));
  CHECK(parse_keystore_arg(uri).location == uri);  // the config keeps the URI, never a PIN
}
