// The writeback reserve file (volume/space_reserve.h): it holds the space asked, gives it
// back in pieces and takes it again, and treats whatever it finds under its name in the
// untrusted backing root as something to remove, never to open or write through.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "volume/space_reserve.h"
#include "volume_test_util.h"

namespace wardfs::vtest {
namespace {

constexpr std::uint64_t kMiB = 1U << 20;

struct Root {
  TempDir tmp;
  std::filesystem::path reserve = tmp.path() / std::string(volume::kReserveFileName);
  UniqueFd fd{::open(tmp.path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC)};
  std::uint64_t allocated() const {
    struct stat st {};
    REQUIRE(::lstat(reserve.c_str(), &st) == 0);
    return static_cast<std::uint64_t>(st.st_blocks) * 512;
  }
};

}  // namespace

TEST_CASE("the reserve holds, gives back and takes back its space", "[reserve]") {
  Root root;
  volume::SpaceReserve reserve;
  REQUIRE(reserve.create(root.fd.get(), 8 * kMiB) == 0);
  CHECK(reserve.active());
  CHECK(reserve.held() == 8 * kMiB);
  CHECK(root.allocated() >= 8 * kMiB);  // allocated, not a sparse size

  CHECK(reserve.release(3 * kMiB) == 3 * kMiB);
  CHECK(reserve.held() == 5 * kMiB);
  CHECK(root.allocated() < 6 * kMiB);
  CHECK(reserve.release(100 * kMiB) == 5 * kMiB);  // never more than is held
  CHECK(reserve.release(kMiB) == 0);               // spent
  CHECK(reserve.held() == 0);

  CHECK(reserve.refill());
  CHECK(reserve.held() == 8 * kMiB);
  CHECK(root.allocated() >= 8 * kMiB);

  reserve.remove();
  CHECK_FALSE(reserve.active());
  CHECK_FALSE(std::filesystem::exists(root.reserve));
}

TEST_CASE("the reserve replaces a leftover and never writes through a planted link", "[reserve]") {
  Root root;
  const auto victim = root.tmp.path() / "victim";
  { std::ofstream(victim) << "precious"; }
  SECTION("a symlink under the name is removed, its target untouched") {
    REQUIRE(::symlink(victim.c_str(), root.reserve.c_str()) == 0);
  }
  SECTION("a hard link under the name is removed, the other name untouched") {
    REQUIRE(::link(victim.c_str(), root.reserve.c_str()) == 0);
  }
  volume::SpaceReserve reserve;
  REQUIRE(reserve.create(root.fd.get(), kMiB) == 0);
  CHECK(std::filesystem::file_size(victim) == 8);
  struct stat st {};
  REQUIRE(::lstat(root.reserve.c_str(), &st) == 0);
  CHECK(S_ISREG(st.st_mode));
  CHECK(st.st_nlink == 1);
  CHECK((st.st_mode & 0777) == 0600);
}

TEST_CASE("a directory under the reserve's name is refused and kept", "[reserve]") {
  Root root;
  std::filesystem::create_directory(root.reserve);
  volume::SpaceReserve reserve;
  CHECK(reserve.create(root.fd.get(), kMiB) != 0);
  CHECK_FALSE(reserve.active());
  CHECK(std::filesystem::is_directory(root.reserve));
}

TEST_CASE("the reserve leaves alone a name someone else put there since", "[reserve]") {
  Root root;
  {
    volume::SpaceReserve reserve;
    REQUIRE(reserve.create(root.fd.get(), kMiB) == 0);
    REQUIRE(::rename(root.reserve.c_str(), (root.tmp.path() / "moved").c_str()) == 0);
    { std::ofstream(root.reserve) << "theirs"; }
  }  // the destructor removes only its own file
  CHECK(std::filesystem::file_size(root.reserve) == 6);
}

TEST_CASE("a reserve larger than the file system is refused with nothing left behind",
          "[reserve]") {
  Root root;
  volume::SpaceReserve reserve;
  const int rc = reserve.create(root.fd.get(), std::uint64_t{1} << 60);  // an exabyte
  CHECK((rc == -ENOSPC || rc == -EFBIG || rc == -EOPNOTSUPP));
  CHECK_FALSE(reserve.active());
  CHECK_FALSE(std::filesystem::exists(root.reserve));
}

}  // namespace wardfs::vtest
