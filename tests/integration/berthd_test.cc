// SPDX-License-Identifier: Apache-2.0
// The real berthd, started on a temporary socket and root, driven over gRPC exactly as the
// kubelet does, and through berthctl.
#include <grpcpp/grpcpp.h>

#include "cri/v1/api.grpc.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/daemon_harness.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::MatchesRegex;

class BerthdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "berthd runs as root only";
    daemon_ = std::make_unique<Daemon>(tmp_.path());
    cni_dir_ = tmp_.path() / "net.d";
    fs::create_directories(cni_dir_);
  }
  void TearDown() override { daemon_.reset(); }

  void WriteConfig(const std::string& text) { WriteFile(daemon_->config(), text); }

  std::unique_ptr<runtime::v1::RuntimeService::Stub> Runtime() {
    auto ch = grpc::CreateChannel("unix://" + daemon_->socket().string(),
                                  grpc::InsecureChannelCredentials());
    return runtime::v1::RuntimeService::NewStub(ch);
  }
  std::unique_ptr<runtime::v1::ImageService::Stub> Images() {
    auto ch = grpc::CreateChannel("unix://" + daemon_->socket().string(),
                                  grpc::InsecureChannelCredentials());
    return runtime::v1::ImageService::NewStub(ch);
  }
  static std::unique_ptr<grpc::ClientContext> Ctx() {
    auto c = std::make_unique<grpc::ClientContext>();
    c->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return c;
  }
  runtime::v1::StatusResponse Status(bool verbose = false) {
    runtime::v1::StatusRequest req;
    req.set_verbose(verbose);
    runtime::v1::StatusResponse resp;
    grpc::Status s = Runtime()->Status(Ctx().get(), req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp;
  }
  static const runtime::v1::RuntimeCondition* Condition(const runtime::v1::StatusResponse& r,
                                                        const std::string& type) {
    for (const auto& c : r.status().conditions()) {
      if (c.type() == type) return &c;
    }
    return nullptr;
  }
  // Runs berthd to completion (it is expected to refuse to start).
  std::pair<int, std::string> RunBerthd(std::vector<std::string> extra = {}) {
    return RunCommand(daemon_->Args(std::move(extra)), tmp_.path() / "run.log");
  }

  TempDir tmp_;
  std::unique_ptr<Daemon> daemon_;
  fs::path cni_dir_;
};

TEST_F(BerthdTest, ServesVersionStatusAndRuntimeConfig) {
  WriteFile(cni_dir_ / "10-bridge.conflist", BridgeConflist());
  WriteConfig(BaseConfig(cni_dir_));
  ASSERT_TRUE(daemon_->Start()) << daemon_->Log();

  runtime::v1::VersionResponse v;
  ASSERT_TRUE(Runtime()->Version(Ctx().get(), runtime::v1::VersionRequest(), &v).ok());
  EXPECT_EQ(v.version(), "0.1.0");
  EXPECT_EQ(v.runtime_name(), "berth");
  EXPECT_THAT(v.runtime_version(), MatchesRegex("[0-9]+\\.[0-9]+\\.[0-9]+.*"));
  EXPECT_EQ(v.runtime_api_version(), "v1");

  auto st = Status(true);
  const auto* rr = Condition(st, "RuntimeReady");
  const auto* nr = Condition(st, "NetworkReady");
  ASSERT_NE(rr, nullptr);
  ASSERT_NE(nr, nullptr);
  EXPECT_TRUE(rr->status()) << rr->reason() << ": " << rr->message();
  EXPECT_TRUE(nr->status()) << nr->reason() << ": " << nr->message();
  ASSERT_EQ(st.runtime_handlers_size(), 1);
  EXPECT_EQ(st.runtime_handlers(0).name(), "runc");
  // Verbose info: the plugins, with the systemd driver skipped (no systemd as PID 1 here).
  ASSERT_TRUE(st.info().count("plugins"));
  auto plugins = nlohmann::json::parse(st.info().at("plugins"));
  bool saw_cri = false;
  for (const auto& p : plugins) {
    if (p["id"] == "io.berth.cri") saw_cri = p["state"] == "running";
    if (p["id"] == "io.berth.cgroup.systemd" && !fs::is_directory("/run/systemd/system")) {
      EXPECT_EQ(p["state"], "skipped");
      EXPECT_THAT(p["reason"].get<std::string>(), HasSubstr("not applicable"));
    }
  }
  EXPECT_TRUE(saw_cri);
  // What the node's LSMs allow, as the security-profile code sees it.
  ASSERT_TRUE(st.info().count("securityProfiles"));
  auto lsm = nlohmann::json::parse(st.info().at("securityProfiles"));
  EXPECT_EQ(lsm["seccomp"], true);
  EXPECT_EQ(lsm["selinux"], fs::exists("/sys/fs/selinux/enforce"));

  runtime::v1::RuntimeConfigResponse rc;
  ASSERT_TRUE(
      Runtime()->RuntimeConfig(Ctx().get(), runtime::v1::RuntimeConfigRequest(), &rc).ok());
  EXPECT_EQ(rc.linux().cgroup_driver(), runtime::v1::CgroupDriver::CGROUPFS);
}

