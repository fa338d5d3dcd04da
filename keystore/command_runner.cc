#include "keystore/command_runner.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <thread>

#include "base/errors.h"
#include "crypto/bytes.h"
#include "keystore/secret_input.h"

extern char** environ;

namespace wardfs::keystore {

namespace {

using Clock = std::chrono::steady_clock;

[[noreturn]] void fail(ErrorKind kind, const std::string& msg) { throw WardError(kind, msg); }

class FileActions {
 public:
  FileActions() { ::posix_spawn_file_actions_init(&fa_); }
  ~FileActions() { ::posix_spawn_file_actions_destroy(&fa_); }
  FileActions(const FileActions&) = delete;
  FileActions& operator=(const FileActions&) = delete;
  posix_spawn_file_actions_t* get() { return &fa_; }

 private:
  posix_spawn_file_actions_t fa_;
};

class SpawnAttr {
 public:
  SpawnAttr() { ::posix_spawnattr_init(&attr_); }
  ~SpawnAttr() { ::posix_spawnattr_destroy(&attr_); }
  SpawnAttr(const SpawnAttr&) = delete;
  SpawnAttr& operator=(const SpawnAttr&) = delete;
  posix_spawnattr_t* get() { return &attr_; }

 private:
  posix_spawnattr_t attr_;
};

// Owns a child process: kills and reaps it unless it was reaped already.
class Child {
 public:
  explicit Child(pid_t pid) : pid_(pid) {}
  ~Child() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // The wait status once the child exited before `deadline`; nullopt on timeout.
  std::optional<int> wait_until(Clock::time_point deadline) {
    for (;;) {
      int status = 0;
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return status;
      }
      if (r < 0 && errno != EINTR)
        fail(ErrorKind::io, "waitpid: " + std::string(std::strerror(errno)));
      if (Clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

 private:
  pid_t pid_;
};

// SIGCHLD back to its default while alive: with SIGCHLD ignored (inherited through exec
// from some service managers) the kernel reaps children itself and waitpid cannot report
// the key command's exit status.
class DefaultSigchld {
 public:
  DefaultSigchld() {
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    changed_ = ::sigaction(SIGCHLD, nullptr, &old_) == 0 && old_.sa_handler == SIG_IGN &&
               ::sigaction(SIGCHLD, &dfl, nullptr) == 0;
  }
  ~DefaultSigchld() {
    if (changed_) ::sigaction(SIGCHLD, &old_, nullptr);
  }
  DefaultSigchld(const DefaultSigchld&) = delete;
  DefaultSigchld& operator=(const DefaultSigchld&) = delete;

 private:
  struct sigaction old_ {};
  bool changed_ = false;
};

struct Word {
  std::string text;
  bool started = false;
};

std::string seconds_text(std::chrono::milliseconds ms) {
  const auto count = ms.count();
  if (count % 1000 == 0) return std::to_string(count / 1000) + " s";
  return std::to_string(count) + " ms";
}

std::vector<char*> c_strings(const std::vector<std::string>& strings) {
  std::vector<char*> out;
  for (const auto& s : strings) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

std::vector<std::string> environment_with(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) env.emplace_back(*e);
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

// stdin_fd < 0 keeps our stdin.
pid_t spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env, int stdin_fd,
            int stdout_fd) {
  std::vector<char*> cargv = c_strings(argv);
  std::vector<char*> cenv = c_strings(env);
  FileActions actions;
  if (stdin_fd >= 0) ::posix_spawn_file_actions_adddup2(actions.get(), stdin_fd, STDIN_FILENO);
  ::posix_spawn_file_actions_adddup2(actions.get(), stdout_fd, STDOUT_FILENO);
  ::posix_spawn_file_actions_addclosefrom_np(actions.get(), STDERR_FILENO + 1);
  SpawnAttr attr;
  sigset_t all;
  sigset_t none;
  sigfillset(&all);
  sigemptyset(&none);
  ::posix_spawnattr_setsigdefault(attr.get(), &all);
  ::posix_spawnattr_setsigmask(attr.get(), &none);
  ::posix_spawnattr_setflags(attr.get(), POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  pid_t pid = -1;
  const int rc =
      ::posix_spawnp(&pid, cargv[0], actions.get(), attr.get(), cargv.data(), cenv.data());
  if (rc != 0) fail(ErrorKind::usage, "cannot run " + argv[0] + ": " + std::strerror(rc));
  return pid;
}

// A socket for the child's stdin, pre-filled with `data` (small enough for its buffer)
// and shut for writing, so the child reads the data and then EOF; MSG_NOSIGNAL keeps a
// child that exits early from raising SIGPIPE here.
UniqueFd stdin_socket(crypto::ByteView data, UniqueFd& child_end) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    fail(ErrorKind::io, "socketpair: " + std::string(std::strerror(errno)));
  }
  UniqueFd ours(sv[0]);
  child_end.reset(sv[1]);
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::send(ours.get(), data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0)
      fail(ErrorKind::io, "writing the key command's input: " + std::string(std::strerror(errno)));
    done += static_cast<std::size_t>(n);
  }
  ::shutdown(ours.get(), SHUT_WR);
  return ours;
}

// Reads the child's stdout until EOF; false when the deadline passed first.
bool read_output(int fd, crypto::SecretBytes& buf, std::size_t& len, Clock::time_point deadline) {
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1000)));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) fail(ErrorKind::io, "poll: " + std::string(std::strerror(errno)));
    if (r == 0) continue;
    if (len == buf.size()) return true;  // full: the caller reports the overflow
    const ssize_t n = ::read(fd, buf.data() + len, buf.size() - len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0)
      fail(ErrorKind::io, "reading the command's output: " + std::string(std::strerror(errno)));
    if (n == 0) return true;
    len += static_cast<std::size_t>(n);
  }
}

