// SPDX-License-Identifier: Apache-2.0
// Pod networking end to end: pods on a bridge of the test's own (Debian's bridge, host-local
// and portmap plugins, a /24 of 10.99.0.0/16, nf_tables iptables) through berthd's CRI socket.
// Pods reach each other and the host, a busybox web server answers on its pod IP and through a
// hostPort, and nothing is left behind after removals, a berthd restart or failed set-ups
// (veths, pod IPs, iptables rules, netns pins).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "berth/unique_fd.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugins/cri/streaming/tests/port_forward_client.h"
#include "tests/integration/pod_fixture.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;

// GET / from ip:port over plain TCP; the body, or "" when nothing answers.
std::string HttpGet(const std::string& ip, int port) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    berth::sdk::UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    ::inet_pton(AF_INET, ip.c_str(), &a.sin_addr);
    timeval tv{2, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
      std::string req = "GET / HTTP/1.0\r\nHost: x\r\n\r\n";
      if (::write(fd.get(), req.data(), req.size()) != static_cast<ssize_t>(req.size())) continue;
      std::string resp;
      char buf[4096];
      ssize_t n;
      while ((n = ::read(fd.get(), buf, sizeof(buf))) > 0) resp.append(buf, static_cast<size_t>(n));
      size_t body = resp.find("\r\n\r\n");
      if (body != std::string::npos) return resp.substr(body + 4);
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
  return "";
}

// The nat table; `dir` holds the command's output file.
std::string NatRules(const fs::path& dir) {
  auto [code, out] = RunCommand({"/usr/sbin/iptables-save", "-t", "nat"}, dir / "nat.log");
  return code == 0 ? out : "";
}

class PodNetworkTest : public PodFixture<> {
 protected:
  void SetUp() override { StartHarness("net"); }

  // What is on the node once a first pod came and went (the netns pin directory and the
  // test's cgroup parent stay, as on any node), berthd itself left out (it may restart).
  Footprint Baseline() {
    std::string id;
    EXPECT_TRUE(h_->RunPod(h_->NewPod("warm-up"), &id).ok()) << h_->LogTail();
    EXPECT_TRUE(h_->RemovePod(id).ok());
    return FootprintWithoutBerthd();
  }
  // The gateway: the bridge's address, .1 of the subnet.
  std::string Gateway() const {
    const std::string& s = h_->subnet();
    return s.substr(0, s.rfind('.')) + ".1";
  }
  std::string PodIp(const std::string& pod_id) {
    v1::PodSandboxStatusResponse st;
    EXPECT_TRUE(h_->PodStatus(pod_id, &st).ok());
    return st.status().network().ip();
  }
  std::string RunRunning(const std::string& pod_id, const v1::PodSandboxConfig& pod,
                         const v1::ContainerConfig& c) {
    std::string id;
    grpc::Status s = h_->RunContainer(pod_id, pod, c, &id);
    EXPECT_TRUE(s.ok()) << Describe(s);
    if (!s.ok()) return "";
    EXPECT_TRUE(h_->WaitForState(id, v1::CONTAINER_RUNNING, seconds(10)));
    return id;
  }
  int Exec(const std::string& id, std::vector<std::string> cmd, std::string* out = nullptr) {
    v1::ExecSyncResponse r;
    grpc::Status s = h_->ExecSync(id, std::move(cmd), 20, &r);
    EXPECT_TRUE(s.ok()) << Describe(s);
    if (out != nullptr) *out = r.stdout() + r.stderr();
    return r.exit_code();
  }

};

