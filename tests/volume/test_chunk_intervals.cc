// ChunkIntervals (volume/chunk_intervals.h) against a std::set model under random inserts
// and trims: the has-holes bookkeeping must never claim a chunk nobody added.
#include <random>
#include <set>

#include "volume/chunk_intervals.h"
#include "volume_test_util.h"

using wardfs::volume::ChunkIntervals;

namespace {

bool model_covers(const std::set<std::uint64_t>& model, std::uint64_t end) {
  for (std::uint64_t i = 0; i < end; ++i) {
    if (model.count(i) == 0) return false;
  }
  return true;
}

}  // namespace

TEST_CASE("ChunkIntervals merges neighbours and trims exactly", "[holes]") {
  ChunkIntervals set;
  REQUIRE(set.covers_prefix(0));
  REQUIRE_FALSE(set.covers_prefix(1));
  set.insert(2, 4);
  set.insert(6, 7);
  REQUIRE(set.interval_count() == 2);
  set.insert(4, 6);  // touches both: one run [2, 7)
  REQUIRE(set.interval_count() == 1);
  REQUIRE_FALSE(set.covers_prefix(7));
  set.insert(0, 2);  // re-keys the run to start at 0
  REQUIRE(set.interval_count() == 1);
  REQUIRE(set.covers_prefix(7));
  REQUIRE_FALSE(set.covers_prefix(8));
  set.trim(5);
  REQUIRE(set.covers_prefix(5));
  REQUIRE_FALSE(set.covers_prefix(6));
  set.insert(9, 9);  // empty: nothing
  REQUIRE(set.interval_count() == 1);
  set.trim(0);
  REQUIRE(set.empty());
}

TEST_CASE("ChunkIntervals erase splits, cuts and drops runs", "[holes]") {
  ChunkIntervals set;
  set.insert(0, 10);
  set.erase(3, 5);  // splits: [0, 3) [5, 10)
  REQUIRE(set.interval_count() == 2);
  REQUIRE(set.contains(2));
  REQUIRE_FALSE(set.contains(3));
  REQUIRE_FALSE(set.contains(4));
  REQUIRE(set.contains(5));
  REQUIRE(set.covers_prefix(3));
  REQUIRE_FALSE(set.covers_prefix(4));
  set.erase(0, 1);  // cuts the front of the first run
  REQUIRE_FALSE(set.contains(0));
  REQUIRE(set.contains(1));
  set.erase(2, 7);  // cuts the end of one run and the front of the next
  REQUIRE(set.interval_count() == 2);
  REQUIRE(set.contains(1));
  REQUIRE_FALSE(set.contains(2));
  REQUIRE(set.contains(7));
  set.erase(0, 100);
  REQUIRE(set.empty());
  set.erase(5, 5);  // empty: nothing
  REQUIRE(set.empty());
}

TEST_CASE("ChunkIntervals matches a set model under random operations", "[holes]") {
  std::mt19937_64 rng(0xC4A7);
  for (int round = 0; round < 50; ++round) {
    ChunkIntervals set;
    std::set<std::uint64_t> model;
    for (int op = 0; op < 400; ++op) {
      const std::uint64_t a = rng() % 200;
      const std::uint64_t len = rng() % 4 == 0 ? rng() % 40 : rng() % 3;
      const auto kind = rng() % 10;
      if (kind < 2) {
        set.erase(a, a + len);
        for (std::uint64_t i = a; i < a + len; ++i) model.erase(i);
      } else if (kind == 2) {
        set.trim(a);
        model.erase(model.lower_bound(a), model.end());
      } else {
        set.insert(a, a + len);
        for (std::uint64_t i = a; i < a + len; ++i) model.insert(i);
      }
      const std::uint64_t probe = rng() % 240;
      CAPTURE(round, op, a, len, probe);
      REQUIRE(set.covers_prefix(probe) == model_covers(model, probe));
      REQUIRE(set.contains(probe) == (model.count(probe) == 1));
      // Runs are disjoint and never adjacent: at most one per gap in the model, plus one.
      std::size_t runs = 0;
      std::uint64_t prev = UINT64_MAX - 1;
      for (const auto i : model) {
        runs += i != prev + 1;
        prev = i;
      }
      REQUIRE(set.interval_count() == runs);
    }
  }
}
