// SPDX-License-Identifier: Apache-2.0
// The OCI spec generator: pure unit tests on CRI requests and image configs, and one run of
// a generated spec with the real runc (RuncValidation, root only).
#include "plugins/cri/oci_spec.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "plugins/cri/user_lookup.h"
#include "tests/support/bundle.h"
#include "tests/support/test_support.h"

namespace berth::cri {
namespace {

namespace fs = std::filesystem;
using ::berth::testing::TempDir;
using ::berth::testing::WriteFile;
using nlohmann::json;

runtime::v1::PodSandboxConfig Sandbox() {
  runtime::v1::PodSandboxConfig s;
  s.mutable_metadata()->set_name("web-0");
  s.mutable_metadata()->set_uid("uid-123");
  s.mutable_metadata()->set_namespace_("prod");
  s.set_hostname("web-0");
  s.set_log_directory("/var/log/pods/prod_web-0_uid-123");
  (*s.mutable_annotations())["pod.note"] = "hello";
  return s;
}

runtime::v1::ContainerConfig Container() {
  runtime::v1::ContainerConfig c;
  c.mutable_metadata()->set_name("app");
  c.mutable_image()->set_image("sha256:abc");
  c.mutable_image()->set_user_specified_image("docker.io/library/busybox:1.36");
  return c;
}

json Image(json config) { return json{{"architecture", "amd64"}, {"config", std::move(config)}}; }

json BusyboxImage() { return Image({{"Cmd", {"sh"}}, {"Env", {"PATH=/bin"}}}); }

SpecInputs Inputs() {
  SpecInputs in;
  in.sandbox_id = "sb1";
  in.container_id = "c1";
  in.rootfs_path = "/nonexistent-rootfs";
  in.net_ns_path = "/var/run/netns/cni-1";
  in.ipc_ns_path = "/proc/42/ns/ipc";
  in.uts_ns_path = "/proc/42/ns/uts";
  in.pid_ns_path = "/proc/42/ns/pid";
  return in;
}

json MustContainer(const runtime::v1::ContainerConfig& c, const json& image = BusyboxImage(),
                   const SpecInputs& in = Inputs(),
                   const runtime::v1::PodSandboxConfig& sb = Sandbox()) {
  absl::StatusOr<json> spec = BuildContainerSpec(sb, c, image, in);
  EXPECT_TRUE(spec.ok()) << spec.status();
  return spec.ok() ? *spec : json::object();
}

absl::Status ContainerError(const runtime::v1::ContainerConfig& c,
                            const json& image = BusyboxImage(), const SpecInputs& in = Inputs(),
                            const runtime::v1::PodSandboxConfig& sb = Sandbox()) {
  absl::StatusOr<json> spec = BuildContainerSpec(sb, c, image, in);
  return spec.status();
}

const json* FindMount(const json& spec, const std::string& dest) {
  for (const json& m : spec["mounts"]) {
    if (m["destination"] == dest) return &m;
  }
  return nullptr;
}

std::vector<std::string> Destinations(const json& spec) {
  std::vector<std::string> out;
  for (const json& m : spec["mounts"]) out.push_back(m["destination"]);
  return out;
}

std::vector<std::string> NamespaceTypes(const json& spec) {
  std::vector<std::string> out;
  for (const json& n : spec["linux"]["namespaces"]) {
    out.push_back(n["type"].get<std::string>() +
                  (n.contains("path") ? "=" + n["path"].get<std::string>() : ""));
  }
  return out;
}

// ----------------------------------------------------------------------------------------
// command / args / Entrypoint / Cmd

struct ArgsCase {
  std::string name;
  std::vector<std::string> command, args;
  std::optional<std::vector<std::string>> entrypoint, cmd;
  std::vector<std::string> want;  // empty: INVALID_ARGUMENT
};

// Names the case in test listings (instead of a byte dump).
void PrintTo(const ArgsCase& c, std::ostream* os) { *os << c.name; }

class ArgsMergeTest : public ::testing::TestWithParam<ArgsCase> {};

TEST_P(ArgsMergeTest, MergesLikeKubernetes) {
  const ArgsCase& tc = GetParam();
  runtime::v1::ContainerConfig c = Container();
  for (const auto& s : tc.command) c.add_command(s);
  for (const auto& s : tc.args) c.add_args(s);
  json cfg = json::object();
  if (tc.entrypoint) cfg["Entrypoint"] = *tc.entrypoint;
  if (tc.cmd) cfg["Cmd"] = *tc.cmd;
  absl::StatusOr<json> spec = BuildContainerSpec(Sandbox(), c, Image(cfg), Inputs());
  if (tc.want.empty()) {
    ASSERT_FALSE(spec.ok());
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(spec.status().message().find("no command specified"), std::string::npos);
    return;
  }
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ((*spec)["process"]["args"].get<std::vector<std::string>>(), tc.want);
}

INSTANTIATE_TEST_SUITE_P(
    Table, ArgsMergeTest,
    ::testing::Values(
        ArgsCase{"ImageOnly",
                 {},
                 {},
                 std::vector<std::string>{"/ep"},
                 std::vector<std::string>{"c1", "c2"},
                 {"/ep", "c1", "c2"}},
        ArgsCase{"CmdOnlyImage",
                 {},
                 {},
                 std::nullopt,
                 std::vector<std::string>{"sh", "-c", "x"},
                 {"sh", "-c", "x"}},
        ArgsCase{"EntrypointOnlyImage",
                 {},
                 {},
                 std::vector<std::string>{"/ep", "-v"},
                 std::nullopt,
                 {"/ep", "-v"}},
        ArgsCase{"CommandReplacesBoth",
                 {"/cmd"},
                 {},
                 std::vector<std::string>{"/ep"},
                 std::vector<std::string>{"c1"},
                 {"/cmd"}},
        ArgsCase{"CommandAndArgs",
                 {"/cmd", "a"},
                 {"b", "c"},
                 std::vector<std::string>{"/ep"},
                 std::vector<std::string>{"c1"},
                 {"/cmd", "a", "b", "c"}},
        ArgsCase{"ArgsReplaceCmd",
                 {},
                 {"x", "y"},
                 std::vector<std::string>{"/ep"},
                 std::vector<std::string>{"c1"},
                 {"/ep", "x", "y"}},
        ArgsCase{"ArgsWithoutEntrypoint",
                 {},
                 {"/bin/true"},
                 std::nullopt,
                 std::vector<std::string>{"c1"},
                 {"/bin/true"}},
        ArgsCase{"CommandWithoutImage", {"/cmd"}, {}, std::nullopt, std::nullopt, {"/cmd"}},
        ArgsCase{"NothingAtAll", {}, {}, std::nullopt, std::nullopt, {}},
        ArgsCase{
            "EmptyArrays", {}, {}, std::vector<std::string>{}, std::vector<std::string>{}, {}}),
    [](const ::testing::TestParamInfo<ArgsCase>& info) { return info.param.name; });

TEST(OciSpecTest, ImageConfigObjectAloneIsAccepted) {
  runtime::v1::ContainerConfig c = Container();
  json spec = MustContainer(c, json{{"Entrypoint", {"/ep"}}, {"Cmd", {"x"}}});
  EXPECT_EQ(spec["process"]["args"], json({"/ep", "x"}));
}

TEST(OciSpecTest, MalformedImageConfigIsRejected) {
  absl::Status s = ContainerError(Container(), Image({{"Cmd", "sh -c x"}}));
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("image config Cmd"), std::string::npos) << s;
}

// ----------------------------------------------------------------------------------------
// Environment, working dir

TEST(OciSpecTest, EnvImageThenConfigWithOverride) {
  runtime::v1::ContainerConfig c = Container();
  auto* kv = c.add_envs();
  kv->set_key("FOO");
  kv->set_value("config");
  kv = c.add_envs();
  kv->set_key("BAR");
  kv->set_value("a=b");
  json spec = MustContainer(
      c, Image({{"Cmd", {"sh"}}, {"Env", {"PATH=/image/bin", "FOO=image", "KEEP=1"}}}));
  EXPECT_EQ(spec["process"]["env"], json({"PATH=/image/bin", "HOSTNAME=web-0", "FOO=config",
                                          "KEEP=1", "BAR=a=b", "HOME=/"}));
}

TEST(OciSpecTest, EnvDefaultPathAndHomeFromConfig) {
  runtime::v1::ContainerConfig c = Container();
  auto* kv = c.add_envs();
  kv->set_key("HOME");
  kv->set_value("/data");
  json spec = MustContainer(c, Image({{"Cmd", {"sh"}}}));
  EXPECT_EQ(spec["process"]["env"],
            json({"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                  "HOSTNAME=web-0", "HOME=/data"}));
}

TEST(OciSpecTest, EnvEmptyKeyIsRejected) {
  runtime::v1::ContainerConfig c = Container();
  c.add_envs()->set_value("x");
  absl::Status s = ContainerError(c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "envs[0].key: empty");
}

TEST(OciSpecTest, WorkingDir) {
  runtime::v1::ContainerConfig c = Container();
  EXPECT_EQ(MustContainer(c)["process"]["cwd"], "/");
  EXPECT_EQ(MustContainer(c, Image({{"Cmd", {"sh"}}, {"WorkingDir", "/srv"}}))["process"]["cwd"],
            "/srv");
  c.set_working_dir("/work");
  EXPECT_EQ(MustContainer(c, Image({{"Cmd", {"sh"}}, {"WorkingDir", "/srv"}}))["process"]["cwd"],
            "/work");
  c.set_working_dir("work");
  absl::Status s = ContainerError(c);
  EXPECT_EQ(s.message(), "working_dir \"work\": must be an absolute path");
}

// ----------------------------------------------------------------------------------------
// Users

class UserTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    rootfs_ = dir_.path() / "rootfs";
    WriteFile(rootfs_ / "etc/passwd",
              "# comment\n"
              "root:x:0:0:root:/root:/bin/sh\n"
              "alice:x:1000:1000:Alice:/home/alice:/bin/sh\n"
              "bob:x:1001:1001::/home/bob:/bin/sh\n"
              "broken line\n"
              "nobody:x:65534:65534::/nonexistent:/bin/false\n");
    WriteFile(rootfs_ / "etc/group",
              "root:x:0:\n"
              "alice:x:1000:\n"
              "bob:x:1001:\n"
              "staff:x:50:alice,bob\n"
              "video:x:44:alice\n"
              "wheel:x:10:root\n");
  }

  absl::StatusOr<json> Build(const std::string& image_user,
                             const std::function<void(runtime::v1::ContainerConfig*)>& edit = {}) {
    runtime::v1::ContainerConfig c = Container();
    if (edit) edit(&c);
    SpecInputs in = Inputs();
    in.rootfs_path = rootfs_.string();
    return BuildContainerSpec(Sandbox(), c, Image({{"Cmd", {"sh"}}, {"User", image_user}}), in);
  }

  json User(const std::string& image_user,
            const std::function<void(runtime::v1::ContainerConfig*)>& edit = {}) {
    absl::StatusOr<json> spec = Build(image_user, edit);
    EXPECT_TRUE(spec.ok()) << spec.status();
    return spec.ok() ? (*spec)["process"]["user"] : json();
  }

  static json U(uint32_t uid, uint32_t gid, std::vector<uint32_t> gids) {
    return json{{"uid", uid}, {"gid", gid}, {"additionalGids", gids}};
  }

  TempDir dir_{"user-lookup"};
  fs::path rootfs_;
};

TEST_F(UserTest, ImageUserForms) {
  EXPECT_EQ(User(""), U(0, 0, {0, 10}));
  EXPECT_EQ(User("alice"), U(1000, 1000, {1000, 50, 44}));
  EXPECT_EQ(User("1000"), U(1000, 1000, {1000, 50, 44}));
  EXPECT_EQ(User("1000:44"), U(1000, 44, {44}));
  EXPECT_EQ(User("alice:staff"), U(1000, 50, {50}));
  EXPECT_EQ(User("bob:10"), U(1001, 10, {10}));
  EXPECT_EQ(User("4242"), U(4242, 0, {0}));
  EXPECT_EQ(User("4242:4243"), U(4242, 4243, {4243}));
}

TEST_F(UserTest, HomeComesFromPasswd) {
  absl::StatusOr<json> spec = Build("alice");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ((*spec)["process"]["env"].back(), "HOME=/home/alice");
}

TEST_F(UserTest, ImageUserErrors) {
  absl::StatusOr<json> spec = Build("mallory");
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(spec.status().message(),
            "image config User \"mallory\": user \"mallory\": no such user in the image's "
            "/etc/passwd");
  spec = Build("alice:nogroup");
  ASSERT_FALSE(spec.ok());
  EXPECT_NE(spec.status().message().find("group \"nogroup\""), std::string::npos);
  spec = Build(":50");
  ASSERT_FALSE(spec.ok());
  EXPECT_NE(spec.status().message().find("malformed"), std::string::npos);
  spec = Build("99999999999");
  ASSERT_FALSE(spec.ok());
  EXPECT_NE(spec.status().message().find("out of range"), std::string::npos);
}

TEST_F(UserTest, SecurityContextWinsOverImage) {
  auto sc = [](runtime::v1::ContainerConfig* c) {
    return c->mutable_linux()->mutable_security_context();
  };
  EXPECT_EQ(User("alice", [&](auto* c) { sc(c)->mutable_run_as_user()->set_value(1001); }),
            U(1001, 1001, {1001, 50}));
  EXPECT_EQ(User("", [&](auto* c) { sc(c)->set_run_as_username("alice"); }),
            U(1000, 1000, {1000, 50, 44}));
  EXPECT_EQ(User("", [&](auto* c) { sc(c)->mutable_run_as_user()->set_value(0); }),
            U(0, 0, {0, 10}));
  EXPECT_EQ(User("", [&](auto* c) { sc(c)->mutable_run_as_user()->set_value(5000); }),
            U(5000, 0, {0}));
  // run_as_group replaces the primary group; /etc/group memberships stay (Merge).
  EXPECT_EQ(User("",
                 [&](auto* c) {
                   sc(c)->mutable_run_as_user()->set_value(1000);
                   sc(c)->mutable_run_as_group()->set_value(3000);
                   sc(c)->add_supplemental_groups(4000);
                   sc(c)->add_supplemental_groups(50);
                 }),
            U(1000, 3000, {3000, 50, 44, 4000}));
  EXPECT_EQ(User("",
                 [&](auto* c) {
                   sc(c)->set_run_as_username("alice");
                   sc(c)->add_supplemental_groups(4000);
                   sc(c)->set_supplemental_groups_policy(runtime::v1::Strict);
                 }),
            U(1000, 1000, {1000, 4000}));
}

TEST_F(UserTest, SecurityContextErrors) {
  absl::StatusOr<json> spec = Build("alice", [](auto* c) {
    c->mutable_linux()->mutable_security_context()->mutable_run_as_group()->set_value(5);
  });
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(spec.status().message().find("linux.security_context.run_as_group is set without"),
            std::string::npos);
  spec = Build("", [](auto* c) {
    c->mutable_linux()->mutable_security_context()->set_run_as_username("carol");
  });
  ASSERT_FALSE(spec.ok());
  EXPECT_EQ(spec.status().message(),
            "linux.security_context.run_as_username \"carol\": no such user in the image's "
            "/etc/passwd");
  spec = Build("", [](auto* c) {
    c->mutable_linux()->mutable_security_context()->mutable_run_as_user()->set_value(-1);
  });
  ASSERT_FALSE(spec.ok());
  EXPECT_NE(spec.status().message().find("linux.security_context.run_as_user -1: out of range"),
            std::string::npos);
}

TEST_F(UserTest, NoPasswdFileMeansNumericOnly) {
  fs::remove(rootfs_ / "etc/passwd");
  EXPECT_EQ(User("1000"), U(1000, 0, {0}));
  absl::StatusOr<json> spec = Build("alice");
  ASSERT_FALSE(spec.ok());
  EXPECT_NE(spec.status().message().find("the image has no /etc/passwd"), std::string::npos);
}

TEST_F(UserTest, SymlinksStayInsideTheRootfs) {
  // <tmp>/outside/passwd is a host file; the image's /etc/passwd points "up" at it.
  WriteFile(dir_.path() / "outside/passwd", "alice:x:9999:9999::/host:/bin/sh\n");
  WriteFile(rootfs_ / "outside/passwd", "alice:x:1234:1234::/inside:/bin/sh\n");
  fs::remove(rootfs_ / "etc/passwd");
  fs::create_symlink("../../../../outside/passwd", rootfs_ / "etc/passwd");
  EXPECT_EQ(User("alice:0"), U(1234, 0, {0}));
  fs::remove(rootfs_ / "etc/passwd");
  fs::create_symlink(dir_.path() / "outside/passwd", rootfs_ / "etc/passwd");  // absolute
  absl::StatusOr<std::string> text = ReadFileInRootfs(rootfs_.string(), "/etc/passwd");
  EXPECT_TRUE(absl::IsNotFound(text.status())) << text.status();
}

TEST_F(UserTest, NonRegularFileIsRejected) {
  fs::remove(rootfs_ / "etc/passwd");
  fs::create_directories(rootfs_ / "etc/passwd");
  absl::StatusOr<json> spec = Build("0");
  ASSERT_FALSE(spec.ok());
  EXPECT_NE(spec.status().message().find("not a regular file"), std::string::npos);
}

TEST(UserLookupTest, Parsers) {
  std::vector<PasswdEntry> p = ParsePasswd("a:x:1:2:g:/h:/s\r\n+nis\n\nb:x:bad:2::/:\nc:x:3:4\n");
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].name, "a");
  EXPECT_EQ(p[0].home, "/h");
  EXPECT_EQ(p[1].uid, 3u);
  EXPECT_EQ(p[1].home, "");
  std::vector<GroupEntry> g = ParseGroup("g:x:5:a, b,\nh:x:6\n");
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[0].members, (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(g[1].members.empty());
}

// ----------------------------------------------------------------------------------------
// Namespaces, hostname

TEST(OciSpecTest, SandboxNamespacesPod) {
  absl::StatusOr<json> spec = BuildSandboxSpec(Sandbox(), BusyboxImage(), Inputs());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(NamespaceTypes(*spec),
            (std::vector<std::string>{"pid=/proc/42/ns/pid", "network=/var/run/netns/cni-1",
                                      "uts=/proc/42/ns/uts", "ipc=/proc/42/ns/ipc", "mount"}));
  SpecInputs fresh = Inputs();
  fresh.net_ns_path.clear();
  fresh.ipc_ns_path.clear();
  fresh.uts_ns_path.clear();
  fresh.pid_ns_path.clear();
  fresh.cgroup_namespace = true;
  spec = BuildSandboxSpec(Sandbox(), BusyboxImage(), fresh);
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(NamespaceTypes(*spec),
            (std::vector<std::string>{"pid", "network", "uts", "ipc", "mount", "cgroup"}));
  EXPECT_EQ((*spec)["hostname"], "web-0");
}

TEST(OciSpecTest, SandboxNamespacesNode) {
  runtime::v1::PodSandboxConfig sb = Sandbox();
  auto* ns = sb.mutable_linux()->mutable_security_context()->mutable_namespace_options();
  ns->set_network(runtime::v1::NODE);
  ns->set_pid(runtime::v1::NODE);
  ns->set_ipc(runtime::v1::NODE);
  absl::StatusOr<json> spec = BuildSandboxSpec(sb, BusyboxImage(), Inputs());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(NamespaceTypes(*spec), (std::vector<std::string>{"mount"}));
  EXPECT_FALSE(spec->contains("hostname"));  // no UTS namespace of its own
  const json* shm = FindMount(*spec, "/dev/shm");
  ASSERT_NE(shm, nullptr);
  EXPECT_EQ((*shm)["source"], "/dev/shm");
}

TEST(OciSpecTest, UserNamespacesAreCheckedThenRefusedNotIgnored) {
  runtime::v1::PodSandboxConfig sb = Sandbox();
  auto* u = sb.mutable_linux()
                ->mutable_security_context()
                ->mutable_namespace_options()
                ->mutable_userns_options();
  // NODE is the host's: nothing to do.
  u->set_mode(runtime::v1::NODE);
  ASSERT_TRUE(BuildSandboxSpec(sb, BusyboxImage(), Inputs()).ok());
  auto add = [](google::protobuf::RepeatedPtrField<runtime::v1::IDMapping>* list, uint32_t host,
                uint32_t container, uint32_t length) {
    runtime::v1::IDMapping* m = list->Add();
    m->set_host_id(host);
    m->set_container_id(container);
    m->set_length(length);
  };
  add(u->mutable_uids(), 65536, 0, 65536);
  EXPECT_EQ(BuildSandboxSpec(sb, BusyboxImage(), Inputs()).status().message(),
            "linux.security_context.namespace_options.userns_options: mode NODE (the host's user "
            "namespace) takes no uids or gids mappings");
  // POD: malformed mappings are INVALID_ARGUMENT naming the field...
  u->set_mode(runtime::v1::POD);
  EXPECT_EQ(BuildSandboxSpec(sb, BusyboxImage(), Inputs()).status().message(),
            "linux.security_context.namespace_options.userns_options.gids: mode POD needs id "
            "mappings (the kubelet allocates them)");
  add(u->mutable_gids(), 4294967295u, 0, 2);
  EXPECT_EQ(BuildSandboxSpec(sb, BusyboxImage(), Inputs()).status().message(),
            "linux.security_context.namespace_options.userns_options.gids[0]: the range goes "
            "past the last id 4294967295");
  u->mutable_gids(0)->set_host_id(65536);
  u->mutable_gids(0)->set_length(0);
  EXPECT_EQ(BuildSandboxSpec(sb, BusyboxImage(), Inputs()).status().code(),
            absl::StatusCode::kInvalidArgument);
  // ...and well-formed ones FAILED_PRECONDITION saying why, for the pod and its containers.
  u->mutable_gids(0)->set_length(65536);
  absl::Status s = BuildSandboxSpec(sb, BusyboxImage(), Inputs()).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("id-map the container rootfs"), std::string::npos) << s;
  EXPECT_NE(s.message().find("hostUsers: true"), std::string::npos) << s;
  runtime::v1::ContainerConfig c = Container();
  *c.mutable_linux()->mutable_security_context()->mutable_namespace_options() =
      sb.linux().security_context().namespace_options();
  EXPECT_EQ(ContainerError(c).code(), absl::StatusCode::kFailedPrecondition);
  c.mutable_linux()
      ->mutable_security_context()
      ->mutable_namespace_options()
      ->mutable_userns_options()
      ->set_mode(runtime::v1::TARGET);
  EXPECT_EQ(ContainerError(c).message(),
            "linux.security_context.namespace_options.userns_options.mode: TARGET is not a user "
            "namespace mode (NODE or POD)");
}