TEST_F(PodNetworkTest, PodsReachEachOtherTheHostAndServeOnPodIpAndHostPort) {
  const Footprint before = Baseline();
  const int host_port = FreeLoopbackPort();
  v1::PodSandboxConfig web = h_->NewPod("web");
  v1::PortMapping* pm = web.add_port_mappings();
  pm->set_protocol(v1::TCP);
  pm->set_container_port(8080);
  pm->set_host_port(host_port);
  std::string web_id;
  ASSERT_TRUE(h_->RunPod(web, &web_id).ok()) << h_->LogTail();
  v1::PodSandboxConfig client = h_->NewPod("client");
  std::string client_id;
  ASSERT_TRUE(h_->RunPod(client, &client_id).ok());

  const std::string web_ip = PodIp(web_id), client_ip = PodIp(client_id);
  ASSERT_FALSE(web_ip.empty());
  ASSERT_FALSE(client_ip.empty());
  EXPECT_NE(web_ip, client_ip);
  const std::string prefix = h_->subnet().substr(0, h_->subnet().rfind('.') + 1);
  EXPECT_EQ(web_ip.rfind(prefix, 0), 0u) << web_ip << " not in " << h_->subnet();

  std::string server = RunRunning(
      web_id, web,
      h_->NewContainer(web, "httpd",
                       {"sh", "-c",
                        "mkdir -p /www && echo hello-from-the-pod > /www/index.html && "
                        "exec httpd -f -p 8080 -h /www"}));
  std::string c = RunRunning(client_id, client, h_->NewContainer(client, "c", {"sleep", "1000"}));
  ASSERT_FALSE(server.empty());
  ASSERT_FALSE(c.empty());

  // Pod to pod, pod to host (the bridge's address), host to pod.
  std::string out;
  EXPECT_EQ(Exec(c, {"ping", "-c", "1", "-W", "3", web_ip}, &out), 0) << out;
  EXPECT_EQ(Exec(c, {"ping", "-c", "1", "-W", "3", Gateway()}, &out), 0) << out;
  EXPECT_EQ(Exec(c, {"wget", "-q", "-O", "-", "http://" + web_ip + ":8080/"}, &out), 0) << out;
  EXPECT_EQ(out, "hello-from-the-pod\n");
  EXPECT_EQ(HttpGet(web_ip, 8080), "hello-from-the-pod\n");
  // The hostPort, through portmap's DNAT, on an address of the host.
  EXPECT_EQ(HttpGet(Gateway(), host_port), "hello-from-the-pod\n");
  EXPECT_THAT(NatRules(h_->root()), HasSubstr(web_id));

  for (const std::string& id : {web_id, client_id}) {
    ASSERT_TRUE(h_->StopPod(id).ok());
    // Stopped: the address is released and the pod reports none.
    EXPECT_EQ(PodIp(id), "");
    ASSERT_TRUE(h_->RemovePod(id).ok());
  }
  EXPECT_THAT(NatRules(h_->root()), ::testing::Not(HasSubstr(web_id)));
  ExpectBackTo(before);
}

