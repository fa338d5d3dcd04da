#include "daemon/volume_service.h"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "audit/verify.h"
#include "base/errors.h"
#include "volume/rekey_lease.h"
#include "volume/rotation.h"

namespace wardfs::daemon {

namespace {
std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

nlohmann::json counts_to_json(const std::map<std::uint32_t, std::uint64_t>& counts) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [g, n] : counts) out[std::to_string(g)] = n;
  return out;
}
}  // namespace

nlohmann::json usage_to_json(const volume::VolumeUsage& u) {
  return {{"files", u.files},
          {"backing_bytes", u.backing_bytes},
          {"unreadable", u.unreadable},
          {"holes", u.content.holes},
          {"chunks", counts_to_json(u.content.chunks)},
          {"headers", counts_to_json(u.content.headers)},
          {"names", counts_to_json(u.names)},
          {"symlinks", counts_to_json(u.symlinks)},
          {"xattrs", counts_to_json(u.xattrs)}};
}

nlohmann::json generations_to_json(const crypto::VolumeConfig& config) {
  nlohmann::json gens = nlohmann::json::array();
  for (const auto& k : config.keys) {
    gens.push_back({{"generation", k.generation},
                    {"created", k.created},
                    {"active", k.generation == config.active_generation}});
  }
  return gens;
}

VolumeService::VolumeService(volume::Volume& volume, keystore::Keystore& keystore,
                             fuse::WardFs& filesystem, std::filesystem::path mount_point,
                             audit::AuditLog& audit, bool writes)
    : volume_(volume),
      keystore_(keystore),
      filesystem_(filesystem),
      mount_point_(std::move(mount_point)),
      audit_(audit),
      key_admin_({.volume = volume,
                  .keystore = keystore,
                  .tree = filesystem.tree_access(),
                  .names = filesystem.names(),
                  .log = audit,
                  .online = true,
                  .where = mount_point_.string()}) {
  if (writes)
    published_.emplace(volume_.cipher_dir(), mount_point_.string(),
                       volume_.keys().active_generation());
}

void VolumeService::audit(std::string event, const audit::Principal& who,
                          std::optional<std::uint32_t> generation, std::string result,
                          nlohmann::json detail) {
  audit::Event e = audit::volume_event(std::move(event), volume_.keystore_identity(), generation,
                                       std::move(result), std::move(detail));
  e.principal = who;
  audit_.record(std::move(e));
}

nlohmann::json VolumeService::audit_verify() {
  audit_.flush();
  const auto report = audit::verify_log(audit_.options().path, volume_.audit_mac_key().view());
  nlohmann::json out = report.to_json();
  out["log"] = audit_.options().path.string();
  return out;
}

VolumeService::~VolumeService() {
  progress_.cancel = true;
  if (rekey_thread_.joinable()) rekey_thread_.join();
}

nlohmann::json VolumeService::handle(const nlohmann::json& request, const audit::Principal& peer) {
  const std::string op = request.value("op", "");
  if (op == "status") return status();
  if (op == "health") return health();
  if (op == "metrics") {
    return {{"content_type", std::string(kPrometheusContentType)}, {"text", prometheus_text()}};
  }
  std::lock_guard one_at_a_time(long_requests_mutex_);
  if (op == "rotate") return rotate(peer);
  if (op == "rekey") return start_rekey(request.value("rate", 0.0), peer);
  if (op == "scan") return scan();
  if (op == "retire") {
    return retire(request.at("generation").get<std::uint32_t>(), request.value("force", false),
                  peer);
  }
  if (op == "audit_verify") return audit_verify();
  if (op == "fsck") return fsck();
  throw WardError(ErrorKind::usage, "unknown control request '" + op + "'");
}

