// SPDX-License-Identifier: Apache-2.0
// The network over fake plugins (test_support.h): what each plugin receives, chaining,
// rollback, the attachment cache across restarts and configuration changes, CHECK, GC,
// deadlines and readiness.
#include "plugins/cni/cni_network.h"

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugins/cni/tests/test_support.h"

namespace berth::cni {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using namespace ::berth::cni::testing;  // NOLINT(build/namespaces)

std::string Message(const absl::Status& s) { return std::string(s.message()); }

constexpr char kAlphaResult[] =
    R"({"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/ns"}],)"
    R"("ips":[{"address":"10.0.0.2/24","interface":0}]})";
constexpr char kBetaResult[] =
    R"({"cniVersion":"1.0.0","interfaces":[{"name":"veth1"},{"name":"eth0","sandbox":"/ns"}],)"
    R"("ips":[{"address":"fd00::2/64","interface":1},{"address":"10.0.0.2/24","interface":1}],)"
    R"("dns":{"nameservers":["10.0.0.10"],"search":["svc.local"]}})";

class NetworkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bin_ = dir_ / "bin";
    ctl_ = dir_ / "ctl";
    conf_ = dir_ / "net.d";
    cache_ = dir_ / "cache";
    std::filesystem::create_directories(ctl_);
    std::filesystem::create_directories(conf_);
    for (const char* type : {"alpha", "beta", "gamma", "sleepy"}) {
      InstallFakePlugin(bin_, ctl_, type);
    }
    WriteTextFile(dir_ / "netns", "");  // stands for a pinned namespace
    netns_ = dir_ / "netns";
    WriteTextFile(ctl_ + "/alpha.ADD.out", kAlphaResult);
    WriteTextFile(ctl_ + "/beta.ADD.out", kBetaResult);
  }

  // A conflist of alpha, then beta with portMappings and bandwidth.
  void WriteDefaultConfig(const std::string& version = "1.0.0", const std::string& name = "testnet",
                          const std::string& file = "10-test.conflist") {
    WriteTextFile(conf_ + "/" + file,
                  R"({"cniVersion":")" + version + R"(","name":")" + name + R"(","plugins":[
                    {"type":"alpha","custom":{"k":[1,2]}},
                    {"type":"beta","capabilities":{"portMappings":true,"bandwidth":true,
                                                   "mac":false}}]})");
  }

  std::unique_ptr<Network> Make(absl::Duration timeout = absl::Seconds(30),
                                std::vector<std::string> extra_conf_dirs = {}) {
    NetworkOptions o;
    o.conf_dir = conf_;
    o.extra_conf_dirs = std::move(extra_conf_dirs);
    o.bin_dirs = {bin_};
    o.cache_dir = cache_;
    o.plugin_timeout = timeout;
    auto n = Network::Create(o, [this](LogLevel, std::string_view m) {
      std::lock_guard<std::mutex> g(log_mu_);
      log_ += std::string(m) + "\n";
    });
    EXPECT_TRUE(n.ok()) << n.status();
    return n.ok() ? std::move(*n) : nullptr;
  }

  std::string Request(const std::string& id, const std::string& extra = "") const {
    return R"({"sandbox_id":")" + id + R"(","netns":")" + netns_ +
           R"(","pod_name":"web","pod_namespace":"prod","pod_uid":"uid-1")" + extra + "}";
  }

  std::vector<std::string> Calls() const { return ReadLines(ctl_ + "/calls"); }
  void ClearCalls() const { std::filesystem::remove(ctl_ + "/calls"); }
  json Stdin(const std::string& type, const std::string& cmd) const {
    return json::parse(ReadTextFile(ctl_ + "/" + type + "." + cmd + ".stdin"));
  }
  std::map<std::string, std::string> Env(const std::string& type, const std::string& cmd) const {
    return ReadEnv(ctl_ + "/" + type + "." + cmd + ".env");
  }
  std::string RecordPath(const std::string& id) const { return cache_ + "/" + id + ".json"; }

  TempDir dir_;
  std::string bin_, ctl_, conf_, cache_, netns_;
  std::mutex log_mu_;
  std::string log_;
};