void check_status(const std::string& prog, int status) {
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return;
  if (WIFEXITED(status)) {
    fail(ErrorKind::wrong_key,
         "key command " + prog + " failed with exit status " + std::to_string(WEXITSTATUS(status)));
  }
  fail(ErrorKind::wrong_key, "key command " + prog + " was killed by signal " +
                                 std::to_string(WTERMSIG(status)) + " (" +
                                 ::strsignal(WTERMSIG(status)) + ")");
}

}  // namespace

std::vector<std::string> split_command_line(std::string_view line) {
  std::vector<std::string> words;
  Word st;
  char quote = 0;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const char c = line[i];
    if (quote == '\'') {
      if (c == '\'')
        quote = 0;
      else
        st.text += c;
    } else if (quote == '"') {
      if (c == '"') {
        quote = 0;
      } else if (c == '\\' && i + 1 < line.size() && std::strchr("\"\\$`", line[i + 1])) {
        st.text += line[++i];
      } else {
        st.text += c;
      }
    } else if (c == ' ' || c == '\t' || c == '\n') {
      if (st.started) words.push_back(std::move(st.text));
      st = {};
    } else {
      st.started = true;
      if (c == '\'' || c == '"') {
        quote = c;
      } else if (c == '\\' && i + 1 < line.size()) {
        st.text += line[++i];
      } else {
        st.text += c;
      }
    }
  }
  if (quote != 0) fail(ErrorKind::usage, std::string("unterminated ") + quote + " in command line");
  if (st.started) words.push_back(std::move(st.text));
  if (words.empty()) fail(ErrorKind::usage, "the command keystore needs a program to run");
  return words;
}

std::vector<std::string> command_argv(std::string_view location) {
  if (location.starts_with("sh:")) {
    const std::string_view script = location.substr(3);
    if (script.find_first_not_of(" \t\n") == std::string_view::npos) {
      fail(ErrorKind::usage, "the command keystore needs a shell command after 'sh:'");
    }
    return {"/bin/sh", "-c", std::string(script)};
  }
  return split_command_line(location);
}

crypto::SecretBytes run_secret_command(const std::vector<std::string>& argv,
                                       const CommandLimits& limits, const CommandInput& input) {
  if (argv.empty() || argv[0].empty()) fail(ErrorKind::usage, "the key command is empty");
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0)
    fail(ErrorKind::io, "pipe: " + std::string(std::strerror(errno)));
  UniqueFd read_end(fds[0]);
  UniqueFd write_end(fds[1]);
  const auto deadline = Clock::now() + limits.timeout;
  const DefaultSigchld reapable;
  UniqueFd child_stdin;
  UniqueFd stdin_owner;
  const bool feed = !input.stdin_data.empty();
  if (feed) stdin_owner = stdin_socket(input.stdin_data, child_stdin);
  Child child(spawn(argv, environment_with(input.extra_env), feed ? child_stdin.get() : -1,
                    write_end.get()));
  write_end.reset();
  child_stdin.reset();

  crypto::SecretBytes buf(limits.max_output + 1);
  std::size_t len = 0;
  const bool eof = read_output(read_end.get(), buf, len, deadline);
  read_end.reset();
  if (len > limits.max_output) {
    fail(ErrorKind::wrong_key, "key command " + argv[0] + " printed more than " +
                                   std::to_string(limits.max_output) + " bytes");
  }
  const std::optional<int> status = eof ? child.wait_until(deadline) : std::nullopt;
  if (!status) {
    fail(ErrorKind::wrong_key, "key command " + argv[0] + " did not finish within " +
                                   seconds_text(limits.timeout) + "; it was killed");
  }
  check_status(argv[0], *status);
  return crypto::SecretBytes::copy_of(crypto::ByteView(buf.data(), len));
}

}  // namespace wardfs::keystore
