// The backing-tree rules (volume/backing_tree.h) against entries swapped under them, as a
// user who owns a backing directory could: no rule may follow a planted symlink or hand
// over an entry it did not make.
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <string>
#include <thread>

#include "volume/backing_tree.h"
#include "volume/volume.h"
#include "volume_test_util.h"

namespace wardfs::vtest {
namespace {

struct Tree {
  TempDir tmp;
  std::filesystem::path backing = tmp.path() / "backing";
  std::filesystem::path outside = tmp.path() / "outside";
  UniqueFd dir;
  Tree() {
    std::filesystem::create_directory(backing);
    std::filesystem::create_directory(outside);
    dir.reset(::open(backing.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    REQUIRE(dir);
  }
  struct stat lstat_of(const std::filesystem::path& p) const {
    struct stat st {};
    REQUIRE(::lstat(p.c_str(), &st) == 0);
    return st;
  }
};

}  // namespace

std::size_t entry_count(const std::filesystem::path& dir) {
  std::size_t n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    (void)e;
    ++n;
  }
  return n;
}

TEST_CASE("make_directory builds the directory with its id, mode and no temp left", "[backing]") {
  Tree t;
  volume::BackingFeatures features;
  // As on a GlusterFS or NFS client, which reject RENAME_NOREPLACE.
  const bool fallback = GENERATE(false, true);
  if (fallback) features.lacks_rename_noreplace();
  UniqueFd made;
  REQUIRE(volume::make_directory(features, t.dir.get(), "d", 0751, {}, made) == 0);
  const auto st = t.lstat_of(t.backing / "d");
  CHECK(S_ISDIR(st.st_mode));
  CHECK((st.st_mode & 07777) == 0751);
  crypto::DirId id{};
  UniqueFd d(::open((t.backing / "d").c_str(), O_RDONLY | O_DIRECTORY));
  CHECK(volume::read_dir_id(d.get(), id) == 0);
  struct stat via_fd {};
  REQUIRE(::fstat(made.get(), &via_fd) == 0);
  CHECK(via_fd.st_ino == st.st_ino);
  for (const auto& e : std::filesystem::directory_iterator(t.backing))
    CHECK(e.path().filename() == "d");

  SECTION("an existing name is not replaced") {
    CHECK(volume::make_directory(features, t.dir.get(), "d", 0755, {}, made) == -EEXIST);
    CHECK(entry_count(t.backing) == 1);
  }
  SECTION("nor is a file or a symlink of that name") {
    { UniqueFd f(::openat(t.dir.get(), "f", O_WRONLY | O_CREAT, 0600)); }
    REQUIRE(::symlinkat("d", t.dir.get(), "l") == 0);
    CHECK(volume::make_directory(features, t.dir.get(), "f", 0755, {}, made) == -EEXIST);
    CHECK(volume::make_directory(features, t.dir.get(), "l", 0755, {}, made) == -EEXIST);
    CHECK(S_ISREG(t.lstat_of(t.backing / "f").st_mode));
    CHECK(S_ISLNK(t.lstat_of(t.backing / "l").st_mode));
    CHECK(entry_count(t.backing) == 3);
  }
}

TEST_CASE("rename_no_replace without RENAME_NOREPLACE moves only onto an absent name",
          "[backing]") {
  Tree t;
  volume::BackingFeatures features;
  features.lacks_rename_noreplace();
  { UniqueFd f(::openat(t.dir.get(), "a", O_WRONLY | O_CREAT, 0600)); }
  { UniqueFd f(::openat(t.dir.get(), "b", O_WRONLY | O_CREAT, 0600)); }
  REQUIRE(::mkdirat(t.dir.get(), "d", 0700) == 0);
  const auto a_ino = t.lstat_of(t.backing / "a").st_ino;
  const auto b_ino = t.lstat_of(t.backing / "b").st_ino;

  CHECK(volume::rename_no_replace(features, t.dir.get(), "a", t.dir.get(), "b") == -EEXIST);
  CHECK(volume::rename_no_replace(features, t.dir.get(), "a", t.dir.get(), "d") == -EEXIST);
  CHECK(volume::rename_no_replace(features, t.dir.get(), "d", t.dir.get(), "b") == -EEXIST);
  CHECK(t.lstat_of(t.backing / "a").st_ino == a_ino);
  CHECK(t.lstat_of(t.backing / "b").st_ino == b_ino);
  CHECK(volume::rename_no_replace(features, t.dir.get(), "a", t.dir.get(), "c") == 0);
  CHECK(t.lstat_of(t.backing / "c").st_ino == a_ino);
  CHECK(!std::filesystem::exists(t.backing / "a"));
  CHECK(volume::rename_no_replace(features, t.dir.get(), "gone", t.dir.get(), "e") == -ENOENT);
}

TEST_CASE("rename_no_replace without RENAME_NOREPLACE: of two files raced onto one name, one wins",
          "[backing]") {
  // Two writers (two shared mounts) each moving its own file onto the same new name at
  // once. A check-then-rename lets both "win", the second replacing the first's file.
  Tree t;
  volume::BackingFeatures features;
  features.lacks_rename_noreplace();
  int both_won = 0;
  for (int round = 0; round < 400; ++round) {
    const std::string a = "a" + std::to_string(round);
    const std::string b = "b" + std::to_string(round);
    const std::string to = "t" + std::to_string(round);
    { UniqueFd f(::openat(t.dir.get(), a.c_str(), O_WRONLY | O_CREAT, 0600)); }
    { UniqueFd f(::openat(t.dir.get(), b.c_str(), O_WRONLY | O_CREAT, 0600)); }
    std::atomic<int> ready{0};
    int rc_a = 1;
    int rc_b = 1;
    auto mover = [&](const std::string& from, int& rc) {
      ready.fetch_add(1);
      while (ready.load() < 2) {
      }
      rc = volume::rename_no_replace(features, t.dir.get(), from, t.dir.get(), to);
    };
    std::thread ta(mover, std::cref(a), std::ref(rc_a));
    std::thread tb(mover, std::cref(b), std::ref(rc_b));
    ta.join();
    tb.join();
    if (rc_a == 0 && rc_b == 0) ++both_won;
    CHECK(((rc_a == 0 && rc_b == -EEXIST) || (rc_b == 0 && rc_a == -EEXIST) ||
           (rc_a == 0 && rc_b == 0)));
    // Every file keeps a name: the loser's under its old one.
    CHECK(std::filesystem::exists(t.backing / to));
    CHECK(std::filesystem::exists(t.backing / a) == (rc_a != 0));
    CHECK(std::filesystem::exists(t.backing / b) == (rc_b != 0));
  }
  CHECK(both_won == 0);
  // No rename intent left behind.
  CHECK(entry_count(t.backing) == 400 * 2);
}

TEST_CASE("rename_no_replace without RENAME_NOREPLACE moves symlinks and keeps hard links",
          "[backing]") {
  Tree t;
  volume::BackingFeatures features;
  features.lacks_rename_noreplace();
  REQUIRE(::symlinkat("target", t.dir.get(), "l") == 0);
  { UniqueFd f(::openat(t.dir.get(), "f", O_WRONLY | O_CREAT, 0600)); }
  REQUIRE(::linkat(t.dir.get(), "f", t.dir.get(), "g", 0) == 0);
  const auto f_ino = t.lstat_of(t.backing / "f").st_ino;
  REQUIRE(::mkdirat(t.dir.get(), "sub", 0700) == 0);
  UniqueFd sub(::openat(t.dir.get(), "sub", O_RDONLY | O_DIRECTORY));
  CHECK(volume::rename_no_replace(features, t.dir.get(), "l", sub.get(), "l2") == 0);
  CHECK(S_ISLNK(t.lstat_of(t.backing / "sub" / "l2").st_mode));
  CHECK(std::filesystem::read_symlink(t.backing / "sub" / "l2") == "target");
  CHECK(volume::rename_no_replace(features, t.dir.get(), "f", t.dir.get(), "g") == -EEXIST);
  CHECK(volume::rename_no_replace(features, t.dir.get(), "f", sub.get(), "f2") == 0);
  const auto moved = t.lstat_of(t.backing / "sub" / "f2");
  CHECK(moved.st_ino == f_ino);
  CHECK(moved.st_nlink == 2);  // with g
  CHECK(!std::filesystem::exists(t.backing / "f"));
  CHECK(entry_count(t.backing) == 2);  // g and sub: no intent left
  CHECK(entry_count(t.backing / "sub") == 2);
}

TEST_CASE("rename_entry refuses an exchange the backing file system lacks, changing nothing",
          "[backing]") {
  Tree t;
  volume::BackingFeatures features;
  { UniqueFd f(::openat(t.dir.get(), "a", O_WRONLY | O_CREAT, 0600)); }
  { UniqueFd f(::openat(t.dir.get(), "b", O_WRONLY | O_CREAT, 0600)); }
  const auto a_ino = t.lstat_of(t.backing / "a").st_ino;
  features.lacks_rename_exchange();
  CHECK(volume::rename_entry(features, t.dir.get(), "a", t.dir.get(), "b", RENAME_EXCHANGE) ==
        -EINVAL);
  CHECK(t.lstat_of(t.backing / "a").st_ino == a_ino);
  CHECK(features.fallbacks().size() == 1);
}

TEST_CASE("probe finds both rename flags on a local file system and leaves nothing behind",
          "[backing]") {
  Tree t;
  volume::BackingFeatures features;
  features.probe(t.dir.get());
  CHECK(features.rename_noreplace());
  CHECK(features.rename_exchange());
  CHECK(features.fallbacks().empty());
  CHECK(entry_count(t.backing) == 0);
}

TEST_CASE("open_fresh_entry refuses an entry swapped for a symlink or a hard link", "[backing]") {
  Tree t;
  const auto victim = t.outside / "victim";
  { UniqueFd f(::open(victim.c_str(), O_WRONLY | O_CREAT, 0600)); }
  UniqueFd fd;

  SECTION("the symlink just made is accepted") {
    REQUIRE(::symlinkat("x", t.dir.get(), "link") == 0);
    CHECK(volume::open_fresh_entry(t.dir.get(), "link", S_IFLNK, fd) == 0);
    CHECK(fd);
  }
  SECTION("a symlink in place of a FIFO") {
    REQUIRE(::symlinkat(victim.c_str(), t.dir.get(), "fifo") == 0);
    CHECK(volume::open_fresh_entry(t.dir.get(), "fifo", S_IFIFO, fd) == -EIO);
    CHECK(!fd);
  }
  SECTION("a hard link to a file elsewhere in place of a FIFO") {
    const auto fifo = t.outside / "fifo";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    REQUIRE(::linkat(AT_FDCWD, fifo.c_str(), t.dir.get(), "fifo", 0) == 0);
    CHECK(volume::open_fresh_entry(t.dir.get(), "fifo", S_IFIFO, fd) == -EIO);
  }
  SECTION("a directory not in the private build mode") {
    REQUIRE(::mkdirat(t.dir.get(), "d", 0755) == 0);
    CHECK(volume::open_fresh_entry(t.dir.get(), "d", S_IFDIR, fd) == -EIO);
  }
  SECTION("nothing there any more") {
    CHECK(volume::open_fresh_entry(t.dir.get(), "gone", S_IFLNK, fd) == -EIO);
  }
}

TEST_CASE("hand_over changes only entries this process owns", "[backing]") {
  Tree t;
  const auto file = t.backing / "f";
  UniqueFd f(::open(file.c_str(), O_WRONLY | O_CREAT, 0600));
  struct stat st = t.lstat_of(file);
  // Nothing to change: no call at all.
  CHECK(volume::hand_over(f.get(), {st.st_uid, st.st_gid}, st) == 0);
  // An entry that is not ours (as if swapped in) is left alone.
  struct stat foreign = st;
  foreign.st_uid = ::geteuid() + 1;
  CHECK(volume::hand_over(f.get(), {::geteuid() + 2, st.st_gid}, foreign) == 0);
  CHECK(t.lstat_of(file).st_uid == st.st_uid);
  if (::geteuid() == 0) {
    CHECK(volume::hand_over(f.get(), {4242, 4343}, st) == 0);
    CHECK(st.st_uid == 4242);
    CHECK(t.lstat_of(file).st_gid == 4343);
  }
}

TEST_CASE("remove_dir_metadata never follows a planted symlink", "[backing]") {
  Tree t;
  // A directory id outside the tree, reachable through a symlink named like a leftover
  // temp directory: the old code unlinked "<temp>/wardfs.dirid" through it.
  const auto outside_id = t.outside / std::string(volume::kDirIdFileName);
  { UniqueFd f(::open(outside_id.c_str(), O_WRONLY | O_CREAT, 0400)); }
  const std::string temp = volume::temp_entry_name();
  REQUIRE(::symlinkat(t.outside.c_str(), t.dir.get(), temp.c_str()) == 0);
  // A real leftover temp directory holding its id, and a long-name sidecar.
  const std::string leftover = volume::temp_entry_name();
  REQUIRE(::mkdirat(t.dir.get(), leftover.c_str(), 0700) == 0);
  UniqueFd lf(::openat(t.dir.get(), leftover.c_str(), O_RDONLY | O_DIRECTORY));
  REQUIRE(volume::write_new_dir_id(lf.get()) == 0);
  REQUIRE(volume::write_new_dir_id(t.dir.get()) == 0);

  CHECK(volume::remove_dir_metadata(t.dir.get()) == 0);
  CHECK(std::filesystem::exists(outside_id));
  CHECK(!std::filesystem::exists(std::filesystem::symlink_status(t.backing / temp)));
  CHECK(!std::filesystem::exists(t.backing / leftover));
  CHECK(std::filesystem::exists(t.backing / std::string(volume::kDirIdFileName)));
}

TEST_CASE("remove_dir_metadata leaves a directory with real entries untouched", "[backing]") {
  Tree t;
  const std::string temp = volume::temp_entry_name();
  REQUIRE(::mkdirat(t.dir.get(), temp.c_str(), 0700) == 0);
  { UniqueFd f(::openat(t.dir.get(), "AAAAAAAAAAAAAAAAAAAAAAAA", O_WRONLY | O_CREAT, 0600)); }
  CHECK(volume::remove_dir_metadata(t.dir.get()) == -ENOTEMPTY);
  CHECK(std::filesystem::exists(t.backing / temp));
}

}  // namespace wardfs::vtest
