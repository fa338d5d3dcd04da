#include "daemon/metrics.h"

#include <spdlog/spdlog.h>

#include <charconv>
#include <cmath>

#include "audit/files.h"

namespace wardfs::daemon {

namespace {

std::string number(double value) {
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  if (std::isnan(value)) return "NaN";
  char buf[64];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(value);
}

// A bucket's `le` in plain decimals ("0.0005", never "5e-04"): the label value is part of
// the series' identity, so it is spelled the same way whatever the shortest form is.
std::string bucket_bound(std::int64_t ns) {
  char buf[64];
  const auto [end, ec] =
      std::to_chars(buf, buf + sizeof buf, static_cast<double>(ns) / 1e9, std::chars_format::fixed);
  return ec == std::errc() ? std::string(buf, end) : std::to_string(ns / 1e9);
}

// Writes one metric family: its HELP and TYPE lines, then samples through `sample`.
class Writer {
 public:
  explicit Writer(const std::string& mount)
      : mount_label_("mount=\"" + escape_label_value(mount) + "\"") {}

  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;  // fixed texts here, with neither backslash nor newline to escape
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  // `labels`: more labels after `mount`, already formatted (`op="read"`), or empty.
  void sample(std::string_view name, std::string_view labels, const std::string& value) {
    out_ += name;
    out_ += '{';
    out_ += mount_label_;
    if (!labels.empty()) {
      out_ += ',';
      out_ += labels;
    }
    out_ += "} ";
    out_ += value;
    out_ += '\n';
  }
  void single(std::string_view name, std::string_view type, std::string_view help,
              const std::string& value) {
    family(name, type, help);
    sample(name, {}, value);
  }
  std::string take() { return std::move(out_); }

