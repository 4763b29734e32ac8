// SPDX-License-Identifier: Apache-2.0
// Pod benchmark through the CRI socket, with the real berthd, runc and berth-shim, images
// from a local docker-registry (tests/integration/pod_harness.h):
//  1. RunPodSandbox + CreateContainer + StartContainer of one host-network pod with one
//     busybox `sleep` container, N runs (each pod removed after, not timed);
//     then RunPodSandbox and StopPodSandbox alone, host network against the pod network (a
//     bridge with host-local addresses: netns + CNI ADD/DEL), N runs each;
//  2. the same for P pods at once (total wall time, per-pod median);
//  3. with M pods running (host network, one `sleep` container each): ListContainers and
//     ListPodSandbox latency over C calls, berthd's RSS and the RSS of the berth-shims.
//
//   berth_bench_pods [--runs N=20] [--parallel P=20] [--pods M=100] [--calls C=200]
//                    [--handler H]   (H: a runtime handler of tests/integration/pod_harness.h,
//                                     e.g. shimv2-test: containerd-shim-runc-v2 instead of
//                                     berth-shim; default: runc through berth-shim)
//                    [--shim-cgroup pod|none]  (io.berth.cri shim_cgroup; default pod)
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdio>
#include <functional>
#include <mutex>
#include <thread>

#include "cri/v1/api.grpc.pb.h"
#include "tests/bench/bench_util.h"
#include "tests/integration/pod_harness.h"

namespace berth::bench {
namespace {

using namespace berth::testing;  // NOLINT(build/namespaces)

double MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// The runtime handler of every pod (--handler).
std::string g_handler;

// One host-network pod with one sleep container, started; its id in *pod_id.
grpc::Status StartPod(PodHarness& h, const std::string& name, std::string* pod_id) {
  v1::PodSandboxConfig pod = h.NewPod(name, Network::kHost);
  grpc::Status s = h.RunPod(pod, pod_id, g_handler);
  if (!s.ok()) return s;
  std::string cid;
  return h.RunContainer(*pod_id, pod, h.NewContainer(pod, "sleep", {"sleep", "2147483647"}), &cid);
}

grpc::Status RemovePod(PodHarness& h, const std::string& pod_id) {
  grpc::Status s = h.StopPod(pod_id);
  return s.ok() ? h.RemovePod(pod_id) : s;
}

// Runs work(0..n-1) on `workers` threads; the first error is kept in *error.
void InParallel(int n, int workers, const std::function<grpc::Status(int)>& work,
                std::string* error) {
  std::atomic<int> next{0};
  std::mutex mu;
  std::vector<std::thread> threads;
  for (int w = 0; w < workers; ++w) {
    threads.emplace_back([&] {
      for (int i = next++; i < n; i = next++) {
        grpc::Status s = work(i);
        if (!s.ok()) {
          std::lock_guard<std::mutex> lock(mu);
          if (error->empty()) *error = "item " + std::to_string(i) + ": " + Describe(s);
        }
      }
    });
  }
  for (auto& t : threads) t.join();
}

void Print(const char* what, const char* unit, const Stats& s) {
  std::printf("  %-40s median %8.1f %-3s (min %.1f, max %.1f)\n", what, s.median, unit, s.min,
              s.max);
}
void PrintP99(const char* what, const Stats& s) {
  std::printf("  %-40s p50 %8.2f ms  p99 %8.2f ms  (max %.2f)\n", what, s.median, s.p99, s.max);
}

int Fail(PodHarness& h, const std::string& what) {
  std::fprintf(stderr, "berth_bench_pods: %s\n---- berthd log (last lines) ----\n%s\n",
               what.c_str(), h.LogTail(60).c_str());
  std::string forced = h.Cleanup();
  if (!forced.empty()) std::fprintf(stderr, "%s", forced.c_str());
  return 1;
}

int Main(int argc, char** argv) {
  int runs = 20, parallel = 20, many = 100, calls = 200;
  std::string shim_cgroup = "pod";
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--handler") {
      g_handler = argv[i + 1];
      continue;
    }
    if (a == "--shim-cgroup") {
      shim_cgroup = argv[i + 1];
      continue;
    }
    int v = std::max(1, std::atoi(argv[i + 1]));
    if (a == "--runs") runs = v;
    if (a == "--parallel") parallel = v;
    if (a == "--pods") many = v;
    if (a == "--calls") calls = v;
  }
  if (geteuid() != 0) {
    std::fprintf(stderr, "berth_bench_pods: run as root (berthd, runc and cgroups need it)\n");
    return 1;
  }
  ImageRegistry registry;
  std::string error;
  if (!registry.Start(&error)) {
    std::fprintf(stderr, "berth_bench_pods: %s\n", error.c_str());
    return 1;
  }
  PodHarness h(registry.images(), "bench");
  h.AddCriOptions("    shim_cgroup: " + shim_cgroup + "\n");
  if (!h.Start(&error)) {
    std::fprintf(stderr, "berth_bench_pods: %s\n", error.c_str());
    h.Cleanup();
    return 1;
  }

