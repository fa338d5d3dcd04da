// Which volume this machine approved at each backing directory path. The config sits in
// the untrusted backing directory: someone who can write it could replace wardfs.conf
// and wardfs.dirid with a volume of their own (their key, their passphrase) and read
// everything written afterwards. So a machine remembers the volume id it approved at a
// path (`wardfs init`, or the first mount: trust on first use) and refuses another one
// there until the user approves it. Files: JSON lines ["/abs/path","volume-id"], the last
// line for a path counts; the user's file is read before the admin's.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "crypto/bytes.h"

namespace wardfs::keystore {

// $XDG_CONFIG_HOME/wardfs/known-volumes, else ~/.config/wardfs/known-volumes.
std::filesystem::path user_known_volumes_file();
inline constexpr const char* kSystemKnownVolumesFile = "/etc/wardfs/known-volumes";

// The path under which a backing directory is remembered: absolute and lexically normal,
// symlinks left alone (a symlink swapped in for the directory must not change the key).
std::string known_volume_key(const std::filesystem::path& cipher_dir);

// The line that approves `volume_id` at `cipher_dir` in a known-volumes file.
std::string known_volume_line(const std::filesystem::path& cipher_dir, crypto::ByteView volume_id);

struct KnownVolume {
  std::string id;              // base64url, as the config spells it
  std::filesystem::path file;  // the known-volumes file that approved it
};

// The volume approved at cipher_dir, if any.
std::optional<KnownVolume> known_volume(const std::filesystem::path& cipher_dir);

// Throws WardError(usage) when this machine approved another volume id at cipher_dir;
// the message names the path, both ids and the line that approves the new one.
void require_known_volume(const std::filesystem::path& cipher_dir, crypto::ByteView volume_id);

// Records volume_id as the one approved at cipher_dir (0600 file in a 0700 directory);
// nothing when it already is, a warning when the file cannot be written.
void remember_volume(const std::filesystem::path& cipher_dir, crypto::ByteView volume_id);

}  // namespace wardfs::keystore
