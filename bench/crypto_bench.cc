// wardfs_crypto_bench: single-thread throughput of the chunk codec (seal_chunk + open_chunk),
// for each cipher at 4 KiB and 64 KiB chunks. MB = 10^6 bytes of plaintext.
//
// The clock is the thread's CPU time (user + system, so the getrandom() behind each chunk's
// nonce counts), which keeps the figures steady when other work shares the machine and makes
// them comparable with `openssl speed`, which divides by CPU time too. Wall time is reported
// beside it in --json output.
//
//   wardfs_crypto_bench [--json] [--detail] [--seconds S]
//     --json     one JSON object per line: a header line, then one line per measurement
//     --detail   also time seal alone, open alone, seal with a fixed nonce, and drawing
//                one random nonce (random_fill, what seal_chunk does per chunk)
//     --seconds  CPU seconds per measurement (default 1.5)

#include <time.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "crypto/aead.h"
#include "crypto/bytes.h"
#include "crypto/file_format.h"
#include "crypto/secret.h"

namespace {

using namespace wardfs::crypto;

struct Options {
  bool json = false;
  bool detail = false;
  double seconds = 1.5;
};

[[noreturn]] void usage(int code) {
  std::fprintf(code == 0 ? stdout : stderr,
               "usage: wardfs_crypto_bench [--json] [--detail] [--seconds S]\n"
               "Single-thread seal+open throughput of wardfs chunks (MB = 10^6 bytes).\n");
  std::exit(code);
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--json") {
      o.json = true;
    } else if (a == "--detail") {
      o.detail = true;
    } else if (a == "--seconds" && i + 1 < argc) {
      o.seconds = std::strtod(argv[++i], nullptr);
      if (!(o.seconds > 0 && o.seconds <= 600)) usage(2);
    } else if (a == "--help" || a == "-h") {
      usage(0);
    } else {
      usage(2);
    }
  }
  return o;
}

double thread_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

double wall_seconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

struct Timing {
  std::uint64_t ops = 0;
  double cpu = 0;
  double wall = 0;
  // Plaintext bytes per second, in MB (10^6), counting each op as `bytes_per_op`.
  double mb_per_s(std::size_t bytes_per_op) const { return double(ops) * bytes_per_op / cpu / 1e6; }
};

// Runs op() until `seconds` of CPU time have passed, checking the clock once per batch so the
// clock's own cost stays out of the figure. A short untimed warm-up comes first.
template <typename Op>
Timing time_op(double seconds, Op&& op) {
  for (int i = 0; i < 200; ++i) op();
  std::uint64_t batch = 16;
  Timing t;
  const double cpu0 = thread_cpu_seconds();
  const double wall0 = wall_seconds();
  while (true) {
    for (std::uint64_t i = 0; i < batch; ++i) op();
    t.ops += batch;
    t.cpu = thread_cpu_seconds() - cpu0;
    if (t.cpu >= seconds) break;
    if (t.cpu < seconds / 100) batch *= 2;  // aim for roughly 100 clock reads per run
  }
  t.wall = wall_seconds() - wall0;
  return t;
}

struct Result {
  CipherId cipher;
  std::uint32_t chunk_size;
  Timing round_trip;  // one op = seal_chunk then open_chunk of the same chunk
  // --detail only
  Timing seal, open, seal_fixed_nonce, nonce;
};

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "wardfs_crypto_bench: %s\n", what);
  std::exit(1);
}

Result measure(CipherId cipher, std::uint32_t chunk_size, const Options& opt) {
  const ChunkLayout layout(cipher, chunk_size);
  const SecretBytes key = SecretBytes::random(kAeadKeySize);
  const auto aead = make_aead(cipher, key.view());
  const FileId file_id = random_file_id();
  const std::uint32_t generation = 1;

  Bytes plain(chunk_size);
  random_fill(plain);
  Bytes sealed(layout.slot_size());
  Bytes opened(chunk_size);

  // Sanity: what we time must round-trip, or the figure means nothing.
  seal_chunk(layout, *aead, generation, {file_id, 0, false}, plain, sealed);
  if (!open_chunk(layout, *aead, {file_id, 0, false}, sealed, opened) || opened != plain) {
    die("a sealed chunk did not open to its plaintext");
  }

  Result r{.cipher = cipher, .chunk_size = chunk_size};
  std::uint64_t index = 0;
  r.round_trip = time_op(opt.seconds, [&] {
    const ChunkPosition pos{file_id, index++, false};
    seal_chunk(layout, *aead, generation, pos, plain, sealed);
    if (!open_chunk(layout, *aead, pos, sealed, opened)) die("open_chunk failed");
  });

  if (opt.detail) {
    r.seal = time_op(opt.seconds, [&] {
      seal_chunk(layout, *aead, generation, {file_id, 7, false}, plain, sealed);
    });
    r.open = time_op(opt.seconds, [&] {  // `sealed` holds chunk 7 from the loop above
      if (!open_chunk(layout, *aead, {file_id, 7, false}, sealed, opened)) die("open_chunk failed");
    });
    const Bytes nonce(layout.nonce_size(), 0x5a);
    r.seal_fixed_nonce = time_op(opt.seconds, [&] {
      seal_chunk_with_nonce(layout, *aead, generation, {file_id, 7, false}, plain, nonce, sealed);
    });
    Bytes fresh(layout.nonce_size());
    r.nonce = time_op(opt.seconds / 4, [&] { random_fill(fresh); });
  }
  return r;
}

