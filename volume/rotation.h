// Key generations over a volume's life: add one (rotate), drop one (retire).
// Both rewrite the config atomically under the config lock, then update the keys in
// memory, so a running filesystem seals new data under the new generation at once.
#pragma once

#include <cstdint>

#include "keystore/keystore.h"
#include "volume/volume.h"

namespace wardfs::volume {

// Creates DEK g+1, wraps it with `keystore`, makes it active. Returns g+1.
// Refuses when `keystore` no longer opens the config's keys (rewrapped meanwhile).
std::uint32_t rotate_generation(Volume& volume, keystore::Keystore& keystore);

// Deletes the wrapped DEK of `generation` from the config and from memory.
// The caller decides whether anything still uses it (see rekey's scan).
void retire_generation(Volume& volume, std::uint32_t generation);

}  // namespace wardfs::volume
