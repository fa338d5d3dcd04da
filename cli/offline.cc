#include "cli/offline.h"

#include <unistd.h>

#include "audit/append.h"
#include "audit/key_loss.h"
#include "daemon/mount.h"
#include "keystore/known_volumes.h"

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
                             const OfflineCredentials& creds,
                             const std::optional<std::string>& changing) {
  const bool writable = changing.has_value();
  const auto config = crypto::load_config(cipher_dir);
  keystore::require_known_volume(cipher_dir, config.volume_id);
  if (writable) {
    lease_.emplace(cipher_dir, volume::LeaseUse::offline_change, *changing,
                   [](const std::string& mount_point) { return is_mounted(mount_point); });
  }
  log_ = std::make_unique<audit::AuditLog>(audit::default_log_options(config.volume_id),
                                           crypto::base64url_encode(config.volume_id));
  if (!config.audit_key && audit::has_history(log_->options().path)) {
    audit::refuse_lost_key(cipher_dir, log_->options().path,
                           "to start a new audit key on purpose, mount the volume once with "
                           "--audit-key-missing=recreate (the old log is kept aside)");
  }
  keystore::Credentials credentials;
  if (!creds.keyfile.empty()) credentials.keyfile = creds.keyfile;
  if (!creds.passfile.empty()) credentials.passfile = creds.passfile;
  credentials.interactive = ::isatty(STDIN_FILENO) != 0;
  plain_keystore_ = keystore::open_keystore(config.keystore, credentials);
  keystore_ = std::make_unique<audit::AuditedKeystore>(*plain_keystore_, *log_);
  volume_ = volume::unlock_volume(cipher_dir, config, *keystore_);
  keystore::remember_volume(cipher_dir, config.volume_id);  // trust on first use
  if (writable) volume::ensure_audit_key(*volume_, *keystore_);
  if (!volume_->audit_mac_key().empty())
    log_->start(crypto::SecretBytes::copy_of(volume_->audit_mac_key().view()));
}

OfflineVolume::~OfflineVolume() {
  if (!volume_ || volume_->audit_mac_key().empty()) return;
  if (!log_->flush()) audit::warn_unwritten(log_->options().path);
}

void OfflineVolume::record(std::string event, std::optional<std::uint32_t> generation,
                           std::string result, nlohmann::json detail) {
  log_->record(audit::volume_event(std::move(event), volume_->keystore_identity(), generation,
                                   std::move(result), std::move(detail)));
}

}  // namespace wardfs::cli
