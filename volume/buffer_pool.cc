#include "volume/buffer_pool.h"

#include <mutex>
#include <vector>

namespace wardfs::volume {

namespace {

// Capacities are rounded up so that requests of nearly the same size (a batch of
// chunks plus their overhead) reuse one buffer instead of growing it each time.
constexpr std::size_t kGranule = 64 * 1024;

class Pool {
 public:
  ScratchBuffer::Block take(std::size_t size) {
    ScratchBuffer::Block block;
    {
      std::lock_guard lock(mutex_);
      if (!spare_.empty()) {
        // The most recently used buffer: its pages are the ones already resident.
        block = std::move(spare_.back());
        spare_.pop_back();
      }
    }
    if (block.capacity < size) {
      block.capacity = (size + kGranule - 1) / kGranule * kGranule;
      block.mem.reset(new std::uint8_t[block.capacity]);
    }
    return block;
  }

  void give_back(ScratchBuffer::Block block) {
    std::unique_lock lock(mutex_);
    if (spare_.size() >= kSpareScratchBuffers) return;  // freed outside the lock
    spare_.push_back(std::move(block));
  }

  std::size_t spare() {
    std::lock_guard lock(mutex_);
    return spare_.size();
  }

 private:
  std::mutex mutex_;
  std::vector<ScratchBuffer::Block> spare_;
};

Pool& pool() {
  // Never destroyed: worker threads may give buffers back while the process exits.
  static Pool* const instance = new Pool;
  return *instance;
}

}  // namespace

ScratchBuffer::ScratchBuffer(std::size_t size) : block_(pool().take(size)), size_(size) {}

ScratchBuffer::~ScratchBuffer() { pool().give_back(std::move(block_)); }

std::size_t spare_scratch_buffers() { return pool().spare(); }

}  // namespace wardfs::volume
