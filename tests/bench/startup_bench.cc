// SPDX-License-Identifier: Apache-2.0
// Startup benchmark: starts berthd with every built-in plugin on a private root, state and
// socket, N times, and prints the time from exec to a socket that accepts connections and
// answers CRI Version, and berthd's idle memory (RSS and PSS) two seconds after ready.
//
//   berth_bench_startup [--runs N] [--berthd PATH]
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdio>
#include <numeric>

#include "cri/v1/api.grpc.pb.h"
#include "tests/bench/bench_util.h"
#include "tests/integration/daemon_harness.h"

namespace berth::bench {
namespace {

using namespace berth::testing;  // NOLINT(build/namespaces)

int Main(int argc, char** argv) {
  int runs = 10;
  std::string berthd = BERTHD_BIN;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--runs") runs = std::max(1, std::atoi(argv[i + 1]));
    if (a == "--berthd") berthd = argv[i + 1];
  }
  if (geteuid() != 0) {
    std::fprintf(stderr, "berth_bench_startup: run as root (berthd needs it)\n");
    return 1;
  }
  TempDir tmp;
  fs::create_directories(tmp.path() / "net.d");
  WriteFile(tmp.path() / "net.d" / "10-bridge.conflist", BridgeConflist());
  std::vector<double> listen_ms, version_ms, rss_kib, pss_kib;
  for (int run = 0; run < runs; ++run) {
    fs::path dir = tmp.path() / ("run" + std::to_string(run));
    fs::create_directories(dir);
    Daemon d(dir);
    WriteFile(d.config(), BaseConfig(tmp.path() / "net.d"));
    std::vector<std::string> args = d.Args();
    args[0] = berthd;
    auto t0 = std::chrono::steady_clock::now();
    pid_t pid = Spawn(args, d.log());
    bool listening = false;
    while (std::chrono::steady_clock::now() - t0 < std::chrono::seconds(15)) {
      if (CanConnect(d.socket())) {
        listening = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    auto t1 = std::chrono::steady_clock::now();
    auto channel = grpc::CreateChannel("unix://" + d.socket().string(),
                                       grpc::InsecureChannelCredentials());
    auto stub = runtime::v1::RuntimeService::NewStub(channel);
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    runtime::v1::VersionResponse v;
    bool answered = listening && stub->Version(&ctx, {}, &v).ok();
    auto t2 = std::chrono::steady_clock::now();
    if (!answered) {
      std::fprintf(stderr, "run %d: berthd did not get ready:\n%s\n", run, d.Log().c_str());
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::seconds(2));
    rss_kib.push_back(ProcField(pid, "smaps_rollup", "Rss"));
    pss_kib.push_back(ProcField(pid, "smaps_rollup", "Pss"));
    listen_ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    version_ms.push_back(std::chrono::duration<double, std::milli>(t2 - t0).count());
    kill(pid, SIGTERM);
    if (!WaitExit(pid, std::chrono::seconds(10))) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
  auto print = [](const char* what, const char* unit, const Stats& s) {
    std::printf("%-34s median %8.1f %-4s (min %.1f, max %.1f)\n", what, s.median, unit, s.min,
                s.max);
  };
  std::printf("berthd startup, %d runs, all built-in plugins\n", runs);
  print("exec -> socket accepting", "ms", Summarize(listen_ms));
  print("exec -> first Version answered", "ms", Summarize(version_ms));
  std::vector<double> rss_mib, pss_mib;
  for (double k : rss_kib) rss_mib.push_back(k / 1024);
  for (double k : pss_kib) pss_mib.push_back(k / 1024);
  print("idle RSS (2 s after ready)", "MiB", Summarize(rss_mib));
  print("idle PSS (2 s after ready)", "MiB", Summarize(pss_mib));
  return 0;
}

}  // namespace
}  // namespace berth::bench

int main(int argc, char** argv) { return berth::bench::Main(argc, argv); }
