// SPDX-License-Identifier: Apache-2.0
#include "plugins/runtime-runc/shim/cgroup_stats.h"

#include <unistd.h>

#include <nlohmann/json.hpp>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "plugins/runtime-runc/shim/util.h"

namespace berth::shim {
namespace {

constexpr const char* kCgroupRoot = "/sys/fs/cgroup";

bool UnifiedHost() { return ::access("/sys/fs/cgroup/cgroup.controllers", F_OK) == 0; }

// Protobuf wire format, just what the metrics need: varint fields, packed repeated varints
// and nested messages.
class ProtoWriter {
 public:
  void Uint64(int field, uint64_t v) {
    if (v == 0) return;  // proto3 default
    Varint((static_cast<uint64_t>(field) << 3) | 0);
    Varint(v);
  }
  void Packed(int field, const std::vector<uint64_t>& values) {
    if (values.empty()) return;
    ProtoWriter body;
    for (uint64_t v : values) body.Varint(v);
    Bytes(field, body.out_);
  }
  void Message(int field, const ProtoWriter& m) {
    if (!m.out_.empty()) Bytes(field, m.out_);
  }
  const std::string& data() const { return out_; }

 private:
  void Varint(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7f) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  void Bytes(int field, const std::string& b) {
    Varint((static_cast<uint64_t>(field) << 3) | 2);
    Varint(b.size());
    out_ += b;
  }
  std::string out_;
};

std::string ReadTrimmed(const std::string& path) {
  return std::string(absl::StripAsciiWhitespace(ReadWholeFile(path).value_or("")));
}

uint64_t ReadU64(const std::string& path) {
  uint64_t v = 0;
  std::string text = ReadTrimmed(path);
  if (text == "max") return 0;
  (void)absl::SimpleAtoi(text, &v);
  return v;
}

// "key value" lines (memory.stat, cpu.stat, memory.events, memory.oom_control).
std::map<std::string, uint64_t> ReadKeyed(const std::string& path) {
  std::map<std::string, uint64_t> out;
  const std::string text = ReadWholeFile(path).value_or("");
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> kv = absl::StrSplit(line, ' ', absl::SkipEmpty());
    uint64_t v = 0;
    if (kv.size() == 2 && absl::SimpleAtoi(kv[1], &v)) out[std::string(kv[0])] = v;
  }
  return out;
}

uint64_t Get(const std::map<std::string, uint64_t>& m, const char* key) {
  auto it = m.find(key);
  return it == m.end() ? 0 : it->second;
}

std::string V1(const CgroupPaths& p, const char* controller) {
  auto it = p.v1_dirs.find(controller);
  return it == p.v1_dirs.end() ? std::string() : it->second;
}

google::protobuf::Any V1Metrics(const CgroupPaths& p) {
  ProtoWriter metrics;
  if (std::string dir = V1(p, "pids"); !dir.empty()) {
    ProtoWriter pids;
    pids.Uint64(1, ReadU64(dir + "/pids.current"));
    pids.Uint64(2, ReadU64(dir + "/pids.max"));
    metrics.Message(2, pids);
  }
  if (std::string dir = V1(p, "cpuacct"); !dir.empty()) {
    ProtoWriter usage;
    usage.Uint64(1, ReadU64(dir + "/cpuacct.usage"));
    const auto stat = ReadKeyed(dir + "/cpuacct.stat");  // USER_HZ ticks
    const uint64_t ns_per_tick = 1'000'000'000ull / static_cast<uint64_t>(::sysconf(_SC_CLK_TCK));
    usage.Uint64(2, Get(stat, "system") * ns_per_tick);
    usage.Uint64(3, Get(stat, "user") * ns_per_tick);
    std::vector<uint64_t> per_cpu;
    for (absl::string_view v :
         absl::StrSplit(ReadTrimmed(dir + "/cpuacct.usage_percpu"), ' ', absl::SkipEmpty())) {
      uint64_t n = 0;
      if (absl::SimpleAtoi(v, &n)) per_cpu.push_back(n);
    }
    usage.Packed(4, per_cpu);
    ProtoWriter cpu;
    cpu.Message(1, usage);
    if (std::string cpu_dir = V1(p, "cpu"); !cpu_dir.empty()) {
      const auto throttle_stat = ReadKeyed(cpu_dir + "/cpu.stat");
      ProtoWriter throttle;
      throttle.Uint64(1, Get(throttle_stat, "nr_periods"));
      throttle.Uint64(2, Get(throttle_stat, "nr_throttled"));
      throttle.Uint64(3, Get(throttle_stat, "throttled_time"));
      cpu.Message(2, throttle);
    }
    metrics.Message(3, cpu);
  }
  if (std::string dir = V1(p, "memory"); !dir.empty()) {
    const auto stat = ReadKeyed(dir + "/memory.stat");
    static const char* const kFields[] = {"cache",
                                          "rss",
                                          "rss_huge",
                                          "mapped_file",
                                          "dirty",
                                          "writeback",
                                          "pgpgin",
                                          "pgpgout",
                                          "pgfault",
                                          "pgmajfault",
                                          "inactive_anon",
                                          "active_anon",
                                          "inactive_file",
                                          "active_file",
                                          "unevictable",
                                          "hierarchical_memory_limit",
                                          "hierarchical_memsw_limit",
                                          "total_cache",
                                          "total_rss",
                                          "total_rss_huge",
                                          "total_mapped_file",
                                          "total_dirty",
                                          "total_writeback",
                                          "total_pgpgin",
                                          "total_pgpgout",
                                          "total_pgfault",
                                          "total_pgmajfault",
                                          "total_inactive_anon",
                                          "total_active_anon",
                                          "total_inactive_file",
                                          "total_active_file",
                                          "total_unevictable"};
    ProtoWriter memory;
    for (int i = 0; i < 32; ++i) memory.Uint64(i + 1, Get(stat, kFields[i]));
    auto entry = [&](const std::string& prefix) {
      ProtoWriter e;
      e.Uint64(1, ReadU64(dir + "/" + prefix + "limit_in_bytes"));
      e.Uint64(2, ReadU64(dir + "/" + prefix + "usage_in_bytes"));
      e.Uint64(3, ReadU64(dir + "/" + prefix + "max_usage_in_bytes"));
      e.Uint64(4, ReadU64(dir + "/" + prefix + "failcnt"));
      return e;
    };
    memory.Message(33, entry("memory."));
    memory.Message(34, entry("memory.memsw."));
    memory.Message(35, entry("memory.kmem."));
    memory.Message(36, entry("memory.kmem.tcp."));
    metrics.Message(4, memory);
    const auto oom = ReadKeyed(dir + "/memory.oom_control");
    ProtoWriter oom_control;
    oom_control.Uint64(1, Get(oom, "oom_kill_disable"));
    oom_control.Uint64(2, Get(oom, "under_oom"));
    oom_control.Uint64(3, Get(oom, "oom_kill"));
    metrics.Message(9, oom_control);
  }
  google::protobuf::Any any;
  any.set_type_url("io.containerd.cgroups.v1.Metrics");
  any.set_value(metrics.data());
  return any;
}

google::protobuf::Any V2Metrics(const CgroupPaths& p) {
  const std::string& dir = p.unified_dir;
  ProtoWriter metrics;
  ProtoWriter pids;
  pids.Uint64(1, ReadU64(dir + "/pids.current"));
  pids.Uint64(2, ReadU64(dir + "/pids.max"));
  metrics.Message(1, pids);
  const auto cpu_stat = ReadKeyed(dir + "/cpu.stat");
  ProtoWriter cpu;
  int field = 1;
  for (const char* key :
       {"usage_usec", "user_usec", "system_usec", "nr_periods", "nr_throttled", "throttled_usec"}) {
    cpu.Uint64(field++, Get(cpu_stat, key));
  }
  metrics.Message(2, cpu);
  const auto stat = ReadKeyed(dir + "/memory.stat");
  ProtoWriter memory;
  field = 1;
  for (const char* key : {"anon",
                          "file",
                          "kernel_stack",
                          "slab",
                          "sock",
                          "shmem",
                          "file_mapped",
                          "file_dirty",
                          "file_writeback",
                          "anon_thp",
                          "inactive_anon",
                          "active_anon",
                          "inactive_file",
                          "active_file",
                          "unevictable",
                          "slab_reclaimable",
                          "slab_unreclaimable",
                          "pgfault",
                          "pgmajfault",
                          "workingset_refault",
                          "workingset_activate",
                          "workingset_nodereclaim",
                          "pgrefill",
                          "pgscan",
                          "pgsteal",
                          "pgactivate",
                          "pgdeactivate",
                          "pglazyfree",
                          "pglazyfreed",
                          "thp_fault_alloc",
                          "thp_collapse_alloc"}) {
    memory.Uint64(field++, Get(stat, key));
  }
  memory.Uint64(32, ReadU64(dir + "/memory.current"));
  memory.Uint64(33, ReadU64(dir + "/memory.max"));
  memory.Uint64(34, ReadU64(dir + "/memory.swap.current"));
  memory.Uint64(35, ReadU64(dir + "/memory.swap.max"));
  memory.Uint64(36, ReadU64(dir + "/memory.peak"));
  metrics.Message(4, memory);
  const auto events = ReadKeyed(dir + "/memory.events");
  ProtoWriter ev;
  field = 1;
  for (const char* key : {"low", "high", "max", "oom", "oom_kill"})
    ev.Uint64(field++, Get(events, key));
  metrics.Message(8, ev);
  google::protobuf::Any any;
  any.set_type_url("io.containerd.cgroups.v2.Metrics");
  any.set_value(metrics.data());
  return any;
}

}  // namespace

