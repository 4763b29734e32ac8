// SPDX-License-Identifier: Apache-2.0
#include "plugins/cgroup-fs/cgroup_stats.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <span>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "berth/unique_fd.hpp"
#include "core/status_macros.h"

namespace berth::cgroupfs {
namespace {

// Large enough for memory.stat of any current kernel (about 2 KiB on 6.x).
constexpr size_t kFileBuffer = size_t{16} * 1024;

int64_t NowNs() {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// USER_HZ, the unit of cpuacct.stat.
uint64_t UserHz() {
  static const uint64_t hz = [] {
    long v = ::sysconf(_SC_CLK_TCK);
    return v > 0 ? static_cast<uint64_t>(v) : uint64_t{100};
  }();
  return hz;
}

std::optional<uint64_t> Scale(std::optional<uint64_t> v, uint64_t mul, uint64_t div = 1) {
  if (!v) return std::nullopt;
  unsigned __int128 r = static_cast<unsigned __int128>(*v) * mul / div;
  return r > UINT64_MAX ? UINT64_MAX : static_cast<uint64_t>(r);
}

// usage − inactive file pages, as the kubelet's eviction manager and cAdvisor count it.
std::optional<uint64_t> WorkingSet(std::optional<uint64_t> usage,
                                   std::optional<uint64_t> inactive_file) {
  if (!usage || !inactive_file) return std::nullopt;
  return *usage > *inactive_file ? *usage - *inactive_file : 0;
}

// One cgroup directory, opened once (O_PATH) so that each file is a single openat.
class CgroupDir {
 public:
  // NOT_FOUND ("no directory <path>") when the cgroup does not exist.
  [[nodiscard]] static absl::StatusOr<CgroupDir> Open(const std::string& path) {
    int fd = ::open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      if (err == ENOENT) return absl::NotFoundError(absl::StrCat("no directory ", path));
      return core::ErrnoToStatus(err, absl::StrCat("open cgroup directory ", path));
    }
    return CgroupDir(sdk::UniqueFd(fd), path);
  }

  // The text of file `name` in `buf`; empty when the file does not exist (its controller is
  // not enabled here) or the cgroup went away meanwhile.
  [[nodiscard]] absl::Status Read(const char* name, std::span<char> buf,
                                  std::string_view* text) const {
    return ReadFile(name, buf, text, /*pressure=*/false);
  }
  // The same for a pressure file, also empty when the kernel refuses it because PSI is off
  // (EOPNOTSUPP: psi=0 at boot, or cgroup.pressure set to 0, on kernels that still show the
  // file then).
  [[nodiscard]] absl::Status ReadPressure(const char* name, std::span<char> buf,
                                          std::string_view* text) const {
    return ReadFile(name, buf, text, /*pressure=*/true);
  }

 private:
  CgroupDir(sdk::UniqueFd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}

  [[nodiscard]] absl::Status ReadFile(const char* name, std::span<char> buf, std::string_view* text,
                                      bool pressure) const {
    *text = {};
    auto absent = [pressure](int err) {
      return err == ENOENT || err == ENODEV || (pressure && err == EOPNOTSUPP);
    };
    sdk::UniqueFd fd(::openat(fd_.get(), name, O_RDONLY | O_CLOEXEC | O_NOCTTY));
    if (!fd.valid()) {
      int err = errno;
      if (absent(err)) return absl::OkStatus();
      return core::ErrnoToStatus(err, absl::StrCat("open ", path_, "/", name));
    }
    size_t len = 0;
    while (len < buf.size()) {
      ssize_t n = ::read(fd.get(), buf.data() + len, buf.size() - len);
      if (n < 0) {
        int err = errno;
        if (err == EINTR) continue;
        if (absent(err)) return absl::OkStatus();  // removed while we read, or PSI off
        return core::ErrnoToStatus(err, absl::StrCat("read ", path_, "/", name));
      }
      if (n == 0) break;
      len += static_cast<size_t>(n);
    }
    *text = std::string_view(buf.data(), len);
    return absl::OkStatus();
  }

  sdk::UniqueFd fd_;
  std::string path_;
};

// Opens `path` when it is set; leaves `dir` empty when it is unset or does not exist.
absl::Status OpenIfPresent(const std::string& path, std::optional<CgroupDir>* dir,
                           std::vector<std::string>* missing) {
  if (path.empty()) return absl::OkStatus();
  absl::StatusOr<CgroupDir> d = CgroupDir::Open(path);
  if (d.ok()) {
    dir->emplace(std::move(*d));
    return absl::OkStatus();
  }
  if (!absl::IsNotFound(d.status())) return d.status();
  missing->push_back(path);
  return absl::OkStatus();
}

void AppendField(std::string* out, bool* first, absl::string_view key, std::optional<uint64_t> v) {
  if (!v) return;
  absl::StrAppend(out, *first ? "" : ",", "\"", key, "\":", *v);
  *first = false;
}

// ,"psi":{"some":{...},"full":{...}} (without the comma when it is the first member), or
// nothing when neither line was read. Averages are printed with six significant digits, more
// than the two decimals the kernel gives.
void AppendPsi(std::string* out, bool* first, const Psi& psi) {
  if (psi.empty()) return;
  absl::StrAppend(out, *first ? "" : ",", "\"psi\":{");
  bool first_line = true;
  for (const auto& [name, line] : {std::pair{"some", &psi.some}, std::pair{"full", &psi.full}}) {
    if (!*line) continue;
    const PsiFigures& f = **line;
    absl::StrAppend(out, first_line ? "" : ",", "\"", name, "\":{\"total_ns\":", f.total_ns,
                    ",\"avg10\":", f.avg10, ",\"avg60\":", f.avg60, ",\"avg300\":", f.avg300, "}");
    first_line = false;
  }
  out->push_back('}');
  *first = false;
}

// A percentage of a pressure line: a finite number from 0 to 100.
std::optional<double> ParsePercent(std::string_view text) {
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  if (!(v >= 0 && v <= 100)) return std::nullopt;  // also refuses nan
  return v;
}

// "avg10=0.08 avg60=8.54 avg300=12.81 total=4523440894": empty unless all four are there.
std::optional<PsiFigures> ParsePsiLine(std::string_view rest) {
  std::optional<double> avg10, avg60, avg300;
  std::optional<uint64_t> total_us;
  while (!rest.empty()) {
    size_t sp = rest.find(' ');
    std::string_view field = rest.substr(0, sp);
    rest.remove_prefix(sp == std::string_view::npos ? rest.size() : sp + 1);
    size_t eq = field.find('=');
    if (eq == std::string_view::npos) continue;
    std::string_view key = field.substr(0, eq), value = field.substr(eq + 1);
    if (key == "avg10") {
      avg10 = ParsePercent(value);
    } else if (key == "avg60") {
      avg60 = ParsePercent(value);
    } else if (key == "avg300") {
      avg300 = ParsePercent(value);
    } else if (key == "total") {
      total_us = ParseFigure(value);
    }
  }
  if (!avg10 || !avg60 || !avg300 || !total_us) return std::nullopt;
  return PsiFigures{
      .total_ns = *Scale(total_us, 1000), .avg10 = *avg10, .avg60 = *avg60, .avg300 = *avg300};
}

// cpu.pressure, memory.pressure and io.pressure of a cgroup2 directory.
absl::Status ReadPsi(const CgroupDir& d, std::span<char> buf, CgroupStats* s) {
  std::string_view text;
  RETURN_IF_ERROR(d.ReadPressure("cpu.pressure", buf, &text));
  s->cpu_psi = ParsePsi(text);
  RETURN_IF_ERROR(d.ReadPressure("memory.pressure", buf, &text));
  s->memory_psi = ParsePsi(text);
  RETURN_IF_ERROR(d.ReadPressure("io.pressure", buf, &text));
  s->io_psi = ParsePsi(text);
  return absl::OkStatus();
}

}  // namespace

std::optional<uint64_t> ParseFigure(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\t')) {
    text.remove_suffix(1);
  }
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
  return v;
}