TEST(OciSpecTest, ContainerNamespaces) {
  runtime::v1::ContainerConfig c = Container();
  auto* ns = c.mutable_linux()->mutable_security_context()->mutable_namespace_options();
  // POD everything: joins the sandbox's, sets no hostname (the sandbox did).
  json spec = MustContainer(c);
  EXPECT_EQ(NamespaceTypes(spec),
            (std::vector<std::string>{"pid=/proc/42/ns/pid", "network=/var/run/netns/cni-1",
                                      "uts=/proc/42/ns/uts", "ipc=/proc/42/ns/ipc", "mount"}));
  EXPECT_FALSE(spec.contains("hostname"));
  ns->set_pid(runtime::v1::CONTAINER);
  EXPECT_EQ(NamespaceTypes(MustContainer(c))[0], "pid");
  ns->set_pid(runtime::v1::TARGET);
  ns->set_target_id("other");
  EXPECT_EQ(NamespaceTypes(MustContainer(c))[0], "pid=/proc/42/ns/pid");
  SpecInputs in = Inputs();
  in.pid_ns_path.clear();
  absl::Status s = ContainerError(c, BusyboxImage(), in);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("namespace_options.pid: TARGET (target_id \"other\")"),
            std::string::npos)
      << s;
  ns->set_pid(runtime::v1::NODE);
  ns->set_network(runtime::v1::NODE);
  ns->set_ipc(runtime::v1::NODE);
  spec = MustContainer(c);
  EXPECT_EQ(NamespaceTypes(spec), (std::vector<std::string>{"mount"}));
  EXPECT_EQ((*FindMount(spec, "/dev/shm"))["source"], "/dev/shm");
}

