// SPDX-License-Identifier: Apache-2.0
// The runtime-runc plugin without containers (any user): handler options, the options a
// Create carries, records and events, and the real plugin .so through its C table on bad
// input, plus a restore from records whose shim is gone (fake shim script).
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "berth/ttrpc/server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plugins/runtime-runc/handler_options.h"
#include "plugins/runtime-runc/runtime_probe.h"
#include "plugins/runtime-runc/task_records.h"
#include "plugins/runtime-runc/tests/plugin_harness.h"
#include "shim/berth/v1/shim.pb.h"
#include "shim/runc/options.pb.h"
#include "shim/runtimeoptions/v1/api.pb.h"
#include "shim/task/v2/shim.pb.h"

namespace berth::runc {
namespace {

namespace fs = std::filesystem;
namespace task = ::containerd::task::v2;
using ::berth::runc::testing::kTask;
using ::berth::runc::testing::PluginHarness;
using ::testing::HasSubstr;

std::string Msg(const absl::Status& s) { return std::string(s.message()); }

// ---- handler options ----------------------------------------------------------------------

TEST(HandlerOptionsTest, Defaults) {
  auto h = ParseHandlerOptions("runc", "", "/usr/lib/berth/plugins/berth-shim");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->binary, "runc");
  EXPECT_EQ(h->root, "/run/berth/runc");
  EXPECT_FALSE(h->systemd_cgroup);
  EXPECT_EQ(h->shim, "/usr/lib/berth/plugins/berth-shim");
  h = ParseHandlerOptions("crun", "{}", "berth-shim");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->root, "/run/berth/crun");
}

TEST(HandlerOptionsTest, Overrides) {
  auto h = ParseHandlerOptions(
      "crun", R"({"binary":"/usr/bin/crun","root":"/run/x","systemd_cgroup":true,"shim":"/opt/s"})",
      "berth-shim");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->binary, "/usr/bin/crun");
  EXPECT_EQ(h->root, "/run/x");
  EXPECT_TRUE(h->systemd_cgroup);
  EXPECT_EQ(h->shim, "/opt/s");
}

TEST(HandlerOptionsTest, RefusesUnknownKeysAndWrongTypesNamingThem) {
  auto unknown = ParseHandlerOptions("runc", R"({"bianry":"runc"})", "s");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(unknown.status()), HasSubstr("\"bianry\""));
  EXPECT_THAT(Msg(unknown.status()), HasSubstr("runtime handler \"runc\""));
  auto cg = ParseHandlerOptions("runc", R"({"systemd_cgroup":"yes"})", "s");
  EXPECT_THAT(Msg(cg.status()), HasSubstr("systemd_cgroup"));
  auto root = ParseHandlerOptions("runc", R"({"root":"relative/dir"})", "s");
  EXPECT_THAT(Msg(root.status()), HasSubstr("absolute"));
  auto empty = ParseHandlerOptions("runc", R"({"shim":""})", "s");
  EXPECT_THAT(Msg(empty.status()), HasSubstr("\"shim\""));
  EXPECT_FALSE(ParseHandlerOptions("runc", "[1]", "s").ok());
  EXPECT_FALSE(ParseHandlerOptions("a/b", "{}", "s").ok());
}

TEST(HandlerOptionsTest, ShimV2KindOptions) {
  auto h = ParseShimV2HandlerOptions(
      "kata-fc",
      R"({"shim":"/opt/kata/bin/containerd-shim-kata-v2","config_path":"/etc/kata/fc.toml",
          "start_timeout":"2m"})",
      "containerd-shim-kata-v2");
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_TRUE(h->shim_only);
  EXPECT_EQ(h->shim, "/opt/kata/bin/containerd-shim-kata-v2");
  EXPECT_EQ(h->config_path, "/etc/kata/fc.toml");
  EXPECT_EQ(h->start_timeout_seconds, 120);
  EXPECT_EQ(ParseShimV2HandlerOptions("kata", "{}", "containerd-shim-kata-v2")->shim,
            "containerd-shim-kata-v2");
  // runc's options mean nothing here; bad values name the option.
  auto binary = ParseShimV2HandlerOptions("kata", R"({"binary":"runc"})", "s");
  EXPECT_THAT(Msg(binary.status()), HasSubstr("\"binary\""));
  auto relative = ParseShimV2HandlerOptions("kata", R"({"config_path":"kata.toml"})", "s");
  EXPECT_THAT(Msg(relative.status()), HasSubstr("absolute"));
  for (const char* bad : {R"({"start_timeout":"0s"})", R"({"start_timeout":"11m"})",
                          R"({"start_timeout":30})", R"({"start_timeout":"soon"})"}) {
    auto t = ParseShimV2HandlerOptions("kata", bad, "s");
    EXPECT_THAT(Msg(t.status()), HasSubstr("start_timeout")) << bad;
  }
}

