// Running a memory-hungry key derivation (Argon2id, 256 MiB by default) in a short-lived
// child process, so the caller's peak RSS (VmHWM, which never goes down) does not carry
// it: the mount daemon keeps its peak at what serving needs (docs/PERFORMANCE.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>

#include "crypto/secret.h"

namespace wardfs::crypto {

// Fills `length` bytes with derive() in a forked child and hands them back through a
// pipe into sodium_malloc'd memory. derive() returns false when it fails; then, or when
// the child dies, the result is nullopt. The child's memory is gone when this returns.
// Where fork() is refused (RLIMIT_NPROC, a sandbox), derive() runs in this process:
// the key is the same, only the peak memory differs.
std::optional<SecretBytes> derive_in_child(
    std::size_t length, const std::function<bool(std::span<std::uint8_t>)>& derive);

}  // namespace wardfs::crypto
