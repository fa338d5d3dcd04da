#include "daemon/mount_table.h"

#include <fstream>
#include <sstream>
#include <string_view>
#include <utility>

#include "daemon/mount.h"

namespace wardfs::daemon {

namespace stdfs = std::filesystem;

namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_mountinfo(std::string_view field) {
  std::string out;
  for (std::size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size()) {
      out += static_cast<char>(std::stoi(std::string(field.substr(i + 1, 3)), nullptr, 8));
      i += 3;
    } else {
      out += field[i];
    }
  }
  return out;
}

struct MountEntry {
  std::string device;  // major:minor
  std::string mount_point;
  std::string mount_options;  // per mount: "ro,..." or "rw,..."
  std::string fstype;         // "fuse.wardfs" for ours
  std::string source;
  std::string super_options;  // "rw,user_id=0,group_id=0,..." for a FUSE mount
};

// One line of mountinfo: ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] - TYPE
// SOURCE SUPER_OPTIONS.
std::optional<MountEntry> parse_mountinfo_line(const std::string& line) {
  std::istringstream fields(line);
  std::string id, parent, root, field;
  MountEntry entry;
  if (!(fields >> id >> parent >> entry.device >> root >> entry.mount_point >> entry.mount_options))
    return std::nullopt;
  while (fields >> field && field != "-") {
  }
  if (!(fields >> entry.fstype >> entry.source >> entry.super_options)) return std::nullopt;
  entry.mount_point = unescape_mountinfo(entry.mount_point);
  entry.source = unescape_mountinfo(entry.source);
  return entry;
}

std::vector<MountEntry> mount_entries() {
  std::ifstream info("/proc/self/mountinfo");
  std::string line;
  std::vector<MountEntry> entries;
  while (std::getline(info, line)) {
    if (auto entry = parse_mountinfo_line(line)) entries.push_back(std::move(*entry));
  }
  return entries;
}

// The last mount listed at one of `paths`, compared as strings: the one on top when
// several are stacked.
std::optional<MountEntry> entry_listed_at(const std::string& first, const std::string& second) {
  std::optional<MountEntry> found;
  for (auto& entry : mount_entries()) {
    if (entry.mount_point == first || entry.mount_point == second) found = std::move(entry);
  }
  return found;
}

std::optional<MountEntry> entry_at(const stdfs::path& path) {
  // A dead FUSE mount fails every stat (ENOTCONN), so fall back to the lexical path.
  std::error_code ec;
  stdfs::path canonical = stdfs::weakly_canonical(path, ec);
  const std::string lexical = stdfs::absolute(path).lexically_normal().string();
  if (ec || canonical.empty()) canonical = lexical;
  return entry_listed_at(canonical.string(), lexical);
}

}  // namespace

std::optional<std::string> mounted_device(const stdfs::path& path) {
  const auto entry = entry_at(path);
  return entry ? std::optional<std::string>(entry->device) : std::nullopt;
}

std::optional<std::string> mounted_fstype(const stdfs::path& path) {
  const auto entry = entry_at(path);
  return entry ? std::optional<std::string>(entry->fstype) : std::nullopt;
}

std::vector<ListedMount> wardfs_mounts() {
  std::vector<ListedMount> mounts;
  for (auto& entry : mount_entries()) {
    if (entry.fstype != kWardfsFsType) continue;
    const bool read_only = entry.mount_options == "ro" || entry.mount_options.starts_with("ro,");
    mounts.push_back({std::move(entry.source), std::move(entry.mount_point), read_only});
  }
  return mounts;
}

bool is_mount_point(const stdfs::path& path) { return entry_at(path).has_value(); }

std::optional<uid_t> fuse_mount_owner(const stdfs::path& path) {
  const auto entry = entry_at(path);
  if (!entry) return std::nullopt;
  std::istringstream options(entry->super_options);
  for (std::string opt; std::getline(options, opt, ',');) {
    if (!opt.starts_with("user_id=")) continue;
    const std::string n = opt.substr(8);
    if (n.empty() || n.size() > 10 || n.find_first_not_of("0123456789") != std::string::npos)
      return std::nullopt;
    return static_cast<uid_t>(std::stoul(n));
  }
  return std::nullopt;
}

bool widen_readahead(const stdfs::path& canonical_path, unsigned kib) {
  const std::string listed = canonical_path.string();
  const auto entry = entry_listed_at(listed, listed);
  if (!entry) return false;
  const std::string knob = "/sys/class/bdi/" + entry->device + "/read_ahead_kb";
  unsigned current = 0;
  {
    std::ifstream in(knob);
    if (!(in >> current)) return false;
  }
  if (current >= kib) return true;
  std::ofstream out(knob);
  out << kib << '\n';
  out.flush();
  return static_cast<bool>(out);
}

}  // namespace wardfs::daemon
