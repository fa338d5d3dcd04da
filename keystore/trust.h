// Internal: which command, PKCS#11 and key file keystores the user approved on this
// machine. The config sits in the backing directory, which the threat model does not
// trust, so a program, module or key file it names is run, loaded or read only once
// approved: `wardfs init` and `wardfs rewrap` approve the keystore they were given, and an
// admin or user can list more in the trust files (JSON lines, ["type","location"]).
#pragma once

#include <filesystem>
#include <string>

#include "crypto/config.h"

namespace wardfs::keystore::detail {

// $XDG_CONFIG_HOME/wardfs, else ~/.config/wardfs: where the user's approvals live.
std::filesystem::path user_config_dir();
// user_config_dir()/trusted-keystores.
std::filesystem::path user_trust_file();
inline constexpr const char* kSystemTrustFile = "/etc/wardfs/trusted-keystores";

// The line that approves `spec` in a trust file.
std::string trust_line(const crypto::KeystoreSpec& spec);

// Throws WardError(usage) unless a trust file lists `spec`; says how to approve it.
void require_trusted(const crypto::KeystoreSpec& spec);

// Adds `spec` to the user's trust file (0600, in a 0700 directory); warns on failure.
void record_trusted(const crypto::KeystoreSpec& spec);

// Appends `line` to `file` (created 0600, its directory made 0700); when that fails, warns
// "`failure`: cannot write FILE (why)" and goes on: an approval not written is asked again.
void append_private_line(const std::filesystem::path& file, const std::string& line,
                         const std::string& failure);

}  // namespace wardfs::keystore::detail
