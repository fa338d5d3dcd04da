#!/usr/bin/python3
"""copy_range.py SRC DST: copies SRC into a new DST with copy_file_range(2) in a loop, as
coreutils 9 cp does, then fsyncs DST. Exits non-zero when the copy comes out short."""
import os
import sys


def main():
    src, dst = sys.argv[1], sys.argv[2]
    fd_in = os.open(src, os.O_RDONLY)
    fd_out = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        size = os.fstat(fd_in).st_size
        done = 0
        while done < size:
            n = os.copy_file_range(fd_in, fd_out, min(size - done, 1 << 30), done, done)
            if n == 0:
                break
            done += n
        os.fsync(fd_out)
    finally:
        os.close(fd_out)
        os.close(fd_in)
    if done != size:
        sys.exit("copy_range.py: copied %d of %d bytes" % (done, size))


if __name__ == "__main__":
    main()