TEST_F(NetworkTest, AttachRunsTheChainWithTheCniEnvironmentAndConfig) {
  WriteDefaultConfig();
  auto net = Make();
  auto result = net->Attach(
      Request("sb1",
              R"(,"port_mappings":[{"protocol":"tcp","container_port":80,"host_port":8080},
                           {"protocol":"udp","container_port":53,"host_port":0}],
         "annotations":{"kubernetes.io/ingress-bandwidth":"10M","cni.berth.io/mac":"aa:bb"},
         "pod_cidr":"10.0.0.0/24")"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(Calls(), ElementsAre("alpha ADD", "beta ADD"));

  const std::map<std::string, std::string> expected_env = {
      {"CNI_COMMAND", "ADD"},
      {"CNI_CONTAINERID", "sb1"},
      {"CNI_NETNS", netns_},
      {"CNI_IFNAME", "eth0"},
      {"CNI_ARGS",
       "IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web;"
       "K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=uid-1"},
      {"CNI_PATH", bin_},
      {"PATH", "/usr/sbin:/usr/bin:/sbin:/bin"}};
  EXPECT_EQ(Env("alpha", "ADD"), expected_env);
  EXPECT_EQ(Env("beta", "ADD"), expected_env);

  // The first plugin: its object with name and cniVersion; no prevResult, no runtimeConfig
  // (it declares no capability).
  EXPECT_EQ(Stdin("alpha", "ADD"), json::parse(R"({"type":"alpha","custom":{"k":[1,2]},
                                                    "name":"testnet","cniVersion":"1.0.0"})"));
  // The second: the first's result as prevResult and only the declared capabilities.
  EXPECT_EQ(Stdin("beta", "ADD"), json::parse(std::string(R"({"type":"beta","name":"testnet",
      "cniVersion":"1.0.0",
      "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}],
                       "bandwidth":{"ingressRate":10000000,"ingressBurst":10000000}},
      "prevResult":)") + kAlphaResult + "}"));

  // The result: the last plugin's, IPv4 first, without prefix lengths.
  EXPECT_EQ(json::parse(*result), json::parse(R"({"ips":["10.0.0.2","fd00::2"],
      "interfaces":[{"name":"veth1"},{"name":"eth0","sandbox":"/ns"}],
      "dns":{"nameservers":["10.0.0.10"],"domain":"","search":["svc.local"],"options":[]},
      "network":"testnet","config_file":")" + conf_ + R"(/10-test.conflist"})"));

  // The record holds the configuration, the request and the final result.
  json record = json::parse(ReadTextFile(RecordPath("sb1")));
  EXPECT_EQ(record["sandbox_id"], "sb1");
  EXPECT_EQ(record["ifname"], "eth0");
  EXPECT_EQ(record["network"], "testnet");
  EXPECT_EQ(record["config_file"], conf_ + "/10-test.conflist");
  EXPECT_EQ(record["config"], ReadTextFile(conf_ + "/10-test.conflist"));
  EXPECT_EQ(record["result"], json::parse(kBetaResult));
  EXPECT_EQ(record["request"]["pod_name"], "web");
}

TEST_F(NetworkTest, RecordIsOnDiskBeforeTheFirstAdd) {
  WriteDefaultConfig();
  WriteTextFile(ctl_ + "/alpha.ADD.sh",
                "cp \"" + RecordPath("sb1") + "\" \"$ctl/record-during-add\"\n");
  auto net = Make();
  ASSERT_TRUE(net->Attach(Request("sb1")).ok());
  json during = json::parse(ReadTextFile(ctl_ + "/record-during-add"));
  EXPECT_EQ(during["sandbox_id"], "sb1");
  EXPECT_TRUE(during["result"].is_null());
  EXPECT_FALSE(during["config"].get<std::string>().empty());
}

TEST_F(NetworkTest, AllCapabilitiesGoOnlyWhereDeclared) {
  WriteTextFile(conf_ + "/10.conflist", R"({"cniVersion":"1.0.0","name":"caps","plugins":[
      {"type":"alpha","capabilities":{"ipRanges":true,"ips":true,"mac":true,
                                      "portMappings":false}},
      {"type":"beta","capabilities":{"bandwidth":true}}]})");
  auto net = Make();
  auto result = net->Attach(
      Request("sb1", R"(,"pod_cidr":"10.9.0.0/24","annotations":{"cni.berth.io/ips":"10.9.0.7",
         "cni.berth.io/mac":"c2:11:22:33:44:55"},
         "port_mappings":[{"protocol":"tcp","container_port":80,"host_port":8080}])"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(Stdin("alpha", "ADD")["runtimeConfig"],
            json::parse(R"({"ipRanges":[[{"subnet":"10.9.0.0/24"}]],"ips":["10.9.0.7"],
                            "mac":"c2:11:22:33:44:55"})"));
  EXPECT_FALSE(Stdin("alpha", "ADD").contains("capabilities"));
  // Declared but not provided (no bandwidth annotation): no runtimeConfig at all.
  EXPECT_FALSE(Stdin("beta", "ADD").contains("runtimeConfig"));
  EXPECT_FALSE(Stdin("beta", "ADD").contains("capabilities"));
}

