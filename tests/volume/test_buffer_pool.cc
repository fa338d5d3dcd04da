// The shared scratch-buffer pool: buffers are reused across threads, sized to the
// request, and only a few are kept once nobody uses them.
#include <catch2/catch.hpp>
#include <cstring>
#include <thread>
#include <vector>

#include "volume/buffer_pool.h"

using wardfs::volume::kSpareScratchBuffers;
using wardfs::volume::ScratchBuffer;
using wardfs::volume::spare_scratch_buffers;

TEST_CASE("a scratch buffer comes back to the next user, from any thread", "[buffer_pool]") {
  std::uint8_t* first = nullptr;
  {
    const ScratchBuffer a(1 << 20);
    REQUIRE(a.size() == (1U << 20));
    std::memset(a.data(), 0xab, a.size());  // all of it is writable
    first = a.data();
  }
  std::uint8_t* second = nullptr;
  std::thread([&] {
    const ScratchBuffer b(4096);  // smaller: the same (resident) buffer serves it
    second = b.data();
  }).join();
  CHECK(second == first);
}

TEST_CASE("a scratch buffer grows when a larger request takes it", "[buffer_pool]") {
  { const ScratchBuffer small(100); }
  const ScratchBuffer big(3 << 20);
  CHECK(big.size() == (3U << 20));
  std::memset(big.data(), 1, big.size());
}

TEST_CASE("at most kSpareScratchBuffers are kept once nobody uses them", "[buffer_pool]") {
  {
    std::vector<std::unique_ptr<ScratchBuffer>> in_use;
    for (std::size_t i = 0; i < 3 * kSpareScratchBuffers; ++i)
      in_use.push_back(std::make_unique<ScratchBuffer>(256 * 1024));
    CHECK(spare_scratch_buffers() == 0);
  }
  CHECK(spare_scratch_buffers() == kSpareScratchBuffers);
}
