// wardfs init: create a new encrypted volume.
#include <unistd.h>

#include <filesystem>
#include <iostream>

#include "audit/append.h"
#include "base/errors.h"
#include "cli/commands.h"
#include "keystore/keystore.h"
#include "keystore/known_volumes.h"
#include "volume/config_file.h"
#include "volume/volume.h"

namespace wardfs::cli {

namespace fs = std::filesystem;

namespace {

struct InitArgs {
  std::string cipher_dir;
  std::string cipher;
  std::string chunk_size = "4K";
  std::string holes = "allow";
  std::string keystore;
  std::string keyfile;
  bool create_keyfile = false;
  bool create_key = false;
  std::string passfile;
  std::string pin_file;
  double command_timeout = 0;
  std::uint64_t kdf_ops = 0;
  std::string kdf_mem;
  bool insecure_kdf = false;
};

crypto::KeystoreSpec keystore_spec(const InitArgs& a) {
  if (!a.keyfile.empty()) return keystore::parse_keystore_arg("keyfile:" + a.keyfile);
  if (!a.keystore.empty()) return keystore::parse_keystore_arg(a.keystore);
  return {"passphrase", "", std::nullopt};
}

std::unique_ptr<keystore::Keystore> new_keystore(const InitArgs& a, crypto::KeystoreSpec& spec) {
  if (a.create_keyfile && spec.type != "keyfile") {
    throw WardError(ErrorKind::usage, "--create-keyfile needs a key file keystore (--keyfile F)");
  }
  if (a.create_key && spec.type != "pkcs11") {
    throw WardError(ErrorKind::usage, "--create-key needs a pkcs11: keystore");
  }
  keystore::NewKeystoreOptions opts;
  if (a.kdf_ops != 0) opts.kdf_ops = a.kdf_ops;
  if (!a.kdf_mem.empty()) {
    const auto mem = parse_size(a.kdf_mem);
    if (!mem || *mem < 8192)
      throw WardError(ErrorKind::usage, "--kdf-mem must be a size of at least 8K");
    opts.kdf_mem = *mem;
  }
  opts.allow_weak_kdf = a.insecure_kdf;
  opts.create_keyfile = a.create_keyfile;
  opts.create_token_key = a.create_key;
  keystore::Credentials creds;
  if (!a.passfile.empty()) creds.passfile = a.passfile;
  if (!a.pin_file.empty()) creds.pin_file = a.pin_file;
  creds.command_timeout = command_timeout(a.command_timeout);
  creds.interactive = ::isatty(STDIN_FILENO) != 0;
  return keystore::create_keystore(spec, creds, opts);
}

void record_init(const std::string& cipher_dir, const volume::InitOptions& options,
                 const std::string& identity, crypto::SecretBytes audit_key) {
  const auto config = volume::load_config(cipher_dir);
  // The user made this volume here: it is the one approved at this path from now on.
  keystore::remember_volume(cipher_dir, config.volume_id);
  audit::append_now(config.volume_id, std::move(audit_key),
                    {audit::volume_event("init", identity, 1, "ok",
                                         {{"cipher_dir", fs::absolute(cipher_dir).string()},
                                          {"cipher", crypto::cipher_name(options.cipher)},
                                          {"chunk_size", options.chunk_size}})});
}

int run_init(const InitArgs& a) {
  volume::InitOptions options;
  if (!a.cipher.empty()) {
    const auto id = crypto::cipher_from_name(a.cipher);
    if (!id)
      throw WardError(ErrorKind::usage, "--cipher must be aes-256-gcm or xchacha20-poly1305");
    options.cipher = *id;
  }
  const auto chunk = parse_size(a.chunk_size);
  if (!chunk || !crypto::valid_chunk_size(*chunk)) {
    throw WardError(ErrorKind::usage,
                    "--chunk-size must be a power of two from 4K to 1M (e.g. 4K, 64K, 1M)");
  }
  options.chunk_size = static_cast<std::uint32_t>(*chunk);
  options.holes = a.holes == "never" ? crypto::HolesPolicy::never : crypto::HolesPolicy::allow;

  options.keystore = keystore_spec(a);
  const auto keystore = new_keystore(a, options.keystore);
  // The volume id is only known once the config exists, so the log learns its path late.
  auto audit_key = volume::init_volume(a.cipher_dir, options, *keystore);
  record_init(a.cipher_dir, options, keystore->identity(), std::move(audit_key));
  std::cout << "Created a wardfs volume in " << a.cipher_dir << " ("
            << crypto::cipher_name(options.cipher) << ", " << options.chunk_size
            << "-byte chunks, keystore " << options.keystore.type << ").\n"
            << "Keystore: " << keystore->identity() << "\n"
            << "Mount it with: wardfs mount " << a.cipher_dir << " MOUNTPOINT\n";
  return 0;
}

}  // namespace

void add_init_command(CLI::App& app, Runner& run) {
  auto args = std::make_shared<InitArgs>();
  CLI::App* cmd =
      app.add_subcommand("init", "Create a new encrypted volume in CIPHERDIR (new or empty).");
  cmd->add_option("CIPHERDIR", args->cipher_dir, "Backing directory that will hold the ciphertext")
      ->required();
  cmd->add_option("--cipher", args->cipher,
                  "aes-256-gcm (default where the CPU has AES instructions) or xchacha20-poly1305")
      ->check(CLI::IsMember({"aes-256-gcm", "xchacha20-poly1305"}));
  cmd->add_option(
      "--chunk-size", args->chunk_size,
      "Plaintext bytes per sealed chunk: 4K (default, best for small random I/O) up to 1M");
  cmd->add_option(
         "--holes", args->holes,
         "allow (default): gaps stay sparse; never: gaps are filled with sealed zeros so every "
         "zeroed chunk is detected")
      ->check(CLI::IsMember({"allow", "never"}));
  auto* keystore =
      cmd->add_option("--keystore", args->keystore,
                      "Where the key-encryption key lives: passphrase (default), keyfile:PATH, "
                      "command:'PROG ARGS' (prints the key; command:sh:LINE runs a shell) or "
                      "pkcs11:token=LABEL;object=KEY?module-path=SO&pin-source=file:PATH");
  auto* keyfile =
      cmd->add_option(
             "--keyfile", args->keyfile,
             "Same as --keystore keyfile:PATH (32-byte key, raw, hex or base64; mode 0600)")
          ->excludes(keystore);
  cmd->add_flag("--create-keyfile", args->create_keyfile,
                "Generate the key file if it does not exist");
  cmd->add_flag("--create-key", args->create_key,
                "Generate the PKCS#11 AES key on the token if it is missing");
  cmd->add_option("--passfile", args->passfile,
                  "Read the passphrase from this file ('-' for stdin)")
      ->excludes(keyfile);
  cmd->add_option(
      "--pin-file", args->pin_file,
      "PKCS#11 user PIN file (else WARDFS_PKCS11_PIN, the URI's pin-source, or a prompt)");
  cmd->add_option("--command-timeout", args->command_timeout,
                  "Seconds a command keystore may run (default 30, or WARDFS_COMMAND_TIMEOUT)");
  cmd->add_option("--kdf-ops", args->kdf_ops, "Argon2id passes (default 3)");
  cmd->add_option("--kdf-mem", args->kdf_mem, "Argon2id memory, e.g. 256M (default; about 0.5 s)");
  cmd->add_flag("--insecure-kdf", args->insecure_kdf,
                "Accept Argon2id below 64M and 2 passes (throwaway volumes, tests)");
  cmd->callback([args, &run] { run = [args] { return run_init(*args); }; });
}

}  // namespace wardfs::cli
