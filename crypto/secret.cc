#include "crypto/secret.h"

#include <sodium.h>

#include <cstring>
#include <mutex>
#include <new>
#include <vector>
#include <stdexcept>
#include <utility>

namespace wardfs::crypto {

void ensure_sodium() {
  static const bool ready = [] { return sodium_init() >= 0; }();
  if (!ready) throw std::runtime_error("libsodium failed to initialise");
}

namespace {

// Keys of 64 bytes or less (every per-file key) come from locked slabs: one
// sodium_malloc per key costs several syscalls and at least a locked page, so a
// mount that had seen 8,000 files ran out of RLIMIT_MEMLOCK. Slots are zeroed on
// release; the slabs live until the process ends.
class SmallSecretPool {
 public:
  static constexpr std::size_t kSlotSize = 64;
  static constexpr std::size_t kSlotsPerSlab = 1024;

  static SmallSecretPool& instance() {
    static SmallSecretPool* const pool = new SmallSecretPool;  // never destroyed: keys may outlive statics
    return *pool;
  }

  std::uint8_t* allocate() {
    std::lock_guard lock(mutex_);
    if (free_.empty()) {
      auto* slab = static_cast<std::uint8_t*>(sodium_malloc(kSlotSize * kSlotsPerSlab));
      if (slab == nullptr) throw std::bad_alloc();
      for (std::size_t i = 0; i < kSlotsPerSlab; ++i) free_.push_back(slab + i * kSlotSize);
    }
    std::uint8_t* slot = free_.back();
    free_.pop_back();
    return slot;
  }

  void release(std::uint8_t* slot) {
    sodium_memzero(slot, kSlotSize);
    std::lock_guard lock(mutex_);
    free_.push_back(slot);
  }

 private:
  std::mutex mutex_;
  std::vector<std::uint8_t*> free_;
};

bool pooled(std::size_t size) { return size <= SmallSecretPool::kSlotSize; }

void free_secret(std::uint8_t* data, std::size_t size) {
  if (data == nullptr) return;
  if (pooled(size)) {
    SmallSecretPool::instance().release(data);
  } else {
    sodium_free(data);  // zeroes and unlocks
  }
}

}  // namespace

SecretBytes::SecretBytes(std::size_t size) : size_(size) {
  ensure_sodium();
  if (size == 0) return;
  data_ = pooled(size) ? SmallSecretPool::instance().allocate() : static_cast<std::uint8_t*>(sodium_malloc(size));
  if (data_ == nullptr) throw std::bad_alloc();
  sodium_memzero(data_, size);
}

SecretBytes::~SecretBytes() { free_secret(data_, size_); }

SecretBytes::SecretBytes(SecretBytes&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
  if (this != &other) {
    free_secret(data_, size_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

SecretBytes SecretBytes::random(std::size_t size) {
  SecretBytes out(size);
  if (size != 0) randombytes_buf(out.data(), size);
  return out;
}

SecretBytes SecretBytes::copy_of(std::span<const std::uint8_t> bytes) {
  SecretBytes out(bytes.size());
  if (!bytes.empty()) std::memcpy(out.data(), bytes.data(), bytes.size());
  return out;
}

}  // namespace wardfs::crypto
