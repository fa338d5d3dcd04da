// Key administration of a volume: rotate, rekey, retire, scan. One implementation for the
// daemon's control socket (online) and the CLI on a volume nobody serves (offline): the
// same checks, the same refusals, the same audit records, which differ only in their
// "online" flag. The callers are thin: the daemon adds its own concurrency (one key
// operation at a time, the rekey on a thread), the CLI its output.
//
// Across mounts (docs/FORMAT.md, "Keys across mounts"): retire is refused while a live
// mount of the volume, here or on another machine, still seals new data under the
// generation (volume/mount_records.h), and only one rekey runs on a volume at a time
// (volume/rekey_lease.h).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "audit/log.h"
#include "audit/record.h"
#include "keystore/keystore.h"
#include "volume/names.h"
#include "volume/rekey.h"
#include "volume/rekey_lease.h"
#include "volume/volume.h"

namespace wardfs::service {

struct KeyAdminScope {
  volume::Volume& volume;
  keystore::Keystore& keystore;  // the audited one: every wrap and unwrap is on record
  volume::TreeAccess& tree;
  const volume::NameMapper& names;
  audit::AuditLog& log;
  bool online;        // a daemon serves the volume (through `tree`)
  std::string where;  // the mount point, or "offline"
};

struct RekeyOutcome {
  int rc = 0;                  // 0, -ECANCELED (interrupted: resumes later), or another -errno
  std::string result() const;  // the audit result: "ok", "interrupted", "failed"
};

class KeyAdmin {
 public:
  explicit KeyAdmin(KeyAdminScope scope) : s_(std::move(scope)) {}

  // Adds generation g+1 and makes it active. Returns g+1.
  std::uint32_t rotate(const audit::Principal& who);

  // Takes the volume's rekey slot (throws WardError naming the runner if taken) and
  // records the start. `resumed` marks a rekey taken over from a runner that is gone.
  volume::RekeyLease begin_rekey(double rate_bytes_per_sec, const audit::Principal& who,
                                 bool resumed = false);
  // Runs the rekey to its end on the calling thread, recording progress by tenths and
  // the finish. Never throws: an exception ends it as "failed", its reason in
  // progress.last_error.
  RekeyOutcome run_rekey(volume::RekeyLease& lease, volume::RekeyProgress& progress,
                         double rate_bytes_per_sec, const audit::Principal& who);

  // Retires `generation`; returns how many items it still sealed (shredded with force).
  // Refused (WardError usage, audited) while anything seals under it, unless `force`;
  // always while a live mount has it active or a rekey runs.
  std::uint64_t retire(std::uint32_t generation, bool force, const audit::Principal& who);

  volume::VolumeUsage scan();

 private:
  void record(std::string event, const audit::Principal& who,
              std::optional<std::uint32_t> generation, std::string result, nlohmann::json detail);
  void record_progress(const volume::RekeyProgress& progress, const audit::Principal& who,
                       unsigned& tenths_recorded);
  void on_record();
  void refuse_retire_while_in_use(std::uint32_t generation, const audit::Principal& who);

  KeyAdminScope s_;
};

}  // namespace wardfs::service
