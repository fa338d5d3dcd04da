// Local secrets: the Argon2id floor and passphrase files only their owner can read.
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include "crypto/config.h"
#include "keystore/keystore.h"
#include "tests/keystore/keystore_test_util.h"

using namespace wardfs;
using namespace wardfs::keystore;
using namespace wardfs::keystore::test;

namespace {

crypto::KdfParams params(std::uint64_t ops, std::uint64_t mem) {
  crypto::KdfParams p;
  p.opslimit = ops;
  p.memlimit = mem;
  return p;
}

Credentials passfile_credentials(const std::filesystem::path& file) {
  Credentials creds;
  creds.interactive = false;
  creds.notify = nullptr;
  creds.passfile = file;
  return creds;
}

}  // namespace

TEST_CASE("the Argon2id floor is libsodium's INTERACTIVE work and memory", "[kdf]") {
  constexpr std::uint64_t MiB = 1 << 20;
  CHECK_FALSE(kdf_below_floor(
      params(crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE)));
  CHECK_FALSE(kdf_below_floor(params(3, 256 * MiB)));   // the default
  CHECK_FALSE(kdf_below_floor(params(1, 2048 * MiB)));  // RFC 9106's first choice
  CHECK(kdf_below_floor(params(1, 8 * MiB)));
  CHECK(kdf_below_floor(params(1, 64 * MiB)));  // half the work
  CHECK(kdf_below_floor(params(1000, 8192)));   // memory is the point
  CHECK(kdf_below_floor(params(1U << 20, 32 * MiB)));
}

TEST_CASE("init refuses weak Argon2id unless asked for it explicitly", "[kdf]") {
  TempDir dir;
  write_text(dir.path() / "pass", "correct horse\n", 0600);
  const Credentials creds = passfile_credentials(dir.path() / "pass");
  NewKeystoreOptions weak;
  weak.kdf_ops = 1;
  weak.kdf_mem = 8 << 10;
  crypto::KeystoreSpec spec = parse_keystore_arg("passphrase");
  const std::string why =
      error_of([&] { (void)create_keystore(spec, creds, weak); }, ErrorKind::usage);
  CHECK(why.find("too weak") != std::string::npos);
  CHECK(why.find("--kdf-mem 64M") != std::string::npos);
  weak.allow_weak_kdf = true;
  CHECK(create_keystore(spec, creds, weak) != nullptr);
}

TEST_CASE("edited Argon2id parameters cannot unlock: they change the KEK", "[kdf]") {
  // Why a weakened config only warns at mount: the parameters are bound to the wrapped
  // keys through the KEK, so an attacker's weaker ones fail like a wrong passphrase.
  TempDir dir;
  write_text(dir.path() / "pass", "correct horse\n", 0600);
  const Credentials creds = passfile_credentials(dir.path() / "pass");
  NewKeystoreOptions opts;
  opts.kdf_ops = 2;
  opts.kdf_mem = 1 << 20;
  opts.allow_weak_kdf = true;
  crypto::KeystoreSpec spec = parse_keystore_arg("passphrase");
  auto ks = create_keystore(spec, creds, opts);
  const crypto::ByteView ad = crypto::as_bytes("ad");
  const auto wrapped = ks->wrap(fixed_key(5).view(), ad);
  CHECK(open_keystore(spec, creds)->unwrap(wrapped, ad).has_value());
  crypto::KeystoreSpec edited = spec;
  edited.kdf->opslimit = 1;
  CHECK_FALSE(open_keystore(edited, creds)->unwrap(wrapped, ad).has_value());
  edited = spec;
  edited.kdf->memlimit = 8 << 10;
  CHECK_FALSE(open_keystore(edited, creds)->unwrap(wrapped, ad).has_value());
}

TEST_CASE("a passphrase file must be private to its owner, the user or root", "[passfile]") {
  TempDir dir;
  const auto file = dir.path() / "pass";
  write_text(file, "correct horse\n", 0600);
  crypto::KeystoreSpec spec = parse_keystore_arg("passphrase");
  spec.kdf = params(1, 8 << 10);
  spec.kdf->salt.assign(crypto_pwhash_SALTBYTES, 7);
  const Credentials creds = passfile_credentials(file);
  CHECK(open_keystore(spec, creds) != nullptr);

  ::chmod(file.c_str(), 0644);
  CHECK(error_of([&] { (void)open_keystore(spec, creds); }, ErrorKind::usage)
            .find("chmod 600 " + file.string()) != std::string::npos);
  ::chmod(file.c_str(), 0640);
  CHECK(error_of([&] { (void)open_keystore(spec, creds); }, ErrorKind::usage)
            .find("readable by group or others") != std::string::npos);

  ::chmod(file.c_str(), 0600);
  const uid_t stranger = ::geteuid() == 4242 ? 4243 : 4242;
  if (::geteuid() == 0) {  // only root can give a file away
    REQUIRE(::chown(file.c_str(), stranger, static_cast<gid_t>(-1)) == 0);
    CHECK(error_of([&] { (void)open_keystore(spec, creds); }, ErrorKind::usage)
              .find("owned by uid " + std::to_string(stranger)) != std::string::npos);
  }

  ::unlink(file.c_str());
  ::mkdir(file.c_str(), 0700);
  CHECK(error_of([&] { (void)open_keystore(spec, creds); }, ErrorKind::usage)
            .find("not a regular file") != std::string::npos);
}
