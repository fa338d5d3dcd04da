// Who is at work on a volume, as the key commands of any mount or machine see it: the
// mounts' published generations (wardfs.mounts/) and the volume's one rekey
// (wardfs.rekey), alive by their lock or, for another host, by a fresh heartbeat.
#include <fcntl.h>
#include <unistd.h>

#include <fstream>

#include "base/errors.h"
#include "volume/mount_records.h"
#include "volume/presence.h"
#include "volume/rekey_lease.h"
#include "volume_test_util.h"

using namespace wardfs;
using namespace wardfs::vtest;

namespace {

void plant(const std::filesystem::path& path, const nlohmann::json& record) {
  std::ofstream(path) << record.dump();
}

nlohmann::json foreign(std::int64_t age_seconds) {
  return {{"host", "node-b.example"}, {"pid", 4242},
          {"mount_point", "/mnt/b"},  {"mount_id", "feedface"},
          {"active_generation", 1},   {"heartbeat", volume::unix_now() - age_seconds}};
}

}  // namespace

TEST_CASE("a mount's record is live while it exists and gone after", "[presence]") {
  TempDir tmp;
  {
    volume::PublishedMount mine(tmp.path(), "/mnt/a", 3);
    auto live = volume::live_mounts(tmp.path());
    REQUIRE(live.size() == 1);
    CHECK(live[0].mount_point == "/mnt/a");
    CHECK(live[0].active_generation == 3);
    mine.publish(4);
    live = volume::live_mounts(tmp.path());
    REQUIRE(live.size() == 1);
    CHECK(live[0].active_generation == 4);
    CHECK(live[0].owner().find("/mnt/a (pid ") == 0);
  }
  CHECK(volume::live_mounts(tmp.path()).empty());
}

TEST_CASE("records nobody holds are dead unless another host beats for them", "[presence]") {
  TempDir tmp;
  volume::PublishedMount mine(tmp.path(), "/mnt/a", 2);
  const auto dir = tmp.path() / volume::kMountRecordsDir;
  // A crashed mount of this host: its lock and its process are gone.
  auto local = foreign(0);
  local["pid"] = 2147483000L;  // above any pid_max: no such process
  local["host"] = volume::host_name();
  local["mount_id"] = "deadbeef";
  plant(dir / "deadbeef.json", local);
  // Another host's mount on a backend whose locks do not reach us: alive while it beats.
  plant(dir / "feedface.json", foreign(2));
  // Another host's mount that stopped beating (a crashed node).
  auto stale = foreign(volume::kHeartbeatTimeout.count() + 5);
  stale["mount_id"] = "0badc0de";
  plant(dir / "0badc0de.json", stale);
  // A mount of this host on a backend whose locks do not reach between its mounts (two
  // sshfs mounts): alive while its process runs and it beats.
  auto running_here = foreign(1);
  running_here["host"] = volume::host_name();
  running_here["pid"] = static_cast<long>(::getpid());
  running_here["mount_id"] = "5ca1ab1e";
  plant(dir / "5ca1ab1e.json", running_here);
  // Not a record at all.
  plant(dir / "junk.json", nlohmann::json::array());

  const auto live = volume::live_mounts(tmp.path());
  std::vector<std::string> ids;
  for (const auto& m : live) ids.push_back(m.mount_id);
  std::sort(ids.begin(), ids.end());
  REQUIRE(ids.size() == 3);
  CHECK(std::find(ids.begin(), ids.end(), "feedface") != ids.end());
  CHECK(std::find(ids.begin(), ids.end(), "5ca1ab1e") != ids.end());
  CHECK(!std::filesystem::exists(dir / "deadbeef.json"));  // cleaned up on the way
  CHECK(!std::filesystem::exists(dir / "0badc0de.json"));
  CHECK(!std::filesystem::exists(dir / "junk.json"));
  CHECK(std::filesystem::exists(dir / "feedface.json"));
}

TEST_CASE("one rekey at a time; an unfinished one is left for the next mount", "[presence]") {
  TempDir tmp;
  CHECK(!volume::read_rekey_record(tmp.path()));
  {
    volume::RekeyLease first(tmp.path(), "/mnt/a", 2);
    const auto r = volume::read_rekey_record(tmp.path());
    REQUIRE(r);
    CHECK(r->running);
    CHECK(r->alive);
    CHECK(r->target_generation == 2);
    try {
      volume::RekeyLease second(tmp.path(), "/mnt/b", 2);
      FAIL("a second rekey was allowed beside a running one");
    } catch (const WardError& e) {
      CHECK(std::string(e.what()).find("already running: `wardfs rekey` at /mnt/a") !=
            std::string::npos);
    }
  }
  // Its lock is gone, but its process still runs and beats (as on a backend whose locks do
  // not reach between mounts): still alive.
  auto left = volume::read_rekey_record(tmp.path());
  REQUIRE(left);
  CHECK(left->running);
  CHECK(left->alive);
  // Its runner is gone before the end (a crash, an unmount): running, and nobody behind it.
  auto gone = left->raw;
  gone["pid"] = 2147483000L;  // above any pid_max: no such process
  plant(tmp.path() / volume::kRekeyRecordName, gone);
  auto orphan = volume::read_rekey_record(tmp.path());
  REQUIRE(orphan);
  CHECK(orphan->running);
  CHECK(!orphan->alive);
  {
    volume::RekeyLease resumed(tmp.path(), "/mnt/b", 2);
    resumed.finished();
    CHECK(!volume::read_rekey_record(tmp.path())->running);
  }
  CHECK(!volume::read_rekey_record(tmp.path())->running);
}

TEST_CASE("a rekey another host runs keeps the slot while it beats", "[presence]") {
  TempDir tmp;
  auto theirs = foreign(1);
  theirs["state"] = "running";
  theirs["where"] = "/mnt/b";
  plant(tmp.path() / volume::kRekeyRecordName, theirs);
  CHECK(volume::read_rekey_record(tmp.path())->alive);
  CHECK_THROWS_AS(volume::RekeyLease(tmp.path(), "/mnt/a", 2), WardError);
  theirs["heartbeat"] = volume::unix_now() - volume::kHeartbeatTimeout.count() - 1;
  plant(tmp.path() / volume::kRekeyRecordName, theirs);
  CHECK(!volume::read_rekey_record(tmp.path())->alive);
  CHECK_NOTHROW(volume::RekeyLease(tmp.path(), "/mnt/a", 2));
}

TEST_CASE("asking whether a record is held takes no lock that a runner would trip on",
          "[presence]") {
  TempDir tmp;
  const auto path = tmp.path() / "record";
  const UniqueFd runner(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  const UniqueFd reader(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  const UniqueFd next_runner(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  REQUIRE((runner && reader && next_runner));
  CHECK(!volume::byte_is_locked(reader.get(), F_RDLCK, 0, path));
  // The reader's question, asked while nobody runs, must leave the slot free: a read
  // lock taken to ask made a rekey started at that moment refuse ("already running").
  CHECK(volume::try_lock_byte(next_runner.get(), F_WRLCK, 0, path));
  CHECK(volume::byte_is_locked(reader.get(), F_RDLCK, 0, path));
  CHECK(!volume::try_lock_byte(runner.get(), F_WRLCK, 0, path));
}
