#include "audit/verify.h"

#include <sodium.h>

#include <fstream>
#include <optional>

#include "audit/files.h"
#include "audit/record.h"
#include "base/errors.h"

namespace wardfs::audit {

namespace stdfs = std::filesystem;

namespace {

bool same_mac(const Mac& a, const Mac& b) {
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

// A string member, or "" when it is missing or not a string. The fields are read before
// the MAC is checked, so their types are the writer's only if nobody edited the line:
// json::value() and get() throw on a wrong type, which made `wardfs audit verify` fail
// with a JSON error (exit 5) instead of naming the tampered record (exit 3).
std::string string_field(const nlohmann::json& object, const char* key) {
  const auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::optional<Mac> continued_from(const RecordLine& rec) {
  if (string_field(rec.fields, "event") != "log_continued") return std::nullopt;
  const auto detail = rec.fields.find("detail");
  if (detail == rec.fields.end() || !detail->is_object()) return std::nullopt;
  const std::string hex = string_field(*detail, "prev_mac");
  Mac mac{};
  std::size_t len = 0;
  if (sodium_hex2bin(mac.data(), mac.size(), hex.data(), hex.size(), nullptr, &len, nullptr) != 0 ||
      len != mac.size()) {
    return std::nullopt;
  }
  return mac;
}

class ChainChecker {
 public:
  ChainChecker(crypto::ByteView key, VerifyReport& report, std::optional<Checkpoint> checkpoint)
      : key_(key), report_(report), checkpoint_(std::move(checkpoint)) {}

  // False at the first problem, which is then in the report.
  bool check(const std::string& where, std::string_view line) {
    const auto rec = parse_record_line(line);
    if (!rec) {
      const auto loose = nlohmann::json::parse(line, nullptr, false);
      const std::string which = !loose.is_discarded() && loose.is_object() && loose.contains("seq")
                                    ? ": record " + loose["seq"].dump()
                                    : "";
      return fail(where + which + ": not a valid audit record (edited, damaged or forged)");
    }
    if (report_.records == 0 && !start(where, *rec)) return false;
    const std::string record = where + ": record " + std::to_string(rec->seq);
    if (report_.records > 0 && rec->seq != expected_seq_) {
      return fail(record + " where record " + std::to_string(expected_seq_) +
                  " was expected: records were deleted, inserted or reordered");
    }
    if (!same_mac(chain_mac(key_, prev_, rec->text), rec->mac)) {
      return fail(
          record +
          ": the MAC does not match: the record was edited, or forged without the audit key");
    }
    if (checkpoint_ && rec->seq == checkpoint_->seq && !same_mac(rec->mac, checkpoint_->mac)) {
      return fail(record + " is not the record the checkpoint pinned: the log was rewritten");
    }
    const std::string event = string_field(rec->fields, "event");
    if (event == "log_tampered" || event == "log_damaged") {
      return fail(record + ": a writer found the log tampered with before appending: " +
                  rec->fields.value("detail", nlohmann::json::object()).dump());
    }
    prev_ = rec->mac;
    expected_seq_ = rec->seq + 1;
    report_.records++;
    report_.last_seq = rec->seq;
    return true;
  }

 private:
  bool start(const std::string& where, const RecordLine& rec) {
    report_.first_seq = rec.seq;
    if (rec.seq == 1) return true;
    if (const auto link = continued_from(rec)) {
      prev_ = *link;
      report_.note = "the log starts at record " + std::to_string(rec.seq) +
                     " (older segments were rotated away); the chain from there on is checked";
      return true;
    }
    return fail(where + ": the log starts at record " + std::to_string(rec.seq) +
                ": records 1 to " + std::to_string(rec.seq - 1) + " are missing");
  }

  bool fail(std::string problem) {
    report_.problem = std::move(problem);
    return false;
  }

  crypto::ByteView key_;
  VerifyReport& report_;
  std::optional<Checkpoint> checkpoint_;
  Mac prev_{};
  std::uint64_t expected_seq_ = 1;
};

template <typename Fn>
bool for_each_line(const stdfs::path& file, Fn&& fn) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw WardError(ErrorKind::io, "cannot read " + file.string());
  std::string line;
  std::uint64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (!fn(file.filename().string() + ":" + std::to_string(number), line)) return false;
  }
  return true;
}

}  // namespace

nlohmann::json VerifyReport::to_json() const {
  nlohmann::json out = {{"ok", ok},
                        {"records", records},
                        {"first_seq", first_seq},
                        {"last_seq", last_seq},
                        {"checkpoint_seq", checkpoint_seq},
                        {"segments", segments}};
  if (!problem.empty()) out["problem"] = problem;
  if (!note.empty()) out["note"] = note;
  return out;
}

VerifyReport verify_log(const stdfs::path& live, crypto::ByteView mac_key) {
  VerifyReport report;
  const auto segments = log_segments(live);
  for (const auto& s : segments) report.segments.push_back(s.string());
  if (segments.empty()) {
    report.problem = "no audit log at " + live.string();
    return report;
  }
  std::optional<Checkpoint> checkpoint;
  std::string why;
  const stdfs::path cp_path = checkpoint_path(live);
  std::error_code ec;
  if (!stdfs::exists(cp_path, ec)) {
    why =
        "the checkpoint " + cp_path.string() + " is missing, so a cut-off tail cannot be ruled out";
  } else {
    checkpoint = open_checkpoint(read_text_file(cp_path), mac_key, why);
    if (!checkpoint) why = cp_path.string() + ": " + why;
  }
  ChainChecker checker(mac_key, report, checkpoint);
  for (const auto& segment : segments) {
    if (!for_each_line(segment, [&](const std::string& where, const std::string& line) {
          return line.empty() || checker.check(where, line);
        })) {
      return report;
    }
  }
  if (!checkpoint) {
    report.problem = why;
    return report;
  }
  report.checkpoint_seq = checkpoint->seq;
  if (checkpoint->seq > report.last_seq) {
    report.problem = "the log ends at record " + std::to_string(report.last_seq) +
                     " but the checkpoint (" + checkpoint->time + ") pins record " +
                     std::to_string(checkpoint->seq) + ": records " +
                     std::to_string(report.last_seq + 1) + " to " +
                     std::to_string(checkpoint->seq) + " were cut off";
    return report;
  }
  report.ok = true;
  return report;
}

LogRecords read_log(const stdfs::path& live) {
  LogRecords out;
  for (const auto& segment : log_segments(live)) {
    for_each_line(segment, [&](const std::string&, const std::string& line) {
      if (line.empty()) return true;
      auto doc = nlohmann::json::parse(line, nullptr, false);
      if (doc.is_discarded() || !doc.is_object()) {
        out.malformed++;
      } else {
        out.records.push_back(std::move(doc));
      }
      return true;
    });
  }
  return out;
}

}  // namespace wardfs::audit
