// Internal: which command and PKCS#11 keystores the user approved on this machine.
// The config sits in the backing directory, which the threat model does not trust, so a
// program or module it names is run or loaded only once approved: `wardfs init` and
// `wardfs rewrap` approve the keystore they were given, and an admin or user can list
// more in the trust files (JSON lines, ["type","location"]).
#pragma once

#include <filesystem>
#include <string>

#include "crypto/config.h"

namespace wardfs::keystore::detail {

// $XDG_CONFIG_HOME/wardfs/trusted-keystores, else ~/.config/wardfs/trusted-keystores.
std::filesystem::path user_trust_file();
inline constexpr const char* kSystemTrustFile = "/etc/wardfs/trusted-keystores";

// The line that approves `spec` in a trust file.
std::string trust_line(const crypto::KeystoreSpec& spec);

// Throws WardError(usage) unless a trust file lists `spec`; says how to approve it.
void require_trusted(const crypto::KeystoreSpec& spec);

// Adds `spec` to the user's trust file (0600, in a 0700 directory); warns on failure.
void record_trusted(const crypto::KeystoreSpec& spec);

}  // namespace wardfs::keystore::detail