TEST(OciSpecTest, ContainerWithOwnUtsGetsHostname) {
  SpecInputs in = Inputs();
  in.uts_ns_path.clear();
  EXPECT_EQ(MustContainer(Container(), BusyboxImage(), in)["hostname"], "web-0");
}

TEST(OciSpecTest, HostNetworkHostnameEnvFromNode) {
  runtime::v1::PodSandboxConfig sb = Sandbox();
  sb.clear_hostname();
  sb.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_network(
      runtime::v1::NODE);
  runtime::v1::ContainerConfig c = Container();
  c.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_network(
      runtime::v1::NODE);
  SpecInputs in = Inputs();
  in.node_hostname = "node-7";
  json spec = MustContainer(c, BusyboxImage(), in, sb);
  EXPECT_EQ(spec["process"]["env"][1], "HOSTNAME=node-7");
  EXPECT_FALSE(spec.contains("hostname"));
}

// ----------------------------------------------------------------------------------------
// Mounts

class MountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    fs::create_directories(dir_.path() / "data/sub");
    fs::create_directories(dir_.path() / "logs");
  }
  runtime::v1::Mount* Add(runtime::v1::ContainerConfig* c, const std::string& container_path,
                          const std::string& host) {
    runtime::v1::Mount* m = c->add_mounts();
    m->set_container_path(container_path);
    m->set_host_path(host.empty() || host[0] == '/' ? host : dir_.File(host));
    return m;
  }
  TempDir dir_{"mounts"};
};

TEST_F(MountTest, DefaultsPodFilesAndCriMountsParentsFirst) {
  runtime::v1::ContainerConfig c = Container();
  Add(&c, "/data/sub/deeper", "data/sub");
  Add(&c, "/data/sub", "data/sub");
  Add(&c, "/data/", "data");
  Add(&c, "/var/log/app", "logs");
  SpecInputs in = Inputs();
  in.hosts_path = "/pod/hosts";
  in.resolv_conf_path = "/pod/resolv.conf";
  in.hostname_path = "/pod/hostname";
  in.shm_path = "/pod/shm";
  json spec = MustContainer(c, BusyboxImage(), in);
  EXPECT_EQ(Destinations(spec),
            (std::vector<std::string>{"/proc", "/dev", "/sys", "/data", "/dev/pts", "/dev/shm",
                                      "/dev/mqueue", "/etc/hostname", "/etc/hosts",
                                      "/etc/resolv.conf", "/data/sub", "/sys/fs/cgroup",
                                      "/data/sub/deeper", "/var/log/app"}));
  EXPECT_EQ(*FindMount(spec, "/etc/hosts"), json({{"destination", "/etc/hosts"},
                                                  {"type", "bind"},
                                                  {"source", "/pod/hosts"},
                                                  {"options", {"rbind", "rprivate", "rw"}}}));
  EXPECT_EQ((*FindMount(spec, "/dev/shm"))["source"], "/pod/shm");
  EXPECT_EQ((*FindMount(spec, "/sys"))["options"].back(), "ro");
  EXPECT_EQ((*FindMount(spec, "/sys/fs/cgroup"))["options"].back(), "ro");
  EXPECT_FALSE(spec["linux"].contains("rootfsPropagation"));
}

