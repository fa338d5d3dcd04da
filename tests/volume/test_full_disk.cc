// A write that runs out of space part way: simulated with RLIMIT_FSIZE, under which a
// pwrite past the limit writes what fits and then fails (EFBIG), as a full disk does with
// ENOSPC. Whatever the write did, the file must read as before it, with no integrity
// report, through this FileContent and through a fresh one (a remount). A write that
// grows a partial final chunk in place reserves its blocks first (fallocate), which the
// limit cannot fail: reliability.test_faults covers it on a full tmpfs.
#include <signal.h>
#include <sys/resource.h>

#include "volume_test_util.h"

using namespace wardfs;
using namespace wardfs::vtest;

namespace {

// Caps the size of files this process writes at `limit` bytes while it lives.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(std::uint64_t limit) {
    ::getrlimit(RLIMIT_FSIZE, &saved_);
    old_handler_ = ::signal(SIGXFSZ, SIG_IGN);
    rlimit capped = saved_;
    capped.rlim_cur = limit;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &capped) == 0);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &saved_);
    ::signal(SIGXFSZ, old_handler_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  rlimit saved_{};
  sighandler_t old_handler_ = SIG_DFL;
};

void require_reads_as(const TestVolume& tv, FileContent& same, int fd, const Bytes& expect) {
  REQUIRE(same.size() == expect.size());
  REQUIRE(read_all(same, fd) == expect);
  FileContent fresh(*tv.vol);
  Reports reports;
  fresh.set_reporter(reports.fn());
  REQUIRE(fresh.load(fd) == 0);
  CAPTURE(reports.describe());
  REQUIRE(fresh.size() == expect.size());
  REQUIRE(read_all(fresh, fd) == expect);
  REQUIRE(reports.list.empty());
}

}  // namespace

TEST_CASE("A write that runs out of space leaves the file as it was", "[full]") {
  const auto cipher = GENERATE(CipherId::aes256gcm, CipherId::xchacha20poly1305);
  CAPTURE(cipher_label(cipher));
  TestVolume tv(cipher, 4096);
  const std::uint64_t cs = 4096;
  const auto& layout = tv.layout();
  UniqueFd fd = tv.open_file("f");
  FileContent fc(*tv.vol);
  REQUIRE(fc.create(fd.get()) == 0);

  SECTION("the first write to a new file, cut inside the empty file's own chunk") {
    // No blocks are reserved for it: the cut-back seals the empty chunk again.
    const std::uint64_t limit = layout.backing_size(0) + 100;
    ssize_t n = 0;
    {
      FileSizeLimit cap(limit);
      n = fc.write(fd.get(), pattern(3 * cs, 1), 0);
    }
    REQUIRE(n < 0);
    require_reads_as(tv, fc, fd.get(), {});
    write_ok(fc, fd.get(), pattern(10, 2), 0);  // and it takes writes again
    require_reads_as(tv, fc, fd.get(), pattern(10, 2));
  }
  SECTION("a write to a new file past its first chunk") {
    ssize_t n = 0;
    {
      FileSizeLimit cap(layout.slot_offset(2) + 7);
      n = fc.write(fd.get(), pattern(cs, 1), 2 * cs);
    }
    REQUIRE(n < 0);
    require_reads_as(tv, fc, fd.get(), {});
  }
  SECTION("an append of whole new chunks, cut in the middle of them") {
    const Bytes old = pattern(2 * cs, 3);
    write_ok(fc, fd.get(), old, 0);
    ssize_t n = 0;
    {
      FileSizeLimit cap(layout.slot_offset(3) + 50);
      n = fc.write(fd.get(), pattern(3 * cs, 4), 2 * cs);
    }
    REQUIRE(n < 0);
    require_reads_as(tv, fc, fd.get(), old);
  }
}
