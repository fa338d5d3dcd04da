#include "keystore/known_volumes.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "base/errors.h"
#include "keystore/trust.h"

namespace wardfs::keystore {

namespace fs = std::filesystem;

namespace {

// The id the last line for `key` in `file` approves; lines that are not ["path","id"]
// are skipped, so a hand-edited file never stops a mount by itself.
std::optional<std::string> last_id_in(const fs::path& file, const std::string& key) {
  std::ifstream in(file);
  std::string entry;
  std::optional<std::string> id;
  while (std::getline(in, entry)) {
    const auto line = nlohmann::json::parse(entry, nullptr, false);
    if (line.is_array() && line.size() == 2 && line[0].is_string() && line[1].is_string() &&
        line[0].get_ref<const std::string&>() == key) {
      id = line[1].get<std::string>();
    }
  }
  return id;
}

}  // namespace

fs::path user_known_volumes_file() { return detail::user_config_dir() / "known-volumes"; }

std::string known_volume_key(const fs::path& cipher_dir) {
  fs::path path = fs::absolute(cipher_dir).lexically_normal();
  if (!path.has_filename() && path.has_relative_path()) path = path.parent_path();
  return path.string();
}

std::string known_volume_line(const fs::path& cipher_dir, crypto::ByteView volume_id) {
  return nlohmann::json::array({known_volume_key(cipher_dir), crypto::base64url_encode(volume_id)})
      .dump();
}

std::optional<KnownVolume> known_volume(const fs::path& cipher_dir) {
  const std::string key = known_volume_key(cipher_dir);
  for (const fs::path& file : {user_known_volumes_file(), fs::path(kSystemKnownVolumesFile)}) {
    if (auto id = last_id_in(file, key)) return KnownVolume{std::move(*id), file};
  }
  return std::nullopt;
}

void require_known_volume(const fs::path& cipher_dir, crypto::ByteView volume_id) {
  const auto known = known_volume(cipher_dir);
  const std::string id = crypto::base64url_encode(volume_id);
  if (!known || known->id == id) return;
  const std::string key = known_volume_key(cipher_dir);
  throw WardError(
      ErrorKind::usage,
      key + " holds another volume than the one this machine approved there: its volume id is " +
          id + ", the approved one is " + known->id + " (in " + known->file.string() +
          "). Someone who can write the backing directory may have replaced its wardfs.conf "
          "and wardfs.dirid with a volume of their own, which would let them read everything "
          "you write. If you replaced the volume yourself (a restore, a new init elsewhere), "
          "approve it with: echo '" +
          known_volume_line(cipher_dir, volume_id) + "' >> " + user_known_volumes_file().string());
}

void remember_volume(const fs::path& cipher_dir, crypto::ByteView volume_id) {
  const std::string key = known_volume_key(cipher_dir);
  if (last_id_in(user_known_volumes_file(), key) == crypto::base64url_encode(volume_id)) return;
  detail::append_private_line(user_known_volumes_file(), known_volume_line(cipher_dir, volume_id),
                              "cannot remember this volume");
}

}  // namespace wardfs::keystore
