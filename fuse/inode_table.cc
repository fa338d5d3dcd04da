#include "fuse/inode_table.h"

#include <fcntl.h>

#include <algorithm>
#include <cerrno>

namespace wardfs::fuse {

Inode& InodeTable::acquire(UniqueFd fd, const struct stat& st, const std::string& display_path,
                           const Inode* parent, std::string_view name, BackingPlace place) {
  std::lock_guard lock(mutex_);
  if (root_ && root_->dev == st.st_dev && root_->ino == st.st_ino) {
    root_->nlookup++;
    return *root_;
  }
  auto& slot = inodes_[{st.st_dev, st.st_ino}];
  if (!slot) {
    slot = std::make_unique<Inode>();
    slot->dev = st.st_dev;
    slot->ino = st.st_ino;
    slot->type = st.st_mode & S_IFMT;
    slot->display_path = display_path;
    if (fd) {
      give_fd(*slot, std::move(fd));
    } else {
      slot->place = std::move(place);
    }
  } else {
    std::lock_guard state(slot->state_mutex);
    slot->display_path = display_path;
    if (slot->fd() < 0 && fd) {
      give_fd(*slot, std::move(fd));
    } else if (slot->fd() < 0 && place.dir) {
      slot->place = std::move(place);  // the name it was found under last
    }
  }
  slot->nlookup++;
  if (parent != nullptr) touch(*slot, parent, name);
  return *slot;
}

int InodeTable::fd_of(Inode& inode) {
  if (const int fd = inode.fd(); fd >= 0) return fd;
  std::lock_guard state(inode.state_mutex);
  if (const int fd = inode.fd(); fd >= 0) return fd;
  if (!inode.place.dir) return -ESTALE;
  UniqueFd fd(
      ::openat(inode.place.dir->get(), inode.place.name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return errno == ENOENT ? -ESTALE : -errno;
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return -errno;
  // Another file under the name (a rename or replacement by another mount, or something
  // planted in the backing directory) is not this inode: the kernel looks again.
  if (st.st_dev != inode.dev || st.st_ino != inode.ino) return -ESTALE;
  give_fd(inode, std::move(fd));
  return inode.fd();
}

void InodeTable::adopt_fd(Inode& inode, UniqueFd fd) {
  std::lock_guard state(inode.state_mutex);
  if (inode.fd() < 0) give_fd(inode, std::move(fd));
}

void InodeTable::give_fd(Inode& inode, UniqueFd fd) {
  inode.set_fd(std::move(fd));
  inode.place = {};
  fds_held_++;
}

void InodeTable::move_place(Inode& inode, const SharedFd& dir, std::string_view backing) {
  std::lock_guard state(inode.state_mutex);
  if (inode.fd() >= 0) return;
  inode.place.dir = dir;
  inode.place.name.assign(backing);
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
  // Inodes without an fd cost none: asking the kernel to forget them frees nothing.
  for (std::size_t seen = 0, total = lru_.size(); seen < total && out.size() < n; ++seen) {
    Inode* inode = lru_.front();
    if (inode->fd() >= 0) out.emplace_back(inode->parent, inode->name);
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
  std::unique_ptr<Inode> gone;
  {
    std::lock_guard lock(mutex_);
    const std::uint64_t before = inode.nlookup.fetch_sub(n);
    if (before > n) return;
    const auto it = inodes_.find({inode.dev, inode.ino});
    if (it == inodes_.end()) return;
    if (inode.in_lru) lru_.erase(inode.lru_pos);
    if (inode.fd() >= 0) fds_held_--;
    gone = std::move(it->second);
    inodes_.erase(it);
  }
  // Freed outside the lock: closing the last fd of an unlinked file is where the backing
  // filesystem frees it (ext4: ~100 us), and lookups and unlinks wait for this mutex.
}

}  // namespace wardfs::fuse
