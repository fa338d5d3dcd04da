#include "cli/volume_facts.h"

#include <sys/statfs.h>

#include <cerrno>

#include "audit/files.h"
#include "base/errors.h"
#include "crypto/aead.h"
#include "crypto/bytes.h"
#include "crypto/config.h"
#include "daemon/mount_table.h"
#include "volume/config_file.h"

namespace wardfs::cli {

namespace stdfs = std::filesystem;
using nlohmann::json;

// statfs always reaches the daemon, where a stat may be answered from the kernel's
// attribute cache.
bool mount_is_dead(const std::string& mount_point) {
  struct statfs st {};
  return ::statfs(mount_point.c_str(), &st) != 0 && is_lost_fuse_connection(errno);
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

std::optional<std::string> mounted_at(const stdfs::path& cipher_dir) {
  for (const auto& m : wardfs_mounts()) {
    if (m["cipher_dir"] == cipher_dir.string()) return m["mount_point"].get<std::string>();
  }
  return std::nullopt;
}

std::optional<stdfs::path> cipher_dir_of_mount(const stdfs::path& mount_point) {
  for (const auto& m : wardfs_mounts()) {
    if (m["mount_point"] == mount_point.string()) return m["cipher_dir"].get<std::string>();
  }
  return std::nullopt;
}

json volume_facts(const stdfs::path& cipher_dir) {
  const auto config = volume::load_config(cipher_dir);
  json gens = json::array();
  for (const auto& k : config.keys) {
    gens.push_back({{"generation", k.generation},
                    {"created", k.created},
                    {"active", k.generation == config.active_generation}});
  }
  const std::string volume_id = crypto::base64url_encode(config.volume_id);
  json keystore = {{"type", config.keystore.type}};
  if (config.keystore.kdf) {
    keystore["kdf"] = {{"opslimit", config.keystore.kdf->opslimit},
                       {"memlimit", config.keystore.kdf->memlimit}};
  }
  const auto audit_log = audit::default_log_path(volume_id);
  std::error_code ec;
  json out = {{"cipher_dir", cipher_dir.string()},
              {"config", (cipher_dir / crypto::kConfigFileName).string()},
              {"mounted", false},
              {"format_version", config.version},
              {"volume_id", volume_id},
              {"cipher", std::string(crypto::cipher_name(config.cipher))},
              {"chunk_size", config.chunk_size},
              {"holes", config.holes == crypto::HolesPolicy::allow ? "allow" : "never"},
              {"keystore", config.keystore.type},
              {"keystore_details", keystore},
              {"active_generation", config.active_generation},
              {"generations", gens},
              {"audit_key", config.audit_key.has_value()},
              {"audit",
               {{"key", config.audit_key.has_value()},
                {"key_created", config.audit_key ? config.audit_key->created : ""},
                // Where a mount without --audit-log writes, for the user running this.
                {"default_log", audit_log.string()},
                {"default_log_exists", stdfs::exists(audit_log, ec)}}}};
  if (const auto where = mounted_at(cipher_dir)) {
    out["mounted"] = true;
    out["mount_point"] = *where;
  }
  return out;
}

}  // namespace wardfs::cli
