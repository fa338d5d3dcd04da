// -o io_uring= and the kernel parameter it may set, against a stand-in parameter file.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>

#include "base/errors.h"
#include "daemon/transport.h"
#include "tests/crypto/test_util.h"

namespace wd = wardfs::daemon;
namespace stdfs = std::filesystem;

namespace {
std::string read_all(const stdfs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
void write_all(const stdfs::path& p, const std::string& text) { std::ofstream(p) << text; }
}  // namespace

TEST_CASE("the io_uring rings' buffers stay within their budget on any host", "[transport]") {
  constexpr std::size_t kMiB = std::size_t{1} << 20;
  CHECK(wd::ring_queue_depth(1, kMiB) == wd::kMaxRingDepth);  // libfuse's default where it fits
  CHECK(wd::ring_queue_depth(2, kMiB) == 8);
  CHECK(wd::ring_queue_depth(8, kMiB) == 4);
  CHECK(wd::ring_queue_depth(32, kMiB) == 1);
  CHECK(wd::ring_queue_depth(256, kMiB) == 1);  // never none: a CPU without an entry hangs
  for (const unsigned cpus : {1U, 2U, 3U, 4U, 6U, 8U, 12U, 16U, 24U, 32U}) {
    CAPTURE(cpus);
    CHECK(cpus * wd::ring_queue_depth(cpus, kMiB) * kMiB <= wd::kRingBuffersBudget);
  }
}

TEST_CASE("io_uring modes parse and print", "[transport]") {
  for (const auto* name : {"auto", "force", "off"}) {
    const auto mode = wd::parse_io_uring_mode(name);
    REQUIRE(mode);
    CHECK(wd::io_uring_mode_name(*mode) == name);
  }
  CHECK_FALSE(wd::parse_io_uring_mode("on"));
  CHECK_FALSE(wd::parse_io_uring_mode(""));
}

constexpr std::string_view kUring = "io_uring,io_uring_q_depth=";

TEST_CASE("auto and off never touch the kernel parameter", "[transport]") {
  wardfs::test::TempDir dir;
  const auto param = dir.path() / "enable_uring";
  write_all(param, "N\n");
  CHECK_FALSE(wd::kernel_io_uring_enabled(param));
  CHECK(wd::io_uring_session_option(wd::IoUringMode::automatic, param).starts_with(kUring));
  CHECK(wd::io_uring_session_option(wd::IoUringMode::off, param).empty());
  CHECK(read_all(param) == "N\n");
}

TEST_CASE("force sets the kernel parameter only when it is off", "[transport]") {
  wardfs::test::TempDir dir;
  const auto param = dir.path() / "enable_uring";
  write_all(param, "Y\n");
  CHECK(wd::io_uring_session_option(wd::IoUringMode::force, param).starts_with(kUring));
  CHECK(read_all(param) == "Y\n");  // left alone
  write_all(param, "N\n");
  if (::geteuid() == 0) {
    CHECK(wd::io_uring_session_option(wd::IoUringMode::force, param).starts_with(kUring));
    CHECK(wd::kernel_io_uring_enabled(param));
  } else {
    CHECK_THROWS_AS(wd::io_uring_session_option(wd::IoUringMode::force, param), wardfs::WardError);
  }
}

TEST_CASE("force on a kernel without the parameter fails the mount, naming the fix",
          "[transport]") {
  wardfs::test::TempDir dir;
  try {
    wd::io_uring_session_option(wd::IoUringMode::force, dir.path() / "missing");
    FAIL("expected a mount failure");
  } catch (const wardfs::WardError& e) {
    CHECK(e.exit_code() == 4);
    CHECK(std::string(e.what()).find("fuse.enable_uring=1") != std::string::npos);
  }
}