// A mount table where "/" is private and the test directory a shared mount.
std::string FakeMountinfo(const std::string& dir, const std::string& dir_propagation) {
  return "22 1 0:21 / / rw,relatime - ext4 /dev/vda rw\n"
         "23 22 0:22 / /proc rw,relatime shared:5 - proc proc rw\n"
         "40 22 0:30 / " +
         dir + " rw,relatime " + dir_propagation + " - tmpfs tmpfs rw\n";
}

TEST_F(MountTest, PropagationAndReadonly) {
  runtime::v1::ContainerConfig c = Container();
  Add(&c, "/a", "data")->set_readonly(true);
  Add(&c, "/b", "data")->set_propagation(runtime::v1::PROPAGATION_HOST_TO_CONTAINER);
  SpecInputs in = Inputs();
  in.mountinfo_path = dir_.File("mountinfo");
  WriteFile(in.mountinfo_path, FakeMountinfo(dir_.str(), "shared:7"));
  json spec = MustContainer(c, BusyboxImage(), in);
  EXPECT_EQ(*FindMount(spec, "/a"), json({{"destination", "/a"},
                                          {"type", "bind"},
                                          {"source", dir_.File("data")},
                                          {"options", {"rbind", "rprivate", "ro"}}}));
  EXPECT_EQ((*FindMount(spec, "/b"))["options"], json({"rbind", "rslave", "rw"}));
  EXPECT_EQ(spec["linux"]["rootfsPropagation"], "rslave");
  Add(&c, "/c", "logs")->set_propagation(runtime::v1::PROPAGATION_BIDIRECTIONAL);
  spec = MustContainer(c, BusyboxImage(), in);
  EXPECT_EQ((*FindMount(spec, "/c"))["options"], json({"rbind", "rshared", "rw"}));
  EXPECT_EQ(spec["linux"]["rootfsPropagation"], "rshared");
}

TEST_F(MountTest, PropagationNeedsASharedOrSlaveSource) {
  SpecInputs in = Inputs();
  in.mountinfo_path = dir_.File("mountinfo");
  fs::create_symlink(dir_.File("data"), dir_.File("link"));
  runtime::v1::ContainerConfig bidi = Container();
  Add(&bidi, "/c", "link")->set_propagation(runtime::v1::PROPAGATION_BIDIRECTIONAL);
  runtime::v1::ContainerConfig h2c = Container();
  Add(&h2c, "/b", "data")->set_propagation(runtime::v1::PROPAGATION_HOST_TO_CONTAINER);
  runtime::v1::ContainerConfig priv = Container();
  Add(&priv, "/a", "data");

  // The test directory is private: only PROPAGATION_PRIVATE works.
  WriteFile(in.mountinfo_path, FakeMountinfo(dir_.str(), ""));
  absl::Status s = ContainerError(bidi, BusyboxImage(), in);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(), "mounts[0].host_path \"" + dir_.File("link") + "\" (" + dir_.File("data") +
                             ") is on the mount " + dir_.str() +
                             ", which is not shared: PROPAGATION_BIDIRECTIONAL needs a shared "
                             "mount to propagate mounts back to the node (make it one: mount "
                             "--make-rshared " +
                             dir_.str() + ")");
  s = ContainerError(h2c, BusyboxImage(), in);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("which is neither shared nor slave"), std::string::npos) << s;
  EXPECT_TRUE(ContainerError(priv, BusyboxImage(), in).ok());

  // A slave: HOST_TO_CONTAINER works, BIDIRECTIONAL does not.
  WriteFile(in.mountinfo_path, FakeMountinfo(dir_.str(), "master:3"));
  EXPECT_TRUE(ContainerError(h2c, BusyboxImage(), in).ok());
  EXPECT_EQ(ContainerError(bidi, BusyboxImage(), in).code(), absl::StatusCode::kFailedPrecondition);

  // A shared mount stacked on the private one counts (the last line of a mount point wins).
  WriteFile(in.mountinfo_path, FakeMountinfo(dir_.str(), "") + "41 40 0:31 / " + dir_.str() +
                                   " rw shared:9 - tmpfs tmpfs rw\n");
  EXPECT_TRUE(ContainerError(bidi, BusyboxImage(), in).ok());
}

TEST_F(MountTest, RecursiveReadOnly) {
  runtime::v1::ContainerConfig c = Container();
  runtime::v1::Mount* m = Add(&c, "/a", "data");
  m->set_recursive_read_only(true);
  absl::Status s = ContainerError(c);
  EXPECT_EQ(s.message(), "mounts[0].recursive_read_only: requires readonly to be set too");
  m->set_readonly(true);
  EXPECT_EQ(ContainerError(c).code(), absl::StatusCode::kUnimplemented);
  SpecInputs in = Inputs();
  in.runtime_supports_rro = true;
  EXPECT_EQ((*FindMount(MustContainer(c, BusyboxImage(), in), "/a"))["options"],
            json({"rbind", "rprivate", "ro", "rro"}));
}

TEST_F(MountTest, CriMountReplacesDefaultsAtTheSameDestination) {
  runtime::v1::ContainerConfig c = Container();
  Add(&c, "/etc/hosts", "data");
  Add(&c, "/dev/shm", "logs");
  SpecInputs in = Inputs();
  in.hosts_path = "/pod/hosts";
  json spec = MustContainer(c, BusyboxImage(), in);
  int hosts = 0, shm = 0;
  for (const json& m : spec["mounts"]) {
    hosts += m["destination"] == "/etc/hosts";
    shm += m["destination"] == "/dev/shm";
  }
  EXPECT_EQ(hosts, 1);
  EXPECT_EQ(shm, 1);
  EXPECT_EQ((*FindMount(spec, "/etc/hosts"))["source"], dir_.File("data"));
  EXPECT_EQ((*FindMount(spec, "/dev/shm"))["source"], dir_.File("logs"));
}

TEST_F(MountTest, Errors) {
  auto error = [&](const std::string& container_path, const std::string& host) {
    runtime::v1::ContainerConfig c = Container();
    Add(&c, "/ok", "data");
    Add(&c, container_path, host);
    absl::Status s = ContainerError(c);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    return std::string(s.message());
  };
  EXPECT_EQ(error("/x", "/nope/at/all"),
            "mounts[1].host_path \"/nope/at/all\": no such file or directory");
  EXPECT_EQ(error("relative/x", "data"),
            "mounts[1].container_path \"relative/x\": must be an absolute path");
  EXPECT_EQ(error("/a/../../etc", "data"),
            "mounts[1].container_path \"/a/../../etc\": must not contain \"..\"");
  EXPECT_EQ(error("", "data"), "mounts[1].container_path: empty (an absolute path is required)");
  EXPECT_EQ(error("/ok/", "logs"),
            "mounts[1].container_path \"/ok/\": mounted twice (also mounts[0])");
  EXPECT_EQ(error("/", "logs"),
            "mounts[1].container_path \"/\": cannot mount over the container's root");
  EXPECT_EQ(error("/y", ""), "mounts[1].host_path: empty (an absolute host path is required)");
  runtime::v1::ContainerConfig c = Container();
  runtime::v1::Mount* m = c.add_mounts();
  m->set_container_path("/z");
  m->set_host_path("relative/dir");
  EXPECT_EQ(ContainerError(c).message(),
            "mounts[0].host_path \"relative/dir\": must be an absolute path");
}

TEST_F(MountTest, PrivilegedMountsSysAndCgroupReadWrite) {
  runtime::v1::PodSandboxConfig sb = Sandbox();
  sb.mutable_linux()->mutable_security_context()->set_privileged(true);
  runtime::v1::ContainerConfig c = Container();
  c.mutable_linux()->mutable_security_context()->set_privileged(true);
  json spec = MustContainer(c, BusyboxImage(), Inputs(), sb);
  EXPECT_EQ((*FindMount(spec, "/sys"))["options"].back(), "rw");
  EXPECT_EQ((*FindMount(spec, "/sys/fs/cgroup"))["options"].back(), "rw");
  EXPECT_FALSE(spec["linux"].contains("maskedPaths"));
  EXPECT_FALSE(spec["linux"].contains("readonlyPaths"));
  EXPECT_EQ(spec["linux"]["resources"]["devices"],
            json::parse(R"([{"allow":true,"access":"rwm"}])"));
}

TEST_F(MountTest, ReadonlyRootfsMakesPodFilesReadonly) {
  runtime::v1::ContainerConfig c = Container();
  c.mutable_linux()->mutable_security_context()->set_readonly_rootfs(true);
  SpecInputs in = Inputs();
  in.resolv_conf_path = "/pod/resolv.conf";
  json spec = MustContainer(c, BusyboxImage(), in);
  EXPECT_EQ(spec["root"]["readonly"], true);
  EXPECT_EQ((*FindMount(spec, "/etc/resolv.conf"))["options"].back(), "ro");
}

