#include "crypto/secret.h"

#include <sodium.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <new>
#include <stdexcept>
#include <utility>
#include <vector>

namespace wardfs::crypto {

void ensure_sodium() {
  static const bool ready = [] { return sodium_init() >= 0; }();
  if (!ready) throw std::runtime_error("libsodium failed to initialise");
}

std::uint64_t new_key_serial() {
  static std::atomic<std::uint64_t> next{1};  // 0 means "no key" in the contexts
  return next.fetch_add(1, std::memory_order_relaxed);
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
    static SmallSecretPool* const pool =
        new SmallSecretPool;  // never destroyed: keys may outlive statics
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
  data_ = pooled(size) ? SmallSecretPool::instance().allocate()
                       : static_cast<std::uint8_t*>(sodium_malloc(size));
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

namespace {

// Whether locking every page can never make a later allocation fail: the limit is or
// can be made unlimited (CAP_SYS_RESOURCE), or the kernel ignores it for us
// (CAP_IPC_LOCK in the initial user namespace, which only a probe tells reliably:
// capget() reports a container's own capabilities too).
bool memlock_unlimited() {
  struct rlimit limit {};
  if (::getrlimit(RLIMIT_MEMLOCK, &limit) != 0) return false;
  if (limit.rlim_cur == RLIM_INFINITY) return true;
  const struct rlimit unlimited { RLIM_INFINITY, RLIM_INFINITY };
  if (::setrlimit(RLIMIT_MEMLOCK, &unlimited) == 0) return true;
  // Lock (without faulting in) more than the limit allows anyone without the capability.
  const std::size_t len = limit.rlim_cur + 2 * static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  void* probe = ::mmap(nullptr, len, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (probe == MAP_FAILED) return false;
  const bool allowed = ::mlock2(probe, len, MLOCK_ONFAULT) == 0;
  ::munmap(probe, len);
  return allowed;
}

}  // namespace

bool lock_process_memory() {
  return memlock_unlimited() && ::mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) == 0;
}

}  // namespace wardfs::crypto
