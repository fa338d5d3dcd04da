#include "daemon/online_fsck.h"

#include "daemon/volume_service.h"

namespace wardfs::daemon {

namespace {
volume::FsckSeverity severity_from(const std::string& name) {
  if (name == "leftover") return volume::FsckSeverity::leftover;
  if (name == "warning") return volume::FsckSeverity::warning;
  return volume::FsckSeverity::damage;
}
}  // namespace

nlohmann::json fsck_problem_to_json(const volume::FsckProblem& p) {
  return {{"severity", volume::severity_name(p.severity)},
          {"kind", p.kind},
          {"path", p.path.empty() ? nlohmann::json(nullptr) : nlohmann::json(p.path)},
          {"backing", p.backing},
          {"detail", p.detail},
          {"fix", p.fix},
          {"repaired", p.repaired}};
}

volume::FsckProblem fsck_problem_from_json(const nlohmann::json& j) {
  volume::FsckProblem p;
  p.severity = severity_from(j.value("severity", "damage"));
  p.kind = j.value("kind", "");
  if (j.contains("path") && j["path"].is_string()) p.path = j["path"].get<std::string>();
  p.backing = j.value("backing", "");
  p.detail = j.value("detail", "");
  p.fix = j.value("fix", "");
  p.repaired = j.value("repaired", false);
  return p;
}

nlohmann::json fsck_counts_to_json(const volume::FsckCounts& c) {
  return {{"directories", c.directories},
          {"files", c.files},
          {"symlinks", c.symlinks},
          {"specials", c.specials},
          {"bytes", c.bytes},
          {"chunks", c.chunks},
          {"holes", c.holes},
          {"xattrs", c.xattrs},
          {"leftovers", c.leftovers},
          {"warnings", c.warnings},
          {"damaged", c.damaged},
          {"repaired", c.repaired},
          {"quarantined", c.quarantined}};
}

volume::FsckCounts fsck_counts_from_json(const nlohmann::json& j) {
  volume::FsckCounts c;
  const auto get = [&j](const char* key) { return j.value(key, std::uint64_t{0}); };
  c.directories = get("directories");
  c.files = get("files");
  c.symlinks = get("symlinks");
  c.specials = get("specials");
  c.bytes = get("bytes");
  c.chunks = get("chunks");
  c.holes = get("holes");
  c.xattrs = get("xattrs");
  c.leftovers = get("leftovers");
  c.warnings = get("warnings");
  c.damaged = get("damaged");
  c.repaired = get("repaired");
  c.quarantined = get("quarantined");
  return c;
}

volume::FsckProblem audit_chain_problem(const std::string& log, const std::string& what) {
  return {volume::FsckSeverity::damage,
          "audit_chain",
          "",
          log,
          what,
          "the audit log was edited, cut or reordered: keep it as evidence; "
          "'wardfs audit TARGET verify' shows the details",
          false};
}

nlohmann::json VolumeService::fsck() {
  nlohmann::json problems = nlohmann::json::array();
  nlohmann::json left_off = {{"leftover", 0}, {"warning", 0}, {"damage", 0}};
  std::size_t listed_bytes = 0;
  const auto add = [&](const volume::FsckProblem& p) {
    nlohmann::json j = fsck_problem_to_json(p);
    const std::size_t size =
        j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).size();
    if (listed_bytes + size > kMaxFsckReplyProblemBytes) {
      left_off[std::string(volume::severity_name(p.severity))] =
          left_off[std::string(volume::severity_name(p.severity))].get<std::uint64_t>() + 1;
      return;
    }
    listed_bytes += size;
    problems.push_back(std::move(j));
  };
  volume::FsckOptions options;  // read-only: the daemon's own writers are at work
  options.access = &filesystem_.tree_access();
  options.on_problem = add;
  const auto counts = volume::check_volume(volume_, options);
  if (!volume_.audit_mac_key().empty()) {
    const nlohmann::json chain = audit_verify();
    if (!chain.value("ok", false)) {
      add(audit_chain_problem(chain.value("log", ""),
                              chain.value("problem", "verification failed")));
    }
  }
  return {{"ok", true},
          {"problems", problems},
          {"left_off", left_off},
          {"counts", fsck_counts_to_json(counts)}};
}

}  // namespace wardfs::daemon