TEST_F(NetworkTest, FailedAddSurfacesTheCniErrorAndDeletesInReverse) {
  WriteTextFile(conf_ + "/10.conflist", R"({"cniVersion":"1.0.0","name":"testnet","plugins":[
      {"type":"alpha"},{"type":"beta"},{"type":"gamma"}]})");
  WriteTextFile(ctl_ + "/beta.ADD.out",
                R"({"cniVersion":"1.0.0","code":7,"msg":"invalid config","details":"no subnet"})");
  WriteTextFile(ctl_ + "/beta.ADD.exit", "1");
  auto net = Make();
  auto result = net->Attach(Request("sb1"));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(Message(result.status()),
              HasSubstr("attach of sandbox sb1: plugin \"beta\" (ADD, network \"testnet\"): "
                        "invalid config: no subnet (CNI error code 7)"));
  // Every plugin of the list, in reverse, with the last good result.
  EXPECT_THAT(Calls(), ElementsAre("alpha ADD", "beta ADD", "gamma DEL", "beta DEL", "alpha DEL"));
  EXPECT_EQ(Stdin("gamma", "DEL")["prevResult"], json::parse(kAlphaResult));
  EXPECT_EQ(Env("alpha", "DEL").at("CNI_NETNS"), netns_);
  EXPECT_FALSE(Exists(RecordPath("sb1")));
  EXPECT_FALSE(net->Check(Request("sb1")).ok());
}

TEST_F(NetworkTest, FailedRollbackKeepsTheRecordForALaterDetach) {
  WriteDefaultConfig();
  WriteTextFile(ctl_ + "/beta.ADD.exit", "1");
  WriteTextFile(ctl_ + "/alpha.DEL.exit", "1");
  auto net = Make();
  auto result = net->Attach(Request("sb1"));
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(Message(result.status()),
              HasSubstr("; undoing the attach failed too (plugin \"alpha\" (DEL, network "
                        "\"testnet\") exited with status 1"));
  EXPECT_THAT(Message(result.status()),
              HasSubstr("the attachment record " + RecordPath("sb1") + " stays"));
  EXPECT_TRUE(Exists(RecordPath("sb1")));
  EXPECT_THAT(log_, HasSubstr("undoing the failed attach failed too"));
  // Not attached as far as CHECK is concerned.
  EXPECT_EQ(net->Check(Request("sb1")).code(), absl::StatusCode::kNotFound);
  std::filesystem::remove(ctl_ + "/alpha.DEL.exit");
  ClearCalls();
  ASSERT_TRUE(net->Detach(Request("sb1")).ok());
  EXPECT_THAT(Calls(), ElementsAre("beta DEL", "alpha DEL"));
  EXPECT_FALSE(Exists(RecordPath("sb1")));
}

TEST_F(NetworkTest, PluginErrorWithoutErrorObjectKeepsStderr) {
  WriteDefaultConfig();
  WriteTextFile(ctl_ + "/alpha.ADD.out", "");
  WriteTextFile(ctl_ + "/alpha.ADD.err", "failed to open /run/x: permission denied\n");
  WriteTextFile(ctl_ + "/alpha.ADD.exit", "2");
  auto net = Make();
  auto result = net->Attach(Request("sb1"));
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(Message(result.status()),
              HasSubstr("plugin \"alpha\" (ADD, network \"testnet\") exited with status 2 "
                        "without a CNI error object; stderr: failed to open /run/x: permission "
                        "denied"));
}

TEST_F(NetworkTest, AddWithoutResultIsAnError) {
  WriteDefaultConfig();
  WriteTextFile(ctl_ + "/alpha.ADD.out", "not json");
  auto net = Make();
  auto result = net->Attach(Request("sb1"));
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(Message(result.status()),
              HasSubstr("plugin \"alpha\" (ADD, network \"testnet\") succeeded but printed no "
                        "CNI result on stdout (got \"not json\")"));
  EXPECT_THAT(Calls(), ElementsAre("alpha ADD", "beta DEL", "alpha DEL"));
}