nlohmann::json VolumeService::status() {
  const auto config = volume_.config();
  const auto& c = filesystem_.counters();
  nlohmann::json rekey = {{"running", progress_.running.load()},
                          {"target_generation", progress_.target_generation.load()},
                          {"bytes_done", progress_.bytes_done.load()},
                          {"bytes_total", progress_.bytes_total.load()},
                          {"files_done", progress_.files_done.load()},
                          {"names_done", progress_.names_done.load()},
                          {"errors", progress_.errors.load()}};
  {
    std::lock_guard lock(progress_.error_mutex);
    if (!progress_.last_error.empty()) rekey["last_error"] = progress_.last_error;
  }
  return {{"mount_point", mount_point_.string()},
          {"pid", ::getpid()},
          {"cipher_dir", volume_.cipher_dir().string()},
          {"volume_id", crypto::base64url_encode(config.volume_id)},
          {"cipher", std::string(crypto::cipher_name(config.cipher))},
          {"chunk_size", config.chunk_size},
          {"keystore", volume_.keystore_identity()},
          {"writeback_cache", filesystem_.writeback_active()},
          {"writeback_reserve",
           {{"bytes", filesystem_.writeback_space().target()},
            {"held", filesystem_.writeback_space().held()},
            {"backing_full", filesystem_.writeback_space().tight()},
            {"times_full", filesystem_.writeback_space().times_tight()},
            {"writes_lost", filesystem_.writeback_space().writes_lost()}}},
          {"readdirplus", std::string(fuse::readdirplus_name(filesystem_.readdirplus()))},
          {"transport", std::string(filesystem_.transport())},
          {"backing",
           {{"rename_noreplace", volume_.backing_features().rename_noreplace()},
            {"rename_exchange", volume_.backing_features().rename_exchange()},
            {"fallbacks", volume_.backing_features().fallbacks()}}},
          {"active_generation", config.active_generation},
          {"generations", generations_to_json(config)},
          {"counters",
           {{"bytes_read", c.bytes_read.load()},
            {"bytes_written", c.bytes_written.load()},
            {"integrity_failures", c.integrity_failures.load()},
            {"copy_ranges", c.copy_ranges.load()},
            {"bytes_copied", c.bytes_copied.load()},
            {"inodes_held", filesystem_.inodes_held()},
            {"fds_held", filesystem_.fds_held()},
            {"open_handles", c.open_handles.load()},
            {"entries_released", c.entries_released.load()},
            {"listed_with_attrs", c.listed_with_attrs.load()},
            {"listed_bare", c.listed_bare.load()}}},
          {"rekey", rekey},
          {"audit",
           {{"log", audit_.options().path.string()},
            {"level", audit::level_name(audit_.options().level)},
            {"on_failure", audit::on_failure_name(audit_.options().on_failure)},
            {"enabled", !volume_.audit_mac_key().empty()},
            {"healthy", audit_.healthy()},
            {"anchor",
             {{"enabled", !audit_.options().anchor.argv.empty()},
              {"healthy", audit_.anchor_healthy()},
              {"anchored_seq", audit_.anchored_seq()}}},
            {"records_written", audit_.written()},
            {"records_dropped", audit_.dropped()}}}};
}

void VolumeService::follow_config() {
  std::lock_guard lock(rotation_mutex_);
  try {
    const auto changes = volume::adopt_config_changes(volume_, keystore_);
    if (!changes.any()) return;
    const std::uint32_t active = volume_.keys().active_generation();
    if (published_) published_->publish(active);
    spdlog::info("{}: wardfs.conf changed elsewhere; active generation {}, {} added, {} retired",
                 volume_.cipher_dir().string(), active, changes.added.size(),
                 changes.removed.size());
    audit("config_followed", audit::Principal::self(), active, "ok",
          {{"added", changes.added}, {"removed", changes.removed}});
  } catch (const std::exception& e) {
    spdlog::error("{}", e.what());
    audit("config_followed", audit::Principal::self(), std::nullopt, "refused",
          {{"error", e.what()}});
  }
}

nlohmann::json VolumeService::health() {
  const int rc = filesystem_.check_backing_root();
  nlohmann::json out = {{"pid", ::getpid()}, {"backing_reachable", rc == 0}};
  if (rc != 0) out["backing_error"] = std::strerror(-rc);
  return out;
}

nlohmann::json VolumeService::handle_public(const nlohmann::json& request) {
  if (!request.is_object() || request.value("op", "") != "public_status")
    throw WardError(ErrorKind::usage, "the public status socket answers only public_status");
  const MetricsSnapshot s = metrics_snapshot();
  return {{"state", "live"},
          {"public", true},
          {"backing_reachable", s.backing_reachable},
          {"audit_healthy", s.audit_healthy},
          {"active_generation", s.active_generation},
          {"generations", s.generations},
          {"counters",
           {{"bytes_read", s.bytes_read},
            {"bytes_written", s.bytes_written},
            {"integrity_failures", s.integrity_failures},
            {"open_handles", s.open_handles},
            {"inodes_held", s.inodes_held},
            {"fds_held", s.fds_held}}},
          {"rekey",
           {{"running", s.rekey_running},
            {"bytes_done", s.rekey_done_bytes},
            {"bytes_total", s.rekey_planned_bytes}}}};
}

