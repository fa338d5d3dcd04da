// wardfs: transparent encrypting filesystem. Entry point and exit-code policy.
#include <sodium.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <iostream>

#include "base/errors.h"
#include "cli/commands.h"
#include "cli/mount_options.h"

namespace {
constexpr const char* kExitCodes =
    "\nExit codes:\n"
    "  0  success\n"
    "  1  usage error (bad flags or arguments)\n"
    "  2  wrong passphrase or key\n"
    "  3  corrupt or unreadable volume (config, metadata)\n"
    "  4  mount failure (mount point missing, busy or not empty; backing dir missing; FUSE)\n"
    "  5  other I/O error\n";
}

int main(int argc, char** argv) {
  // Library warnings go to stderr: stdout carries what a command prints (--json output
  // that scripts parse). A mounting daemon installs its own logger (daemon/logging.h).
  spdlog::set_default_logger(spdlog::stderr_color_st("cli"));
  wardfs::cli::HelperArgs helper;  // mount(8) runs this binary as mount.fuse.wardfs
  if (const auto rc = wardfs::cli::adopt_mount_helper_args(argc, argv, helper)) return *rc;
  CLI::App app{
      "wardfs: an encrypting overlay filesystem. Files written under the mount point are\n"
      "stored encrypted and authenticated in the backing directory (CIPHERDIR)."};
  app.footer(kExitCodes);
  app.set_version_flag("--version",
                       std::string("wardfs ") + WARDFS_VERSION + " (format version 1)");
  app.require_subcommand(1);
  wardfs::cli::Runner run;
  wardfs::cli::add_init_command(app, run);
  wardfs::cli::add_mount_commands(app, run);
  wardfs::cli::add_status_command(app, run);
  wardfs::cli::add_key_commands(app, run);
  wardfs::cli::add_info_command(app, run);
  wardfs::cli::add_rewrap_command(app, run);
  wardfs::cli::add_audit_command(app, run);
  wardfs::cli::add_fsck_command(app, run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : static_cast<int>(wardfs::ErrorKind::usage);
  }
  try {
    return run ? run() : 0;
  } catch (const wardfs::WardError& e) {
    std::cerr << "wardfs: " << e.what() << "\n";
    return e.exit_code();
  } catch (const std::exception& e) {
    std::cerr << "wardfs: " << e.what() << "\n";
    return static_cast<int>(wardfs::ErrorKind::io);
  }
}
