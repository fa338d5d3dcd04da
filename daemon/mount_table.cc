#include "daemon/mount_table.h"

#include <fstream>
#include <sstream>
#include <string_view>

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
  std::string device;         // major:minor
  std::string fstype;         // "fuse.wardfs" for ours
  std::string super_options;  // "rw,user_id=0,group_id=0,..." for a FUSE mount
};

// The last mount listed at one of `paths`, compared as strings.
std::optional<MountEntry> entry_listed_at(const std::string& first, const std::string& second) {
  std::ifstream info("/proc/self/mountinfo");
  std::string line;
  std::optional<MountEntry> entry;
  while (std::getline(info, line)) {
    std::istringstream fields(line);
    std::string id, parent, devs, root, mount_point, field;
    fields >> id >> parent >> devs >> root >> mount_point;
    const std::string listed = unescape_mountinfo(mount_point);
    // The last match is the one on top when several are stacked.
    if (listed != first && listed != second) continue;
    // Optional fields up to a lone "-", then the filesystem type.
    while (fields >> field && field != "-") {
    }
    std::string fstype, source, super_options;
    fields >> fstype >> source >> super_options;
    entry = MountEntry{devs, fstype, super_options};
  }
  return entry;
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
