#include "volume/chunk_intervals.h"

#include <algorithm>
#include <iterator>

namespace wardfs::volume {

void ChunkIntervals::insert(std::uint64_t first, std::uint64_t end) {
  if (first >= end) return;
  // The first run that could touch [first, end): the one starting at or before `first`,
  // if it reaches it, else the next one.
  auto it = runs_.upper_bound(first);
  if (it != runs_.begin()) {
    auto prev = std::prev(it);
    if (prev->second >= first) it = prev;
  }
  if (it == runs_.end() || it->first > end) {
    runs_.emplace_hint(it, first, end);
    return;
  }
  // Grow the first touching run over [first, end) and swallow the runs it now reaches.
  auto& run_end = it->second;
  std::uint64_t new_end = std::max(run_end, end);
  auto next = std::next(it);
  while (next != runs_.end() && next->first <= new_end) {
    new_end = std::max(new_end, next->second);
    next = runs_.erase(next);
  }
  run_end = new_end;
  if (first < it->first) {
    // A map key cannot change in place; re-key the node rather than reallocating it.
    auto node = runs_.extract(it);
    node.key() = first;
    runs_.insert(std::move(node));
  }
}

void ChunkIntervals::erase(std::uint64_t first, std::uint64_t end) {
  if (first >= end) return;
  auto it = runs_.upper_bound(first);
  if (it != runs_.begin()) {
    // The run starting at or before `first` may reach into [first, end), even past it.
    auto prev = std::prev(it);
    const std::uint64_t prev_end = prev->second;
    if (prev_end > first) {
      if (prev_end > end) runs_.emplace_hint(it, end, prev_end);
      if (prev->first == first) {
        runs_.erase(prev);
      } else {
        prev->second = first;
      }
      if (prev_end >= end) return;
    }
  }
  // Runs starting inside [first, end): gone, or cut to start at `end`.
  while (it != runs_.end() && it->first < end) {
    if (it->second > end) {
      auto node = runs_.extract(it);
      node.key() = end;
      runs_.insert(std::move(node));
      return;
    }
    it = runs_.erase(it);
  }
}

void ChunkIntervals::trim(std::uint64_t end) {
  auto it = runs_.lower_bound(end);
  runs_.erase(it, runs_.end());
  if (!runs_.empty()) {
    auto& last = *std::prev(runs_.end());
    last.second = std::min(last.second, end);
  }
}

bool ChunkIntervals::contains(std::uint64_t index) const {
  auto it = runs_.upper_bound(index);
  return it != runs_.begin() && std::prev(it)->second > index;
}

bool ChunkIntervals::covers_prefix(std::uint64_t end) const {
  if (end == 0) return true;
  return !runs_.empty() && runs_.begin()->first == 0 && runs_.begin()->second >= end;
}

}  // namespace wardfs::volume