TEST_F(NetworkTest, DetachAfterRestartUsesTheRecordedConfigurationEvenWhenTheFileChanged) {
  WriteDefaultConfig();
  {
    auto net = Make();
    ASSERT_TRUE(net->Attach(Request("sb1", R"(,"port_mappings":[{"protocol":"tcp",
                                            "container_port":80,"host_port":8080}])"))
                    .ok());
  }
  // The administrator replaces the network; berthd restarts.
  std::filesystem::remove(conf_ + "/10-test.conflist");
  WriteTextFile(conf_ + "/05-other.conflist",
                R"({"cniVersion":"1.0.0","name":"other","plugins":[{"type":"gamma"}]})");
  ClearCalls();
  auto net = Make();
  ASSERT_TRUE(net->Detach(Request("sb1")).ok());
  EXPECT_THAT(Calls(), ElementsAre("beta DEL", "alpha DEL"));
  json beta = Stdin("beta", "DEL");
  EXPECT_EQ(beta["name"], "testnet");
  EXPECT_EQ(beta["prevResult"], json::parse(kBetaResult));
  EXPECT_EQ(beta["runtimeConfig"],
            json::parse(R"({"portMappings":[{"hostPort":8080,"containerPort":80,
                                              "protocol":"tcp"}]})"));
  EXPECT_EQ(Stdin("alpha", "DEL")["prevResult"], json::parse(kBetaResult));
  auto env = Env("alpha", "DEL");
  EXPECT_EQ(env.at("CNI_COMMAND"), "DEL");
  EXPECT_EQ(env.at("CNI_CONTAINERID"), "sb1");
  EXPECT_EQ(env.at("CNI_NETNS"), netns_);
  EXPECT_EQ(env.at("CNI_IFNAME"), "eth0");
  EXPECT_EQ(env.at("CNI_ARGS"),
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web;"
            "K8S_POD_INFRA_CONTAINER_ID=sb1;K8S_POD_UID=uid-1");
  EXPECT_FALSE(Exists(RecordPath("sb1")));
  // Detached already: nothing more to do.
  ClearCalls();
  ASSERT_TRUE(net->Detach(Request("sb1")).ok());
  EXPECT_THAT(Calls(), IsEmpty());
}

TEST_F(NetworkTest, DetachWhenTheConfigurationIsGoneAndTheNetnsToo) {
  WriteDefaultConfig();
  auto net = Make();
  ASSERT_TRUE(net->Attach(Request("sb1")).ok());
  std::filesystem::remove(conf_ + "/10-test.conflist");
  std::filesystem::remove(netns_);
  ClearCalls();
  ASSERT_TRUE(net->Detach(Request("sb1")).ok());
  EXPECT_THAT(Calls(), ElementsAre("beta DEL", "alpha DEL"));
  EXPECT_EQ(Env("alpha", "DEL").at("CNI_NETNS"), "");
}

TEST_F(NetworkTest, DetachWithoutRecordIsOk) {
  auto net = Make();
  ASSERT_TRUE(net->Detach(R"({"sandbox_id":"never","netns":""})").ok());
  EXPECT_THAT(Calls(), IsEmpty());
}

TEST_F(NetworkTest, FailedDetachKeepsTheRecordAndCanBeRetried) {
  WriteDefaultConfig();
  auto net = Make();
  ASSERT_TRUE(net->Attach(Request("sb1")).ok());
  WriteTextFile(ctl_ + "/beta.DEL.out", R"({"code":11,"msg":"locked"})");
  WriteTextFile(ctl_ + "/beta.DEL.exit", "1");
  ClearCalls();
  absl::Status s = net->Detach(Request("sb1"));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(Message(s), HasSubstr("detach of sandbox sb1: plugin \"beta\" (DEL, network "
                                    "\"testnet\"): locked (CNI error code 11)"));
  EXPECT_THAT(Message(s), HasSubstr("stays; the detach can be retried"));
  EXPECT_THAT(Calls(), ElementsAre("beta DEL"));  // halts at the first error (SPEC.md)
  EXPECT_TRUE(Exists(RecordPath("sb1")));
  std::filesystem::remove(ctl_ + "/beta.DEL.exit");
  std::filesystem::remove(ctl_ + "/beta.DEL.out");
  ASSERT_TRUE(net->Detach(Request("sb1")).ok());
  EXPECT_FALSE(Exists(RecordPath("sb1")));
}

TEST_F(NetworkTest, DelWithoutPrevResultBefore040) {
  WriteDefaultConfig("0.3.1");
  auto net = Make();
  ASSERT_TRUE(net->Attach(Request("sb1")).ok());
  ASSERT_TRUE(net->Detach(Request("sb1")).ok());
  EXPECT_FALSE(Stdin("alpha", "DEL").contains("prevResult"));
  EXPECT_EQ(Stdin("alpha", "DEL")["cniVersion"], "0.3.1");
}

