// wardfs rewrap: move a volume's data keys under a new key-encryption key (passphrase
// change, key file to HSM, KEK rotation). Touches no data; replaces the config atomically.

#include <iostream>

#include "base/errors.h"
#include "cli/commands.h"
#include "keystore/keystore.h"
#include "service/rewrap.h"

namespace wardfs::cli {

namespace {

struct RewrapArgs {
  std::string cipher_dir;
  std::string to;
  std::string keyfile;
  std::string passfile;
  std::string pin_file;
  std::string to_passfile;
  std::string to_pin_file;
  bool create_keyfile = false;
  bool create_key = false;
  double command_timeout = 0;
  std::uint64_t kdf_ops = 0;
  std::string kdf_mem;
  bool insecure_kdf = false;
};

// Either side's credentials; an empty string is an option not given. No notify: the
// summary at the end names both keystores.
keystore::Credentials credentials(const std::string& keyfile, const std::string& passfile,
                                  const std::string& pin_file, double timeout_seconds) {
  keystore::Credentials creds = credentials_from_options(keyfile, passfile, pin_file);
  creds.command_timeout = command_timeout(timeout_seconds);
  creds.notify = nullptr;
  return creds;
}

keystore::Credentials current_credentials(const RewrapArgs& a) {
  return credentials(a.keyfile, a.passfile, a.pin_file, a.command_timeout);
}

keystore::Credentials new_credentials(const RewrapArgs& a) {
  return credentials("", a.to_passfile, a.to_pin_file, a.command_timeout);
}

keystore::NewKeystoreOptions new_options(const RewrapArgs& a, const crypto::KeystoreSpec& spec) {
  if (a.create_keyfile && spec.type != "keyfile") {
    throw WardError(ErrorKind::usage, "--create-keyfile needs --to keyfile:PATH");
  }
  if (a.create_key && spec.type != "pkcs11") {
    throw WardError(ErrorKind::usage, "--create-key needs --to pkcs11:...");
  }
  keystore::NewKeystoreOptions opts;
  if (a.kdf_ops != 0) opts.kdf_ops = a.kdf_ops;
  if (!a.kdf_mem.empty()) {
    const auto mem = parse_size(a.kdf_mem);
    if (!mem) throw WardError(ErrorKind::usage, "--kdf-mem must be a size such as 256M");
    opts.kdf_mem = *mem;
  }
  opts.allow_weak_kdf = a.insecure_kdf;
  opts.create_keyfile = a.create_keyfile;
  opts.create_token_key = a.create_key;
  return opts;
}

int run_rewrap(const RewrapArgs& a) {
  if (a.passfile == "-" && a.to_passfile == "-") {
    throw WardError(ErrorKind::usage, "--passfile and --to-passfile cannot both read stdin");
  }
  crypto::KeystoreSpec new_spec = keystore::parse_keystore_arg(a.to);
  const keystore::NewKeystoreOptions opts = new_options(a, new_spec);

  const auto done = service::rewrap_volume(a.cipher_dir, current_credentials(a), new_spec,
                                           new_credentials(a), opts);
  std::cout << "Rewrapped " << done.data_keys << (done.data_keys == 1 ? " data key" : " data keys")
            << (done.audit_key ? " and the audit key" : "") << " of " << a.cipher_dir
            << "\n  from keystore " << done.from << "\n  to keystore   " << done.to
            << "\nThe old passphrase or key no longer opens this volume.\n";
  return 0;
}

}  // namespace

void add_rewrap_command(CLI::App& app, Runner& run) {
  auto a = std::make_shared<RewrapArgs>();
  CLI::App* cmd = app.add_subcommand(
      "rewrap",
      "Wrap the volume's data keys under a new keystore or key (passphrase change, key file to "
      "HSM, KEK rotation). No data is re-encrypted; works while the volume is mounted.");
  cmd->add_option("CIPHERDIR", a->cipher_dir, "Backing directory of the volume")->required();
  cmd->add_option("--to", a->to,
                  "The new keystore: passphrase, keyfile:PATH, command:'PROG ARGS' or pkcs11:URI")
      ->required();
  auto* keyfile = cmd->add_option("--keyfile", a->keyfile, "Current key file, if not the config's");
  cmd->add_option("--passfile", a->passfile, "Current passphrase from this file ('-' for stdin)")
      ->excludes(keyfile);
  cmd->add_option("--pin-file", a->pin_file, "Current PKCS#11 user PIN file");
  cmd->add_option("--to-passfile", a->to_passfile, "New passphrase from this file ('-' for stdin)");
  cmd->add_option("--to-pin-file", a->to_pin_file, "PKCS#11 user PIN file of the new token");
  cmd->add_flag("--create-keyfile", a->create_keyfile,
                "Generate the new key file if it does not exist");
  cmd->add_flag("--create-key", a->create_key,
                "Generate the AES key on the new token if it is missing");
  cmd->add_option("--command-timeout", a->command_timeout,
                  "Seconds a command keystore may run (default 30, or WARDFS_COMMAND_TIMEOUT)");
  cmd->add_option("--kdf-ops", a->kdf_ops, "Argon2id passes for a new passphrase (default 3)");
  cmd->add_option("--kdf-mem", a->kdf_mem, "Argon2id memory for a new passphrase (default 256M)");
  cmd->add_flag("--insecure-kdf", a->insecure_kdf,
                "Accept Argon2id below 64M and 2 passes (throwaway volumes, tests)");
  cmd->callback([a, &run] { run = [a] { return run_rewrap(*a); }; });
}

}  // namespace wardfs::cli
