#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

#include "base/errors.h"
#include "cli/commands.h"
#include "cli/offline.h"
#include "daemon/control.h"
#include "daemon/monitor.h"
#include "daemon/volume_service.h"
#include "service/key_admin.h"
#include "volume/rekey.h"

namespace wardfs::cli {

namespace {

namespace stdfs = std::filesystem;
using nlohmann::json;

struct Target {
  std::string path;
  OfflineCredentials creds;
};

// Offline work needs the volume unlocked here, with the user's credentials, and the
// volume's lease: refused while a daemon serves it, anywhere. Then it runs the same
// service::KeyAdmin as a daemon does.
struct OfflineKeyAdmin {
  OfflineVolume offline;
  volume::OfflineTreeAccess tree;
  volume::NameMapper names;
  service::KeyAdmin admin;

  OfflineKeyAdmin(const Target& t, const std::string& command)
      : offline(stdfs::absolute(t.path), t.creds, command),
        tree(offline.volume()),
        names(offline.volume()),
        admin({.volume = offline.volume(),
               .keystore = offline.keystore(),
               .tree = tree,
               .names = names,
               .log = offline.audit_log(),
               .online = false,
               .where = "offline"}) {}
};

int run_rotate(const Target& t) {
  std::uint32_t generation = 0;
  if (is_mounted(t.path)) {
    generation = daemon::control_request(stdfs::absolute(t.path), {{"op", "rotate"}})["generation"]
                     .get<std::uint32_t>();
  } else {
    OfflineKeyAdmin offline(t, "rotate");
    generation = offline.admin.rotate(audit::Principal::self());
  }
  std::cout << "generation " << generation
            << " is now active: new chunks and names are sealed under it.\n"
            << "Re-seal older data with: wardfs rekey " << t.path << "\n";
  return 0;
}

// The daemon's bytes_total is the backing tree's size as first scanned (headers, tags,
// chunks already under the active generation); bytes_done counts what was re-sealed. So a
// finished rekey is reported by what it did, and a running one never shows 100 %.
void print_progress(const json& rekey, double seconds, bool tty, bool json_lines, bool final) {
  const auto done = rekey["bytes_done"].get<std::uint64_t>();
  const auto total = std::max(done, rekey["bytes_total"].get<std::uint64_t>());
  const auto rate = static_cast<std::uint64_t>(seconds > 0 ? done / seconds : 0);
  const auto eta = final || rate == 0 ? 0 : (total - done) / rate;
  if (json_lines) {
    std::cout << json{{"bytes_done", done},
                      {"bytes_total", total},
                      {"rate", rate},
                      {"eta_seconds", eta},
                      {"files_done", rekey["files_done"]},
                      {"names_done", rekey["names_done"]},
                      {"errors", rekey["errors"]},
                      {"running", !final}}
                     .dump()
              << std::endl;
    return;
  }
  const std::string counts = std::to_string(rekey["files_done"].get<std::uint64_t>()) + " files, " +
                             std::to_string(rekey["names_done"].get<std::uint64_t>()) + " names";
  if (final) {
    std::cout << (tty ? "\r" : "") << "rekey: done: " << counts << ", " << daemon::human_bytes(done)
              << " re-sealed (of " << daemon::human_bytes(total) << " scanned) in "
              << static_cast<int>(seconds) << " s" << (tty ? "          \n" : "\n") << std::flush;
    return;
  }
  const int pct =
      total == 0 ? 0 : static_cast<int>(std::min<std::uint64_t>(99, done * 100 / total));
  if (tty) {
    const int width = 30;
    const std::string bar =
        std::string(pct * width / 100, '#') + std::string(width - pct * width / 100, '.');
    std::cout << "\r[" << bar << "] " << pct << "%  " << daemon::human_bytes(done) << " / "
              << daemon::human_bytes(total) << "  " << daemon::human_bytes(rate) << "/s  ETA "
              << eta << " s   " << std::flush;
  } else {
    std::cout << "rekey: " << pct << "% " << daemon::human_bytes(done) << " of "
              << daemon::human_bytes(total) << ", " << daemon::human_bytes(rate) << "/s, ETA "
              << eta << " s" << std::endl;
  }
}

int run_rekey(const Target& t, double rate_mb, bool background, bool json_lines) {
  const double rate = rate_mb * 1e6;
  if (!is_mounted(t.path)) {
    OfflineKeyAdmin offline(t, "rekey");
    const auto who = audit::Principal::self();
    volume::RekeyLease lease = offline.admin.begin_rekey(rate, who);
    volume::RekeyProgress progress;
    const auto outcome = offline.admin.run_rekey(lease, progress, rate, who);
    std::cout << "rekey: " << progress.files_done << " files, " << progress.names_done << " names, "
              << progress.errors << " errors\n";
    if (outcome.rc != 0 || progress.errors > 0)
      throw WardError(ErrorKind::io,
                      "rekey incomplete: " + progress.last_error + " (rerun to resume)");
    return 0;
  }
  const auto mount_point = stdfs::absolute(t.path);
  daemon::control_request(mount_point, {{"op", "rekey"}, {"rate", rate}});
  if (background) {
    std::cout << "rekey running in the daemon; follow it with: wardfs status " << t.path << "\n";
    return 0;
  }
  const bool tty = ::isatty(STDOUT_FILENO) != 0;
  const auto started = std::chrono::steady_clock::now();
  auto last_print = started - std::chrono::seconds(10);
  for (;;) {
    const json rekey = daemon::control_request(mount_point, {{"op", "status"}})["rekey"];
    const auto now = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(now - started).count();
    const bool finished = !rekey["running"].get<bool>();
    const bool sized = rekey["bytes_total"].get<std::uint64_t>() > 0;  // the first scan is done
    if (finished || (sized && (tty || now - last_print >= std::chrono::seconds(2)))) {
      print_progress(rekey, seconds, tty, json_lines, finished);
      last_print = now;
    }
    if (finished) {
      if (rekey["errors"].get<std::uint64_t>() > 0) {
        throw WardError(ErrorKind::io,
                        "rekey finished with errors: " + rekey.value("last_error", std::string()) +
                            " (see the daemon log; rerun to retry)");
      }
      return 0;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(tty ? 250 : 500));
  }
}

bool confirm_shred(std::uint32_t generation) {
  if (::isatty(STDIN_FILENO) == 0) return false;
  std::cerr << "Retiring generation " << generation
            << " with --force makes everything it still seals unreadable, for good.\nType 'shred' "
               "to go on: ";
  std::string answer;
  std::getline(std::cin, answer);
  return answer == "shred";
}

int run_retire(const Target& t, std::uint32_t generation, bool force, bool yes) {
  if (force && !yes && !confirm_shred(generation)) {
    throw WardError(ErrorKind::usage, "not confirmed; pass --yes to retire without asking");
  }
  std::uint64_t shredded = 0;
  if (is_mounted(t.path)) {
    shredded = daemon::control_request(
                   stdfs::absolute(t.path),
                   {{"op", "retire"}, {"generation", generation}, {"force", force}})["shredded"]
                   .get<std::uint64_t>();
  } else {
    OfflineKeyAdmin offline(t, "retire");
    shredded = offline.admin.retire(generation, force, audit::Principal::self());
  }
  std::cout << "generation " << generation << " retired";
  if (shredded > 0)
    std::cout << "; " << shredded << " items it sealed are now unreadable (crypto-shredded)";
  std::cout << "\n";
  return 0;
}

}  // namespace

void add_key_commands(CLI::App& app, Runner& run) {
  auto rotate_target = std::make_shared<Target>();
  CLI::App* rotate = app.add_subcommand(
      "rotate",
      "Create a new data-key generation and make it active. Online on a MOUNTPOINT (no pause), "
      "offline on a CIPHERDIR that no daemon serves.");
  rotate->add_option("TARGET", rotate_target->path, "Mount point or backing directory")->required();
  add_offline_credentials(*rotate, rotate_target->creds);
  rotate->callback(
      [rotate_target, &run] { run = [rotate_target] { return run_rotate(*rotate_target); }; });

  struct RekeyArgs {
    Target target;
    double rate = 0;
    bool background = false;
    bool json = false;
  };
  auto rekey_args = std::make_shared<RekeyArgs>();
  CLI::App* rekey = app.add_subcommand(
      "rekey",
      "Re-seal every chunk, name, symlink and xattr still under an older generation with the "
      "active "
      "one, while the volume stays in use. Resumable: rerun after a crash or unmount.");
  rekey
      ->add_option("TARGET", rekey_args->target.path,
                   "Mount point (online) or backing directory (offline)")
      ->required();
  rekey
      ->add_option("--rate", rekey_args->rate,
                   "Throttle to this many MB/s of backing data (default: unlimited)")
      ->check(CLI::NonNegativeNumber);
  rekey->add_flag("--background", rekey_args->background,
                  "Start it in the daemon and return at once");
  rekey->add_flag("--json", rekey_args->json, "Progress as JSON lines");
  add_offline_credentials(*rekey, rekey_args->target.creds);
  rekey->callback([rekey_args, &run] {
    run = [rekey_args] {
      return run_rekey(rekey_args->target, rekey_args->rate, rekey_args->background,
                       rekey_args->json);
    };
  });

  struct RetireArgs {
    Target target;
    std::uint32_t generation = 0;
    bool force = false;
    bool yes = false;
  };
  auto retire_args = std::make_shared<RetireArgs>();
  CLI::App* retire = app.add_subcommand(
      "retire",
      "Delete an old generation's data key. Refused while anything still uses it, unless --force "
      "(which crypto-shreds what remains).");
  retire->add_option("TARGET", retire_args->target.path, "Mount point or backing directory")
      ->required();
  retire->add_option("GENERATION", retire_args->generation, "Generation number (see wardfs status)")
      ->required();
  retire->add_flag("--force", retire_args->force,
                   "Retire even if data still uses it: that data becomes unreadable");
  retire->add_flag("-y,--yes", retire_args->yes, "Do not ask for confirmation with --force");
  add_offline_credentials(*retire, retire_args->target.creds);
  retire->callback([retire_args, &run] {
    run = [retire_args] {
      return run_retire(retire_args->target, retire_args->generation, retire_args->force,
                        retire_args->yes);
    };
  });
}

}  // namespace wardfs::cli