// PortForward end to end: the RPC's URL on 127.0.0.1, a SPDY upgrade as client-go does it, a
// stream pair for port 8080 of the pod (dialled inside its network namespace) and a page from
// busybox httpd through it. Tokens are single use; unknown sandboxes are NOT_FOUND.
TEST_F(PodNetworkTest, PortForwardReachesAPodPortThroughTheStreamingServer) {
  v1::PodSandboxConfig web = h_->NewPod("pf-web");
  std::string web_id;
  ASSERT_TRUE(h_->RunPod(web, &web_id).ok()) << h_->LogTail();
  std::string server = RunRunning(
      web_id, web,
      h_->NewContainer(web, "httpd",
                       {"sh", "-c",
                        "mkdir -p /www && echo hello-through-port-forward > /www/index.html && "
                        "exec httpd -f -p 8080 -h /www"}));
  ASSERT_FALSE(server.empty());

  v1::PortForwardRequest req;
  req.set_pod_sandbox_id(web_id);
  v1::PortForwardResponse resp;
  grpc::Status s = h_->rt().PortForward(CriContext().get(), req, &resp);
  ASSERT_TRUE(s.ok()) << Describe(s);
  EXPECT_THAT(resp.url(), ::testing::StartsWith("http://127.0.0.1:"));
  EXPECT_THAT(resp.url(), HasSubstr("/portforward/"));

  cri::spdy::testing::PortForwardClient c;
  ASSERT_TRUE(c.Connect(resp.url())) << resp.url();
  const std::string head = c.Upgrade();
  ASSERT_THAT(head, ::testing::StartsWith("HTTP/1.1 101")) << head;
  EXPECT_THAT(head, HasSubstr("X-Stream-Protocol-Version: portforward.k8s.io"));
  // httpd may still be starting: a refused dial comes back as text on the error stream.
  std::string page, last_error;
  for (int request = 0; request < 50 && page.empty(); ++request) {
    const uint32_t data = c.OpenPair(8080, request);
    const uint32_t error = data - 2;
    ASSERT_TRUE(c.Send(data, "GET / HTTP/1.0\r\n\r\n"));
    ASSERT_TRUE(c.ReadUntil(
        [&] {
          return (c.stream(data).fin || c.stream(data).reset) &&
                 (c.stream(error).fin || c.stream(error).reset);
        },
        seconds(15)))
        << "request " << request << ": no end of the streams";
    last_error = c.stream(error).data;
    if (last_error.empty()) {
      page = c.stream(data).data;
    } else {
      std::this_thread::sleep_for(milliseconds(200));
    }
  }
  EXPECT_THAT(page, HasSubstr("200 OK")) << last_error;
  EXPECT_THAT(page, HasSubstr("hello-through-port-forward")) << last_error;
  EXPECT_TRUE(c.GoAway());

  // The token was used: the same URL is a 404 now.
  cri::spdy::testing::PortForwardClient again;
  ASSERT_TRUE(again.Connect(resp.url()));
  EXPECT_THAT(again.Upgrade(), ::testing::StartsWith("HTTP/1.1 404"));

  // A port nothing listens on: the error text names the port and the pod.
  ASSERT_TRUE(h_->rt().PortForward(CriContext().get(), req, &resp).ok());
  cri::spdy::testing::PortForwardClient refused;
  ASSERT_TRUE(refused.Connect(resp.url()));
  ASSERT_THAT(refused.Upgrade(), ::testing::StartsWith("HTTP/1.1 101"));
  const uint32_t data = refused.OpenPair(8081, 0);
  ASSERT_TRUE(refused.ReadUntil([&] { return refused.stream(data - 2).fin; }, seconds(15)));
  EXPECT_THAT(refused.stream(data - 2).data,
              HasSubstr("error forwarding port 8081 to pod " + web_id + ", uid : "));

  v1::PortForwardRequest unknown;
  unknown.set_pod_sandbox_id("no-such-sandbox");
  s = h_->rt().PortForward(CriContext().get(), unknown, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND) << Describe(s);
  s = h_->rt().PortForward(CriContext().get(), v1::PortForwardRequest(), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << Describe(s);

  ASSERT_TRUE(h_->StopPod(web_id).ok());
  s = h_->rt().PortForward(CriContext().get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << Describe(s);
  ASSERT_TRUE(h_->RemovePod(web_id).ok());
}

// A host-network pod forwards to the host's loopback.
TEST_F(PodNetworkTest, PortForwardOfAHostNetworkPodDialsTheHostLoopback) {
  berth::sdk::UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&a), len), 0);
  ASSERT_EQ(::listen(listener.get(), 4), 0);
  ASSERT_EQ(::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
  const int port = ntohs(a.sin_port);
  std::thread host_side([&] {
    berth::sdk::UniqueFd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn.valid()) return;
    const std::string text = "from-the-host\n";
    (void)::write(conn.get(), text.data(), text.size());
  });

  std::string pod_id;
  ASSERT_TRUE(h_->RunPod(h_->NewPod("pf-host", Network::kHost), &pod_id).ok()) << h_->LogTail();
  v1::PortForwardRequest req;
  req.set_pod_sandbox_id(pod_id);
  v1::PortForwardResponse resp;
  grpc::Status s = h_->rt().PortForward(CriContext().get(), req, &resp);
  ASSERT_TRUE(s.ok()) << Describe(s);
  cri::spdy::testing::PortForwardClient c;
  ASSERT_TRUE(c.Connect(resp.url())) << resp.url();
  ASSERT_THAT(c.Upgrade(), ::testing::StartsWith("HTTP/1.1 101"));
  const uint32_t data = c.OpenPair(port, 0);
  EXPECT_TRUE(c.ReadUntil([&] { return c.stream(data).fin; }, seconds(15)));
  EXPECT_EQ(c.stream(data).data, "from-the-host\n");
  EXPECT_EQ(c.stream(data - 2).data, "");
  ::shutdown(listener.get(), SHUT_RDWR);
  host_side.join();
  ASSERT_TRUE(h_->RemovePod(pod_id).ok());
}