TEST(HandlerOptionsTest, RuntimeOptionsCarryTheConfigPath) {
  HandlerOptions h;
  h.name = "kata";
  task::CreateTaskRequest req;
  EXPECT_FALSE(InjectRuntimeOptions(h, &req)) << "no config_path: nothing to pass";
  h.config_path = "/etc/kata/configuration.toml";
  EXPECT_TRUE(InjectRuntimeOptions(h, &req));
  EXPECT_EQ(req.options().type_url(), "runtimeoptions.v1.Options");
  runtimeoptions::v1::Options o;
  ASSERT_TRUE(o.ParseFromString(req.options().value()));
  EXPECT_EQ(o.config_path(), "/etc/kata/configuration.toml");
  EXPECT_FALSE(InjectRuntimeOptions(h, &req)) << "the caller's options win";
}

TEST(HandlerOptionsTest, InjectsRuncOptionsOnlyWhenAbsent) {
  HandlerOptions h;
  h.name = "runc";
  h.root = "/run/berth/runc";
  h.systemd_cgroup = true;
  task::CreateTaskRequest req;
  EXPECT_TRUE(InjectRuncOptions(h, "/usr/sbin/runc", &req));
  EXPECT_EQ(req.options().type_url(), "containerd.runc.v1.Options");
  containerd::runc::v1::Options o;
  ASSERT_TRUE(o.ParseFromString(req.options().value()));
  EXPECT_EQ(o.binary_name(), "/usr/sbin/runc");
  EXPECT_EQ(o.root(), "/run/berth/runc");
  EXPECT_TRUE(o.systemd_cgroup());
  // A caller's own options win.
  task::CreateTaskRequest own;
  own.mutable_options()->set_type_url("containerd.runc.v1.Options");
  own.mutable_options()->set_value("x");
  EXPECT_FALSE(InjectRuncOptions(h, "/usr/sbin/runc", &own));
  EXPECT_EQ(own.options().value(), "x");
}

TEST(HandlerOptionsTest, ResolveExecutableNamesWhatIsMissing) {
  auto sh = ResolveExecutable("runtime binary", "sh", "runc");
  ASSERT_TRUE(sh.ok());
  EXPECT_EQ(sh->front(), '/');
  auto missing = ResolveExecutable("shim binary", "/nonexistent/berth-shim", "runc");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(missing.status()), HasSubstr("/nonexistent/berth-shim"));
  EXPECT_THAT(Msg(missing.status()), HasSubstr("shim binary"));
}

// ---- records ------------------------------------------------------------------------------

TEST(TaskRecordsTest, TaskRoundTripAndExitEvent) {
  TaskRecord t;
  t.handler = "runc";
  t.sandbox_id = "pod1";
  t.id = "c1";
  t.exec_id = "e1";
  t.bundle = "/b/c1";
  t.status = TaskStatus::kStopped;
  t.pid = 42;
  t.exit_status = 137;
  t.exited_at = "2026-11-27T21:00:00.123456789Z";
  t.reason = kReasonOom;
  auto back = TaskRecord::FromJson(t.ToJson(true).dump());
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->bundle, "/b/c1");
  EXPECT_EQ(back->status, TaskStatus::kStopped);
  EXPECT_EQ(back->exit_status, 137u);
  EXPECT_EQ(back->reason, "OOMKilled");
  nlohmann::json ev = nlohmann::json::parse(t.ExitEvent());
  EXPECT_EQ(ev, nlohmann::json({{"handler", "runc"},
                                {"sandbox_id", "pod1"},
                                {"id", "c1"},
                                {"exec_id", "e1"},
                                {"pid", 42},
                                {"exit_status", 137},
                                {"exited_at", "2026-11-27T21:00:00.123456789Z"},
                                {"reason", "OOMKilled"}}));
  EXPECT_FALSE(t.ToJson(false).contains("bundle"));
  EXPECT_FALSE(TaskRecord::FromJson("{}").has_value());
  EXPECT_FALSE(TaskRecord::FromJson("not json").has_value());
}

