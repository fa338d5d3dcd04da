// fuse::ListingAttrPolicy (-o readdirplus=adaptive): attributes with a listing's first
// batch, with the others while the callers look up what was listed without them, and
// back to bare entries soon after they stop.
#include <catch2/catch.hpp>
#include <cstdint>

#include "fuse/listing_attrs.h"

using wardfs::fuse::ListingAttrPolicy;

namespace {

// Entries of one READDIRPLUS reply (their number does not matter here).
constexpr std::uint64_t kBatch = 25;

// One directory listed: `batches` replies after the first. Returns how many of those
// carried attributes; the entries sent bare are looked up when `stat_them`.
int list_directory(ListingAttrPolicy& policy, int batches, bool stat_them) {
  REQUIRE(policy.with_attrs(true));
  int with = 0;
  std::uint64_t bare = 0;
  for (int i = 0; i < batches; ++i) {
    if (policy.with_attrs(false)) {
      ++with;
    } else {
      policy.note_sent_bare(kBatch);
      bare += kBatch;
    }
  }
  if (stat_them) {
    for (std::uint64_t i = 0; i < bare; ++i) policy.note_looked_up();
  }
  return with;
}

}  // namespace

TEST_CASE("a fresh mount sends attributes with a listing's first batch only", "[listing]") {
  ListingAttrPolicy policy;
  CHECK(list_directory(policy, 40, false) == 0);
  CHECK(list_directory(policy, 40, false) == 0);
}

TEST_CASE("callers that stat what they list get attributes with every batch", "[listing]") {
  ListingAttrPolicy policy;
  CHECK(list_directory(policy, 11, true) == 0);  // learns from the first directory
  int with = 0;
  int batches = 0;
  for (int dir = 0; dir < 20; ++dir) {
    with += list_directory(policy, 11, true);
    batches += 11;
  }
  // All but the probes: one batch in kProbeEvery stays bare to keep checking.
  CHECK(with >= batches - batches / static_cast<int>(ListingAttrPolicy::kProbeEvery) - 1);
}

TEST_CASE("listings nobody stats go back to bare entries within a few thousand", "[listing]") {
  ListingAttrPolicy policy;
  for (int dir = 0; dir < 20; ++dir) list_directory(policy, 11, true);
  REQUIRE(list_directory(policy, 11, true) > 5);
  // One large directory listed by a program that does not stat: the probes find no
  // lookups, and attributes stop after a bounded number of batches.
  int last_with = -1;
  for (int i = 0; i < 800; ++i) {
    if (policy.with_attrs(false)) {
      last_with = i;
    } else {
      policy.note_sent_bare(kBatch);
    }
  }
  CHECK(last_with >= 0);
  CHECK(last_with < 300);  // 300 batches: about 7,500 entries
}