std::string size_label(std::uint32_t bytes) { return std::to_string(bytes / 1024) + " KiB"; }

void print_markdown(const std::vector<Result>& results, const Options& opt) {
  std::printf("wardfs chunk codec, one thread, %.1f CPU s per row, MB = 10^6 plaintext bytes\n\n",
              opt.seconds);
  std::printf("| cipher | chunk | seal+open MB/s | per pass MB/s | us per seal+open |\n");
  std::printf("|---|---:|---:|---:|---:|\n");
  for (const auto& r : results) {
    const double mbs = r.round_trip.mb_per_s(r.chunk_size);
    std::printf("| %s | %s | %.0f | %.0f | %.2f |\n", std::string(cipher_name(r.cipher)).c_str(),
                size_label(r.chunk_size).c_str(), mbs, 2 * mbs,
                r.round_trip.cpu / double(r.round_trip.ops) * 1e6);
  }
  std::printf("\nper pass = 2 x bytes / time: seal and open each read the chunk once.\n");
  if (!opt.detail) return;
  std::printf(
      "\n| cipher | chunk | seal MB/s | open MB/s | seal, fixed nonce MB/s | ns per nonce |\n");
  std::printf("|---|---:|---:|---:|---:|---:|\n");
  for (const auto& r : results) {
    std::printf("| %s | %s | %.0f | %.0f | %.0f | %.0f |\n",
                std::string(cipher_name(r.cipher)).c_str(), size_label(r.chunk_size).c_str(),
                r.seal.mb_per_s(r.chunk_size), r.open.mb_per_s(r.chunk_size),
                r.seal_fixed_nonce.mb_per_s(r.chunk_size), r.nonce.cpu / double(r.nonce.ops) * 1e9);
  }
  std::printf(
      "\nns per nonce: CPU time of one random_fill of a nonce, which seal_chunk pays per chunk.\n");
}

void print_json(const std::vector<Result>& results, const Options& opt) {
  std::printf(
      "{\"tool\":\"wardfs_crypto_bench\",\"unit\":\"MB/s\",\"mb\":1000000,"
      "\"clock\":\"thread-cpu\",\"seconds_per_run\":%.3f}\n",
      opt.seconds);
  for (const auto& r : results) {
    const double mbs = r.round_trip.mb_per_s(r.chunk_size);
    std::printf(
        "{\"cipher\":\"%s\",\"chunk_size\":%u,\"round_trips\":%llu,\"cpu_seconds\":%.4f,"
        "\"wall_seconds\":%.4f,\"seal_open_mb_s\":%.1f,\"per_pass_mb_s\":%.1f",
        std::string(cipher_name(r.cipher)).c_str(), r.chunk_size,
        static_cast<unsigned long long>(r.round_trip.ops), r.round_trip.cpu, r.round_trip.wall, mbs,
        2 * mbs);
    if (opt.detail) {
      std::printf(
          ",\"seal_mb_s\":%.1f,\"open_mb_s\":%.1f,\"seal_fixed_nonce_mb_s\":%.1f,"
          "\"nonce_ns\":%.0f",
          r.seal.mb_per_s(r.chunk_size), r.open.mb_per_s(r.chunk_size),
          r.seal_fixed_nonce.mb_per_s(r.chunk_size), r.nonce.cpu / double(r.nonce.ops) * 1e9);
    }
    std::printf("}\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse_args(argc, argv);
  std::vector<Result> results;
  for (const CipherId cipher : {CipherId::aes256gcm, CipherId::xchacha20poly1305}) {
    for (const std::uint32_t size : {4096U, 65536U}) results.push_back(measure(cipher, size, opt));
  }
  if (opt.json) {
    print_json(results, opt);
  } else {
    print_markdown(results, opt);
  }
  return 0;
}
