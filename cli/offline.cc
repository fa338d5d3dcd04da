#include "cli/offline.h"

#include "cli/commands.h"
#include "daemon/mount.h"

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

namespace {
service::SessionOptions offline_session(const OfflineCredentials& creds,
                                        const std::optional<std::string>& changing) {
  service::SessionOptions o;
  o.credentials = credentials_from_options(creds.keyfile, creds.passfile);
  if (changing) {
    o.lease = service::LeaseRequest{
        .use = volume::LeaseUse::offline_change,
        .what = *changing,
        .is_mounted = [](const std::string& mount_point) { return is_mounted(mount_point); }};
  }
  o.writable = changing.has_value();
  o.recreate_hint =
      "to start a new audit key on purpose, mount the volume once with "
      "--audit-key-missing=recreate (the old log is kept aside)";
  return o;
}
}  // namespace

OfflineVolume::OfflineVolume(const std::filesystem::path& cipher_dir,
                             const OfflineCredentials& creds,
                             const std::optional<std::string>& changing)
    : session_(cipher_dir, offline_session(creds, changing)) {}

void OfflineVolume::record(std::string event, std::optional<std::uint32_t> generation,
                           std::string result, nlohmann::json detail) {
  session_.log().record(audit::volume_event(std::move(event), session_.volume().keystore_identity(),
                                            generation, std::move(result), std::move(detail)));
}

}  // namespace wardfs::cli
