// SPDX-License-Identifier: Apache-2.0
// Per-handler configuration end to end (runtimes: <handler>: cni_conf_dir and snapshotter),
// through berthd's CRI socket: besides the harness's handler "runc" on its network (a /24 of
// 10.99.0.0/16) and the overlay snapshotter, a handler "runc-b" of the same runc plugin with a
// CNI configuration directory of its own (a bridge of this test's own with a /24 of
// 10.98.0.0/16) and the native snapshotter. Each handler's pods get addresses from their own
// network and rootfs layers from their own snapshotter (images pulled for the other handler
// are unpacked on demand), readiness is per directory, a broken directory fails only its
// handler's pods, and a berthd killed and restarted with the configuration changed still tears
// both networks and both snapshotters' layers down (IPs, veths, snapshots). The second bridge
// goes even when a test fails.
#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/pod_fixture.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;

constexpr char kHandlerB[] = "runc-b";

class PodHandlerConfigTest : public PodFixture<> {
 protected:
  void SetUp() override {
    StartHarness("hcfg");
    if (!h_) return;  // skipped (not root) or failed
    bridge_b_ = "bh" + RandomHex(6);
    network_b_ = "berth-test-" + bridge_b_;
    // A /24 of 10.98.0.0/16 that no route uses yet (other tests may run at the same time).
    for (int i = 0; i < 50; ++i) {
      subnet_b_ =
          "10.98." + std::to_string(1 + std::stoi(RandomHex(2), nullptr, 16) % 254) + ".0/24";
      auto [code, out] = RunCommand({"/usr/sbin/ip", "-4", "route", "show", subnet_b_},
                                    h_->root() / "route-b.log");
      if (code == 0 && out.find("10.98.") == std::string::npos) break;
    }
    fs::create_directories(ConfDirB());
    WriteFile(ConfDirB() / "10-b.conflist", ConflistB());
    // The handler and the native snapshotter, added to the harness's configuration; berthd
    // restarted with them.
    std::string config = ReadFile(h_->daemon().config());
    const size_t at = config.find("runtimes:\n");
    ASSERT_NE(at, std::string::npos) << config;
    config.insert(at + std::string("runtimes:\n").size(), HandlerB());
    const std::string overlay = "  io.berth.snapshotter.overlay: {}\n";
    ASSERT_NE(config.find(overlay), std::string::npos) << config;
    config.insert(config.find(overlay), "  io.berth.snapshotter.native: {}\n");
    WriteFile(h_->daemon().config(), config);
    h_->StopDaemon(SIGTERM);
    std::string error;
    ASSERT_TRUE(h_->StartDaemon(&error)) << error;
  }
  void TearDown() override {
    PodFixture<>::TearDown();  // pods through CRI, berthd, processes, mounts, the first bridge
    std::error_code ec;
    if (!bridge_b_.empty() && fs::exists("/sys/class/net/" + bridge_b_, ec)) {
      fs::path log = fs::temp_directory_path() / ("ip-link-del-" + bridge_b_ + ".log");
      RunCommand({"/usr/sbin/ip", "link", "del", bridge_b_}, log);
      fs::remove(log, ec);
    }
  }

  fs::path ConfDirB() const { return h_->root() / "net-b.d"; }
  // bridge + host-local on a bridge and /24 of this test's own.
  std::string ConflistB() const {
    return R"({"cniVersion":"1.0.0","name":")" + network_b_ + R"(","plugins":[)"
           R"({"type":"bridge","bridge":")" + bridge_b_ + R"(","isGateway":true,"ipMasq":false,)"
           R"("ipam":{"type":"host-local","ranges":[[{"subnet":")" + subnet_b_ + R"("}]],)"
           R"("dataDir":")" + (h_->root() / "ipam-b").string() + R"("}}]})";
  }
  std::string HandlerB(const std::string& conf_dir_line = "") const {
    return std::string("  ") + kHandlerB + ":\n    plugin: io.berth.runtime.runc\n" +
           "    snapshotter: native\n" +
           (conf_dir_line.empty() ? "    cni_conf_dir: " + ConfDirB().string() + "\n"
                                  : conf_dir_line) +
           "    options:\n      binary: runc\n      root: " +
           (h_->root() / "runc-root-b").string() + "\n";
  }