TEST_F(BerthdTest, NetworkNotReadyWithoutCniConfigAndReadyOnceWritten) {
  WriteConfig(BaseConfig(cni_dir_));
  ASSERT_TRUE(daemon_->Start()) << daemon_->Log();
  auto st = Status();
  const auto* nr = Condition(st, "NetworkReady");
  ASSERT_NE(nr, nullptr);
  EXPECT_FALSE(nr->status());
  EXPECT_EQ(nr->reason(), "NetworkPluginNotReady");
  EXPECT_THAT(nr->message(), HasSubstr(cni_dir_.string()));
  // RuntimeReady does not depend on the network.
  EXPECT_TRUE(Condition(st, "RuntimeReady")->status());

  // A config naming a plugin binary that does not exist is still not ready...
  WriteFile(cni_dir_ / "10-bad.conflist",
            R"({"cniVersion":"1.0.0","name":"x","plugins":[{"type":"no-such-plugin"}]})");
  nr = Condition(st = Status(), "NetworkReady");
  EXPECT_FALSE(nr->status());
  EXPECT_THAT(nr->message(), HasSubstr("no-such-plugin"));
  // ...and a valid one, first by name, makes it ready without a restart.
  WriteFile(cni_dir_ / "05-bridge.conflist", BridgeConflist());
  EXPECT_TRUE(Condition(st = Status(), "NetworkReady")->status());
}

TEST_F(BerthdTest, RuntimeNotReadyWhenTheDefaultHandlerBinaryIsMissing) {
  WriteConfig(BaseConfig(cni_dir_, "",
                         "runtimes:\n  runc:\n    plugin: io.berth.runtime.runc\n"
                         "    options:\n      binary: /nonexistent/runc\n"
                         "default_runtime: runc\n"));
  ASSERT_TRUE(daemon_->Start()) << daemon_->Log();
  auto st = Status();
  const auto* rr = Condition(st, "RuntimeReady");
  ASSERT_NE(rr, nullptr);
  EXPECT_FALSE(rr->status());
  EXPECT_EQ(rr->reason(), "RuntimeBinaryNotFound");
  EXPECT_THAT(rr->message(), HasSubstr("/nonexistent/runc"));
}

TEST_F(BerthdTest, OneCgroupManager) {
  // No driver configured: on this host (systemd is not PID 1) cgroupfs, said in the log and
  // reported to the kubelet.
  std::string config = BaseConfig(cni_dir_);
  const std::string line = "    cgroup_driver: cgroupfs\n";
  config.erase(config.find(line), line.size());
  WriteConfig(config);
  ASSERT_TRUE(daemon_->Start()) << daemon_->Log();
  runtime::v1::RuntimeConfigResponse rc;
  ASSERT_TRUE(Runtime()->RuntimeConfig(Ctx().get(), {}, &rc).ok());
  EXPECT_EQ(rc.linux().cgroup_driver(), runtime::v1::CgroupDriver::CGROUPFS);
  EXPECT_THAT(daemon_->Log(), HasSubstr("cgroup driver: cgroupfs (the default"));
  daemon_->Stop();
  // A runc handler that would manage cgroups through systemd under the cgroupfs driver is
  // refused at start, naming the line and both fixes.
  WriteConfig(BaseConfig(cni_dir_, "",
                         "runtimes:\n  runc:\n    plugin: io.berth.runtime.runc\n"
                         "    options:\n      systemd_cgroup: true\n"
                         "default_runtime: runc\n"));
  EXPECT_FALSE(daemon_->Start());
  EXPECT_THAT(daemon_->Log(), HasSubstr("runtime handler \"runc\" sets systemd_cgroup: true but "
                                        "berth's cgroup driver is cgroupfs"));
  EXPECT_THAT(daemon_->Log(), HasSubstr("config.yaml:"));
}