void ParseFlatKeyed(std::string_view text, std::initializer_list<FlatKey> keys) {
  while (!text.empty()) {
    size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos) continue;
    std::string_view key = line.substr(0, sp);
    for (const FlatKey& k : keys) {
      if (k.key == key) *k.out = ParseFigure(line.substr(sp + 1));
    }
  }
}

Psi ParsePsi(std::string_view text) {
  Psi psi;
  while (!text.empty()) {
    size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    size_t sp = line.find(' ');
    if (sp == std::string_view::npos) continue;
    std::string_view kind = line.substr(0, sp);
    if (kind == "some") {
      psi.some = ParsePsiLine(line.substr(sp + 1));
    } else if (kind == "full") {
      psi.full = ParsePsiLine(line.substr(sp + 1));
    }
  }
  return psi;
}

std::optional<uint64_t> FlatKeyed(std::string_view text, std::string_view key) {
  std::optional<uint64_t> v;
  ParseFlatKeyed(text, {{key, &v}});
  return v;
}

std::string StatsToJson(const CgroupStats& s) {
  std::string out = absl::StrCat("{\"timestamp_ns\":", s.timestamp_ns);
  using Field = std::pair<absl::string_view, std::optional<uint64_t>>;
  auto group = [&out](absl::string_view name, std::initializer_list<Field> fields,
                      const Psi& psi = Psi{}) {
    std::string body;
    bool first = true;
    for (const auto& [key, value] : fields) AppendField(&body, &first, key, value);
    AppendPsi(&body, &first, psi);
    if (!first) absl::StrAppend(&out, ",\"", name, "\":{", body, "}");
  };
  group("cpu",
        {{"usage_ns", s.cpu_usage_ns}, {"user_ns", s.cpu_user_ns}, {"system_ns", s.cpu_system_ns}},
        s.cpu_psi);
  group("memory",
        {{"usage_bytes", s.memory_usage_bytes},
         {"working_set_bytes", s.memory_working_set_bytes},
         {"rss_bytes", s.memory_rss_bytes},
         {"page_faults", s.memory_page_faults},
         {"major_page_faults", s.memory_major_page_faults},
         {"limit_bytes", s.memory_limit_bytes},
         {"oom_kills", s.memory_oom_kills}},
        s.memory_psi);
  group("io", {}, s.io_psi);
  group("pids", {{"current", s.pids_current}, {"limit", s.pids_limit}});
  out += '}';
  return out;
}

