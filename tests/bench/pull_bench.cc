// SPDX-License-Identifier: Apache-2.0
// Image benchmarks against a local docker-registry:
//  1. pull + unpack of a generated image of 5 layers (~200 MiB uncompressed, gzip): wall
//     time, MB/s, and berthd's peak RSS during the pull (VmHWM);
//  2. ImageStatus and ListImages latency with 100 images in the store.
//
//   berth_bench_pull [--layer-mib N] [--images N]
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <cstdio>
#include <random>

#include "cri/v1/api.grpc.pb.h"
#include "tests/bench/bench_util.h"
#include "tests/integration/registry_harness.h"

namespace berth::bench {
namespace {

using namespace berth::testing;  // NOLINT(build/namespaces)

// A layer directory of `mib` MiB: half random bytes (incompressible), half text.
void MakeLayer(const fs::path& dir, int index, int mib) {
  fs::create_directories(dir / "data");
  std::mt19937_64 rng(index);
  std::string chunk(1 << 20, '\0');
  for (int f = 0; f < mib; ++f) {
    if (f % 2 == 0) {
      for (size_t i = 0; i < chunk.size(); i += 8) {
        uint64_t r = rng();
        std::memcpy(&chunk[i], &r, 8);
      }
    } else {
      for (size_t i = 0; i < chunk.size(); ++i) chunk[i] = "berth layer text\n"[i % 17];
    }
    WriteFile(dir / "data" / ("file-" + std::to_string(index) + "-" + std::to_string(f)),
              chunk);
  }
}

int Main(int argc, char** argv) {
  int layer_mib = 40, images = 100;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--layer-mib") layer_mib = std::max(1, std::atoi(argv[i + 1]));
    if (a == "--images") images = std::max(1, std::atoi(argv[i + 1]));
  }
  if (geteuid() != 0) {
    std::fprintf(stderr, "berth_bench_pull: run as root\n");
    return 1;
  }
  TempDir tmp;
  Registry registry(tmp.path() / "registry");
  if (!registry.Start()) {
    std::fprintf(stderr, "docker-registry did not start\n");
    return 1;
  }
  std::vector<std::string> args = {"--repo", "bench/big", "--tag", "v1"};
  for (int l = 0; l < 5; ++l) {
    fs::path dir = tmp.path() / ("layer" + std::to_string(l));
    MakeLayer(dir, l, layer_mib);
    args.push_back("--layer");
    args.push_back(dir.string());
  }
  std::string log;
  if (registry.Push(args, &log).empty()) {
    std::fprintf(stderr, "push failed:\n%s\n", log.c_str());
    return 1;
  }
  fs::path berth_dir = tmp.path() / "berth";
  fs::create_directories(berth_dir / "net.d");
  Daemon daemon(berth_dir);
  WriteFile(daemon.config(), BaseConfig(berth_dir / "net.d"));
  if (!daemon.Start()) {
    std::fprintf(stderr, "berthd did not start:\n%s\n", daemon.Log().c_str());
    return 1;
  }
  auto channel = grpc::CreateChannel("unix://" + daemon.socket().string(),
                                     grpc::InsecureChannelCredentials());
  auto stub = runtime::v1::ImageService::NewStub(channel);
  long rss_before = ProcField(daemon.pid(), "status", "VmRSS");

  runtime::v1::PullImageRequest req;
  req.mutable_image()->set_image(registry.host() + "/bench/big:v1");
  runtime::v1::PullImageResponse resp;
  grpc::ClientContext ctx;
  auto t0 = std::chrono::steady_clock::now();
  grpc::Status s = stub->PullImage(&ctx, req, &resp);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!s.ok()) {
    std::fprintf(stderr, "pull failed: %s\n%s\n", s.error_message().c_str(), daemon.Log().c_str());
    return 1;
  }
  long hwm = ProcField(daemon.pid(), "status", "VmHWM");
  double mb = 5.0 * layer_mib * 1048576 / 1e6;
  std::printf("pull + unpack, 5 layers x %d MiB (gzip, half incompressible), local registry\n",
              layer_mib);
  std::printf("  wall time                %8.2f s\n", secs);
  std::printf("  throughput               %8.1f MB/s (uncompressed)\n", mb / secs);
  std::printf("  berthd RSS before        %8.1f MiB\n", rss_before / 1024.0);
  std::printf("  berthd peak RSS (VmHWM)  %8.1f MiB\n", hwm / 1024.0);

  // 100 small images, then status/list latency.
  for (int i = 0; i < images; ++i) {
    fs::path dir = tmp.path() / ("small" + std::to_string(i));
    WriteFile(dir / "id", std::to_string(i) + "\n");
    std::string ref = "bench/small" + std::to_string(i);
    if (registry.Push({"--repo", ref, "--tag", "v1", "--layer", dir.string()}, &log).empty()) {
      std::fprintf(stderr, "push failed:\n%s\n", log.c_str());
      return 1;
    }
    runtime::v1::PullImageRequest r;
    r.mutable_image()->set_image(registry.host() + "/" + ref + ":v1");
    grpc::ClientContext c;
    if (!stub->PullImage(&c, r, &resp).ok()) return 1;
  }
  std::vector<double> status_ms, list_ms;
  size_t listed = 0;
  for (int i = 0; i < 200; ++i) {
    runtime::v1::ImageStatusRequest sr;
    sr.mutable_image()->set_image(registry.host() + "/bench/small" + std::to_string(i % images) +
                                  ":v1");
    runtime::v1::ImageStatusResponse sresp;
    grpc::ClientContext c1;
    auto a = std::chrono::steady_clock::now();
    stub->ImageStatus(&c1, sr, &sresp);
    status_ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
    runtime::v1::ListImagesResponse lresp;
    grpc::ClientContext c2;
    a = std::chrono::steady_clock::now();
    stub->ListImages(&c2, {}, &lresp);
    list_ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - a).count());
    listed = lresp.images_size();
  }
  std::printf("CRI latency with %zu images (200 calls each)\n", listed);
  std::printf("  ImageStatus   median %6.2f ms  p99 %6.2f ms\n", Summarize(status_ms).median, Summarize(status_ms).p99);
  std::printf("  ListImages    median %6.2f ms  p99 %6.2f ms\n", Summarize(list_ms).median, Summarize(list_ms).p99);
  std::printf("  berthd RSS with %zu images: %.1f MiB\n", listed,
              ProcField(daemon.pid(), "status", "VmRSS") / 1024.0);
  return 0;
}

}  // namespace
}  // namespace berth::bench

int main(int argc, char** argv) { return berth::bench::Main(argc, argv); }
