// fsck's engine: FileContent::check_all goes on past a bad chunk and counts every one,
// clears a has-holes flag only when no hole is left; check_volume reports leftovers and
// undecryptable names in a backing tree built with the volume's own functions.
#include <sys/stat.h>

#include <set>

#include "volume/fsck.h"
#include "volume/names.h"
#include "volume_test_util.h"

using namespace wardfs;
using namespace wardfs::vtest;

TEST_CASE("check_all reports every failing chunk and counts holes", "[fsck]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  CAPTURE(cipher_label(cipher));
  TestVolume tv(cipher, 4096);
  const auto& layout = tv.layout();
  UniqueFd fd = tv.open_file("f");
  {
    FileContent writer(*tv.vol);
    REQUIRE(writer.create(fd.get()) == 0);
    write_ok(writer, fd.get(), pattern(5 * 4096 + 7), 0);
  }
  for (const std::uint64_t bad : {1U, 3U}) {
    const auto at = layout.slot_offset(bad) + layout.overhead() + 5;
    flip_byte(fd.get(), at);
  }
  FileContent fc(*tv.vol);
  Reports reports;
  fc.set_reporter(reports.fn());
  REQUIRE(fc.load(fd.get()) == 0);
  volume::ContentCheck result;
  REQUIRE(fc.check_all(fd.get(), result, true, reports.fn()) == 0);
  CHECK(result.failures == 2);
  CHECK(result.chunks == 4);
  CHECK(result.holes == 0);
  CHECK(reports.has(1));
  CHECK(reports.has(3));
  CHECK_FALSE(result.cleared_holes_flag);
}

TEST_CASE("check_all clears has-holes only when no hole is left", "[fsck]") {
  TestVolume tv(CipherId::aes256gcm, 4096);
  UniqueFd fd = tv.open_file("f");
  {
    FileContent writer(*tv.vol);
    REQUIRE(writer.create(fd.get()) == 0);
    write_ok(writer, fd.get(), pattern(10), 3 * 4096);  // chunks 1 and 2 are a gap
    REQUIRE(writer.header().has_holes());
  }
  {
    FileContent fc(*tv.vol);
    REQUIRE(fc.load(fd.get()) == 0);
    volume::ContentCheck result;
    REQUIRE(fc.check_all(fd.get(), result, true, {}) == 0);
    CHECK(result.holes == 2);  // chunk 0, the old end of file, was sealed
    CHECK_FALSE(result.cleared_holes_flag);
    CHECK(fc.header().has_holes());
  }
  for (std::uint64_t i = 0; i < 3; ++i) {
    FileContent writer(*tv.vol);  // a fresh load each time: no one run knows all chunks
    REQUIRE(writer.load(fd.get()) == 0);
    write_ok(writer, fd.get(), pattern(4096, static_cast<std::uint32_t>(i + 2)), i * 4096);
  }
  FileContent fc(*tv.vol);
  REQUIRE(fc.load(fd.get()) == 0);
  REQUIRE(fc.header().has_holes());
  volume::ContentCheck result;
  REQUIRE(fc.check_all(fd.get(), result, false, {}) == 0);
  CHECK(result.holes == 0);
  CHECK(fc.header().has_holes());  // without repair nothing changes
  REQUIRE(fc.check_all(fd.get(), result, true, {}) == 0);
  CHECK(result.cleared_holes_flag);
  FileContent reloaded(*tv.vol);
  REQUIRE(reloaded.load(fd.get()) == 0);
  CHECK_FALSE(reloaded.header().has_holes());
  CHECK(read_all(reloaded, fd.get()).size() == 3 * 4096 + 10);
}

