// wardfs rewrap: move a volume's data keys under a new key-encryption key (passphrase
// change, key file to HSM, KEK rotation). Touches no data; replaces the config atomically.
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <utility>
#include <vector>

#include "audit/append.h"
#include "cli/commands.h"
#include "crypto/config.h"
#include "crypto/errors.h"
#include "crypto/kdf.h"
#include "keystore/keystore.h"
#include "keystore/known_volumes.h"
#include "volume/volume.h"

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

// Generation 0 stands for the audit key: it moves to the new keystore with the DEKs.
using Dek = std::pair<std::uint32_t, crypto::SecretBytes>;
constexpr std::uint32_t kAuditSlot = 0;

// Either side's credentials; an empty string is an option not given. No notify: the
// summary at the end names both keystores.
keystore::Credentials credentials(const std::string& keyfile, const std::string& passfile,
                                  const std::string& pin_file, double timeout_seconds) {
  keystore::Credentials creds;
  if (!keyfile.empty()) creds.keyfile = keyfile;
  if (!passfile.empty()) creds.passfile = passfile;
  if (!pin_file.empty()) creds.pin_file = pin_file;
  creds.command_timeout = command_timeout(timeout_seconds);
  creds.interactive = ::isatty(STDIN_FILENO) != 0;
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

std::vector<Dek> unwrap_all(const crypto::VolumeConfig& cfg, keystore::Keystore& ks,
                            const std::string& cipher_dir) {
  std::vector<Dek> deks;
  for (const auto& k : cfg.keys) {
    auto dek = ks.unwrap(k.wrapped, cfg.wrap_ad(k.generation));
    if (!dek) {
      throw WardError(ErrorKind::wrong_key, "wrong passphrase or key for " + cipher_dir +
                                                ": cannot unwrap the key of generation " +
                                                std::to_string(k.generation));
    }
    deks.emplace_back(k.generation, std::move(*dek));
  }
  if (cfg.audit_key) {
    auto root = volume::open_audit_root(cfg, ks);
    if (!root) {
      throw WardError(ErrorKind::corrupt_volume,
                      "the audit key of " + cipher_dir +
                          " does not unwrap although the data keys do: its "
                          "audit_key field was edited");
    }
    deks.emplace_back(kAuditSlot, std::move(*root));
  }
  return deks;
}

// Throws unless the new keystore gave back `key`: a keystore that cannot open what it
// wrapped must not win.
void check_round_trip(const crypto::SecretBytes& key,
                      const std::optional<crypto::SecretBytes>& back) {
  if (!back || back->size() != key.size() ||
      !std::equal(key.view().begin(), key.view().end(), back->view().begin())) {
    throw WardError(ErrorKind::io,
                    "the new keystore did not give back the key it wrapped; "
                    "the volume was left unchanged");
  }
}

// Wraps every DEK and the audit root under the new keystore into `cfg`, which nothing
// has saved yet, checking that each unwraps again before anything is written.
void wrap_all(crypto::VolumeConfig& cfg, keystore::Keystore& ks, const std::vector<Dek>& deks) {
  for (const auto& [generation, key] : deks) {
    if (generation == kAuditSlot) {
      cfg.audit_key->wrapped = volume::wrap_audit_root(cfg, ks, key.view());
      check_round_trip(key, volume::open_audit_root(cfg, ks));
      continue;
    }
    for (auto& k : cfg.keys) {
      if (k.generation != generation) continue;
      k.wrapped = ks.wrap(key.view(), cfg.wrap_ad(generation));
      check_round_trip(key, ks.unwrap(k.wrapped, cfg.wrap_ad(generation)));
    }
  }
}

void record_rewrap(const crypto::VolumeConfig& cfg, const std::vector<Dek>& deks,
                   const std::string& from, const std::string& to) {
  const auto root =
      std::find_if(deks.begin(), deks.end(), [](const Dek& d) { return d.first == kAuditSlot; });
  if (root == deks.end())
    return;  // a volume from before the audit log; its first mount adds the key
  const nlohmann::json detail = {
      {"from_keystore", from}, {"to_keystore", to}, {"reason", "rewrap"}};
  std::vector<audit::Event> events;
  for (const std::string event : {"rewrap", "config_change"})
    events.push_back(audit::volume_event(event, to, std::nullopt, "ok", detail));
  audit::append_now(cfg.volume_id, crypto::derive_audit_mac_key(root->second.view(), cfg.volume_id),
                    std::move(events));
}

int run_rewrap(const RewrapArgs& a) {
  if (a.passfile == "-" && a.to_passfile == "-") {
    throw WardError(ErrorKind::usage, "--passfile and --to-passfile cannot both read stdin");
  }
  crypto::KeystoreSpec new_spec = keystore::parse_keystore_arg(a.to);
  const keystore::NewKeystoreOptions opts = new_options(a, new_spec);

  const crypto::ConfigLock lock(a.cipher_dir);
  crypto::VolumeConfig cfg = crypto::load_config(a.cipher_dir);
  keystore::require_known_volume(a.cipher_dir, cfg.volume_id);
  std::string old_identity;
  std::vector<Dek> deks;
  {
    const auto old_ks = keystore::open_keystore(cfg.keystore, current_credentials(a));
    old_identity = old_ks->identity();
    deks = unwrap_all(cfg, *old_ks, a.cipher_dir);
  }
  const auto new_ks = keystore::create_keystore(new_spec, new_credentials(a), opts);
  cfg.keystore = new_spec;
  wrap_all(cfg, *new_ks, deks);
  crypto::save_config_atomic(a.cipher_dir, cfg);
  keystore::remember_volume(a.cipher_dir, cfg.volume_id);
  record_rewrap(cfg, deks, old_identity, new_ks->identity());
  const std::size_t data_keys = cfg.keys.size();
  std::cout << "Rewrapped " << data_keys << (data_keys == 1 ? " data key" : " data keys")
            << (cfg.audit_key ? " and the audit key" : "") << " of " << a.cipher_dir
            << "\n  from keystore " << old_identity << "\n  to keystore   " << new_ks->identity()
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
