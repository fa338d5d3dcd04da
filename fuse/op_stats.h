// Per-operation request counts and latency histograms, recorded at the FUSE edge (ops.cc)
// by every worker thread at once: relaxed atomics only, no lock, one extra clock read per
// timed request. Read by the metrics renderer (daemon/metrics.h).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace wardfs::fuse {

// The first kTimedOpCount kinds also get a latency histogram.
enum class Op : unsigned {
  lookup,
  create,
  read,
  write,
  fsync,
  getattr,
  setattr,
  readlink,
  mknod,
  mkdir,
  unlink,
  rmdir,
  symlink,
  rename,
  link,
  open,
  release,
  fallocate,
  opendir,
  readdir,
  releasedir,
  fsyncdir,
  statfs,
  setxattr,
  getxattr,
  listxattr,
  removexattr,
  forget,
  copy_file_range,
  count_
};

inline constexpr std::size_t kOpCount = static_cast<std::size_t>(Op::count_);
inline constexpr std::size_t kTimedOpCount = 5;

inline constexpr std::array<std::string_view, kOpCount> kOpNames = {
    "lookup",   "create",    "read",        "write",    "fsync",          "getattr",
    "setattr",  "readlink",  "mknod",       "mkdir",    "unlink",         "rmdir",
    "symlink",  "rename",    "link",        "open",     "release",        "fallocate",
    "opendir",  "readdir",   "releasedir",  "fsyncdir", "statfs",         "setxattr",
    "getxattr", "listxattr", "removexattr", "forget",   "copy_file_range"};

inline constexpr std::string_view op_name(Op op) { return kOpNames[static_cast<std::size_t>(op)]; }

// Upper bounds of the latency buckets, 50 us to 5 s; a last, unbounded bucket (+Inf)
// takes the rest.
inline constexpr std::array<std::int64_t, 16> kLatencyBoundsNs = {
    50'000,      100'000,       250'000,       500'000,      1'000'000,   2'500'000,
    5'000'000,   10'000'000,    25'000'000,    50'000'000,   100'000'000, 250'000'000,
    500'000'000, 1'000'000'000, 2'500'000'000, 5'000'000'000};
inline constexpr std::size_t kLatencyBuckets = kLatencyBoundsNs.size() + 1;

struct LatencyHistogram {
  // Not cumulative: each request lands in exactly one bucket (the renderer sums them).
  std::array<std::atomic<std::uint64_t>, kLatencyBuckets> buckets{};
  std::atomic<std::uint64_t> sum_ns{0};

  void record(std::int64_t ns) {
    std::size_t i = 0;
    while (i < kLatencyBoundsNs.size() && ns > kLatencyBoundsNs[i]) ++i;
    buckets[i].fetch_add(1, std::memory_order_relaxed);
    sum_ns.fetch_add(ns > 0 ? static_cast<std::uint64_t>(ns) : 0, std::memory_order_relaxed);
  }
};

struct OpStats {
  std::array<std::atomic<std::uint64_t>, kOpCount> counts{};
  std::array<LatencyHistogram, kTimedOpCount> latency{};

  static constexpr bool timed(Op op) { return static_cast<std::size_t>(op) < kTimedOpCount; }
  void count(Op op) {
    counts[static_cast<std::size_t>(op)].fetch_add(1, std::memory_order_relaxed);
  }
  void record(Op op, std::int64_t ns) {
    count(op);
    if (timed(op)) latency[static_cast<std::size_t>(op)].record(ns);
  }
};

}  // namespace wardfs::fuse
