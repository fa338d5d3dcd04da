// A stand-in for libFuzzer's driver, for builds without WARDFS_FUZZ: feeds the entry point
// every file of the seed corpus, then mutations of them and random inputs from a fixed
// seed, so each build runs the fuzz properties over a few thousand inputs.
//
//   fuzz_X_replay [--runs=N] [--seed=S] [--max-len=L] CORPUS_DIR_OR_FILE...
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace {

using Input = std::vector<std::uint8_t>;

Input read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return Input(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// The input being run, printed in hex if it crashes so the failure can be reproduced:
// save it with `xxd -r -p` and pass the file to the same binary.
const std::uint8_t* g_current = nullptr;
std::size_t g_current_size = 0;

extern "C" void print_current_input(int sig) {
  static const char kHex[] = "0123456789abcdef";
  static const char kHead[] = "\n==== crashing input (hex) ====\n";
  (void)!::write(STDERR_FILENO, kHead, sizeof kHead - 1);
  char line[2];
  for (std::size_t i = 0; g_current != nullptr && i < g_current_size; ++i) {
    line[0] = kHex[g_current[i] >> 4];
    line[1] = kHex[g_current[i] & 15];
    (void)!::write(STDERR_FILENO, line, 2);
  }
  (void)!::write(STDERR_FILENO, "\n", 1);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

void run(const Input& input) {
  // A copy in a heap buffer of exactly the input's size, so ASan sees reads past the end.
  const auto copy = std::make_unique<std::uint8_t[]>(input.size());
  std::copy(input.begin(), input.end(), copy.get());
  g_current = copy.get();
  g_current_size = input.size();
  LLVMFuzzerTestOneInput(copy.get(), input.size());
  g_current = nullptr;
}

// A few libFuzzer-style mutations: bit flips, byte sets, inserts, erases, truncation,
// duplication and splicing with another input.
Input mutate(Input in, const std::vector<Input>& corpus, std::mt19937_64& rng,
             std::size_t max_len) {
  const int ops = 1 + static_cast<int>(rng() % 6);
  auto pick = [&](std::size_t n) { return n == 0 ? 0 : static_cast<std::size_t>(rng() % n); };
  for (int op = 0; op < ops; ++op) {
    switch (rng() % 7) {
      case 0:
        if (!in.empty()) in[pick(in.size())] ^= static_cast<std::uint8_t>(1U << (rng() % 8));
        break;
      case 1:
        if (!in.empty()) in[pick(in.size())] = static_cast<std::uint8_t>(rng());
        break;
      case 2:
        in.insert(in.begin() + static_cast<std::ptrdiff_t>(pick(in.size() + 1)),
                  static_cast<std::uint8_t>(rng()));
        break;
      case 3:
        if (!in.empty()) {
          const std::size_t at = pick(in.size());
          const std::size_t len = std::min<std::size_t>(in.size() - at, 1 + rng() % 16);
          in.erase(in.begin() + static_cast<std::ptrdiff_t>(at),
                   in.begin() + static_cast<std::ptrdiff_t>(at + len));
        }
        break;
      case 4:
        in.resize(pick(in.size() + 1));
        break;
      case 5:
        if (!in.empty()) {
          const std::size_t at = pick(in.size());
          const std::size_t len = std::min<std::size_t>(in.size() - at, 1 + rng() % 32);
          Input piece(in.begin() + static_cast<std::ptrdiff_t>(at),
                      in.begin() + static_cast<std::ptrdiff_t>(at + len));
          in.insert(in.begin() + static_cast<std::ptrdiff_t>(pick(in.size() + 1)), piece.begin(),
                    piece.end());
        }
        break;
      default:
        if (!corpus.empty()) {
          const Input& other = corpus[pick(corpus.size())];
          const std::size_t cut = pick(in.size() + 1);
          const std::size_t from = pick(other.size() + 1);
          in.resize(cut);
          in.insert(in.end(), other.begin() + static_cast<std::ptrdiff_t>(from), other.end());
        }
        break;
    }
  }
  if (in.size() > max_len) in.resize(max_len);
  return in;
}

}  // namespace

int main(int argc, char** argv) {
  long runs = 3000;
  std::uint64_t seed = 1;
  std::size_t max_len = 4096;
  std::vector<std::filesystem::path> files;
  for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) std::signal(sig, print_current_input);
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg.starts_with("--runs=")) {
      runs = std::atol(argv[i] + 7);
    } else if (arg.starts_with("--seed=")) {
      seed = std::strtoull(argv[i] + 7, nullptr, 10);
    } else if (arg.starts_with("--max-len=")) {
      max_len = std::strtoull(argv[i] + 10, nullptr, 10);
    } else if (std::filesystem::is_directory(arg)) {
      for (const auto& e : std::filesystem::recursive_directory_iterator(arg)) {
        if (e.is_regular_file()) files.push_back(e.path());
      }
    } else if (std::filesystem::is_regular_file(arg)) {
      files.emplace_back(arg);
    } else {
      std::fprintf(stderr, "%s: no such corpus file or directory: %s\n", argv[0], argv[i]);
      return 2;
    }
  }
  std::sort(files.begin(), files.end());  // same order, same run, every time

  std::vector<Input> corpus;
  for (const auto& f : files) {
    corpus.push_back(read_file(f));
    run(corpus.back());
  }
  std::mt19937_64 rng(seed);
  for (long i = 0; i < runs; ++i) {
    if (!corpus.empty() && rng() % 4 != 0) {
      run(mutate(corpus[static_cast<std::size_t>(rng() % corpus.size())], corpus, rng, max_len));
    } else {
      Input random(static_cast<std::size_t>(rng() % std::min<std::size_t>(max_len, 300) + 1) - 1);
      for (auto& b : random) b = static_cast<std::uint8_t>(rng());
      run(random);
    }
  }
  std::printf("%s: %zu corpus files and %ld generated inputs passed\n", argv[0], corpus.size(),
              runs);
  return 0;
}
