// `-o` mount options, shared by `wardfs mount -o ...`, fstab entries and the mount(8)
// helper /usr/sbin/mount.fuse.wardfs. One table holds every option and its help text,
// so --help, the man pages (generated from --help) and the parser cannot drift apart.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "daemon/mount.h"

namespace wardfs::cli {

struct MountOptionInfo {
  std::string name;  // "keyfile=FILE", "ro"
  std::string help;
  // Sets the option on the request (the value after '=', empty for a flag); throws
  // WardError(usage) on a bad value. Null for the fstab-only row of the help.
  std::function<void(const std::string& value, daemon::MountRequest&)> apply;
};

const std::vector<MountOptionInfo>& mount_option_table();

// The table as the -o option's help text: one "name  help" line per option.
std::string mount_options_help();

// Every option name of the table, comma-separated, for "unknown mount option" errors.
std::string known_mount_options();

// The setters that -o options and the equivalent --flags share; each throws
// WardError(usage) for a value it does not know.
void set_log_level(const std::string& name, daemon::MountRequest& req);
void set_audit_level(const std::string& name, daemon::MountRequest& req);
void set_audit_on_failure(const std::string& name, daemon::MountRequest& req);
void set_audit_key_missing(const std::string& name, daemon::MountRequest& req);
void set_audit_anchor_cmd(const std::string& line, daemon::MountRequest& req);

// Applies one option through the table, ignoring the fstab-only ones (nofail, _netdev,
// noauto, x-*, ...); throws WardError(usage) for an unknown option or a bad value.
void apply_mount_option(const std::string& opt, daemon::MountRequest& req);
// Every option of each comma-separated group, in order.
void apply_mount_options(const std::vector<std::string>& groups, daemon::MountRequest& req);

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