  // Warm-up (pulls the pause image).
  std::string pod_id;
  grpc::Status s = StartPod(h, "warm-up", &pod_id);
  if (!s.ok()) return Fail(h, "warm-up pod: " + Describe(s));
  if (!(s = RemovePod(h, pod_id)).ok()) return Fail(h, "warm-up removal: " + Describe(s));

  // 1. One pod at a time.
  std::vector<double> start_ms, remove_ms;
  for (int r = 0; r < runs; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    s = StartPod(h, "one-" + std::to_string(r), &pod_id);
    start_ms.push_back(MsSince(t0));
    if (!s.ok()) return Fail(h, "pod " + std::to_string(r) + ": " + Describe(s));
    t0 = std::chrono::steady_clock::now();
    if (!(s = RemovePod(h, pod_id)).ok()) return Fail(h, "removal: " + Describe(s));
    remove_ms.push_back(MsSince(t0));
  }
  std::printf("pods through CRI (host network, one busybox sleep container each), handler %s\n",
              g_handler.empty() ? "runc (berth-shim)" : g_handler.c_str());
  std::printf("one pod at a time, %d runs:\n", runs);
  Print("RunPodSandbox+CreateContainer+Start", "ms", Summarize(start_ms));
  Print("StopPodSandbox+RemovePodSandbox", "ms", Summarize(remove_ms));

  // 1b. The sandbox alone: what the pod network costs on top of host networking.
  for (Network net : {Network::kHost, Network::kPod}) {
    std::vector<double> run_ms, stop_ms;
    for (int r = 0; r < runs; ++r) {
      v1::PodSandboxConfig pod = h.NewPod("net-" + std::to_string(r), net);
      auto t0 = std::chrono::steady_clock::now();
      s = h.RunPod(pod, &pod_id, g_handler);
      run_ms.push_back(MsSince(t0));
      if (!s.ok()) return Fail(h, "sandbox " + std::to_string(r) + ": " + Describe(s));
      t0 = std::chrono::steady_clock::now();
      if (!(s = h.StopPod(pod_id)).ok()) return Fail(h, "stop: " + Describe(s));
      stop_ms.push_back(MsSince(t0));
      if (!(s = h.RemovePod(pod_id)).ok()) return Fail(h, "removal: " + Describe(s));
    }
    const bool host = net == Network::kHost;
    std::printf("sandbox alone, %s, %d runs:\n",
                host ? "host network" : "pod network (bridge + host-local)", runs);
    Print("RunPodSandbox", "ms", Summarize(run_ms));
    Print("StopPodSandbox", "ms", Summarize(stop_ms));
  }

