// fsck of a mounted volume: the daemon runs volume/fsck.h with its own unlocked keys
// (read-only: --repair needs the volume unmounted) and returns the problems through the
// control socket; and the JSON form of problems and counts that the CLI prints.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "volume/fsck.h"

namespace wardfs::daemon {

// A control reply is one line of at most 64 KiB: the daemon lists problems up to this
// many bytes and counts the rest by severity ("left_off").
inline constexpr std::size_t kMaxFsckReplyProblemBytes = 48 * 1024;

nlohmann::json fsck_problem_to_json(const volume::FsckProblem& p);
volume::FsckProblem fsck_problem_from_json(const nlohmann::json& j);
nlohmann::json fsck_counts_to_json(const volume::FsckCounts& c);
volume::FsckCounts fsck_counts_from_json(const nlohmann::json& j);

// The problem for an audit log that fails `wardfs audit verify`.
volume::FsckProblem audit_chain_problem(const std::string& log, const std::string& what);

}  // namespace wardfs::daemon
