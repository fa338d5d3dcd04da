// A volume unlocked by the CLI itself (not mounted), with its keystore calls and the
// command's own events on the audit log; and what the commands that work online or
// offline share to tell which case they are in.
#pragma once

#include <CLI/CLI.hpp>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "service/volume_session.h"

namespace wardfs::cli {

struct OfflineCredentials {
  std::string keyfile;
  std::string passfile;
};

// --keyfile / --passfile for a command that also works on a mounted volume, where the
// daemon already holds the keys and the options are not needed.
void add_offline_credentials(CLI::App& cmd, OfflineCredentials& creds);

// Whether TARGET is a mount point (online: ask the daemon) rather than a backing directory.
bool is_mounted(const std::string& target);

class OfflineVolume {
 public:
  // Unlocks `cipher_dir` to read it (service::VolumeSession). With `changing`, the name
  // of the command that will change it ("rotate"): first takes the volume's lease for
  // the command's whole life, refused while a daemon serves the volume anywhere, then
  // gives an old volume its audit key.
  OfflineVolume(const std::filesystem::path& cipher_dir, const OfflineCredentials& creds,
                const std::optional<std::string>& changing);

  volume::Volume& volume() { return session_.volume(); }
  keystore::Keystore& keystore() { return session_.keystore(); }
  audit::AuditLog& audit_log() { return session_.log(); }
  // Records an event by this command; path "/" and the keystore identity filled in.
  void record(std::string event, std::optional<std::uint32_t> generation, std::string result,
              nlohmann::json detail = nullptr);

 private:
  service::VolumeSession session_;  // writes the queued audit records when it ends
};

}  // namespace wardfs::cli
