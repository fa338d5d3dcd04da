# Sourced by bench/run and bench/lib/profile: fresh volumes of each system, mounted and torn down.
#
# Callers set: wardfs_bin, wardfs_init_args, wardfs_mount_args (for wardfs and wardfs_uring),
# wardfs_passphrase (for them; 1: a passphrase with the default Argon2id instead of a key
# file), passthrough_bin (for passthrough), hp_bin (for hp and hp_uring), logdir.
# vol_mount SYSTEM BASE TAG   creates a fresh volume under BASE and mounts it; sets
#                             VOL_MNT (where to work) and VOL_PID (the daemon, "" for raw)
# vol_unmount                 unmounts what vol_mount mounted last and waits for its daemon
# vol_cleanup_all             unmounts everything still mounted (for an EXIT trap)
# Only daemons this shell started are ever signalled, by their pid.

VOL_ACTIVE=()   # "mountpoint|pid|system" of every live mount
VOL_MNT="" VOL_PID="" VOL_SYS=""

vol_wait_mounted() { # MNT PID
  local i
  for ((i = 0; i < 300; i++)); do
    mountpoint -q "$1" && return 0
    if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then return 1; fi
    sleep 0.1
  done
  return 1
}

vol_wait_exit() { # PID [TENTHS]
  local i
  [ -n "$1" ] || return 0
  for ((i = 0; i < ${2:-100}; i++)); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  return 1
}

# Runs a floor daemon (passthrough_ll, passthrough_hp) with the fd limit raised to the
# kernel's nr_open where this root may (CAP_SYS_RESOURCE): they keep an fd per inode the
# kernel holds, with no bound of their own, and the 20,000-file and 50,000-entry workloads
# pass a 20,000 hard limit. Elsewhere those figures stay missing (noted in the report).
# Call it in the background only (cmd &): it execs the daemon in place of that subshell,
# so $! is the daemon's pid, which the CPU and memory figures read.
no_fd_bound() {
  local nofile
  nofile=$(cat /proc/sys/fs/nr_open 2>/dev/null || echo 1048576)
  if prlimit --nofile="$nofile:$nofile" -- true 2>/dev/null; then
    exec prlimit --nofile="$nofile:$nofile" -- "$@"
  fi
  exec "$@"
}