  // What the second network holds: veths on its bridge, addresses in its IPAM directory.
  std::vector<std::string> VethsB() const {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator("/sys/class/net/" + bridge_b_ + "/brif", ec)) {
      out.push_back(e.path().filename());
    }
    return out;
  }
  std::vector<std::string> IpsB() const {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(h_->root() / "ipam-b" / network_b_, ec)) {
      std::string n = e.path().filename();
      if (n != "lock" && n.rfind("last_reserved_ip", 0) != 0) out.push_back(n);
    }
    return out;
  }

  // The native snapshotter's snapshot directories.
  size_t NativeSnapshots() const {
    size_t n = 0;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(
             h_->daemon().root() / "io.berth.snapshotter.native" / "snapshots", ec)) {
      (void)e;
      ++n;
    }
    return n;
  }
  // The filesystem type mounted at a container's rootfs in its bundle.
  std::string RootfsType(const std::string& id) const {
    const std::string rootfs =
        (h_->daemon().state() / "io.berth.cri" / "bundles" / id / "rootfs").string();
    for (const MountEntry& m : MountsUnder(h_->root())) {
      if (m.mount_point == rootfs) return m.fs_type;
    }
    return "<not mounted>";
  }
  std::string PodIp(const std::string& id) {
    v1::PodSandboxStatusResponse st;
    EXPECT_OK(h_->PodStatus(id, &st));
    return st.status().network().ip();
  }
  nlohmann::json PodInfo(const std::string& id) {
    v1::PodSandboxStatusResponse st;
    EXPECT_OK(h_->PodStatus(id, &st, true));
    auto it = st.info().find("info");
    return it == st.info().end() ? nlohmann::json() : nlohmann::json::parse(it->second);
  }
  std::optional<v1::RuntimeCondition> Condition(const std::string& type) {
    v1::StatusResponse st;
    grpc::Status s = h_->rt().Status(CriContext().get(), {}, &st);
    EXPECT_OK(s);
    for (const v1::RuntimeCondition& c : st.status().conditions()) {
      if (c.type() == type) return c;
    }
    return std::nullopt;
  }
  static std::string Prefix(const std::string& subnet) {
    return subnet.substr(0, subnet.rfind('.') + 1);
  }
  static std::string Gateway(const std::string& subnet) { return Prefix(subnet) + "1"; }

  std::string bridge_b_, network_b_, subnet_b_;
};

