#include "cli/offline.h"

#include <unistd.h>

#include <iostream>

#include "audit/files.h"
#include "daemon/mount.h"

namespace wardfs::cli {

void add_offline_credentials(CLI::App& cmd, OfflineCredentials& creds) {
  auto* keyfile =
      cmd.add_option("--keyfile", creds.keyfile, "Key file (only when the volume is not mounted)");
  cmd.add_option("--passfile", creds.passfile,
                 "Passphrase file or - (only when the volume is not mounted)")
      ->excludes(keyfile);
}

bool is_mounted(const std::string& target) {
  return daemon::is_mount_point(std::filesystem::absolute(target));
}

OfflineVolume::OfflineVolume(const std::filesystem::path& cipher_dir,
                             const OfflineCredentials& creds, bool writable) {
  const auto config = crypto::load_config(cipher_dir);
  audit::LogOptions options;
  options.path = audit::default_log_path(crypto::base64url_encode(config.volume_id));
  log_ = std::make_unique<audit::AuditLog>(options, crypto::base64url_encode(config.volume_id));
  keystore::Credentials credentials;
  if (!creds.keyfile.empty()) credentials.keyfile = creds.keyfile;
  if (!creds.passfile.empty()) credentials.passfile = creds.passfile;
  credentials.interactive = ::isatty(STDIN_FILENO) != 0;
  plain_keystore_ = keystore::open_keystore(config.keystore, credentials);
  keystore_ = std::make_unique<audit::AuditedKeystore>(*plain_keystore_, *log_);
  volume_ = volume::unlock_volume(cipher_dir, config, *keystore_);
  if (writable) volume::ensure_audit_key(*volume_, *keystore_);
  if (!volume_->audit_mac_key().empty())
    log_->start(crypto::SecretBytes::copy_of(volume_->audit_mac_key().view()));
}

OfflineVolume::~OfflineVolume() {
  if (!volume_ || volume_->audit_mac_key().empty()) return;
  if (!log_->flush()) {
    std::cerr << "wardfs: warning: could not write the audit log " << log_->options().path
              << " (see above); set WARDFS_AUDIT_DIR to a writable directory\n";
  }
}

void OfflineVolume::record(std::string event, std::optional<std::uint32_t> generation,
                           std::string result, nlohmann::json detail) {
  audit::Event e;
  e.event = std::move(event);
  e.path = "/";
  e.generation = generation;
  e.keystore = volume_->keystore_identity();
  e.result = std::move(result);
  e.detail = std::move(detail);
  log_->record(std::move(e));
}

}  // namespace wardfs::cli
