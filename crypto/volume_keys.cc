#include "crypto/volume_keys.h"

#include <mutex>
#include <stdexcept>

#include "crypto/kdf.h"

namespace wardfs::crypto {

VolumeKeys::VolumeKeys(CipherId cipher, Bytes volume_id)
    : cipher_(cipher), volume_id_(std::move(volume_id)) {}

void VolumeKeys::add_generation(std::uint32_t generation, SecretBytes dek) {
  if (dek.size() != kAeadKeySize) throw std::invalid_argument("data keys are 32 bytes");
  auto keys = std::make_shared<GenerationKeys>();
  keys->generation = generation;
  keys->names = std::make_unique<NameCipher>(
      hkdf_sha256(dek.view(), volume_id_, label::kNames, kNameKeySize));
  keys->symlinks = make_aead(
      cipher_, hkdf_sha256(dek.view(), volume_id_, label::kSymlinks, kAeadKeySize).view());
  keys->xattrs =
      make_aead(cipher_, hkdf_sha256(dek.view(), volume_id_, label::kXattrs, kAeadKeySize).view());
  keys->dek = std::move(dek);
  std::unique_lock lock(mutex_);
  by_generation_[generation] = std::move(keys);
  if (active_ == 0) active_ = generation;
}

void VolumeKeys::set_active(std::uint32_t generation) {
  std::unique_lock lock(mutex_);
  if (!by_generation_.contains(generation)) throw std::invalid_argument("unknown generation");
  active_ = generation;
}

void VolumeKeys::remove_generation(std::uint32_t generation) {
  std::unique_lock lock(mutex_);
  if (generation == active_) throw std::invalid_argument("the active generation cannot be removed");
  by_generation_.erase(generation);
  removal_epoch_.fetch_add(1, std::memory_order_acq_rel);
}

std::uint32_t VolumeKeys::active_generation() const {
  std::shared_lock lock(mutex_);
  return active_;
}

std::vector<std::shared_ptr<const GenerationKeys>> VolumeKeys::generations_for_lookup() const {
  std::shared_lock lock(mutex_);
  std::vector<std::shared_ptr<const GenerationKeys>> out;
  out.reserve(by_generation_.size());
  if (const auto it = by_generation_.find(active_); it != by_generation_.end()) {
    out.push_back(it->second);
  }
  for (auto it = by_generation_.rbegin(); it != by_generation_.rend(); ++it) {
    if (it->first != active_) out.push_back(it->second);
  }
  return out;
}

std::shared_ptr<const GenerationKeys> VolumeKeys::generation(std::uint32_t g) const {
  std::shared_lock lock(mutex_);
  const auto it = by_generation_.find(g);
  return it == by_generation_.end() ? nullptr : it->second;
}

std::shared_ptr<const GenerationKeys> VolumeKeys::active() const {
  std::shared_lock lock(mutex_);
  return by_generation_.at(active_);
}

std::shared_ptr<const FileKeys> VolumeKeys::file_keys(std::uint32_t g,
                                                      const FileId& file_id) const {
  const auto gen = generation(g);
  if (!gen) return nullptr;
  return std::make_shared<const FileKeys>(cipher_, gen->dek.view(), file_id);
}

}  // namespace wardfs::crypto