TEST(TaskRecordsTest, SandboxRoundTripAndKeys) {
  SandboxRecord r{"pod1", "runc", "/s/berth-shim", "unix:///x.sock", "/b/c1"};
  auto back = SandboxRecord::FromJson(r.ToJson().dump());
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->address, "unix:///x.sock");
  EXPECT_EQ(SandboxKey("pod1"), "sandbox/pod1");
  EXPECT_EQ(TaskKey("pod1", "c1", ""), "task/pod1/c1/");
  EXPECT_EQ(TaskKey("pod1", "c1", "e1"), "task/pod1/c1/e1");
  EXPECT_EQ(TaskKey("pod1", "c1", "e1").rfind(TaskPrefix("pod1"), 0), 0u);
}

TEST(TaskRecordsTest, TimestampsAreRfc3339Nano) {
  google::protobuf::Timestamp ts;
  ts.set_seconds(1800000000);
  ts.set_nanos(120000000);
  EXPECT_EQ(FormatTimestamp(ts), "2027-01-15T08:00:00.12Z");
  auto back = ParseTimestamp("2027-01-15T08:00:00.12Z");
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->seconds(), 1800000000);
  EXPECT_EQ(back->nanos(), 120000000);
  EXPECT_EQ(FormatTimestamp(google::protobuf::Timestamp()), "");
  EXPECT_FALSE(ParseTimestamp("yesterday").has_value());
}

// ---- the plugin through its C table ------------------------------------------------------

class RuncPluginTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(h_.path().empty());
    absl::Status s = h_.Start();
    ASSERT_TRUE(s.ok()) << s;
    bundle_ = h_.File("bundle");
    fs::create_directories(bundle_);
  }
  std::string Script(const std::string& name, const std::string& body) {
    std::string path = h_.File(name);
    berth::testing::WriteFile(path, "#!/bin/sh\n" + body);
    ::chmod(path.c_str(), 0755);
    return path;
  }
  std::string CreateRequest(const std::string& id, const std::string& bundle) {
    task::CreateTaskRequest req;
    req.set_id(id);
    req.set_bundle(bundle);
    return req.SerializeAsString();
  }

  PluginHarness h_;
  std::string bundle_;
};

TEST_F(RuncPluginTest, AddHandlerRefusesBadOptionsAndDuplicates) {
  absl::Status bad = h_.AddHandler("runc", {{"systemd_cgroup", "no"}});
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(bad), HasSubstr("systemd_cgroup"));
  ASSERT_TRUE(h_.AddHandler("runc", {{"binary", "/bin/true"}}).ok());
  EXPECT_EQ(h_.AddHandler("runc", nlohmann::json::object()).code(),
            absl::StatusCode::kAlreadyExists);
}

