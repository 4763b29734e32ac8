// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/netns.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <filesystem>
#include <mutex>
#include <string_view>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "berth/mount.hpp"
#include "berth/unique_fd.hpp"

namespace berth::cri {
namespace {

// The SDK's ErrnoToStatus (the one plugins share) as an absl::Status: the codes are the same
// google.rpc values.
absl::Status Errno(int err, std::string_view what) {
  sdk::Status s = sdk::ErrnoToStatus(err, what);
  return absl::Status(static_cast<absl::StatusCode>(s.code()), s.message());
}

// Sandbox ids are hex strings; anything that could leave the pin directory is refused.
absl::Status ValidatePinName(const std::string& id) {
  if (id.empty() || id == "." || id == ".." || id.size() > 255 ||
      id.find_first_of("/\0", 0, 2) != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("network namespace of sandbox \"", id,
                     "\": the sandbox id is not a plain file name (1-255 bytes, no '/')"));
  }
  return absl::OkStatus();
}

// Sets IFF_UP on `lo` of the calling thread's network namespace. The socket only carries the
// ioctl; it belongs to the namespace current when it is created.
absl::Status BringLoopbackUp() {
  sdk::UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock.valid() && errno == EAFNOSUPPORT) {  // a kernel without IPv4
    sock.Reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  }
  if (!sock.valid()) return Errno(errno, "socket for bringing up lo in a new network namespace");
  ifreq req{};
  std::strncpy(req.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(sock.get(), SIOCGIFFLAGS, &req) != 0) {
    return Errno(errno, "read the flags of lo in a new network namespace (SIOCGIFFLAGS)");
  }
  if ((req.ifr_flags & IFF_UP) != 0) return absl::OkStatus();
  req.ifr_flags = static_cast<short>(req.ifr_flags | IFF_UP);
  if (::ioctl(sock.get(), SIOCSIFFLAGS, &req) != 0) {
    return Errno(errno, "bring lo up in a new network namespace (SIOCSIFFLAGS)");
  }
  return absl::OkStatus();
}

