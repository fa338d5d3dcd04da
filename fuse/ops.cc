// The fuse_lowlevel_ops table: plain functions that find the WardFs behind a request.
#include <spdlog/spdlog.h>

#include <chrono>

#include "fuse/filesystem.h"

namespace wardfs::fuse {

namespace {
WardFs& fs_of(fuse_req_t req) { return *static_cast<WardFs*>(fuse_req_userdata(req)); }

// No exception may cross into libfuse's C code: an unexpected one fails this request
// with EIO and the mount keeps serving.
template <typename Body>
void guarded(fuse_req_t req, Op op, Body&& body) {
  WardFs& fs = fs_of(req);
  fs.note_transport(req);
  const std::int64_t start_ns = fs.note_request();
  try {
    body();
  } catch (const std::exception& e) {
    spdlog::error("internal error in a request: {}", e.what());
    fuse_reply_err(req, EIO);
  }
  fs.note_done(op, start_ns);
}

fuse_lowlevel_ops make_operations() {
  fuse_lowlevel_ops ops{};
  ops.init = [](void* userdata, fuse_conn_info* conn) {
    static_cast<WardFs*>(userdata)->init(conn);
  };
  ops.lookup = [](fuse_req_t req, fuse_ino_t parent, const char* name) {
    guarded(req, Op::lookup, [&] { fs_of(req).lookup(req, parent, name); });
  };
  ops.forget = [](fuse_req_t req, fuse_ino_t ino, uint64_t n) {
    fs_of(req).note_done(Op::forget, 0);
    fs_of(req).forget(ino, n);
    fuse_reply_none(req);
  };
  ops.forget_multi = [](fuse_req_t req, size_t count, fuse_forget_data* forgets) {
    fs_of(req).note_done(Op::forget, 0);
    for (size_t i = 0; i < count; ++i) fs_of(req).forget(forgets[i].ino, forgets[i].nlookup);
    fuse_reply_none(req);
  };
  ops.getattr = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    guarded(req, Op::getattr, [&] { fs_of(req).getattr(req, ino, fi); });
  };
  ops.setattr = [](fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set,
                   fuse_file_info* fi) {
    guarded(req, Op::setattr, [&] { fs_of(req).setattr(req, ino, attr, to_set, fi); });
  };
  ops.readlink = [](fuse_req_t req, fuse_ino_t ino) {
    guarded(req, Op::readlink, [&] { fs_of(req).readlink(req, ino); });
  };
  ops.mknod = [](fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
    guarded(req, Op::mknod, [&] { fs_of(req).mknod(req, parent, name, mode, rdev); });
  };
  ops.mkdir = [](fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
    guarded(req, Op::mkdir, [&] { fs_of(req).mkdir(req, parent, name, mode); });
  };
  ops.unlink = [](fuse_req_t req, fuse_ino_t parent, const char* name) {
    guarded(req, Op::unlink, [&] { fs_of(req).unlink(req, parent, name); });
  };
  ops.rmdir = [](fuse_req_t req, fuse_ino_t parent, const char* name) {
    guarded(req, Op::rmdir, [&] { fs_of(req).rmdir(req, parent, name); });
  };
  ops.symlink = [](fuse_req_t req, const char* link, fuse_ino_t parent, const char* name) {
    guarded(req, Op::symlink, [&] { fs_of(req).symlink(req, link, parent, name); });
  };
  ops.rename = [](fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t newparent,
                  const char* newname, unsigned int flags) {
    guarded(req, Op::rename,
            [&] { fs_of(req).rename(req, parent, name, newparent, newname, flags); });
  };
  ops.link = [](fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char* newname) {
    guarded(req, Op::link, [&] { fs_of(req).link(req, ino, newparent, newname); });
  };
  // fi->fh is set only when a handle was made; the kernel releases exactly those.
  ops.open = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    WardFs& fs = fs_of(req);
    guarded(req, Op::open, [&] { fs.open(req, ino, fi); });
    if (fi->fh != 0) fs.note_open(1);
  };
  ops.read = [](fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
    guarded(req, Op::read, [&] { fs_of(req).read(req, ino, size, off, fi); });
  };
  ops.write = [](fuse_req_t req, fuse_ino_t ino, const char* buf, size_t size, off_t off,
                 fuse_file_info* fi) {
    guarded(req, Op::write, [&] { fs_of(req).write(req, ino, buf, size, off, fi); });
  };
  // No flush handler: nothing is buffered here (every WRITE goes straight to the backing
  // file), and the ENOSYS libfuse replies makes the kernel stop sending FLUSH on every
  // close(). With the writeback cache the kernel still writes dirty pages back first.
  ops.release = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    fs_of(req).note_open(-1);
    guarded(req, Op::release, [&] { fs_of(req).release(req, ino, fi); });
  };
  ops.fsync = [](fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
    guarded(req, Op::fsync, [&] { fs_of(req).fsync(req, ino, datasync, fi); });
  };
  ops.opendir = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    WardFs& fs = fs_of(req);
    guarded(req, Op::opendir, [&] { fs.opendir(req, ino, fi); });
    if (fi->fh != 0) fs.note_open(1);
  };
  ops.readdir = [](fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
    guarded(req, Op::readdir, [&] { fs_of(req).readdir(req, ino, size, off, fi, false); });
  };
  ops.readdirplus = [](fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, fuse_file_info* fi) {
    guarded(req, Op::readdir, [&] { fs_of(req).readdir(req, ino, size, off, fi, true); });
  };
  ops.releasedir = [](fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
    fs_of(req).note_open(-1);
    guarded(req, Op::releasedir, [&] { fs_of(req).releasedir(req, ino, fi); });
  };
  ops.fsyncdir = [](fuse_req_t req, fuse_ino_t ino, int datasync, fuse_file_info* fi) {
    guarded(req, Op::fsyncdir, [&] { fs_of(req).fsyncdir(req, ino, datasync, fi); });
  };
  ops.statfs = [](fuse_req_t req, fuse_ino_t ino) {
    guarded(req, Op::statfs, [&] { fs_of(req).statfs(req, ino); });
  };
  ops.setxattr = [](fuse_req_t req, fuse_ino_t ino, const char* name, const char* value,
                    size_t size, int flags) {
    guarded(req, Op::setxattr, [&] { fs_of(req).setxattr(req, ino, name, value, size, flags); });
  };
  ops.getxattr = [](fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
    guarded(req, Op::getxattr, [&] { fs_of(req).getxattr(req, ino, name, size); });
  };
  ops.listxattr = [](fuse_req_t req, fuse_ino_t ino, size_t size) {
    guarded(req, Op::listxattr, [&] { fs_of(req).listxattr(req, ino, size); });
  };
  ops.removexattr = [](fuse_req_t req, fuse_ino_t ino, const char* name) {
    guarded(req, Op::removexattr, [&] { fs_of(req).removexattr(req, ino, name); });
  };
  ops.create = [](fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode,
                  fuse_file_info* fi) {
    WardFs& fs = fs_of(req);
    guarded(req, Op::create, [&] { fs.create(req, parent, name, mode, fi); });
    if (fi->fh != 0) fs.note_open(1);
  };
  ops.fallocate = [](fuse_req_t req, fuse_ino_t ino, int mode, off_t off, off_t len,
                     fuse_file_info* fi) {
    guarded(req, Op::fallocate, [&] { fs_of(req).fallocate(req, ino, mode, off, len, fi); });
  };
  // Without it the kernel copies through its page cache, a READ and a WRITE per page.
  ops.copy_file_range = [](fuse_req_t req, fuse_ino_t ino_in, off_t off_in, fuse_file_info* fi_in,
                           fuse_ino_t ino_out, off_t off_out, fuse_file_info* fi_out, size_t len,
                           int flags) {
    guarded(req, Op::copy_file_range, [&] {
      fs_of(req).copy_file_range(req, ino_in, off_in, fi_in, ino_out, off_out, fi_out, len, flags);
    });
  };
  return ops;
}
}  // namespace

namespace {
std::int64_t steady_ns() {
  const auto now = std::chrono::steady_clock::now().time_since_epoch();
  return std::chrono::duration_cast<std::chrono::nanoseconds>(now).count();
}
}  // namespace

std::int64_t WardFs::note_request() {
  const std::int64_t now = steady_ns();
  counters_.last_request_ns.store(now, std::memory_order_relaxed);
  return now;
}

void WardFs::note_done(Op op, std::int64_t start_ns) {
  // Only the timed operations pay for a second clock read.
  if (OpStats::timed(op)) {
    counters_.ops.record(op, steady_ns() - start_ns);
  } else {
    counters_.ops.count(op);
  }
}

const fuse_lowlevel_ops& WardFs::operations() {
  static const fuse_lowlevel_ops ops = make_operations();
  return ops;
}

}  // namespace wardfs::fuse
