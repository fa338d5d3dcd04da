// A mount's metrics in the Prometheus text exposition format (version 0.0.4), for
// `wardfs status MOUNT --prometheus` and for the file `-o metrics_file=` keeps current
// for node_exporter's textfile collector. One renderer, fed plain values, so it is tested
// without a mount; the daemon fills the values from its live counters.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "base/periodic_task.h"
#include "fuse/op_stats.h"

namespace wardfs::daemon {

// The media type of what render_prometheus returns.
inline constexpr std::string_view kPrometheusContentType = "text/plain; version=0.0.4";

struct MetricsSnapshot {
  std::string mount_point;  // the `mount` label of every sample
  std::uint64_t bytes_read = 0;
  std::uint64_t bytes_written = 0;
  std::uint64_t integrity_failures = 0;
  std::uint64_t entries_released = 0;
  std::uint64_t listed_with_attrs = 0;
  std::uint64_t listed_bare = 0;
  std::array<std::uint64_t, fuse::kOpCount> operations{};
  struct Histogram {
    std::array<std::uint64_t, fuse::kLatencyBuckets> buckets{};  // not cumulative
    std::uint64_t sum_ns = 0;
  };
  std::array<Histogram, fuse::kTimedOpCount> latency{};
  std::uint64_t inodes_held = 0;
  std::uint64_t fds_held = 0;
  std::int64_t open_handles = 0;
  std::uint32_t active_generation = 0;
  std::uint32_t generations = 0;
  bool rekey_running = false;
  std::uint64_t rekey_done_bytes = 0;
  std::uint64_t rekey_planned_bytes = 0;
  double rekey_rate_bytes_per_second = 0;
  std::uint64_t rekey_errors = 0;
  std::uint64_t audit_records_written = 0;
  std::uint64_t audit_records_dropped = 0;
  bool audit_healthy = true;
  bool backing_reachable = true;
};

// Copies the live per-operation counters (relaxed reads; each histogram's count is the
// sum of its buckets, so the two always agree).
void copy_op_stats(const fuse::OpStats& stats, MetricsSnapshot& out);

// Backslash, double quote and newline escaped, as the format wants in a label value.
std::string escape_label_value(std::string_view value);

std::string render_prometheus(const MetricsSnapshot& snapshot);

// Writes `path` from `render()` now and then every
// `interval` until destroyed: a temp file in the same directory, fsync, rename over, mode
// 0644 (node_exporter reads it as another user; it holds no secrets). The file stays
// after the mount ends, with the last values.
class MetricsFileWriter {
 public:
  MetricsFileWriter(std::filesystem::path path, std::chrono::milliseconds interval,
                    std::function<std::string()> render);
  ~MetricsFileWriter();  // stops the thread
  MetricsFileWriter(const MetricsFileWriter&) = delete;
  MetricsFileWriter& operator=(const MetricsFileWriter&) = delete;

 private:
  void write_now();  // a failure is logged (once per streak) and retried next time

  std::filesystem::path path_;
  std::function<std::string()> render_;
  bool failing_ = false;                    // writer thread (and the constructor) only
  std::optional<base::PeriodicTask> task_;  // last: stops before the fields it reads
};

}  // namespace wardfs::daemon
