// The threads that serve FUSE requests from /dev/fuse.
#pragma once

#include <functional>

struct fuse_session;

namespace wardfs::daemon {

// Workers that are not serving a request and may wait in read() on /dev/fuse at once.
// The kernel hands each request to the reader that has waited longest, so with every
// idle worker reading, a sequential stream of 1 MiB writes visited every worker in turn
// and each kept a 1 MiB receive buffer resident. The rest wait on a condition variable
// holding no buffer, and one is woken whenever no reader is left.
inline constexpr unsigned kMaxIdleReaders = 2;

// Serves the session with up to `threads` workers until it ends (unmount or signal),
// then calls before_unmount() and unmounts. Returns 0 or the first read error (-errno).
int run_worker_pool(fuse_session* session, unsigned threads,
                    const std::function<void()>& before_unmount);

}  // namespace wardfs::daemon