TEST_F(BerthdTest, UnimplementedMethodsSayUnimplemented) {
  WriteConfig(BaseConfig(cni_dir_));
  ASSERT_TRUE(daemon_->Start()) << daemon_->Log();
  // Checkpointing is not there yet; the streaming RPCs are, and refuse empty requests.
  runtime::v1::ExecResponse r1;
  EXPECT_EQ(Runtime()->Exec(Ctx().get(), {}, &r1).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  runtime::v1::AttachResponse r1a;
  EXPECT_EQ(Runtime()->Attach(Ctx().get(), {}, &r1a).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  runtime::v1::PortForwardResponse r2;
  EXPECT_EQ(Runtime()->PortForward(Ctx().get(), {}, &r2).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  runtime::v1::CheckpointContainerResponse r3;
  EXPECT_EQ(Runtime()->CheckpointContainer(Ctx().get(), {}, &r3).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
  // What is implemented refuses an empty request with the field named.
  runtime::v1::RunPodSandboxResponse r4;
  grpc::Status s = Runtime()->RunPodSandbox(Ctx().get(), {}, &r4);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("config.metadata.name"));
  runtime::v1::ListContainersResponse r5;
  EXPECT_TRUE(Runtime()->ListContainers(Ctx().get(), {}, &r5).ok());
  EXPECT_EQ(r5.containers_size(), 0);
}

TEST_F(BerthdTest, StreamingServerKeys) {
  // A fixed port: the PortForward URLs carry it.
  const int port = FreeLoopbackPort();
  WriteConfig(BaseConfig(cni_dir_, "    stream_address: 127.0.0.1\n    stream_port: " +
                                       std::to_string(port) + "\n"));
  ASSERT_TRUE(daemon_->Start()) << daemon_->Log();
  runtime::v1::PortForwardRequest pf;
  pf.set_pod_sandbox_id("no-such-pod");
  runtime::v1::PortForwardResponse r;
  EXPECT_EQ(Runtime()->PortForward(Ctx().get(), pf, &r).error_code(),
            grpc::StatusCode::NOT_FOUND);
  daemon_->Stop();
  // Bad values stop berthd at start, naming the line.
  WriteConfig(BaseConfig(cni_dir_, "    stream_port: 70000\n"));
  EXPECT_FALSE(daemon_->Start());
  EXPECT_THAT(daemon_->Log(), HasSubstr("key \"stream_port\": expected a port number 0-65535"));
  EXPECT_THAT(daemon_->Log(), HasSubstr("config.yaml:"));
  WriteConfig(BaseConfig(cni_dir_, "    stream_address: localhost\n"));
  EXPECT_FALSE(daemon_->Start());
  EXPECT_THAT(daemon_->Log(), HasSubstr("key \"stream_address\": expected an IP address"));
}

TEST_F(BerthdTest, ShimCgroupKey) {
  WriteConfig(BaseConfig(cni_dir_, "    shim_cgroup: none\n"));
  ASSERT_TRUE(daemon_->Start()) << daemon_->Log();
  daemon_->Stop();
  WriteConfig(BaseConfig(cni_dir_, "    shim_cgroup: berthd\n"));
  EXPECT_FALSE(daemon_->Start());
  EXPECT_THAT(daemon_->Log(), HasSubstr("key \"shim_cgroup\": expected pod"));
  EXPECT_THAT(daemon_->Log(), HasSubstr("config.yaml:"));
}

TEST_F(BerthdTest, SocketIsRootOnlyAndRemovedOnSigterm) {
  WriteConfig(BaseConfig(cni_dir_));
  ASSERT_TRUE(daemon_->Start()) << daemon_->Log();
  struct stat st;
  ASSERT_EQ(stat(daemon_->socket().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_uid, 0u);
  auto status = daemon_->Stop(SIGTERM);
  ASSERT_TRUE(status.has_value()) << "berthd did not stop on SIGTERM";
  EXPECT_TRUE(WIFEXITED(*status));
  EXPECT_EQ(WEXITSTATUS(*status), 0);
  EXPECT_FALSE(fs::exists(daemon_->socket()));
  EXPECT_THAT(daemon_->Log(), HasSubstr("berthd stopped"));
}

TEST_F(BerthdTest, SigintStopsCleanlyToo) {
  WriteConfig(BaseConfig(cni_dir_));
  ASSERT_TRUE(daemon_->Start()) << daemon_->Log();
  auto status = daemon_->Stop(SIGINT);
  ASSERT_TRUE(status.has_value()) << "berthd did not stop on SIGINT";
  EXPECT_TRUE(WIFEXITED(*status) && WEXITSTATUS(*status) == 0);
  EXPECT_FALSE(fs::exists(daemon_->socket()));
  EXPECT_THAT(daemon_->Log(), HasSubstr("received SIGINT"));
}

TEST_F(BerthdTest, SecondDaemonOnTheSameSocketOrRootRefusesNamingTheHolder) {
  WriteConfig(BaseConfig(cni_dir_));
  ASSERT_TRUE(daemon_->Start()) << daemon_->Log();
  std::string holder = "pid " + std::to_string(daemon_->pid());
  // Same everything.
  auto [code, out] = RunBerthd();
  EXPECT_EQ(code, 1);
  EXPECT_THAT(out, HasSubstr(holder));
  // Same socket, other root and state.
  auto other = tmp_.path() / "other";
  auto [code2, out2] =
      RunCommand({BERTHD_BIN, "--config", daemon_->config().string(), "--root", (other / "r").string(),
           "--state", (other / "s").string(), "--socket", daemon_->socket().string()},
          tmp_.path() / "run2.log");
  EXPECT_EQ(code2, 1);
  EXPECT_THAT(out2, HasSubstr("socket " + daemon_->socket().string()));
  EXPECT_THAT(out2, HasSubstr(holder));
  // The first one is unharmed.
  runtime::v1::VersionResponse v;
  EXPECT_TRUE(Runtime()->Version(Ctx().get(), {}, &v).ok());
}

TEST_F(BerthdTest, RefusesASocketServedByAnotherProgram) {
  WriteConfig(BaseConfig(cni_dir_));
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, daemon_->socket().c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  auto [code, out] = RunBerthd();
  close(fd);
  EXPECT_EQ(code, 1);
  EXPECT_THAT(out, HasSubstr("is being served by pid " + std::to_string(getpid())));
}

TEST_F(BerthdTest, ReplacesAStaleSocketAndRecoversFromKill9) {
  WriteConfig(BaseConfig(cni_dir_));
  // A socket file nobody listens on, as a crashed daemon leaves it.
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, daemon_->socket().c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  close(fd);
  ASSERT_TRUE(fs::exists(daemon_->socket()));
  ASSERT_TRUE(daemon_->Start()) << daemon_->Log();
  daemon_->Stop(SIGKILL);
  ASSERT_TRUE(daemon_->Start()) << daemon_->Log();
  runtime::v1::VersionResponse v;
  EXPECT_TRUE(Runtime()->Version(Ctx().get(), {}, &v).ok());
}

TEST_F(BerthdTest, SighupReloadsTheLogLevelAndSurvivesABrokenFile) {
  WriteConfig(BaseConfig(cni_dir_));
  ASSERT_TRUE(daemon_->Start()) << daemon_->Log();
  std::string cfg = ReadFile(daemon_->config());
  cfg.replace(cfg.find("log_level: info"), 15, "log_level: debug");
  WriteConfig(cfg);
  kill(daemon_->pid(), SIGHUP);
  auto wait_for = [this](const std::string& text) {
    for (int i = 0; i < 500; ++i) {
      if (daemon_->Log().find(text) != std::string::npos) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  };
  EXPECT_TRUE(wait_for("log level now debug")) << daemon_->Log();
  WriteConfig("plugins: [unclosed\n");
  kill(daemon_->pid(), SIGHUP);
  EXPECT_TRUE(wait_for("configuration not reloaded")) << daemon_->Log();
  EXPECT_THAT(daemon_->Log(), HasSubstr("config.yaml:"));
  runtime::v1::VersionResponse v;
  EXPECT_TRUE(Runtime()->Version(Ctx().get(), {}, &v).ok()) << "berthd died on a bad SIGHUP";
}

struct BadConfig {
  const char* name;
  std::string yaml;
  std::vector<std::string> expect;  // substrings of the error
};

void PrintTo(const BadConfig& c, std::ostream* os) { *os << c.name; }

class BerthdBadConfigTest : public BerthdTest,
                            public ::testing::WithParamInterface<BadConfig> {};

TEST_P(BerthdBadConfigTest, RefusesToStartWithFileLineAndKey) {
  WriteFile(cni_dir_ / "10-bridge.conflist", BridgeConflist());
  std::string yaml = GetParam().yaml;
  size_t p = yaml.find("@CNI@");
  if (p != std::string::npos) yaml.replace(p, 5, cni_dir_.string());
  WriteConfig(yaml);
  auto [code, out] = RunBerthd();
  EXPECT_EQ(code, 1) << out;
  for (const std::string& e : GetParam().expect) {
    std::string want = e;
    if (want.rfind("@FILE@", 0) == 0) want = daemon_->config().string() + ":" + want.substr(6);
    EXPECT_THAT(out, HasSubstr(want));
  }
  EXPECT_FALSE(CanConnect(daemon_->socket()));
  EXPECT_FALSE(fs::exists(daemon_->socket()));
}

INSTANTIATE_TEST_SUITE_P(
    Cases, BerthdBadConfigTest,
    ::testing::Values(
        BadConfig{"MalformedYaml", "log_level: info\nplugins: {a: [1, 2\n",
                  {"@FILE@", "malformed YAML"}},
        BadConfig{"UnknownTopLevelKey", "log_level: info\nruntime: {}\n",
                  {"@FILE@2", "unknown key \"runtime\""}},
        BadConfig{"WrongType", "log_level: verbose\n", {"@FILE@1", "log_level", "verbose"}},
        BadConfig{"UnknownPluginId",
                  BaseConfig("@CNI@", "  io.example.nope: {}\n"),
                  {"@FILE@", "plugins.io.example.nope", "unknown plugin id"}},
        BadConfig{"HandlerNamesANonRuntimePlugin",
                  "plugins:\n  io.berth.cni: {}\nruntimes:\n  runc:\n"
                  "    plugin: io.berth.cni\ndefault_runtime: runc\n",
                  {"@FILE@5", "runtimes.runc.plugin", "network plugin, not a runtime"}},
        BadConfig{"UnknownPluginKey",
                  BaseConfig("@CNI@", "    max_pods: 3\n"),
                  {"@FILE@5", "unknown key \"max_pods\"", "io.berth.cri"}},
        BadConfig{"SystemdDriverWithoutSystemd",
                  BaseConfig("@CNI@", "    cgroup_driver: systemd\n").replace(
                      BaseConfig("@CNI@").find("    cgroup_driver: cgroupfs\n"), 27, ""),
                  {"@FILE@", "cgroup driver \"systemd\" is not available",
                   "io.berth.cgroup.systemd is skipped"}},
        BadConfig{"BadHandlerOption",
                  BaseConfig("@CNI@", "",
                             "runtimes:\n  runc:\n    plugin: io.berth.runtime.runc\n"
                             "    options:\n      binnary: runc\ndefault_runtime: runc\n"),
                  {"@FILE@", "runtime handler \"runc\"", "unknown option \"binnary\""}},
        BadConfig{"MissingDependency",
                  "plugins:\n  io.berth.cri: {}\n  io.berth.cni: {}\n",
                  {"io.berth.cri requires a plugin of kind"}}),
    [](const ::testing::TestParamInfo<BadConfig>& info) { return info.param.name; });

TEST_F(BerthdTest, RefusesToRunAsNonRootWithAClearMessage) {
  auto [code, out] = RunCommand({BERTHD_BIN, "--root", (tmp_.path() / "r").string(), "--state",
                          (tmp_.path() / "s").string(), "--socket",
                          (tmp_.path() / "x.sock").string()},
                         tmp_.path() / "nonroot.log", 65534);
  EXPECT_EQ(code, 1) << out;
  EXPECT_THAT(out, HasSubstr("must run as root"));
}

TEST_F(BerthdTest, DefaultConfigRoundTripsAndCheckConfigAcceptsIt) {
  auto [code, out] = RunCommand({BERTHD_BIN, "--print-default-config"}, tmp_.path() / "p.log");
  ASSERT_EQ(code, 0) << out;
  EXPECT_THAT(out, HasSubstr("io.berth.cri:"));
  EXPECT_THAT(out, HasSubstr("default_runtime: runc"));
  WriteFile(tmp_.path() / "default.yaml", out);
  auto [code2, out2] = RunCommand({BERTHD_BIN, "--check-config", "--config",
                            (tmp_.path() / "default.yaml").string()},
                           tmp_.path() / "c.log");
  EXPECT_EQ(code2, 0) << out2;
  EXPECT_THAT(out2, HasSubstr("is valid"));
  auto [code3, out3] = RunCommand({BERTHD_BIN, "--list-plugins"}, tmp_.path() / "l.log");
  EXPECT_EQ(code3, 0) << out3;
  EXPECT_THAT(out3, HasSubstr("io.berth.runtime.runc"));
  EXPECT_THAT(out3, HasSubstr("enabled"));
}

TEST_F(BerthdTest, BerthctlVersionInfoPluginsAndJson) {
  WriteFile(cni_dir_ / "10-bridge.conflist", BridgeConflist());
  WriteConfig(BaseConfig(cni_dir_));
  ASSERT_TRUE(daemon_->Start()) << daemon_->Log();
  std::string sock = daemon_->socket().string();
  fs::path log = tmp_.path() / "ctl.log";
  auto [c1, version] = RunCommand({BERTHCTL_BIN, "--socket", sock, "version"}, log);
  EXPECT_EQ(c1, 0);
  EXPECT_THAT(version, HasSubstr("RuntimeName:        berth"));
  EXPECT_THAT(version, HasSubstr("RuntimeApiVersion:  v1"));
  auto [c2, info] = RunCommand({BERTHCTL_BIN, "--socket", sock, "info"}, log);
  EXPECT_EQ(c2, 0);
  EXPECT_THAT(info, MatchesRegex("(.|\n)*RuntimeReady +true(.|\n)*"));
  EXPECT_THAT(info, MatchesRegex("(.|\n)*NetworkReady +true(.|\n)*"));
  EXPECT_THAT(info, HasSubstr("cgroup driver: cgroupfs"));
  auto [c3, plugins] = RunCommand({BERTHCTL_BIN, "--socket", sock, "plugins"}, log);
  EXPECT_EQ(c3, 0);
  EXPECT_THAT(plugins, MatchesRegex("(.|\n)*io.berth.cri +service +0.1.0 +1.2 +running(.|\n)*"));
  auto [c4, json] = RunCommand({BERTHCTL_BIN, "--socket", sock, "-o", "json", "plugins"}, log);
  EXPECT_EQ(c4, 0);
  auto j = nlohmann::json::parse(json, nullptr, false);
  ASSERT_TRUE(j.is_array()) << json;
  EXPECT_GE(j.size(), 7u);
  auto [c5, ijson] = RunCommand({BERTHCTL_BIN, "--socket", sock, "-o", "json", "info"}, log);
  EXPECT_EQ(c5, 0);
  auto ij = nlohmann::json::parse(ijson, nullptr, false);
  ASSERT_TRUE(ij.is_object()) << ijson;
  EXPECT_EQ(ij["cgroup_driver"], "cgroupfs");
  EXPECT_EQ(ij["status"]["conditions"][0]["type"], "RuntimeReady");
  auto [c6, vjson] = RunCommand({BERTHCTL_BIN, "--socket", sock, "-o", "json", "version"}, log);
  EXPECT_EQ(nlohmann::json::parse(vjson, nullptr, false)["runtime_name"], "berth");

  daemon_->Stop();
  auto [c7, down] = RunCommand({BERTHCTL_BIN, "--socket", sock, "--timeout", "2", "version"}, log);
  EXPECT_EQ(c7, 1);
  EXPECT_THAT(down, HasSubstr("cannot reach berthd at unix://" + sock));
  auto [c8, bad] = RunCommand({BERTHCTL_BIN, "frobnicate"}, log);
  EXPECT_EQ(c8, 2);
  EXPECT_THAT(bad, HasSubstr("unknown command frobnicate"));
}

}  // namespace
}  // namespace berth::testing
