// wardfs: transparent encrypting filesystem. Entry point and exit-code policy.
#include <sodium.h>

#include <algorithm>
#include <iostream>

#include "cli/commands.h"
#include "cli/mount_options.h"
#include "crypto/errors.h"

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
  CLI::App app{
      "wardfs: an encrypting overlay filesystem. Files written under the mount point are\n"
      "stored encrypted and authenticated in the backing directory (CIPHERDIR)."};
  app.footer(kExitCodes);
  app.set_version_flag("--version", std::string("wardfs ") + WARDFS_VERSION + " (format version 1)");
  app.require_subcommand(1);
  wardfs::cli::Runner run;
  wardfs::cli::add_init_command(app, run);
  wardfs::cli::add_mount_commands(app, run);
  wardfs::cli::add_rewrap_command(app, run);
  try {
    // Run as mount(8)'s helper (mount.fuse.wardfs links here): parse as `wardfs mount`.
    if (auto helper = wardfs::cli::mount_helper_args(argc, argv)) {
      if (helper->empty()) return 0;
      std::reverse(helper->begin(), helper->end());  // CLI11 takes a vector back to front
      helper->pop_back();                             // and without the program name
      app.parse(*helper);
    } else {
      app.parse(argc, argv);
    }
  } catch (const wardfs::WardError& e) {
    std::cerr << "wardfs: " << e.what() << "\n";
    return e.exit_code();
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
