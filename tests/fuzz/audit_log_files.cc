#include "tests/fuzz/audit_log_files.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <utility>

#include "audit/files.h"
#include "tests/fuzz/fuzz_common.h"

namespace wardfs::fuzz {

namespace stdfs = std::filesystem;

namespace {

constexpr std::string_view kVolumeId = "fuzz-volume";
constexpr const char* kSegmentName = "audit.jsonl.000001";

// Record `seq` of a made-up but typical session: key events, opens, a rekey.
audit::Event session_event(std::uint64_t seq) {
  audit::Event e;
  e.principal = {1000, 1000, 4242, "trainer"};
  e.time = "2026-01-01T00:00:0" + std::to_string(seq % 10) + ".000000Z";
  switch (seq % 4) {
    case 1:
      e.event = "unwrap";
      e.keystore = "keyfile:/etc/wardfs/k";
      e.generation = 1;
      break;
    case 2:
      e.event = "open";
      e.path = "/data/caf\xc3\xa9.bin";
      e.detail = {{"mode", "read"}, {"created", false}};
      break;
    case 3:
      e.event = "rotate";
      e.generation = 2;
      e.result = "ok";
      break;
    default:
      e.event = "rekey_progress";
      e.detail = {{"bytes_done", 4096}, {"bytes_total", 8192}};
      break;
  }
  return e;
}

// The first record of a segment after rotation, as AuditLog::rotate_if_large writes it.
audit::Event continued_event(const audit::Mac& prev) {
  audit::Event e;
  e.principal = {0, 0, 1, "wardfs"};
  e.time = "2026-01-01T00:00:05.000000Z";
  e.event = "log_continued";
  e.detail = {{"previous_segment", kSegmentName}, {"prev_mac", crypto::hex_encode(prev)}};
  return e;
}

Chain make_chain(std::size_t records, std::size_t split) {
  Chain c;
  c.split = split;
  audit::Mac prev{};
  std::string segment;
  std::string live;
  for (std::uint64_t seq = 1; seq <= records; ++seq) {
    const bool continued = split > 0 && seq == split + 1;
    const audit::Event e = continued ? continued_event(prev) : session_event(seq);
    audit::Mac mac{};
    const std::string line = audit::seal_record(e, seq, kVolumeId, prev, audit_key(), mac);
    (seq <= split ? segment : live) += line + "\n";
    c.links.push_back({audit::parse_record_line(line).value().text, mac});
    prev = mac;
  }
  if (split > 0) c.files[Role::segment] = segment;
  c.files[Role::live] = live;
  c.files[Role::checkpoint] =
      audit::seal_checkpoint({records, prev, "2026-01-01T00:00:09.000000Z"}, audit_key());
  return c;
}

// getline's view of a file: a last line without '\n' still counts.
void append_lines(const stdfs::path& file, std::vector<std::string>& out) {
  std::ifstream in(file, std::ios::binary);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(std::move(line));
  }
}

// tmpfs when there is one: the writer fsyncs every batch, and the disk is shared.
stdfs::path temp_root() {
  std::error_code ec;
  if (::access("/dev/shm", W_OK) == 0 && stdfs::is_directory("/dev/shm", ec)) return "/dev/shm";
  return stdfs::temp_directory_path();
}

}  // namespace

const crypto::Bytes& audit_key() {
  static const crypto::Bytes key = seq(0x40, 32);
  return key;
}

const Chain& chain(std::size_t records, std::size_t split) {
  // Sealing reads /proc for each Event's default principal: build each chain once.
  static std::map<std::pair<std::size_t, std::size_t>, Chain> cache;
  const auto key = std::make_pair(records, split);
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, make_chain(records, split)).first;
  return it->second;
}

LogDir::LogDir() {
  std::string tmpl = (temp_root() / "wardfs-fuzz-audit-XXXXXX").string();
  check(::mkdtemp(tmpl.data()) != nullptr, "mkdtemp");
  dir_ = tmpl;
}

LogDir::~LogDir() {
  std::error_code ec;
  stdfs::remove_all(dir_, ec);
}

stdfs::path LogDir::path(Role role) const {
  switch (role) {
    case Role::segment:
      return dir_ / kSegmentName;
    case Role::live:
      return live();
    case Role::checkpoint:
      return audit::checkpoint_path(live());
  }
  return live();
}

void LogDir::put(const LogFiles& files) const {
  std::error_code ec;
  for (const auto& entry : stdfs::directory_iterator(dir_, ec)) stdfs::remove_all(entry.path(), ec);
  for (const auto& [role, bytes] : files) {
    std::ofstream out(path(role), std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    check(static_cast<bool>(out), "write a log file");
  }
}

LogView read_view(const stdfs::path& live) {
  LogView view;
  for (const auto& segment : audit::log_segments(live)) append_lines(segment, view.lines);
  std::vector<Link> links;
  for (const auto& line : view.lines) {
    const auto rec = audit::parse_record_line(line);
    if (!rec) return view;
    links.push_back({rec->text, rec->mac});
  }
  view.links = std::move(links);
  return view;
}

std::optional<std::pair<std::uint64_t, audit::Mac>> authentic_checkpoint(const stdfs::path& live) {
  std::ifstream in(audit::checkpoint_path(live), std::ios::binary);
  if (!in) return std::nullopt;
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string why;
  const auto cp = audit::open_checkpoint(text, audit_key(), why);
  if (!cp) return std::nullopt;
  return std::make_pair(cp->seq, cp->mac);
}

bool is_chain(const std::vector<Link>& links, const Chain& chain) {
  return links == chain.links ||
         (chain.split > 0 &&
          std::equal(links.begin(), links.end(),
                     chain.links.begin() + static_cast<std::ptrdiff_t>(chain.split),
                     chain.links.end()));
}

bool starts_with_chain(const std::vector<Link>& links, const Chain& chain) {
  const auto begins_with = [&](std::size_t from) {
    const std::size_t n = chain.links.size() - from;
    return links.size() >= n && std::equal(chain.links.begin() + static_cast<std::ptrdiff_t>(from),
                                           chain.links.end(), links.begin());
  };
  return begins_with(0) || (chain.split > 0 && begins_with(chain.split));
}

}  // namespace wardfs::fuzz
