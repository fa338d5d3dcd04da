// RENAME_NOREPLACE where the backing file system has none (GlusterFS, NFS): a
// non-directory is moved by link() + unlink() of the old name, and link() refuses an
// existing name atomically, even one another client created a moment before. A crash
// between the two leaves the entry under both names; the intent written first tells
// fsck --repair which name is the old one (docs/FORMAT.md §10).
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

namespace wardfs::volume {

// Written into the source directory before the link, removed after the unlink. Starts
// with the temp prefix, so readers skip it and an older fsck removes it as a leftover.
inline constexpr std::string_view kRenameIntentPrefix = "wardfs.tmp.mv.";

struct RenameIntent {
  std::string from;       // backing name in the directory holding the intent
  std::string to_dir_id;  // hex id of the target directory; "." for the same directory
  std::string to;         // backing name in the target directory
  ino_t ino = 0;          // the entry being moved
};

bool is_rename_intent_name(std::string_view name);

// Reads and parses intent `name` of `dir_fd`. 0, -EINVAL if it is not one, or -errno.
int read_rename_intent(int dir_fd, const std::string& name, RenameIntent& out);

// Moves non-directory `from` of `from_dir` to `to` in `to_dir` by link + unlink, with an
// intent around it. -EEXIST if `to` exists, -EISDIR for a directory (the caller renames
// those), -EPERM or -EOPNOTSUPP where the file system has no hard links.
int link_then_unlink(int from_dir, const std::string& from, int to_dir, const std::string& to);

// Where a crash left a move: `to_dir` is the target directory's fd, or -1 where fsck
// found no directory with the intent's id.
enum class IntentState {
  not_linked,  // the old name only (or neither): nothing to undo, the intent goes
  both_names,  // link done, unlink not: the entry is under both names
  finished,    // the new name only: the intent goes
};
IntentState intent_state(int from_dir, int to_dir, const RenameIntent& intent);

// Finishes a move left in both_names: removes the old name (and its long-name sidecar,
// whose entry is then gone), then intent `name`. 0 or -errno.
int finish_rename(int from_dir, const std::string& name, const RenameIntent& intent);

}  // namespace wardfs::volume
