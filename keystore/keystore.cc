// The keystore factory: picks the backend a config's keystore spec names, and builds
// the keystore for a new volume or a rewrap from a --keystore argument.
#include "keystore/keystore.h"

#include <sodium.h>
#include <unistd.h>

#include <filesystem>

#include "base/errors.h"
#include "keystore/backends.h"
#include "keystore/command_runner.h"
#include "keystore/pkcs11_uri.h"
#include "keystore/trust.h"

namespace wardfs::keystore {

namespace {

[[noreturn]] void fail(ErrorKind kind, const std::string& msg) { throw WardError(kind, msg); }

std::string describe_kdf(const crypto::KdfParams& kdf) {
  return std::to_string(kdf.opslimit) + " passes over " + std::to_string(kdf.memlimit >> 10) +
         " KiB";
}

// Not an attack: the KEK derives from these parameters, so edited ones only make the
// passphrase look wrong. But a volume made weak (by an old wardfs or --insecure-kdf)
// should not stay weak unnoticed.
void warn_weak_kdf(const crypto::KdfParams& kdf) {
  const std::string line =
      "wardfs: WARNING: this volume's passphrase is stretched with only Argon2id " +
      describe_kdf(kdf) +
      ", below the floor of 2 passes over 64 MiB: a stolen backing directory makes guessing "
      "it cheap. Fix: wardfs rewrap CIPHERDIR --to passphrase (new parameters default to 256 "
      "MiB and 3 passes)\n";
  (void)!::write(STDERR_FILENO, line.data(), line.size());
}

void require_expected(const crypto::KeystoreSpec& spec, const std::string& expected) {
  const crypto::KeystoreSpec want = parse_keystore_arg(expected);
  if (want.type != spec.type || want.location != spec.location) {
    const std::string have = spec.type + (spec.location.empty() ? "" : ":" + spec.location);
    fail(ErrorKind::usage, "the volume's keystore is '" + have + "', not the keystore=" + expected +
                               " this mount asks for");
  }
}

std::unique_ptr<Keystore> open_unannounced(const crypto::KeystoreSpec& spec,
                                           const Credentials& creds) {
  if (creds.expected_keystore) require_expected(spec, *creds.expected_keystore);
  if (creds.keyfile) {
    if (spec.type != "keyfile") {
      fail(ErrorKind::usage, "this volume uses the '" + spec.type + "' keystore, not a key file");
    }
    return make_local_keystore(read_key_file(*creds.keyfile), "keyfile:" + creds.keyfile->string());
  }
  // The config lives in the untrusted backing directory: a passphrase the user offers
  // must never be swapped for a key file or program the config names instead.
  if (creds.passfile && spec.type != "passphrase") {
    fail(ErrorKind::usage, "this volume uses the '" + spec.type + "' keystore, not a passphrase");
  }
  if (spec.type == "passphrase") {
    if (!spec.kdf) fail(ErrorKind::corrupt_volume, "config field 'keystore.kdf': missing");
    if (kdf_below_floor(*spec.kdf)) warn_weak_kdf(*spec.kdf);
    const SecretBytes pass = read_passphrase(creds, "Passphrase: ", false);
    return make_local_keystore(derive_passphrase_kek(pass, *spec.kdf), "passphrase:argon2id");
  }
  if (spec.type == "keyfile") {
    if (spec.location.empty()) {
      fail(ErrorKind::usage, "this volume needs a key file: give --keyfile FILE");
    }
    // A key file the config names could be one someone else wrote: read it only once approved.
    if (!creds.trust_config_keystore && !creds.expected_keystore) detail::require_trusted(spec);
    return make_local_keystore(read_key_file(spec.location), "keyfile:" + spec.location);
  }
  if (spec.type == "command" || spec.type == "pkcs11") {
    if (!creds.trust_config_keystore && !creds.expected_keystore) detail::require_trusted(spec);
    if (spec.type == "command") return detail::open_command_keystore(spec.location, creds);
    return detail::open_pkcs11_keystore(spec.location, creds, false);
  }
  fail(ErrorKind::usage, "keystore '" + spec.type + "' is not supported by this build");
}

crypto::KdfParams new_kdf_params(const NewKeystoreOptions& options) {
  crypto::KdfParams kdf = default_kdf_params();
  if (options.kdf_ops) {
    if (*options.kdf_ops < 1) fail(ErrorKind::usage, "--kdf-ops must be at least 1");
    kdf.opslimit = *options.kdf_ops;
  }
  if (options.kdf_mem) {
    if (*options.kdf_mem < 8192) fail(ErrorKind::usage, "--kdf-mem must be at least 8K");
    kdf.memlimit = *options.kdf_mem;
  }
  if (kdf_below_floor(kdf) && !options.allow_weak_kdf) {
    fail(ErrorKind::usage, "Argon2id with " + describe_kdf(kdf) +
                               " is too weak against passphrase guessing: use at least "
                               "--kdf-mem 64M and --kdf-ops 2 (the default is 256M and 3), or "
                               "--insecure-kdf for a throwaway volume");
  }
  return kdf;
}

std::unique_ptr<Keystore> create_passphrase(crypto::KeystoreSpec& spec, const Credentials& creds,
                                            const NewKeystoreOptions& options) {
  crypto::KdfParams kdf = new_kdf_params(options);
  const SecretBytes pass = read_passphrase(creds, "New passphrase: ", true);
  if (creds.notify) {
    creds.notify("passphrase: deriving the key with Argon2id (" +
                 std::to_string(kdf.memlimit >> 20) + " MiB, " + std::to_string(kdf.opslimit) +
                 " passes)");
  }
  auto ks = make_local_keystore(derive_passphrase_kek(pass, kdf), "passphrase:argon2id");
  spec.location.clear();
  spec.kdf = std::move(kdf);
  return ks;
}

std::unique_ptr<Keystore> create_keyfile(crypto::KeystoreSpec& spec,
                                         const NewKeystoreOptions& options) {
  const std::filesystem::path path = std::filesystem::absolute(spec.location);
  std::error_code ec;
  SecretBytes kek = options.create_keyfile && !std::filesystem::exists(path, ec)
                        ? generate_key_file(path)
                        : read_key_file(path);
  spec.location = path.string();
  spec.kdf.reset();
  detail::record_trusted(spec);  // the user named it: later mounts may read it
  return make_local_keystore(std::move(kek), "keyfile:" + path.string());
}

}  // namespace

bool kdf_below_floor(const crypto::KdfParams& params) {
  constexpr std::uint64_t kMinMem = crypto_pwhash_MEMLIMIT_INTERACTIVE;
  constexpr std::uint64_t kMinWork = crypto_pwhash_OPSLIMIT_INTERACTIVE * kMinMem;
  // Divided rather than multiplied: the config bounds memlimit only loosely.
  return params.memlimit < kMinMem ||
         params.opslimit < (kMinWork + params.memlimit - 1) / params.memlimit;
}

std::unique_ptr<Keystore> open_keystore(const crypto::KeystoreSpec& spec,
                                        const Credentials& creds) {
  auto ks = open_unannounced(spec, creds);
  if (creds.notify) creds.notify(ks->identity());
  return ks;
}

crypto::KeystoreSpec parse_keystore_arg(std::string_view text) {
  if (text == "passphrase") return {"passphrase", "", std::nullopt};
  if (text.starts_with("keyfile:") && text.size() > 8) {
    return {"keyfile", std::filesystem::absolute(text.substr(8)).string(), std::nullopt};
  }
  if (text.starts_with("command:")) {
    const std::string location(text.substr(8));
    const std::string_view line =
        location.starts_with("wrap:") ? std::string_view(location).substr(5) : location;
    (void)command_argv(line);  // reports an empty line or an unterminated quote now
    return {"command", location, std::nullopt};
  }
  if (text.starts_with("pkcs11:")) {
    (void)parse_pkcs11_uri(text);
    return {"pkcs11", std::string(text), std::nullopt};
  }
  fail(ErrorKind::usage, "unknown keystore '" + std::string(text) +
                             "': use passphrase, keyfile:PATH, command:'PROG ARGS' or "
                             "pkcs11:token=LABEL;object=KEY-LABEL");
}

std::unique_ptr<Keystore> create_keystore(crypto::KeystoreSpec& spec, const Credentials& creds,
                                          const NewKeystoreOptions& options) {
  if (spec.type == "passphrase") return create_passphrase(spec, creds, options);
  if (spec.type == "keyfile") return create_keyfile(spec, options);
  spec.kdf.reset();
  std::unique_ptr<Keystore> ks;
  if (spec.type == "command") {
    ks = detail::open_command_keystore(spec.location, creds);
  } else if (spec.type == "pkcs11") {
    ks = detail::open_pkcs11_keystore(spec.location, creds, options.create_token_key);
  } else {
    fail(ErrorKind::usage, "keystore '" + spec.type + "' is not supported by this build");
  }
  detail::record_trusted(spec);  // the user named it: later mounts may use it
  return ks;
}

}  // namespace wardfs::keystore
