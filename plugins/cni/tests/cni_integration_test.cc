// SPDX-License-Identifier: Apache-2.0
// The network with Debian's containernetworking-plugins (bridge, host-local, loopback,
// portmap, bandwidth) in real network namespaces: addresses, reachability, iptables rules,
// traffic shaping, and that detach (also after the namespace is gone) and a failed attach
// leave nothing behind. Root only.
//
// Every test works on a bridge and a /24 of 10.99.0.0/16 of its own (random), keeps every
// file under a temporary directory, and removes in TearDown whatever it created on the host
// (veths, the bridge, iptables rules that name its sandboxes, namespace pins), also when an
// assertion failed. The tests take a lock file so that parallel ctest runs do not overlap.
#include <fcntl.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugins/cni/cni_network.h"
#include "plugins/cni/tests/test_support.h"
#include "tests/support/shared_host_state.h"

namespace berth::cni {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;
using namespace ::berth::cni::testing;  // NOLINT(build/namespaces)

constexpr char kDebianPlugins[] = "/usr/lib/cni";

struct CmdResult {
  int status = -1;
  std::string output;  // stdout and stderr
};

// Runs a shell command with the system's PATH; its status and output.
CmdResult Sh(const std::string& cmd) {
  CmdResult r;
  std::string full = "PATH=/usr/sbin:/usr/bin:/sbin:/bin; export PATH; " + cmd + " 2>&1";
  FILE* f = ::popen(full.c_str(), "r");
  if (f == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0) r.output.append(buf, n);
  int st = ::pclose(f);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::string RandomHex(int digits) {
  std::random_device rd;
  std::string out;
  for (int i = 0; i < digits; ++i) out += "0123456789abcdef"[rd() % 16];
  return out;
}

// A network namespace pinned on `path`: a thread of its own unshares and bind-mounts its
// namespace there, then ends (no other thread ever changes namespace).
bool MakeNetns(const std::string& path, std::string* error) {
  WriteTextFile(path, "");
  std::thread t([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      *error = std::string("unshare: ") + std::strerror(errno);
      return;
    }
    std::string self =
        "/proc/self/task/" + std::to_string(static_cast<long>(::syscall(SYS_gettid))) + "/ns/net";
    if (::mount(self.c_str(), path.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      *error = std::string("bind mount: ") + std::strerror(errno);
    }
  });
  t.join();
  return error->empty();
}

void RemoveNetns(const std::string& path) {
  ::umount2(path.c_str(), MNT_DETACH);
  ::unlink(path.c_str());
}

class CniIntegrationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    lock_fd_ = ::open("/tmp/berth-cni-integration.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd_ >= 0) ::flock(lock_fd_, LOCK_EX);
  }
  static void TearDownTestSuite() {
    if (lock_fd_ >= 0) ::close(lock_fd_);
    lock_fd_ = -1;
  }

  // portmap's top-level chains go when the last test that may use them ends.
  berth::testing::PortmapChains portmap_chains_;

  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: network namespaces, bridges, iptables";
    for (const char* p : {"bridge", "host-local", "loopback", "portmap", "bandwidth"}) {
      if (::access((std::string(kDebianPlugins) + "/" + p).c_str(), X_OK) != 0) {
        GTEST_SKIP() << kDebianPlugins << "/" << p
                     << " missing: install Debian's containernetworking-plugins";
      }
    }
    for (const char* tool : {"ip", "iptables-save", "nsenter", "tc"}) {
      if (Sh(std::string("command -v ") + tool).status != 0) GTEST_SKIP() << tool << " missing";
    }
    if (::access("/bin/busybox", X_OK) != 0) GTEST_SKIP() << "/bin/busybox missing (ping)";
    const std::string hex = RandomHex(6);
    std::random_device rd;
    octet_ = 1 + static_cast<int>(rd() % 254);
    subnet_ = "10.99." + std::to_string(octet_) + ".0/24";
    gateway_ = "10.99." + std::to_string(octet_) + ".1";
    bridge_ = "bt" + hex;
    network_ = "berth-it-" + hex;
    id_prefix_ = "berthit" + hex;
    conf_ = dir_ / "net.d";
    ipam_ = dir_ / "ipam";
    bin_ = dir_ / "bin";
    std::filesystem::create_directories(conf_);
    std::filesystem::create_directories(dir_ / "pins");
    // The host's end of the network: a bridge with the gateway address. The bridge plugin
    // uses it as it finds it (isGateway false), so no sysctl of the host changes.
    // Its MAC is set explicitly: otherwise the kernel gives the bridge the lowest MAC of its
    // ports, which changes as pods come and go, and the bridge plugin's CHECK compares it.
    CmdResult br =
        Sh("ip link add " + bridge_ + " address 02:be:" + hex.substr(0, 2) + ":" +
           hex.substr(2, 2) + ":" + hex.substr(4, 2) + ":01 type bridge && ip addr add " +
           gateway_ + "/24 dev " + bridge_ + " && ip link set " + bridge_ + " up");
    ASSERT_EQ(br.status, 0) << br.output;
    bridge_made_ = true;
  }

