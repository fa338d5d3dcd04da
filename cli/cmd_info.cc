// wardfs info: what a volume's wardfs.conf states in the clear (format, cipher, chunk
// size, volume id, generations, keystore type, holes and audit settings), without a key
// or a daemon; the same facts `wardfs status CIPHERDIR` shows, in full.
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/volume_facts.h"
#include "daemon/mount_table.h"

namespace wardfs::cli {

namespace stdfs = std::filesystem;
using nlohmann::json;

namespace {

void print_info(const json& f) {
  const auto& audit = f["audit"];
  std::cout << "backing directory  " << f["cipher_dir"].get<std::string>() << "\n"
            << "mounted            "
            << (f["mounted"].get<bool>() ? "on " + f["mount_point"].get<std::string>()
                                         : std::string("no"))
            << "\nformat version     " << f["format_version"] << "\n"
            << "volume id          " << f["volume_id"].get<std::string>() << "\n"
            << "cipher             " << f["cipher"].get<std::string>() << "\n"
            << "chunk size         " << f["chunk_size"] << " bytes\n"
            << "holes              " << f["holes"].get<std::string>() << "\n"
            << "keystore           " << f["keystore"].get<std::string>() << "\n"
            << "generations        " << f["generations"].size() << " (active "
            << f["active_generation"] << ")\n";
  for (const auto& g : f["generations"]) {
    std::cout << "  " << g["generation"] << "  created " << g["created"].get<std::string>()
              << (g["active"].get<bool>() ? "  active" : "") << "\n";
  }
  std::cout << "audit key          "
            << (audit["key"].get<bool>()
                    ? "present (created " + audit["key_created"].get<std::string>() + ")"
                    : std::string("absent (the next read-write mount adds it)"))
            << "\naudit log          " << audit["default_log"].get<std::string>()
            << (audit["default_log_exists"].get<bool>() ? "" : " (not there)")
            << " unless mounted with --audit-log\n";
}

int run_info(const std::string& target, bool json_output) {
  stdfs::path cipher_dir = stdfs::absolute(target).lexically_normal();
  // A mount point stands for the volume mounted there.
  if (daemon::mounted_fstype(cipher_dir) == daemon::kWardfsFsType) {
    if (const auto source = cipher_dir_of_mount(cipher_dir)) cipher_dir = *source;
  }
  const json facts = volume_facts(cipher_dir);
  if (json_output) {
    std::cout << facts.dump(2) << "\n";
  } else {
    print_info(facts);
  }
  return 0;
}

}  // namespace

void add_info_command(CLI::App& app, Runner& run) {
  auto target = std::make_shared<std::string>();
  auto json_output = std::make_shared<bool>(false);
  CLI::App* info = app.add_subcommand(
      "info",
      "Show what a volume's wardfs.conf states in the clear: format version, cipher, chunk "
      "size, volume id, generations and when they were made, keystore type, holes policy and "
      "audit settings. Needs no key and no daemon, and shows no secret; exit 3 when the "
      "config is missing or corrupt.");
  info->add_option("CIPHERDIR", *target, "A backing directory (or the mount point of one)")
      ->required();
  info->add_flag("--json", *json_output, "Machine-readable output");
  info->callback([target, json_output, &run] {
    run = [target, json_output] { return run_info(*target, *json_output); };
  });
}

}  // namespace wardfs::cli
