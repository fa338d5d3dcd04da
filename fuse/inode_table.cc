#include "fuse/inode_table.h"

namespace wardfs::fs {

Inode& InodeTable::acquire(volume::UniqueFd fd, const struct stat& st, const std::string& display_path) {
  std::lock_guard lock(mutex_);
  if (root_ && root_->dev == st.st_dev && root_->ino == st.st_ino) {
    root_->nlookup++;
    return *root_;
  }
  auto& slot = inodes_[{st.st_dev, st.st_ino}];
  if (!slot) {
    slot = std::make_unique<Inode>();
    slot->fd = std::move(fd);
    slot->dev = st.st_dev;
    slot->ino = st.st_ino;
    slot->type = st.st_mode & S_IFMT;
    slot->display_path = display_path;
  } else {
    slot->set_path(display_path);
  }
  slot->nlookup++;
  return *slot;
}

Inode* InodeTable::find(dev_t dev, ino_t ino) {
  std::lock_guard lock(mutex_);
  if (root_ && root_->dev == dev && root_->ino == ino) return root_.get();
  const auto it = inodes_.find({dev, ino});
  return it == inodes_.end() ? nullptr : it->second.get();
}

void InodeTable::forget(Inode& inode, std::uint64_t n) {
  if (&inode == root_.get()) return;
  std::lock_guard lock(mutex_);
  const std::uint64_t before = inode.nlookup.fetch_sub(n);
  if (before <= n) inodes_.erase({inode.dev, inode.ino});
}

}  // namespace wardfs::fs