  void TearDown() override {
    if (net_ != nullptr) {
      for (size_t i = 0; i < ids_.size(); ++i) (void)net_->Detach(Request(ids_[i], pins_[i]));
    }
    CleanIptables();
    if (bridge_made_) {
      CmdResult ports = Sh("ip -o link show master " + bridge_);
      for (const std::string& line : Lines(ports.output)) {
        // "12: veth1234@if2: <...>"
        size_t a = line.find(": "), b = line.find_first_of("@:", a + 2);
        if (a != std::string::npos && b != std::string::npos) {
          (void)Sh("ip link del " + line.substr(a + 2, b - a - 2));
        }
      }
      (void)Sh("ip link del " + bridge_);
    }
    for (const std::string& pin : pins_) RemoveNetns(pin);
  }

  static std::vector<std::string> Lines(const std::string& text) {
    std::vector<std::string> out;
    size_t start = 0;
    while (start < text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      if (end > start) out.push_back(text.substr(start, end - start));
      start = end + 1;
    }
    return out;
  }

  // Removes the iptables rules (nat, filter, mangle) that name one of this test's sandboxes
  // and the chains they jump to.
  void CleanIptables() {
    for (const char* table : {"nat", "filter", "mangle"}) {
      std::set<std::string> chains;
      for (const std::string& line : Lines(Sh(std::string("iptables-save -t ") + table).output)) {
        if (!line.starts_with("-A ") || line.find(id_prefix_) == std::string::npos) continue;
        size_t j = line.find(" -j ");
        if (j != std::string::npos) {
          std::string target = line.substr(j + 4, line.find(' ', j + 4) - (j + 4));
          if (target.starts_with("CNI-") && target.find("HOSTPORT") == std::string::npos) {
            chains.insert(target);
          }
        }
        (void)Sh(std::string("iptables -w -t ") + table + " -D" + line.substr(2));
      }
      for (const std::string& c : chains) {
        (void)Sh(std::string("iptables -w -t ") + table + " -F " + c);
        (void)Sh(std::string("iptables -w -t ") + table + " -X " + c);
      }
    }
  }