TEST_F(PodHandlerConfigTest, EachHandlersPodsAreOnItsOwnNetworkAndARestartTearsBothDown) {
  std::string warm;
  ASSERT_OK(h_->RunPod(h_->NewPod("warm-up"), &warm));
  ASSERT_OK(h_->RemovePod(warm));
  const Footprint before = FootprintWithoutBerthd();
  const size_t native_before = NativeSnapshots();
  EXPECT_EQ(native_before, 0u);  // nothing was pulled for runc-b yet

  v1::PodSandboxConfig pod_a = h_->NewPod("on-a");
  v1::PodSandboxConfig pod_b = h_->NewPod("on-b");
  std::string a, b;
  ASSERT_OK(h_->RunPod(pod_a, &a));
  ASSERT_OK(h_->RunPod(pod_b, &b, kHandlerB));
  const std::string ip_a = PodIp(a), ip_b = PodIp(b);
  EXPECT_EQ(ip_a.rfind(Prefix(h_->subnet()), 0), 0u) << ip_a << " not in " << h_->subnet();
  EXPECT_EQ(ip_b.rfind(Prefix(subnet_b_), 0), 0u) << ip_b << " not in " << subnet_b_;
  EXPECT_EQ(IpsB(), std::vector<std::string>{ip_b});
  EXPECT_EQ(VethsB().size(), 1u);
  EXPECT_EQ(h_->TakeFootprint().ips, std::vector<std::string>{ip_a});
  // The sandbox records the directory and the network it was attached with.
  nlohmann::json info_b = PodInfo(b), info_a = PodInfo(a);
  EXPECT_EQ(info_b.value("runtimeHandler", ""), kHandlerB);
  EXPECT_EQ(info_b.value("cniConfDir", ""), ConfDirB().string());
  EXPECT_EQ(info_b.value("network", ""), network_b_);
  EXPECT_EQ(info_a.value("cniConfDir", "x"), "");
  EXPECT_EQ(info_a.value("network", ""), h_->network());
  EXPECT_EQ(info_b.value("snapshotter", ""), "io.berth.snapshotter.native");
  EXPECT_EQ(info_a.value("snapshotter", ""), "io.berth.snapshotter.overlay");
  // The pause image (pulled for the default handler) was unpacked into the native snapshotter
  // for runc-b's pause: its layer and the pause's writable copy.
  EXPECT_EQ(NativeSnapshots(), 2u);

  // The pod of runc-b is on its own network and reaches its gateway.
  std::string c, ca;
  ASSERT_OK(h_->RunContainer(b, pod_b, h_->NewContainer(pod_b, "c", {"sleep", "1000"}), &c));
  ASSERT_TRUE(h_->WaitForState(c, v1::CONTAINER_RUNNING, seconds(10)));
  ASSERT_OK(h_->RunContainer(a, pod_a, h_->NewContainer(pod_a, "ca", {"sleep", "1000"}), &ca));
  ASSERT_TRUE(h_->WaitForState(ca, v1::CONTAINER_RUNNING, seconds(10)));
  // busybox, pulled for the default handler, unpacked on demand for runc-b: its rootfs is a
  // bind mount of a native copy; the default handler's is an overlay.
  EXPECT_EQ(RootfsType(c), RootfsType(b));
  EXPECT_NE(RootfsType(c), "overlay");
  EXPECT_NE(RootfsType(c), "<not mounted>");
  EXPECT_EQ(RootfsType(ca), "overlay");
  EXPECT_EQ(NativeSnapshots(), 4u);
  v1::ExecSyncResponse env;
  ASSERT_OK(h_->ExecSync(c, {"sh", "-c", "echo $FROM_IMAGE; echo hi > /written; cat /written"},
                         20, &env));
  EXPECT_EQ(env.stdout(), "yes\nhi\n");
  v1::ExecSyncResponse r;
  ASSERT_OK(h_->ExecSync(c, {"ping", "-c", "1", "-W", "3", Gateway(subnet_b_)}, 20, &r));
  EXPECT_EQ(r.exit_code(), 0) << r.stdout() << r.stderr();
  ASSERT_OK(h_->ExecSync(c, {"ip", "route"}, 20, &r));
  EXPECT_THAT(r.stdout(), HasSubstr(subnet_b_ + " dev eth0"));
  EXPECT_THAT(r.stdout(), ::testing::Not(HasSubstr(Prefix(h_->subnet()))));

  // Both networks ready; the second one reported as the handlers' condition.
  std::optional<v1::RuntimeCondition> ready = Condition("NetworkReady");
  ASSERT_TRUE(ready.has_value());
  EXPECT_TRUE(ready->status()) << ready->message();
  std::optional<v1::RuntimeCondition> handlers = Condition("RuntimeHandlerNetworksReady");
  ASSERT_TRUE(handlers.has_value());
  EXPECT_TRUE(handlers->status()) << handlers->message();

  // berthd dies; meanwhile both configurations break and runc-b loses its cni_conf_dir in the
  // berthd configuration: the teardown must use what each pod was attached with.
  ASSERT_TRUE(h_->StopDaemon(SIGKILL).has_value());
  WriteFile(h_->root() / "net.d" / "10-test.conflist", "{ not json");
  WriteFile(ConfDirB() / "10-b.conflist", "{ not json either");
  std::string config = ReadFile(h_->daemon().config());
  const std::string line = "    cni_conf_dir: " + ConfDirB().string() + "\n";
  ASSERT_NE(config.find(line), std::string::npos);
  config.erase(config.find(line), line.size());
  WriteFile(h_->daemon().config(), config);
  std::string error;
  ASSERT_TRUE(h_->StartDaemon(&error)) << error;
  EXPECT_EQ(PodIp(b), ip_b);  // remembered
  EXPECT_EQ(PodInfo(b).value("cniConfDir", ""), ConfDirB().string());
  for (const std::string& id : {c, ca}) {
    ASSERT_OK(h_->StopContainer(id, 0));
    ASSERT_OK(h_->RemoveContainer(id));
  }
  for (const std::string& id : {a, b}) {
    ASSERT_OK(h_->StopPod(id));
    EXPECT_EQ(PodIp(id), "");
    ASSERT_OK(h_->RemovePod(id));
  }
  EXPECT_TRUE(IpsB().empty()) << IpsB().front();
  EXPECT_TRUE(VethsB().empty()) << VethsB().front();
  ExpectBackTo(before);
  // The writable layers are gone from the native snapshotter; the images' layers stay until
  // the images go.
  EXPECT_EQ(NativeSnapshots(), 2u);
  v1::RemoveImageRequest rm;
  rm.mutable_image()->set_image(h_->images().busybox);
  v1::RemoveImageResponse rm_resp;
  ASSERT_OK(h_->img().RemoveImage(CriContext().get(), rm, &rm_resp));
  EXPECT_EQ(NativeSnapshots(), 1u);  // the pause image's layer
}