TEST_F(NetworkTest, Check) {
  WriteDefaultConfig();
  auto net = Make();
  absl::Status s = net->Check(Request("sb1"));
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(s), HasSubstr("not attached"));
  ASSERT_TRUE(net->Attach(Request("sb1")).ok());
  ClearCalls();
  ASSERT_TRUE(net->Check(Request("sb1")).ok());
  EXPECT_THAT(Calls(), ElementsAre("alpha CHECK", "beta CHECK"));
  EXPECT_EQ(Stdin("alpha", "CHECK")["prevResult"], json::parse(kBetaResult));
  EXPECT_EQ(Env("beta", "CHECK").at("CNI_NETNS"), netns_);

  WriteTextFile(ctl_ + "/beta.CHECK.out", R"({"code":100,"msg":"veth is down"})");
  WriteTextFile(ctl_ + "/beta.CHECK.exit", "1");
  s = net->Check(Request("sb1"));
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(Message(s), HasSubstr("check of sandbox sb1: plugin \"beta\" (CHECK, network "
                                    "\"testnet\"): veth is down (CNI error code 100)"));
}

TEST_F(NetworkTest, CheckSkippedBefore040AndWhenDisabled) {
  WriteDefaultConfig("0.3.1");
  auto net = Make();
  ASSERT_TRUE(net->Attach(Request("sb1")).ok());
  ClearCalls();
  EXPECT_TRUE(net->Check(Request("sb1")).ok());
  EXPECT_THAT(Calls(), IsEmpty());

  WriteTextFile(conf_ + "/10-test.conflist", R"({"cniVersion":"1.0.0","name":"n",
      "disableCheck":true,"plugins":[{"type":"alpha"}]})");
  ASSERT_TRUE(net->Attach(Request("sb2")).ok());
  ClearCalls();
  EXPECT_TRUE(net->Check(Request("sb2")).ok());
  EXPECT_THAT(Calls(), IsEmpty());
}

TEST_F(NetworkTest, GcDetachesWhatIsNotListedThenRunsPluginGc) {
  WriteDefaultConfig("1.1.0");
  auto net = Make();
  ASSERT_TRUE(net->Attach(Request("sb1")).ok());
  ASSERT_TRUE(net->Attach(Request("sb2")).ok());
  ClearCalls();
  ASSERT_TRUE(net->Gc(R"(["sb2","unknown"])").ok());
  EXPECT_THAT(Calls(), ElementsAre("beta DEL", "alpha DEL", "alpha GC", "beta GC"));
  EXPECT_EQ(Env("alpha", "DEL").at("CNI_CONTAINERID"), "sb1");
  EXPECT_FALSE(Exists(RecordPath("sb1")));
  EXPECT_TRUE(Exists(RecordPath("sb2")));
  json gc = Stdin("beta", "GC");
  EXPECT_EQ(gc["cni.dev/valid-attachments"],
            json::parse(R"([{"containerID":"sb2","ifname":"eth0"}])"));
  EXPECT_EQ(gc["name"], "testnet");
  EXPECT_FALSE(gc.contains("capabilities"));
  EXPECT_FALSE(gc.contains("runtimeConfig"));
  EXPECT_FALSE(gc.contains("prevResult"));
  EXPECT_EQ(
      Env("alpha", "GC"),
      (std::map<std::string, std::string>{
          {"CNI_COMMAND", "GC"}, {"CNI_PATH", bin_}, {"PATH", "/usr/sbin:/usr/bin:/sbin:/bin"}}));
}