TEST_CASE("check_volume finds leftovers and bad names and repairs them", "[fsck]") {
  TestVolume tv(CipherId::aes256gcm, 4096);
  UniqueFd root(::open(tv.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  REQUIRE(root);
  crypto::DirId root_id{};
  REQUIRE(volume::read_dir_id(root.get(), root_id) == 0);
  volume::NameMapper names(*tv.vol);
  volume::ResolvedName sub;
  REQUIRE(names.resolve(root.get(), root_id, "sub", sub) == 0);
  UniqueFd sub_fd;
  REQUIRE(volume::make_directory(tv.vol->backing_features(), root.get(), sub.backing, 0755, {},
                                 sub_fd) == 0);
  UniqueFd tmp(::openat(root.get(), "wardfs.tmp.0123456789abcdef01234567",
                        O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  REQUIRE(tmp);
  UniqueFd planted(::openat(root.get(), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                            O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  REQUIRE(planted);

  std::vector<volume::FsckProblem> problems;
  volume::FsckOptions options;
  options.on_problem = [&](const volume::FsckProblem& p) { problems.push_back(p); };
  auto counts = volume::check_volume(*tv.vol, options);
  std::set<std::string> kinds;
  for (const auto& p : problems) kinds.insert(p.kind);
  CHECK(kinds == std::set<std::string>{"temp_leftover", "name_undecryptable"});
  CHECK(counts.directories == 2);
  CHECK(counts.damaged == 1);
  CHECK(counts.leftovers == 1);

  problems.clear();
  options.repair = true;
  counts = volume::check_volume(*tv.vol, options);
  CHECK(counts.repaired == 2);
  for (const auto& p : problems) CHECK(p.repaired);

  problems.clear();
  options.repair = false;
  counts = volume::check_volume(*tv.vol, options);
  CHECK(problems.empty());
  CHECK(counts.quarantined == 1);
  CHECK(counts.directories == 3);  // sub and lost+found
}

namespace {

// A file "name" in directory `dir_fd` (id `dir_id`) of tv's backing tree, with content.
std::string make_file(TestVolume& tv, int dir_fd, const crypto::DirId& dir_id,
                      const std::string& name, const Bytes& data) {
  volume::NameMapper names(*tv.vol);
  volume::ResolvedName r;
  REQUIRE(names.resolve(dir_fd, dir_id, name, r) == 0);
  REQUIRE(names.write_sidecar(dir_fd, r) == 0);
  UniqueFd fd(::openat(dir_fd, r.backing.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  REQUIRE(fd);
  FileContent writer(*tv.vol);
  REQUIRE(writer.create(fd.get()) == 0);
  write_ok(writer, fd.get(), data, 0);
  return r.backing;
}

std::string backing_name(TestVolume& tv, int dir_fd, const crypto::DirId& dir_id,
                         const std::string& name) {
  volume::NameMapper names(*tv.vol);
  volume::ResolvedName r;
  REQUIRE(names.resolve(dir_fd, dir_id, name, r) == 0);
  REQUIRE(names.write_sidecar(dir_fd, r) == 0);
  return r.backing;
}

// The intent of a link + unlink move, as volume/rename_intent.cc writes it.
void write_intent(int dir_fd, const std::string& from, const std::string& to_dir_id,
                  const std::string& to) {
  struct stat st {};
  REQUIRE(::fstatat(dir_fd, from.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0);
  const std::string text =
      from + "\n" + to_dir_id + "\n" + to + "\n" + std::to_string(st.st_ino) + "\n";
  UniqueFd fd(::openat(dir_fd, "wardfs.tmp.mv.00112233445566778899aabb",
                       O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  REQUIRE(fd);
  REQUIRE(::write(fd.get(), text.data(), text.size()) == static_cast<ssize_t>(text.size()));
}

bool exists_at(int dir_fd, const std::string& name) {
  struct stat st {};
  return ::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
}

struct FsckRun {
  std::vector<volume::FsckProblem> problems;
  volume::FsckCounts counts;
  std::set<std::string> kinds() const {
    std::set<std::string> out;
    for (const auto& p : problems) out.insert(p.kind);
    return out;
  }
};

FsckRun run_fsck(TestVolume& tv, bool repair) {
  FsckRun run;
  volume::FsckOptions options;
  options.repair = repair;
  options.on_problem = [&](const volume::FsckProblem& p) { run.problems.push_back(p); };
  run.counts = volume::check_volume(*tv.vol, options);
  return run;
}

}  // namespace

TEST_CASE("fsck --repair finishes a link + unlink move a crash cut short", "[fsck]") {
  // As a crash between link and unlink leaves it (no RENAME_NOREPLACE): the file under
  // its old name and its new one, and the intent naming the old one.
  TestVolume tv(CipherId::aes256gcm, 4096);
  UniqueFd root(::open(tv.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  crypto::DirId root_id{};
  REQUIRE(volume::read_dir_id(root.get(), root_id) == 0);
  const bool long_name = GENERATE(false, true);
  const bool across = GENERATE(false, true);
  CAPTURE(long_name, across);
  const std::string from_plain = long_name ? std::string(200, 'f') : "old";
  const std::string from = make_file(tv, root.get(), root_id, from_plain, pattern(5000));
  int to_dir = root.get();
  std::string to_dir_id = ".";
  UniqueFd sub;
  crypto::DirId sub_id{};
  if (across) {
    volume::NameMapper names(*tv.vol);
    volume::ResolvedName d;
    REQUIRE(names.resolve(root.get(), root_id, "sub", d) == 0);
    REQUIRE(volume::make_directory(tv.vol->backing_features(), root.get(), d.backing, 0755, {},
                                   sub) == 0);
    sub.reset(::openat(root.get(), d.backing.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    REQUIRE(volume::read_dir_id(sub.get(), sub_id) == 0);
    to_dir = sub.get();
    to_dir_id = crypto::hex_encode(sub_id);
  }
  const std::string to = backing_name(tv, to_dir, across ? sub_id : root_id, "new");
  write_intent(root.get(), from, to_dir_id, to);

  SECTION("both names: reported, and --repair removes the old one") {
    REQUIRE(::linkat(root.get(), from.c_str(), to_dir, to.c_str(), 0) == 0);
    auto first = run_fsck(tv, false);
    CHECK(first.kinds() == std::set<std::string>{"rename_unfinished"});
    CHECK(first.counts.damaged == 0);
    CHECK(exists_at(root.get(), from));
    auto repair = run_fsck(tv, true);
    CHECK(repair.kinds() == std::set<std::string>{"rename_unfinished"});
    CHECK(repair.counts.repaired == 1);
    CHECK(!exists_at(root.get(), from));
    CHECK(exists_at(to_dir, to));
    UniqueFd fd(::openat(to_dir, to.c_str(), O_RDONLY | O_CLOEXEC));
    FileContent reader(*tv.vol);
    REQUIRE(reader.load(fd.get()) == 0);
    CHECK(read_all(reader, fd.get()) == pattern(5000));
  }
  SECTION("the link not made: the old name stays, the intent goes") {
    auto first = run_fsck(tv, false);
    CHECK(first.kinds() == std::set<std::string>{"temp_leftover"});
    run_fsck(tv, true);
    CHECK(exists_at(root.get(), from));
    CHECK(!exists_at(to_dir, to));
  }
  SECTION("the move done but for the intent: the intent goes") {
    REQUIRE(::linkat(root.get(), from.c_str(), to_dir, to.c_str(), 0) == 0);
    REQUIRE(::unlinkat(root.get(), from.c_str(), 0) == 0);
    if (long_name)
      REQUIRE(::unlinkat(root.get(), (from + std::string(crypto::kLongNameSidecarSuffix)).c_str(),
                         0) == 0);
    CHECK(run_fsck(tv, false).kinds() == std::set<std::string>{"temp_leftover"});
    run_fsck(tv, true);
    CHECK(exists_at(to_dir, to));
  }
  // Nothing left over: no intent, no orphan sidecar.
  auto after = run_fsck(tv, false);
  CHECK(after.problems.empty());
  CHECK(after.counts.damaged == 0);
}
