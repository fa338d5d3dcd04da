// wardfs audit TARGET show|verify: read the audit log of a volume, mounted or not.
#include <fnmatch.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "audit/anchor.h"
#include "audit/files.h"
#include "audit/verify.h"
#include "base/errors.h"
#include "cli/commands.h"
#include "cli/offline.h"
#include "daemon/control.h"
#include "volume/config_file.h"

namespace wardfs::cli {

namespace {

namespace stdfs = std::filesystem;
using nlohmann::json;

struct AuditArgs {
  std::string target;
  std::string log;  // explicit log file
  std::string since;
  std::vector<std::string> events;
  std::string path_glob;
  bool json_output = false;
  std::string anchor_file;  // verify --anchor
  OfflineCredentials creds;
};

stdfs::path log_path_of(const AuditArgs& a) {
  if (!a.log.empty()) return a.log;
  if (is_mounted(a.target)) {
    return daemon::control_request(stdfs::absolute(a.target), {{"op", "status"}})["audit"]["log"]
        .get<std::string>();
  }
  const auto config = volume::load_config(stdfs::absolute(a.target));
  return audit::default_log_path(crypto::base64url_encode(config.volume_id));
}

// "2026-11-24T13:00", "2026-11-24 13:00:05" or a relative "90s", "15m", "2h", "7d".
std::string since_bound(const std::string& text) {
  if (text.empty()) return {};
  const char unit = text.back();
  const std::string number = text.substr(0, text.size() - 1);
  if (std::string("smhd").find(unit) != std::string::npos && !number.empty() &&
      number.find_first_not_of("0123456789") == std::string::npos) {
    const long long factor = unit == 's' ? 1 : unit == 'm' ? 60 : unit == 'h' ? 3600 : 86400;
    const std::time_t at = std::time(nullptr) - std::stoll(number) * factor;
    std::tm tm{};
    ::gmtime_r(&at, &tm);
    std::ostringstream out;
    out << std::put_time(&tm, "%Y-%m-%dT%H:%M:%S");
    return out.str();
  }
  std::string bound = text;
  if (bound.size() > 10 && bound[10] == ' ') bound[10] = 'T';
  if (bound.size() < 10 || bound[4] != '-' || bound[7] != '-') {
    throw WardError(
        ErrorKind::usage,
        "--since wants a UTC time like 2026-11-24T13:00 or a duration like 15m, 2h, 7d");
  }
  return bound;
}

// Text a log record carries (file names above all) for a terminal: control characters
// (C0, DEL and the C1 code points U+0080..U+009F) would let whoever named a file move
// the cursor, retitle or recolour the reader's terminal, so they print as \xNN or \uNNNN,
// and a backslash as \\ to keep that unambiguous.
std::string printable(const std::string& text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    const auto next = i + 1 < text.size() ? static_cast<unsigned char>(text[i + 1]) : 0;
    if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else if (c == 0xc2 && next >= 0x80 && next <= 0x9f) {  // UTF-8 of U+0080..U+009F
      out += "\\u00";
      out += kHex[next >> 4];
      out += kHex[next & 15];
      ++i;
    } else if (c == '\\') {
      out += "\\\\";
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// A field as table text: a string as it is, any other JSON value as JSON, `missing` when
// absent. `show` lists records nobody has verified yet, so a field may hold any type:
// json::value() and get() threw on an unexpected one, and one odd record ended the
// listing with a JSON type error (exit 5).
std::string field_text(const json& object, const char* key, const std::string& missing = "") {
  const auto it = object.find(key);
  if (it == object.end()) return missing;
  return it->is_string() ? it->get<std::string>()
                         : it->dump(-1, ' ', false, json::error_handler_t::replace);
}

bool wanted(const json& r, const AuditArgs& a, const std::string& since) {
  if (!since.empty() && field_text(r, "time") < since) return false;
  if (!a.events.empty() &&
      std::find(a.events.begin(), a.events.end(), field_text(r, "event")) == a.events.end()) {
    return false;
  }
  return a.path_glob.empty() ||
         ::fnmatch(a.path_glob.c_str(), field_text(r, "path").c_str(), 0) == 0;
}

std::string who(const json& r) {
  const auto it = r.find("principal");
  const json p = it != r.end() && it->is_object() ? *it : json::object();
  return field_text(p, "program", "?") + "[" + field_text(p, "pid", "0") + "] uid " +
         field_text(p, "uid", "0");
}

void print_row(const json& r) {
  std::string time = field_text(r, "time");
  if (time.size() > 19) time = time.substr(0, 19) + "Z";
  std::string detail = field_text(r, "detail");
  if (r.contains("keystore"))
    detail = "keystore=" + field_text(r, "keystore") + (detail.empty() ? "" : " ") + detail;
  std::cout << std::left << std::setw(21) << printable(time) << std::right << std::setw(6)
            << printable(field_text(r, "seq", "0")) << "  " << std::left << std::setw(17)
            << printable(field_text(r, "event")) << std::setw(9)
            << printable(field_text(r, "result")) << std::setw(24) << printable(who(r))
            << std::setw(4) << printable(field_text(r, "generation", "-"))
            << printable(field_text(r, "path", "-")) << "  " << printable(detail) << "\n";
}

int run_show(const AuditArgs& a) {
  const stdfs::path log = log_path_of(a);
  if (audit::log_segments(log).empty()) {
    throw WardError(ErrorKind::usage, "no audit log at " + log.string() +
                                          " (pass --audit-log FILE if it lives elsewhere)");
  }
  const std::string since = since_bound(a.since);
  const auto read = audit::read_log(log);
  if (!a.json_output) {
    std::cout << std::left << std::setw(21) << "TIME (UTC)" << std::right << std::setw(6) << "SEQ"
              << "  " << std::left << std::setw(17) << "EVENT" << std::setw(9) << "RESULT"
              << std::setw(24) << "WHO" << std::setw(4) << "GEN"
              << "PATH  DETAIL\n";
  }
  for (const auto& r : read.records) {
    if (!wanted(r, a, since)) continue;
    if (a.json_output) {
      std::cout << r.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    } else {
      print_row(r);
    }
  }
  if (read.malformed > 0) {
    std::cerr << "wardfs: " << read.malformed << " lines of " << log
              << " are not records; run 'wardfs audit " << a.target << " verify'\n";
  }
  return 0;
}

// The local chain cannot see a log cut back to an earlier checkpoint, or deleted and
// started again; the checkpoints anchored elsewhere can. Only after the chain verified.
void check_anchored(const AuditArgs& a, const std::string& volume_id, json& report) {
  if (a.anchor_file.empty() || !report["ok"].get<bool>()) return;
  const auto anchored = audit::check_anchors(report["log"].get<std::string>(), volume_id,
                                             stdfs::absolute(a.anchor_file));
  report["anchor"] = anchored.to_json();
  if (anchored.ok) return;
  report["ok"] = false;
  report["problem"] = "checked against the anchor " + a.anchor_file + ": " + anchored.problem;
}

int run_verify(const AuditArgs& a) {
  json report;
  std::string volume_id;
  if (is_mounted(a.target) && a.log.empty()) {
    const auto mount_point = stdfs::absolute(a.target);
    report = daemon::control_request(mount_point, {{"op", "audit_verify"}});
    if (!a.anchor_file.empty())
      volume_id = daemon::control_request(mount_point, {{"op", "status"}})["volume_id"];
  } else {
    OfflineVolume offline(stdfs::absolute(a.target), a.creds, std::nullopt);
    if (offline.volume().audit_mac_key().empty()) {
      throw WardError(
          ErrorKind::usage,
          a.target + " has no audit key yet (made before the audit log); mount it once");
    }
    offline.audit_log().flush();  // our own unwraps belong in what we check
    const stdfs::path log = log_path_of(a);
    report = audit::verify_log(log, offline.volume().audit_mac_key().view()).to_json();
    report["log"] = log.string();
    volume_id = offline.volume().id_text();
  }
  check_anchored(a, volume_id, report);
  if (a.json_output) {
    std::cout << report.dump() << "\n";
  } else if (report["ok"].get<bool>()) {
    std::cout << "audit log " << report["log"].get<std::string>()
              << " is intact: " << report["records"] << " records (" << report["first_seq"]
              << " to " << report["last_seq"] << "), checkpoint at record "
              << report["checkpoint_seq"] << "\n";
    if (report.contains("note")) std::cout << "note: " << report["note"].get<std::string>() << "\n";
    if (report.contains("anchor")) {
      const auto& anchor = report["anchor"];
      std::cout << "anchor " << a.anchor_file << ": " << anchor["checked"]
                << " anchored checkpoints match the log (latest: record " << anchor["latest_seq"]
                << ")\n";
      if (anchor.contains("note"))
        std::cout << "note: " << anchor["note"].get<std::string>() << "\n";
    }
  } else {
    std::cerr << "wardfs: audit log " << report["log"].get<std::string>()
              << " FAILED verification: "
              << printable(report.value("problem", std::string("unknown problem"))) << "\n";
  }
  return report["ok"].get<bool>() ? 0 : static_cast<int>(ErrorKind::corrupt_volume);
}

}  // namespace

void add_audit_command(CLI::App& app, Runner& run) {
  auto a = std::make_shared<AuditArgs>();
  CLI::App* cmd = app.add_subcommand(
      "audit",
      "Read a volume's tamper-evident audit log: 'wardfs audit TARGET show' lists records, "
      "'wardfs audit TARGET verify' checks the HMAC chain and the signed checkpoint (exit 0 only "
      "if intact).");
  cmd->add_option("TARGET", a->target, "Mount point or backing directory of the volume")
      ->required();
  cmd->add_option("--audit-log", a->log, "The log file, when not the default for the volume");
  cmd->require_subcommand(1);
  CLI::App* show =
      cmd->add_subcommand("show", "List audit records as a table, or JSON lines with --json");
  show->add_option(
      "--since", a->since,
      "Only records from this UTC time (2026-11-24T13:00) or this long ago (15m, 2h, 7d)");
  show->add_option("--event", a->events,
                   "Only these events (repeat or comma-separate: rotate,unwrap)")
      ->delimiter(',');
  show->add_option("--path", a->path_glob,
                   "Only records whose path matches this glob (e.g. '/data/*')");
  show->add_flag("--json", a->json_output, "JSON lines, one record each, as stored");
  show->callback([a, &run] { run = [a] { return run_show(*a); }; });
  CLI::App* verify =
      cmd->add_subcommand("verify",
                          "Recompute the chain; name the first edited, deleted, inserted "
                          "or reordered record, or a cut-off tail");
  verify->add_flag("--json", a->json_output, "Machine-readable report");
  verify->add_option("--anchor", a->anchor_file,
                     "Also check the log against the checkpoints anchored in FILE (JSON lines, "
                     "as --audit-anchor-cmd received them): finds a log cut back to an earlier "
                     "checkpoint, or deleted and started again");
  add_offline_credentials(*verify, a->creds);
  verify->callback([a, &run] { run = [a] { return run_verify(*a); }; });
}

}  // namespace wardfs::cli