TEST_F(PodNetworkTest, ARestartedBerthdStillTearsTheNetworkDown) {
  const Footprint before = Baseline();
  v1::PodSandboxConfig pod = h_->NewPod("survivor");
  v1::PortMapping* pm = pod.add_port_mappings();
  pm->set_container_port(80);
  pm->set_host_port(FreeLoopbackPort());
  std::string id;
  ASSERT_TRUE(h_->RunPod(pod, &id).ok()) << h_->LogTail();
  const std::string ip = PodIp(id);
  ASSERT_FALSE(ip.empty());
  EXPECT_EQ(h_->TakeFootprint().ips.size(), before.ips.size() + 1);

  // berthd dies; the network configuration changes while it is down (DEL must use what the
  // pod was attached with).
  ASSERT_TRUE(h_->StopDaemon(SIGKILL).has_value());
  WriteFile(h_->root() / "net.d" / "10-test.conflist", "{ not json");
  std::string error;
  ASSERT_TRUE(h_->StartDaemon(&error)) << error;
  EXPECT_EQ(PodIp(id), ip);  // remembered
  ASSERT_TRUE(h_->StopPod(id).ok()) << h_->LogTail();
  ASSERT_TRUE(h_->RemovePod(id).ok());
  EXPECT_THAT(NatRules(h_->root()), ::testing::Not(HasSubstr(id)));
  ExpectBackTo(before);
}

TEST_F(PodNetworkTest, WithoutAUsableNetworkOnlyHostNetworkPodsRun) {
  // No configuration: NetworkReady is false, pod-network pods fail clearly and leave nothing.
  const Footprint before = Baseline();
  fs::remove(h_->root() / "net.d" / "10-test.conflist");
  v1::StatusResponse st;
  ASSERT_TRUE(h_->rt().Status(CriContext().get(), {}, &st).ok());
  bool network_ready = true;
  for (const auto& c : st.status().conditions()) {
    if (c.type() == "NetworkReady") {
      network_ready = c.status();
      EXPECT_EQ(c.reason(), "NetworkPluginNotReady");
    }
  }
  EXPECT_FALSE(network_ready);
  std::string id;
  grpc::Status s = h_->RunPod(h_->NewPod("nonet"), &id);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << Describe(s);
  EXPECT_THAT(s.error_message(), HasSubstr("NetworkNotReady"));
  std::vector<v1::PodSandbox> pods;
  ASSERT_TRUE(h_->ListPods(nullptr, &pods).ok());
  EXPECT_TRUE(pods.empty());
  ExpectBackTo(before);
  std::string host_id;
  EXPECT_TRUE(h_->RunPod(h_->NewPod("hostnet", Network::kHost), &host_id).ok());
  ASSERT_TRUE(h_->RemovePod(host_id).ok());

  // A malformed configuration: not ready, with the parse error.
  WriteFile(h_->root() / "net.d" / "10-test.conflist", "{\"cniVersion\": ");
  ASSERT_TRUE(h_->rt().Status(CriContext().get(), {}, &st).ok());
  for (const auto& c : st.status().conditions()) {
    if (c.type() == "NetworkReady") {
      EXPECT_FALSE(c.status());
      EXPECT_THAT(c.message(), HasSubstr("10-test.conflist"));
    }
  }
  // A plugin binary that does not exist: named.
  WriteFile(h_->root() / "net.d" / "10-test.conflist",
            h_->Conflist(R"(,{"type":"no-such-plugin"})"));
  s = h_->RunPod(h_->NewPod("missing"), &id);
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(s.error_message(), HasSubstr("no-such-plugin"));
}

TEST_F(PodNetworkTest, AFailedSetUpUndoesEverything) {
  const Footprint before = Baseline();
  // bridge then portmap with a mapping portmap refuses (its chain would fail): the ADD of the
  // second plugin fails, the bridge's veth and address are given back, the sandbox is gone.
  WriteFile(h_->root() / "net.d" / "10-test.conflist",
            h_->Conflist(R"(,{"type":"portmap","capabilities":{"portMappings":true},)"
                         R"("conditionsV4":["-m","no-such-match"]})"));
  v1::PodSandboxConfig pod = h_->NewPod("doomed");
  v1::PortMapping* pm = pod.add_port_mappings();
  pm->set_container_port(80);
  pm->set_host_port(FreeLoopbackPort());
  std::string id;
  grpc::Status s = h_->RunPod(pod, &id);
  ASSERT_FALSE(s.ok()) << "portmap accepted a bad condition: the test needs another failure";
  EXPECT_THAT(s.error_message(), HasSubstr("portmap"));
  std::vector<v1::PodSandbox> pods;
  ASSERT_TRUE(h_->ListPods(nullptr, &pods).ok());
  EXPECT_TRUE(pods.empty());
  ExpectBackTo(before);
}

}  // namespace
}  // namespace berth::testing
