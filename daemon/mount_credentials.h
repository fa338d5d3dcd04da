// The credentials a mount unlocks with, after checking a `keystore=SPEC` mount option.
#pragma once

#include <optional>
#include <string>

#include "crypto/config.h"
#include "keystore/keystore.h"

namespace wardfs::daemon {

// With `expected` (the keystore=SPEC mount option, written by whoever owns the fstab or
// unit), the volume's config must name exactly that keystore, or the mount fails (exit 1).
// Since an administrator vouched for it, a command or pkcs11 keystore named this way
// counts as approved for this mount (no trusted-keystores entry needed).
keystore::Credentials credentials_for_mount(const keystore::Credentials& given,
                                            const std::optional<std::string>& expected,
                                            const crypto::VolumeConfig& config);

}  // namespace wardfs::daemon
