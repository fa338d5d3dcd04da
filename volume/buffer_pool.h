// Scratch buffers shared by all threads. Each FUSE worker used to keep its own buffers
// for the largest request it ever served (four of about 1 MiB per worker, never freed):
// 16 workers kept about 64 MiB resident. A shared pool keeps as many as are in use at
// once, plus a few spare, so memory follows the concurrency, not the thread count.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

namespace wardfs::volume {

// A buffer of at least `size` bytes, taken from the pool and given back when it dies.
// Its contents are undefined (what the last user left). Not for secrets: plaintext that
// passes through here is what the page cache holds anyway.
class ScratchBuffer {
 public:
  explicit ScratchBuffer(std::size_t size);
  ~ScratchBuffer();
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;

  std::uint8_t* data() const { return block_.get(); }
  std::size_t size() const { return size_; }
  std::span<std::uint8_t> span() const { return {block_.get(), size_}; }

  struct Block {
    std::unique_ptr<std::uint8_t[]> mem;
    std::size_t capacity = 0;
    std::uint8_t* get() const { return mem.get(); }
  };

 private:
  Block block_;
  std::size_t size_;
};

// Buffers the pool keeps when none is in use; more are freed when given back.
inline constexpr std::size_t kSpareScratchBuffers = 8;

// How many buffers the pool holds unused right now (for tests).
std::size_t spare_scratch_buffers();

}  // namespace wardfs::volume