absl::StatusOr<CgroupStats> ReadV2Stats(const std::string& dir) {
  CgroupStats s;
  s.timestamp_ns = NowNs();
  ASSIGN_OR_RETURN(CgroupDir d, CgroupDir::Open(dir));
  char buf[kFileBuffer];
  std::string_view text;

  RETURN_IF_ERROR(d.Read("cpu.stat", buf, &text));
  std::optional<uint64_t> usage_us, user_us, system_us;
  ParseFlatKeyed(text,
                 {{"usage_usec", &usage_us}, {"user_usec", &user_us}, {"system_usec", &system_us}});
  s.cpu_usage_ns = Scale(usage_us, 1000);
  s.cpu_user_ns = Scale(user_us, 1000);
  s.cpu_system_ns = Scale(system_us, 1000);

  RETURN_IF_ERROR(d.Read("memory.current", buf, &text));
  s.memory_usage_bytes = ParseFigure(text);
  RETURN_IF_ERROR(d.Read("memory.stat", buf, &text));
  std::optional<uint64_t> inactive_file;
  ParseFlatKeyed(text, {{"inactive_file", &inactive_file},
                        {"anon", &s.memory_rss_bytes},
                        {"pgfault", &s.memory_page_faults},
                        {"pgmajfault", &s.memory_major_page_faults}});
  s.memory_working_set_bytes = WorkingSet(s.memory_usage_bytes, inactive_file);
  RETURN_IF_ERROR(d.Read("memory.max", buf, &text));
  s.memory_limit_bytes = ParseFigure(text);  // "max": no limit
  RETURN_IF_ERROR(d.Read("memory.events", buf, &text));
  s.memory_oom_kills = FlatKeyed(text, "oom_kill");

  RETURN_IF_ERROR(d.Read("pids.current", buf, &text));
  s.pids_current = ParseFigure(text);
  RETURN_IF_ERROR(d.Read("pids.max", buf, &text));
  s.pids_limit = ParseFigure(text);  // "max": no limit

  RETURN_IF_ERROR(ReadPsi(d, buf, &s));
  return s;
}