TEST_F(MountTest, ImageVolumes) {
  runtime::v1::ContainerConfig c = Container();
  Add(&c, "/covered", "data");
  json image = Image({{"Cmd", {"sh"}},
                      {"Volumes",
                       {{"/var/lib/db", json::object()},
                        {"/covered/", json::object()},
                        {"/a%b", json::object()}}}});
  absl::StatusOr<std::vector<std::string>> volumes = ImageVolumesToMount(c, image);
  ASSERT_TRUE(volumes.ok()) << volumes.status();
  EXPECT_EQ(*volumes, (std::vector<std::string>{"/a%b", "/var/lib/db"}));
  EXPECT_EQ(ImageVolumeDirName("/var/lib/db"), "var%2Flib%2Fdb");
  EXPECT_EQ(ImageVolumeDirName("/a%b"), "a%25b");
  // Without image_volumes_dir they are not mounted.
  EXPECT_EQ(FindMount(MustContainer(c, image), "/var/lib/db"), nullptr);
  SpecInputs in = Inputs();
  in.image_volumes_dir = "/state/c1/volumes";
  json spec = MustContainer(c, image, in);
  const json* db = FindMount(spec, "/var/lib/db");
  ASSERT_NE(db, nullptr);
  EXPECT_EQ((*db)["source"], "/state/c1/volumes/var%2Flib%2Fdb");
  EXPECT_EQ((*FindMount(spec, "/covered"))["source"], dir_.File("data"));
}

// ----------------------------------------------------------------------------------------
// Devices

TEST(OciSpecTest, Devices) {
  runtime::v1::ContainerConfig c = Container();
  runtime::v1::Device* d = c.add_devices();
  d->set_container_path("/dev/mynull");
  d->set_host_path("/dev/null");
  d->set_permissions("rw");
  json spec = MustContainer(c);
  ASSERT_EQ(spec["linux"]["devices"].size(), 1u);
  const json& dev = spec["linux"]["devices"][0];
  EXPECT_EQ(dev["path"], "/dev/mynull");
  EXPECT_EQ(dev["type"], "c");
  EXPECT_EQ(dev["major"], 1);
  EXPECT_EQ(dev["minor"], 3);
  EXPECT_EQ(dev["fileMode"], 0666);
  EXPECT_EQ(spec["linux"]["resources"]["devices"].back(),
            json({{"allow", true}, {"type", "c"}, {"major", 1}, {"minor", 3}, {"access", "rw"}}));
  EXPECT_EQ(spec["linux"]["resources"]["devices"][0], json({{"allow", false}, {"access", "rwm"}}));

  d->set_permissions("rwx");
  EXPECT_EQ(ContainerError(c).message(),
            "devices[0].permissions \"rwx\": must be made of r, w and m, each at most once");
  d->set_permissions("");
  d->set_host_path("/dev/nope-no-device");
  EXPECT_EQ(ContainerError(c).message(),
            "devices[0].host_path \"/dev/nope-no-device\": no such file or directory");
  d->set_host_path("/etc/hostname");
  EXPECT_NE(ContainerError(c).message().find("not a character or block device"), std::string::npos);
  d->set_host_path("/dev/null");
  d->set_container_path("mynull");
  EXPECT_EQ(ContainerError(c).message(),
            "devices[0].container_path \"mynull\": must be an absolute path");
}

// ----------------------------------------------------------------------------------------
// Resources

TEST(OciSpecTest, Resources) {
  runtime::v1::ContainerConfig c = Container();
  auto* r = c.mutable_linux()->mutable_resources();
  r->set_cpu_period(100000);
  r->set_cpu_quota(50000);
  r->set_cpu_shares(512);
  r->set_cpuset_cpus("0-1,3");
  r->set_cpuset_mems("0");
  r->set_memory_limit_in_bytes(256 << 20);
  r->set_memory_swap_limit_in_bytes(512 << 20);
  r->set_oom_score_adj(900);
  auto* h = r->add_hugepage_limits();
  h->set_page_size("2MB");
  h->set_limit(4 << 20);
  (*r->mutable_unified())["memory.high"] = "200000000";
  SpecInputs in = Inputs();
  in.pids_limit = 100;
  json spec = MustContainer(c, BusyboxImage(), in);
  json res = spec["linux"]["resources"];
  EXPECT_EQ(res["cpu"], json({{"period", 100000},
                              {"quota", 50000},
                              {"shares", 512},
                              {"cpus", "0-1,3"},
                              {"mems", "0"}}));
  EXPECT_EQ(res["memory"], json({{"limit", 256 << 20}, {"swap", 512 << 20}}));
  EXPECT_EQ(res["hugepageLimits"], json::parse(R"([{"pageSize":"2MB","limit":4194304}])"));
  EXPECT_EQ(res["unified"], json({{"memory.high", "200000000"}}));
  EXPECT_EQ(res["pids"], json({{"limit", 100}}));
  EXPECT_EQ(spec["process"]["oomScoreAdj"], 900);
}

TEST(OciSpecTest, OomScoreAdjIsClamped) {
  runtime::v1::ContainerConfig c = Container();
  SpecInputs in = Inputs();
  auto oom = [&](int64_t v, int min) {
    c.mutable_linux()->mutable_resources()->set_oom_score_adj(v);
    in.oom_score_adj_min = min;
    return MustContainer(c, BusyboxImage(), in)["process"]["oomScoreAdj"].get<int>();
  };
  EXPECT_EQ(oom(-500, -1000), -500);
  EXPECT_EQ(oom(-500, 0), 0);
  EXPECT_EQ(oom(-5000, -1000), -1000);
  EXPECT_EQ(oom(5000, 0), 1000);
  EXPECT_EQ(oom(1000, 0), 1000);
  in.oom_score_adj_min = 0;
  absl::StatusOr<json> sb = BuildSandboxSpec(Sandbox(), BusyboxImage(), in);
  ASSERT_TRUE(sb.ok()) << sb.status();
  EXPECT_EQ((*sb)["process"]["oomScoreAdj"], 0);
  in.oom_score_adj_min = -1000;
  sb = BuildSandboxSpec(Sandbox(), BusyboxImage(), in);
  ASSERT_TRUE(sb.ok()) << sb.status();
  EXPECT_EQ((*sb)["process"]["oomScoreAdj"], -998);
}

TEST(OciSpecTest, InvalidResources) {
  auto error = [](const std::function<void(runtime::v1::LinuxContainerResources*)>& edit) {
    runtime::v1::ContainerConfig c = Container();
    edit(c.mutable_linux()->mutable_resources());
    absl::Status s = ContainerError(c);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    return std::string(s.message());
  };
  EXPECT_EQ(error([](auto* r) { r->set_memory_limit_in_bytes(-1); }),
            "linux.resources.memory_limit_in_bytes: -1 is negative");
  EXPECT_EQ(error([](auto* r) { r->set_cpu_shares(300000); }),
            "linux.resources.cpu_shares: 300000 is outside 1..262144");
  EXPECT_EQ(error([](auto* r) { r->set_cpu_shares(-2); }),
            "linux.resources.cpu_shares: -2 is outside 1..262144");
  EXPECT_NE(error([](auto* r) { r->set_cpu_quota(500); }).find("linux.resources.cpu_quota: 500"),
            std::string::npos);
  EXPECT_NE(error([](auto* r) { r->set_cpu_period(10); }).find("linux.resources.cpu_period"),
            std::string::npos);
  EXPECT_EQ(error([](auto* r) { r->set_cpuset_cpus("0-a"); }),
            "linux.resources.cpuset_cpus \"0-a\": not a CPU list like 0-3,5");
  EXPECT_EQ(error([](auto* r) { r->set_cpuset_cpus("3-1"); }),
            "linux.resources.cpuset_cpus \"3-1\": not a CPU list like 0-3,5");
  EXPECT_EQ(error([](auto* r) { r->add_hugepage_limits()->set_page_size("2M"); }),
            "linux.resources.hugepage_limits[0].page_size \"2M\": not a page size like 2MB or "
            "1GB");
  EXPECT_NE(error([](auto* r) {
              r->set_memory_limit_in_bytes(1000000);
              r->set_memory_swap_limit_in_bytes(500000);
            }).find("linux.resources.memory_swap_limit_in_bytes: 500000 is below"),
            std::string::npos);
  EXPECT_EQ(error([](auto* r) { (*r->mutable_unified())["../../x"] = "1"; }),
            "linux.resources.unified \"../../x\": not a cgroup v2 file name");
}

TEST(OciSpecTest, UnlimitedQuotaAndSwap) {
  runtime::v1::ContainerConfig c = Container();
  c.mutable_linux()->mutable_resources()->set_cpu_quota(-1);
  c.mutable_linux()->mutable_resources()->set_memory_swap_limit_in_bytes(-1);
  json spec = MustContainer(c);
  EXPECT_EQ(spec["linux"]["resources"]["cpu"]["quota"], -1);
  EXPECT_EQ(spec["linux"]["resources"]["memory"]["swap"], -1);
}

