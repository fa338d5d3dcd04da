// The unwrapped data keys of a volume, one per generation, and what derives from them.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <shared_mutex>
#include <vector>

#include "crypto/aead.h"
#include "crypto/file_format.h"
#include "crypto/name_codec.h"
#include "crypto/secret.h"

namespace wardfs::crypto {

// Everything a generation's DEK opens, derived once when the generation is loaded.
struct GenerationKeys {
  std::uint32_t generation = 0;
  SecretBytes dek;
  std::unique_ptr<NameCipher> names;
  std::unique_ptr<Aead> symlinks;
  std::unique_ptr<Aead> xattrs;
};

// Thread-safe: generations can be added (rotation) while the filesystem runs.
class VolumeKeys {
 public:
  VolumeKeys(CipherId cipher, Bytes volume_id);

  void add_generation(std::uint32_t generation, SecretBytes dek);
  void set_active(std::uint32_t generation);
  // Forgets a retired generation's keys; whatever it sealed becomes unreadable.
  void remove_generation(std::uint32_t generation);

  CipherId cipher() const { return cipher_; }
  const Bytes& volume_id() const { return volume_id_; }
  std::uint32_t active_generation() const;
  // Active generation first, then older ones newest first: the order lookups try.
  std::vector<std::shared_ptr<const GenerationKeys>> generations_for_lookup() const;
  std::shared_ptr<const GenerationKeys> generation(std::uint32_t g) const;  // null if unknown
  std::shared_ptr<const GenerationKeys> active() const;

  std::shared_ptr<const FileKeys> file_keys(std::uint32_t g, const FileId& file_id) const;
  // Bumped whenever a generation is removed, so caches of derived keys know to drop them.
  std::uint64_t removal_epoch() const { return removal_epoch_.load(std::memory_order_acquire); }

 private:
  CipherId cipher_;
  Bytes volume_id_;
  mutable std::shared_mutex mutex_;
  std::map<std::uint32_t, std::shared_ptr<const GenerationKeys>> by_generation_;
  std::uint32_t active_ = 0;
  std::atomic<std::uint64_t> removal_epoch_{0};
};

}  // namespace wardfs::crypto
