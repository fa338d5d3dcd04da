// wardfs status: the list of wardfs mounts (live or dead), one mount's daemon state, or
// the offline facts of an unmounted volume's wardfs.conf (no unlock, no secrets).
#include <iostream>
#include <nlohmann/json.hpp>

#include "base/errors.h"
#include "cli/commands.h"
#include "cli/volume_facts.h"
#include "crypto/config.h"
#include "daemon/control.h"
#include "daemon/mount_table.h"

namespace wardfs::cli {

namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

std::string dead_mount_fix(const std::string& mount_point) {
  return "its daemon is gone (transport endpoint is not connected); detach it with: wardfs "
         "unmount " +
         mount_point + "  (or: fusermount3 -uz " + mount_point + "), then mount again";
}

int run_status_list(bool json_output) {
  const json mounts = wardfs_mounts();
  bool any_dead = false;
  for (const auto& m : mounts) any_dead = any_dead || m["state"] == "dead";
  if (json_output) {
    std::cout << json{{"mounts", mounts}}.dump(2) << "\n";
  } else if (mounts.empty()) {
    std::cout << "no wardfs volumes are mounted\n";
  }
  for (const auto& m : json_output ? json::array() : mounts) {
    const auto mount_point = m["mount_point"].get<std::string>();
    std::cout << mount_point << "  <-  " << m["cipher_dir"].get<std::string>()
              << (m["read_only"].get<bool>() ? "  (read-only)" : "")
              << (m["state"] == "dead" ? "  DEAD" : "") << "\n";
    if (m["state"] == "dead") std::cout << "  " << dead_mount_fix(mount_point) << "\n";
  }
  return any_dead ? static_cast<int>(ErrorKind::mount_failure) : 0;
}

void print_daemon_status(const json& status) {
  std::cout << status["mount_point"].get<std::string>() << "  <-  "
            << status["cipher_dir"].get<std::string>() << "\n"
            << "  cipher " << status["cipher"].get<std::string>() << ", chunk size "
            << status["chunk_size"] << ", keystore " << status["keystore"].get<std::string>()
            << "\n  transport " << status.value("transport", std::string("/dev/fuse"))
            << "\n  generations:";
  for (const auto& g : status["generations"]) {
    std::cout << " " << g["generation"] << (g["active"].get<bool>() ? " (active)" : "");
  }
  const auto& c = status["counters"];
  const auto& r = status["rekey"];
  std::cout << "\n  read " << c["bytes_read"] << " bytes, wrote " << c["bytes_written"]
            << " bytes, copied " << c.value("bytes_copied", 0) << " bytes in the daemon, "
            << c["integrity_failures"] << " integrity failures\n  rekey: "
            << (r["running"].get<bool>() ? "running, " : "idle, ") << r["bytes_done"] << " of "
            << r["bytes_total"] << " bytes, " << r["errors"] << " errors\n";
  if (status.contains("backing")) {
    for (const auto& f : status["backing"]["fallbacks"]) {
      std::cout << "  backing fallback: " << f.get<std::string>() << "\n";
    }
  }
}

void print_offline_status(const json& s) {
  std::cout << s["cipher_dir"].get<std::string>() << "  ("
            << (s["mounted"].get<bool>() ? "mounted on " + s["mount_point"].get<std::string>()
                                         : std::string("not mounted"))
            << ")\n  volume id " << s["volume_id"].get<std::string>() << ", format version "
            << s["format_version"] << "\n  cipher " << s["cipher"].get<std::string>()
            << ", chunk size " << s["chunk_size"] << ", holes " << s["holes"].get<std::string>()
            << ", keystore " << s["keystore"].get<std::string>() << "\n  generations:";
  for (const auto& g : s["generations"]) {
    std::cout << " " << g["generation"] << (g["active"].get<bool>() ? " (active)" : "");
  }
  std::cout << "\n  audit key " << (s["audit_key"].get<bool>() ? "present" : "absent") << "\n";
}

int run_status_of(const std::string& target, bool json_output) {
  const stdfs::path path = stdfs::absolute(target).lexically_normal();
  const auto fstype = daemon::mounted_fstype(path);
  if (fstype == daemon::kWardfsFsType && mount_is_dead(path.string())) {
    if (json_output) {
      std::cout << json{{"mount_point", path.string()}, {"state", "dead"}}.dump(2) << "\n";
      return static_cast<int>(ErrorKind::mount_failure);
    }
    throw WardError(ErrorKind::mount_failure,
                    path.string() + " is a dead wardfs mount: " + dead_mount_fix(path.string()));
  }
  if (fstype == daemon::kWardfsFsType) {
    json status = daemon::control_request(path, {{"op", "status"}});
    status["state"] = "live";
    if (json_output) {
      std::cout << status.dump(2) << "\n";
    } else {
      print_daemon_status(status);
    }
    return 0;
  }
  std::error_code ec;
  if (!stdfs::exists(path / crypto::kConfigFileName, ec)) {
    throw WardError(ErrorKind::mount_failure,
                    path.string() +
                        " is neither a wardfs mount point nor a wardfs backing "
                        "directory (no " +
                        std::string(crypto::kConfigFileName) +
                        "); 'wardfs status' lists the mounts");
  }
  const json status = volume_facts(path);
  if (json_output) {
    std::cout << status.dump(2) << "\n";
  } else {
    print_offline_status(status);
  }
  return 0;
}

// The wardfs mount TARGET names: itself, or where the backing directory TARGET is
// mounted. Throws WardError(mount_failure) with the reason when there is none, or when
// its daemon is dead.
stdfs::path live_mount_of(const std::string& target) {
  stdfs::path path = stdfs::absolute(target).lexically_normal();
  if (daemon::mounted_fstype(path) != daemon::kWardfsFsType) {
    const auto where = mounted_at(path);
    if (!where) throw WardError(ErrorKind::mount_failure, path.string() + " is not mounted");
    path = *where;
  }
  if (mount_is_dead(path.string())) {
    throw WardError(ErrorKind::mount_failure,
                    path.string() + " is a dead wardfs mount: " + dead_mount_fix(path.string()));
  }
  return path;
}

// A probe's answer is quick or a failure.
constexpr std::chrono::seconds kCheckTimeout{10};

// For liveness probes: 0 only when the daemon answers and its backing directory does.
int run_status_check(const std::string& target) {
  const stdfs::path mount = live_mount_of(target);
  const json health = daemon::control_request(mount, {{"op", "health"}}, kCheckTimeout);
  if (!health.value("backing_reachable", false)) {
    throw WardError(ErrorKind::io, mount.string() + ": the daemon (pid " +
                                       std::to_string(health.value("pid", 0)) +
                                       ") answers, but its backing directory does not: " +
                                       health.value("backing_error", std::string("unknown")));
  }
  std::cout << mount.string() << ": ok (daemon pid " << health.value("pid", 0)
            << " answers, backing directory reachable)\n";
  return 0;
}

int run_status_prometheus(const std::string& target) {
  const json reply = daemon::control_request(live_mount_of(target), {{"op", "metrics"}});
  std::cout << reply.at("text").get<std::string>();
  return 0;
}

// What any user may learn of an allow_other mount, through its public socket.
int run_status_public(const std::string& target, bool json_output) {
  const stdfs::path mount = live_mount_of(target);
  json s = daemon::public_status_request(mount);
  s["mount_point"] = mount.string();  // the caller's own words, not the daemon's
  if (json_output) {
    std::cout << s.dump(2) << "\n";
    return 0;
  }
  const auto& c = s["counters"];
  const auto& r = s["rekey"];
  std::cout << mount.string() << "  (public view)\n  live, backing directory "
            << (s["backing_reachable"].get<bool>() ? "reachable" : "UNREACHABLE") << ", audit log "
            << (s["audit_healthy"].get<bool>() ? "healthy" : "FAILING") << "\n  generation "
            << s["active_generation"] << " active (" << s["generations"] << " held)\n  read "
            << c["bytes_read"] << " bytes, wrote " << c["bytes_written"] << " bytes, "
            << c["integrity_failures"] << " integrity failures, " << c["open_handles"]
            << " open\n  rekey: " << (r["running"].get<bool>() ? "running, " : "idle, ")
            << r["bytes_done"] << " of " << r["bytes_total"] << " bytes\n";
  return 0;
}

struct StatusArgs {
  std::string target;
  bool json_output = false;
  bool check = false;
  bool prometheus = false;
  bool public_view = false;
};

int run_status(const StatusArgs& a) {
  if ((a.check || a.prometheus || a.public_view) && a.target.empty()) {
    throw WardError(ErrorKind::usage,
                    "--check, --prometheus and --public need a TARGET (a mount point)");
  }
  if (a.public_view) return run_status_public(a.target, a.json_output);
  if (a.check) return run_status_check(a.target);
  if (a.prometheus) return run_status_prometheus(a.target);
  return a.target.empty() ? run_status_list(a.json_output) : run_status_of(a.target, a.json_output);
}

}  // namespace