  void WriteConfig(const std::string& plugins_json) {
    WriteTextFile(conf_ + "/10-it.conflist", R"({"cniVersion":"1.0.0","name":")" + network_ +
                                                 R"(","plugins":)" + plugins_json + "}");
  }

  std::string BridgePlugin() const {
    return R"({"type":"bridge","bridge":")" + bridge_ +
           R"(","isGateway":false,"ipMasq":false,"hairpinMode":true,
               "ipam":{"type":"host-local","dataDir":")" +
           ipam_ + R"(","ranges":[[{"subnet":")" + subnet_ + R"(","gateway":")" + gateway_ +
           R"("}]]}})";
  }

  // bridge (with host-local), loopback, portmap; and bandwidth when asked: Debian's
  // bandwidth 1.1.1 crashes on CHECK of a pod without limits (a nil dereference in cmdCheck).
  void WriteStandardConfig(bool bandwidth = false) {
    WriteConfig("[" + BridgePlugin() + R"(,{"type":"loopback"},
        {"type":"portmap","capabilities":{"portMappings":true}})" +
                (bandwidth ? R"(,{"type":"bandwidth","capabilities":{"bandwidth":true}})" : "") +
                "]");
  }

  void MakeNetwork(std::vector<std::string> bin_dirs = {kDebianPlugins}) {
    NetworkOptions o;
    o.conf_dir = conf_;
    o.bin_dirs = std::move(bin_dirs);
    o.cache_dir = dir_ / "cache";
    o.plugin_timeout = absl::Seconds(60);
    auto n = Network::Create(o, [](LogLevel, std::string_view m) {
      std::fprintf(stderr, "  [cni] %.*s\n", static_cast<int>(m.size()), m.data());
    });
    ASSERT_TRUE(n.ok()) << n.status();
    net_ = std::move(*n);
  }

  // A new sandbox id and its pinned namespace.
  std::pair<std::string, std::string> NewPod() {
    std::string id = id_prefix_ + std::to_string(ids_.size());
    std::string pin = dir_ / ("pins/" + id);
    std::string error;
    EXPECT_TRUE(MakeNetns(pin, &error)) << error;
    ids_.push_back(id);
    pins_.push_back(pin);
    return {id, pin};
  }

  static std::string Request(const std::string& id, const std::string& pin,
                             const std::string& extra = "") {
    return R"({"sandbox_id":")" + id + R"(","netns":")" + pin +
           R"(","pod_name":"it","pod_namespace":"default","pod_uid":"uid-)" + id + "\"" + extra +
           "}";
  }

  // The host end of the pod's veth, from the attach result.
  std::string HostVeth(const json& result) const {
    for (const json& i : result["interfaces"]) {
      std::string name = i.value("name", "");
      if (name != bridge_ && i.value("sandbox", "").empty()) return name;
    }
    return "";
  }

  std::string IpFile(const std::string& ip) const { return ipam_ + "/" + network_ + "/" + ip; }

  // The addresses host-local holds for this network.
  std::vector<std::string> AllocatedIps() const {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(ipam_ + "/" + network_, ec)) {
      std::string name = e.path().filename().string();
      if (name.starts_with("10.99.")) out.push_back(name);
    }
    return out;
  }

  bool Ping(const std::string& pin, const std::string& ip) const {
    CmdResult r = Sh("nsenter --net=" + pin + " /bin/busybox ping -c1 -W2 " + ip);
    if (r.status != 0)
      std::fprintf(stderr, "ping %s from %s: %s\n", ip.c_str(), pin.c_str(), r.output.c_str());
    return r.status == 0;
  }

  bool LinkExists(const std::string& name) const {
    return !name.empty() && Sh("ip link show " + name).status == 0;
  }

  std::string NatRules() const { return Sh("iptables-save -t nat").output; }

  static inline int lock_fd_ = -1;
  TempDir dir_;
  int octet_ = 0;
  std::string subnet_, gateway_, bridge_, network_, id_prefix_, conf_, ipam_, bin_;
  bool bridge_made_ = false;
  std::unique_ptr<Network> net_;
  std::vector<std::string> ids_, pins_;
};

TEST_F(CniIntegrationTest, StatusIsReadyWithTheDebianPlugins) {
  WriteStandardConfig(/*bandwidth=*/true);
  MakeNetwork();
  sdk::Readiness r = net_->Status();
  EXPECT_TRUE(r.ready) << r.message;
  // Without the directory that holds them: not ready, naming the binary.
  MakeNetwork({dir_ / "empty-bin"});
  r = net_->Status();
  EXPECT_FALSE(r.ready);
  EXPECT_THAT(r.message, HasSubstr("plugin binary \"bridge\" (plugin 1 of 4) not found"));
}