// Runs on its own thread: the thread moves to a new network namespace, pins it and exits.
// It never goes back, so nothing else can run in the pod's namespace by mistake.
absl::Status CreateAndPinOnThisThread(const std::string& pin) {
  if (::unshare(CLONE_NEWNET) != 0) {
    return Errno(errno,
                 absl::StrCat("unshare(CLONE_NEWNET) for ", pin, " (berthd needs CAP_SYS_ADMIN)"));
  }
  if (absl::Status s = BringLoopbackUp(); !s.ok()) return s;
  const std::string source = absl::StrCat("/proc/self/task/", ::gettid(), "/ns/net");
  if (::mount(source.c_str(), pin.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    return Errno(errno, absl::StrCat("bind mount of ", source, " on the pin ", pin));
  }
  return absl::OkStatus();
}

// Creates the empty file a namespace is bind-mounted on. A leftover that pins nothing (a
// crash between creating it and mounting) is replaced once.
absl::Status CreatePinFile(const std::string& pin) {
  for (int attempt = 0;; ++attempt) {
    sdk::UniqueFd fd(
        ::open(pin.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444));
    if (fd.valid()) return absl::OkStatus();
    int err = errno;
    if (err != EEXIST || attempt > 0) return Errno(err, "create the network namespace pin " + pin);
    if (Netns::IsPinned(pin)) {
      return absl::AlreadyExistsError(absl::StrCat(
          "network namespace pin ", pin,
          " already holds a namespace: is a sandbox with this id still set up? (remove it "
          "with StopPodSandbox first)"));
    }
    if (::unlink(pin.c_str()) != 0 && errno != ENOENT) {
      return Errno(errno, "remove the stale network namespace pin " + pin);
    }
  }
}

// Runs on its own thread: joins the namespace, connects, and the thread exits.
absl::StatusOr<sdk::UniqueFd> DialOnThisThread(const std::string& netns_path, int port, bool ipv6,
                                               int timeout_ms) {
  sdk::UniqueFd ns(::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns.valid()) return Errno(errno, "open the network namespace " + netns_path);
  if (::setns(ns.get(), CLONE_NEWNET) != 0) {
    return Errno(errno, "enter the network namespace " + netns_path);
  }
  sdk::UniqueFd sock(
      ::socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!sock.valid()) return Errno(errno, "socket in " + netns_path);
  sockaddr_storage addr{};
  socklen_t len = 0;
  if (ipv6) {
    auto* a6 = reinterpret_cast<sockaddr_in6*>(&addr);
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(static_cast<uint16_t>(port));
    a6->sin6_addr = in6addr_loopback;
    len = sizeof(*a6);
  } else {
    auto* a4 = reinterpret_cast<sockaddr_in*>(&addr);
    a4->sin_family = AF_INET;
    a4->sin_port = htons(static_cast<uint16_t>(port));
    a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(*a4);
  }
  const std::string where =
      absl::StrCat(ipv6 ? "[::1]:" : "127.0.0.1:", port, " in the pod network namespace ",
                   netns_path);
  if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    if (errno != EINPROGRESS) {
      absl::Status s = Errno(errno, "connect to " + where);
      return errno == ECONNREFUSED ? absl::UnavailableError(s.message()) : s;
    }
    pollfd pfd{sock.get(), POLLOUT, 0};
    int ready = ::poll(&pfd, 1, timeout_ms);
    if (ready == 0) return absl::DeadlineExceededError("connect to " + where + ": timed out");
    if (ready < 0) return Errno(errno, "poll while connecting to " + where);
    int err = 0;
    socklen_t err_len = sizeof(err);
    ::getsockopt(sock.get(), SOL_SOCKET, SO_ERROR, &err, &err_len);
    if (err != 0) {
      absl::Status s = Errno(err, "connect to " + where);
      return err == ECONNREFUSED ? absl::UnavailableError(s.message()) : s;
    }
  }
  // Blocking again for its user.
  int flags = ::fcntl(sock.get(), F_GETFL);
  if (flags >= 0) ::fcntl(sock.get(), F_SETFL, flags & ~O_NONBLOCK);
  return sock;
}

}  // namespace

absl::StatusOr<sdk::UniqueFd> DialInNetns(const std::string& netns_path, int port, bool ipv6,
                                          int timeout_ms) {
  if (port <= 0 || port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat("port ", port, " is out of range (1-65535)"));
  }
  if (netns_path.empty() || netns_path[0] != '/') {
    return absl::InvalidArgumentError("network namespace path \"" + netns_path +
                                      "\" is not absolute");
  }
  absl::StatusOr<sdk::UniqueFd> result = absl::InternalError("dial thread did not run");
  std::thread t([&] { result = DialOnThisThread(netns_path, port, ipv6, timeout_ms); });
  t.join();
  return result;
}

