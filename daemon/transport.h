// Which channel the kernel uses to hand FUSE requests to the daemon: /dev/fuse, or FUSE
// over io_uring (kernel 6.14+, CONFIG_FUSE_IO_URING, off until an admin turns on the fuse
// module's enable_uring parameter). io_uring saves a read()/write() pair per request.
#pragma once

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

// The libfuse session option for `mode` ("io_uring" or empty). For force, first sets the
// kernel parameter to 1 if it is not; throws WardError(mount_failure) naming the fix when
// that is impossible (no such parameter, or not root). The only kernel setting wardfs ever
// changes, and only when told to.
std::string io_uring_session_option(IoUringMode mode,
                                    const std::filesystem::path& param = kEnableUringParam);

}  // namespace wardfs::daemon