TEST_F(CniIntegrationTest, TwoPodsGetAddressesReachEachOtherAndTheHostThenDetachCleanly) {
  WriteStandardConfig();
  MakeNetwork();
  auto [a, pin_a] = NewPod();
  auto [b, pin_b] = NewPod();
  const int host_port = 30000 + static_cast<int>(std::random_device()() % 10000);
  auto ra = net_->Attach(
      Request(a, pin_a,
              R"(,"port_mappings":[{"protocol":"tcp","container_port":80,"host_port":)" +
                  std::to_string(host_port) + R"(,"host_ip":""}])"));
  ASSERT_TRUE(ra.ok()) << ra.status();
  auto rb = net_->Attach(Request(b, pin_b));
  ASSERT_TRUE(rb.ok()) << rb.status();
  json result_a = json::parse(*ra), result_b = json::parse(*rb);
  ASSERT_EQ(result_a["ips"].size(), 1u) << *ra;
  ASSERT_EQ(result_b["ips"].size(), 1u) << *rb;
  const std::string ip_a = result_a["ips"][0], ip_b = result_b["ips"][0];
  const std::string prefix = "10.99." + std::to_string(octet_) + ".";
  EXPECT_THAT(ip_a, StartsWith(prefix));
  EXPECT_THAT(ip_b, StartsWith(prefix));
  EXPECT_NE(ip_a, ip_b);
  EXPECT_NE(ip_a, gateway_);
  EXPECT_EQ(result_a["network"], network_);
  EXPECT_TRUE(Exists(IpFile(ip_a)));
  EXPECT_TRUE(Exists(IpFile(ip_b)));

  EXPECT_TRUE(Ping(pin_a, ip_b));
  EXPECT_TRUE(Ping(pin_b, ip_a));
  EXPECT_TRUE(Ping(pin_a, gateway_));
  EXPECT_TRUE(Ping(pin_b, gateway_));

  // CHECK through bridge, host-local, loopback and portmap. Not of a: Debian's portmap 1.1.1
  // checks an IPv6 DNAT chain for every pod with port mappings, IPv4-only ones too, and fails.
  EXPECT_TRUE(net_->Check(Request(b, pin_b)).ok()) << net_->Check(Request(b, pin_b));

  // portmap's DNAT rules carry the sandbox id.
  EXPECT_THAT(NatRules(), HasSubstr(a));
  EXPECT_THAT(NatRules(), HasSubstr(std::to_string(host_port)));
  const std::string veth_a = HostVeth(result_a), veth_b = HostVeth(result_b);
  EXPECT_TRUE(LinkExists(veth_a)) << *ra;
  EXPECT_TRUE(LinkExists(veth_b)) << *rb;

  ASSERT_TRUE(net_->Detach(Request(a, pin_a)).ok());
  EXPECT_THAT(NatRules(), Not(HasSubstr(a)));
  EXPECT_FALSE(LinkExists(veth_a));
  EXPECT_FALSE(Exists(IpFile(ip_a)));
  EXPECT_FALSE(Exists(dir_ / ("cache/" + a + ".json")));
  EXPECT_NE(Sh("nsenter --net=" + pin_a + " ip link show eth0").status, 0) << "eth0 left";
  // b is untouched and still reaches the host.
  EXPECT_TRUE(Ping(pin_b, gateway_));
  ASSERT_TRUE(net_->Detach(Request(b, pin_b)).ok());
  EXPECT_FALSE(LinkExists(veth_b));
  EXPECT_THAT(AllocatedIps(), IsEmpty());
  // Again: nothing recorded, nothing to do.
  EXPECT_TRUE(net_->Detach(Request(b, pin_b)).ok());
}

TEST_F(CniIntegrationTest, DetachAfterTheNamespaceIsGoneStillFreesEverything) {
  WriteStandardConfig();
  MakeNetwork();
  auto [a, pin_a] = NewPod();
  const int host_port = 30000 + static_cast<int>(std::random_device()() % 10000);
  auto ra = net_->Attach(
      Request(a, pin_a,
              R"(,"port_mappings":[{"protocol":"udp","container_port":53,"host_port":)" +
                  std::to_string(host_port) + "}]"));
  ASSERT_TRUE(ra.ok()) << ra.status();
  json result = json::parse(*ra);
  const std::string ip = result["ips"][0];
  ASSERT_TRUE(Exists(IpFile(ip)));
  ASSERT_THAT(NatRules(), HasSubstr(a));
  RemoveNetns(pin_a);  // the pod's namespace disappears (and its veth with it)
  // berthd restarts meanwhile: the record is all there is.
  MakeNetwork();
  ASSERT_TRUE(net_->Detach(Request(a, pin_a)).ok());
  EXPECT_FALSE(Exists(IpFile(ip)));
  EXPECT_THAT(NatRules(), Not(HasSubstr(a)));
  EXPECT_FALSE(LinkExists(HostVeth(result)));
  EXPECT_FALSE(Exists(dir_ / ("cache/" + a + ".json")));
}