// ----------------------------------------------------------------------------------------
// Sysctls

TEST(OciSpecTest, SandboxSysctls) {
  runtime::v1::PodSandboxConfig sb = Sandbox();
  auto& sysctls = *sb.mutable_linux()->mutable_sysctls();
  sysctls["net.ipv4.ip_unprivileged_port_start"] = "0";
  sysctls["kernel.shm_rmid_forced"] = "1";
  sysctls["kernel.msgmax"] = "65536";
  sysctls["kernel.sem"] = "250 32000 100 128";
  sysctls["fs.mqueue.msg_max"] = "20";
  sysctls["net/ipv4/conf/eth0.100/forwarding"] = "1";
  absl::StatusOr<json> spec = BuildSandboxSpec(sb, BusyboxImage(), Inputs());
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ((*spec)["linux"]["sysctl"].size(), 6u);
  EXPECT_EQ((*spec)["linux"]["sysctl"]["kernel.sem"], "250 32000 100 128");
  // Containers that join the pod's namespaces do not set them again...
  EXPECT_FALSE(
      MustContainer(Container(), BusyboxImage(), Inputs(), sb)["linux"].contains("sysctl"));
  // ...one that makes its own network namespace does (for that namespace only).
  SpecInputs in = Inputs();
  in.net_ns_path.clear();
  json c = MustContainer(Container(), BusyboxImage(), in, sb);
  EXPECT_EQ(c["linux"]["sysctl"].size(), 2u);
}

TEST(OciSpecTest, SysctlErrors) {
  auto error = [](const std::string& key, bool host_net = false, bool host_ipc = false) {
    runtime::v1::PodSandboxConfig sb = Sandbox();
    (*sb.mutable_linux()->mutable_sysctls())[key] = "1";
    auto* ns = sb.mutable_linux()->mutable_security_context()->mutable_namespace_options();
    if (host_net) ns->set_network(runtime::v1::NODE);
    if (host_ipc) ns->set_ipc(runtime::v1::NODE);
    absl::StatusOr<json> spec = BuildSandboxSpec(sb, BusyboxImage(), Inputs());
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << spec.status();
    return std::string(spec.status().message());
  };
  EXPECT_EQ(error("vm.swappiness"),
            "linux.sysctls[\"vm.swappiness\"] \"vm.swappiness\": not an allowed namespaced "
            "sysctl (kernel.shm*, kernel.msg*, kernel.sem, fs.mqueue.*, net.*)");
  EXPECT_NE(error("kernel.hostname").find("not an allowed"), std::string::npos);
  EXPECT_NE(error("net..x").find("empty component"), std::string::npos);
  EXPECT_NE(error("net.ipv4.ip_forward", true).find("host's network namespace"), std::string::npos);
  EXPECT_NE(error("kernel.shmmax", false, true).find("host's IPC namespace"), std::string::npos);
}

// ----------------------------------------------------------------------------------------
// Capabilities

std::vector<std::string> Caps(const json& spec, const char* set = "bounding") {
  const json& caps = spec["process"]["capabilities"];
  return caps.contains(set) ? caps[set].get<std::vector<std::string>>()
                            : std::vector<std::string>{};
}

TEST(OciSpecTest, DefaultCapabilities) {
  json spec = MustContainer(Container());
  std::vector<std::string> want = {"CAP_CHOWN",       "CAP_DAC_OVERRIDE", "CAP_FOWNER",
                                   "CAP_FSETID",      "CAP_KILL",         "CAP_SETGID",
                                   "CAP_SETUID",      "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE",
                                   "CAP_NET_RAW",     "CAP_SYS_CHROOT",   "CAP_MKNOD",
                                   "CAP_AUDIT_WRITE", "CAP_SETFCAP"};
  EXPECT_EQ(Caps(spec), want);
  EXPECT_EQ(Caps(spec, "effective"), want);
  EXPECT_EQ(Caps(spec, "permitted"), want);
  EXPECT_TRUE(Caps(spec, "ambient").empty());
  EXPECT_TRUE(Caps(spec, "inheritable").empty());
}

TEST(OciSpecTest, CapabilityAddDrop) {
  auto caps = [](const std::vector<std::string>& add, const std::vector<std::string>& drop,
                 const std::vector<std::string>& host = {}) {
    runtime::v1::ContainerConfig c = Container();
    auto* cap = c.mutable_linux()->mutable_security_context()->mutable_capabilities();
    for (const auto& a : add) cap->add_add_capabilities(a);
    for (const auto& d : drop) cap->add_drop_capabilities(d);
    SpecInputs in = Inputs();
    in.host_capabilities = host;
    return Caps(MustContainer(c, BusyboxImage(), in));
  };
  std::vector<std::string> got = caps({"NET_ADMIN", "cap_sys_time"}, {"CHOWN", "CAP_KILL"});
  EXPECT_NE(std::find(got.begin(), got.end(), "CAP_NET_ADMIN"), got.end());
  EXPECT_NE(std::find(got.begin(), got.end(), "CAP_SYS_TIME"), got.end());
  EXPECT_EQ(std::find(got.begin(), got.end(), "CAP_CHOWN"), got.end());
  EXPECT_EQ(std::find(got.begin(), got.end(), "CAP_KILL"), got.end());
  EXPECT_EQ(got.size(), 14u);
  EXPECT_EQ(caps({"NET_BIND_SERVICE"}, {"ALL"}),
            (std::vector<std::string>{"CAP_NET_BIND_SERVICE"}));
  EXPECT_EQ(caps({"ALL"}, {"SYS_ADMIN"}, {"CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_ADMIN"}),
            (std::vector<std::string>{"CAP_CHOWN", "CAP_NET_ADMIN"}));
  EXPECT_EQ(caps({"ALL"}, {}).size(), 41u);
  EXPECT_EQ(caps({"NET_ADMIN"}, {"NET_ADMIN"}).size(), 14u);  // drop wins
  // Defaults are limited to what berthd holds.
  EXPECT_EQ(caps({}, {}, {"CAP_CHOWN", "CAP_KILL", "CAP_SYS_ADMIN"}),
            (std::vector<std::string>{"CAP_CHOWN", "CAP_KILL"}));
}

TEST(OciSpecTest, AmbientCapabilities) {
  runtime::v1::ContainerConfig c = Container();
  auto* cap = c.mutable_linux()->mutable_security_context()->mutable_capabilities();
  cap->add_add_ambient_capabilities("NET_ADMIN");
  json spec = MustContainer(c);
  EXPECT_EQ(Caps(spec, "ambient"), (std::vector<std::string>{"CAP_NET_ADMIN"}));
  EXPECT_EQ(Caps(spec, "inheritable"), (std::vector<std::string>{"CAP_NET_ADMIN"}));
  EXPECT_EQ(Caps(spec).size(), 15u);
}

TEST(OciSpecTest, CapabilityErrors) {
  runtime::v1::ContainerConfig c = Container();
  auto* cap = c.mutable_linux()->mutable_security_context()->mutable_capabilities();
  cap->add_add_capabilities("NET_ADMIN");
  cap->add_add_capabilities("FLY");
  EXPECT_EQ(ContainerError(c).message(),
            "linux.security_context.capabilities.add_capabilities[1] \"FLY\": unknown "
            "capability");
  cap->clear_add_capabilities();
  cap->add_add_capabilities("SYS_RESOURCE");
  SpecInputs in = Inputs();
  in.host_capabilities = {"CAP_CHOWN", "CAP_SYS_ADMIN"};
  absl::Status s = ContainerError(c, BusyboxImage(), in);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("berthd does not hold this capability"), std::string::npos) << s;
}

TEST(OciSpecTest, PrivilegedGetsHostCapabilities) {
  runtime::v1::PodSandboxConfig sb = Sandbox();
  sb.mutable_linux()->mutable_security_context()->set_privileged(true);
  runtime::v1::ContainerConfig c = Container();
  c.mutable_linux()->mutable_security_context()->set_privileged(true);
  c.mutable_linux()->mutable_security_context()->mutable_capabilities()->add_drop_capabilities(
      "ALL");
  SpecInputs in = Inputs();
  in.host_capabilities = {"CAP_SYS_ADMIN", "chown", "CAP_BPF"};
  json spec = MustContainer(c, BusyboxImage(), in, sb);
  EXPECT_EQ(Caps(spec), (std::vector<std::string>{"CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_BPF"}));
  EXPECT_EQ(Caps(spec, "effective"), Caps(spec));
  // A privileged container needs a privileged sandbox.
  absl::Status s = ContainerError(c, BusyboxImage(), in, Sandbox());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("linux.security_context.privileged"), std::string::npos);
}