TEST_F(RuncPluginTest, HandlerStatusNamesTheMissingBinary) {
  nlohmann::json unknown = h_.HandlerStatus("nope");
  EXPECT_EQ(unknown["ready"], false);
  EXPECT_EQ(unknown["reason"], "UnknownRuntimeHandler");
  ASSERT_TRUE(h_.AddHandler("broken", {{"binary", "/nonexistent/runc"}}).ok());
  nlohmann::json broken = h_.HandlerStatus("broken");
  EXPECT_EQ(broken["ready"], false);
  EXPECT_EQ(broken["reason"], "RuntimeBinaryNotFound");
  EXPECT_THAT(broken.value("message", ""), HasSubstr("/nonexistent/runc"));
  // The default shim is berth-shim next to the plugin's .so.
  ASSERT_TRUE(h_.AddHandler("default", {{"binary", "/bin/true"}}).ok());
  nlohmann::json def = h_.HandlerStatus("default");
  const std::string expected = (fs::path(BERTH_RUNC_PLUGIN).parent_path() / "berth-shim").string();
  if (::access(expected.c_str(), X_OK) == 0) {
    EXPECT_EQ(def["ready"], true) << def.dump();
  } else {
    EXPECT_EQ(def["reason"], "ShimBinaryNotFound");
    EXPECT_THAT(def.value("message", ""), HasSubstr(expected));
  }
  ASSERT_TRUE(h_.AddHandler("ok", {{"binary", "/bin/true"}, {"shim", "/bin/true"}}).ok());
  EXPECT_EQ(h_.HandlerStatus("ok")["ready"], true);
}

// The handler status carries the runtime probe's verdict (crun on a hybrid cgroup host needs
// berth-shim's workaround; docs/shim.md §7), whatever this host is.
TEST_F(RuncPluginTest, HandlerStatusFollowsTheRuntimeProbe) {
  if (::access("/usr/bin/crun", X_OK) != 0) GTEST_SKIP() << "crun not installed";
  auto id = IdentifyRuntime("/usr/bin/crun");
  auto host = ProbeCgroupHost();
  if (!id.ok() || !host.ok()) GTEST_SKIP() << "cannot probe crun or the cgroups here";
  const std::string fake_berth_shim = h_.File("berth-shim");
  berth::testing::WriteFile(fake_berth_shim, "#!/bin/sh\n");
  ::chmod(fake_berth_shim.c_str(), 0755);
  for (const auto& [shim, berth] :
       {std::pair<std::string, bool>{"/bin/true", false}, {fake_berth_shim, true}}) {
    const std::string name = berth ? "crun-berth" : "crun-other";
    ASSERT_TRUE(h_.AddHandler(name, {{"binary", "/usr/bin/crun"}, {"shim", shim}}).ok());
    RuntimeReadiness expected = EvaluateRuntimeReadiness(*id, *host, berth);
    nlohmann::json st = h_.HandlerStatus(name);
    EXPECT_EQ(st["ready"], expected.readiness != Readiness::kNotReady) << st.dump();
    if (expected.readiness == Readiness::kNotReady) {
      EXPECT_EQ(st["reason"], expected.reason);
      EXPECT_THAT(st.value("message", ""), HasSubstr("/usr/bin/crun"));
    }
  }
}

TEST_F(RuncPluginTest, UnknownSandboxIsNotFoundNamingIt) {
  task::StateRequest st;
  st.set_id("c1");
  auto r = h_.CallRaw("runc", "pod-x", kTask, "State", st.SerializeAsString());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(r.status()), HasSubstr("pod-x"));
  auto ext = h_.CallRaw("runc", "pod-x", "berth.shim.v1.Shim", "Info", "");
  EXPECT_EQ(ext.status().code(), absl::StatusCode::kNotFound);
  auto empty = h_.CallRaw("runc", "", kTask, "State", st.SerializeAsString());
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RuncPluginTest, CreateWithUnknownHandlerIsNotFoundNamingIt) {
  ASSERT_TRUE(h_.AddHandler("runc", {{"binary", "/bin/true"}, {"shim", "/bin/true"}}).ok());
  auto r = h_.CallRaw("kata-fc", "pod1", kTask, "Create", CreateRequest("c1", bundle_));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Msg(r.status()), HasSubstr("\"kata-fc\""));
  EXPECT_THAT(Msg(r.status()), HasSubstr("runc"));  // the declared ones
}

