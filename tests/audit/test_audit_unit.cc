// The audit library without a mount: record lines, the writer thread, the chain and the
// checkpoint, and what verify_log says about each kind of tampering.
#include <stdlib.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "audit/anchor.h"
#include "audit/append.h"
#include "audit/files.h"
#include "audit/key_loss.h"
#include "audit/log.h"
#include "audit/verify.h"
#include "crypto/secret.h"

namespace stdfs = std::filesystem;
using namespace wardfs;

namespace {

struct TempDir {
  stdfs::path path;
  TempDir() {
    char tmpl[] = "/tmp/wardfs-audit-unit-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { stdfs::remove_all(path); }
};

crypto::SecretBytes test_key(std::uint8_t fill) {
  std::vector<std::uint8_t> bytes(32, fill);
  return crypto::SecretBytes::copy_of(bytes);
}

void write_events(const stdfs::path& log_path, int count,
                  std::uint64_t rotate_bytes = 64ULL << 20) {
  audit::LogOptions options;
  options.path = log_path;
  options.rotate_bytes = rotate_bytes;
  audit::AuditLog log(options, "vol-id");
  log.start(test_key(7));
  for (int i = 0; i < count; ++i) {
    audit::Event e;
    e.event = "open";
    e.path = "/file-" + std::to_string(i);
    log.record(std::move(e));
  }
  REQUIRE(log.flush());
}

std::vector<std::string> lines_of(const stdfs::path& p) {
  std::ifstream in(p);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Points the default log directory elsewhere for one test: append_now writes there.
struct AuditDirEnv {
  explicit AuditDirEnv(const stdfs::path& dir) { ::setenv("WARDFS_AUDIT_DIR", dir.c_str(), 1); }
  ~AuditDirEnv() { ::unsetenv("WARDFS_AUDIT_DIR"); }
};

void put_lines(const stdfs::path& p, const std::vector<std::string>& lines) {
  std::ofstream out(p, std::ios::trunc);
  for (const auto& l : lines) out << l << "\n";
}

}  // namespace

TEST_CASE("a sealed record parses back and its MAC covers the line without the mac") {
  const auto key = test_key(1);
  audit::Mac prev{};
  audit::Mac mac{};
  audit::Event e;
  e.event = "rotate";
  e.generation = 3;
  e.path = "/caf\xc3\xa9/\xff";  // not UTF-8 at the end: replaced, still verifiable
  e.time = "2026-11-24T00:00:00.000000Z";
  const std::string line = audit::seal_record(e, 9, "vid", prev, key.view(), mac);
  const auto parsed = audit::parse_record_line(line);
  REQUIRE(parsed);
  CHECK(parsed->seq == 9);
  CHECK(parsed->mac == mac);
  CHECK(parsed->fields["event"] == "rotate");
  CHECK(parsed->fields["generation"] == 3);
  CHECK(parsed->fields["time"] == "2026-11-24T00:00:00.000000Z");
  CHECK(audit::chain_mac(key.view(), prev, parsed->text) == mac);
  CHECK_FALSE(audit::parse_record_line(line.substr(0, line.size() - 3)));
  CHECK_FALSE(audit::parse_record_line("{\"seq\":1}"));
}

TEST_CASE("an untouched log verifies; each kind of tampering is named") {
  TempDir dir;
  const stdfs::path log = dir.path / "v.audit.jsonl";
  write_events(log, 10);
  const auto key = test_key(7);
  auto report = audit::verify_log(log, key.view());
  REQUIRE(report.ok);
  CHECK(report.records == 10);
  CHECK(report.checkpoint_seq == 10);
  CHECK((stdfs::status(log).permissions() & stdfs::perms::all) ==
        (stdfs::perms::owner_read | stdfs::perms::owner_write));

  const auto clean = lines_of(log);
  SECTION("wrong key") { CHECK_FALSE(audit::verify_log(log, test_key(8).view()).ok); }
  SECTION("edited record") {
    auto lines = clean;
    lines[3].replace(lines[3].find("file-3"), 6, "file-X");
    put_lines(log, lines);
    report = audit::verify_log(log, key.view());
    CHECK_FALSE(report.ok);
    CHECK_THAT(report.problem, Catch::Contains("record 4") && Catch::Contains("MAC"));
  }
  SECTION("deleted record") {
    auto lines = clean;
    lines.erase(lines.begin() + 4);
    put_lines(log, lines);
    CHECK_THAT(audit::verify_log(log, key.view()).problem,
               Catch::Contains("record 6 where record 5"));
  }
  SECTION("cut-off tail") {
    auto lines = clean;
    lines.resize(7);
    put_lines(log, lines);
    report = audit::verify_log(log, key.view());
    CHECK_FALSE(report.ok);
    CHECK_THAT(report.problem, Catch::Contains("cut off"));
  }
  SECTION("a forged checkpoint does not hide a cut") {
    auto lines = clean;
    lines.resize(7);
    put_lines(log, lines);
    const auto parsed = audit::parse_record_line(lines.back());
    audit::write_file_atomic(audit::checkpoint_path(log),
                             audit::seal_checkpoint({7, parsed->mac, "t"}, test_key(9).view()));
    CHECK_THAT(audit::verify_log(log, key.view()).problem, Catch::Contains("checkpoint"));
  }
  SECTION("a writer appending after a cut leaves the cut on record") {
    auto lines = clean;
    lines.resize(7);
    put_lines(log, lines);
    write_events(log, 2);
    report = audit::verify_log(log, key.view());
    CHECK_FALSE(report.ok);
    CHECK_THAT(report.problem, Catch::Contains("record 8") && Catch::Contains("cut off"));
  }
}

TEST_CASE("a torn last line is dropped, on record, and the chain goes on") {
  TempDir dir;
  const stdfs::path log = dir.path / "v.audit.jsonl";
  write_events(log, 3);
  {
    std::ofstream out(log, std::ios::app);
    out << "{\"seq\":4,\"ev";  // a crash mid-write
  }
  write_events(log, 1);
  const auto lines = lines_of(log);
  REQUIRE(lines.size() == 5);
  CHECK_THAT(lines[3], Catch::Contains("log_repaired"));
  CHECK(audit::verify_log(log, test_key(7).view()).ok);
}

// Spotted writing fuzz_audit: fields of an unexpected type in a line nobody authenticated yet
// made verify_log throw a JSON type error instead of reporting the damage.
TEST_CASE("a first record with fields of the wrong type is reported, not thrown") {
  TempDir dir;
  const stdfs::path log = dir.path / "v.audit.jsonl";
  write_events(log, 2);
  const std::string mac = ",\"mac\":\"" + std::string(64, 'a') + "\"}";
  const auto first =
      GENERATE_COPY("{\"seq\":2,\"event\":5" + mac,
                    "{\"seq\":2,\"event\":\"log_continued\",\"detail\":{\"prev_mac\":1}" + mac,
                    "{\"seq\":2,\"event\":\"log_continued\",\"detail\":[\"prev_mac\"]" + mac);
  CAPTURE(first);
  auto lines = lines_of(log);
  lines[0] = first;
  put_lines(log, lines);
  audit::VerifyReport report;
  REQUIRE_NOTHROW(report = audit::verify_log(log, test_key(7).view()));
  CHECK_FALSE(report.ok);
  CHECK_THAT(report.problem, Catch::Contains("records 1 to 1 are missing"));
}

// Found by fuzz_audit: verify skips empty lines, but the writer took a trailing one for
// the end of the chain and restarted at record 1, so the log no longer verified.
TEST_CASE("blank lines at the end of the log do not break the chain") {
  TempDir dir;
  const stdfs::path log = dir.path / "v.audit.jsonl";
  write_events(log, 3);
  {
    std::ofstream out(log, std::ios::app);
    out << "\n\n";
  }
  REQUIRE(audit::verify_log(log, test_key(7).view()).ok);
  write_events(log, 2);
  const auto report = audit::verify_log(log, test_key(7).view());
  CHECK(report.ok);
  CHECK(report.last_seq == 5);
}

// Found by fuzz_audit: the writer dropped such a record as torn, then found the log
// ending before the checkpoint and recorded it as cut off.
TEST_CASE("a last record without its newline is kept, not dropped as torn") {
  TempDir dir;
  const stdfs::path log = dir.path / "v.audit.jsonl";
  write_events(log, 3);
  stdfs::resize_file(log, stdfs::file_size(log) - 1);
  REQUIRE(audit::verify_log(log, test_key(7).view()).ok);
  write_events(log, 1);
  const auto lines = lines_of(log);
  REQUIRE(lines.size() == 5);
  CHECK_THAT(lines[3], Catch::Contains("log_repaired") && Catch::Contains("added_newline"));
  const auto report = audit::verify_log(log, test_key(7).view());
  CHECK(report.ok);
  CHECK(report.last_seq == 5);
}

TEST_CASE("rotation by size keeps one chain across segments") {
  TempDir dir;
  const stdfs::path log = dir.path / "v.audit.jsonl";
  for (int i = 0; i < 6; ++i) write_events(log, 20, 4096);
  const auto segments = audit::log_segments(log);
  REQUIRE(segments.size() >= 3);
  auto report = audit::verify_log(log, test_key(7).view());
  CHECK(report.ok);
  CHECK(report.records > 120);
  stdfs::remove(segments[0]);
  report = audit::verify_log(log, test_key(7).view());
  CHECK(report.ok);
  CHECK_THAT(report.note, Catch::Contains("older segments"));
}

TEST_CASE("append_now puts volume events on the default log, chained and verifiable") {
  TempDir dir;
  const AuditDirEnv env(dir.path);
  const crypto::Bytes volume_id(16, 0x42);
  const auto options = audit::default_log_options(volume_id);
  CHECK(options.path == dir.path / (crypto::base64url_encode(volume_id) + ".audit.jsonl"));
  REQUIRE(
      audit::append_now(volume_id, test_key(5),
                        {audit::volume_event("rotate", "keyfile:/k", 2, "ok", {{"online", false}}),
                         audit::volume_event("unmount", "", std::nullopt, "failed", nullptr)}));
  REQUIRE(audit::verify_log(options.path, test_key(5).view()).ok);
  const auto read = audit::read_log(options.path);
  REQUIRE(read.records.size() == 2);
  const auto& rotate = read.records[0];
  CHECK(rotate["event"] == "rotate");
  CHECK(rotate["path"] == "/");
  CHECK(rotate["generation"] == 2);
  CHECK(rotate["keystore"] == "keyfile:/k");
  CHECK(rotate["result"] == "ok");
  CHECK(rotate["detail"]["online"] == false);
  CHECK(rotate["principal"]["pid"] == ::getpid());
  const auto& unmount = read.records[1];
  CHECK(unmount["result"] == "failed");
  CHECK_FALSE(unmount.contains("generation"));
  CHECK_FALSE(unmount.contains("keystore"));
  CHECK_FALSE(unmount.contains("detail"));
}

TEST_CASE("append_now answers false when the log cannot be written") {
  TempDir dir;
  std::ofstream(dir.path / "a-file") << "not a directory";
  const AuditDirEnv env(dir.path / "a-file" / "logs");
  const crypto::Bytes volume_id(16, 0x43);
  CHECK_FALSE(audit::append_now(volume_id, test_key(5),
                                {audit::volume_event("init", "test", 1, "ok", nullptr)}));
}

namespace {

// The log's current checkpoint as the anchor command would have received it.
std::string anchored_now(const stdfs::path& log) {
  std::string why;
  const auto checkpoint = audit::open_checkpoint(audit::read_text_file(audit::checkpoint_path(log)),
                                                 test_key(7).view(), why);
  REQUIRE(checkpoint);
  return audit::anchor_line(*checkpoint, "vol-id");
}

void write_text(const stdfs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::trunc | std::ios::binary) << text;
}

}  // namespace

TEST_CASE("has_history sees any trace of a log, and set_aside_history moves it all") {
  TempDir dir;
  const stdfs::path log = dir.path / "v.audit.jsonl";
  CHECK_FALSE(audit::has_history(log));
  write_text(audit::checkpoint_path(log), "{}");
  CHECK(audit::has_history(log));
  stdfs::remove(audit::checkpoint_path(log));
  for (int i = 0; i < 3; ++i) write_events(log, 20, 4096);
  REQUIRE(audit::log_segments(log).size() >= 2);
  CHECK(audit::has_history(log));
  const std::uint64_t last_seq = audit::read_log(log).records.back()["seq"];
  CHECK(last_seq > 60);  // 60 opens and a log_continued per segment
  const auto aside = audit::set_aside_history(log);
  CHECK(aside.last_seq == std::optional<std::uint64_t>(last_seq));
  CHECK(aside.moved.size() >= 4);  // two segments or more, the live file, the checkpoint
  CHECK(audit::log_segments(log).empty());
  CHECK_FALSE(audit::has_history(log));
  for (const auto& moved : aside.moved) CHECK(stdfs::exists(moved));
}

TEST_CASE("the anchor line holds public checkpoint data only") {
  audit::Checkpoint c{12, {}, "2026-01-01T00:00:00.000000Z"};
  c.mac.fill(0xab);
  const auto doc = nlohmann::json::parse(audit::anchor_line(c, "vol-id"));
  CHECK(doc.size() == 4);
  CHECK(doc["volume"] == "vol-id");
  CHECK(doc["seq"] == 12);
  std::string hex;
  for (int i = 0; i < 32; ++i) hex += "ab";
  CHECK(doc["mac"] == hex);
  CHECK(doc["time"] == c.time);
  CHECK_FALSE(doc.contains("checkpoint_mac"));
}

TEST_CASE("verify against anchored checkpoints: intact passes, cut-back and delete-all fail") {
  TempDir dir;
  const stdfs::path log = dir.path / "v.audit.jsonl";
  const stdfs::path anchors = dir.path / "anchors.jsonl";
  write_events(log, 5);
  std::string anchored = anchored_now(log);
  const std::string early_log = audit::read_text_file(log);
  const std::string early_checkpoint = audit::read_text_file(audit::checkpoint_path(log));
  write_events(log, 3);
  anchored += anchored_now(log);
  // Another volume's anchors in the same file are not this log's business.
  anchored += R"({"mac":")" + std::string(64, '0') +
              R"(","seq":99,"time":"t","volume":"other"})"
              "\n";
  write_text(anchors, anchored);

  auto report = audit::check_anchors(log, "vol-id", anchors);
  CHECK(report.ok);
  CHECK(report.anchors == 2);
  CHECK(report.checked == 2);
  CHECK(report.latest_seq == 8);

  SECTION("cut back to the earlier, consistent state") {
    write_text(log, early_log);
    write_text(audit::checkpoint_path(log), early_checkpoint);
    REQUIRE(audit::verify_log(log, test_key(7).view()).ok);  // the chain alone cannot tell
    report = audit::check_anchors(log, "vol-id", anchors);
    CHECK_FALSE(report.ok);
    CHECK_THAT(report.problem, Catch::Contains("the log ends at record 5") &&
                                   Catch::Contains("record 8 anchored at") &&
                                   Catch::Contains("cut back"));
  }
  SECTION("deleted with its checkpoint and started again") {
    stdfs::remove(log);
    stdfs::remove(audit::checkpoint_path(log));
    write_events(log, 10);
    REQUIRE(audit::verify_log(log, test_key(7).view()).ok);  // the chain alone cannot tell
    report = audit::check_anchors(log, "vol-id", anchors);
    CHECK_FALSE(report.ok);
    CHECK_THAT(report.problem, Catch::Contains("record 8 anchored at") &&
                                   Catch::Contains("deleted and started again") &&
                                   Catch::Contains("2 of 2"));
  }
  SECTION("no anchor of this volume") {
    report = audit::check_anchors(log, "another-volume", anchors);
    CHECK_FALSE(report.ok);
    CHECK_THAT(report.problem, Catch::Contains("holds no anchored checkpoint"));
  }
  SECTION("a malformed anchor line is named") {
    write_text(anchors, anchored + "not json\n");
    CHECK_THROWS_WITH(audit::check_anchors(log, "vol-id", anchors),
                      Catch::Contains("anchors.jsonl:4"));
  }
}

