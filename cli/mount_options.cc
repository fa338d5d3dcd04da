#include "cli/mount_options.h"

#include <filesystem>
#include <iostream>
#include <sstream>

#include "crypto/errors.h"
#include "daemon/logging.h"
#include "daemon/monitor.h"

namespace wardfs::cli {

namespace {

// Options for mount(8), systemd or other fstab readers, never for the filesystem.
bool is_fstab_only(const std::string& opt) {
  static const char* const kIgnored[] = {"defaults", "auto",  "noauto", "nofail", "_netdev", "user",
                                         "nouser",   "users", "owner",  "group",  "noowner"};
  for (const char* name : kIgnored) {
    if (opt == name) return true;
  }
  return opt.starts_with("x-") || opt.starts_with("comment=");
}

std::string value_of(const std::string& opt, std::size_t prefix_len) {
  std::string value = opt.substr(prefix_len);
  if (value.empty()) throw WardError(ErrorKind::usage, "mount option '" + opt + "' needs a value");
  return value;
}

std::vector<std::string> split_commas(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream in(list);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// The daemon runs from / and writes the file later: an absolute path, in a directory that
// exists now, or a usage error now rather than a warning in the log later.
std::filesystem::path metrics_file_path(const std::string& opt, const std::string& value) {
  const auto path = std::filesystem::absolute(value);
  std::error_code ec;
  if (path.filename().empty() || !std::filesystem::is_directory(path.parent_path(), ec)) {
    throw WardError(ErrorKind::usage, "mount option '" + opt + "': " + path.parent_path().string() +
                                          " is not an existing directory; create it first");
  }
  if (std::filesystem::is_directory(path, ec))
    throw WardError(ErrorKind::usage, "mount option '" + opt + "': " + path.string() +
                                          " is a directory; name a file in it");
  return path;
}

}  // namespace

const std::vector<MountOptionInfo>& mount_option_table() {
  static const std::vector<MountOptionInfo> table = {
      {"ro", "mount read-only"},
      {"rw", "mount read-write (the default)"},
      {"allow_other", "let other users in (permissions are still checked)"},
      {"nonempty", "allow a mount point that is not empty"},
      {"private_backing",
       "with allow_other, refuse to mount (instead of warning) when other users can reach "
       "or write the backing directory"},
      {"keyfile=FILE", "unlock with this key file (mode 0600 or stricter)"},
      {"passfile=FILE", "read the passphrase from this file"},
      {"pinfile=FILE", "PKCS#11 user PIN file (mode 0600) for a pkcs11 keystore"},
      {"keystore=SPEC",
       "require the volume to use this keystore (no commas in SPEC); approves a "
       "command or pkcs11 one for this mount"},
      {"idle=DURATION", "unmount after DURATION (30s, 5m, 1h) with no requests and nothing open"},
      {"threads=N", "maximum FUSE worker threads, 1 to 256 (default 16)"},
      {"shared",
       "several read-write mounts of this volume at once (other machines sharing the backing "
       "directory over NFS, CephFS or GlusterFS, whose byte-range locks must reach every "
       "client): every read-write mount uses it; close-to-open consistency, each write "
       "locks the backing file; not with writeback_cache"},
      {"writeback_cache=0|1",
       "1: let the kernel batch writes in its page cache (faster small and random writes); "
       "a full backing disk is then reported at fsync()/close() instead of write(), and "
       "the unwritten tail reads as zeros until the kernel drops the file from its cache "
       "(at the latest at unmount). Default 0"},
      {"io_uring=auto|force|off",
       "how the kernel hands requests to the daemon. auto (default): FUSE over io_uring when "
       "the kernel allows it (the fuse module's enable_uring parameter is Y), else /dev/fuse, "
       "silently; force: as root, first set /sys/module/fuse/parameters/enable_uring to 1 "
       "(the only kernel setting wardfs changes); off: always /dev/fuse. `wardfs status` "
       "shows which one a mount uses"},
      {"max_inodes=N",
       "most files and directories the kernel may hold at once, 64 to 100000000 (each "
       "costs the daemon an fd); past it the daemon asks the kernel to forget the least "
       "recently used. Default and upper bound: 3/4 of the daemon's RLIMIT_NOFILE (half when that "
       "is under 4096)"},
      {"metrics_file=FILE",
       "keep the mount's metrics in the Prometheus text format in FILE (mode 0644, replaced "
       "atomically; e.g. in node_exporter's textfile collector directory, named *.prom). "
       "The directory must exist; the file stays after unmount with the last values"},
      {"metrics_interval=DURATION",
       "how often metrics_file is rewritten: 15s (default), 1m, or plain seconds; 1s to 1d"},
      {"log_file=FILE",
       "log to this file (created 0600) instead of syslog (the same as --log-file); SIGHUP "
       "reopens it"},
      {"log_level=LEVEL", "trace, debug, info (default), warn or error (the same as --log-level)"},
      {"protect_mountpoint",
       "make the mount point directory itself mode 000 first, so that while nothing is mounted "
       "only root can write into it (the same as --protect-mountpoint)"},
      {"audit=LEVEL", "audit log level keys, access or all (the same as --audit-level)"},
      {"audit_log=FILE", "audit log file (the same as --audit-log)"},
      {"audit_on_failure=POLICY", "fail-open or fail-closed when the audit log cannot be written"},
      {"audit_key_missing=POLICY",
       "refuse or recreate when the audit key is gone but the log exists (the same as "
       "--audit-key-missing)"},
      {"audit_anchor_cmd=CMD",
       "external anchor command, no commas (the same as --audit-anchor-cmd)"},
      {"nofail,_netdev,noauto,auto,defaults,user,users,x-*,comment=*",
       "for mount(8) and systemd; ignored by wardfs"},
  };
  return table;
}

void set_log_level(const std::string& name, daemon::MountRequest& req) {
  if (!daemon::is_log_level(name))
    throw WardError(ErrorKind::usage,
                    "log level must be trace, debug, info, warn or error, not '" + name + "'");
  req.log_level = name;
}

std::string known_mount_options() {
  std::string out;
  for (const auto& o : mount_option_table()) out += (out.empty() ? "" : ", ") + o.name;
  return out;
}

std::string mount_options_help() {
  std::string out = "Comma-separated mount options:";
  for (const auto& o : mount_option_table()) out += "\n  " + o.name + "  " + o.help;
  return out;
}

bool apply_extra_mount_option(const std::string& opt, daemon::MountRequest& req) {
  if (is_fstab_only(opt)) return true;
  if (opt.starts_with("pinfile=")) {
    req.credentials.pin_file = value_of(opt, 8);
  } else if (opt.starts_with("keystore=")) {
    req.credentials.expected_keystore = value_of(opt, 9);
  } else if (opt.starts_with("idle=")) {
    const auto idle = daemon::parse_duration(value_of(opt, 5));
    if (!idle)
      throw WardError(ErrorKind::usage,
                      "mount option '" + opt + "': expected a duration like 30s or 5m");
    req.idle = *idle;
  } else if (opt.starts_with("threads=")) {
    const std::string n = value_of(opt, 8);
    if (n.find_first_not_of("0123456789") != std::string::npos || n.size() > 3 ||
        std::stoul(n) < 1 || std::stoul(n) > 256) {
      throw WardError(ErrorKind::usage, "mount option '" + opt + "': expected 1 to 256");
    }
    req.max_threads = static_cast<unsigned>(std::stoul(n));
  } else if (opt.starts_with("max_inodes=")) {
    const std::string n = value_of(opt, 11);
    if (n.find_first_not_of("0123456789") != std::string::npos || n.size() > 9 ||
        std::stoul(n) < 64) {
      throw WardError(ErrorKind::usage, "mount option '" + opt + "': expected 64 to 100000000");
    }
    req.max_inodes = std::stoul(n);
  } else if (opt.starts_with("metrics_file=")) {
    req.metrics_file = metrics_file_path(opt, value_of(opt, 13));
  } else if (opt.starts_with("metrics_interval=")) {
    const auto interval = daemon::parse_duration(value_of(opt, 17));
    if (!interval || *interval < std::chrono::seconds(1) || *interval > std::chrono::hours(24))
      throw WardError(ErrorKind::usage, "mount option '" + opt +
                                            "': expected a duration from 1s to 1d, like 15s, "
                                            "1m or 30 (seconds)");
    req.metrics_interval = *interval;
  } else if (opt.starts_with("log_file=")) {
    req.log_file = std::filesystem::absolute(value_of(opt, 9));
  } else if (opt.starts_with("log_level=")) {
    set_log_level(value_of(opt, 10), req);
  } else if (opt == "protect_mountpoint") {
    req.protect_mount_point = true;
  } else if (opt == "private_backing") {
    req.require_private_backing = true;
  } else if (opt == "shared") {
    req.shared = true;
  } else if (opt == "writeback_cache=0" || opt == "writeback_cache=1") {
    req.writeback_cache = opt.back() == '1';
  } else if (opt.starts_with("writeback_cache=")) {
    throw WardError(ErrorKind::usage, "mount option '" + opt + "': expected 0 or 1");
  } else if (opt.starts_with("io_uring=")) {
    const auto mode = daemon::parse_io_uring_mode(value_of(opt, 9));
    if (!mode)
      throw WardError(ErrorKind::usage, "mount option '" + opt + "': expected auto, force or off");
    req.io_uring = *mode;
  } else {
    return false;
  }
  return true;
}

namespace {

// mount(8)'s helper call -> `wardfs mount ...` arguments; empty for -f (fake mode).
std::vector<std::string> helper_to_mount_args(int argc, char** argv) {
  std::vector<std::string> positional;
  std::vector<std::string> options;
  std::optional<std::string> audit;
  bool fake = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if ((arg == "-o" || arg == "-t" || arg == "-N") && i + 1 >= argc) {
      throw WardError(ErrorKind::usage,
                      kMountHelperName + std::string(": ") + arg + " needs a value");
    }
    if (arg == "-o") {
      for (auto& opt : split_commas(argv[++i])) {
        if (opt.starts_with("audit=")) {
          audit = opt.substr(6);
        } else {
          options.push_back(opt);
        }
      }
    } else if (arg == "-t" || arg == "-N") {
      ++i;  // the type is ours by definition; FUSE helpers do not switch namespaces
    } else if (arg.size() > 1 && arg[0] == '-' &&
               arg.find_first_not_of("sfnv", 1) == std::string::npos) {
      fake = fake || arg.find('f') != std::string::npos;  // -s sloppy, -n no mtab, -v verbose
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.size() != 2) {
    throw WardError(ErrorKind::usage, std::string("usage: ") + kMountHelperName +
                                          " CIPHERDIR MOUNTPOINT [-sfnv] [-o OPTIONS]");
  }
  if (fake) return {};
  std::vector<std::string> args = {"wardfs", "mount", positional[0], positional[1]};
  if (!options.empty()) {
    std::string joined;
    for (const auto& o : options) joined += (joined.empty() ? "" : ",") + o;
    args.insert(args.end(), {"-o", joined});
  }
  if (audit) args.insert(args.end(), {"--audit-level", *audit});
  return args;
}

}  // namespace

std::optional<int> adopt_mount_helper_args(int& argc, char**& argv, HelperArgs& storage) {
  if (argc < 1 || std::filesystem::path(argv[0]).filename() != kMountHelperName)
    return std::nullopt;
  try {
    storage.args = helper_to_mount_args(argc, argv);
  } catch (const WardError& e) {
    std::cerr << "wardfs: " << e.what() << "\n";
    return e.exit_code();
  }
  if (storage.args.empty()) return 0;
  storage.argv.clear();
  for (auto& a : storage.args) storage.argv.push_back(a.data());
  storage.argv.push_back(nullptr);
  argc = static_cast<int>(storage.args.size());
  argv = storage.argv.data();
  return std::nullopt;
}

}  // namespace wardfs::cli
