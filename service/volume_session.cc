#include "service/volume_session.h"

#include <spdlog/spdlog.h>

#include <utility>

#include "audit/append.h"
#include "audit/files.h"
#include "crypto/bytes.h"
#include "keystore/known_volumes.h"
#include "volume/config_file.h"

namespace wardfs::service {

VolumeSession::VolumeSession(const std::filesystem::path& cipher_dir, SessionOptions options)
    : config_(volume::load_config(cipher_dir)) {
  // Before any key is asked for or read: the backing directory may hold a swapped volume.
  keystore::require_known_volume(cipher_dir, config_.volume_id);
  if (options.lease) {
    const auto& l = *options.lease;
    lease_.emplace(cipher_dir, l.use, l.what, l.is_mounted, l.force);
  }
  const std::string volume_id = crypto::base64url_encode(config_.volume_id);
  audit::LogOptions log_options = std::move(options.log);
  if (log_options.path.empty()) log_options.path = audit::default_log_path(volume_id);
  log_ = std::make_unique<audit::AuditLog>(std::move(log_options), volume_id);
  const auto& log_path = log_->options().path;
  const bool key_lost = !config_.audit_key && audit::has_history(log_path);
  if (key_lost && options.audit_key_missing == audit::MissingKey::refuse)
    audit::refuse_lost_key(cipher_dir, log_path, options.recreate_hint);
  plain_keystore_ = keystore::open_keystore(config_.keystore, options.credentials);
  keystore_ = std::make_unique<audit::AuditedKeystore>(*plain_keystore_, *log_);
  volume_ = volume::unlock_volume(cipher_dir, config_, *keystore_);
  auto recreated = key_lost ? start_new_history(cipher_dir, options.writable) : std::nullopt;
  if (options.writable) volume::ensure_audit_key(*volume_, *keystore_);
  if (recreated) log_->record(std::move(*recreated));
  keystore::remember_volume(cipher_dir, config_.volume_id);  // trust on first use
  if (volume_->audit_mac_key().empty()) {
    spdlog::warn(
        "{} has no audit key yet (made before the audit log) and is opened read-only: nothing "
        "is audited until one read-write mount or key command adds it",
        cipher_dir.string());
    return;
  }
  log_->start(crypto::SecretBytes::copy_of(volume_->audit_mac_key().view()));
}

VolumeSession::~VolumeSession() {
  if (!volume_ || volume_->audit_mac_key().empty()) return;
  if (!log_->flush()) audit::warn_unwritten(log_->options().path);
}

std::optional<audit::Event> VolumeSession::start_new_history(
    const std::filesystem::path& cipher_dir, bool writable) {
  const auto& log_path = log_->options().path;
  if (!writable) {
    spdlog::error(
        "AUDIT KEY MISSING from {}/wardfs.conf although its audit log {} exists; opened "
        "read-only without auditing (--audit-key-missing=recreate)",
        cipher_dir.string(), log_path.string());
    return std::nullopt;
  }
  const auto aside = audit::set_aside_history(log_path);
  spdlog::error(
      "AUDIT KEY MISSING from {}/wardfs.conf although its audit log {} exists: starting a new "
      "audit key and a new log (--audit-key-missing=recreate); the old log, unverifiable "
      "without its key, was moved aside ({} files, last record {})",
      cipher_dir.string(), log_path.string(), aside.moved.size(),
      aside.last_seq ? std::to_string(*aside.last_seq) : "unknown");
  nlohmann::json detail = {
      {"reason", "the audit key was missing from wardfs.conf while the audit log existed"},
      {"policy", "recreate"},
      {"moved_aside", aside.moved}};
  if (aside.last_seq) detail["previous_last_seq"] = *aside.last_seq;
  return audit::volume_event("audit_key_recreated", "", std::nullopt, "ok", std::move(detail));
}

}  // namespace wardfs::service
