// SPDX-License-Identifier: Apache-2.0
// OCI spec generation (plugins/cri/oci_spec.h) for a container with a full security context:
// a user resolved from the image's /etc/passwd and /etc/group, supplemental groups,
// capabilities added and dropped, the RuntimeDefault seccomp profile built for them,
// NoNewPrivs, a read-only root, masked and read-only paths, bind mounts, devices, resources,
// and a pod with sysctls. Prints the median and p99 of N builds.
//
//   berth_bench_spec [--runs N=2000]
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "plugins/cri/oci_spec.h"
#include "tests/bench/bench_util.h"

namespace berth::bench {
namespace {

namespace fs = std::filesystem;
namespace v1 = runtime::v1;

v1::PodSandboxConfig Pod() {
  v1::PodSandboxConfig s;
  s.mutable_metadata()->set_name("web");
  s.mutable_metadata()->set_uid("uid-1");
  s.mutable_metadata()->set_namespace_("default");
  s.set_hostname("web");
  (*s.mutable_linux()->mutable_sysctls())["net.ipv4.ip_unprivileged_port_start"] = "0";
  (*s.mutable_linux()->mutable_sysctls())["kernel.shm_rmid_forced"] = "1";
  return s;
}

v1::ContainerConfig Container(const std::string& host_dir) {
  v1::ContainerConfig c;
  c.mutable_metadata()->set_name("app");
  c.mutable_image()->set_image("sha256:abc");
  c.add_command("/bin/app");
  c.add_args("--serve");
  for (int i = 0; i < 20; ++i) {
    v1::KeyValue* kv = c.add_envs();
    kv->set_key("VAR" + std::to_string(i));
    kv->set_value("value" + std::to_string(i));
  }
  v1::LinuxContainerSecurityContext* sc = c.mutable_linux()->mutable_security_context();
  sc->set_run_as_username("app");
  sc->add_supplemental_groups(4000);
  sc->mutable_capabilities()->add_add_capabilities("NET_ADMIN");
  sc->mutable_capabilities()->add_drop_capabilities("MKNOD");
  sc->mutable_seccomp()->set_profile_type(v1::SecurityProfile::RuntimeDefault);
  sc->set_no_new_privs(true);
  sc->set_readonly_rootfs(true);
  v1::LinuxContainerResources* r = c.mutable_linux()->mutable_resources();
  r->set_cpu_period(100000);
  r->set_cpu_quota(50000);
  r->set_cpu_shares(512);
  r->set_memory_limit_in_bytes(256 << 20);
  r->set_oom_score_adj(500);
  for (const char* path : {"/data", "/config"}) {
    v1::Mount* m = c.add_mounts();
    m->set_host_path(host_dir);
    m->set_container_path(path);
    m->set_readonly(true);
  }
  v1::Device* d = c.add_devices();
  d->set_host_path("/dev/null");
  d->set_container_path("/dev/extra-null");
  d->set_permissions("rw");
  return c;
}

int Main(int argc, char** argv) {
  int runs = 2000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::string(argv[i]) == "--runs") runs = std::max(1, std::atoi(argv[i + 1]));
  }
  char tmpl[] = "/tmp/berth-spec-bench-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) return 1;
  const fs::path root = tmpl;
  fs::create_directories(root / "rootfs/etc");
  fs::create_directories(root / "data");
  std::ofstream(root / "rootfs/etc/passwd") << "root:x:0:0:root:/root:/bin/sh\n"
                                               "app:x:1000:1000:app:/home/app:/bin/sh\n";
  std::ofstream(root / "rootfs/etc/group") << "root:x:0:\napp:x:1000:\nstaff:x:50:app\n";
  cri::SpecInputs in;
  in.sandbox_id = "sb1";
  in.container_id = "c1";
  in.rootfs_path = (root / "rootfs").string();
  in.spec_root_path = "rootfs";
  in.net_ns_path = "/var/run/netns/cni-1";
  in.ipc_ns_path = "/proc/1/ns/ipc";
  in.uts_ns_path = "/proc/1/ns/uts";
  in.pid_ns_path = "/proc/1/ns/pid";
  in.cgroups_path = "/kubepods/pod1/c1";
  const nlohmann::json image = {{"config", {{"Env", {"PATH=/usr/bin:/bin"}}, {"User", "app"}}}};
  const v1::PodSandboxConfig pod = Pod();
  const v1::ContainerConfig container = Container((root / "data").string());

  std::vector<double> us;
  size_t bytes = 0;
  for (int i = 0; i < runs; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    absl::StatusOr<nlohmann::json> spec = cri::BuildContainerSpec(pod, container, image, in);
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0)
                     .count());
    if (!spec.ok()) {
      std::fprintf(stderr, "berth_bench_spec: %s\n", std::string(spec.status().message()).c_str());
      fs::remove_all(root);
      return 1;
    }
    if (i == 0) bytes = spec->dump().size();
  }
  fs::remove_all(root);
  Stats s = Summarize(us);
  std::printf("OCI spec of a container with a full security context (%zu bytes of JSON), "
              "%d builds:\n", bytes, runs);
  std::printf("  %-40s median %8.1f us  p99 %8.1f us  (min %.1f, max %.1f)\n",
              "BuildContainerSpec", s.median, s.p99, s.min, s.max);
  return 0;
}

}  // namespace
}  // namespace berth::bench

int main(int argc, char** argv) { return berth::bench::Main(argc, argv); }
