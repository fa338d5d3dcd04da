// fuse::InodeTable: a regular file known without an fd opens it from the name it was
// last found under, and only if that name still holds the same inode.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <memory>
#include <string>

#include "fuse/inode_table.h"
#include "tests/crypto/test_util.h"

using wardfs::UniqueFd;
using wardfs::fuse::BackingPlace;
using wardfs::fuse::Inode;
using wardfs::fuse::InodeTable;
using wardfs::fuse::SharedFd;

namespace {

// A fresh backing directory and its O_PATH fd, as a directory inode shares it.
struct TempDir {
  wardfs::test::TempDir tmp;
  SharedFd fd;
  TempDir()
      : fd(std::make_shared<const UniqueFd>(
            ::open(tmp.path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC))) {
    REQUIRE(*fd);
  }
  struct stat touch(const std::string& name) const {
    UniqueFd f(::openat(fd->get(), name.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
    REQUIRE(f);
    struct stat st {};
    REQUIRE(::fstat(f.get(), &st) == 0);
    return st;
  }
};

struct stat stat_of(int fd) {
  struct stat st {};
  REQUIRE(::fstat(fd, &st) == 0);
  return st;
}

}  // namespace

TEST_CASE("a file found by name holds no fd until it is used", "[inodes]") {
  TempDir dir;
  InodeTable table;
  const struct stat st = dir.touch("a");
  Inode& inode = table.acquire(UniqueFd(), st, "/a", nullptr, {}, BackingPlace{dir.fd, "a"});
  CHECK(inode.fd() < 0);
  CHECK(table.fds_held() == 0);
  const int fd = table.fd_of(inode);
  REQUIRE(fd >= 0);
  CHECK(stat_of(fd).st_ino == st.st_ino);
  CHECK(table.fd_of(inode) == fd);  // opened once
  CHECK(table.fds_held() == 1);
  table.forget(inode, 1);
  CHECK(table.fds_held() == 0);
  CHECK(table.size() == 0);
}

TEST_CASE("a name now holding another file or a symlink answers ESTALE", "[inodes]") {
  TempDir dir;
  InodeTable table;
  const struct stat st = dir.touch("a");
  dir.touch("b");
  Inode& inode = table.acquire(UniqueFd(), st, "/a", nullptr, {}, BackingPlace{dir.fd, "a"});

  SECTION("replaced by another file") {
    REQUIRE(::renameat(dir.fd->get(), "b", dir.fd->get(), "a") == 0);
    CHECK(table.fd_of(inode) == -ESTALE);
  }
  SECTION("replaced by a symlink to the file itself") {
    REQUIRE(::renameat(dir.fd->get(), "a", dir.fd->get(), "c") == 0);
    REQUIRE(::symlinkat("c", dir.fd->get(), "a") == 0);
    CHECK(table.fd_of(inode) == -ESTALE);
  }
  SECTION("gone") {
    REQUIRE(::unlinkat(dir.fd->get(), "a", 0) == 0);
    CHECK(table.fd_of(inode) == -ESTALE);
  }
  CHECK(inode.fd() < 0);
  CHECK(table.fds_held() == 0);
}

TEST_CASE("a file follows its renames and its latest lookup", "[inodes]") {
  TempDir dir;
  InodeTable table;
  const struct stat st = dir.touch("a");
  Inode& inode = table.acquire(UniqueFd(), st, "/a", nullptr, {}, BackingPlace{dir.fd, "a"});
  REQUIRE(::renameat(dir.fd->get(), "a", dir.fd->get(), "b") == 0);
  SECTION("renamed through the daemon") { table.move_place(inode, dir.fd, "b"); }
  SECTION("looked up again under the new name") {
    Inode& again = table.acquire(UniqueFd(), st, "/b", nullptr, {}, BackingPlace{dir.fd, "b"});
    CHECK(&again == &inode);
  }
  const int fd = table.fd_of(inode);
  REQUIRE(fd >= 0);
  CHECK(stat_of(fd).st_ino == st.st_ino);
}

TEST_CASE("the pruner is offered only inodes that hold an fd", "[inodes]") {
  TempDir dir;
  InodeTable table;
  Inode parent;
  for (int i = 0; i < 4; ++i) {
    const std::string name = std::string("f").append(std::to_string(i));
    const struct stat st = dir.touch(name);
    UniqueFd fd;
    if (i % 2 == 1) fd.reset(::openat(dir.fd->get(), name.c_str(), O_PATH | O_CLOEXEC));
    table.acquire(std::move(fd), st, name, &parent, name, BackingPlace{dir.fd, name});
  }
  CHECK(table.fds_held() == 2);
  const auto victims = table.coldest(10);
  REQUIRE(victims.size() == 2);
  CHECK(victims[0].second == "f1");
  CHECK(victims[1].second == "f3");
}