double VolumeService::rekey_rate() const {
  const std::int64_t started = rekey_started_ns_.load();
  if (started == 0) return 0;
  const std::int64_t finished = rekey_finished_ns_.load();
  const double seconds =
      static_cast<double>((finished != 0 ? finished : steady_ns()) - started) / 1e9;
  return seconds > 0 ? static_cast<double>(progress_.bytes_done.load()) / seconds : 0;
}

MetricsSnapshot VolumeService::metrics_snapshot() {
  const auto config = volume_.config();
  const auto& c = filesystem_.counters();
  MetricsSnapshot s;
  s.mount_point = mount_point_.string();
  s.bytes_read = c.bytes_read.load();
  s.bytes_written = c.bytes_written.load();
  s.integrity_failures = c.integrity_failures.load();
  s.entries_released = c.entries_released.load();
  s.listed_with_attrs = c.listed_with_attrs.load();
  s.listed_bare = c.listed_bare.load();
  copy_op_stats(c.ops, s);
  s.inodes_held = filesystem_.inodes_held();
  s.fds_held = filesystem_.fds_held();
  s.open_handles = c.open_handles.load();
  s.active_generation = config.active_generation;
  s.generations = static_cast<std::uint32_t>(config.keys.size());
  s.rekey_running = progress_.running.load();
  s.rekey_done_bytes = progress_.bytes_done.load();
  s.rekey_planned_bytes = progress_.bytes_total.load();
  s.rekey_rate_bytes_per_second = rekey_rate();
  s.rekey_errors = progress_.errors.load();
  s.audit_records_written = audit_.written();
  s.audit_records_dropped = audit_.dropped();
  s.audit_healthy = audit_.healthy();
  s.backing_reachable = filesystem_.check_backing_root() == 0;
  return s;
}

std::string VolumeService::prometheus_text() { return render_prometheus(metrics_snapshot()); }

nlohmann::json VolumeService::rotate(const audit::Principal& peer) {
  std::lock_guard lock(rotation_mutex_);
  const std::uint32_t generation = key_admin_.rotate(peer);
  if (published_) published_->publish(generation);
  return {{"ok", true}, {"generation", generation}};
}

nlohmann::json VolumeService::start_rekey(double rate_bytes_per_sec, const audit::Principal& peer,
                                          bool resumed) {
  std::lock_guard lock(rotation_mutex_);
  if (progress_.running) return {{"ok", true}, {"already_running", true}};
  if (rekey_thread_.joinable()) rekey_thread_.join();
  auto lease = std::make_shared<volume::RekeyLease>(
      key_admin_.begin_rekey(rate_bytes_per_sec, peer, resumed));
  progress_.bytes_done = 0;
  progress_.bytes_total = 0;
  progress_.files_done = 0;
  progress_.names_done = 0;
  progress_.errors = 0;
  progress_.cancel = false;
  {
    std::lock_guard err(progress_.error_mutex);
    progress_.last_error.clear();
  }
  progress_.running = true;
  rekey_started_ns_ = steady_ns();
  rekey_finished_ns_ = 0;
  rekey_thread_ = std::thread([this, rate_bytes_per_sec, peer, lease] {
    key_admin_.run_rekey(*lease, progress_, rate_bytes_per_sec, peer);
    rekey_finished_ns_ = steady_ns();
    progress_.running = false;
  });
  return {{"ok", true}};
}

void VolumeService::tick() {
  if (!published_) return;
  published_->renew_if_due();
  if (progress_.running) return;  // ours runs: no record to read
  // A rekey whose runner is gone (crashed, or its mount ended first) is finished here.
  const auto rekey = volume::read_rekey_record(volume_.cipher_dir());
  if (!rekey || !rekey->running || rekey->alive) return;
  try {
    spdlog::info("resuming the rekey of {} left unfinished by {}", volume_.cipher_dir().string(),
                 rekey->owner());
    start_rekey(0, audit::Principal::self(), true);
  } catch (const std::exception& e) {
    spdlog::debug("not resuming the rekey: {}", e.what());  // another mount took it first
  }
}

nlohmann::json VolumeService::scan() {
  return {{"ok", true}, {"usage", usage_to_json(key_admin_.scan())}};
}

nlohmann::json VolumeService::retire(std::uint32_t generation, bool force,
                                     const audit::Principal& peer) {
  std::lock_guard lock(rotation_mutex_);
  if (progress_.running)
    throw WardError(ErrorKind::usage, "a rekey is running; wait for it to finish");
  const std::uint64_t shredded = key_admin_.retire(generation, force, peer);
  return {{"ok", true}, {"shredded", shredded}};
}

}  // namespace wardfs::daemon