vol_mount() {
  local sys=$1 base=$2 tag=$3 cipher key
  VOL_SYS=$sys VOL_PID=""
  rm -rf --one-file-system "$base"
  mkdir -p "$base"
  cipher=$base/cipher VOL_MNT=$base/mnt key=$base/key
  case $sys in
    raw)
      VOL_MNT=$base/plain
      mkdir -p "$VOL_MNT"
      return 0 ;;
    passthrough)
      # Mirrors base/plain: FUSE with nothing in between, the cost any FUSE design pays.
      mkdir -p "$base/plain" "$VOL_MNT"
      no_fd_bound "$passthrough_bin" -f -o source="$base/plain" "$VOL_MNT" \
        >"$logdir/passthrough-$tag.log" 2>&1 &
      VOL_PID=$! ;;
    hp|hp_uring)
      # libfuse 3.18's passthrough_hp, FUSE with nothing in between, over /dev/fuse or
      # io_uring; --nopassthrough --nosplice: every read and write goes through the daemon.
      mkdir -p "$base/plain" "$VOL_MNT"
      local uring=()
      [ "$sys" = hp_uring ] && uring=(-o io_uring)
      no_fd_bound "$hp_bin" --foreground --nopassthrough --nosplice "${uring[@]}" \
        "$base/plain" "$VOL_MNT" >"$logdir/$sys-$tag.log" 2>&1 &
      VOL_PID=$! ;;
    gocryptfs)
      mkdir -p "$cipher" "$VOL_MNT"
      head -c 24 /dev/urandom | base64 >"$key"
      # -scryptn 10: the password KDF only runs at mount; it has no effect on I/O.
      gocryptfs -init -q -scryptn 10 -passfile "$key" "$cipher" >"$logdir/gocryptfs-init.log" 2>&1
      gocryptfs -fg -q -passfile "$key" "$cipher" "$VOL_MNT" >"$logdir/gocryptfs-$tag.log" 2>&1 &
      VOL_PID=$! ;;
    securefs)
      mkdir -p "$cipher" "$VOL_MNT"
      head -c 32 /dev/urandom >"$key"
      # A key file and a one-round KDF: the default Argon2id costs ~15 s per create and mount.
      securefs create --keyfile "$key" --pbkdf pkcs5-pbkdf2-hmac-sha256 -r 1 "$cipher" \
        >"$logdir/securefs-create.log" 2>&1
      securefs mount --keyfile "$key" "$cipher" "$VOL_MNT" >"$logdir/securefs-$tag.log" 2>&1 &
      VOL_PID=$! ;;
    wardfs|wardfs_uring)
      mkdir -p "$cipher" "$VOL_MNT"
      local cred=(--keyfile "$key") create=(--create-keyfile)
      if [ "${wardfs_passphrase:-0}" = 1 ]; then
        (umask 077 && head -c 24 /dev/urandom | base64 >"$base/pass")
        cred=(--passfile "$base/pass") create=()
      fi
      local transport=io_uring=off
      [ "$sys" = wardfs_uring ] && transport=io_uring=force
      # shellcheck disable=SC2086
      "$wardfs_bin" init "$cipher" "${cred[@]}" "${create[@]}" ${wardfs_init_args:-} \
        >"$logdir/wardfs-init.log" 2>&1 || { echo "wardfs init failed, see $logdir/wardfs-init.log" >&2; return 1; }
      # shellcheck disable=SC2086
      "$wardfs_bin" mount "$cipher" "$VOL_MNT" "${cred[@]}" -o "$transport" ${wardfs_mount_args:-} \
        >"$logdir/wardfs-$tag.log" 2>&1 || { echo "wardfs mount failed, see $logdir/wardfs-$tag.log" >&2; return 1; }
      # The mount command returns once the mount is live; the daemon is its forked child.
      VOL_PID=$(pgrep -n -f -- "mount $cipher $VOL_MNT" || true)
      # Unmounted on exit even when its daemon cannot be found.
      [ -n "$VOL_PID" ] || { VOL_ACTIVE+=("$VOL_MNT||$sys"); echo "cannot find the wardfs daemon" >&2; return 1; } ;;
    *) echo "unknown system $sys" >&2; return 1 ;;
  esac
  VOL_ACTIVE+=("$VOL_MNT|$VOL_PID|$sys")
  vol_wait_mounted "$VOL_MNT" "$VOL_PID" || { echo "$sys did not mount, see $logdir" >&2; return 1; }
}

vol_unmount_one() { # "mountpoint|pid|system"
  local mnt pid sys
  IFS='|' read -r mnt pid sys <<<"$1"
  [ -n "$mnt" ] || return 0
  if mountpoint -q "$mnt" 2>/dev/null; then
    if [[ $sys == wardfs* ]] && [ -n "${wardfs_bin:-}" ]; then
      timeout 30 "$wardfs_bin" unmount "$mnt" >/dev/null 2>&1 || true
    fi
    if mountpoint -q "$mnt" 2>/dev/null; then timeout 30 fusermount3 -u "$mnt" >/dev/null 2>&1 || true; fi
    if mountpoint -q "$mnt" 2>/dev/null; then fusermount3 -uz "$mnt" >/dev/null 2>&1 || umount -l "$mnt" 2>/dev/null || true; fi
  fi
  if [ -n "$pid" ] && ! vol_wait_exit "$pid" 50; then
    kill "$pid" 2>/dev/null || true
    vol_wait_exit "$pid" 50 || kill -KILL "$pid" 2>/dev/null || true
  fi
}

vol_unmount() {
  [ "$VOL_SYS" = raw ] && return 0
  local entry="$VOL_MNT|$VOL_PID|$VOL_SYS" keep=() e
  vol_unmount_one "$entry"
  for e in "${VOL_ACTIVE[@]}"; do [ "$e" = "$entry" ] || keep+=("$e"); done
  VOL_ACTIVE=("${keep[@]}")
}

vol_cleanup_all() {
  local e
  for e in "${VOL_ACTIVE[@]}"; do vol_unmount_one "$e"; done
  VOL_ACTIVE=()
}