TEST_F(CniIntegrationTest, FailureInTheSecondPluginLeavesNothingBehind) {
  WriteTextFile(bin_ + "/refuser",
                "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = ADD ]; then\n"
                "  echo '{\"cniVersion\":\"1.0.0\",\"code\":100,\"msg\":\"refusing on purpose\","
                "\"details\":\"integration test\"}'\n  exit 1\nfi\nexit 0\n",
                0755);
  WriteConfig("[" + BridgePlugin() + R"(,{"type":"refuser"}])");
  MakeNetwork({bin_, kDebianPlugins});
  auto [a, pin_a] = NewPod();
  auto ra = net_->Attach(Request(a, pin_a));
  ASSERT_FALSE(ra.ok());
  EXPECT_THAT(std::string(ra.status().message()),
              HasSubstr("plugin \"refuser\" (ADD, network \"" + network_ +
                        "\"): refusing on purpose: integration test (CNI error code 100)"));
  EXPECT_THAT(Sh("ip -o link show master " + bridge_).output, IsEmpty());
  EXPECT_THAT(AllocatedIps(), IsEmpty());
  EXPECT_NE(Sh("nsenter --net=" + pin_a + " ip link show eth0").status, 0);
  EXPECT_FALSE(Exists(dir_ / ("cache/" + a + ".json")));
}

TEST_F(CniIntegrationTest, BandwidthAnnotationsShapeTheVeth) {
  WriteStandardConfig(/*bandwidth=*/true);
  MakeNetwork();
  auto [a, pin_a] = NewPod();
  const std::string ifbs_before = Sh("ip -o link show type ifb").output;
  auto ra = net_->Attach(Request(a, pin_a,
                                 R"(,"annotations":{"kubernetes.io/ingress-bandwidth":"10M",
                                                    "kubernetes.io/egress-bandwidth":"20M"})"));
  ASSERT_TRUE(ra.ok()) << ra.status();
  const std::string veth = HostVeth(json::parse(*ra));
  CmdResult qdisc = Sh("tc qdisc show dev " + veth);
  EXPECT_THAT(qdisc.output, HasSubstr("tbf")) << qdisc.output;
  EXPECT_NE(Sh("ip -o link show type ifb").output, ifbs_before);  // egress: an ifb device
  EXPECT_TRUE(net_->Check(Request(a, pin_a)).ok()) << net_->Check(Request(a, pin_a));
  ASSERT_TRUE(net_->Detach(Request(a, pin_a)).ok());
  EXPECT_EQ(Sh("ip -o link show type ifb").output, ifbs_before);
}

TEST_F(CniIntegrationTest, GcDetachesPodsThatAreGone) {
  WriteStandardConfig();
  MakeNetwork();
  auto [a, pin_a] = NewPod();
  auto [b, pin_b] = NewPod();
  auto ra = net_->Attach(Request(a, pin_a));
  ASSERT_TRUE(ra.ok()) << ra.status();
  auto rb = net_->Attach(Request(b, pin_b));
  ASSERT_TRUE(rb.ok()) << rb.status();
  const std::string ip_a = json::parse(*ra)["ips"][0], ip_b = json::parse(*rb)["ips"][0];
  ASSERT_TRUE(net_->Gc(json::array({b}).dump()).ok());
  EXPECT_FALSE(Exists(IpFile(ip_a)));
  EXPECT_TRUE(Exists(IpFile(ip_b)));
  EXPECT_FALSE(Exists(dir_ / ("cache/" + a + ".json")));
  EXPECT_TRUE(Exists(dir_ / ("cache/" + b + ".json")));
  EXPECT_TRUE(Ping(pin_b, gateway_));
}

}  // namespace
}  // namespace berth::cni