#ifdef BERTH_KATA_PLUGIN
// Kata builds the pod's VM from the sandbox task, so a handler of the shim v2 kind starts the
// pod's shim only for the task whose id is the sandbox's: a container first is refused before
// anything starts, naming the handler and the pod, and nothing is recorded.
TEST(ShimV2KindTest, TheSandboxTaskComesFirstAndStartsTheShim) {
  PluginHarness h;
  absl::Status started = h.Start(BERTH_KATA_PLUGIN, "io.berth.runtime.kata");
  ASSERT_TRUE(started.ok()) << started;
  const std::string marker = h.File("shim-started");
  const std::string shim = h.File("fake-shim");
  berth::testing::WriteFile(shim, "#!/bin/sh\necho \"$@\" >> " + marker +
                                      "\necho 'no hypervisor here' >&2\nexit 1\n");
  ::chmod(shim.c_str(), 0755);
  absl::Status added = h.AddHandler("kata-test", {{"shim", shim}});
  ASSERT_TRUE(added.ok()) << added;
  const std::string bundle = h.File("bundle");
  fs::create_directories(bundle);
  task::CreateTaskRequest req;
  req.set_id("c1");
  req.set_bundle(bundle);

  auto early = h.CallRaw("kata-test", "pod1", kTask, "Create", req.SerializeAsString());
  EXPECT_EQ(early.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Msg(early.status()), HasSubstr("runtime handler \"kata-test\""));
  EXPECT_THAT(Msg(early.status()), HasSubstr("sandbox task of pod pod1"));
  EXPECT_FALSE(fs::exists(marker)) << "a shim was started for a container before its sandbox";
  EXPECT_EQ((*h.Control("tasks", nlohmann::json::object()))["tasks"].size(), 0u);

  // The sandbox's own task starts the shim (here one that fails, with its reason surfaced).
  req.set_id("pod1");
  auto sandbox = h.CallRaw("kata-test", "pod1", kTask, "Create", req.SerializeAsString());
  EXPECT_FALSE(sandbox.ok());
  EXPECT_THAT(Msg(sandbox.status()), HasSubstr("no hypervisor here"));
  EXPECT_THAT(berth::testing::ReadFile(marker), HasSubstr("start"));
  EXPECT_EQ((*h.Control("tasks", nlohmann::json::object()))["tasks"].size(), 0u);
}
#endif

TEST_F(RuncPluginTest, MalformedCreateIsInvalidArgument) {
  ASSERT_TRUE(h_.AddHandler("runc", {{"binary", "/bin/true"}, {"shim", "/bin/true"}}).ok());
  auto junk = h_.CallRaw("runc", "pod1", kTask, "Create", std::string("\xff\xff\xff", 3));
  EXPECT_EQ(junk.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(junk.status()), HasSubstr("malformed"));
  auto no_id = h_.CallRaw("runc", "pod1", kTask, "Create", CreateRequest("", bundle_));
  EXPECT_EQ(no_id.status().code(), absl::StatusCode::kInvalidArgument);
  auto rel = h_.CallRaw("runc", "pod1", kTask, "Create", CreateRequest("c1", "rel/bundle"));
  EXPECT_EQ(rel.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Msg(rel.status()), HasSubstr("rel/bundle"));
  // Nothing was recorded.
  EXPECT_EQ((*h_.Control("tasks", nlohmann::json::object()))["tasks"].size(), 0u);
}

TEST_F(RuncPluginTest, CreateWithMissingRuntimeOrShimIsFailedPrecondition) {
  ASSERT_TRUE(h_.AddHandler("r1", {{"binary", "/nonexistent/runc"}, {"shim", "/bin/true"}}).ok());
  auto r = h_.CallRaw("r1", "pod1", kTask, "Create", CreateRequest("c1", bundle_));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Msg(r.status()), HasSubstr("/nonexistent/runc"));
  ASSERT_TRUE(h_.AddHandler("r2", {{"binary", "/bin/true"}, {"shim", "/nonexistent/s"}}).ok());
  r = h_.CallRaw("r2", "pod1", kTask, "Create", CreateRequest("c1", bundle_));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(Msg(r.status()), HasSubstr("/nonexistent/s"));
}