void add_status_command(CLI::App& app, Runner& run) {
  auto args = std::make_shared<StatusArgs>();
  CLI::App* status = app.add_subcommand(
      "status",
      "List the wardfs mounts (exit 4 if one is dead), show a mount's generations, counters and "
      "rekey progress, or a backing directory's config facts without unlocking it.");
  status->add_option("TARGET", args->target,
                     "A wardfs mount point, or a backing directory (CIPHERDIR)");
  auto* json_flag = status->add_flag("--json", args->json_output, "Machine-readable output");
  auto* check = status->add_flag(
      "--check", args->check,
      "Liveness probe: exit 0 only when the daemon of TARGET answers (within 10 s) and its "
      "backing directory is reachable; else non-zero with a one-line reason (4: not mounted, "
      "dead or no answer; 5: backing directory unreachable)");
  status
      ->add_flag("--prometheus", args->prometheus,
                 "Print the mount's metrics in the Prometheus text format (version 0.0.4)")
      ->excludes(json_flag)
      ->excludes(check);
  check->excludes(json_flag);
  status
      ->add_flag("--public", args->public_view,
                 "As any user: the public view of an allow_other mount (health, generation, "
                 "counters, rekey progress; no keys, ids or paths) from its public socket")
      ->excludes(check)
      ->excludes("--prometheus");
  status->callback([args, &run] { run = [args] { return run_status(*args); }; });
}

}  // namespace wardfs::cli