TEST_F(NetworkTest, GcWithoutPluginGcBefore110AndReportsErrors) {
  WriteDefaultConfig("1.0.0");
  auto net = Make();
  ASSERT_TRUE(net->Attach(Request("sb1")).ok());
  ASSERT_TRUE(net->Attach(Request("sb2")).ok());
  WriteTextFile(ctl_ + "/alpha.DEL.sh",
                "if [ \"$CNI_CONTAINERID\" = sb1 ]; then echo '{\"code\":5,\"msg\":\"io\"}'; "
                "exit 1; fi\n");
  ClearCalls();
  absl::Status s = net->Gc("[]");
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(Message(s), HasSubstr("gc: 1 error(s): detach of sandbox sb1: plugin \"alpha\""));
  EXPECT_THAT(Calls(), ElementsAre("beta DEL", "alpha DEL", "beta DEL", "alpha DEL"));
  EXPECT_TRUE(Exists(RecordPath("sb1")));
  EXPECT_FALSE(Exists(RecordPath("sb2")));
  EXPECT_EQ(net->Gc("{}").code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(NetworkTest, TimeoutKillsTheSlowPluginPromptly) {
  WriteTextFile(conf_ + "/10.conflist", R"({"cniVersion":"1.0.0","name":"slow","plugins":[
      {"type":"alpha"},{"type":"sleepy"}]})");
  WriteTextFile(ctl_ + "/sleepy.ADD.sleep", "60");
  auto net = Make(absl::Seconds(1));
  auto start = std::chrono::steady_clock::now();
  auto result = net->Attach(Request("sb1"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(8));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(Message(result.status()),
              HasSubstr("plugin \"sleepy\" (ADD, network \"slow\") did not finish within 1s and "
                        "was killed"));
  pid_t pid = std::stoi(ReadTextFile(ctl_ + "/sleepy.ADD.pid"));
  EXPECT_NE(::kill(pid, 0), 0) << "the sleeping plugin is still running";
  EXPECT_THAT(Calls(), ElementsAre("alpha ADD", "sleepy ADD", "sleepy DEL", "alpha DEL"));
  EXPECT_FALSE(Exists(RecordPath("sb1")));
}

TEST_F(NetworkTest, FirstConfigurationByNameAndSinglePluginConf) {
  WriteDefaultConfig("1.0.0", "later", "20-later.conflist");
  WriteTextFile(conf_ + "/10-single.conf",
                R"({"cniVersion":"0.4.0","name":"single","type":"gamma","opt":true})");
  WriteTextFile(conf_ + "/00-notes.txt", "ignored");
  auto net = Make();
  auto result = net->Attach(Request("sb1"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(Calls(), ElementsAre("gamma ADD"));
  EXPECT_EQ(Stdin("gamma", "ADD"),
            json::parse(R"({"cniVersion":"0.4.0","name":"single","type":"gamma","opt":true})"));
  EXPECT_EQ(json::parse(*result)["network"], "single");
  // A configuration that appears later and sorts first is used for new pods.
  WriteDefaultConfig("1.0.0", "newer", "01-newer.conflist");
  ClearCalls();
  result = net->Attach(Request("sb2"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(Calls(), ElementsAre("alpha ADD", "beta ADD"));
  EXPECT_EQ(json::parse(*result)["network"], "newer");
  // sb1 is detached from the network it was attached to.
  ClearCalls();
  ASSERT_TRUE(net->Detach(Request("sb1")).ok());
  EXPECT_THAT(Calls(), ElementsAre("gamma DEL"));
}

// A runtime handler's own configuration directory (runtimes: <h>: cni_conf_dir), named by
// the request's conf_dir: its first file, its readiness, detach from the record after a
// restart (even without the directory), GC of each directory's network.
TEST_F(NetworkTest, RequestsNameAConfigurationDirectoryOfTheirOwn) {
  const std::string kata = dir_ / "kata.d";
  std::filesystem::create_directories(kata);
  WriteDefaultConfig();
  WriteTextFile(kata + "/20-b.conflist",
                R"({"cniVersion":"1.0.0","name":"kata-b","plugins":[{"type":"alpha"}]})");
  WriteTextFile(kata + "/10-a.conflist",
                R"({"cniVersion":"1.0.0","name":"kata-net","plugins":[{"type":"gamma"}]})");
  auto net = Make(absl::Seconds(30), {kata, conf_, kata});
  EXPECT_EQ(net->ConfDirs(), (std::vector<std::string>{conf_, kata}));

  ASSERT_TRUE(net->Attach(Request("sb1")).ok());
  EXPECT_THAT(Calls(), ElementsAre("alpha ADD", "beta ADD"));
  ClearCalls();
  auto result = net->Attach(Request("sb2", R"(,"conf_dir":")" + kata + R"(")"));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_THAT(Calls(), ElementsAre("gamma ADD"));  // the first file of that directory
  EXPECT_EQ(json::parse(*result)["network"], "kata-net");
  EXPECT_EQ(json::parse(*result)["config_file"], kata + "/10-a.conflist");
  EXPECT_EQ(json::parse(ReadTextFile(RecordPath("sb2")))["request"]["conf_dir"], kata);
  // Naming the default directory is the same as naming none.
  ClearCalls();
  ASSERT_TRUE(net->Attach(Request("sb3", R"(,"conf_dir":")" + conf_ + R"(")")).ok());
  EXPECT_THAT(Calls(), ElementsAre("alpha ADD", "beta ADD"));

  // A directory the plugin was not given is refused, naming those it knows.
  auto other = net->Attach(Request("sb4", R"(,"conf_dir":"/etc/cni/elsewhere")"));
  EXPECT_EQ(other.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(other.status()),
              HasSubstr("\"conf_dir\" /etc/cni/elsewhere is not a configuration directory of "
                        "this network (known: " + conf_ + ", " + kata));

  // Readiness per directory; the default's is Status().
  EXPECT_TRUE(net->StatusOf(kata).ready);
  std::filesystem::remove(kata + "/10-a.conflist");
  std::filesystem::remove(kata + "/20-b.conflist");
  sdk::Readiness r = net->StatusOf(kata);
  EXPECT_FALSE(r.ready);
  EXPECT_EQ(r.reason, "NetworkPluginNotReady");
  EXPECT_THAT(r.message, HasSubstr("no CNI network configuration in " + kata));
  EXPECT_TRUE(net->Status().ready) << net->Status().message;
  json statuses = ConfDirStatuses(*net);
  EXPECT_EQ(statuses[conf_]["network_ready"], true);
  EXPECT_EQ(statuses[kata]["network_ready"], false);
  EXPECT_THAT(statuses[kata]["message"].get<std::string>(), HasSubstr(kata));
  // A pod of that directory fails naming it; the default network still attaches.
  auto failed = net->Attach(Request("sb5", R"(,"conf_dir":")" + kata + R"(")"));
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Message(failed.status()), HasSubstr("no CNI network configuration in " + kata));
  EXPECT_FALSE(Exists(RecordPath("sb5")));
  ASSERT_TRUE(net->Attach(Request("sb6")).ok());

  // After a restart without that directory configured at all, sb2 is detached with the
  // configuration it was attached with.
  net.reset();
  net = Make();
  ClearCalls();
  ASSERT_TRUE(net->Detach(Request("sb2")).ok());
  EXPECT_THAT(Calls(), ElementsAre("gamma DEL"));
  EXPECT_EQ(Stdin("gamma", "DEL")["name"], "kata-net");
  EXPECT_FALSE(Exists(RecordPath("sb2")));
}

TEST_F(NetworkTest, GcRunsThePluginGcOfEveryDirectory) {
  const std::string kata = dir_ / "kata.d";
  std::filesystem::create_directories(kata);
  WriteDefaultConfig("1.1.0");
  WriteTextFile(kata + "/10.conflist",
                R"({"cniVersion":"1.1.0","name":"kata-net","plugins":[{"type":"gamma"}]})");
  auto net = Make(absl::Seconds(30), {kata});
  ASSERT_TRUE(net->Attach(Request("sb1")).ok());
  ASSERT_TRUE(net->Attach(Request("sb2", R"(,"conf_dir":")" + kata + R"(")")).ok());
  ASSERT_TRUE(net->Attach(Request("sb3", R"(,"conf_dir":")" + kata + R"(")")).ok());
  ClearCalls();
  ASSERT_TRUE(net->Gc(R"(["sb1","sb2"])").ok());
  EXPECT_THAT(Calls(), ElementsAre("gamma DEL", "alpha GC", "beta GC", "gamma GC"));
  EXPECT_EQ(Env("gamma", "DEL").at("CNI_CONTAINERID"), "sb3");
  // Each network's GC is told of its own attachments.
  EXPECT_EQ(Stdin("beta", "GC")["cni.dev/valid-attachments"],
            json::parse(R"([{"containerID":"sb1","ifname":"eth0"}])"));
  EXPECT_EQ(Stdin("gamma", "GC")["cni.dev/valid-attachments"],
            json::parse(R"([{"containerID":"sb2","ifname":"eth0"}])"));
}

TEST_F(NetworkTest, NoConfiguration) {
  auto net = Make();
  auto result = net->Attach(Request("sb1"));
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Message(result.status()),
              HasSubstr("attach of sandbox sb1: no CNI network configuration in " + conf_));
  EXPECT_FALSE(Exists(RecordPath("sb1")));
}

TEST_F(NetworkTest, BadRequests) {
  WriteDefaultConfig();
  auto net = Make();
  EXPECT_EQ(net->Attach(R"({"sandbox_id":"../x","netns":"/x"})").status().code(),
            absl::StatusCode::kInvalidArgument);
  auto relative = net->Attach(R"({"sandbox_id":"sb1","netns":"netns"})");
  EXPECT_EQ(relative.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(relative.status()), HasSubstr("\"netns\" must be the absolute path"));
  auto missing = net->Attach(R"({"sandbox_id":"sb1","netns":")" + dir_ / "nope" + "\"}");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(missing.status()),
              HasSubstr("attach of sandbox sb1: network namespace " + dir_ / "nope"));
  auto bandwidth =
      net->Attach(Request("sb1", R"(,"annotations":{"kubernetes.io/ingress-bandwidth":"lots"})"));
  EXPECT_EQ(bandwidth.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(bandwidth.status()),
              HasSubstr("annotation kubernetes.io/ingress-bandwidth: \"lots\""));
  EXPECT_THAT(Calls(), IsEmpty());
  EXPECT_FALSE(Exists(RecordPath("sb1")));
}

TEST_F(NetworkTest, ASecondAttachDetachesTheFirst) {
  WriteDefaultConfig();
  auto net = Make();
  ASSERT_TRUE(net->Attach(Request("sb1")).ok());
  ClearCalls();
  ASSERT_TRUE(net->Attach(Request("sb1")).ok());
  EXPECT_THAT(Calls(), ElementsAre("beta DEL", "alpha DEL", "alpha ADD", "beta ADD"));
}

TEST_F(NetworkTest, ConcurrentAttachments) {
  WriteDefaultConfig();
  auto net = Make();
  std::vector<std::thread> threads;
  threads.reserve(8);
  std::vector<absl::Status> results(8);
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      const std::string id = "sb" + std::to_string(i);
      auto r = net->Attach(Request(id));
      results[i] = r.ok() ? net->Detach(Request(id)) : r.status();
    });
  }
  for (auto& t : threads) t.join();
  for (const absl::Status& s : results) EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(Calls().size(), 32u);
  EXPECT_TRUE(std::filesystem::is_empty(cache_));
}

