// The Prometheus text renderer and the metrics file writer, without a mount.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "daemon/metrics.h"

namespace wd = wardfs::daemon;
namespace wf = wardfs::fuse;
namespace stdfs = std::filesystem;

namespace {

struct TempDir {
  stdfs::path path;
  TempDir() {
    char tmpl[] = "/tmp/wardfs-daemon-unit-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    stdfs::remove_all(path, ec);
  }
};

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

bool has_line(const std::string& text, const std::string& line) {
  for (const auto& l : lines_of(text))
    if (l == line) return true;
  return false;
}

std::string read_all(const stdfs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

wd::MetricsSnapshot known_snapshot() {
  wd::MetricsSnapshot s;
  s.mount_point = "/mnt/a";
  s.bytes_read = 4096;
  s.bytes_written = 12345;
  s.integrity_failures = 2;
  s.entries_released = 7;
  s.inodes_held = 33;
  s.fds_held = 21;
  s.open_handles = 3;
  s.active_generation = 4;
  s.generations = 2;
  s.rekey_running = true;
  s.rekey_done_bytes = 100;
  s.rekey_planned_bytes = 400;
  s.rekey_rate_bytes_per_second = 2.5;
  s.audit_records_written = 11;
  s.audit_records_dropped = 1;
  s.audit_healthy = false;
  s.operations[static_cast<std::size_t>(wf::Op::write)] = 5;
  s.operations[static_cast<std::size_t>(wf::Op::getattr)] = 9;
  auto& w = s.latency[static_cast<std::size_t>(wf::Op::write)];
  w.buckets[0] = 2;                        // <= 50 us
  w.buckets[4] = 2;                        // <= 1 ms
  w.buckets[wf::kLatencyBuckets - 1] = 1;  // > 5 s
  w.sum_ns = 6'000'150'000;
  return s;
}

}  // namespace

TEST_CASE("metrics: known values render as Prometheus text lines") {
  const std::string text = wd::render_prometheus(known_snapshot());
  for (const char* want : {
           "# HELP wardfs_read_bytes_total Plaintext bytes read through the mount.",
           "# TYPE wardfs_read_bytes_total counter",
           "wardfs_read_bytes_total{mount=\"/mnt/a\"} 4096",
           "wardfs_written_bytes_total{mount=\"/mnt/a\"} 12345",
           "wardfs_integrity_failures_total{mount=\"/mnt/a\"} 2",
           "# TYPE wardfs_inodes_held gauge",
           "wardfs_inodes_held{mount=\"/mnt/a\"} 33",
           "# TYPE wardfs_inode_fds_held gauge",
           "wardfs_inode_fds_held{mount=\"/mnt/a\"} 21",
           "wardfs_open_handles{mount=\"/mnt/a\"} 3",
           "wardfs_kernel_entries_released_total{mount=\"/mnt/a\"} 7",
           "wardfs_active_generation{mount=\"/mnt/a\"} 4",
           "wardfs_generations{mount=\"/mnt/a\"} 2",
           "wardfs_backing_reachable{mount=\"/mnt/a\"} 1",
           "wardfs_operations_total{mount=\"/mnt/a\",op=\"write\"} 5",
           "wardfs_operations_total{mount=\"/mnt/a\",op=\"getattr\"} 9",
           "wardfs_operations_total{mount=\"/mnt/a\",op=\"lookup\"} 0",
           "# TYPE wardfs_operation_duration_seconds histogram",
           "wardfs_operation_duration_seconds_bucket{mount=\"/mnt/a\",op=\"write\",le=\"0.00005\"} "
           "2",
           "wardfs_operation_duration_seconds_bucket{mount=\"/mnt/a\",op=\"write\",le=\"0.0005\"} "
           "2",
           "wardfs_operation_duration_seconds_bucket{mount=\"/mnt/a\",op=\"write\",le=\"0.001\"} 4",
           "wardfs_operation_duration_seconds_bucket{mount=\"/mnt/a\",op=\"write\",le=\"5\"} 4",
           "wardfs_operation_duration_seconds_bucket{mount=\"/mnt/a\",op=\"write\",le=\"+Inf\"} 5",
           "wardfs_operation_duration_seconds_sum{mount=\"/mnt/a\",op=\"write\"} 6.00015",
           "wardfs_operation_duration_seconds_count{mount=\"/mnt/a\",op=\"write\"} 5",
           "wardfs_operation_duration_seconds_count{mount=\"/mnt/a\",op=\"fsync\"} 0",
           "wardfs_rekey_running{mount=\"/mnt/a\"} 1",
           "wardfs_rekey_done_bytes{mount=\"/mnt/a\"} 100",
           "wardfs_rekey_planned_bytes{mount=\"/mnt/a\"} 400",
           "wardfs_rekey_rate_bytes_per_second{mount=\"/mnt/a\"} 2.5",
           "wardfs_audit_records_written_total{mount=\"/mnt/a\"} 11",
           "wardfs_audit_records_dropped_total{mount=\"/mnt/a\"} 1",
           "wardfs_audit_healthy{mount=\"/mnt/a\"} 0",
       }) {
    INFO(want);
    CHECK(has_line(text, want));
  }
  CHECK(text.back() == '\n');
}

TEST_CASE("metrics: every sample follows its family's HELP and TYPE, each family once") {
  const std::string text = wd::render_prometheus(known_snapshot());
  std::map<std::string, std::string> types;
  std::set<std::string> helped;
  std::string current;
  for (const auto& line : lines_of(text)) {
    REQUIRE_FALSE(line.empty());
    if (line.starts_with("# HELP ")) {
      const std::string name = line.substr(7, line.find(' ', 7) - 7);
      CHECK(helped.insert(name).second);
      current = name;
      continue;
    }
    if (line.starts_with("# TYPE ")) {
      const std::string rest = line.substr(7);
      const std::string name = rest.substr(0, rest.find(' '));
      CHECK(name == current);
      CHECK(types.emplace(name, rest.substr(rest.find(' ') + 1)).second);
      continue;
    }
    const std::string name = line.substr(0, line.find('{'));
    INFO(line);
    CHECK((name == current || name == current + "_bucket" || name == current + "_sum" ||
           name == current + "_count"));
    CHECK(line.find("{mount=\"/mnt/a\"") != std::string::npos);
    if (types[current] == "counter") CHECK(current.ends_with("_total"));
    if (types[current] == "gauge") CHECK_FALSE(current.ends_with("_total"));
  }
  CHECK(types["wardfs_operation_duration_seconds"] == "histogram");
}

TEST_CASE("metrics: label values escape backslash, quote and newline") {
  CHECK(wd::escape_label_value("plain/path") == "plain/path");
  CHECK(wd::escape_label_value("a\\b\"c\nd") == "a\\\\b\\\"c\\nd");
  auto s = known_snapshot();
  s.mount_point = "/mnt/we\"ird\\\nname";
  const std::string text = wd::render_prometheus(s);
  CHECK(has_line(text, "wardfs_read_bytes_total{mount=\"/mnt/we\\\"ird\\\\\\nname\"} 4096"));
  CHECK(lines_of(text).size() == lines_of(wd::render_prometheus(known_snapshot())).size());
}

TEST_CASE("metrics: recorded latencies land in the bucket whose bound is >= them") {
  wf::OpStats stats;
  stats.record(wf::Op::read, 50'000);         // exactly 50 us: the first bucket (le is <=)
  stats.record(wf::Op::read, 50'001);         // just over: the second
  stats.record(wf::Op::read, 9'000'000'000);  // 9 s: +Inf
  stats.record(wf::Op::getattr, 1);           // counted, not timed
  wd::MetricsSnapshot s;
  wd::copy_op_stats(stats, s);
  const auto& h = s.latency[static_cast<std::size_t>(wf::Op::read)];
  CHECK(h.buckets[0] == 1);
  CHECK(h.buckets[1] == 1);
  CHECK(h.buckets[wf::kLatencyBuckets - 1] == 1);
  CHECK(h.sum_ns == 9'000'100'001);
  CHECK(s.operations[static_cast<std::size_t>(wf::Op::read)] == 3);
  CHECK(s.operations[static_cast<std::size_t>(wf::Op::getattr)] == 1);
  CHECK(wf::op_name(wf::Op::removexattr) == "removexattr");
  CHECK(wf::op_name(wf::Op::forget) == "forget");
}

TEST_CASE("metrics file: written at once with mode 0644, rewritten every interval, no temp left") {
  TempDir dir;
  const auto path = dir.path / "wardfs.prom";
  ::umask(077);  // the file is 0644 whatever the daemon's umask
  std::atomic<int> renders{0};
  {
    wd::MetricsFileWriter writer(path, std::chrono::milliseconds(100), [&renders] {
      return "wardfs_test{mount=\"/m\"} " + std::to_string(renders.fetch_add(1)) + "\n";
    });
    REQUIRE(stdfs::exists(path));
    CHECK(read_all(path) == "wardfs_test{mount=\"/m\"} 0\n");
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0644);
    for (int i = 0; i < 50 && renders.load() < 3; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(renders.load() >= 3);
  }
  const int after_stop = renders.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(renders.load() == after_stop);  // the thread is gone
  CHECK(stdfs::exists(path));           // and the file stays
  std::vector<std::string> names;
  for (const auto& e : stdfs::directory_iterator(dir.path)) names.push_back(e.path().filename());
  CHECK(names == std::vector<std::string>{"wardfs.prom"});
}

TEST_CASE("metrics file: a directory that is gone is a warning, not a crash") {
  TempDir dir;
  wd::MetricsFileWriter writer(dir.path / "missing" / "wardfs.prom", std::chrono::milliseconds(50),
                               [] { return std::string("x 1\n"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  CHECK_FALSE(stdfs::exists(dir.path / "missing"));
}
