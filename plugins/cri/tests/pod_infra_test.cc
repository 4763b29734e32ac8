// SPDX-License-Identifier: Apache-2.0
// Pod infrastructure: pure tests (hostname, hosts, resolv.conf, log paths, oom clamp, atomic
// writes, request validation) and, in the Root* suites, the real thing: pinned network
// namespaces, the shm tmpfs, setup rollback and teardown. Root tests work in a private bind
// mount of their own temporary directory, detached at the end whatever happened, so nothing
// they mount can outlive them or propagate anywhere; they never touch /run/netns.
#include "plugins/cri/pod_infra.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "plugins/cri/netns.h"
#include "tests/support/test_support.h"

namespace berth::cri {
namespace {

using ::berth::testing::ReadFile;
using ::berth::testing::TempDir;
using ::berth::testing::WriteFile;
using runtime::v1::DNSConfig;
using runtime::v1::PodSandboxConfig;

// --- Hostname and hosts ----------------------------------------------------------------------

TEST(PodHostname, TakesTheConfigsHostname) {
  PodSandboxConfig c;
  c.set_hostname("web-0");
  EXPECT_EQ(*PodHostname(c, "node-a"), "web-0");
}

TEST(PodHostname, FallsBackToTheNodesHostname) {
  PodSandboxConfig c;
  EXPECT_EQ(*PodHostname(c, "node-a"), "node-a");
  absl::StatusOr<std::string> own = PodHostname(c, "");  // gethostname(2)
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_FALSE(own->empty());
}

TEST(PodHostname, RefusesHostnamesThatBreakFilesOrTheKernel) {
  for (const std::string& bad :
       std::vector<std::string>{"with space", "a\nb", "a#b", "a/b", std::string(65, 'a')}) {
    PodSandboxConfig c;
    c.set_hostname(bad);
    absl::StatusOr<std::string> h = PodHostname(c, "node");
    ASSERT_FALSE(h.ok()) << bad;
    EXPECT_EQ(h.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_TRUE(absl::StartsWith(h.status().message(), "hostname \"")) << h.status();
  }
  PodSandboxConfig c;
  c.set_hostname(std::string(64, 'a'));
  EXPECT_TRUE(PodHostname(c, "node").ok());
}

TEST(RenderHosts, LocalhostLinesAndTheHostnameOnLoopbackBeforeCni) {
  std::string h = RenderHosts("web-0");
  EXPECT_TRUE(absl::StartsWith(h,
                               "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost "
                               "ip6-loopback\n"))
      << h;
  EXPECT_TRUE(absl::EndsWith(h, "127.0.0.1\tweb-0\n::1\tweb-0\n")) << h;
}

TEST(RenderHosts, TheHostnameOnEachPodIp) {
  std::string h = RenderHosts("web-0", {"10.0.0.5", "fd00::5"});
  EXPECT_TRUE(absl::EndsWith(h, "ip6-allrouters\n10.0.0.5\tweb-0\nfd00::5\tweb-0\n")) << h;
  EXPECT_FALSE(absl::StrContains(h, "127.0.0.1\tweb-0"));
}

// --- resolv.conf -----------------------------------------------------------------------------

DNSConfig Dns(const std::vector<std::string>& servers,
              const std::vector<std::string>& searches = {},
              const std::vector<std::string>& options = {}) {
  DNSConfig d;
  for (const auto& s : servers) d.add_servers(s);
  for (const auto& s : searches) d.add_searches(s);
  for (const auto& s : options) d.add_options(s);
  return d;
}

TEST(ResolvConf, RendersSearchNameserversAndOptions) {
  absl::StatusOr<std::string> r =
      RenderResolvConf(Dns({"10.96.0.10", "fd00::a"}, {"ns.svc.cluster.local", "svc.cluster.local"},
                           {"ndots:5", "edns0"}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(*r,
            "search ns.svc.cluster.local svc.cluster.local\n"
            "nameserver 10.96.0.10\n"
            "nameserver fd00::a\n"
            "options ndots:5 edns0\n");
  EXPECT_EQ(*RenderResolvConf(Dns({"1.1.1.1"})), "nameserver 1.1.1.1\n");
}

TEST(ResolvConf, EmptyConfigMeansTheHostsFile) {
  EXPECT_FALSE(HasDnsConfig(DNSConfig()));
  EXPECT_TRUE(HasDnsConfig(Dns({}, {"a"})));
  EXPECT_TRUE(HasDnsConfig(Dns({}, {}, {"ndots:1"})));
}

struct DnsCase {
  const char* name;
  DNSConfig dns;
  const char* field;  // expected at the start of the message; nullptr = valid
};

TEST(ResolvConf, ValidationTable) {
  std::vector<std::string> many_servers(33, "10.0.0.1");
  std::vector<std::string> many_searches(33, "a.b");
  std::vector<std::string> long_searches(9, std::string(250, 'x'));  // > 2048 bytes in all
  std::vector<std::string> many_options(33, "rotate");
  const DnsCase cases[] = {
      {"ipv4", Dns({"10.0.0.1"}), nullptr},
      {"ipv6", Dns({"2001:db8::1"}), nullptr},
      {"ipv6 zone", Dns({"fe80::1%eth0"}), nullptr},
      {"four servers (lenient)", Dns({"1.1.1.1", "1.0.0.1", "8.8.8.8", "8.8.4.4"}), nullptr},
      {"32 searches", Dns({}, std::vector<std::string>(32, "a.b")), nullptr},
      {"root search", Dns({}, {"."}), nullptr},
      {"hostname server", Dns({"10.0.0.1", "dns.example"}), "dns_config.servers[1] \"dns"},
      {"cidr server", Dns({"10.0.0.0/8"}), "dns_config.servers[0]"},
      {"ipv4 zone", Dns({"10.0.0.1%eth0"}), "dns_config.servers[0]"},
      {"empty zone", Dns({"fe80::1%"}), "dns_config.servers[0]"},
      {"empty server", Dns({""}), "dns_config.servers[0] \"\": is empty"},
      {"injected line", Dns({"10.0.0.1\nnameserver 6.6.6.6"}), "dns_config.servers[0]"},
      {"33 servers", Dns(many_servers), "dns_config.servers: 33 servers"},
      {"search with space", Dns({}, {"a b"}), "dns_config.searches[0]"},
      {"search newline", Dns({}, {"ok", "x\noptions debug"}), "dns_config.searches[1]"},
      {"search too long", Dns({}, {std::string(254, 'x')}), "dns_config.searches[0]"},
      {"33 searches", Dns({}, many_searches), "dns_config.searches: 33"},
      {"searches > 2048", Dns({}, long_searches), "dns_config.searches: 2258 bytes"},
      {"empty option", Dns({}, {}, {""}), "dns_config.options[0]"},
      {"comment option", Dns({}, {}, {"ndots:1#x"}), "dns_config.options[0]"},
      {"option too long", Dns({}, {}, {std::string(257, 'o')}), "dns_config.options[0]"},
      {"33 options", Dns({}, {}, many_options), "dns_config.options: 33"},
  };
  for (const DnsCase& c : cases) {
    absl::Status s = ValidateDnsConfig(c.dns);
    if (c.field == nullptr) {
      EXPECT_TRUE(s.ok()) << c.name << ": " << s;
      continue;
    }
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.name << ": " << s;
    EXPECT_TRUE(absl::StartsWith(s.message(), c.field)) << c.name << ": " << s;
    EXPECT_FALSE(RenderResolvConf(c.dns).ok()) << c.name;
  }
}

// --- Log paths -------------------------------------------------------------------------------

TEST(LogDirectory, ValidationTable) {
  struct Case {
    std::string dir;
    bool ok;
  } cases[] = {
      {"", true},
      {"/var/log/pods/ns_name_uid", true},
      {"/var/log/pods/ns_name_uid/", true},
      {"//var//log", true},
      {"var/log/pods", false},
      {"/", false},
      {"//", false},
      {"/./.", false},
      {"/var/log/../../etc", false},
      {"/var/log/..", false},
      {std::string("/var/lo\0g", 9), false},
  };
  for (const Case& c : cases) {
    absl::Status s = ValidateLogDirectory(c.dir);
    EXPECT_EQ(s.ok(), c.ok) << c.dir << ": " << s;
    if (!c.ok) {
      EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
      EXPECT_TRUE(absl::StartsWith(s.message(), "log_directory \"")) << s;
    }
  }
}

TEST(ContainerLogPath, ValidationTable) {
  const std::string dir = "/var/log/pods/ns_web_uid";
  struct Case {
    std::string path;
    std::string want;  // "" with ok=false: refused
    bool ok;
  } cases[] = {
      {"web/0.log", dir + "/web/0.log", true},
      {"./web//0.log", dir + "/web/0.log", true},
      {"0.log", dir + "/0.log", true},
      {"", "", true},  // no log file
      {"/var/log/pods/ns_web_uid/web/0.log", "", false},
      {"../other/0.log", "", false},
      {"web/../../0.log", "", false},
      {"web/..", "", false},
      {"..", "", false},
      {".", "", false},
      {"web/", "", false},
      {"a\nb", "", false},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::string> p = ValidateContainerLogPath(dir, c.path);
    ASSERT_EQ(p.ok(), c.ok) << c.path << ": " << p.status();
    if (c.ok) {
      EXPECT_EQ(*p, c.want) << c.path;
    } else {
      EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_TRUE(absl::StartsWith(p.status().message(), "log_path \"")) << p.status();
    }
  }
  EXPECT_EQ(*ValidateContainerLogPath("/var/log/pods/x/", "c/0.log"), "/var/log/pods/x/c/0.log");
  EXPECT_EQ(*ValidateContainerLogPath("", "c/0.log"), "");  // no directory: no log file
  EXPECT_FALSE(ValidateContainerLogPath("", "/abs").ok());
  EXPECT_FALSE(ValidateContainerLogPath("relative", "c/0.log").ok());
}

// --- oom_score_adj ---------------------------------------------------------------------------

TEST(OomScoreAdj, ClampTable) {
  struct Case {
    int requested, current;
    bool cap;
    int want;
  } cases[] = {
      {-998, 0, true, -998},      {-998, 0, false, 0},       {-1000, -500, false, -500},
      {-2000, 0, true, -1000},    {500, 0, false, 500},      {2000, 0, true, 1000},
      {100, 300, false, 300},     {-999, -999, false, -999}, {0, -1000, false, 0},
      {-998, -2000, false, -998},  // a bogus current value is clamped to the range first
  };
  for (const Case& c : cases) {
    EXPECT_EQ(ClampOomScoreAdj(c.requested, c.current, c.cap), c.want)
        << c.requested << " current " << c.current << " cap " << c.cap;
  }
}

TEST(OomScoreAdj, ReadsCapEff) {
  EXPECT_TRUE(CapEffHasSysResource("Name:\tx\nCapInh:\t0\nCapEff:\t000001ffffffffff\n"));
  EXPECT_TRUE(CapEffHasSysResource("CapEff:\t0000000001000000\n"));
  EXPECT_FALSE(CapEffHasSysResource("CapEff:\t0000000000ffffff\n"));
  EXPECT_FALSE(CapEffHasSysResource("CapPrm:\t000001ffffffffff\nCapEff:\t0000000000000000\n"));
  EXPECT_FALSE(CapEffHasSysResource("no caps here"));
}

TEST(OomScoreAdj, OwnProcessIsWithinTheRange) {
  int lowest = OomScoreAdjMin();
  EXPECT_GE(lowest, -1000);
  EXPECT_LE(lowest, 1000);
  EXPECT_EQ(ClampOomScoreAdj(-1000), lowest);
  EXPECT_EQ(ClampOomScoreAdj(5000), 1000);
}

// --- Files and validation without root -------------------------------------------------------

TEST(WriteFileAtomic, WritesWithTheModeAndLeavesNoTemporaryFile) {
  TempDir tmp("pod-infra");
  ASSERT_FALSE(tmp.path().empty());
  const std::string f = tmp.File("hosts");
  ASSERT_TRUE(WriteFileAtomic(f, "old\n").ok());
  ASSERT_TRUE(WriteFileAtomic(f, "new\n").ok());
  EXPECT_EQ(ReadFile(f), "new\n");
  struct stat st {};
  ASSERT_EQ(::stat(f.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(tmp.path())) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
  absl::Status s = WriteFileAtomic(tmp.File("missing/dir/x"), "x");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound) << s;
}

TEST(SetUpPodInfraValidation, RefusesBadRequestsBeforeMakingAnything) {
  TempDir tmp("pod-infra");
  ASSERT_FALSE(tmp.path().empty());
  PodInfraOptions o;
  o.sandbox_id = "abc";
  o.state_dir = tmp.str();
  struct Case {
    const char* name;
    PodSandboxConfig config;
    const char* prefix;
  };
  std::vector<Case> cases;
  {
    PodSandboxConfig c;
    c.mutable_dns_config()->add_servers("not-an-ip");
    cases.push_back({"bad dns", c, "dns_config.servers[0]"});
  }
  {
    PodSandboxConfig c;
    c.set_log_directory("relative/logs");
    cases.push_back({"bad log dir", c, "log_directory"});
  }
  {
    PodSandboxConfig c;
    c.set_hostname("bad host");
    cases.push_back({"bad hostname", c, "hostname"});
  }
  for (const Case& c : cases) {
    absl::StatusOr<PodInfra> infra = SetUpPodInfra(c.config, o);
    ASSERT_FALSE(infra.ok()) << c.name;
    EXPECT_EQ(infra.status().code(), absl::StatusCode::kInvalidArgument) << infra.status();
    EXPECT_TRUE(absl::StartsWith(infra.status().message(), c.prefix)) << infra.status();
  }
  EXPECT_TRUE(std::filesystem::is_empty(tmp.path()));
  for (const char* bad_id : {"", "..", "a/b"}) {
    o.sandbox_id = bad_id;
    EXPECT_EQ(SetUpPodInfra(PodSandboxConfig(), o).status().code(),
              absl::StatusCode::kInvalidArgument)
        << bad_id;
    EXPECT_EQ(TearDownPodInfra(o).code(), absl::StatusCode::kInvalidArgument) << bad_id;
  }
  o.sandbox_id = "abc";
  o.state_dir = "relative";
  EXPECT_EQ(SetUpPodInfra(PodSandboxConfig(), o).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(TearDownPodInfra, NothingThereIsFine) {
  TempDir tmp("pod-infra");
  PodInfraOptions o;
  o.sandbox_id = "never-set-up";
  o.state_dir = tmp.str();
  EXPECT_TRUE(TearDownPodInfra(o).ok());
  EXPECT_TRUE(Netns::Remove(tmp.File("absent")).ok());
  EXPECT_FALSE(Netns::IsPinned(tmp.File("absent")));
}

// --- Root: namespaces and mounts -------------------------------------------------------------

ino_t NsInode(const char* path) {
  struct stat st {};
  return ::stat(path, &st) == 0 ? st.st_ino : 0;
}

// What a thread that joined the pinned namespace sees.
struct NsProbe {
  std::string error;
  ino_t ns_inode = 0;
  short lo_flags = 0;
};

NsProbe ProbeNetns(const std::string& pin) {
  NsProbe p;
  std::thread t([&] {
    int fd = ::open(pin.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      p.error = "open " + pin;
      return;
    }
    // This thread ends in the pod's namespace and exits: the test thread never moves.
    int rc = ::setns(fd, CLONE_NEWNET);
    ::close(fd);
    if (rc != 0) {
      p.error = "setns";
      return;
    }
    p.ns_inode = NsInode("/proc/thread-self/ns/net");
    int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ifreq req{};
    std::strncpy(req.ifr_name, "lo", IFNAMSIZ - 1);
    if (s < 0 || ::ioctl(s, SIOCGIFFLAGS, &req) != 0) {
      p.error = "SIOCGIFFLAGS";
    } else {
      p.lo_flags = req.ifr_flags;
    }
    if (s >= 0) ::close(s);
  });
  t.join();
  return p;
}

// The mountinfo line of a mount point, "" if not mounted.
std::string MountinfoLine(const std::string& mount_point) {
  std::string info = ReadFile("/proc/self/mountinfo");
  for (absl::string_view line : absl::StrSplit(info, '\n')) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
    if (f.size() > 4 && f[4] == mount_point) return std::string(line);
  }
  return "";
}

class RootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: mount(2), unshare(CLONE_NEWNET)";
    ASSERT_FALSE(tmp_.path().empty());
    // realpath: mountinfo shows resolved paths.
    root_ = std::filesystem::canonical(tmp_.path()).string();
    // A private bind of our own directory: nothing mounted below propagates anywhere, and one
    // detach at the end takes everything below with it, whatever the test left.
    ASSERT_EQ(::mount(root_.c_str(), root_.c_str(), nullptr, MS_BIND, nullptr), 0);
    bound_ = true;
    ASSERT_EQ(::mount(nullptr, root_.c_str(), nullptr, MS_PRIVATE, nullptr), 0);
    own_netns_ = NsInode("/proc/self/ns/net");
    own_thread_netns_ = NsInode("/proc/thread-self/ns/net");
    ASSERT_NE(own_netns_, 0u);
  }

  void TearDown() override {
    if (own_netns_ != 0) {
      EXPECT_EQ(NsInode("/proc/self/ns/net"), own_netns_) << "the test process changed netns";
      EXPECT_EQ(NsInode("/proc/thread-self/ns/net"), own_thread_netns_);
    }
    if (bound_) {
      EXPECT_EQ(::umount2(root_.c_str(), MNT_DETACH), 0);
      absl::StatusOr<std::vector<std::string>> left = MountPointsUnder(root_);
      ASSERT_TRUE(left.ok()) << left.status();
      EXPECT_TRUE(left->empty()) << "still mounted: " << absl::StrJoin(*left, ", ");
    }
    // tmp_ is removed after this, with nothing mounted below it any more.
  }

  // Mounts below root_ other than `allowed` (the pin directory's own bind).
  std::vector<std::string> MountsBelow(const std::vector<std::string>& allowed = {}) {
    std::vector<std::string> out;
    absl::StatusOr<std::vector<std::string>> all = MountPointsUnder(root_);
    EXPECT_TRUE(all.ok()) << all.status();
    if (!all.ok()) return out;
    for (const std::string& m : *all) {
      if (m == root_ || std::find(allowed.begin(), allowed.end(), m) != allowed.end()) continue;
      out.push_back(m);
    }
    return out;
  }

  PodInfraOptions Options(const std::string& id) {
    PodInfraOptions o;
    o.sandbox_id = id;
    o.state_dir = root_ + "/state";
    o.node_hostname = "node-a";
    return o;
  }

  TempDir tmp_{"pod-infra-root"};
  std::string root_;
  bool bound_ = false;
  ino_t own_netns_ = 0, own_thread_netns_ = 0;
};

using RootNetns = RootTest;

TEST_F(RootNetns, CreatesAPinnedNamespaceWithLoopbackUp) {
  const std::string dir = root_ + "/netns";
  absl::StatusOr<Netns> ns = Netns::Create(dir, "sb1");
  ASSERT_TRUE(ns.ok()) << ns.status();
  EXPECT_EQ(ns->path(), dir + "/sb1");
  EXPECT_TRUE(Netns::IsPinned(ns->path()));
  EXPECT_FALSE(Netns::IsPinned(dir));
  // The pinned file is the namespace: nsfs, a different one than ours.
  struct statfs sf {};
  ASSERT_EQ(::statfs(ns->path().c_str(), &sf), 0);
  EXPECT_EQ(static_cast<unsigned long>(sf.f_type), NSFS_MAGIC);
  ino_t pinned = NsInode(ns->path().c_str());
  EXPECT_NE(pinned, own_netns_);

  NsProbe p = ProbeNetns(ns->path());
  ASSERT_TRUE(p.error.empty()) << p.error;
  EXPECT_EQ(p.ns_inode, pinned);
  EXPECT_TRUE(p.lo_flags & IFF_UP) << std::hex << p.lo_flags;
  EXPECT_TRUE(p.lo_flags & IFF_LOOPBACK);

  // The pin directory is its own shared mount (see PrepareNetnsPinDir).
  std::string dir_line = MountinfoLine(dir);
  EXPECT_TRUE(absl::StrContains(dir_line, " shared:")) << dir_line;
  EXPECT_TRUE(absl::StrContains(MountinfoLine(ns->path()), " - nsfs "));
}

TEST_F(RootNetns, PinSurvivesTheCreatorAndRemoveLeavesNothingMounted) {
  const std::string dir = root_ + "/netns";
  std::string path;
  {
    absl::StatusOr<Netns> ns = Netns::Create(dir, "sb2");
    ASSERT_TRUE(ns.ok()) << ns.status();
    path = ns->Release();
  }  // released: the destructor leaves it pinned
  ASSERT_TRUE(Netns::IsPinned(path));
  ino_t pinned = NsInode(path.c_str());
  // Still a live namespace, joinable after its creator thread is long gone.
  NsProbe p = ProbeNetns(path);
  ASSERT_TRUE(p.error.empty()) << p.error;
  EXPECT_EQ(p.ns_inode, pinned);
  EXPECT_TRUE(p.lo_flags & IFF_UP);

  ASSERT_TRUE(Netns::Remove(path).ok());
  EXPECT_FALSE(Netns::IsPinned(path));
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_TRUE(MountinfoLine(path).empty());
  EXPECT_EQ(MountsBelow({dir}), std::vector<std::string>{});
  EXPECT_TRUE(Netns::Remove(path).ok());  // idempotent
}

TEST_F(RootNetns, DialsIntoThePodNamespaceOnly) {
  const std::string dir = root_ + "/netns";
  absl::StatusOr<Netns> ns = Netns::Create(dir, "sb-dial");
  ASSERT_TRUE(ns.ok()) << ns.status();
  // A listener on the pod's loopback, made by a thread that entered the namespace.
  int port = 0;
  sdk::UniqueFd listener;
  std::thread([&] {
    sdk::UniqueFd nsfd(::open(ns->path().c_str(), O_RDONLY | O_CLOEXEC));
    if (!nsfd.valid() || ::setns(nsfd.get(), CLONE_NEWNET) != 0) return;
    sdk::UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
        ::listen(s.get(), 4) != 0 ||
        ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      return;
    }
    port = ntohs(a.sin_port);
    listener = std::move(s);
  }).join();
  ASSERT_GT(port, 0);
  absl::StatusOr<sdk::UniqueFd> conn = DialInNetns(ns->path(), port);
  ASSERT_TRUE(conn.ok()) << conn.status();
  sdk::UniqueFd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(accepted.valid());
  ASSERT_EQ(::write(conn->get(), "ping", 4), 4);
  char buf[8] = {};
  ASSERT_EQ(::read(accepted.get(), buf, sizeof(buf)), 4);
  EXPECT_EQ(std::string(buf, 4), "ping");
  // The host's loopback is another namespace: the same port there is not this listener.
  sdk::UniqueFd host_sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(host_sock.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0) {
    EXPECT_EQ(::accept4(listener.get(), nullptr, nullptr, SOCK_NONBLOCK), -1);
  }
  // Nothing listening: UNAVAILABLE; a missing namespace: an error naming it.
  listener.Reset();
  EXPECT_EQ(DialInNetns(ns->path(), port).status().code(), absl::StatusCode::kUnavailable);
  absl::StatusOr<sdk::UniqueFd> gone = DialInNetns(dir + "/nope", port);
  EXPECT_FALSE(gone.ok());
  EXPECT_TRUE(absl::StrContains(gone.status().message(), dir + "/nope"));
  EXPECT_EQ(DialInNetns(ns->path(), 0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(RootNetns, DestructorRemovesAndDuplicatesAreRefused) {
  const std::string dir = root_ + "/netns";
  {
    absl::StatusOr<Netns> ns = Netns::Create(dir, "sb3");
    ASSERT_TRUE(ns.ok()) << ns.status();
    absl::StatusOr<Netns> again = Netns::Create(dir, "sb3");
    EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists) << again.status();
    EXPECT_TRUE(Netns::IsPinned(ns->path()));  // the refused attempt did not harm it
    Netns moved = *std::move(ns);
    EXPECT_TRUE(Netns::IsPinned(moved.path()));
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/sb3"));
  EXPECT_EQ(MountsBelow({dir}), std::vector<std::string>{});

  // A stale file from a crash between creating and mounting is replaced.
  WriteFile(dir + "/sb4", "");
  absl::StatusOr<Netns> ns = Netns::Create(dir, "sb4");
  ASSERT_TRUE(ns.ok()) << ns.status();
  EXPECT_TRUE(Netns::IsPinned(ns->path()));
  EXPECT_EQ(Netns::Create(dir, "../x").status().code(), absl::StatusCode::kInvalidArgument);
}

using RootPodInfra = RootTest;

TEST_F(RootPodInfra, SetUpMakesEverythingAndTearDownRemovesIt) {
  PodSandboxConfig c;
  c.mutable_metadata()->set_name("web");
  c.set_hostname("web-0");
  c.set_log_directory(root_ + "/logs/ns_web_uid");
  *c.mutable_dns_config() = Dns({"10.96.0.10"}, {"svc.cluster.local"}, {"ndots:5"});
  PodInfraOptions o = Options("0123abcd");
  o.shm_size_bytes = 8 << 20;

  absl::StatusOr<PodInfra> infra = SetUpPodInfra(c, o);
  ASSERT_TRUE(infra.ok()) << infra.status();
  const std::string dir = root_ + "/state/sandboxes/0123abcd";
  EXPECT_EQ(infra->sandbox_dir, dir);
  EXPECT_EQ(infra->hostname, "web-0");
  EXPECT_EQ(ReadFile(infra->hostname_path), "web-0\n");
  EXPECT_EQ(ReadFile(infra->hosts_path), RenderHosts("web-0"));
  EXPECT_EQ(ReadFile(infra->resolv_conf_path),
            "search svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n");
  for (const std::string* f :
       {&infra->hostname_path, &infra->hosts_path, &infra->resolv_conf_path}) {
    struct stat st {};
    ASSERT_EQ(::stat(f->c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0644u) << *f;
  }
  // shm: a tmpfs of the asked size, 1777, nosuid,nodev,noexec.
  ASSERT_EQ(infra->shm_path, dir + "/shm");
  struct statfs sf {};
  ASSERT_EQ(::statfs(infra->shm_path.c_str(), &sf), 0);
  EXPECT_EQ(static_cast<unsigned long>(sf.f_type), TMPFS_MAGIC);
  EXPECT_EQ(static_cast<uint64_t>(sf.f_blocks) * sf.f_bsize, 8u << 20);
  struct statvfs sv {};
  ASSERT_EQ(::statvfs(infra->shm_path.c_str(), &sv), 0);
  EXPECT_TRUE(sv.f_flag & ST_NOSUID);
  EXPECT_TRUE(sv.f_flag & ST_NODEV);
  EXPECT_TRUE(sv.f_flag & ST_NOEXEC);
  struct stat st {};
  ASSERT_EQ(::stat(infra->shm_path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 01777u);
  // netns
  EXPECT_EQ(infra->net_ns_path, root_ + "/state/netns/0123abcd");
  EXPECT_TRUE(Netns::IsPinned(infra->net_ns_path));
  NsProbe p = ProbeNetns(infra->net_ns_path);
  ASSERT_TRUE(p.error.empty()) << p.error;
  EXPECT_TRUE(p.lo_flags & IFF_UP);
  // log directory
  ASSERT_TRUE(std::filesystem::is_directory(infra->log_directory));
  ASSERT_EQ(::stat(infra->log_directory.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);

  SpecInputs in;
  ApplyPodInfra(*infra, &in);
  EXPECT_EQ(in.net_ns_path, infra->net_ns_path);
  EXPECT_EQ(in.shm_path, infra->shm_path);
  EXPECT_EQ(in.resolv_conf_path, infra->resolv_conf_path);

  // A second setup of the same sandbox is refused and harms nothing.
  EXPECT_EQ(SetUpPodInfra(c, o).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(Netns::IsPinned(infra->net_ns_path));

  const std::string netns_dir = root_ + "/state/netns";
  ASSERT_TRUE(TearDownPodInfra(o).ok());
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_FALSE(std::filesystem::exists(infra->net_ns_path));
  EXPECT_EQ(MountsBelow({netns_dir}), std::vector<std::string>{});
  EXPECT_TRUE(std::filesystem::is_directory(infra->log_directory));  // the kubelet's
  EXPECT_TRUE(TearDownPodInfra(o).ok());                             // twice
  EXPECT_TRUE(StopPodInfra(o).ok());
}

TEST_F(RootPodInfra, HostNetworkAndIpcGetTheNodesFilesAndNoNamespaceOrShm) {
  const std::string host_hosts = root_ + "/etc-hosts";
  const std::string host_resolv = root_ + "/etc-resolv.conf";
  WriteFile(host_hosts, "127.0.0.1 localhost\n192.168.1.2 node-a\n");
  WriteFile(host_resolv, "nameserver 192.168.1.1\n");
  PodSandboxConfig c;
  auto* nso = c.mutable_linux()->mutable_security_context()->mutable_namespace_options();
  nso->set_network(runtime::v1::NODE);
  nso->set_ipc(runtime::v1::NODE);
  PodInfraOptions o = Options("hostnet");
  o.host_hosts_path = host_hosts;
  o.host_resolv_conf_path = host_resolv;

  absl::StatusOr<PodInfra> infra = SetUpPodInfra(c, o);
  ASSERT_TRUE(infra.ok()) << infra.status();
  EXPECT_TRUE(infra->net_ns_path.empty());
  EXPECT_TRUE(infra->shm_path.empty());
  EXPECT_TRUE(infra->log_directory.empty());
  EXPECT_EQ(ReadFile(infra->hostname_path), "node-a\n");
  EXPECT_EQ(ReadFile(infra->hosts_path), ReadFile(host_hosts));
  EXPECT_EQ(ReadFile(infra->resolv_conf_path), ReadFile(host_resolv));
  EXPECT_EQ(MountsBelow(), std::vector<std::string>{});
  EXPECT_TRUE(TearDownPodInfra(o).ok());
  EXPECT_FALSE(std::filesystem::exists(infra->sandbox_dir));
}

TEST_F(RootPodInfra, LaterFailureRollsBackEverything) {
  // The log directory is made last; a regular file in its way makes that step fail after the
  // files, the shm tmpfs and the netns exist.
  WriteFile(root_ + "/not-a-dir", "x");
  PodSandboxConfig c;
  c.set_hostname("web-0");
  c.set_log_directory(root_ + "/not-a-dir/logs");
  PodInfraOptions o = Options("rollback1");

  absl::StatusOr<PodInfra> infra = SetUpPodInfra(c, o);
  ASSERT_FALSE(infra.ok());
  EXPECT_TRUE(absl::StrContains(infra.status().message(), "not-a-dir")) << infra.status();
  EXPECT_FALSE(absl::StrContains(infra.status().message(), "undoing")) << infra.status();
  EXPECT_FALSE(std::filesystem::exists(root_ + "/state/sandboxes/rollback1"));
  EXPECT_FALSE(std::filesystem::exists(root_ + "/state/netns/rollback1"));
  EXPECT_EQ(MountsBelow({root_ + "/state/netns"}), std::vector<std::string>{});

  // A netns step that fails (its directory cannot be made) undoes shm and files.
  o = Options("rollback2");
  o.netns_dir = root_ + "/not-a-dir/netns";
  c.clear_log_directory();
  infra = SetUpPodInfra(c, o);
  ASSERT_FALSE(infra.ok());
  EXPECT_TRUE(absl::StrContains(infra.status().message(), "network namespace pin directory"))
      << infra.status();
  EXPECT_FALSE(std::filesystem::exists(root_ + "/state/sandboxes/rollback2"));
  EXPECT_EQ(MountsBelow({root_ + "/state/netns"}), std::vector<std::string>{});
}

TEST_F(RootPodInfra, TearDownNeverDeletesThroughAMount) {
  PodInfraOptions o = Options("busy");
  absl::StatusOr<PodInfra> infra = SetUpPodInfra(PodSandboxConfig(), o);
  ASSERT_TRUE(infra.ok()) << infra.status();
  // Something else mounted in the sandbox directory, with a file that must survive.
  const std::string extra = infra->sandbox_dir + "/extra";
  ASSERT_EQ(::mkdir(extra.c_str(), 0755), 0);
  ASSERT_EQ(::mount("tmpfs", extra.c_str(), "tmpfs", 0, "size=1m"), 0);
  WriteFile(extra + "/precious", "keep");

  absl::Status s = TearDownPodInfra(o);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_TRUE(absl::StrContains(s.message(), extra)) << s;
  EXPECT_EQ(ReadFile(extra + "/precious"), "keep");
  EXPECT_FALSE(Netns::IsPinned(infra->net_ns_path));  // the stop part went through

  ASSERT_EQ(::umount2(extra.c_str(), MNT_DETACH), 0);
  EXPECT_TRUE(TearDownPodInfra(o).ok());
  EXPECT_FALSE(std::filesystem::exists(infra->sandbox_dir));
}

}  // namespace
}  // namespace berth::cri
