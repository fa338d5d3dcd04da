#include "audit/record.h"

#include <sodium.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <fstream>

#include "crypto/kdf.h"

namespace wardfs::audit {

namespace {
constexpr std::string_view kMacPrefix = ",\"mac\":\"";
constexpr std::size_t kMacHex = 64;
// `,"mac":"` + 64 hex digits + `"}`
constexpr std::size_t kMacSuffixSize = kMacPrefix.size() + kMacHex + 2;
}  // namespace

std::optional<Level> level_from_name(std::string_view name) {
  if (name == "keys") return Level::keys;
  if (name == "access") return Level::access;
  if (name == "all") return Level::all;
  return std::nullopt;
}

std::string_view level_name(Level level) {
  switch (level) {
    case Level::keys:
      return "keys";
    case Level::access:
      return "access";
    case Level::all:
      return "all";
  }
  return "keys";
}

std::optional<OnFailure> on_failure_from_name(std::string_view name) {
  if (name == "fail-open") return OnFailure::fail_open;
  if (name == "fail-closed") return OnFailure::fail_closed;
  return std::nullopt;
}

std::string_view on_failure_name(OnFailure policy) {
  return policy == OnFailure::fail_closed ? "fail-closed" : "fail-open";
}

Principal Principal::of_process(uid_t uid, gid_t gid, pid_t pid) {
  Principal p{uid, gid, pid, {}};
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::getline(comm, p.program);
  return p;
}

Principal Principal::self() { return of_process(::getuid(), ::getgid(), ::getpid()); }

Event volume_event(std::string event, std::string keystore, std::optional<std::uint32_t> generation,
                   std::string result, nlohmann::json detail) {
  Event e;
  e.event = std::move(event);
  e.path = "/";
  e.generation = generation;
  e.keystore = std::move(keystore);
  e.result = std::move(result);
  e.detail = std::move(detail);
  return e;
}

Mac chain_mac(crypto::ByteView key, const Mac& prev, std::string_view text) {
  crypto::Bytes message(prev.begin(), prev.end());
  message.insert(message.end(), text.begin(), text.end());
  return crypto::hmac_sha256(key, message);
}

std::string seal_record(const Event& event, std::uint64_t seq, std::string_view volume_id,
                        const Mac& prev, crypto::ByteView key, Mac& mac_out) {
  const std::string time = event.time.empty() ? utc_time_micros() : event.time;
  nlohmann::json fields = {{"seq", seq},
                           {"time", time},
                           {"event", event.event},
                           {"volume", volume_id},
                           {"principal",
                            {{"uid", event.principal.uid},
                             {"gid", event.principal.gid},
                             {"pid", event.principal.pid},
                             {"program", event.principal.program}}},
                           {"result", event.result}};
  if (!event.path.empty()) fields["path"] = event.path;
  if (event.generation) fields["generation"] = *event.generation;
  if (!event.keystore.empty()) fields["keystore"] = event.keystore;
  if (!event.detail.is_null()) fields["detail"] = event.detail;
  // Paths need not be UTF-8; replacing bad bytes keeps the line valid JSON, and the
  // MAC covers what was written, so verification is unaffected.
  std::string text = fields.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  mac_out = chain_mac(key, prev, text);
  text.pop_back();  // the closing brace
  text += kMacPrefix;
  text += crypto::hex_encode(mac_out);
  text += "\"}";
  return text;
}

std::optional<RecordLine> parse_record_line(std::string_view line) {
  if (line.size() <= kMacSuffixSize || line.substr(line.size() - 2) != "\"}") return std::nullopt;
  const std::size_t mac_at = line.size() - kMacSuffixSize;
  if (line.substr(mac_at, kMacPrefix.size()) != kMacPrefix) return std::nullopt;
  RecordLine out;
  const std::string_view hex = line.substr(mac_at + kMacPrefix.size(), kMacHex);
  std::size_t bin_len = 0;
  if (sodium_hex2bin(out.mac.data(), out.mac.size(), hex.data(), hex.size(), nullptr, &bin_len,
                     nullptr) != 0 ||
      bin_len != out.mac.size()) {
    return std::nullopt;
  }
  out.text = std::string(line.substr(0, mac_at)) + "}";
  out.fields = nlohmann::json::parse(line, nullptr, false);
  if (out.fields.is_discarded() || !out.fields.is_object()) return std::nullopt;
  const auto seq = out.fields.find("seq");
  if (seq == out.fields.end() || !seq->is_number_unsigned()) return std::nullopt;
  out.seq = seq->get<std::uint64_t>();
  return out;
}

std::string utc_time_micros() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t secs = std::chrono::system_clock::to_time_t(now);
  const auto micros =
      std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() %
      1000000;
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  char buf[40];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[64];
  std::snprintf(out, sizeof out, "%.*s.%06lldZ", static_cast<int>(n), buf,
                static_cast<long long>(micros));
  return out;
}

}  // namespace wardfs::audit
