// What the CLI learns without a daemon or a key: the wardfs mounts of this machine (from
// /proc/self/mounts) and the facts a volume's wardfs.conf states in the clear. Shared by
// `wardfs status` and `wardfs info`.
#pragma once

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace wardfs::cli {

// A mount whose daemon died stays in the mount table and fails every request with
// ENOTCONN (ECONNABORTED at first) until it is detached.
bool mount_is_dead(const std::string& mount_point);

// [{"cipher_dir", "mount_point", "read_only", "state": "live"|"dead"}]
nlohmann::json wardfs_mounts();

// Where `cipher_dir` is mounted right now, if anywhere.
std::optional<std::string> mounted_at(const std::filesystem::path& cipher_dir);

// The backing directory of the wardfs mount at `mount_point`, if it is one.
std::optional<std::filesystem::path> cipher_dir_of_mount(const std::filesystem::path& mount_point);

// The facts wardfs.conf states in the clear, like gocryptfs -info: nothing is unwrapped,
// and the keystore's location (a PKCS#11 URI may carry a PIN) is left out. Throws
// WardError(corrupt_volume) naming the file when it is missing or malformed.
nlohmann::json volume_facts(const std::filesystem::path& cipher_dir);

}  // namespace wardfs::cli