TEST_F(NetworkTest, ReadinessNamesTheProblem) {
  auto net = Make();
  sdk::Readiness r = net->Status();
  EXPECT_FALSE(r.ready);
  EXPECT_EQ(r.reason, "NetworkPluginNotReady");
  EXPECT_THAT(r.message, HasSubstr("no CNI network configuration in " + conf_));

  WriteTextFile(conf_ + "/10.conflist", R"({"cniVersion":"1.0.0","name":"n","plugins":[)");
  r = net->Status();
  EXPECT_FALSE(r.ready);
  EXPECT_THAT(r.message, HasSubstr(conf_ + "/10.conflist: invalid JSON: parse error"));

  WriteTextFile(conf_ + "/10.conflist",
                R"({"cniVersion":"1.0.0","name":"n","plugins":[{"type":"flannel"}]})");
  r = net->Status();
  EXPECT_FALSE(r.ready);
  EXPECT_THAT(r.message, HasSubstr(conf_ +
                                   "/10.conflist: plugin binary \"flannel\" (plugin 1 "
                                   "of 1) not found in " +
                                   bin_));

  WriteTextFile(conf_ + "/10.conflist",
                R"({"cniVersion":"0.2.0","name":"n","plugins":[{"type":"alpha"}]})");
  r = net->Status();
  EXPECT_FALSE(r.ready);
  EXPECT_THAT(r.message, HasSubstr("cniVersion \"0.2.0\" of network \"n\" is too old"));

  WriteDefaultConfig();
  std::filesystem::remove(conf_ + "/10.conflist");
  r = net->Status();
  EXPECT_TRUE(r.ready) << r.message;
  EXPECT_THAT(Calls(), IsEmpty());  // no STATUS before 1.1.0
}

