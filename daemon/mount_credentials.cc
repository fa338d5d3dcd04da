#include "daemon/mount_credentials.h"

#include <spdlog/spdlog.h>

#include "crypto/errors.h"
#include "daemon/notify.h"

namespace wardfs::daemon {

keystore::Credentials credentials_for_mount(const keystore::Credentials& given,
                                            const std::optional<std::string>& expected,
                                            const crypto::VolumeConfig& config) {
  keystore::Credentials creds = given;
  if (running_under_systemd()) {
    // Into the journal with the mount point, like every other line of this service.
    creds.notify = [](const std::string& identity) { spdlog::info("keystore {}", identity); };
  }
  if (!expected) return creds;
  const crypto::KeystoreSpec want = keystore::parse_keystore_arg(*expected);
  if (want.type != config.keystore.type || want.location != config.keystore.location) {
    throw WardError(ErrorKind::usage,
                    "the volume's keystore is '" + config.keystore.type +
                        (config.keystore.location.empty() ? "" : ":" + config.keystore.location) +
                        "', not the keystore=" + *expected + " this mount asks for");
  }
  creds.trust_config_keystore = true;
  return creds;
}

}  // namespace wardfs::daemon
