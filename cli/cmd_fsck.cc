// wardfs fsck CIPHERDIR: checks a volume offline with its key (volume/fsck.h) and its
// audit chain; --repair does what is safe; --scrub reads a mounted volume through its
// mount point (cli/scrub.cc). The report: one line (or JSON object) per problem and a
// summary; the exit code says the worst that was found.
#include <unistd.h>

#include <chrono>
#include <iostream>

#include "audit/key_loss.h"
#include "audit/verify.h"
#include "base/errors.h"
#include "cli/commands.h"
#include "cli/fsck_report.h"
#include "cli/offline.h"
#include "daemon/control.h"
#include "daemon/online_fsck.h"
#include "volume/fsck.h"

namespace wardfs::cli {

namespace {

namespace stdfs = std::filesystem;

struct FsckArgs {
  std::string target;
  bool json = false;
  bool repair = false;
  bool scrub = false;
  bool skip_audit = false;
  std::string rate = "50M";
  OfflineCredentials creds;
};

// The audit chain is part of the volume's integrity: checked with the same code as
// `wardfs audit CIPHERDIR verify`.
void check_audit_chain(OfflineVolume& offline, FsckReporter& out) {
  if (offline.volume().audit_mac_key().empty()) return;  // made before the audit log
  offline.audit_log().flush();  // our own unwrap records belong in what we check
  const stdfs::path log = offline.audit_log().options().path;
  if (!audit::has_history(log)) return;
  const auto report = audit::verify_log(log, offline.volume().audit_mac_key().view());
  if (!report.ok) out.problem(daemon::audit_chain_problem(log.string(), report.problem));
}

// A mount point: the daemon checks with its own keys, read-only, and answers at once.
int run_online(const FsckArgs& a) {
  if (a.repair) {
    throw WardError(ErrorKind::usage,
                    "--repair changes the backing tree and needs the volume unmounted: "
                    "wardfs unmount " +
                        a.target + ", then wardfs fsck CIPHERDIR --repair");
  }
  const auto mount_point = stdfs::absolute(a.target);
  FsckReporter out(a.json, mount_point.string());
  const auto reply = daemon::control_request(mount_point, {{"op", "fsck"}});
  for (const auto& p : reply.at("problems")) out.problem(daemon::fsck_problem_from_json(p));
  const nlohmann::json left_off = reply.value("left_off", nlohmann::json::object());
  for (const auto& item : left_off.items()) {
    nlohmann::json severity = nlohmann::json::object();
    severity["severity"] = item.key();
    out.count_unlisted(daemon::fsck_problem_from_json(severity).severity,
                       item.value().get<std::uint64_t>());
  }
  return out.finish(daemon::fsck_counts_from_json(reply.at("counts")));
}

int run_offline(const FsckArgs& a) {
  const stdfs::path cipher_dir = stdfs::absolute(a.target);
  // --repair changes the backing tree: the offline lease refuses while any daemon serves
  // the volume, as for rotate and rekey.
  std::optional<OfflineVolume> opened;
  try {
    opened.emplace(cipher_dir, a.creds,
                   a.repair ? std::optional<std::string>("fsck") : std::nullopt);
  } catch (const WardError& e) {
    // The lease's refusal suggests the online command, which only checks.
    if (!a.repair || e.kind() != ErrorKind::usage) throw;
    throw WardError(e.kind(), std::string(e.what()) +
                                  " (that checks read-only; to --repair, unmount the volume "
                                  "first)");
  }
  OfflineVolume& offline = *opened;
  FsckReporter out(a.json, cipher_dir.string());
  volume::FsckOptions options;
  options.repair = a.repair;
  options.on_problem = [&out](const volume::FsckProblem& p) { out.problem(p); };
  options.on_progress = [&out](const volume::FsckCounts& c) { out.progress(c); };
  const auto counts = volume::check_volume(offline.volume(), options);
  if (!a.skip_audit) check_audit_chain(offline, out);
  if (a.repair) {
    offline.record("fsck_repair", std::nullopt, "ok",
                   {{"repaired", counts.repaired}, {"damaged", counts.damaged}});
  }
  return out.finish(counts);
}

int run_fsck(const FsckArgs& a) {
  if (a.scrub) {
    if (!is_mounted(a.target)) {
      throw WardError(ErrorKind::usage, a.target +
                                            " is not a mount point: --scrub reads a mounted "
                                            "volume; for a backing directory drop --scrub");
    }
    if (a.repair) throw WardError(ErrorKind::usage, "--scrub only reads; it cannot --repair");
    const auto rate = parse_size(a.rate);
    if (!rate || *rate == 0) {
      throw WardError(ErrorKind::usage, "--rate " + a.rate + ": give bytes per second, e.g. 50M");
    }
    return run_scrub(stdfs::absolute(a.target), *rate, a.json);
  }
  return is_mounted(a.target) ? run_online(a) : run_offline(a);
}

}  // namespace

void add_fsck_command(CLI::App& app, Runner& run) {
  auto a = std::make_shared<FsckArgs>();
  CLI::App* cmd = app.add_subcommand(
      "fsck",
      "Check a volume: every directory id, name, long-name sidecar, file header, chunk "
      "(end-of-file mark, holes), symbolic link, extended attribute and the audit chain. "
      "Offline on CIPHERDIR with the key, or online on MOUNTPOINT through the daemon; --scrub "
      "reads every file of a mounted volume through MOUNTPOINT instead.");
  cmd->add_option("TARGET", a->target,
                  "Backing directory (CIPHERDIR, offline, with the key) or MOUNTPOINT (the "
                  "daemon checks with its keys, read-only)")
      ->required();
  cmd->add_flag("--json", a->json,
                "One JSON object per problem (severity, kind, path, backing, detail, fix, "
                "repaired), then one summary object");
  cmd->add_flag("--repair", a->repair,
                "Do what is safe and say what was done: remove leftover wardfs.tmp.* entries "
                "and orphan sidecars, move entries whose names cannot be decrypted to "
                "/lost+found, clear a has-holes flag no hole needs. Refused while the volume "
                "is mounted");
  cmd->add_flag("--scrub", a->scrub,
                "Read every file, link and directory through the mount point at a bounded "
                "rate; report what fails with EIO");
  cmd->add_option("--rate", a->rate, "Scrub read rate in bytes per second (50M, 1G; default 50M)");
  cmd->add_flag("--skip-audit", a->skip_audit, "Do not verify the audit log's chain");
  add_offline_credentials(*cmd, a->creds);
  cmd->footer(
      "\nExit codes:\n"
      "  0  clean (or everything found was repaired)\n"
      "  1  usage error\n"
      "  2  wrong passphrase or key\n"
      "  3  damage found: data or metadata that fails authentication\n"
      "  5  I/O error\n"
      "  6  no damage, but leftovers or unknown entries remain (--repair removes leftovers)\n"
      "\n  For example: wardfs fsck /srv/cipher --keyfile KEY [--repair],\n"
      "  wardfs fsck /mnt/plain --json, wardfs fsck --scrub --rate 50M /mnt/plain\n");
  cmd->callback([a, &run] { run = [a] { return run_fsck(*a); }; });
}

}  // namespace wardfs::cli
