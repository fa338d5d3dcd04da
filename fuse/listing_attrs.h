// -o readdirplus=adaptive: which batches of a listing carry the entries' attributes.
//
// The kernel's own heuristic (readdirplus=auto) asks for attributes with a listing's
// first batch only: find, rsync and du read a whole directory before they stat its
// entries, so every later entry costs a LOOKUP round trip. Attributes with every batch
// (always) spare those, but a listing nobody stats (os.listdir of a dataset) then pays an
// fstatat per entry, a disk read each when cold. Adaptive lets the kernel ask for
// attributes always and answers with them when this mount's callers have been stat'ing
// what they list: an entry sent without them (node id 0) is a plain directory entry to
// the kernel, and a LOOKUP of one of those is the signal.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace wardfs::fuse {

// -o readdirplus= (fuse/filesystem.h says what each does).
enum class ReaddirPlus { adaptive, kernel_auto, always };
// As the option spells it.
inline std::string_view readdirplus_name(ReaddirPlus mode) {
  switch (mode) {
    case ReaddirPlus::kernel_auto:
      return "auto";
    case ReaddirPlus::always:
      return "always";
    case ReaddirPlus::adaptive:
      break;
  }
  return "adaptive";
}

class ListingAttrPolicy {
 public:
  // History kept: past this many entries sent without attributes, both counts halve, so
  // a change of workload shows within a few thousand entries.
  static constexpr std::uint64_t kWindow = 512;
  // While attributes are sent, one batch in this many goes without, to see whether the
  // callers still stat what they list (nothing else tells: stats then hit the cache).
  static constexpr std::uint64_t kProbeEvery = 16;

  // Whether a batch carries attributes. A listing's first batch always does (as with the
  // kernel's auto); later ones while at least half the entries sent without them were
  // looked up afterwards.
  bool with_attrs(bool first_batch) {
    if (first_batch) return true;
    if (batches_.fetch_add(1, std::memory_order_relaxed) % kProbeEvery == kProbeEvery - 1)
      return false;
    const std::uint64_t sent = sent_bare_.load(std::memory_order_relaxed);
    return sent > 0 && 2 * looked_up_.load(std::memory_order_relaxed) >= sent;
  }
  // `n` entries went to the kernel without attributes.
  void note_sent_bare(std::uint64_t n) {
    // Racing halvings or additions skew a heuristic, never a reply: relaxed is enough.
    if (sent_bare_.fetch_add(n, std::memory_order_relaxed) + n > kWindow) {
      sent_bare_.store(sent_bare_.load(std::memory_order_relaxed) / 2, std::memory_order_relaxed);
      looked_up_.store(looked_up_.load(std::memory_order_relaxed) / 2, std::memory_order_relaxed);
    }
  }
  // A LOOKUP in a directory whose listing sent entries without attributes.
  void note_looked_up() { looked_up_.fetch_add(1, std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> sent_bare_{0};
  std::atomic<std::uint64_t> looked_up_{0};
  std::atomic<std::uint64_t> batches_{0};
};

}  // namespace wardfs::fuse
