// A set of chunk indices kept as disjoint, non-adjacent intervals: which chunk slots of a
// has-holes file are known to hold sealed chunks (docs/FORMAT.md §4.6). Sequential and
// mmap-style fills stay a handful of intervals; every operation is O(log n) in the number
// of intervals, and an insert that extends or fills between neighbours allocates nothing.
#pragma once

#include <cstdint>
#include <map>

namespace wardfs::volume {

class ChunkIntervals {
 public:
  // Adds chunks [first, end).
  void insert(std::uint64_t first, std::uint64_t end);
  // Drops chunks [first, end) (punched: they are holes again).
  void erase(std::uint64_t first, std::uint64_t end);
  // Drops every chunk at or after `end`.
  void trim(std::uint64_t end);
  bool contains(std::uint64_t index) const;
  // True when chunks [0, end) are all in the set.
  bool covers_prefix(std::uint64_t end) const;
  void clear() { runs_.clear(); }
  bool empty() const { return runs_.empty(); }
  std::size_t interval_count() const { return runs_.size(); }

 private:
  std::map<std::uint64_t, std::uint64_t> runs_;  // first -> end (exclusive)
};

}  // namespace wardfs::volume