CgroupPaths FindCgroups(pid_t pid, const std::string& bundle) {
  CgroupPaths paths;
  paths.unified = UnifiedHost();
  const std::string text = ReadWholeFile(absl::StrCat("/proc/", pid, "/cgroup")).value_or("");
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    std::vector<std::string> parts = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (parts.size() != 3) continue;
    if (parts[0] == "0" && parts[1].empty()) {
      if (paths.unified) paths.unified_dir = absl::StrCat(kCgroupRoot, parts[2]);
      continue;
    }
    for (absl::string_view controller : absl::StrSplit(parts[1], ',')) {
      paths.v1_dirs[std::string(controller)] = absl::StrCat(kCgroupRoot, "/", parts[1], parts[2]);
    }
  }
  if (!paths.unified_dir.empty() || !paths.v1_dirs.empty()) return paths;
  // The process is gone: linux.cgroupsPath of the bundle (cgroupfs paths only; a systemd
  // "slice:prefix:name" is not resolved).
  nlohmann::json spec =
      nlohmann::json::parse(ReadWholeFile(bundle + "/config.json").value_or(""), nullptr, false);
  if (!spec.is_object() || !spec.contains("linux") || !spec["linux"].is_object()) return paths;
  const std::string path = spec["linux"].value("cgroupsPath", std::string());
  if (path.empty() || path[0] != '/') return paths;
  if (paths.unified) {
    paths.unified_dir = absl::StrCat(kCgroupRoot, path);
  } else {
    for (const char* c : {"memory", "pids", "cpu", "cpuacct"}) {
      paths.v1_dirs[c] = absl::StrCat(kCgroupRoot, "/", c, path);
    }
  }
  return paths;
}

uint64_t ReadOomKillCount(const CgroupPaths& paths) {
  if (paths.unified) {
    return paths.unified_dir.empty()
               ? 0
               : Get(ReadKeyed(paths.unified_dir + "/memory.events"), "oom_kill");
  }
  const std::string dir = V1(paths, "memory");
  return dir.empty() ? 0 : Get(ReadKeyed(dir + "/memory.oom_control"), "oom_kill");
}

absl::StatusOr<google::protobuf::Any> ReadCgroupMetrics(const CgroupPaths& paths,
                                                        const std::string& id) {
  if (paths.unified ? paths.unified_dir.empty() : paths.v1_dirs.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("container ", id, " has no known cgroup to read stats from"));
  }
  if (paths.unified) {
    if (::access(paths.unified_dir.c_str(), F_OK) != 0) {
      return absl::NotFoundError(
          absl::StrCat("cgroup ", paths.unified_dir, " of container ", id, " is gone"));
    }
    return V2Metrics(paths);
  }
  return V1Metrics(paths);
}

}  // namespace berth::shim
