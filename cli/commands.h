// Subcommands of the wardfs CLI. Each registers itself on the app and runs through
// a callback that returns the process exit code.
#pragma once

#include <CLI/CLI.hpp>
#include <chrono>
#include <functional>
#include <optional>
#include <string>

#include "keystore/keystore.h"

namespace wardfs::cli {

using Runner = std::function<int()>;

// Registers the subcommand; `run` is set to its body when the user picks it.
void add_init_command(CLI::App& app, Runner& run);
void add_mount_commands(CLI::App& app, Runner& run);  // mount and unmount
void add_status_command(CLI::App& app, Runner& run);
// rotate, rekey, retire: online through the control socket when the target is a mount
// point, offline on a backing directory otherwise.
void add_key_commands(CLI::App& app, Runner& run);
void add_info_command(CLI::App& app, Runner& run);
void add_rewrap_command(CLI::App& app, Runner& run);
void add_audit_command(CLI::App& app, Runner& run);
void add_fsck_command(CLI::App& app, Runner& run);

// Shared option parsers (cli/args.cc).
// "4K", "64k", "1M", "4096" -> bytes; nullopt when malformed.
std::optional<std::uint64_t> parse_size(const std::string& text);

// --command-timeout SECONDS: nullopt for 0 (use the default); throws WardError(usage).
std::optional<std::chrono::milliseconds> command_timeout(double seconds);

// The keystore credentials that --keyfile, --passfile and --pin-file name (an empty
// string is an option not given); prompts only where stdin is a terminal.
keystore::Credentials credentials_from_options(const std::string& keyfile,
                                               const std::string& passfile,
                                               const std::string& pin_file = {});

}  // namespace wardfs::cli
