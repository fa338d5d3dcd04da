#include "fuse/inode_table.h"

#include <algorithm>

namespace wardfs::fuse {

Inode& InodeTable::acquire(UniqueFd fd, const struct stat& st, const std::string& display_path,
                           const Inode* parent, std::string_view name) {
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
  if (parent != nullptr) touch(*slot, parent, name);
  return *slot;
}

void InodeTable::touch(Inode& inode, const Inode* parent, std::string_view name) {
  inode.parent = parent;
  inode.name.assign(name);
  if (inode.in_lru) {
    lru_.splice(lru_.end(), lru_, inode.lru_pos);
  } else {
    inode.lru_pos = lru_.insert(lru_.end(), &inode);
    inode.in_lru = true;
  }
}

void InodeTable::relocate(Inode& inode, const Inode* parent, std::string_view name) {
  std::lock_guard lock(mutex_);
  if (inode.in_lru) touch(inode, parent, name);
}

std::size_t InodeTable::size() {
  std::lock_guard lock(mutex_);
  return inodes_.size();
}

std::vector<std::pair<const Inode*, std::string>> InodeTable::coldest(std::size_t n) {
  std::lock_guard lock(mutex_);
  std::vector<std::pair<const Inode*, std::string>> out;
  out.reserve(std::min(n, lru_.size()));
  while (out.size() < n && out.size() < lru_.size()) {
    Inode* inode = lru_.front();
    out.emplace_back(inode->parent, inode->name);
    lru_.splice(lru_.end(), lru_, inode->lru_pos);
  }
  return out;
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
  if (before <= n) {
    if (inode.in_lru) lru_.erase(inode.lru_pos);
    inodes_.erase({inode.dev, inode.ino});
  }
}

}  // namespace wardfs::fuse