TEST(OciSpecTest, PrivilegedGetsTheNodesDevices) {
  if (::geteuid() != 0) GTEST_SKIP() << "mknod needs root";
  TempDir dev("dev");
  fs::create_directories(dev.path() / "dri");
  fs::create_directories(dev.path() / "pts");
  ASSERT_EQ(::mknod(dev.File("null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0);
  ASSERT_EQ(::mknod(dev.File("dri/card0").c_str(), S_IFCHR | 0660, makedev(226, 0)), 0);
  ASSERT_EQ(::chmod(dev.File("dri/card0").c_str(), 0660), 0);  // whatever the umask
  ASSERT_EQ(::mknod(dev.File("vdz").c_str(), S_IFBLK | 0660, makedev(254, 9)), 0);
  ASSERT_EQ(::mknod(dev.File("pts/0").c_str(), S_IFCHR | 0620, makedev(136, 0)), 0);
  ASSERT_EQ(::mknod(dev.File("console").c_str(), S_IFCHR | 0600, makedev(5, 1)), 0);
  fs::create_symlink("null", dev.path() / "nothing");
  WriteFile(dev.path() / "not-a-device", "x");
  SpecInputs in = Inputs();
  in.host_dev_dir = dev.str();
  runtime::v1::PodSandboxConfig sb = Sandbox();
  sb.mutable_linux()->mutable_security_context()->set_privileged(true);
  runtime::v1::ContainerConfig c = Container();
  c.mutable_linux()->mutable_security_context()->set_privileged(true);
  runtime::v1::Device* d = c.add_devices();  // the request's own /dev/null wins
  d->set_container_path("/dev/null");
  d->set_host_path("/dev/zero");
  json spec = MustContainer(c, BusyboxImage(), in, sb);
  std::vector<std::string> paths;
  for (const json& dv : spec["linux"]["devices"]) paths.push_back(dv["path"]);
  EXPECT_EQ(paths, (std::vector<std::string>{"/dev/dri/card0", "/dev/vdz", "/dev/null"}));
  EXPECT_EQ(spec["linux"]["devices"][0], json({{"path", "/dev/dri/card0"},
                                               {"type", "c"},
                                               {"major", 226},
                                               {"minor", 0},
                                               {"fileMode", 0660},
                                               {"uid", 0},
                                               {"gid", 0}}));
  EXPECT_EQ(spec["linux"]["devices"][1]["type"], "b");
  EXPECT_EQ(spec["linux"]["devices"][2]["minor"], 5);
  EXPECT_EQ(spec["linux"]["resources"]["devices"],
            json::array({{{"allow", true}, {"access", "rwm"}}}));
  // Unprivileged: only what it asked for.
  c.mutable_linux()->mutable_security_context()->set_privileged(false);
  spec = MustContainer(c, BusyboxImage(), in, sb);
  EXPECT_EQ(spec["linux"]["devices"].size(), 1u);
}

TEST(OciSpecTest, SandboxResourcesAreAnnotated) {
  runtime::v1::PodSandboxConfig sb = Sandbox();
  auto* r = sb.mutable_linux()->mutable_resources();
  r->set_cpu_period(100000);
  r->set_cpu_quota(150000);
  r->set_cpu_shares(1536);
  r->set_memory_limit_in_bytes(256 << 20);
  absl::StatusOr<json> spec = BuildSandboxSpec(sb, BusyboxImage(), Inputs());
  ASSERT_TRUE(spec.ok()) << spec.status();
  const json& a = (*spec)["annotations"];
  EXPECT_EQ(a["io.kubernetes.cri.sandbox-cpu-period"], "100000");
  EXPECT_EQ(a["io.kubernetes.cri.sandbox-cpu-quota"], "150000");
  EXPECT_EQ(a["io.kubernetes.cri.sandbox-cpu-shares"], "1536");
  EXPECT_EQ(a["io.kubernetes.cri.sandbox-memory"], std::to_string(256 << 20));
  spec = BuildSandboxSpec(Sandbox(), BusyboxImage(), Inputs());
  EXPECT_FALSE((*spec)["annotations"].contains("io.kubernetes.cri.sandbox-memory"));
}

TEST(OciSpecTest, MaskedAndReadonlyPaths) {
  runtime::v1::ContainerConfig c = Container();
  json spec = MustContainer(c);
  json masked = spec["linux"]["maskedPaths"];
  EXPECT_NE(std::find(masked.begin(), masked.end(), "/proc/kcore"), masked.end());
  EXPECT_NE(std::find(masked.begin(), masked.end(), "/sys/firmware"), masked.end());
  EXPECT_EQ(spec["linux"]["readonlyPaths"],
            json({"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}));
  auto* sc = c.mutable_linux()->mutable_security_context();
  sc->add_masked_paths("/proc/x");
  sc->add_readonly_paths("/proc/y");
  sc->set_no_new_privs(true);
  spec = MustContainer(c);
  EXPECT_EQ(spec["linux"]["maskedPaths"], json({"/proc/x"}));
  EXPECT_EQ(spec["linux"]["readonlyPaths"], json({"/proc/y"}));
  EXPECT_EQ(spec["process"]["noNewPrivileges"], true);
}

// ----------------------------------------------------------------------------------------
// Annotations, sandbox, exec, stop signal

TEST(OciSpecTest, ContainerAnnotations) {
  runtime::v1::ContainerConfig c = Container();
  (*c.mutable_annotations())["io.kubernetes.container.hash"] = "abc";
  (*c.mutable_annotations())["io.kubernetes.cri.sandbox-id"] = "spoofed";
  json spec = MustContainer(c);
  EXPECT_EQ(spec["annotations"],
            json({{"io.kubernetes.container.hash", "abc"},
                  {"io.kubernetes.cri.container-type", "container"},
                  {"io.kubernetes.cri.sandbox-id", "sb1"},
                  {"io.kubernetes.cri.sandbox-name", "web-0"},
                  {"io.kubernetes.cri.sandbox-namespace", "prod"},
                  {"io.kubernetes.cri.sandbox-uid", "uid-123"},
                  {"io.kubernetes.cri.container-name", "app"},
                  {"io.kubernetes.cri.image-name", "docker.io/library/busybox:1.36"}}));
}

TEST(OciSpecTest, SandboxSpec) {
  SpecInputs in = Inputs();
  in.cgroups_path = "kubepods-besteffort-pod123.slice:berth:sb1";
  in.image_name = "registry.k8s.io/pause:3.9";
  in.shm_path = "/run/berth/sb1/shm";
  in.hosts_path = "/pod/hosts";  // not for the pause container
  in.oom_score_adj_min = 0;
  in.rlimits = {{"RLIMIT_NOFILE", 1048576, 1048576}};
  runtime::v1::PodSandboxConfig sb = Sandbox();
  (*sb.mutable_linux()->mutable_sysctls())["net.ipv4.ping_group_range"] = "0 2147483647";
  absl::StatusOr<json> spec =
      BuildSandboxSpec(sb, Image({{"Entrypoint", {"/pause"}}, {"User", "65535:65535"}}), in);
  ASSERT_TRUE(spec.ok()) << spec.status();
  const json& s = *spec;
  EXPECT_EQ(s["process"]["args"], json({"/pause"}));
  EXPECT_EQ(s["process"]["user"],
            json({{"uid", 65535}, {"gid", 65535}, {"additionalGids", {65535}}}));
  EXPECT_EQ(s["process"]["oomScoreAdj"], 0);
  EXPECT_EQ(s["process"]["noNewPrivileges"], true);
  EXPECT_EQ(s["process"]["terminal"], false);
  EXPECT_EQ(s["process"]["rlimits"],
            json::parse(R"([{"type":"RLIMIT_NOFILE","hard":1048576,"soft":1048576}])"));
  EXPECT_EQ(s["root"], json({{"path", "/nonexistent-rootfs"}, {"readonly", false}}));
  EXPECT_EQ(s["hostname"], "web-0");
  EXPECT_EQ(s["linux"]["cgroupsPath"], "kubepods-besteffort-pod123.slice:berth:sb1");
  EXPECT_EQ(s["linux"]["resources"]["cpu"], json({{"shares", 2}}));
  EXPECT_EQ(s["linux"]["sysctl"], json({{"net.ipv4.ping_group_range", "0 2147483647"}}));
  EXPECT_EQ(FindMount(s, "/etc/hosts"), nullptr);
  EXPECT_EQ((*FindMount(s, "/dev/shm"))["source"], "/run/berth/sb1/shm");
  EXPECT_EQ(s["annotations"],
            json({{"pod.note", "hello"},
                  {"io.kubernetes.cri.container-type", "sandbox"},
                  {"io.kubernetes.cri.sandbox-id", "sb1"},
                  {"io.kubernetes.cri.sandbox-name", "web-0"},
                  {"io.kubernetes.cri.sandbox-namespace", "prod"},
                  {"io.kubernetes.cri.sandbox-uid", "uid-123"},
                  {"io.kubernetes.cri.sandbox-log-directory", "/var/log/pods/prod_web-0_uid-123"},
                  {"io.kubernetes.cri.image-name", "registry.k8s.io/pause:3.9"}}));
  // Deterministic: the same input gives the same document.
  absl::StatusOr<json> again =
      BuildSandboxSpec(sb, Image({{"Entrypoint", {"/pause"}}, {"User", "65535:65535"}}), in);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->dump(), s.dump());
}

TEST(OciSpecTest, SandboxWithoutPauseCommandIsRejected) {
  absl::StatusOr<json> spec = BuildSandboxSpec(Sandbox(), Image(json::object()), Inputs());
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(spec.status().message().find("no command specified"), std::string::npos);
}

TEST(OciSpecTest, ExecProcess) {
  runtime::v1::ContainerConfig c = Container();
  c.set_tty(true);
  json spec = MustContainer(c);
  EXPECT_EQ(spec["process"]["terminal"], true);
  spec["process"]["consoleSize"] = {{"height", 10}, {"width", 10}};
  absl::StatusOr<json> p = BuildExecProcess(spec, {"ls", "-l"}, false);
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)["args"], json({"ls", "-l"}));
  EXPECT_EQ((*p)["terminal"], false);
  EXPECT_FALSE(p->contains("consoleSize"));
  EXPECT_EQ((*p)["user"], spec["process"]["user"]);
  EXPECT_EQ((*p)["env"], spec["process"]["env"]);
  EXPECT_EQ((*p)["capabilities"], spec["process"]["capabilities"]);
  EXPECT_EQ(BuildExecProcess(spec, {}, false).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(BuildExecProcess(json::object(), {"ls"}, false).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(OciSpecTest, StopSignal) {
  runtime::v1::ContainerConfig c = Container();
  auto sig = [&](const json& image) {
    absl::StatusOr<int> s = ResolveStopSignal(c, image);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *s : -1;
  };
  EXPECT_EQ(sig(BusyboxImage()), SIGTERM);
  EXPECT_EQ(sig(Image({{"StopSignal", "SIGQUIT"}})), SIGQUIT);
  EXPECT_EQ(sig(Image({{"StopSignal", "int"}})), SIGINT);
  EXPECT_EQ(sig(Image({{"StopSignal", "9"}})), 9);
  EXPECT_EQ(sig(Image({{"StopSignal", "SIGRTMIN+3"}})), 37);
  EXPECT_EQ(sig(Image({{"StopSignal", "RTMAX-1"}})), 63);
  EXPECT_FALSE(ResolveStopSignal(c, Image({{"StopSignal", "SIGNOPE"}})).ok());
  c.set_stop_signal(runtime::v1::SIGNAL_USR1);
  EXPECT_EQ(sig(Image({{"StopSignal", "SIGQUIT"}})), SIGUSR1);
  c.set_stop_signal(runtime::v1::SIGNAL_RTMINPLUS1);
  EXPECT_EQ(sig(BusyboxImage()), 35);
  c.set_stop_signal(runtime::v1::SIGNAL_RTMAX);
  EXPECT_EQ(sig(BusyboxImage()), 64);
}

// ----------------------------------------------------------------------------------------
// A generated spec, run by the real runc.

int RunShell(const std::string& command) {
  int rc = std::system(command.c_str());
  return rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

int ReadOomScoreAdj() {
  std::ifstream f("/proc/self/oom_score_adj");
  int v = 0;
  f >> v;
  return v;
}

// A busybox bundle under a temp dir, run in the foreground by runc with a private --root;
// the container is deleted and the directory removed whatever happens.
class RuncValidation : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (runc creates namespaces and mounts)";
    if (::access(kRunc, X_OK) != 0) GTEST_SKIP() << kRunc << " is not installed";
    ASSERT_FALSE(dir_.path().empty());
    std::string err = ::berth::testing::PopulateBusyboxRootfs(rootfs());
    if (!err.empty()) GTEST_SKIP() << err;
    WriteFile(rootfs() / "etc/passwd",
              "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n");
    WriteFile(rootfs() / "etc/group", "root:x:0:\napp:x:1000:\nstaff:x:50:app\n");
  }
  void TearDown() override {
    if (!id_.empty())
      RunShell(absl::StrCat(kRunc, " --root ", state(), " delete -f ", id_, " >/dev/null 2>&1"));
  }

  fs::path bundle() const { return dir_.path() / "bundle"; }
  fs::path rootfs() const { return bundle() / "rootfs"; }
  std::string state() const { return (dir_.path() / "runc-state").string(); }

  SpecInputs Inputs() const {
    SpecInputs in;
    in.sandbox_id = "sb-runc";
    in.container_id = "c-runc";
    in.rootfs_path = rootfs().string();
    in.spec_root_path = "rootfs";
    in.node_hostname = "node-1";
    in.oom_score_adj_min = ReadOomScoreAdj();  // no CAP_SYS_RESOURCE on CI hosts
    return in;
  }

  // Writes config.json and runs it; returns the exit code and the combined output.
  std::pair<int, std::string> Run(const json& spec) {
    { std::ofstream(bundle() / "config.json") << spec.dump(2); }
    id_ = absl::StrCat("berth-spec-", ::getpid(), "-", ++runs_);
    const std::string out = (dir_.path() / "out").string();
    int rc = RunShell(absl::StrCat("timeout 60 ", kRunc, " --root ", state(), " run --bundle ",
                                   bundle().string(), " ", id_, " </dev/null >", out, " 2>&1"));
    return {rc, ::berth::testing::ReadFile(out)};
  }

  static constexpr const char* kRunc = "/usr/sbin/runc";
  TempDir dir_{"cri-spec-runc"};
  std::string id_;
  int runs_ = 0;
};

TEST_F(RuncValidation, BusyboxContainerRuns) {
  WriteFile(dir_.path() / "volume/greeting", "hello from the host\n");
  WriteFile(dir_.path() / "pod/hosts", "127.0.0.1 localhost\n10.0.0.7 web-0\n");
  runtime::v1::PodSandboxConfig sb = Sandbox();
  sb.clear_hostname();
  sb.mutable_linux()->mutable_security_context()->mutable_namespace_options()->set_network(
      runtime::v1::NODE);
  runtime::v1::ContainerConfig c = Container();
  auto* sc = c.mutable_linux()->mutable_security_context();
  sc->mutable_namespace_options()->set_network(runtime::v1::NODE);
  sc->mutable_namespace_options()->set_pid(runtime::v1::CONTAINER);
  sc->set_run_as_username("app");
  sc->add_supplemental_groups(4000);
  sc->set_no_new_privs(true);
  sc->set_readonly_rootfs(true);
  c.add_args("-c");
  c.add_args(
      "echo \"$GREETING\"; id; cat /data/greeting; grep web-0 /etc/hosts; "
      "touch /data/x 2>/dev/null || echo ro-ok; touch /x 2>/dev/null || echo rootfs-ro-ok; "
      "echo pid=$$; exit 7");
  auto* kv = c.add_envs();
  kv->set_key("GREETING");
  kv->set_value("hi there");
  runtime::v1::Mount* m = c.add_mounts();
  m->set_container_path("/data");
  m->set_host_path((dir_.path() / "volume").string());
  m->set_readonly(true);
  c.mutable_linux()->mutable_resources()->set_oom_score_adj(100);
  SpecInputs in = Inputs();
  in.hosts_path = (dir_.path() / "pod/hosts").string();
  absl::StatusOr<json> spec =
      BuildContainerSpec(sb, c, Image({{"Entrypoint", {"/bin/sh"}}, {"Env", {"PATH=/bin"}}}), in);
  ASSERT_TRUE(spec.ok()) << spec.status();

  auto [rc, output] = Run(*spec);
  EXPECT_EQ(rc, 7) << output << "\nconfig.json:\n" << spec->dump(2);
  EXPECT_NE(output.find("hi there\n"), std::string::npos) << output;
  // The kernel keeps supplementary groups sorted.
  EXPECT_NE(output.find("uid=1000(app) gid=1000(app) groups=50(staff),1000(app),4000\n"),
            std::string::npos)
      << output;
  EXPECT_NE(output.find("hello from the host\n"), std::string::npos) << output;
  EXPECT_NE(output.find("10.0.0.7 web-0\n"), std::string::npos) << output;
  EXPECT_NE(output.find("ro-ok\n"), std::string::npos) << output;
  EXPECT_NE(output.find("rootfs-ro-ok\n"), std::string::npos) << output;
  EXPECT_NE(output.find("pid=1\n"), std::string::npos) << output;
}

TEST_F(RuncValidation, SandboxSpecRuns) {
  runtime::v1::PodSandboxConfig sb = Sandbox();
  (*sb.mutable_linux()->mutable_sysctls())["net.ipv4.ping_group_range"] = "0 2147483647";
  (*sb.mutable_linux()->mutable_sysctls())["kernel.shmmni"] = "1000";
  // The "pause image": a shell that reports what the pod namespaces look like.
  json pause = Image({{"Entrypoint", {"/bin/sh", "-c"}},
                      {"Cmd",
                       {"hostname; cat /proc/sys/net/ipv4/ping_group_range "
                        "/proc/sys/kernel/shmmni; id -u; echo pid=$$; ls /sys/class/net"}},
                      {"User", "65534:65534"}});
  absl::StatusOr<json> spec = BuildSandboxSpec(sb, pause, Inputs());
  ASSERT_TRUE(spec.ok()) << spec.status();
  auto [rc, output] = Run(*spec);
  EXPECT_EQ(rc, 0) << output << "\nconfig.json:\n" << spec->dump(2);
  EXPECT_EQ(output, "web-0\n0\t2147483647\n1000\n65534\npid=1\nlo\n");
}

}  // namespace
}  // namespace berth::cri