absl::StatusOr<CgroupStats> ReadV1Stats(const V1StatsDirs& dirs) {
  CgroupStats s;
  s.timestamp_ns = NowNs();
  std::optional<CgroupDir> cpuacct, memory, pids;
  std::vector<std::string> missing;
  RETURN_IF_ERROR(OpenIfPresent(dirs.cpuacct, &cpuacct, &missing));
  RETURN_IF_ERROR(OpenIfPresent(dirs.memory, &memory, &missing));
  RETURN_IF_ERROR(OpenIfPresent(dirs.pids, &pids, &missing));
  if (!cpuacct && !memory && !pids) {
    if (missing.empty()) {
      return absl::FailedPreconditionError(
          "none of the cpuacct, memory and pids v1 controllers is mounted");
    }
    return absl::NotFoundError(absl::StrCat("no directory ", absl::StrJoin(missing, ", ")));
  }
  char buf[kFileBuffer];
  std::string_view text;

  if (cpuacct) {
    RETURN_IF_ERROR(cpuacct->Read("cpuacct.usage", buf, &text));
    s.cpu_usage_ns = ParseFigure(text);
    RETURN_IF_ERROR(cpuacct->Read("cpuacct.stat", buf, &text));
    std::optional<uint64_t> user_ticks, system_ticks;
    ParseFlatKeyed(text, {{"user", &user_ticks}, {"system", &system_ticks}});
    s.cpu_user_ns = Scale(user_ticks, 1'000'000'000, UserHz());
    s.cpu_system_ns = Scale(system_ticks, 1'000'000'000, UserHz());
  }
  if (memory) {
    RETURN_IF_ERROR(memory->Read("memory.usage_in_bytes", buf, &text));
    s.memory_usage_bytes = ParseFigure(text);
    RETURN_IF_ERROR(memory->Read("memory.stat", buf, &text));
    std::optional<uint64_t> inactive_file;
    ParseFlatKeyed(text, {{"total_inactive_file", &inactive_file},
                          {"total_rss", &s.memory_rss_bytes},
                          {"total_pgfault", &s.memory_page_faults},
                          {"total_pgmajfault", &s.memory_major_page_faults}});
    s.memory_working_set_bytes = WorkingSet(s.memory_usage_bytes, inactive_file);
    RETURN_IF_ERROR(memory->Read("memory.limit_in_bytes", buf, &text));
    s.memory_limit_bytes = ParseFigure(text);
    if (s.memory_limit_bytes && *s.memory_limit_bytes >= kV1UnlimitedFloor) {
      s.memory_limit_bytes.reset();
    }
    RETURN_IF_ERROR(memory->Read("memory.oom_control", buf, &text));
    s.memory_oom_kills = FlatKeyed(text, "oom_kill");
  }
  if (pids) {
    RETURN_IF_ERROR(pids->Read("pids.current", buf, &text));
    s.pids_current = ParseFigure(text);
    RETURN_IF_ERROR(pids->Read("pids.max", buf, &text));
    s.pids_limit = ParseFigure(text);
  }
  // The kernel accounts pressure in the cgroup2 hierarchy only: on a hybrid host, the
  // runtime's directory for the cgroup in the cgroup2 mount (runc creates it there too).
  if (!dirs.unified.empty()) {
    absl::StatusOr<CgroupDir> unified = CgroupDir::Open(dirs.unified);
    if (unified.ok()) {
      RETURN_IF_ERROR(ReadPsi(*unified, buf, &s));
    } else if (!absl::IsNotFound(unified.status())) {
      return unified.status();
    }
  }
  return s;
}

}  // namespace berth::cgroupfs
