// SharedFileGate: the threads of one daemon share one OFD lock on a backing file without
// dropping each other's, and other descriptions (other mounts) see it held exactly while
// any of them is inside.
#include <fcntl.h>

#include "volume/shared_gate.h"
#include "volume_test_util.h"

using namespace wardfs;
using namespace wardfs::vtest;

namespace {

// What another mount asking for `type` on its own description would meet.
short conflicting_lock(int other_fd, short type) {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  REQUIRE(::fcntl(other_fd, F_OFD_GETLK, &fl) == 0);
  return fl.l_type;
}

}  // namespace

TEST_CASE("a daemon's readers keep the lock until the last one leaves", "[shared_gate]") {
  TempDir tmp;
  const auto path = tmp.path() / "f";
  UniqueFd mine(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  UniqueFd other(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  REQUIRE(mine);
  REQUIRE(other);
  volume::SharedFileGate gate;
  volume::SharedFileGate::Pass first, second;
  REQUIRE(gate.enter(mine.get(), false, first) == 0);
  REQUIRE(gate.enter(mine.get(), false, second) == 0);
  CHECK(conflicting_lock(other.get(), F_WRLCK) == F_RDLCK);
  CHECK(conflicting_lock(other.get(), F_RDLCK) == F_UNLCK);  // readers of other mounts may join
  first.release();
  CHECK(conflicting_lock(other.get(), F_WRLCK) == F_RDLCK);  // the second reader still reads
  second.release();
  CHECK(conflicting_lock(other.get(), F_WRLCK) == F_UNLCK);
}

TEST_CASE("a writer holds the file alone, from a read-only first description too",
          "[shared_gate]") {
  TempDir tmp;
  const auto path = tmp.path() / "f";
  UniqueFd writable(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  UniqueFd read_only(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  UniqueFd other(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  volume::SharedFileGate gate;
  {
    volume::SharedFileGate::Pass reader;
    REQUIRE(gate.enter(read_only.get(), false, reader) == 0);
  }
  // The handle that first came may close meanwhile: the gate keeps its own descriptor.
  read_only.reset();
  volume::SharedFileGate::Pass writer;
  REQUIRE(gate.enter(writable.get(), true, writer) == 0);
  CHECK(conflicting_lock(other.get(), F_RDLCK) == F_WRLCK);
  writer.release();
  CHECK(conflicting_lock(other.get(), F_RDLCK) == F_UNLCK);
}