TEST_F(RuncPluginTest, FailingShimStartIsReportedAndNothingIsKept) {
  std::string shim = Script("bad-shim", "echo 'cannot set up cgroup: EPERM' >&2\nexit 2\n");
  ASSERT_TRUE(h_.AddHandler("runc", {{"binary", "/bin/true"}, {"shim", shim}}).ok());
  auto r = h_.CallRaw("runc", "pod1", kTask, "Create", CreateRequest("c1", bundle_));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(Msg(r.status()), HasSubstr("cannot set up cgroup: EPERM"));
  EXPECT_THAT(Msg(r.status()), HasSubstr("pod1"));
  task::StateRequest st;
  st.set_id("c1");
  auto state = h_.CallRaw("runc", "pod1", kTask, "State", st.SerializeAsString());
  EXPECT_EQ(state.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RuncPluginTest, Control) {
  auto tasks = h_.Control("tasks", nlohmann::json::object());
  ASSERT_TRUE(tasks.ok()) << tasks.status();
  EXPECT_EQ(*tasks, nlohmann::json({{"tasks", nlohmann::json::array()}}));
  EXPECT_TRUE(h_.Control("remove_sandbox", {{"sandbox_id", "never-seen"}}).ok());
  EXPECT_EQ(h_.Control("remove_sandbox", nlohmann::json::object()).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto unknown = h_.Control("frobnicate", nlohmann::json::object());
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(Msg(unknown.status()), HasSubstr("frobnicate"));
}

// A restart finds a recorded shim that is gone: the shim's `delete` runs for the container
// (here a fake that prints a DeleteResponse with the durable exit status 3) and the task is
// reported exited with reason ShimDied.
TEST(RuncPluginRestoreTest, UnreachableShimRunsDeleteAndReportsShimDied) {
  PluginHarness h;
  ASSERT_FALSE(h.path().empty());
  const std::string bundle = h.File("c1");
  fs::create_directories(bundle);
  const std::string record = h.File("delete-args");
  // DeleteResponse{pid: 42, exit_status: 3, exited_at: {seconds: 1800000000}}.
  std::string shim = h.File("fake-shim");
  berth::testing::WriteFile(
      shim,
      absl::StrCat("#!/bin/sh\necho \"$* cwd=$(pwd)\" > ", record, "\n",
                   "printf '\\010\\052\\020\\003\\032\\006\\010\\200\\244\\247\\332\\006'\n"));
  ::chmod(shim.c_str(), 0755);
  SandboxRecord sb{"pod1", "runc", shim, "unix://" + h.File("gone.sock"), bundle};
  ASSERT_TRUE(h.PutRecord(SandboxKey("pod1"), sb.ToJson().dump()).ok());
  TaskRecord t;
  t.handler = "runc";
  t.sandbox_id = "pod1";
  t.id = "c1";
  t.bundle = bundle;
  t.status = TaskStatus::kRunning;
  t.pid = 42;
  ASSERT_TRUE(h.PutRecord(TaskKey("pod1", "c1", ""), t.ToJson(true).dump()).ok());
  TaskRecord done = t;
  done.id = "c0";
  done.status = TaskStatus::kStopped;
  done.exit_status = 0;
  ASSERT_TRUE(h.PutRecord(TaskKey("pod1", "c0", ""), done.ToJson(true).dump()).ok());

  absl::Status s = h.Start();
  ASSERT_TRUE(s.ok()) << s;
  nlohmann::json ev = h.WaitExit("c1", "", absl::Seconds(5));
  ASSERT_TRUE(ev.is_object()) << "no exit event at restore";
  EXPECT_EQ(ev["reason"], "ShimDied");
  EXPECT_EQ(ev["exit_status"], 3);
  EXPECT_EQ(ev["exited_at"], "2027-01-15T08:00:00Z");
  EXPECT_EQ(ev["sandbox_id"], "pod1");
  EXPECT_THAT(berth::testing::ReadFile(record),
              HasSubstr("-id c1 -bundle " + bundle + " delete cwd=" + bundle));
  // The task that had exited before is not reported again.
  EXPECT_EQ(h.ExitEventCount("c0"), 0);
  nlohmann::json entry = h.TaskEntry("c1");
  EXPECT_EQ(entry["status"], "stopped");
  EXPECT_EQ(entry["reason"], "ShimDied");

  // The dead shim's tasks answer from the records; Kill says the process is gone.
  task::KillRequest kill;
  kill.set_id("c1");
  kill.set_signal(9);
  auto killed = h.CallRaw("runc", "pod1", kTask, "Kill", kill.SerializeAsString());
  EXPECT_EQ(killed.status().code(), absl::StatusCode::kNotFound);
  task::DeleteRequest del;
  del.set_id("c1");
  auto deleted = h.Call<task::DeleteResponse>("runc", "pod1", "Delete", del);
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(deleted->exit_status(), 3u);
  EXPECT_TRUE(h.TaskEntry("c1").is_null());
  EXPECT_TRUE(h.Control("remove_sandbox", {{"sandbox_id", "pod1"}}).ok());
  EXPECT_EQ((*h.Control("tasks", nlohmann::json::object()))["tasks"].size(), 0u);

  // Nothing is left for a later restart.
  h.Stop();
  ASSERT_TRUE(h.Start().ok());
  EXPECT_EQ((*h.Control("tasks", nlohmann::json::object()))["tasks"].size(), 0u);
  EXPECT_EQ(h.ExitEventCount("c1"), 1);
}

// An in-process shim: a ttrpc server with canned Task answers, to restore against.
class FakeShim {
 public:
  explicit FakeShim(const std::string& socket) {
    server_.Register(kTask, "State",
                     [this](const std::string& p, const ttrpc::CallContext&) { return State(p); });
    server_.Register(kTask, "Wait",
                     [this](const std::string& p, const ttrpc::CallContext&) { return Wait(p); });
    server_.Register(
        "berth.shim.v1.Shim", "Info",
        [](const std::string& p, const ttrpc::CallContext&) -> absl::StatusOr<std::string> {
          berth::shim::v1::InfoRequest req;
          req.ParseFromString(p);
          berth::shim::v1::InfoResponse resp;
          resp.set_oom_killed(req.id() == "c-oom");
          return resp.SerializeAsString();
        });
    ok_ = server_.Listen(socket).ok() && server_.Start().ok();
  }
  ~FakeShim() { Drop(); }
  bool ok() const { return ok_; }
  // Ends Wait of c-run with exit status 4.
  void ExitRunning() {
    std::lock_guard<std::mutex> lock(mu_);
    exited_ = true;
    cv_.notify_all();
  }
  // The shim "dies": connections close while Waits are pending.
  void Drop() {
    std::thread release([this] {
      absl::SleepFor(absl::Milliseconds(300));
      std::lock_guard<std::mutex> lock(mu_);
      dropped_ = true;
      cv_.notify_all();
    });
    server_.Shutdown(absl::ZeroDuration());
    release.join();
  }
  int waits() {
    std::lock_guard<std::mutex> lock(mu_);
    return waits_;
  }

 private:
  absl::StatusOr<std::string> State(const std::string& payload) {
    task::StateRequest req;
    req.ParseFromString(payload);
    task::StateResponse resp;
    resp.set_id(req.id());
    if (req.id() == "c-lost") return absl::NotFoundError("container c-lost not found");
    if (req.id() == "c-oom") {
      resp.set_status(containerd::v1::types::STOPPED);
      resp.set_exit_status(137);
      resp.mutable_exited_at()->set_seconds(1800000000);
    } else {
      resp.set_status(containerd::v1::types::RUNNING);
      resp.set_pid(req.id() == "c-run" ? 100 : 200);
    }
    return resp.SerializeAsString();
  }
  absl::StatusOr<std::string> Wait(const std::string& payload) {
    task::WaitRequest req;
    req.ParseFromString(payload);
    std::unique_lock<std::mutex> lock(mu_);
    ++waits_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return dropped_ || (exited_ && req.id() == "c-run"); });
    if (dropped_) return absl::UnavailableError("gone");
    task::WaitResponse resp;
    resp.set_exit_status(4);
    resp.mutable_exited_at()->set_seconds(1800000001);
    return resp.SerializeAsString();
  }

  ttrpc::Server server_;
  bool ok_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  bool exited_ = false, dropped_ = false;
  int waits_ = 0;
};

