#include "volume/rotation.h"

#include <algorithm>

#include "crypto/errors.h"

namespace wardfs::volume {

std::uint32_t rotate_generation(Volume& volume, keystore::Keystore& keystore) {
  const crypto::ConfigLock lock(volume.cipher_dir());
  crypto::VolumeConfig config = crypto::load_config(volume.cipher_dir());
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
  crypto::save_config_atomic(volume.cipher_dir(), config);
  volume.keys().add_generation(generation, std::move(dek));
  volume.keys().set_active(generation);
  volume.replace_config(std::move(config));
  return generation;
}

void retire_generation(Volume& volume, std::uint32_t generation) {
  const crypto::ConfigLock lock(volume.cipher_dir());
  crypto::VolumeConfig config = crypto::load_config(volume.cipher_dir());
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
  crypto::save_config_atomic(volume.cipher_dir(), config);
  if (volume.keys().generation(generation)) volume.keys().remove_generation(generation);
  volume.replace_config(std::move(config));
}

}  // namespace wardfs::volume
