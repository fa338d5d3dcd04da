// The control socket end to end, without a mount: the fuzz input is sent as the request
// bytes to a real ControlServer whose handler is a real VolumeService over a real volume
// (a temp dir holding one file). Properties: every non-empty request gets exactly one reply
// line, a JSON object, either {"error": string, "code": 1..5} or a success; the volume's
// config still loads and its active key still unwraps afterwards; and nothing hangs (a
// rekey left running must stop when the service is torn down).
#include <openssl/crypto.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "audit/log.h"
#include "base/errors.h"
#include "crypto/config.h"
#include "daemon/control.h"
#include "daemon/volume_service.h"
#include "fuse/filesystem.h"
#include "keystore/keystore.h"
#include "tests/fuzz/fuzz_common.h"
#include "volume/config_file.h"
#include "volume/file_content.h"
#include "volume/names.h"
#include "volume/volume.h"

namespace {

namespace stdfs = std::filesystem;
using wardfs::fuzz::check;

constexpr std::size_t kMaxGenerations = 6;  // rebuild the volume past this many rotations

// One volume with a file in it, served by a VolumeService behind a ControlServer.
struct Fixture {
  stdfs::path dir;
  std::unique_ptr<wardfs::keystore::Keystore> keystore;
  std::unique_ptr<wardfs::volume::Volume> volume;
  std::unique_ptr<wardfs::audit::AuditLog> audit_log;
  std::unique_ptr<wardfs::fuse::WardFs> filesystem;
  std::unique_ptr<wardfs::daemon::VolumeService> service;
  std::unique_ptr<wardfs::daemon::ControlServer> server;

  Fixture() {
    spdlog::set_level(spdlog::level::warn);  // one info line per rotation drowns the output
    char tmpl[] = "/tmp/wardfs-fuzz-control-XXXXXX";
    check(::mkdtemp(tmpl) != nullptr, "mkdtemp");
    dir = tmpl;
    keystore =
        wardfs::keystore::make_local_keystore(wardfs::crypto::SecretBytes::random(32), "fuzz");
    wardfs::volume::InitOptions options;
    options.keystore.type = "keyfile";
    options.keystore.location = "/nonexistent/fuzz.key";
    wardfs::volume::init_volume(dir / "cipher", options, *keystore);
    volume = wardfs::volume::unlock_volume(dir / "cipher",
                                           wardfs::volume::load_config(dir / "cipher"), *keystore);
    add_file("seed file", 5 * 4096 + 17);
    wardfs::audit::LogOptions audit_options;
    audit_options.path = dir / "audit.jsonl";
    audit_log = std::make_unique<wardfs::audit::AuditLog>(audit_options, "fuzz");
    audit_log->start(wardfs::crypto::SecretBytes::copy_of(volume->audit_mac_key().view()));
    filesystem = std::make_unique<wardfs::fuse::WardFs>(
        *volume, wardfs::fuse::FsOptions{.audit = audit_log.get()});
    check(filesystem->open_root() == 0, "open_root");
    service = std::make_unique<wardfs::daemon::VolumeService>(*volume, *keystore, *filesystem,
                                                              dir / "mnt", *audit_log, true);
    server = std::make_unique<wardfs::daemon::ControlServer>(
        dir / "control.sock", ::geteuid(),
        [this](const nlohmann::json& request, const wardfs::audit::Principal& peer) {
          return service->handle(request, peer);
        },
        audit_log.get());
  }
  ~Fixture() {
    server.reset();
    service.reset();  // must stop a running rekey, however slow its rate
    filesystem.reset();
    audit_log.reset();
    std::error_code ec;
    stdfs::remove_all(dir, ec);
  }

