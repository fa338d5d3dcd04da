// Moving a volume's data keys and audit key under a new key-encryption key (passphrase
// change, key file to HSM, KEK rotation): every key unwrapped with the current keystore,
// wrapped with the new one, each checked to unwrap again, then the config replaced
// atomically under the config lock and the change put on the audit record. No data is
// touched, so it may run while the volume is mounted (the mount keeps its keys in memory
// and needs the new credentials for its next rotate or mount).
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>

#include "crypto/config.h"
#include "keystore/keystore.h"

namespace wardfs::service {

struct RewrapDone {
  std::size_t data_keys = 0;
  bool audit_key = false;
  std::string from;  // keystore identities
  std::string to;
};

// Throws WardError: wrong_key when the current credentials do not open every key,
// corrupt_volume when the audit key alone does not, io when the new keystore cannot
// give back what it wrapped (the volume is then left unchanged).
RewrapDone rewrap_volume(const std::filesystem::path& cipher_dir,
                         const keystore::Credentials& current, crypto::KeystoreSpec to,
                         const keystore::Credentials& to_credentials,
                         const keystore::NewKeystoreOptions& options);

}  // namespace wardfs::service
