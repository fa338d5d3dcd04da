#include "volume/rotation.h"

#include <algorithm>
#include <string>
#include <utility>

#include "base/errors.h"
#include "volume/config_file.h"

namespace wardfs::volume {

std::uint32_t rotate_generation(Volume& volume, keystore::Keystore& keystore) {
  const volume::ConfigLock lock(volume.cipher_dir());
  crypto::VolumeConfig config = volume::load_config(volume.cipher_dir());
  const crypto::WrappedKey* current = config.key_for(config.active_generation);
  if (current == nullptr ||
      !keystore.unwrap(current->wrapped, config.wrap_ad(current->generation))) {
    throw WardError(
        ErrorKind::wrong_key,
        "the keystore in use no longer opens " + volume.cipher_dir().string() +
            " (was it rewrapped?); rotate with the new credentials while unmounted, or remount");
  }
  std::uint32_t newest = 0;
  for (const auto& k : config.keys) newest = std::max(newest, k.generation);
  if (newest == UINT32_MAX) throw WardError(ErrorKind::usage, "no key generations left");
  const std::uint32_t generation = newest + 1;
  crypto::SecretBytes dek = crypto::SecretBytes::random(crypto::kDekSize);
  config.active_generation = generation;
  // Every wrap binds the active generation, so the existing keys are wrapped anew.
  for (auto& wrapped : config.keys) {
    const auto keys = volume.keys().generation(wrapped.generation);
    if (!keys) {
      throw WardError(ErrorKind::corrupt_volume,
                      "the config lists generation " + std::to_string(wrapped.generation) +
                          ", which this volume was not unlocked with; remount first");
    }
    wrapped.wrapped = keystore.wrap(keys->dek.view(), config.wrap_ad(wrapped.generation));
  }
  config.keys.push_back({generation, keystore.wrap(dek.view(), config.wrap_ad(generation)),
                         crypto::utc_now_iso8601()});
  volume::save_config_atomic(volume.cipher_dir(), config);
  volume.keys().add_generation(generation, std::move(dek));
  volume.keys().set_active(generation);
  volume.replace_config(std::move(config));
  return generation;
}

namespace {

[[noreturn]] void refuse_config(const Volume& volume, const std::string& why) {
  throw WardError(ErrorKind::corrupt_volume,
                  volume.cipher_dir().string() + "/wardfs.conf " + why +
                      "; keeping the keys this mount has (check who writes that directory)");
}

// The fields that say how data is sealed may not change under a mount.
void require_same_layout(const Volume& volume, const crypto::VolumeConfig& now,
                         const crypto::VolumeConfig& then) {
  if (now.volume_id != then.volume_id) refuse_config(volume, "now belongs to another volume");
  if (now.cipher != then.cipher || now.chunk_size != then.chunk_size || now.holes != then.holes ||
      now.version != then.version) {
    refuse_config(volume, "changed its cipher, chunk size, holes policy or version");
  }
}

}  // namespace

AdoptedChanges adopt_config_changes(Volume& volume, keystore::Keystore& keystore) {
  const crypto::VolumeConfig then = volume.config();
  crypto::VolumeConfig now = [&] {
    const volume::ConfigLock lock(volume.cipher_dir());
    return volume::load_config(volume.cipher_dir());
  }();
  require_same_layout(volume, now, then);
  if (now.active_generation < then.active_generation) {
    refuse_config(volume, "names generation " + std::to_string(now.active_generation) +
                              " active, older than this mount's " +
                              std::to_string(then.active_generation) + " (a replayed copy?)");
  }
  std::uint32_t newest_held = 0;
  for (const auto& k : then.keys) newest_held = std::max(newest_held, k.generation);
  AdoptedChanges changes;
  std::vector<std::pair<std::uint32_t, crypto::SecretBytes>> unwrapped;
  for (const auto& wrapped : now.keys) {
    if (then.key_for(wrapped.generation) != nullptr) continue;
    if (wrapped.generation <= newest_held) {
      refuse_config(volume, "brings back generation " + std::to_string(wrapped.generation) +
                                ", which was retired (a replayed copy?)");
    }
    auto dek = keystore.unwrap(wrapped.wrapped, now.wrap_ad(wrapped.generation));
    if (!dek) {
      throw WardError(ErrorKind::wrong_key,
                      "the keystore in use does not open generation " +
                          std::to_string(wrapped.generation) + " of " +
                          volume.cipher_dir().string() +
                          " (rewrapped, or the config was edited); remount with the new "
                          "credentials");
    }
    unwrapped.emplace_back(wrapped.generation, std::move(*dek));
  }
  if (now.key_for(now.active_generation) == nullptr)
    refuse_config(volume, "names an active generation it has no key for");
  // Only now that every new key opened: change what the mount seals and opens with.
  for (auto& [generation, dek] : unwrapped) {
    volume.keys().add_generation(generation, std::move(dek));
    changes.added.push_back(generation);
  }
  if (now.active_generation != then.active_generation) {
    volume.keys().set_active(now.active_generation);
    changes.active_changed = true;
  }
  for (const auto& held : then.keys) {
    if (now.key_for(held.generation) != nullptr) continue;
    if (volume.keys().generation(held.generation)) volume.keys().remove_generation(held.generation);
    changes.removed.push_back(held.generation);
  }
  volume.replace_config(std::move(now));
  return changes;
}

void retire_generation(Volume& volume, std::uint32_t generation) {
  const volume::ConfigLock lock(volume.cipher_dir());
  crypto::VolumeConfig config = volume::load_config(volume.cipher_dir());
  if (generation == config.active_generation) {
    throw WardError(ErrorKind::usage,
                    "generation " + std::to_string(generation) +
                        " is the active one; rotate first, then rekey, then retire it");
  }
  const auto it =
      std::find_if(config.keys.begin(), config.keys.end(),
                   [&](const crypto::WrappedKey& k) { return k.generation == generation; });
  if (it == config.keys.end()) {
    throw WardError(ErrorKind::usage,
                    "generation " + std::to_string(generation) + " does not exist");
  }
  config.keys.erase(it);
  volume::save_config_atomic(volume.cipher_dir(), config);
  if (volume.keys().generation(generation)) volume.keys().remove_generation(generation);
  volume.replace_config(std::move(config));
}

}  // namespace wardfs::volume
