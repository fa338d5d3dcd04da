// Key generations over a volume's life: add one (rotate), drop one (retire).
// Both rewrite the config atomically under the config lock, then update the keys in
// memory, so a running filesystem seals new data under the new generation at once.
#pragma once

#include <cstdint>
#include <vector>

#include "keystore/keystore.h"
#include "volume/volume.h"

namespace wardfs::volume {

// Creates DEK g+1, wraps it with `keystore`, makes it active. Returns g+1.
// Refuses when `keystore` no longer opens the config's keys (rewrapped meanwhile).
std::uint32_t rotate_generation(Volume& volume, keystore::Keystore& keystore);

// What a mount learned from a config that another mount or an offline command wrote.
struct AdoptedChanges {
  std::vector<std::uint32_t> added;    // generations whose keys were unwrapped
  std::vector<std::uint32_t> removed;  // generations retired elsewhere, forgotten here
  bool active_changed = false;
  bool any() const { return active_changed || !added.empty() || !removed.empty(); }
};

// Takes on the generations wardfs.conf lists now, for a volume that is mounted while
// something else rotates or retires (a read-only mount beside a read-write one): new
// generations are unwrapped with `keystore` (which authenticates them), retired ones
// forgotten, the active one followed. Never goes back: a config whose active generation
// is older than ours, or that brings back a generation we no longer hold, is a replayed
// old copy and is refused with WardError(corrupt_volume), keys unchanged; so is one
// for another volume or layout. WardError(wrong_key) when the keystore in use does not
// open the new keys (rewrapped meanwhile): remount with the new credentials.
AdoptedChanges adopt_config_changes(Volume& volume, keystore::Keystore& keystore);

// Deletes the wrapped DEK of `generation` from the config and from memory.
// The caller decides whether anything still uses it (see rekey's scan).
void retire_generation(Volume& volume, std::uint32_t generation);

}  // namespace wardfs::volume