TEST_F(PodHandlerConfigTest, PullingForAHandlerUnpacksIntoItsSnapshotter) {
  // The harness pulled busybox for the default handler; the kubelet pulls it again for a pod of
  // runc-b (PullImage carries the RuntimeClass handler): now it is in the native snapshotter
  // too, without a second download.
  EXPECT_EQ(NativeSnapshots(), 0u);
  v1::ImageFsInfoResponse fs_before, fs_after;
  ASSERT_OK(h_->img().ImageFsInfo(CriContext().get(), {}, &fs_before));
  v1::PullImageRequest req;
  req.mutable_image()->set_image(h_->images().busybox);
  req.mutable_image()->set_runtime_handler(kHandlerB);
  v1::PullImageResponse resp;
  ASSERT_OK(h_->img().PullImage(CriContext(seconds(60)).get(), req, &resp));
  EXPECT_EQ(resp.image_ref(), h_->busybox_ref());
  EXPECT_EQ(NativeSnapshots(), 1u);
  // ImageFsInfo counts the copy: both snapshotters are on one filesystem, so one entry (the one
  // the kubelet's image GC reads) that grew by at least busybox's binary.
  ASSERT_OK(h_->img().ImageFsInfo(CriContext().get(), {}, &fs_after));
  ASSERT_EQ(fs_before.image_filesystems_size(), 1);
  ASSERT_EQ(fs_after.image_filesystems_size(), 1);
  EXPECT_EQ(fs_after.image_filesystems(0).fs_id().mountpoint(),
            fs_before.image_filesystems(0).fs_id().mountpoint());
  EXPECT_GE(fs_after.image_filesystems(0).used_bytes().value(),
            fs_before.image_filesystems(0).used_bytes().value() + fs::file_size("/bin/busybox"));
  EXPECT_GT(fs_after.image_filesystems(0).inodes_used().value(),
            fs_before.image_filesystems(0).inodes_used().value());
  EXPECT_THAT(h_->LogTail(20), HasSubstr("unpacked into io.berth.snapshotter.native"));
  // A runc-b pod's container uses that copy; a default pod's the overlay layers.
  v1::PodSandboxConfig pod = h_->NewPod("b", Network::kHost);
  std::string b, c;
  ASSERT_OK(h_->RunPod(pod, &b, kHandlerB));
  ASSERT_OK(h_->RunContainer(b, pod, h_->NewContainer(pod, "c", {"sleep", "1000"}), &c));
  EXPECT_NE(RootfsType(c), "overlay");
  EXPECT_NE(RootfsType(c), "<not mounted>");
  EXPECT_EQ(NativeSnapshots(), 4u);  // + the pause image's layer and two writable copies
  ASSERT_OK(h_->StopContainer(c, 0));
  ASSERT_OK(h_->RemoveContainer(c));
  ASSERT_OK(h_->RemovePod(b));
  EXPECT_EQ(NativeSnapshots(), 2u);
}

