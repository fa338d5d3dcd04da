// Which channel the kernel uses to hand FUSE requests to the daemon: /dev/fuse, or FUSE
// over io_uring (kernel 6.14+, CONFIG_FUSE_IO_URING, off until an admin turns on the fuse
// module's enable_uring parameter). io_uring saves a read()/write() pair per request.
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace wardfs::daemon {

// -o io_uring=: auto (the default) asks libfuse for io_uring, which the kernel grants only
// when enable_uring is on, and otherwise serves over /dev/fuse without a word; force also
// turns enable_uring on first (root only); off always uses /dev/fuse.
enum class IoUringMode { automatic, force, off };

inline const std::filesystem::path kEnableUringParam = "/sys/module/fuse/parameters/enable_uring";

std::optional<IoUringMode> parse_io_uring_mode(std::string_view value);
std::string_view io_uring_mode_name(IoUringMode mode);

// True when the kernel offers FUSE over io_uring to new mounts (the parameter reads Y).
bool kernel_io_uring_enabled(const std::filesystem::path& param = kEnableUringParam);

// libfuse 3.18 gives each CPU a ring of io_uring_q_depth entries (8 by default), each with
// its own payload buffer of max_write (fuse::kMaxWriteBytes, 1 MiB): 8 MiB per CPU once large
// writes have touched them, 256 MiB on a 32-CPU host. The depth is chosen so that all the rings
// together stay within kRingBuffersBudget, with at least one entry per CPU.
inline constexpr std::size_t kRingBuffersBudget = std::size_t{32} << 20;
inline constexpr unsigned kMaxRingDepth = 8;  // libfuse's default
unsigned ring_queue_depth(unsigned cpus, std::size_t payload_bytes);

// The libfuse session options for `mode` ("io_uring,io_uring_q_depth=N", or empty: N from
// ring_queue_depth for this host's CPUs, as libfuse counts them). For force, first sets the
// kernel parameter to 1 if it is not; throws WardError(mount_failure) naming the fix when
// that is impossible (no such parameter, or not root). The only kernel setting wardfs ever
// changes, and only when told to.
std::string io_uring_session_option(IoUringMode mode,
                                    const std::filesystem::path& param = kEnableUringParam);

}  // namespace wardfs::daemon
