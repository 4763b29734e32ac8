// SPDX-License-Identifier: Apache-2.0
// Pod start latency with the systemd cgroup driver (root): RunPodSandbox + CreateContainer +
// StartContainer of one host-network pod with one busybox `sleep` container, N runs (each
// pod removed after, not timed), as tests/bench/pod_bench.cc measures it, for:
//  1. cgroup_driver: systemd, berthd inside a systemd booted as PID 1 of private namespaces
//     (plugins/cgroup-systemd/tests/booted_systemd.h; runc --systemd-cgroup makes a transient
//     scope per sandbox and container over D-Bus), each pod in a slice of its own
//     (kubepods-besteffort-pod<uid>.slice) started before the pod (`systemctl start`, not
//     timed) as the kubelet does;
//  2. the same with the slice made by systemd when the pause's scope starts;
//  3. cgroup_driver: cgroupfs in the same namespaces (runc makes the cgroup directories);
//  4. cgroup_driver: cgroupfs on the host (tests/integration/pod_harness.h, the
//     berth_bench_pods figure), unless --no-host.
// This binary runs itself again inside the booted systemd for 1 to 3 (the host's network
// namespace stays, so the docker-registry on its loopback serves the images). Removing a
// pod whose pause systemd moved out of its scope's devices cgroup needs berth to kill the
// init directly (docs/cgroup-drivers.md §7).
//
//   berth_bench_systemd_pods [--runs N=20] [--no-host]
#include <sys/types.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>

#include "plugins/cgroup-systemd/tests/booted_systemd.h"
#include "plugins/cgroup-systemd/tests/cri_systemd_harness.h"
#include "tests/bench/bench_util.h"

