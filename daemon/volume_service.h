// What the control socket offers a running mount: status, rotate, rekey, scan, retire.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "audit/log.h"
#include "daemon/metrics.h"
#include "fuse/filesystem.h"
#include "keystore/keystore.h"
#include "service/key_admin.h"
#include "volume/mount_records.h"
#include "volume/rekey.h"
#include "volume/volume.h"

namespace wardfs::daemon {

class VolumeService {
 public:
  VolumeService(volume::Volume& volume, keystore::Keystore& keystore, fuse::WardFs& filesystem,
                std::filesystem::path mount_point, audit::AuditLog& audit, bool writes);
  ~VolumeService();  // stops a running rekey (it resumes on the next run)
  VolumeService(const VolumeService&) = delete;
  VolumeService& operator=(const VolumeService&) = delete;

  nlohmann::json handle(const nlohmann::json& request, const audit::Principal& peer);
  // The public socket's requests (any local user may ask): only "public_status", which
  // gives counters, health and generation, never keys, paths or ids.
  nlohmann::json handle_public(const nlohmann::json& request);
  // The mount's metrics in the Prometheus text format (daemon/metrics.h).
  std::string prometheus_text();

  // Takes on generations that another mount rotated, rekeyed or retired (ConfigFollower
  // calls it when wardfs.conf changed). Logs and audits what changed; a refused config
  // is logged and audited, and the keys stay as they were.
  void follow_config();
  // Every poll of the config follower: renews this mount's published record and resumes
  // a rekey whose runner is gone (volume/rekey_lease.h). Read-write mounts only.
  void tick();

 private:
  nlohmann::json status();
  // For `wardfs status --check`: the daemon answers, and says whether its backing
  // directory does.
  nlohmann::json health();
  MetricsSnapshot metrics_snapshot();
  double rekey_rate() const;
  nlohmann::json rotate(const audit::Principal& peer);
  nlohmann::json start_rekey(double rate_bytes_per_sec, const audit::Principal& peer,
                             bool resumed = false);
  nlohmann::json scan();
  nlohmann::json retire(std::uint32_t generation, bool force, const audit::Principal& peer);
  nlohmann::json audit_verify();
  nlohmann::json fsck();  // daemon/online_fsck.cc
  void audit(std::string event, const audit::Principal& who,
             std::optional<std::uint32_t> generation, std::string result, nlohmann::json detail);

  volume::Volume& volume_;
  keystore::Keystore& keystore_;
  fuse::WardFs& filesystem_;
  std::filesystem::path mount_point_;
  audit::AuditLog& audit_;
  volume::RekeyProgress progress_;
  std::atomic<std::int64_t> rekey_started_ns_{0};   // steady clock; 0: never started
  std::atomic<std::int64_t> rekey_finished_ns_{0};  // 0 while running
  service::KeyAdmin key_admin_;
  std::optional<volume::PublishedMount> published_;  // mounts that write
  std::thread rekey_thread_;
  // Every control request but status, health and metrics, which answer at once: the
  // control server runs requests side by side, and these were never meant to overlap.
  // Taken first, before rotation_mutex_.
  std::mutex long_requests_mutex_;
  std::mutex rotation_mutex_;  // one rotate/retire/rekey start at a time
};

nlohmann::json usage_to_json(const volume::VolumeUsage& usage);
nlohmann::json generations_to_json(const crypto::VolumeConfig& config);

}  // namespace wardfs::daemon