  // A file the rekey has bytes to walk through (so a rate throttle really sleeps).
  void add_file(const std::string& name, std::size_t size) {
    wardfs::UniqueFd root(::open((dir / "cipher").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    wardfs::crypto::DirId id{};
    check(wardfs::volume::read_dir_id(root.get(), id) == 0, "root dir id");
    wardfs::volume::NameMapper names(*volume);
    wardfs::volume::ResolvedName resolved;
    check(names.resolve(root.get(), id, name, resolved) == 0, "resolve");
    wardfs::UniqueFd fd(::openat(root.get(), resolved.backing.c_str(),
                                 O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    check(static_cast<bool>(fd), "create the file");
    wardfs::volume::FileContent content(*volume);
    check(content.create(fd.get()) == 0, "format the file");
    const wardfs::crypto::Bytes data(size, 0x5a);
    check(content.write(fd.get(), data, 0) == static_cast<ssize_t>(size), "write the file");
  }

  std::string request(const std::uint8_t* data, std::size_t size) const {
    wardfs::UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, (dir / "control.sock").c_str(), sizeof addr.sun_path - 1);
    check(::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0,
          "connect");
    std::size_t done = 0;
    while (done < size) {
      const ssize_t n = ::send(fd.get(), data + done, size - done, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;  // libFuzzer's -timeout ticks with SIGALRM
      if (n <= 0) break;                      // the server stops reading after the first line
      done += static_cast<std::size_t>(n);
    }
    ::shutdown(fd.get(), SHUT_WR);
    std::string reply;
    char buf[4096];
    for (;;) {
      const ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      reply.append(buf, static_cast<std::size_t>(n));
    }
    return reply;
  }

  std::size_t generations() const {
    return wardfs::volume::load_config(dir / "cipher").keys.size();
  }
};

std::unique_ptr<Fixture>& fixture() {
  static std::unique_ptr<Fixture> f;  // libFuzzer's entry point has no other place for state
  return f;
}

void check_reply(const std::string& reply) {
  check(!reply.empty() && reply.back() == '\n', "a request gets one reply line");
  check(reply.find('\n') == reply.size() - 1, "exactly one line");
  const auto j = nlohmann::json::parse(reply, nullptr, false);
  check(!j.is_discarded() && j.is_object(), "the reply is a JSON object");
  if (j.contains("error")) {
    check(j["error"].is_string() && !j["error"].get<std::string>().empty(), "errors say something");
    check(j.contains("code") && j["code"].is_number_integer(), "errors carry a code");
    const int code = j["code"].get<int>();
    check(code >= 1 && code <= 5, "the code is a wardfs exit code");
  }
}

void check_volume(const Fixture& f) {
  const auto config = wardfs::volume::load_config(f.dir / "cipher");  // throws (aborts) if broken
  const auto* active = config.key_for(config.active_generation);
  check(active != nullptr, "the active generation has a key");
  check(f.keystore->unwrap(active->wrapped, config.wrap_ad(active->generation)).has_value(),
        "the active key still unwraps");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 70 * 1024) return 0;  // beyond the server's line limit: nothing new
  auto& f = fixture();
  if (!f) {
    // As in the daemon, where libfuse ignores SIGPIPE: a client gone before its reply must
    // not kill the server.
    ::signal(SIGPIPE, SIG_IGN);
    f = std::make_unique<Fixture>();
    // Torn down at exit, before LeakSanitizer's check (so the server thread ends and OpenSSL
    // frees its per-thread state) and before OpenSSL's own atexit cleanup: a rekey thread
    // still running when libcrypto's locks are freed crashes. atexit handlers run in reverse
    // order, so this one must be registered after the Fixture has initialised OpenSSL.
    OPENSSL_init_crypto(0, nullptr);  // already done by the Fixture; says what we rely on
    static const bool registered = std::atexit([] { fixture().reset(); }) == 0;
    (void)registered;
  }
  const std::string reply = f->request(data, size);
  if (size > 0) check_reply(reply);  // even a line without '\n' is answered at EOF
  check_volume(*f);
  if (f->generations() > kMaxGenerations) f.reset();  // tears down: a running rekey must stop
  return 0;
}
