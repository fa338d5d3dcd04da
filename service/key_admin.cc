#include "service/key_admin.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <exception>

#include "base/errors.h"
#include "volume/mount_records.h"
#include "volume/rotation.h"

namespace wardfs::service {

std::string RekeyOutcome::result() const {
  if (rc == 0) return "ok";
  return rc == -ECANCELED ? "interrupted" : "failed";
}

void KeyAdmin::record(std::string event, const audit::Principal& who,
                      std::optional<std::uint32_t> generation, std::string result,
                      nlohmann::json detail) {
  if (!detail.is_object()) detail = nlohmann::json::object();
  detail["online"] = s_.online;
  audit::Event e = audit::volume_event(std::move(event), s_.volume.keystore_identity(), generation,
                                       std::move(result), std::move(detail));
  e.principal = who;
  s_.log.record(std::move(e));
}

void KeyAdmin::on_record() {
  // A key operation is on record before it is reported done: a daemon killed right after
  // replying must not take the record with it.
  if (!s_.volume.audit_mac_key().empty() && !s_.log.flush())
    spdlog::warn("audit log {}: a key operation is not yet written",
                 s_.log.options().path.string());
}

std::uint32_t KeyAdmin::rotate(const audit::Principal& who) {
  std::uint32_t generation = 0;
  try {
    generation = volume::rotate_generation(s_.volume, s_.keystore);
  } catch (const std::exception& e) {
    record("rotate", who, std::nullopt, "failed", {{"error", e.what()}});
    throw;
  }
  spdlog::info("rotated {}: generation {} is now active", s_.volume.cipher_dir().string(),
               generation);
  record("rotate", who, generation, "ok", {});
  record("config_change", who, generation, "ok",
         {{"reason", "rotate"}, {"active_generation", generation}});
  on_record();
  return generation;
}

volume::RekeyLease KeyAdmin::begin_rekey(double rate_bytes_per_sec, const audit::Principal& who,
                                         bool resumed) {
  const std::uint32_t target = s_.volume.keys().active_generation();
  try {
    volume::RekeyLease lease(s_.volume.cipher_dir(), s_.where, target);
    record("rekey_start", who, target, "ok",
           {{"rate_bytes_per_sec", rate_bytes_per_sec}, {"resumed", resumed}});
    spdlog::info("rekey started (target generation {}){}", target,
                 resumed ? ", resuming one whose runner is gone" : "");
    on_record();
    return lease;
  } catch (const std::exception& e) {
    record("rekey_start", who, target, "refused", {{"error", e.what()}});
    throw;
  }
}

void KeyAdmin::record_progress(const volume::RekeyProgress& progress, const audit::Principal& who,
                               unsigned& tenths_recorded) {
  const std::uint64_t total = progress.bytes_total.load();
  if (total == 0) return;
  const auto tenths =
      static_cast<unsigned>(std::min<std::uint64_t>(10, progress.bytes_done.load() * 10 / total));
  if (tenths <= tenths_recorded || tenths == 10) return;
  tenths_recorded = tenths;
  record("rekey_progress", who, progress.target_generation.load(), "ok",
         {{"bytes_done", progress.bytes_done.load()},
          {"bytes_total", total},
          {"files_done", progress.files_done.load()}});
}

RekeyOutcome KeyAdmin::run_rekey(volume::RekeyLease& lease, volume::RekeyProgress& progress,
                                 double rate_bytes_per_sec, const audit::Principal& who) {
  const std::uint32_t target = s_.volume.keys().active_generation();
  unsigned tenths_recorded = 0;
  auto caller_hook = std::move(progress.on_file_done);
  progress.on_file_done = [&] {
    lease.renew_if_due();
    record_progress(progress, who, tenths_recorded);
    if (caller_hook) caller_hook();
  };
  RekeyOutcome outcome;
  try {
    volume::Rekeyer rekeyer(s_.volume, s_.tree, s_.names);
    outcome.rc = rekeyer.rekey(progress, rate_bytes_per_sec);
  } catch (const std::exception& e) {
    // One bad file must not end a mount: the rekey reports it and stops here.
    outcome.rc = -EIO;
    ++progress.errors;
    std::lock_guard lock(progress.error_mutex);
    progress.last_error = e.what();
  }
  progress.on_file_done = std::move(caller_hook);
  const bool finished = outcome.rc != -ECANCELED;
  if (finished) lease.finished();
  spdlog::info("rekey {}: {} bytes, {} files, {} names, {} errors{}",
               finished ? "finished" : "stopped", progress.bytes_done.load(),
               progress.files_done.load(), progress.names_done.load(), progress.errors.load(),
               finished ? "" : " (interrupted; the next read-write mount resumes it)");
  record("rekey_finish", who, target,
         progress.errors > 0 && outcome.rc == 0 ? "failed" : outcome.result(),
         {{"bytes_done", progress.bytes_done.load()},
          {"files_done", progress.files_done.load()},
          {"names_done", progress.names_done.load()},
          {"errors", progress.errors.load()}});
  on_record();
  return outcome;
}

void KeyAdmin::refuse_retire_while_in_use(std::uint32_t generation, const audit::Principal& who) {
  const auto refuse = [&](const std::string& why) {
    record("retire", who, generation, "refused", {{"error", why}});
    throw WardError(ErrorKind::usage, why);
  };
  if (const auto rekey = volume::read_rekey_record(s_.volume.cipher_dir());
      rekey && rekey->running && rekey->alive) {
    refuse("a rekey of this volume is running: " + rekey->owner() + "; retire generation " +
           std::to_string(generation) + " once it has finished");
  }
  for (const auto& mount : volume::live_mounts(s_.volume.cipher_dir())) {
    if (mount.active_generation != generation) continue;
    refuse("generation " + std::to_string(generation) + " is still active on the mount " +
           mount.owner() + ", which has not yet followed the rotation (mounts look at " +
           "wardfs.conf every few seconds); retry shortly, or unmount it");
  }
}

std::uint64_t KeyAdmin::retire(std::uint32_t generation, bool force, const audit::Principal& who) {
  refuse_retire_while_in_use(generation, who);
  volume::Rekeyer rekeyer(s_.volume, s_.tree, s_.names);
  std::uint64_t uses = 0;
  try {
    uses = rekeyer.uses_before_retire(generation, force);
  } catch (const WardError& e) {
    record("retire", who, generation, "failed", {{"error", e.what()}});
    throw;
  }
  if (uses > 0 && !force) {
    record("retire", who, generation, "refused", {{"still_in_use", uses}});
    throw WardError(
        ErrorKind::usage,
        "generation " + std::to_string(generation) + " still seals " + std::to_string(uses) +
            " chunks, headers or names; run 'wardfs rekey' first, or --force to shred them");
  }
  volume::retire_generation(s_.volume, generation);
  record("retire", who, generation, "ok", {{"shredded", uses}, {"forced", force}});
  record("config_change", who, generation, "ok",
         {{"reason", "retire"}, {"removed_generation", generation}});
  on_record();
  spdlog::warn("retired generation {} of {} ({} items it sealed are now unreadable)", generation,
               s_.volume.cipher_dir().string(), uses);
  return uses;
}

volume::VolumeUsage KeyAdmin::scan() {
  volume::VolumeUsage usage;
  volume::Rekeyer(s_.volume, s_.tree, s_.names).scan(usage);
  return usage;
}

}  // namespace wardfs::service