// Why the pin directory is a self bind mount, made private and then shared:
//  - Shared: the mount namespaces created after a pin directory is set up (runc's for each
//    container, a shim's, a CNI plugin's) hold copies of it. With shared propagation those
//    copies are peers or slaves of ours, so a pin made later shows up in them, and, more
//    important, the umount in Netns::Remove propagates to them: no stray copy keeps the
//    namespace (and its veth, IPs and conntrack state) alive after the pod is gone. With
//    private propagation each such copy would pin the namespace until its owner exits.
//  - Private first: a bind of a directory of a shared mount (/ on systemd hosts) joins that
//    mount's peer group, and every pin would then also be mounted in every namespace that
//    peers with / (the host's, when berthd runs in a mount namespace of its own; any daemon's
//    that copied it). Making the bind private leaves that group; making it shared again starts
//    a peer group of its own, whose members are exactly the copies made from it later.
//    (The self bind itself still propagates to /'s peers once, as an empty directory.)
//  - A directory that is a mount point already (an operator's tmpfs, or our own bind after a
//    restart) is only made shared: its existing setup is the operator's choice.
// containerd and the CNI library do the same with /run/netns (bind onto itself when it is not
// a mount point, then shared); they skip the private step and so share with /'s peer group.
absl::Status PrepareNetnsPinDir(const std::string& dir) {
  static std::mutex mu;  // two sandboxes starting at once must not stack two binds
  std::lock_guard<std::mutex> lock(mu);
  if (dir.empty() || dir[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("network namespace pin directory \"", dir, "\" is not an absolute path"));
  }
  std::error_code ec;
  bool created = std::filesystem::create_directories(dir, ec);
  if (ec) {
    return Errno(ec.value(), "create the network namespace pin directory " + dir);
  }
  if (created) ::chmod(dir.c_str(), 0711);  // an existing directory keeps its owner's mode
  if (::mount(nullptr, dir.c_str(), nullptr, MS_SHARED, nullptr) == 0) return absl::OkStatus();
  if (errno != EINVAL) {
    return Errno(errno, "make the network namespace pin directory " + dir + " shared");
  }
  // EINVAL: not a mount point yet.
  if (::mount(dir.c_str(), dir.c_str(), nullptr, MS_BIND, nullptr) != 0) {
    return Errno(errno, "bind mount the network namespace pin directory " + dir + " on itself");
  }
  for (unsigned long propagation : {MS_PRIVATE, MS_SHARED}) {
    if (::mount(nullptr, dir.c_str(), nullptr, propagation, nullptr) != 0) {
      absl::Status s =
          Errno(errno, absl::StrCat("make the network namespace pin directory ", dir,
                                    propagation == MS_PRIVATE ? " private" : " shared"));
      ::umount2(dir.c_str(), MNT_DETACH);
      return s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Netns> Netns::Create(const std::string& dir, const std::string& sandbox_id) {
  if (absl::Status s = ValidatePinName(sandbox_id); !s.ok()) return s;
  if (absl::Status s = PrepareNetnsPinDir(dir); !s.ok()) return s;
  std::string pin = absl::StrCat(dir, "/", sandbox_id);
  if (absl::Status s = CreatePinFile(pin); !s.ok()) return s;
  absl::Status result;
  try {
    std::thread worker([&pin, &result] { result = CreateAndPinOnThisThread(pin); });
    worker.join();
  } catch (const std::exception& e) {
    result = absl::ResourceExhaustedError(
        absl::StrCat("network namespace of sandbox ", sandbox_id,
                     ": cannot start the thread that creates it: ", e.what()));
  }
  if (!result.ok()) {
    ::unlink(pin.c_str());  // nothing is mounted on it: every failure comes before the mount
    return absl::Status(result.code(), absl::StrCat("network namespace of sandbox ", sandbox_id,
                                                    ": ", result.message()));
  }
  return Netns(std::move(pin));
}

absl::Status Netns::Remove(const std::string& path) {
  if (path.empty()) return absl::OkStatus();
  constexpr int kMaxStacked = 64;
  int unmounted = 0;
  for (; unmounted < kMaxStacked; ++unmounted) {
    if (::umount2(path.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0) continue;
    int err = errno;
    if (err == ENOENT) return absl::OkStatus();
    if (err == EINVAL) break;  // not (or no longer) a mount point
    return Errno(err, "unmount the network namespace pin " + path);
  }
  if (unmounted == kMaxStacked && IsPinned(path)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "network namespace pin ", path, " is still mounted after ", kMaxStacked, " unmounts"));
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return Errno(errno, "remove the network namespace pin " + path);
  }
  return absl::OkStatus();
}

bool Netns::IsPinned(const std::string& path) {
  struct statfs st {};
  if (::statfs(path.c_str(), &st) != 0) return false;
  return static_cast<unsigned long>(st.f_type) == NSFS_MAGIC;
}

Netns::Netns(Netns&& other) noexcept : path_(std::exchange(other.path_, std::string())) {}

Netns& Netns::operator=(Netns&& other) noexcept {
  if (this != &other) {
    if (!path_.empty()) (void)Remove(path_);
    path_ = std::exchange(other.path_, std::string());
  }
  return *this;
}

Netns::~Netns() {
  if (!path_.empty()) (void)Remove(path_);
}

std::string Netns::Release() { return std::exchange(path_, std::string()); }

}  // namespace berth::cri
