// wardfs status: the list of wardfs mounts (live or dead), one mount's daemon state, or
// the offline facts of an unmounted volume's wardfs.conf (no unlock, no secrets).
#include <sys/statfs.h>

#include <cerrno>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "crypto/aead.h"
#include "crypto/bytes.h"
#include "crypto/config.h"
#include "crypto/errors.h"
#include "daemon/control.h"
#include "daemon/mount_table.h"

namespace wardfs::cli {

namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

// A mount whose daemon died stays in the mount table and fails every request with
// ENOTCONN until it is detached. statfs always reaches the daemon, where a stat may be
// answered from the kernel's attribute cache.
bool mount_is_dead(const std::string& mount_point) {
  struct statfs st {};
  return ::statfs(mount_point.c_str(), &st) != 0 && errno == ENOTCONN;
}

std::string dead_mount_fix(const std::string& mount_point) {
  return "its daemon is gone (transport endpoint is not connected); detach it with: wardfs "
         "unmount " +
         mount_point + "  (or: fusermount3 -uz " + mount_point + "), then mount again";
}

json wardfs_mounts() {
  json mounts = json::array();
  for (const auto& m : daemon::wardfs_mounts()) {
    mounts.push_back({{"cipher_dir", m.cipher_dir},
                      {"mount_point", m.mount_point},
                      {"read_only", m.read_only},
                      {"state", mount_is_dead(m.mount_point) ? "dead" : "live"}});
  }
  return mounts;
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

// Where `cipher_dir` is mounted right now, if anywhere.
std::optional<std::string> mounted_at(const stdfs::path& cipher_dir) {
  for (const auto& m : wardfs_mounts()) {
    if (m["cipher_dir"] == cipher_dir.string()) return m["mount_point"].get<std::string>();
  }
  return std::nullopt;
}

// The facts wardfs.conf states in the clear, like gocryptfs -info: nothing is unwrapped,
// and the keystore's location (a PKCS#11 URI may carry a PIN) is left out.
json offline_status(const stdfs::path& cipher_dir) {
  const auto config = crypto::load_config(cipher_dir);
  json gens = json::array();
  for (const auto& k : config.keys) {
    gens.push_back({{"generation", k.generation},
                    {"created", k.created},
                    {"active", k.generation == config.active_generation}});
  }
  json out = {{"cipher_dir", cipher_dir.string()},
              {"mounted", false},
              {"format_version", config.version},
              {"volume_id", crypto::base64url_encode(config.volume_id)},
              {"cipher", std::string(crypto::cipher_name(config.cipher))},
              {"chunk_size", config.chunk_size},
              {"holes", config.holes == crypto::HolesPolicy::allow ? "allow" : "never"},
              {"keystore", config.keystore.type},
              {"active_generation", config.active_generation},
              {"generations", gens},
              {"audit_key", config.audit_key.has_value()}};
  if (const auto where = mounted_at(cipher_dir)) {
    out["mounted"] = true;
    out["mount_point"] = *where;
  }
  return out;
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
  const json status = offline_status(path);
  if (json_output) {
    std::cout << status.dump(2) << "\n";
  } else {
    print_offline_status(status);
  }
  return 0;
}

}  // namespace

void add_status_command(CLI::App& app, Runner& run) {
  auto json_output = std::make_shared<bool>(false);
  auto status_target = std::make_shared<std::string>();
  CLI::App* status = app.add_subcommand(
      "status",
      "List the wardfs mounts (exit 4 if one is dead), show a mount's generations, counters and "
      "rekey progress, or a backing directory's config facts without unlocking it.");
  status->add_option("TARGET", *status_target,
                     "A wardfs mount point, or a backing directory (CIPHERDIR)");
  status->add_flag("--json", *json_output, "Machine-readable output");
  status->callback([json_output, status_target, &run] {
    run = [json_output, status_target] {
      return status_target->empty() ? run_status_list(*json_output)
                                    : run_status_of(*status_target, *json_output);
    };
  });
}

}  // namespace wardfs::cli