TEST_F(PodHandlerConfigTest, ADirectoryWithoutNetworkFailsOnlyItsHandlersPods) {
  std::string warm;
  ASSERT_OK(h_->RunPod(h_->NewPod("warm-up"), &warm));
  ASSERT_OK(h_->RemovePod(warm));
  const Footprint before = FootprintWithoutBerthd();

  // runc-b's directory is empty: NetworkReady (the default handler's network) stays true, the
  // handlers' condition names runc-b and its directory.
  fs::remove(ConfDirB() / "10-b.conflist");
  std::optional<v1::RuntimeCondition> ready = Condition("NetworkReady");
  ASSERT_TRUE(ready.has_value());
  EXPECT_TRUE(ready->status()) << ready->message();
  std::optional<v1::RuntimeCondition> handlers = Condition("RuntimeHandlerNetworksReady");
  ASSERT_TRUE(handlers.has_value());
  EXPECT_FALSE(handlers->status());
  EXPECT_EQ(handlers->reason(), "NetworkPluginNotReady");
  EXPECT_THAT(handlers->message(), HasSubstr(std::string("runtime handler ") + kHandlerB + ": "));
  EXPECT_THAT(handlers->message(),
              HasSubstr("no CNI network configuration in " + ConfDirB().string()));

  std::string id;
  grpc::Status s = h_->RunPod(h_->NewPod("no-net-b"), &id, kHandlerB);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << Describe(s);
  EXPECT_THAT(s.error_message(),
              HasSubstr(std::string("NetworkNotReady: the pod network of runtime handler \"") +
                        kHandlerB + "\" (cni_conf_dir " + ConfDirB().string() + ") is not ready"));
  EXPECT_THAT(s.error_message(),
              HasSubstr("no CNI network configuration in " + ConfDirB().string()));
  std::vector<v1::PodSandbox> pods;
  ASSERT_OK(h_->ListPods(nullptr, &pods));
  EXPECT_TRUE(pods.empty());
  ExpectBackTo(before);
  // The default handler's pods are not affected; runc-b's host-network pods run.
  std::string a, host_b;
  ASSERT_OK(h_->RunPod(h_->NewPod("on-a"), &a));
  EXPECT_EQ(PodIp(a).rfind(Prefix(h_->subnet()), 0), 0u);
  ASSERT_OK(h_->RunPod(h_->NewPod("host-b", Network::kHost), &host_b, kHandlerB));
  ASSERT_OK(h_->RemovePod(a));
  ASSERT_OK(h_->RemovePod(host_b));

  // The other way round: the default network is gone, runc-b's is back.
  WriteFile(ConfDirB() / "10-b.conflist", ConflistB());
  fs::remove(h_->root() / "net.d" / "10-test.conflist");
  ready = Condition("NetworkReady");
  ASSERT_TRUE(ready.has_value());
  EXPECT_FALSE(ready->status());
  EXPECT_THAT(ready->message(), HasSubstr("no CNI network configuration in " +
                                          (h_->root() / "net.d").string()));
  handlers = Condition("RuntimeHandlerNetworksReady");
  ASSERT_TRUE(handlers.has_value());
  EXPECT_TRUE(handlers->status()) << handlers->message();
  s = h_->RunPod(h_->NewPod("no-net-a"), &id);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << Describe(s);
  EXPECT_THAT(s.error_message(), HasSubstr("NetworkNotReady: the pod network is not ready"));
  std::string b;
  ASSERT_OK(h_->RunPod(h_->NewPod("on-b"), &b, kHandlerB));
  EXPECT_EQ(PodIp(b).rfind(Prefix(subnet_b_), 0), 0u);
  ASSERT_OK(h_->RemovePod(b));
  EXPECT_TRUE(IpsB().empty());
  ExpectBackTo(before);
}

TEST_F(PodHandlerConfigTest, NetworkReadyIsTheDefaultHandlersNetwork) {
  // The default handler "runc" moves to the second directory; runc-b, without one of its own
  // now, uses the plugin's.
  h_->StopDaemon(SIGTERM);
  std::string config = ReadFile(h_->daemon().config());
  const std::string line = "    cni_conf_dir: " + ConfDirB().string() + "\n";
  ASSERT_NE(config.find(line), std::string::npos);
  config.erase(config.find(line), line.size());
  const std::string runc = "  runc:\n    plugin: io.berth.runtime.runc\n";
  ASSERT_NE(config.find(runc), std::string::npos) << config;
  config.insert(config.find(runc) + runc.size(), line);
  WriteFile(h_->daemon().config(), config);
  std::string error;
  ASSERT_TRUE(h_->StartDaemon(&error)) << error;

  std::string a, b;
  ASSERT_OK(h_->RunPod(h_->NewPod("default-on-b"), &a));
  EXPECT_EQ(PodIp(a).rfind(Prefix(subnet_b_), 0), 0u) << PodIp(a);
  ASSERT_OK(h_->RunPod(h_->NewPod("runc-b-on-a"), &b, kHandlerB));
  EXPECT_EQ(PodIp(b).rfind(Prefix(h_->subnet()), 0), 0u) << PodIp(b);

  fs::remove(ConfDirB() / "10-b.conflist");
  std::optional<v1::RuntimeCondition> ready = Condition("NetworkReady");
  ASSERT_TRUE(ready.has_value());
  EXPECT_FALSE(ready->status());
  EXPECT_THAT(ready->message(), HasSubstr("runtime handler runc (the default): no CNI network "
                                          "configuration in " + ConfDirB().string()));
  std::optional<v1::RuntimeCondition> handlers = Condition("RuntimeHandlerNetworksReady");
  ASSERT_TRUE(handlers.has_value());  // runc-b (and the shim v2 handlers) use the plugin's
  EXPECT_TRUE(handlers->status()) << handlers->message();
  ASSERT_OK(h_->RemovePod(a));
  ASSERT_OK(h_->RemovePod(b));
  EXPECT_TRUE(IpsB().empty());
}