  // 2. `parallel` pods at once.
  std::vector<std::string> ids(parallel);
  std::vector<double> each_ms(parallel);
  auto t0 = std::chrono::steady_clock::now();
  InParallel(
      parallel, parallel,
      [&](int i) {
        auto p0 = std::chrono::steady_clock::now();
        grpc::Status st = StartPod(h, "par-" + std::to_string(i), &ids[i]);
        each_ms[i] = MsSince(p0);
        return st;
      },
      &error);
  double wall_ms = MsSince(t0);
  if (!error.empty()) return Fail(h, "parallel start: " + error);
  t0 = std::chrono::steady_clock::now();
  InParallel(
      parallel, parallel, [&](int i) { return RemovePod(h, ids[i]); }, &error);
  double remove_wall_ms = MsSince(t0);
  if (!error.empty()) return Fail(h, "parallel removal: " + error);
  std::printf("%d pods at once:\n", parallel);
  std::printf("  %-40s %8.1f ms\n", "total wall time to all started", wall_ms);
  Print("per pod", "ms", Summarize(each_ms));
  std::printf("  %-40s %8.1f ms\n", "total wall time to all removed", remove_wall_ms);

  // 3. `many` pods running.
  ids.assign(many, "");
  t0 = std::chrono::steady_clock::now();
  InParallel(
      many, 4, [&](int i) { return StartPod(h, "many-" + std::to_string(i), &ids[i]); }, &error);
  double many_ms = MsSince(t0);
  if (!error.empty()) return Fail(h, "starting " + std::to_string(many) + " pods: " + error);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  std::vector<double> list_c_ms, list_p_ms;
  size_t listed_c = 0, listed_p = 0;
  for (int i = 0; i < calls; ++i) {
    v1::ListContainersResponse lc;
    auto c0 = std::chrono::steady_clock::now();
    s = h.rt().ListContainers(CriContext().get(), {}, &lc);
    list_c_ms.push_back(MsSince(c0));
    if (!s.ok()) return Fail(h, "ListContainers: " + Describe(s));
    listed_c = lc.containers_size();
    v1::ListPodSandboxResponse lp;
    c0 = std::chrono::steady_clock::now();
    s = h.rt().ListPodSandbox(CriContext().get(), {}, &lp);
    list_p_ms.push_back(MsSince(c0));
    if (!s.ok()) return Fail(h, "ListPodSandbox: " + Describe(s));
    listed_p = lp.items_size();
  }
  long berthd_rss = ProcField(h.daemon().pid(), "status", "VmRSS");
  long shim_rss = 0;
  int shims = 0;
  for (pid_t pid : ProcessesOf(h.root(), "")) {
    std::error_code ec;
    fs::path exe = fs::read_symlink("/proc/" + std::to_string(pid) + "/exe", ec);
    const std::string name = ec ? "" : exe.filename().string();
    if (name != "berth-shim" && name.rfind("containerd-shim", 0) != 0) continue;
    long rss = ProcField(pid, "status", "VmRSS");
    if (rss > 0) shim_rss += rss;
    ++shims;
  }
  std::printf("%d pods running (started 4 at a time in %.1f s):\n", many, many_ms / 1000);
  PrintP99(("ListContainers (" + std::to_string(listed_c) + " listed)").c_str(),
           Summarize(list_c_ms));
  PrintP99(("ListPodSandbox (" + std::to_string(listed_p) + " listed)").c_str(),
           Summarize(list_p_ms));
  std::printf("  %-40s %8.1f MiB\n", "berthd RSS (VmRSS)", berthd_rss / 1024.0);
  std::printf("  %-40s %8.1f MiB (%d shims, %.2f MiB each)\n", "shim RSS, total",
              shim_rss / 1024.0, shims, shims > 0 ? shim_rss / 1024.0 / shims : 0.0);

  t0 = std::chrono::steady_clock::now();
  InParallel(
      many, 4, [&](int i) { return RemovePod(h, ids[i]); }, &error);
  if (!error.empty()) return Fail(h, "removing the pods: " + error);
  std::printf("  %-40s %8.1f s\n", "removal of all (4 at a time)", MsSince(t0) / 1000);
  std::string forced = h.Cleanup();
  if (!forced.empty()) std::fprintf(stderr, "cleanup had to use force:\n%s", forced.c_str());
  return 0;
}

}  // namespace
}  // namespace berth::bench

int main(int argc, char** argv) { return berth::bench::Main(argc, argv); }
