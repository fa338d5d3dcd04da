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

// Applies comma-separated option groups to `req`; throws WardError(usage) on an unknown
// or malformed option. fstab-only options (nofail, _netdev, noauto, x-*, ...) are ignored.
void apply_mount_options(const std::vector<std::string>& groups, daemon::MountRequest& req);

// The name mount(8) runs for type fuse.wardfs.
inline constexpr const char* kMountHelperName = "mount.fuse.wardfs";

// When argv[0] is the mount helper, the equivalent `wardfs mount ...` arguments
// (argv[0] first); nullopt otherwise. mount(8) calls helpers as
//   mount.fuse.wardfs SOURCE TARGET [-sfnv] [-N NAMESPACE] [-o OPTIONS] [-t TYPE]
// `audit=LEVEL` becomes `--audit-level LEVEL`. An empty vector means "do nothing, exit
// 0" (-f, mount's fake mode). Throws WardError(usage) on a malformed call.
std::optional<std::vector<std::string>> mount_helper_args(int argc, char** argv);

}  // namespace wardfs::cli
