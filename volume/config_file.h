// wardfs.conf on disk: read, replaced atomically, and the lock that serialises
// read-modify-write cycles of it between processes (CLI, daemons). Its contents are
// crypto::VolumeConfig (crypto/config.h).
#pragma once

#include <filesystem>

#include "base/posix_io.h"
#include "crypto/config.h"

namespace wardfs::volume {

// Throws WardError(corrupt_volume) naming the file when it is missing or malformed.
crypto::VolumeConfig load_config(const std::filesystem::path& cipher_dir);
// temp file, fsync, rename over, fsync the directory: a crash leaves old or new, never half.
void save_config_atomic(const std::filesystem::path& cipher_dir,
                        const crypto::VolumeConfig& config);

// An exclusive flock on wardfs.lock in the backing root, held for the object's life.
class ConfigLock {
 public:
  explicit ConfigLock(const std::filesystem::path& cipher_dir);
  ConfigLock(const ConfigLock&) = delete;
  ConfigLock& operator=(const ConfigLock&) = delete;

 private:
  UniqueFd fd_;  // closing releases the flock
};

}  // namespace wardfs::volume