namespace berth::bench {
namespace {

namespace fs = std::filesystem;
namespace bt = ::berth::testing;
namespace sd = ::berth::cgroup_systemd::testing;
namespace v1 = ::runtime::v1;

// Set for the run inside: the cgroup driver to measure.
constexpr char kDriverEnv[] = "BERTH_SYSTEMD_BENCH_DRIVER";

double MsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

struct Figures {
  Stats start{}, remove{};
  std::string error;
};

// N pods through `start` (returns the pod id), each removed after through `remove`;
// `prepare` runs before each start, not timed.
template <typename Prepare, typename Start, typename Remove>
Figures Measure(int runs, Prepare prepare, Start start, Remove remove) {
  Figures f;
  std::vector<double> start_ms, remove_ms;
  for (int r = -1; r < runs; ++r) {  // r == -1: warm-up (pulls the pause image)
    if (std::string error = prepare(r); !error.empty()) {
      f.error = "pod " + std::to_string(r) + ": " + error;
      return f;
    }
    std::string pod_id;
    auto t0 = std::chrono::steady_clock::now();
    grpc::Status s = start(r, &pod_id);
    double ms = MsSince(t0);
    if (!s.ok()) {
      f.error = "pod " + std::to_string(r) + ": " + bt::Describe(s);
      return f;
    }
    t0 = std::chrono::steady_clock::now();
    s = remove(pod_id);
    double rms = MsSince(t0);
    if (!s.ok()) {
      f.error = "removal of pod " + std::to_string(r) + ": " + bt::Describe(s);
      return f;
    }
    if (r >= 0) {
      start_ms.push_back(ms);
      remove_ms.push_back(rms);
    }
  }
  f.start = Summarize(start_ms);
  f.remove = Summarize(remove_ms);
  return f;
}

// Inside the booted systemd: berthd with the driver of kDriverEnv ("systemd": each pod's slice
// started before the pod, as the kubelet does, not timed; "systemd-implicit": the slice made
// by systemd when the pause's scope starts; "cgroupfs"); prints "result ..." lines.
int Inside(int runs) {
  const std::string mode = std::getenv(kDriverEnv);
  const std::string driver = mode.rfind("systemd", 0) == 0 ? "systemd" : "cgroupfs";
  bt::PodImages images;
  images.pause = std::getenv(sd::kInsidePauseEnv);
  images.busybox = std::getenv(sd::kInsideBusyboxEnv);
  const std::string tag = std::getenv(sd::kInsideTagEnv);
  sd::SystemdCriHarness h(images, fs::path(std::getenv(sd::kInsideRootEnv)) / tag, driver);
  std::string error;
  if (!h.Start(&error)) {
    std::printf("error: %s\n", error.c_str());
    return 1;
  }
  auto parent = [&](int r) {
    const std::string n = r < 0 ? "w" : std::to_string(r);
    return driver == "systemd" ? "kubepods-besteffort-pod" + tag + "_" + n + ".slice"
                               : "/berth-bench-" + tag + "/pod" + n;
  };
  Figures f = Measure(
      runs,
      [&](int r) {
        if (mode != "systemd") return std::string();
        auto [code, out] =
            bt::RunCommand({sd::kSystemctl, "start", parent(r)}, h.root() / "systemctl.log");
        return code == 0 ? std::string() : "systemctl start " + parent(r) + ": " + out;
      },
      [&](int r, std::string* pod_id) {
        v1::PodSandboxConfig pod = h.NewPod("bench-" + std::to_string(r), parent(r));
        grpc::Status s = h.RunPod(pod, pod_id);
        if (!s.ok()) return s;
        std::string cid;
        return h.RunContainer(*pod_id, pod, h.NewContainer(pod, "sleep", {"sleep", "2147483647"}),
                              &cid);
      },
      [&](const std::string& pod_id) {
        grpc::Status s = h.StopPod(pod_id);
        return s.ok() ? h.RemovePod(pod_id) : s;
      });
  if (!f.error.empty()) {
    std::printf("error: %s\n---- berthd log ----\n%s\n", f.error.c_str(), h.LogTail(40).c_str());
    h.Cleanup();
    return 1;
  }
  std::printf("result start %.1f %.1f %.1f\nresult remove %.1f %.1f %.1f\n", f.start.median,
              f.start.min, f.start.max, f.remove.median, f.remove.min, f.remove.max);
  std::string forced = h.Cleanup();
  if (!forced.empty()) std::printf("cleanup had to use force:\n%s", forced.c_str());
  return 0;
}

// Parses the "result" lines of a run inside.
Figures Parse(const sd::CommandResult& r) {
  Figures f;
  std::istringstream lines(r.output);
  bool start = false, remove = false;
  for (std::string line; std::getline(lines, line);) {
    std::istringstream w(line);
    std::string tag, what;
    Stats s{};
    if (!(w >> tag >> what >> s.median >> s.min >> s.max) || tag != "result") continue;
    if (what == "start") f.start = s, start = true;
    if (what == "remove") f.remove = s, remove = true;
  }
  if (r.exit_code != 0 || !start || !remove) f.error = "the run inside failed:\n" + r.output;
  return f;
}

void Print(const char* what, const Figures& f) {
  std::printf("  %-48s median %7.1f ms (min %.1f, max %.1f); removal median %.1f ms\n", what,
              f.start.median, f.start.min, f.start.max, f.remove.median);
}

int Main(int argc, char** argv) {
  int runs = 20;
  bool host = true;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--runs" && i + 1 < argc) runs = std::max(1, std::atoi(argv[++i]));
    if (a == "--no-host") host = false;
  }
  if (::geteuid() != 0) {
    std::fprintf(stderr, "berth_bench_systemd_pods: run as root\n");
    return 1;
  }
  if (std::getenv(kDriverEnv) != nullptr) return Inside(runs);

