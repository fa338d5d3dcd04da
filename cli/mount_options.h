// `-o` mount options, shared by `wardfs mount -o ...`, fstab entries and the mount(8)
// helper /usr/sbin/mount.fuse.wardfs. One table holds every option and its help text,
// so --help, the man pages (generated from --help) and the parser cannot drift apart.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "daemon/mount.h"

namespace wardfs::cli {

struct MountOptionInfo {
  std::string name;  // "keyfile=FILE", "ro"
  std::string help;
};

const std::vector<MountOptionInfo>& mount_option_table();

// The table as the -o option's help text: one "name  help" line per option.
std::string mount_options_help();

// Every option name of the table, comma-separated, for "unknown mount option" errors.
std::string known_mount_options();

// --log-level / -o log_level=: throws WardError(usage) for anything but a known level.
void set_log_level(const std::string& name, daemon::MountRequest& req);

// Applies one option that is not a plain FUSE/credentials one: pinfile=, keystore=,
// idle=, threads=, and the fstab-only ones (nofail, _netdev, noauto, x-*, ...), which it
// ignores. False if `opt` is none of these; throws WardError(usage) on a bad value.
bool apply_extra_mount_option(const std::string& opt, daemon::MountRequest& req);

// The name mount(8) runs for type fuse.wardfs.
inline constexpr const char* kMountHelperName = "mount.fuse.wardfs";

// Storage for the rewritten argument vector.
struct HelperArgs {
  std::vector<std::string> args;
  std::vector<char*> argv;
};

// When argv[0] is the mount helper, rewrites argc/argv into the equivalent
// `wardfs mount ...` (kept in `storage`). mount(8) calls helpers as
//   mount.fuse.wardfs SOURCE TARGET [-sfnv] [-N NAMESPACE] [-o OPTIONS] [-t TYPE]
// `audit=LEVEL` becomes `--audit-level LEVEL`. Returns an exit code when main should
// stop at once (0 for -f, mount's fake mode; 1 for a malformed call), else nullopt.
std::optional<int> adopt_mount_helper_args(int& argc, char**& argv, HelperArgs& storage);

}  // namespace wardfs::cli
