// wardfs init: create a new encrypted volume.
#include <unistd.h>

#include <filesystem>
#include <iostream>

#include "cli/commands.h"
#include "crypto/errors.h"
#include "keystore/keystore.h"
#include "volume/volume.h"

namespace wardfs::cli {

namespace fs = std::filesystem;

std::optional<std::uint64_t> parse_size(const std::string& text) {
  if (text.empty()) return std::nullopt;
  std::size_t used = 0;
  std::uint64_t value = 0;
  try {
    value = std::stoull(text, &used);
  } catch (const std::exception&) {
    return std::nullopt;
  }
  const std::string suffix = text.substr(used);
  if (suffix.empty()) return value;
  if (suffix == "K" || suffix == "k" || suffix == "KiB") return value << 10;
  if (suffix == "M" || suffix == "m" || suffix == "MiB") return value << 20;
  if (suffix == "G" || suffix == "g" || suffix == "GiB") return value << 30;
  return std::nullopt;
}

namespace {

struct InitArgs {
  std::string cipher_dir;
  std::string cipher;
  std::string chunk_size = "4K";
  std::string holes = "allow";
  std::string keyfile;
  bool create_keyfile = false;
  std::string passfile;
  std::uint64_t kdf_ops = 0;
  std::string kdf_mem;
};

int run_init(const InitArgs& a) {
  volume::InitOptions options;
  if (!a.cipher.empty()) {
    const auto id = crypto::cipher_from_name(a.cipher);
    if (!id) throw WardError(ErrorKind::usage, "--cipher must be aes-256-gcm or xchacha20-poly1305");
    options.cipher = *id;
  }
  const auto chunk = parse_size(a.chunk_size);
  if (!chunk || !crypto::valid_chunk_size(*chunk)) {
    throw WardError(ErrorKind::usage, "--chunk-size must be a power of two from 4K to 1M (e.g. 4K, 64K, 1M)");
  }
  options.chunk_size = static_cast<std::uint32_t>(*chunk);
  options.holes = a.holes == "never" ? crypto::HolesPolicy::never : crypto::HolesPolicy::allow;

  std::unique_ptr<keystore::Keystore> keystore;
  if (!a.keyfile.empty()) {
    const fs::path keyfile = fs::absolute(a.keyfile);
    crypto::SecretBytes kek = (a.create_keyfile && !fs::exists(keyfile)) ? keystore::generate_key_file(keyfile)
                                                                          : keystore::read_key_file(keyfile);
    options.keystore = {"keyfile", keyfile.string(), std::nullopt};
    keystore = keystore::make_local_keystore(std::move(kek), "keyfile:" + keyfile.string());
  } else {
    crypto::KdfParams kdf = keystore::default_kdf_params();
    if (a.kdf_ops != 0) kdf.opslimit = a.kdf_ops;
    if (!a.kdf_mem.empty()) {
      const auto mem = parse_size(a.kdf_mem);
      if (!mem || *mem < 8192) throw WardError(ErrorKind::usage, "--kdf-mem must be a size of at least 8K");
      kdf.memlimit = *mem;
    }
    keystore::Credentials creds;
    if (!a.passfile.empty()) creds.passfile = a.passfile;
    creds.interactive = ::isatty(STDIN_FILENO) != 0;
    const crypto::SecretBytes pass = keystore::read_passphrase(creds, "New passphrase: ", true);
    std::cerr << "Deriving the key with Argon2id (" << (kdf.memlimit >> 20) << " MiB)...\n";
    keystore = keystore::make_local_keystore(keystore::derive_passphrase_kek(pass, kdf), "passphrase:argon2id");
    options.keystore = {"passphrase", "", kdf};
  }
  volume::init_volume(a.cipher_dir, options, *keystore);
  std::cout << "Created a wardfs volume in " << a.cipher_dir << " (" << crypto::cipher_name(options.cipher)
            << ", " << options.chunk_size << "-byte chunks, keystore " << options.keystore.type << ").\n"
            << "Mount it with: wardfs mount " << a.cipher_dir << " MOUNTPOINT"
            << (a.keyfile.empty() ? "" : " --keyfile " + a.keyfile) << "\n";
  return 0;
}

}  // namespace

void add_init_command(CLI::App& app, Runner& run) {
  auto args = std::make_shared<InitArgs>();
  CLI::App* cmd = app.add_subcommand("init", "Create a new encrypted volume in CIPHERDIR (new or empty).");
  cmd->add_option("CIPHERDIR", args->cipher_dir, "Backing directory that will hold the ciphertext")->required();
  cmd->add_option("--cipher", args->cipher,
                  "aes-256-gcm (default where the CPU has AES instructions) or xchacha20-poly1305")
      ->check(CLI::IsMember({"aes-256-gcm", "xchacha20-poly1305"}));
  cmd->add_option("--chunk-size", args->chunk_size,
                  "Plaintext bytes per sealed chunk: 4K (default, best for small random I/O) up to 1M");
  cmd->add_option("--holes", args->holes,
                  "allow (default): gaps stay sparse; never: gaps are filled with sealed zeros so every "
                  "zeroed chunk is detected")
      ->check(CLI::IsMember({"allow", "never"}));
  auto* keyfile = cmd->add_option("--keyfile", args->keyfile,
                                  "Protect the volume with a 32-byte key file (raw, hex or base64; mode 0600)");
  cmd->add_flag("--create-keyfile", args->create_keyfile, "Generate the --keyfile if it does not exist")
      ->needs(keyfile);
  cmd->add_option("--passfile", args->passfile, "Read the passphrase from this file ('-' for stdin)")
      ->excludes(keyfile);
  cmd->add_option("--kdf-ops", args->kdf_ops, "Argon2id passes (default 3)");
  cmd->add_option("--kdf-mem", args->kdf_mem, "Argon2id memory, e.g. 256M (default; about 0.5 s)");
  cmd->callback([args, &run] { run = [args] { return run_init(*args); }; });
}

}  // namespace wardfs::cli
