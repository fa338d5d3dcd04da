#include "audit/files.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/errors.h"
#include "base/posix_io.h"
#include "crypto/kdf.h"

namespace wardfs::audit {

namespace stdfs = std::filesystem;

namespace {
constexpr std::string_view kCheckpointLabel = "wardfs audit checkpoint v1";
constexpr std::size_t kSegmentDigits = 6;
constexpr std::size_t kTailWindow = 1U << 20;

stdfs::path state_dir() {
  if (const char* dir = std::getenv("WARDFS_AUDIT_DIR"); dir != nullptr && *dir != '\0') return dir;
  if (::geteuid() == 0) return "/var/log/wardfs";
  if (const char* state = std::getenv("XDG_STATE_HOME"); state != nullptr && *state != '\0') {
    return stdfs::path(state) / "wardfs";
  }
  const char* home = std::getenv("HOME");
  return stdfs::path(home != nullptr ? home : "/tmp") / ".local/state/wardfs";
}

Mac checkpoint_mac(crypto::ByteView key, std::uint64_t seq, const Mac& mac) {
  crypto::Bytes message(kCheckpointLabel.begin(), kCheckpointLabel.end());
  message.push_back(0);
  std::uint8_t seq_le[8];
  crypto::put_le64(seq_le, seq);
  message.insert(message.end(), std::begin(seq_le), std::end(seq_le));
  message.insert(message.end(), mac.begin(), mac.end());
  return crypto::hmac_sha256(key, message);
}

}  // namespace

bool hex_to_mac(std::string_view hex, Mac& out) {
  std::size_t len = 0;
  return sodium_hex2bin(out.data(), out.size(), hex.data(), hex.size(), nullptr, &len, nullptr) ==
             0 &&
         len == out.size();
}

stdfs::path default_log_path(std::string_view volume_id) {
  return state_dir() / (std::string(volume_id) + ".audit.jsonl");
}

stdfs::path checkpoint_path(const stdfs::path& live) { return live.string() + ".checkpoint"; }
stdfs::path lock_path(const stdfs::path& live) { return live.string() + ".lock"; }

std::vector<stdfs::path> log_segments(const stdfs::path& live) {
  std::vector<stdfs::path> out;
  const std::string prefix = live.filename().string() + ".";
  std::error_code ec;
  for (const auto& entry : stdfs::directory_iterator(live.parent_path(), ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() != prefix.size() + kSegmentDigits ||
        name.compare(0, prefix.size(), prefix) != 0)
      continue;
    const std::string digits = name.substr(prefix.size());
    if (std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      out.push_back(entry.path());
    }
  }
  std::sort(out.begin(), out.end());
  if (stdfs::exists(live, ec)) out.push_back(live);
  return out;
}

stdfs::path next_segment_path(const stdfs::path& live) {
  auto segments = log_segments(live);
  unsigned next = 1;
  for (const auto& s : segments) {
    if (s == live) continue;
    const std::string name = s.filename().string();
    next = std::max(
        next, static_cast<unsigned>(std::stoul(name.substr(name.size() - kSegmentDigits))) + 1);
  }
  char suffix[16];
  std::snprintf(suffix, sizeof suffix, ".%06u", next);
  return live.string() + suffix;
}

std::string seal_checkpoint(const Checkpoint& c, crypto::ByteView key) {
  const nlohmann::json doc = {
      {"seq", c.seq},
      {"mac", crypto::hex_encode(c.mac)},
      {"time", c.time},
      {"checkpoint_mac", crypto::hex_encode(checkpoint_mac(key, c.seq, c.mac))}};
  return doc.dump() + "\n";
}

std::optional<Checkpoint> open_checkpoint(std::string_view text, crypto::ByteView key,
                                          std::string& why) {
  const auto doc = nlohmann::json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("seq") ||
      !doc["seq"].is_number_unsigned() || !doc.contains("mac") || !doc["mac"].is_string() ||
      !doc.contains("checkpoint_mac") || !doc["checkpoint_mac"].is_string()) {
    why = "the checkpoint is malformed";
    return std::nullopt;
  }
  Checkpoint c;
  c.seq = doc["seq"].get<std::uint64_t>();
  c.time = doc.value("time", "");
  Mac stored{};
  if (!hex_to_mac(doc["mac"].get<std::string>(), c.mac) ||
      !hex_to_mac(doc["checkpoint_mac"].get<std::string>(), stored)) {
    why = "the checkpoint is malformed";
    return std::nullopt;
  }
  const Mac expected = checkpoint_mac(key, c.seq, c.mac);
  if (sodium_memcmp(expected.data(), stored.data(), stored.size()) != 0) {
    why = "the checkpoint's MAC does not match (edited or forged)";
    return std::nullopt;
  }
  return c;
}

int read_tail(int fd, Tail& out) {
  out = Tail{};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return -errno;
  const auto size = static_cast<std::uint64_t>(st.st_size);
  const std::uint64_t start = size > kTailWindow ? size - kTailWindow : 0;
  std::string buf(size - start, '\0');
  const ssize_t n = pread_full(fd, buf.data(), buf.size(), static_cast<off_t>(start));
  if (n < 0) return static_cast<int>(n);
  buf.resize(static_cast<std::size_t>(n));
  const auto last_nl = buf.rfind('\n');
  if (last_nl == std::string::npos) {
    out.torn_at = start;
    out.torn = !buf.empty();
    out.fragment = buf;
    return 0;
  }
  out.torn_at = start + last_nl + 1;
  out.torn = last_nl + 1 != buf.size();
  out.fragment = buf.substr(last_nl + 1);
  // Empty lines are skipped, as verify skips them: the last line is the last non-empty
  // one. Taking a trailing blank line for the end of the chain made the writer restart
  // at record 1 under a "cut off" complaint, failing a log that verified.
  const auto line_end = buf.find_last_not_of('\n', last_nl);
  if (line_end == std::string::npos) return 0;
  const auto prev_nl = buf.rfind('\n', line_end);
  const std::size_t line_start = prev_nl == std::string::npos ? 0 : prev_nl + 1;
  out.last_line = buf.substr(line_start, line_end + 1 - line_start);
  return 0;
}

std::string read_text_file(const stdfs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw WardError(ErrorKind::io, "cannot read " + path.string() + ": " + std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

void write_file_atomic(const stdfs::path& path, std::string_view text, mode_t mode) {
  const stdfs::path temp = path.string() + ".tmp";
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd)
    throw WardError(ErrorKind::io, "cannot write " + temp.string() + ": " + std::strerror(errno));
  if (::fchmod(fd.get(), mode) != 0 || pwrite_full(fd.get(), text.data(), text.size(), 0) < 0 ||
      ::fdatasync(fd.get()) != 0 || ::rename(temp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(temp.c_str());
    throw WardError(ErrorKind::io, "cannot write " + path.string() + ": " + std::strerror(err));
  }
}

}  // namespace wardfs::audit
