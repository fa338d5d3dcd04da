// The audit log read back from bytes that whoever can write the log directory controls.
// The first input byte picks a mode:
//   0 parse:  parse_record_line on the rest. It never crashes; what it accepts is the
//             line's MACed text plus a last "mac" member, and re-MACed it parses back the
//             same; a record in the writer's own form is exactly what seal_record writes.
//   1 seal:   an event made from the input is sealed, parsed and sealed again: same line.
//   2 verify: a valid chain (1-6 records, maybe with a rotated segment) with the input
//             spliced into one of its files; verify_log and read_log never crash, verify
//             says ok only when the authentic records are all still there (tampering is
//             detected), and an intact log always verifies.
//   3 resume: as 2, then the real writer (AuditLog) appends to the damaged log; verify
//             must not pass a log the writer continued over lost or altered records, and
//             an intact log continued by the writer still verifies.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "audit/log.h"
#include "audit/record.h"
#include "audit/verify.h"
#include "crypto/secret.h"
#include "tests/fuzz/audit_log_files.h"
#include "tests/fuzz/fuzz_common.h"

namespace {

using nlohmann::json;
using wardfs::audit::Event;
using wardfs::audit::Mac;
using wardfs::audit::RecordLine;
using wardfs::fuzz::check;
using wardfs::fuzz::Reader;
using wardfs::fuzz::Role;

constexpr std::string_view kMacPrefix = ",\"mac\":\"";

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string with_mac(std::string text, const Mac& mac) {
  text.pop_back();  // the closing brace
  return text + std::string(kMacPrefix) + wardfs::crypto::hex_encode(mac) + "\"}";
}

// ---- parse and seal ---------------------------------------------------------------

// A record the writer could have written: the event and the volume id it was sealed
// with, when `doc` (the MACed text) has exactly seal_record's fields and types.
struct Sealable {
  Event event;
  std::string volume;
};

bool is_u32(const json& j) {
  return j.is_number_unsigned() &&
         j.get<std::uint64_t>() <= std::numeric_limits<std::uint32_t>::max();
}

bool is_principal(const json& p) {
  if (!p.is_object() || p.size() != 4 || !p.contains("uid") || !is_u32(p["uid"]) ||
      !p.contains("gid") || !is_u32(p["gid"]) || !p.contains("program") ||
      !p["program"].is_string() || !p.contains("pid") || !p["pid"].is_number_integer()) {
    return false;
  }
  const auto pid = p["pid"].is_number_unsigned()
                       ? static_cast<std::int64_t>(std::min<std::uint64_t>(
                             p["pid"].get<std::uint64_t>(), std::uint64_t{1} << 40))
                       : p["pid"].get<std::int64_t>();
  return pid >= std::numeric_limits<pid_t>::min() && pid <= std::numeric_limits<pid_t>::max();
}

bool is_nonempty_string(const json& j) { return j.is_string() && !j.get<std::string>().empty(); }

bool has_sealed_shape(const json& doc) {
  static const std::vector<std::string> kKnown = {"seq",       "time",   "event", "volume",
                                                  "principal", "result", "path",  "generation",
                                                  "keystore",  "detail"};
  for (const auto& [key, value] : doc.items()) {
    if (std::find(kKnown.begin(), kKnown.end(), key) == kKnown.end()) return false;
  }
  const auto optional_ok = [&](const char* key, bool (*ok)(const json&)) {
    return !doc.contains(key) || ok(doc[key]);
  };
  return doc.contains("seq") && doc["seq"].is_number_unsigned() && doc.contains("time") &&
         is_nonempty_string(doc["time"]) && doc.contains("event") && doc["event"].is_string() &&
         doc.contains("volume") && doc["volume"].is_string() && doc.contains("principal") &&
         is_principal(doc["principal"]) && doc.contains("result") && doc["result"].is_string() &&
         optional_ok("path", is_nonempty_string) && optional_ok("generation", is_u32) &&
         optional_ok("keystore", is_nonempty_string) &&
         optional_ok("detail", [](const json& d) { return !d.is_null(); });
}

std::optional<Sealable> sealable(const json& doc) {
  if (!doc.is_object() || !has_sealed_shape(doc)) return std::nullopt;
  Sealable s;
  Event& e = s.event;
  const json& p = doc["principal"];
  e.principal = {p["uid"].get<uid_t>(), p["gid"].get<gid_t>(), p["pid"].get<pid_t>(),
                 p["program"].get<std::string>()};
  e.event = doc["event"].get<std::string>();
  e.time = doc["time"].get<std::string>();
  e.result = doc["result"].get<std::string>();
  e.path = doc.value("path", std::string());
  e.keystore = doc.value("keystore", std::string());
  if (doc.contains("generation")) e.generation = doc["generation"].get<std::uint32_t>();
  if (doc.contains("detail")) e.detail = doc["detail"];
  s.volume = doc["volume"].get<std::string>();
  return s;
}

std::string canonical(const json& doc) {
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

// What parse_record_line accepted is a JSON line whose last member is the MAC, and the
// MACed text is the rest of it.
void check_parsed(std::string_view line, const RecordLine& rec) {
  check(rec.fields.is_object() && rec.fields.contains("seq") && rec.fields["seq"] == rec.seq,
        "seq is the record's seq field");
  check(rec.fields.contains("mac") && rec.fields["mac"].is_string() &&
            lower(rec.fields["mac"].get<std::string>()) == wardfs::crypto::hex_encode(rec.mac),
        "the mac field is the parsed MAC");
  check(!rec.text.empty() && rec.text.back() == '}' &&
            line == rec.text.substr(0, rec.text.size() - 1) + std::string(kMacPrefix) +
                        rec.fields["mac"].get<std::string>() + "\"}",
        "the line is the MACed text plus the mac member");
  json doc = json::parse(rec.text, nullptr, false);
  check(!doc.is_discarded() && doc.is_object(), "the MACed text is a JSON object");
  doc["mac"] = rec.fields["mac"];
  check(doc == rec.fields, "the fields are the MACed text's plus the mac");
}

// Re-MACed, the record parses back the same; in the writer's own form, seal_record
// writes exactly that line again.
void check_reseal(const RecordLine& rec, const Mac& prev) {
  const Mac mac = wardfs::audit::chain_mac(wardfs::fuzz::audit_key(), prev, rec.text);
  const std::string line = with_mac(rec.text, mac);
  const auto again = wardfs::audit::parse_record_line(line);
  check(again && again->text == rec.text && again->mac == mac && again->seq == rec.seq,
        "a re-MACed record parses back");
  const json doc = json::parse(rec.text, nullptr, false);
  const auto s = sealable(doc);
  if (!s || canonical(doc) != rec.text) return;
  Mac sealed{};
  check(wardfs::audit::seal_record(s->event, rec.seq, s->volume, prev, wardfs::fuzz::audit_key(),
                                   sealed) == line &&
            sealed == mac,
        "seal_record writes a writer-form record back byte for byte");
}

void fuzz_parse(std::string_view line) {
  const auto rec = wardfs::audit::parse_record_line(line);
  if (!rec) return;
  check_parsed(line, *rec);
  check_reseal(*rec, Mac{});
}

// A detail that survives JSON text unchanged (no NaN or infinity), else the raw bytes as
// a string, else none.
json detail_from(std::string_view bytes) {
  json d = json::parse(bytes, nullptr, false);
  if (!d.is_discarded() && !d.is_null() && json::parse(canonical(d), nullptr, false) == d) return d;
  return bytes.empty() ? json() : json(std::string(bytes));
}

void fuzz_seal(Reader& in) {
  const std::uint64_t seq = in.uint(8);
  const std::uint8_t flags = in.u8();
  const auto uid = static_cast<uid_t>(in.uint(4));
  const auto gid = static_cast<gid_t>(in.uint(4));
  const auto pid = static_cast<pid_t>(in.uint(4));
  const auto generation = static_cast<std::uint32_t>(in.uint(4));
  Mac prev{};
  prev.fill(in.u8());
  // The rest: NUL-separated event, path, keystore, result, program, volume, time, detail.
  const auto rest = in.rest();
  std::vector<std::string> parts(1);
  for (const std::uint8_t b : rest) {
    if (b == 0 && parts.size() < 8) {
      parts.emplace_back();
    } else {
      parts.back().push_back(static_cast<char>(b));
    }
  }
  parts.resize(8);
  Event e;
  e.event = parts[0];
  e.path = parts[1];
  e.keystore = parts[2];
  e.result = parts[3];
  e.principal = {uid, gid, pid, parts[4]};
  e.time = parts[6];  // empty: seal_record stamps the current time
  if (flags & 1) e.generation = generation;
  e.detail = detail_from(parts[7]);

  const auto& key = wardfs::fuzz::audit_key();
  Mac mac{};
  const std::string line = wardfs::audit::seal_record(e, seq, parts[5], prev, key, mac);
  check(line.find('\n') == std::string::npos, "a record is one line");
  const auto rec = wardfs::audit::parse_record_line(line);
  check(rec.has_value(), "a sealed record parses");
  check(rec->seq == seq && rec->mac == mac, "seq and MAC survive");
  check(wardfs::audit::chain_mac(key, prev, rec->text) == mac, "the MAC covers the text");
  check_parsed(line, *rec);
  const json doc = json::parse(rec->text, nullptr, false);
  check(canonical(doc) == rec->text && sealable(doc).has_value(),
        "a sealed record is in the writer's own form");
  check_reseal(*rec, prev);
}

// ---- verify and resume --------------------------------------------------------------

enum class Op { overwrite, insert, replace, truncate, append, erase, remove, count };

// Which chain, and what the input does to which of its files.
struct Damage {
  std::size_t records = 1;
  std::size_t split = 0;
  Role target = Role::live;
  Op op = Op::overwrite;
  std::size_t offset = 0;
  std::string payload;
  bool small_rotation = false;  // resume: the writer rotates before appending
};

Damage read_damage(Reader& in) {
  Damage d;
  d.records = 1 + in.u8() % 6;
  d.split = in.u8() % d.records;
  const std::uint8_t how = in.u8();
  d.target = static_cast<Role>(how % 3);
  d.op = static_cast<Op>((how / 3) % static_cast<int>(Op::count));
  d.small_rotation = (how / 21) % 2 == 1;
  d.offset = static_cast<std::size_t>(in.uint(2));
  const auto rest = in.rest();
  d.payload.assign(rest.begin(), rest.end());
  return d;
}

wardfs::fuzz::LogFiles damaged(wardfs::fuzz::LogFiles files, const Damage& d) {
  if (d.op == Op::remove) {
    files.erase(d.target);
    return files;
  }
  std::string& s = files[d.target];  // a missing file is damaged into existence
  const std::size_t at = d.offset % (s.size() + 1);
  switch (d.op) {
    case Op::overwrite:
      s.replace(at, std::min(d.payload.size(), s.size() - at), d.payload);
      break;
    case Op::insert:
      s.insert(at, d.payload);
      break;
    case Op::replace:
      s = d.payload;
      break;
    case Op::truncate:
      s.resize(at);
      break;
    case Op::append:
      s += d.payload;
      break;
    default:  // erase as many bytes as the payload is long
      s.erase(at, d.payload.size());
      break;
  }
  return files;
}

const wardfs::fuzz::LogDir& log_dir() {
  static const wardfs::fuzz::LogDir dir;  // removed by its destructor at exit
  return dir;
}

// The log as it is now: are the authentic records all there (or, after a shipped-away
// segment, those of the live file), with the authentic checkpoint?
bool intact(const wardfs::fuzz::LogView& view, const wardfs::fuzz::Chain& c) {
  return view.links && wardfs::fuzz::is_chain(*view.links, c) &&
         wardfs::fuzz::authentic_checkpoint(log_dir().live()).has_value();
}

// check(report.ok, what), saying what verify found when it fails.
void check_verified(const wardfs::audit::VerifyReport& report, const char* what) {
  if (!report.ok) std::fprintf(stderr, "verify_log: %s\n", report.problem.c_str());
  check(report.ok, what);
}

void check_read_log(const wardfs::fuzz::LogView& view) {
  const auto read = wardfs::audit::read_log(log_dir().live());
  check(read.records.size() + read.malformed == view.lines.size(), "read_log sees every line once");
}

void check_verdict(const wardfs::audit::VerifyReport& report, const wardfs::fuzz::LogView& view,
                   const wardfs::fuzz::Chain& c) {
  check(report.ok == report.problem.empty(), "a failed verification names its problem");
  if (!report.ok) return;
  check(view.links && wardfs::fuzz::is_chain(*view.links, c),
        "verify passes only the authentic records: tampering is detected");
  check(view.links->size() == c.links.size() || !report.note.empty(),
        "a log without its first segment says so");
  check(report.records == view.links->size() && report.last_seq == c.links.size() &&
            report.checkpoint_seq == c.links.size(),
        "the report counts what is there");
}

void append_one_record(bool small_rotation) {
  wardfs::audit::LogOptions options;
  options.path = log_dir().live();
  options.flush_interval = std::chrono::milliseconds(1);
  if (small_rotation) options.rotate_bytes = 256;  // rotates before it appends
  wardfs::audit::AuditLog log(options, "fuzz-volume");
  log.start(wardfs::crypto::SecretBytes::copy_of(wardfs::fuzz::audit_key()));
  Event e;
  e.event = "fuzz_resume";
  e.time = "2026-01-01T00:01:00.000000Z";
  log.record(std::move(e));
  check(log.flush(), "the writer appends to whatever log it finds");
}  // the writer thread is joined here: none outlives the input

void check_resumed(const wardfs::fuzz::Chain& c, bool was_intact, bool had_checkpoint) {
  const auto report = wardfs::audit::verify_log(log_dir().live(), wardfs::fuzz::audit_key());
  const auto view = wardfs::fuzz::read_view(log_dir().live());
  check_read_log(view);
  check(report.ok == report.problem.empty(), "a failed verification names its problem");
  if (was_intact) {
    check_verified(report, "the writer continues an intact log");
    check(report.last_seq > c.links.size(), "the writer's records are there");
  }
  // Without an authentic checkpoint, a log emptied of records is a new log by design.
  if (report.ok && had_checkpoint) {
    check(view.links && wardfs::fuzz::starts_with_chain(*view.links, c),
          "the writer never appends over lost or altered records unnoticed");
  }
}

void fuzz_log(Reader& in, bool resume) {
  const Damage d = read_damage(in);
  const wardfs::fuzz::Chain& c = wardfs::fuzz::chain(d.records, d.split);
  const auto files = damaged(c.files, d);
  log_dir().put(files);
  const auto view = wardfs::fuzz::read_view(log_dir().live());
  const bool was_intact = intact(view, c);
  check(files != c.files || was_intact, "the undamaged chain is intact");
  const auto report = wardfs::audit::verify_log(log_dir().live(), wardfs::fuzz::audit_key());
  check_verdict(report, view, c);
  if (was_intact) check_verified(report, "an intact log verifies");
  check_read_log(view);
  if (!resume) return;
  const bool had_checkpoint = wardfs::fuzz::authentic_checkpoint(log_dir().live()).has_value();
  append_one_record(d.small_rotation);
  check_resumed(c, was_intact, had_checkpoint);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  Reader in(data + 1, size - 1);
  switch (data[0] % 4) {
    case 0:
      fuzz_parse(rest);
      break;
    case 1:
      fuzz_seal(in);
      break;
    default:
      fuzz_log(in, data[0] % 4 == 3);
      break;
  }
  return 0;
}
