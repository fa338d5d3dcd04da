// Runs a user-given program that prints a secret: no shell unless asked, a time limit,
// its stderr passed through to ours, its stdout captured into locked memory.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/bytes.h"
#include "crypto/secret.h"

namespace wardfs::keystore {

// Splits a command line like a POSIX shell would split words, without expanding
// anything: blanks separate words, '...' is literal, "..." allows \" \\ \$ \`, and a
// backslash outside quotes escapes the next character. Throws WardError(usage) on an
// unterminated quote or an empty line.
std::vector<std::string> split_command_line(std::string_view line);

// The argv for a `command` keystore location: "sh:LINE" runs /bin/sh -c LINE,
// anything else is split with split_command_line.
std::vector<std::string> command_argv(std::string_view location);

struct CommandLimits {
  std::chrono::milliseconds timeout{30000};
  std::size_t max_output = 4096;
};

// What the program gets besides its arguments. Without input its stdin is ours (so it
// can prompt); with input (at most 4 KiB) stdin is a socket holding just that.
struct CommandInput {
  crypto::ByteView stdin_data;
  std::vector<std::string> extra_env;  // "NAME=VALUE", added to our environment
};

// Runs argv[0] (looked up in PATH) with stdin and stderr inherited and returns what it
// printed on stdout. Throws WardError: usage when it cannot be started; wrong_key when it
// exits non-zero (status in the message), dies of a signal, prints too much, or runs past
// the timeout (it is then killed with SIGKILL).
crypto::SecretBytes run_secret_command(const std::vector<std::string>& argv,
                                       const CommandLimits& limits, const CommandInput& input = {});

}  // namespace wardfs::keystore
