#include "cli/mount_options.h"

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "audit/key_loss.h"
#include "audit/log.h"
#include "base/errors.h"
#include "daemon/logging.h"
#include "daemon/monitor.h"
#include "daemon/transport.h"
#include "keystore/command_runner.h"

namespace wardfs::cli {

namespace {

using Req = daemon::MountRequest;

// Options for mount(8), systemd or other fstab readers, never for the filesystem.
bool is_fstab_only(const std::string& opt) {
  static const char* const kIgnored[] = {"defaults", "auto",  "noauto", "nofail", "_netdev", "user",
                                         "nouser",   "users", "owner",  "group",  "noowner"};
  for (const char* name : kIgnored) {
    if (opt == name) return true;
  }
  return opt.starts_with("x-") || opt.starts_with("comment=");
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

[[noreturn]] void bad_value(const std::string& key, const std::string& value,
                            const std::string& expected) {
  throw WardError(ErrorKind::usage,
                  "mount option '" + key + "=" + value + "': expected " + expected);
}

std::uint64_t number_value(const std::string& key, const std::string& value, std::uint64_t low,
                           std::uint64_t high) {
  const std::string range = std::to_string(low) + " to " + std::to_string(high);
  if (value.empty() || value.size() > 9 ||
      value.find_first_not_of("0123456789") != std::string::npos)
    bad_value(key, value, range);
  const std::uint64_t n = std::stoull(value);
  if (n < low || n > high) bad_value(key, value, range);
  return n;
}

std::chrono::milliseconds duration_value(const std::string& key, const std::string& value,
                                         const std::string& expected) {
  const auto d = daemon::parse_duration(value);
  if (!d) bad_value(key, value, expected);
  return *d;
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

void set_log_level(const std::string& name, daemon::MountRequest& req) {
  if (!daemon::is_log_level(name))
    throw WardError(ErrorKind::usage,
                    "log level must be trace, debug, info, warn or error, not '" + name + "'");
  req.log_level = name;
}

void set_audit_level(const std::string& name, daemon::MountRequest& req) {
  const auto level = audit::level_from_name(name);
  if (!level)
    throw WardError(ErrorKind::usage,
                    "audit level must be keys, access or all, not '" + name + "'");
  req.audit_level = *level;
}

void set_audit_on_failure(const std::string& name, daemon::MountRequest& req) {
  const auto policy = audit::on_failure_from_name(name);
  if (!policy)
    throw WardError(ErrorKind::usage,
                    "audit failure policy must be fail-open or fail-closed, not '" + name + "'");
  req.audit_on_failure = *policy;
}

void set_audit_key_missing(const std::string& name, daemon::MountRequest& req) {
  const auto policy = audit::missing_key_from_name(name);
  if (!policy)
    throw WardError(ErrorKind::usage,
                    "--audit-key-missing must be refuse or recreate, not '" + name + "'");
  req.audit_key_missing = *policy;
}

// The daemon runs it from / after detaching: a relative program path is made absolute
// now, and a missing one is a usage error now rather than a failed anchor later.
void set_audit_anchor_cmd(const std::string& line, daemon::MountRequest& req) {
  auto argv = keystore::command_argv(line);
  if (argv[0].find('/') != std::string::npos) {
    argv[0] = std::filesystem::absolute(argv[0]).string();
    if (::access(argv[0].c_str(), X_OK) != 0) {
      throw WardError(ErrorKind::usage,
                      "--audit-anchor-cmd: cannot run " + argv[0] + ": " + std::strerror(errno));
    }
  }
  req.audit_anchor_argv = std::move(argv);
}

const std::vector<MountOptionInfo>& mount_option_table() {
  static const std::vector<MountOptionInfo> table = {
      {"ro", "mount read-only", [](const std::string&, Req& r) { r.read_only = true; }},
      {"rw", "mount read-write (the default)", [](const std::string&, Req&) {}},
      {"allow_other", "let other users in (permissions are still checked)",
       [](const std::string&, Req& r) { r.allow_other = true; }},
      {"nonempty", "allow a mount point that is not empty",
       [](const std::string&, Req& r) { r.nonempty = true; }},
      {"private_backing",
       "with allow_other, refuse to mount (instead of warning) when other users can reach "
       "or write the backing directory",
       [](const std::string&, Req& r) { r.require_private_backing = true; }},
      {"keyfile=FILE", "unlock with this key file (mode 0600 or stricter)",
       [](const std::string& v, Req& r) { r.credentials.keyfile = v; }},
      {"passfile=FILE", "read the passphrase from this file",
       [](const std::string& v, Req& r) { r.credentials.passfile = v; }},
      {"pinfile=FILE", "PKCS#11 user PIN file (mode 0600) for a pkcs11 keystore",
       [](const std::string& v, Req& r) { r.credentials.pin_file = v; }},
      {"keystore=SPEC",
       "require the volume to use this keystore (no commas in SPEC); approves a "
       "command or pkcs11 one for this mount",
       [](const std::string& v, Req& r) { r.credentials.expected_keystore = v; }},
      {"idle=DURATION", "unmount after DURATION (30s, 5m, 1h) with no requests and nothing open",
       [](const std::string& v, Req& r) {
         r.idle = duration_value("idle", v, "a duration like 30s or 5m");
       }},
      {"threads=N", "maximum FUSE worker threads, 1 to 256 (default 16)",
       [](const std::string& v, Req& r) {
         r.max_threads = static_cast<unsigned>(number_value("threads", v, 1, 256));
       }},
      {"shared",
       "several read-write mounts of this volume at once (other machines sharing the backing "
       "directory over NFS, CephFS or GlusterFS, whose byte-range locks must reach every "
       "client): every read-write mount uses it; close-to-open consistency, each write "
       "locks the backing file; not with writeback_cache",
       [](const std::string&, Req& r) { r.shared = true; }},
      {"writeback_cache=0|1",
       "1: let the kernel keep writes in its page cache and send them in batches (fewer "
       "round trips for files written in many pieces, such as untar, and random writes; "
       "one more per file written in one piece, for its times). The daemon then holds a "
       "reserve of backing space (twice the kernel's dirty limit for the mount plus 8 MiB: "
       "RAM/250 + 8 MiB with the default vm.dirty_ratio; see README) so that a full backing "
       "disk still fails write() with ENOSPC. Not with -o shared, read-only mounts or "
       "volumes whose holes policy is never. Default 0",
       [](const std::string& v, Req& r) {
         if (v != "0" && v != "1") bad_value("writeback_cache", v, "0 or 1");
         r.writeback_cache = v == "1";
       }},
      {"readdirplus=adaptive|auto|always",
       "which batches of a directory listing carry the entries' attributes. adaptive "
       "(default): the first, and the others while programs on this mount stat what they "
       "list (find, ls -l, du, rsync, a loader opening every file), sparing a round trip "
       "per entry; auto: the kernel's heuristic, the first batch only; always: every "
       "batch, which makes a listing nobody stats (os.listdir) slower",
       [](const std::string& v, Req& r) {
         if (v == "adaptive") {
           r.readdirplus = fuse::ReaddirPlus::adaptive;
         } else if (v == "auto") {
           r.readdirplus = fuse::ReaddirPlus::kernel_auto;
         } else if (v == "always") {
           r.readdirplus = fuse::ReaddirPlus::always;
         } else {
           bad_value("readdirplus", v, "adaptive, auto or always");
         }
       }},
      {"io_uring=auto|force|off",
       "how the kernel hands requests to the daemon. auto (default): FUSE over io_uring when "
       "the kernel allows it (the fuse module's enable_uring parameter is Y), else /dev/fuse, "
       "silently; force: as root, first set /sys/module/fuse/parameters/enable_uring to 1 "
       "(the only kernel setting wardfs changes); off: always /dev/fuse. `wardfs status` "
       "shows which one a mount uses",
       [](const std::string& v, Req& r) {
         const auto mode = daemon::parse_io_uring_mode(v);
         if (!mode) bad_value("io_uring", v, "auto, force or off");
         r.io_uring = *mode;
       }},
      {"max_inodes=N",
       "most entries the daemon keeps an fd open for while the kernel knows them "
       "(directories, symlinks, and files once opened or changed; a file only looked up or "
       "listed costs none), 64 to 100000000; past it the daemon asks the kernel to forget "
       "the least recently used. Default and upper bound: 3/4 of the daemon's RLIMIT_NOFILE "
       "(half when that is under 4096)",
       [](const std::string& v, Req& r) {
         r.max_inodes = number_value("max_inodes", v, 64, 100000000);
       }},
      {"metrics_file=FILE",
       "keep the mount's metrics in the Prometheus text format in FILE (mode 0644, replaced "
       "atomically; e.g. in node_exporter's textfile collector directory, named *.prom). "
       "The directory must exist; the file stays after unmount with the last values",
       [](const std::string& v, Req& r) {
         r.metrics_file = metrics_file_path("metrics_file=" + v, v);
       }},
      {"metrics_interval=DURATION",
       "how often metrics_file is rewritten: 15s (default), 1m, or plain seconds; 1s to 1d",
       [](const std::string& v, Req& r) {
         const auto interval = daemon::parse_duration(v);
         if (!interval || *interval < std::chrono::seconds(1) || *interval > std::chrono::hours(24))
           bad_value("metrics_interval", v,
                     "a duration from 1s to 1d, like 15s, 1m or 30 (seconds)");
         r.metrics_interval = *interval;
       }},
      {"log_file=FILE",
       "log to this file (created 0600) instead of syslog (the same as --log-file); SIGHUP "
       "reopens it",
       [](const std::string& v, Req& r) { r.log_file = std::filesystem::absolute(v); }},
      {"log_level=LEVEL", "trace, debug, info (default), warn or error (the same as --log-level)",
       [](const std::string& v, Req& r) { set_log_level(v, r); }},
      {"protect_mountpoint",
       "make the mount point directory itself mode 000 first, so that while nothing is mounted "
       "only root can write into it (the same as --protect-mountpoint)",
       [](const std::string&, Req& r) { r.protect_mount_point = true; }},
      {"audit=LEVEL", "audit log level keys, access or all (the same as --audit-level)",
       [](const std::string& v, Req& r) { set_audit_level(v, r); }},
      {"audit_log=FILE", "audit log file (the same as --audit-log)",
       [](const std::string& v, Req& r) { r.audit_log = std::filesystem::absolute(v); }},
      {"audit_on_failure=POLICY", "fail-open or fail-closed when the audit log cannot be written",
       [](const std::string& v, Req& r) { set_audit_on_failure(v, r); }},
      {"audit_key_missing=POLICY",
       "refuse or recreate when the audit key is gone but the log exists (the same as "
       "--audit-key-missing)",
       [](const std::string& v, Req& r) { set_audit_key_missing(v, r); }},
      {"audit_anchor_cmd=CMD",
       "external anchor command, no commas (the same as --audit-anchor-cmd)",
       [](const std::string& v, Req& r) { set_audit_anchor_cmd(v, r); }},
      {"nofail,_netdev,noauto,auto,defaults,user,users,x-*,comment=*",
       "for mount(8) and systemd; ignored by wardfs", nullptr},
  };
  return table;
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

void apply_mount_option(const std::string& opt, daemon::MountRequest& req) {
  if (opt.empty() || is_fstab_only(opt)) return;
  const auto eq = opt.find('=');
  const std::string key = opt.substr(0, eq);
  for (const auto& o : mount_option_table()) {
    if (!o.apply) continue;
    const auto name_eq = o.name.find('=');
    if (o.name.substr(0, name_eq) != key) continue;
    const bool takes_value = name_eq != std::string::npos;
    if (takes_value && (eq == std::string::npos || eq + 1 == opt.size()))
      throw WardError(ErrorKind::usage, "mount option '" + opt + "' needs a value");
    if (!takes_value && eq != std::string::npos) break;  // a flag given a value: unknown
    o.apply(takes_value ? opt.substr(eq + 1) : std::string(), req);
    return;
  }
  throw WardError(ErrorKind::usage,
                  "unknown mount option '" + opt + "' (known: " + known_mount_options() + ")");
}

void apply_mount_options(const std::vector<std::string>& groups, daemon::MountRequest& req) {
  for (const auto& group : groups) {
    for (const auto& opt : split_commas(group)) apply_mount_option(opt, req);
  }
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