  absl::StatusOr<std::unique_ptr<sd::BootedSystemd>> systemd = sd::BootedSystemd::Boot();
  if (!systemd.ok()) {
    std::fprintf(stderr, "berth_bench_systemd_pods: %s\n", systemd.status().ToString().c_str());
    return 1;
  }
  bt::ImageRegistry registry;
  std::string error;
  if (!registry.Start(&error)) {
    std::fprintf(stderr, "berth_bench_systemd_pods: %s\n", error.c_str());
    return 1;
  }
  // Short (berthd's sockets live below it); removed once systemd, and with it every mount
  // made inside, is gone.
  bt::TempDir dir("sdbench");
  std::error_code ec;
  const std::string self = fs::read_symlink("/proc/self/exe", ec).string();
  auto inside = [&](const std::string& driver) {
    ::setenv(kDriverEnv, driver.c_str(), 1);
    ::setenv(sd::kInsideRootEnv, dir.str().c_str(), 1);
    ::setenv(sd::kInsidePauseEnv, registry.images().pause.c_str(), 1);
    ::setenv(sd::kInsideBusyboxEnv, registry.images().busybox.c_str(), 1);
    ::setenv(sd::kInsideTagEnv, bt::RandomHex(8).c_str(), 1);
    absl::StatusOr<sd::CommandResult> r = (*systemd)->RunInside(
        {self, "--runs", std::to_string(runs)}, "/", std::chrono::seconds(600));
    for (const char* env : {kDriverEnv, sd::kInsideRootEnv, sd::kInsidePauseEnv,
                            sd::kInsideBusyboxEnv, sd::kInsideTagEnv}) {
      ::unsetenv(env);
    }
    if (!r.ok()) {
      Figures f;
      f.error = r.status().ToString();
      return f;
    }
    return Parse(*r);
  };
  Figures systemd_inside = inside("systemd");
  Figures systemd_implicit = inside("systemd-implicit");
  Figures cgroupfs_inside = inside("cgroupfs");
  Figures cgroupfs_host;
  if (host) {
    bt::PodHarness h(registry.images(), "sdbench-host");
    if (!h.Start(&error)) {
      cgroupfs_host.error = error;
    } else {
      cgroupfs_host = Measure(
          runs, [](int) { return std::string(); },
          [&](int r, std::string* pod_id) {
            v1::PodSandboxConfig pod = h.NewPod("bench-" + std::to_string(r), bt::Network::kHost);
            grpc::Status s = h.RunPod(pod, pod_id);
            if (!s.ok()) return s;
            std::string cid;
            return h.RunContainer(*pod_id, pod,
                                  h.NewContainer(pod, "sleep", {"sleep", "2147483647"}), &cid);
          },
          [&](const std::string& pod_id) {
            grpc::Status s = h.StopPod(pod_id);
            return s.ok() ? h.RemovePod(pod_id) : s;
          });
    }
    std::string forced = h.Cleanup();
    if (!forced.empty()) std::fprintf(stderr, "cleanup had to use force:\n%s", forced.c_str());
  }
  systemd->reset();  // ends everything inside, mounts included, before `dir` goes

  std::printf(
      "pod start latency: RunPodSandbox + CreateContainer + StartContainer, host network, one "
      "busybox sleep container, median of %d (%ld CPUs)\n",
      runs, ::sysconf(_SC_NPROCESSORS_ONLN));
  int rc = 0;
  for (const auto& [what, f] :
       {std::pair<const char*, const Figures&>{"systemd driver, pod slices made before",
                                               systemd_inside},
        {"systemd driver, pod slices made with the pause", systemd_implicit},
        {"cgroupfs driver, in the booted systemd", cgroupfs_inside},
        {"cgroupfs driver, on the host", cgroupfs_host}}) {
    if (!host && &f == &cgroupfs_host) continue;
    if (!f.error.empty()) {
      std::printf("  %-48s failed: %s\n", what, f.error.c_str());
      rc = 1;
      continue;
    }
    Print(what, f);
  }
  return rc;
}

}  // namespace
}  // namespace berth::bench

int main(int argc, char** argv) { return berth::bench::Main(argc, argv); }