// Restore against a live shim: an exit that happened meanwhile is reported (with the OOM
// reason from berth.shim.v1.Shim/Info), a task the shim forgot is reported ShimDied, running
// tasks are followed (their exit arrives later), and when the connection then drops the
// rest is cleaned up with the shim's `delete` command and reported ShimDied.
TEST(RuncPluginRestoreTest, LiveShimIsReadoptedAndALaterDropIsShimDied) {
  PluginHarness h;
  ASSERT_FALSE(h.path().empty());
  const std::string socket = h.File("fake-shim.sock");
  auto shim = std::make_unique<FakeShim>(socket);
  ASSERT_TRUE(shim->ok());
  const std::string record = h.File("delete-args");
  const std::string binary = h.File("fake-shim");
  // `delete` prints DeleteResponse{exit_status: 9}.
  berth::testing::WriteFile(
      binary, absl::StrCat("#!/bin/sh\necho \"$*\" >> ", record, "\nprintf '\\020\\011'\n"));
  ::chmod(binary.c_str(), 0755);
  SandboxRecord sb{"pod1", "runc", binary, "unix://" + socket, h.path().string()};
  ASSERT_TRUE(h.PutRecord(SandboxKey("pod1"), sb.ToJson().dump()).ok());
  for (const char* id : {"c-run", "c-oom", "c-lost", "c-other"}) {
    TaskRecord t;
    t.handler = "runc";
    t.sandbox_id = "pod1";
    t.id = id;
    t.bundle = h.path().string();
    t.status = TaskStatus::kRunning;
    ASSERT_TRUE(h.PutRecord(TaskKey("pod1", id, ""), t.ToJson(true).dump()).ok());
  }
  absl::Status s = h.Start();
  ASSERT_TRUE(s.ok()) << s;

  nlohmann::json oom = h.WaitExit("c-oom", "", absl::Seconds(5));
  ASSERT_TRUE(oom.is_object());
  EXPECT_EQ(oom["reason"], "OOMKilled");
  EXPECT_EQ(oom["exit_status"], 137);
  EXPECT_EQ(oom["exited_at"], "2027-01-15T08:00:00Z");
  nlohmann::json lost = h.WaitExit("c-lost", "", absl::Seconds(5));
  ASSERT_TRUE(lost.is_object());
  EXPECT_EQ(lost["reason"], "ShimDied");
  EXPECT_EQ(h.TaskEntry("c-run")["status"], "running");
  EXPECT_EQ(h.TaskEntry("c-run")["pid"], 100);

  // Both running tasks are followed; c-run exits.
  absl::Time until = absl::Now() + absl::Seconds(5);
  while (shim->waits() < 2 && absl::Now() < until) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_EQ(shim->waits(), 2);
  shim->ExitRunning();
  nlohmann::json run = h.WaitExit("c-run", "", absl::Seconds(5));
  ASSERT_TRUE(run.is_object());
  EXPECT_EQ(run["exit_status"], 4);
  EXPECT_EQ(run["reason"], "");
  EXPECT_EQ(run["pid"], 100);

  // The connection drops while c-other is followed.
  shim->Drop();
  nlohmann::json other = h.WaitExit("c-other", "", absl::Seconds(10));
  ASSERT_TRUE(other.is_object()) << "a dropped shim connection was not noticed";
  EXPECT_EQ(other["reason"], "ShimDied");
  EXPECT_EQ(other["exit_status"], 9);
  EXPECT_THAT(berth::testing::ReadFile(record), HasSubstr("-id c-other -bundle"));
  EXPECT_THAT(berth::testing::ReadFile(record), ::testing::Not(HasSubstr("-id c-run ")));
  for (const char* id : {"c-run", "c-oom", "c-lost", "c-other"}) {
    EXPECT_EQ(h.ExitEventCount(id), 1) << id;
  }
  shim.reset();
  h.Stop();
}

}  // namespace
}  // namespace berth::runc
