// SPDX-License-Identifier: Apache-2.0
// The cgroupfs cgroup driver (cgroup v1, hybrid and v2): registration only; the driver is
// CgroupFs (cgroup_fs.h, docs/cgroups.md).
#include <sys/stat.h>

#include "berth/plugin.hpp"
#include "plugins/cgroup-fs/cgroup_fs.h"
#include "plugins/common/plugin_util.h"
#include "plugins/common/status_convert.h"

namespace berth::cgroupfs {
namespace {

using plugins::ToSdk;

}  // namespace

class CgroupFsPlugin {
 public:
  static sdk::Status Create(sdk::Host host, std::unique_ptr<CgroupFsPlugin>* out) {
    auto config = plugins::LoadConfig(host, "io.berth.cgroup.fs", {"root"});
    if (!config.ok()) return config.status();
    auto root = plugins::StringOption(host, *config, "root", "/sys/fs/cgroup");
    if (!root.ok()) return root.status();
    struct stat st {};
    if (::stat(root->c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      return sdk::NotApplicable("no cgroup filesystem at " + *root);
    }
    absl::StatusOr<CgroupFs> fs = CgroupFs::Open(*root);
    if (!fs.ok()) return ToSdk(fs.status());
    host.Info("cgroupfs driver: " + fs->layout().Describe());
    out->reset(new CgroupFsPlugin(std::move(*fs)));
    return sdk::Status::Ok();
  }

  const void* GetInterface(std::string_view iface) {
    if (iface == BERTH_IFACE_CGROUP_DRIVER_V1) return sdk::CgroupDriverTable<CgroupFsPlugin>();
    return nullptr;
  }

  sdk::Readiness Status() { return fs_.Readiness(); }
  std::string_view DriverName() const { return "cgroupfs"; }
  sdk::Result<std::string> CgroupPath(std::string_view parent, std::string_view id) {
    absl::StatusOr<std::string> path = fs_.CgroupPath(parent, id);
    if (!path.ok()) return ToSdk(path.status());
    return std::move(*path);
  }
  sdk::Result<std::string> Stats(std::string_view cgroups_path) {
    absl::StatusOr<CgroupStats> stats = fs_.Stats(cgroups_path);
    if (!stats.ok()) return ToSdk(stats.status());
    return StatsToJson(*stats);
  }
  sdk::Status Remove(std::string_view cgroups_path) { return ToSdk(fs_.Remove(cgroups_path)); }
  sdk::Status Enter(std::string_view cgroups_path, int64_t pid) {
    return ToSdk(fs_.Enter(cgroups_path, pid));
  }

 private:
  explicit CgroupFsPlugin(CgroupFs fs) : fs_(std::move(fs)) {}
  CgroupFs fs_;
};

}  // namespace berth::cgroupfs

BERTH_PLUGIN(berth::cgroupfs::CgroupFsPlugin, "io.berth.cgroup.fs", BERTH_KIND_CGROUP_DRIVER,
             "0.1.0", "cgroupfs cgroup driver (v1, hybrid, v2)", R"({"root":"/sys/fs/cgroup"})",
             BERTH_NO_REQUIRES)