namespace {

audit::LogOptions anchored_options(const stdfs::path& log, std::vector<std::string> argv,
                                   audit::OnFailure policy = audit::OnFailure::fail_open) {
  audit::LogOptions options;
  options.path = log;
  options.on_failure = policy;
  options.flush_interval = std::chrono::milliseconds(10);
  options.anchor.argv = std::move(argv);
  options.anchor.retry_interval = std::chrono::milliseconds(50);
  return options;
}

void record_open(audit::AuditLog& log) {
  audit::Event e;
  e.event = "open";
  e.path = "/f";
  log.record(std::move(e));
}

bool eventually(const std::function<bool()>& condition) {
  for (int i = 0; i < 500; ++i) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return condition();
}

}  // namespace

TEST_CASE("the anchor command receives the checkpoints, the last one at the end") {
  TempDir dir;
  const stdfs::path log = dir.path / "v.audit.jsonl";
  const stdfs::path sink = dir.path / "anchored.jsonl";
  {
    audit::AuditLog writer(anchored_options(log, {"/bin/sh", "-c", "cat >> " + sink.string()}),
                           "vol-id");
    writer.start(test_key(7));
    record_open(writer);
    REQUIRE(writer.flush());
    record_open(writer);
  }  // the destructor anchors the final checkpoint
  const auto lines = lines_of(sink);
  REQUIRE_FALSE(lines.empty());
  CHECK(lines.back() + "\n" == anchored_now(log));
  write_text(dir.path / "anchors", audit::read_text_file(sink));
  CHECK(audit::check_anchors(log, "vol-id", dir.path / "anchors").ok);
}