 private:
  std::string mount_label_;
  std::string out_;
};

std::string op_label(std::size_t i) { return "op=\"" + std::string(fuse::kOpNames[i]) + "\""; }

void render_operations(Writer& w, const MetricsSnapshot& s) {
  w.family("wardfs_operations_total", "counter", "FUSE requests answered, by operation.");
  for (std::size_t i = 0; i < fuse::kOpCount; ++i)
    w.sample("wardfs_operations_total", op_label(i), std::to_string(s.operations[i]));

  constexpr std::string_view name = "wardfs_operation_duration_seconds";
  w.family(name, "histogram",
           "Time from a FUSE request's arrival to its answer, in seconds, by operation.");
  for (std::size_t i = 0; i < fuse::kTimedOpCount; ++i) {
    const auto& h = s.latency[i];
    const std::string op = op_label(i);
    std::uint64_t cumulative = 0;
    for (std::size_t b = 0; b < fuse::kLatencyBuckets; ++b) {
      cumulative += h.buckets[b];
      const std::string le =
          b < fuse::kLatencyBoundsNs.size() ? bucket_bound(fuse::kLatencyBoundsNs[b]) : "+Inf";
      w.sample("wardfs_operation_duration_seconds_bucket", op + ",le=\"" + le + "\"",
               std::to_string(cumulative));
    }
    w.sample("wardfs_operation_duration_seconds_sum", op,
             number(static_cast<double>(h.sum_ns) / 1e9));
    w.sample("wardfs_operation_duration_seconds_count", op, std::to_string(cumulative));
  }
}

void render_volume(Writer& w, const MetricsSnapshot& s) {
  w.single("wardfs_read_bytes_total", "counter", "Plaintext bytes read through the mount.",
           std::to_string(s.bytes_read));
  w.single("wardfs_written_bytes_total", "counter", "Plaintext bytes written through the mount.",
           std::to_string(s.bytes_written));
  w.single("wardfs_integrity_failures_total", "counter",
           "Chunks, names or links that failed authentication (tampered or corrupt).",
           std::to_string(s.integrity_failures));
  w.single("wardfs_inodes_held", "gauge", "Files and directories the kernel holds.",
           std::to_string(s.inodes_held));
  w.single("wardfs_inode_fds_held", "gauge",
           "Of those, how many hold an fd in the daemon (directories, symlinks, files once "
           "used), which max_inodes bounds.",
           std::to_string(s.fds_held));
  w.single("wardfs_kernel_entries_released_total", "counter",
           "Kernel entries the daemon asked the kernel to forget to stay within its fd budget.",
           std::to_string(s.entries_released));
  w.single("wardfs_listed_entries_with_attrs_total", "counter",
           "Directory entries listed with their attributes (an fstatat each; readdirplus=).",
           std::to_string(s.listed_with_attrs));
  w.single("wardfs_listed_entries_bare_total", "counter",
           "Directory entries listed without attributes (the kernel looks them up when used).",
           std::to_string(s.listed_bare));
  w.single("wardfs_open_handles", "gauge", "Files and directories open through the mount.",
           std::to_string(s.open_handles));
  w.single("wardfs_active_generation", "gauge", "Key generation new data is sealed with.",
           std::to_string(s.active_generation));
  w.single("wardfs_generations", "gauge", "Key generations the volume holds.",
           std::to_string(s.generations));
  w.single("wardfs_backing_reachable", "gauge",
           "1 when the backing directory answered a lookup for this report, else 0.",
           s.backing_reachable ? "1" : "0");
}

void render_rekey(Writer& w, const MetricsSnapshot& s) {
  w.single("wardfs_rekey_running", "gauge", "1 while a rekey runs, else 0.",
           s.rekey_running ? "1" : "0");
  w.single("wardfs_rekey_done_bytes", "gauge", "Bytes the current or last rekey has re-sealed.",
           std::to_string(s.rekey_done_bytes));
  w.single("wardfs_rekey_planned_bytes", "gauge",
           "Bytes the current or last rekey has to re-seal in all.",
           std::to_string(s.rekey_planned_bytes));
  w.single("wardfs_rekey_rate_bytes_per_second", "gauge",
           "Average speed of the current or last rekey.", number(s.rekey_rate_bytes_per_second));
  w.single("wardfs_rekey_errors", "gauge", "Items the current or last rekey could not re-seal.",
           std::to_string(s.rekey_errors));
}

void render_audit(Writer& w, const MetricsSnapshot& s) {
  w.single("wardfs_audit_records_written_total", "counter", "Audit records written to the log.",
           std::to_string(s.audit_records_written));
  w.single("wardfs_audit_records_dropped_total", "counter",
           "Audit records lost because the log could not be written (fail-open).",
           std::to_string(s.audit_records_dropped));
  w.single("wardfs_audit_healthy", "gauge", "1 while the audit log can be written, else 0.",
           s.audit_healthy ? "1" : "0");
}

}  // namespace

void copy_op_stats(const fuse::OpStats& stats, MetricsSnapshot& out) {
  for (std::size_t i = 0; i < fuse::kOpCount; ++i)
    out.operations[i] = stats.counts[i].load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < fuse::kTimedOpCount; ++i) {
    for (std::size_t b = 0; b < fuse::kLatencyBuckets; ++b)
      out.latency[i].buckets[b] = stats.latency[i].buckets[b].load(std::memory_order_relaxed);
    out.latency[i].sum_ns = stats.latency[i].sum_ns.load(std::memory_order_relaxed);
  }
}

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string render_prometheus(const MetricsSnapshot& snapshot) {
  Writer w(snapshot.mount_point);
  render_volume(w, snapshot);
  render_operations(w, snapshot);
  render_rekey(w, snapshot);
  render_audit(w, snapshot);
  return w.take();
}

MetricsFileWriter::MetricsFileWriter(std::filesystem::path path, std::chrono::milliseconds interval,
                                     std::function<std::string()> render)
    : path_(std::move(path)), render_(std::move(render)) {
  write_now();
  task_.emplace(interval, [this](bool) {
    write_now();
    return true;
  });
}

void MetricsFileWriter::write_now() {
  try {
    audit::write_file_atomic(path_, render_(), 0644);
    if (failing_) spdlog::info("metrics file {} written again", path_.string());
    failing_ = false;
  } catch (const std::exception& e) {
    if (!failing_) spdlog::warn("metrics file not updated (retried every interval): {}", e.what());
    failing_ = true;
  }
}

MetricsFileWriter::~MetricsFileWriter() = default;

}  // namespace wardfs::daemon
