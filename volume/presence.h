// The small records by which a process says, in a volume's backing root, that it is at
// work there: the lease's holder (volume/lease.h), each mount's published generations
// (volume/mount_records.h), the running rekey (volume/rekey_lease.h). One set of rules
// for all of them, because the backing directory may be a network file system shared by
// several machines:
//   - a record is JSON padded to a fixed size and rewritten in place, never truncated
//     first, so a reader on another machine never sees it empty mid-renewal;
//   - its writer holds an OFD lock on it while alive, which the kernel drops when the
//     process dies, so a crashed process of this host (or of any host, where the backend
//     shares locks) leaves no live record;
//   - where locks do not reach other machines or mounts (sshfs, NFS with nolock), a
//     heartbeat renewed every kHeartbeatInterval stands in: a record whose heartbeat is
//     younger than kHeartbeatTimeout is alive even when its lock was free, if it is of
//     another host or its pid still runs here.
// The backing directory is untrusted: a planted record can only make a command refuse,
// and every file here is opened with O_NOFOLLOW.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace wardfs::volume {

inline constexpr std::chrono::seconds kHeartbeatInterval{5};
inline constexpr std::chrono::seconds kHeartbeatTimeout{30};

std::int64_t unix_now();
std::string host_name();
std::string random_record_id();  // 24 hex digits

// Takes an OFD lock of `type` (F_RDLCK, F_WRLCK) on one byte without waiting: true when
// taken, false when another open file holds a conflicting lock. Throws WardError(io).
bool try_lock_byte(int fd, short type, off_t byte, const std::filesystem::path& path);

// Whether another open file holds a lock on `byte` that conflicts with `type`, asked
// without taking one: a probe that took a lock would itself make a runner starting that
// moment see the slot as taken. Throws WardError(io).
bool byte_is_locked(int fd, short type, off_t byte, const std::filesystem::path& path);

// The record as JSON padded to a fixed size; a failed write is left to the next renewal.
void write_presence_record(int fd, const nlohmann::json& record);
// Stamps `record`'s heartbeat with now, then writes it.
void write_beating_record(int fd, nlohmann::json& record);
// True once `record`'s heartbeat is kHeartbeatInterval old: time to write it again.
bool heartbeat_due(const nlohmann::json& record);
// The JSON object in the file, or nullopt (empty, unreadable, not an object).
std::optional<nlohmann::json> read_presence_record(int fd);

// A record of another host whose heartbeat ("heartbeat": Unix seconds) is fresh. A
// record of this host whose lock is free is never alive: local locks always work.
bool alive_without_lock(const nlohmann::json& record);

// "pid P on host H, since S" for messages.
std::string presence_owner(const nlohmann::json& record);

}  // namespace wardfs::volume