TEST_F(PodHandlerConfigTest, BerthdRefusesABadHandlerDirectoryOrSnapshotter) {
  h_->StopDaemon(SIGTERM);
  const std::string config = ReadFile(h_->daemon().config());
  const std::string good = "    cni_conf_dir: " + ConfDirB().string() + "\n";
  ASSERT_NE(config.find(good), std::string::npos);
  for (const std::string& bad : {std::string("net-b.d"), ConfDirB().string() + "/../net.d"}) {
    std::string text = config;
    text.replace(text.find(good), good.size(), "    cni_conf_dir: " + bad + "\n");
    WriteFile(h_->daemon().config(), text);
    // The line of the key, 1-based.
    const size_t at = text.find("    cni_conf_dir: " + bad);
    const int line = 1 + static_cast<int>(std::count(text.begin(), text.begin() + at, '\n'));
    std::string error;
    EXPECT_FALSE(h_->StartDaemon(&error)) << "berthd started with cni_conf_dir " << bad;
    EXPECT_THAT(error, HasSubstr(h_->daemon().config().string() + ":" + std::to_string(line) +
                                 ": key \"runtimes." + kHandlerB + ".cni_conf_dir\""))
        << error;
    h_->StopDaemon(SIGTERM);
  }
  // A snapshotter that does not run.
  {
    std::string text = config;
    const std::string native = "    snapshotter: native\n";
    ASSERT_NE(text.find(native), std::string::npos);
    text.replace(text.find(native), native.size(), "    snapshotter: zfs\n");
    WriteFile(h_->daemon().config(), text);
    const size_t at = text.find("    snapshotter: zfs");
    const int line = 1 + static_cast<int>(std::count(text.begin(), text.begin() + at, '\n'));
    std::string error;
    EXPECT_FALSE(h_->StartDaemon(&error)) << "berthd started with snapshotter zfs";
    EXPECT_THAT(error, HasSubstr(h_->daemon().config().string() + ":" + std::to_string(line) +
                                 ": key \"runtimes." + kHandlerB + ".snapshotter\": runtime "
                                 "handler \"" + kHandlerB + "\" names snapshotter \"zfs\", which "
                                 "is not running (running: "))
        << error;
    EXPECT_THAT(error, HasSubstr("overlayfs (io.berth.snapshotter.overlay)"));
    EXPECT_THAT(error, HasSubstr("native (io.berth.snapshotter.native)"));
    h_->StopDaemon(SIGTERM);
  }
  // Named by plugin id, the snapshotter is enabled like the runtime plugin; the id must name
  // a snapshotter.
  {
    std::string text = config;
    const std::string listed = "  io.berth.snapshotter.native: {}\n";
    ASSERT_NE(text.find(listed), std::string::npos);
    text.erase(text.find(listed), listed.size());
    const std::string native = "    snapshotter: native\n";
    text.replace(text.find(native), native.size(), "    snapshotter: io.berth.cni\n");
    WriteFile(h_->daemon().config(), text);
    std::string error;
    EXPECT_FALSE(h_->StartDaemon(&error));
    EXPECT_THAT(error, HasSubstr(std::string("runtime handler \"") + kHandlerB +
                                 "\" names plugin \"io.berth.cni\", which is a network plugin, "
                                 "not a snapshotter"));
    h_->StopDaemon(SIGTERM);
    text.replace(text.find("    snapshotter: io.berth.cni\n"),
                 std::string("    snapshotter: io.berth.cni\n").size(),
                 "    snapshotter: io.berth.snapshotter.native\n");
    WriteFile(h_->daemon().config(), text);
    ASSERT_TRUE(h_->StartDaemon(&error)) << error;
    std::string b;
    ASSERT_OK(h_->RunPod(h_->NewPod("by-id", Network::kHost), &b, kHandlerB));
    EXPECT_EQ(PodInfo(b).value("snapshotter", ""), "io.berth.snapshotter.native");
    ASSERT_OK(h_->RemovePod(b));
    h_->StopDaemon(SIGTERM);
  }
  // Back to a good configuration, for the cleanup through CRI.
  WriteFile(h_->daemon().config(), config);
  std::string error;
  ASSERT_TRUE(h_->StartDaemon(&error)) << error;
}

}  // namespace
}  // namespace berth::testing