TEST_F(NetworkTest, ReadinessAsksPluginsOf110ForTheirStatus) {
  WriteDefaultConfig("1.1.0");
  auto net = Make();
  sdk::Readiness r = net->Status();
  EXPECT_TRUE(r.ready) << r.message;
  EXPECT_THAT(Calls(), ElementsAre("alpha STATUS", "beta STATUS"));
  EXPECT_EQ(Env("beta", "STATUS"),
            (std::map<std::string, std::string>{{"CNI_COMMAND", "STATUS"},
                                                {"CNI_PATH", bin_},
                                                {"PATH", "/usr/sbin:/usr/bin:/sbin:/bin"}}));
  EXPECT_EQ(Stdin("beta", "STATUS"),
            json::parse(R"({"type":"beta","name":"testnet","cniVersion":"1.1.0"})"));

  WriteTextFile(ctl_ + "/beta.STATUS.out",
                R"({"code":50,"msg":"daemon not running","details":"dial /run/x.sock"})");
  WriteTextFile(ctl_ + "/beta.STATUS.exit", "1");
  r = net->Status();
  EXPECT_FALSE(r.ready);
  EXPECT_EQ(r.reason, "NetworkPluginNotReady");
  EXPECT_THAT(r.message, HasSubstr("plugin \"beta\" (STATUS, network \"testnet\"): daemon not "
                                   "running: dial /run/x.sock (CNI error code 50)"));
  EXPECT_THAT(r.message, HasSubstr(conf_ + "/10-test.conflist"));
}

TEST_F(NetworkTest, CorruptRecord) {
  std::filesystem::create_directories(cache_);
  WriteTextFile(RecordPath("sb1"), "{garbage");
  auto net = Make();
  absl::Status s = net->Detach(Request("sb1"));
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(Message(s), HasSubstr(RecordPath("sb1") + " is corrupt"));
}

TEST_F(NetworkTest, CreateRefusesBadOptions) {
  NetworkOptions o;
  o.cache_dir = "relative";
  EXPECT_EQ(Network::Create(o, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
  o.cache_dir = cache_;
  o.plugin_timeout = absl::ZeroDuration();
  EXPECT_EQ(Network::Create(o, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace berth::cni
