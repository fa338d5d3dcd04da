#include "fuse/writeback_space.h"

#include <spdlog/spdlog.h>

#include <fstream>
#include <string>

#include "base/posix_io.h"

namespace wardfs::fuse {

namespace {

constexpr std::uint64_t kMiB = 1U << 20;
// fs/fuse/inode.c gives each FUSE bdi bdi_set_max_ratio(bdi, 1) and BDI_CAP_STRICTLIMIT.
constexpr std::uint64_t kFuseMaxRatioPercent = 1;

std::uint64_t mem_total_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  std::uint64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit) {
    if (key == "MemTotal:") return kib * 1024;
  }
  return 0;
}

std::uint64_t fuse_dirty_limit_bytes() {
  std::uint64_t threshold = read_number_file("/proc/sys/vm/dirty_bytes");
  if (threshold == 0)
    threshold = mem_total_bytes() / 100 * read_number_file("/proc/sys/vm/dirty_ratio");
  return threshold / 100 * kFuseMaxRatioPercent;
}

}  // namespace

std::uint64_t writeback_reserve_bytes() {
  const std::uint64_t limit = fuse_dirty_limit_bytes();
  if (limit == 0) return 0;
  return (2 * limit + 8 * kMiB + kMiB - 1) / kMiB * kMiB;  // whole MiB
}

bool WritebackSpace::make_room(std::uint64_t bytes, bool& became_tight) {
  became_tight = false;
  if (!reserve_) return false;
  if (!tight_.exchange(true, std::memory_order_acq_rel)) {
    became_tight = true;
    times_tight_.fetch_add(1, std::memory_order_relaxed);
    spdlog::warn(
        "the backing file system is full: landing the writes the kernel has cached from the "
        "reserve ({} MiB held); new writes fail with ENOSPC until space is freed",
        reserve_->held() / kMiB);
  }
  return reserve_->release(2 * bytes + kMiB) > 0;
}

bool WritebackSpace::try_recover() {
  if (!reserve_ || !tight_.load(std::memory_order_acquire)) return true;
  if (!reserve_->refill()) return false;
  if (tight_.exchange(false, std::memory_order_acq_rel))
    spdlog::info("backing space is free again: the writeback reserve is whole, writes are cached");
  return true;
}

}  // namespace wardfs::fuse