TEST_CASE("a failing anchor command is recorded once; fail-closed refuses access meanwhile") {
  TempDir dir;
  const stdfs::path log = dir.path / "v.audit.jsonl";
  const stdfs::path down = dir.path / "down";
  write_text(down, "");
  const std::string script = "[ -e " + down.string() + " ] && exit 3; cat > /dev/null";
  const auto policy = GENERATE(audit::OnFailure::fail_open, audit::OnFailure::fail_closed);
  {
    audit::AuditLog writer(anchored_options(log, {"/bin/sh", "-c", script}, policy), "vol-id");
    writer.start(test_key(7));
    record_open(writer);
    REQUIRE(writer.flush());
    REQUIRE(eventually([&] { return !writer.anchor_healthy(); }));
    CHECK(writer.allows_access() == (policy == audit::OnFailure::fail_open));
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // several retries fail
    stdfs::remove(down);
    REQUIRE(eventually([&] { return writer.anchor_healthy(); }));
    CHECK(writer.allows_access());
  }
  int failures = 0;
  for (const auto& r : audit::read_log(log).records) {
    if (r["event"] != "anchor_failed") continue;
    failures++;
    CHECK(r["result"] == "failed");
    CHECK_THAT(r["detail"]["error"].get<std::string>(),
               Catch::Contains("anchor command /bin/sh failed with exit status 3"));
  }
  CHECK(failures == 1);
  CHECK(audit::verify_log(log, test_key(7).view()).ok);
}
