#include "daemon/transport.h"

#include <sys/sysinfo.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>

#include "base/errors.h"
#include "fuse/filesystem.h"

namespace wardfs::daemon {

namespace stdfs = std::filesystem;

std::optional<IoUringMode> parse_io_uring_mode(std::string_view value) {
  if (value == "auto") return IoUringMode::automatic;
  if (value == "force") return IoUringMode::force;
  if (value == "off") return IoUringMode::off;
  return std::nullopt;
}

std::string_view io_uring_mode_name(IoUringMode mode) {
  switch (mode) {
    case IoUringMode::automatic:
      return "auto";
    case IoUringMode::force:
      return "force";
    case IoUringMode::off:
      return "off";
  }
  return "auto";
}

bool kernel_io_uring_enabled(const stdfs::path& param) {
  std::ifstream in(param);
  char value = 'N';
  return (in >> value) && (value == 'Y' || value == 'y' || value == '1');
}

namespace {

[[noreturn]] void cannot_force(const stdfs::path& param, const std::string& why) {
  throw WardError(ErrorKind::mount_failure,
                  "-o io_uring=force: cannot turn on FUSE over io_uring (" + why +
                      "); as root, echo 1 > " + param.string() +
                      " or boot with fuse.enable_uring=1, or mount with io_uring=auto");
}

void enable_kernel_io_uring(const stdfs::path& param) {
  std::error_code ec;
  if (!stdfs::exists(param, ec))
    cannot_force(param, "this kernel has no " + param.string() +
                            " (it needs CONFIG_FUSE_IO_URING, Linux 6.14 or later)");
  if (::geteuid() != 0) cannot_force(param, "only root may change " + param.string());
  std::ofstream out(param);
  out << "1\n";
  out.flush();
  if (!out) cannot_force(param, "writing " + param.string() + ": " + std::strerror(errno));
  if (!kernel_io_uring_enabled(param))
    cannot_force(param, param.string() + " still reads N after writing 1");
}

}  // namespace

unsigned ring_queue_depth(unsigned cpus, std::size_t payload_bytes) {
  const std::size_t per_cpu = kRingBuffersBudget / std::max<std::size_t>(1, cpus);
  return static_cast<unsigned>(
      std::clamp<std::size_t>(per_cpu / std::max<std::size_t>(1, payload_bytes), 1, kMaxRingDepth));
}

std::string io_uring_session_option(IoUringMode mode, const stdfs::path& param) {
  if (mode == IoUringMode::off) return "";
  if (mode == IoUringMode::force && !kernel_io_uring_enabled(param)) enable_kernel_io_uring(param);
  // One queue per configured CPU, as libfuse makes them (fuse_uring.c).
  const auto cpus = static_cast<unsigned>(std::max(1, ::get_nprocs_conf()));
  return "io_uring,io_uring_q_depth=" +
         std::to_string(ring_queue_depth(cpus, fuse::kMaxWriteBytes));
}

}  // namespace wardfs::daemon
