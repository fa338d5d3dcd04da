// Opening a volume for work, one sequence for a daemon and for an offline command:
//   config -> the volume id approved on this machine -> the lease (if asked for) ->
//   audit log -> keystore, through AuditedKeystore so every unwrap is on record ->
//   unlock -> an audit key for a volume made before the audit log (writable sessions)
//   -> the log started under that key -> the volume id remembered (trust on first use).
// A volume whose audit key was removed while its log lives on is refused before any
// keystore call, or, for a mount that asks (--audit-key-missing=recreate), starts a new
// history loudly, the old log set aside.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "audit/key_loss.h"
#include "audit/keystore_audit.h"
#include "audit/log.h"
#include "crypto/config.h"
#include "keystore/keystore.h"
#include "volume/lease.h"
#include "volume/volume.h"

namespace wardfs::service {

struct LeaseRequest {
  volume::LeaseUse use;
  std::string what;  // the mount point, or the command's name
  volume::VolumeLease::MountedCheck is_mounted;
  bool force = false;
};

struct SessionOptions {
  audit::LogOptions log;  // an empty path: the volume's default log
  keystore::Credentials credentials;
  std::optional<LeaseRequest> lease;  // taken before any key is asked for
  bool writable = false;              // may add an audit key to an old volume
  audit::MissingKey audit_key_missing = audit::MissingKey::refuse;
  std::string recreate_hint;  // how this caller starts a new audit key on purpose
};

class VolumeSession {
 public:
  VolumeSession(const std::filesystem::path& cipher_dir, SessionOptions options);
  ~VolumeSession();  // flushes the log; warns about records that could not be written
  VolumeSession(const VolumeSession&) = delete;
  VolumeSession& operator=(const VolumeSession&) = delete;

  const crypto::VolumeConfig& config_at_open() const { return config_; }
  volume::Volume& volume() { return *volume_; }
  keystore::Keystore& keystore() { return *keystore_; }  // audited
  audit::AuditLog& log() { return *log_; }
  const std::optional<volume::VolumeLease>& lease() const { return lease_; }

 private:
  std::optional<audit::Event> start_new_history(const std::filesystem::path& cipher_dir,
                                                bool writable);

  crypto::VolumeConfig config_;
  std::optional<volume::VolumeLease> lease_;  // released last
  std::unique_ptr<audit::AuditLog> log_;
  std::unique_ptr<keystore::Keystore> plain_keystore_;
  std::unique_ptr<audit::AuditedKeystore> keystore_;
  std::unique_ptr<volume::Volume> volume_;
};

}  // namespace wardfs::service
