// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/records.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace berth::cri {
namespace {

using nlohmann::json;

template <typename Message>
std::string Encode(const Message& m) {
  return absl::Base64Escape(m.SerializeAsString());
}

template <typename Message>
bool Decode(const json& j, const char* key, Message* m) {
  if (!j.contains(key) || !j[key].is_string()) return false;
  std::string bytes;
  if (!absl::Base64Unescape(j[key].get<std::string>(), &bytes)) return false;
  return m->ParseFromString(bytes);
}

template <typename Phase, size_t N>
bool ParsePhase(const std::string& name, const Phase (&all)[N], Phase* out) {
  for (Phase p : all) {
    if (name == PhaseName(p)) {
      *out = p;
      return true;
    }
  }
  return false;
}

}  // namespace

const char* PhaseName(SandboxPhase p) {
  switch (p) {
    case SandboxPhase::kCreating: return "creating";
    case SandboxPhase::kReady: return "ready";
    case SandboxPhase::kNotReady: return "notready";
    case SandboxPhase::kRemoving: return "removing";
  }
  return "unknown";
}

const char* PhaseName(ContainerPhase p) {
  switch (p) {
    case ContainerPhase::kCreating: return "creating";
    case ContainerPhase::kCreated: return "created";
    case ContainerPhase::kRunning: return "running";
    case ContainerPhase::kExited: return "exited";
    case ContainerPhase::kRemoving: return "removing";
  }
  return "unknown";
}

json SandboxRecord::ToJson() const {
  return {{"id", id},
          {"name", name},
          {"handler", handler},
          {"config", Encode(config)},
          {"phase", PhaseName(phase)},
          {"created_at", created_at},
          {"image_ref", image_ref},
          {"image_id", image_id},
          {"cgroups_path", cgroups_path},
          {"shim_cgroups_path", shim_cgroups_path},
          {"sandbox_dir", sandbox_dir},
          {"hostname", hostname},
          {"hostname_path", hostname_path},
          {"hosts_path", hosts_path},
          {"resolv_conf_path", resolv_conf_path},
          {"shm_path", shm_path},
          {"net_ns_path", net_ns_path},
          {"log_directory", log_directory},
          {"pid", pid},
          {"infra_stopped", infra_stopped},
          {"task_created", task_created},
          {"pod_ips", pod_ips},
          {"net_conf_dir", net_conf_dir},
          {"network", network},
          {"snapshotter", snapshotter}};
}

absl::StatusOr<SandboxRecord> SandboxRecord::FromJson(const json& j) {
  SandboxRecord r;
  try {
    r.id = j.at("id").get<std::string>();
    r.name = j.value("name", "");
    r.handler = j.value("handler", "");
    if (!Decode(j, "config", &r.config)) {
      return absl::DataLossError("sandbox record " + r.id + ": unreadable config");
    }
    static constexpr SandboxPhase kAll[] = {SandboxPhase::kCreating, SandboxPhase::kReady,
                                            SandboxPhase::kNotReady, SandboxPhase::kRemoving};
    if (!ParsePhase(j.value("phase", ""), kAll, &r.phase)) {
      return absl::DataLossError("sandbox record " + r.id + ": unknown phase");
    }
    r.created_at = j.value("created_at", int64_t{0});
    r.image_ref = j.value("image_ref", "");
    r.image_id = j.value("image_id", "");
    r.cgroups_path = j.value("cgroups_path", "");
    r.shim_cgroups_path = j.value("shim_cgroups_path", "");
    r.sandbox_dir = j.value("sandbox_dir", "");
    r.hostname = j.value("hostname", "");
    r.hostname_path = j.value("hostname_path", "");
    r.hosts_path = j.value("hosts_path", "");
    r.resolv_conf_path = j.value("resolv_conf_path", "");
    r.shm_path = j.value("shm_path", "");
    r.net_ns_path = j.value("net_ns_path", "");
    r.log_directory = j.value("log_directory", "");
    r.pid = j.value("pid", 0u);
    r.infra_stopped = j.value("infra_stopped", false);
    r.task_created = j.value("task_created", false);
    r.pod_ips = j.value("pod_ips", std::vector<std::string>{});
    r.net_conf_dir = j.value("net_conf_dir", "");
    r.network = j.value("network", "");
    r.snapshotter = j.value("snapshotter", "");
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrCat("sandbox record: ", e.what()));
  }
  return r;
}

json ContainerRecord::ToJson() const {
  return {{"id", id},
          {"sandbox_id", sandbox_id},
          {"name", name},
          {"config", Encode(config)},
          {"phase", PhaseName(phase)},
          {"image_ref", image_ref},
          {"image_id", image_id},
          {"image_name", image_name},
          {"image_digest", image_digest},
          {"created_at", created_at},
          {"started_at", started_at},
          {"finished_at", finished_at},
          {"exit_code", exit_code},
          {"reason", reason},
          {"message", message},
          {"pid", pid},
          {"log_path", log_path},
          {"cgroups_path", cgroups_path},
          {"stop_signal", stop_signal},
          {"task_created", task_created},
          {"uid", uid},
          {"gid", gid},
          {"additional_gids", additional_gids},
          {"username", username}};
}

absl::StatusOr<ContainerRecord> ContainerRecord::FromJson(const json& j) {
  ContainerRecord r;
  try {
    r.id = j.at("id").get<std::string>();
    r.sandbox_id = j.at("sandbox_id").get<std::string>();
    r.name = j.value("name", "");
    if (!Decode(j, "config", &r.config)) {
      return absl::DataLossError("container record " + r.id + ": unreadable config");
    }
    static constexpr ContainerPhase kAll[] = {ContainerPhase::kCreating, ContainerPhase::kCreated,
                                              ContainerPhase::kRunning, ContainerPhase::kExited,
                                              ContainerPhase::kRemoving};
    if (!ParsePhase(j.value("phase", ""), kAll, &r.phase)) {
      return absl::DataLossError("container record " + r.id + ": unknown phase");
    }
    r.image_ref = j.value("image_ref", "");
    r.image_id = j.value("image_id", "");
    r.image_name = j.value("image_name", "");
    r.image_digest = j.value("image_digest", "");
    r.created_at = j.value("created_at", int64_t{0});
    r.started_at = j.value("started_at", int64_t{0});
    r.finished_at = j.value("finished_at", int64_t{0});
    r.exit_code = j.value("exit_code", 0);
    r.reason = j.value("reason", "");
    r.message = j.value("message", "");
    r.pid = j.value("pid", 0u);
    r.log_path = j.value("log_path", "");
    r.cgroups_path = j.value("cgroups_path", "");
    r.stop_signal = j.value("stop_signal", 15);
    r.task_created = j.value("task_created", false);
    r.uid = j.value("uid", 0u);
    r.gid = j.value("gid", 0u);
    r.additional_gids = j.value("additional_gids", std::vector<uint32_t>{});
    r.username = j.value("username", "");
  } catch (const json::exception& e) {
    return absl::DataLossError(absl::StrCat("container record: ", e.what()));
  }
  return r;
}

std::string SandboxName(const runtime::v1::PodSandboxMetadata& m) {
  return absl::StrCat(m.name(), "_", m.namespace_(), "_", m.uid(), "_", m.attempt());
}

std::string ContainerName(const runtime::v1::ContainerMetadata& m) {
  return absl::StrCat(m.name(), "_", m.attempt());
}

int64_t NowNanos() { return absl::ToUnixNanos(absl::Now()); }

int64_t ParseTimeNanos(const std::string& rfc3339) {
  absl::Time t;
  std::string err;
  if (rfc3339.empty() || !absl::ParseTime(absl::RFC3339_full, rfc3339, &t, &err)) return 0;
  return absl::ToUnixNanos(t);
}

}  // namespace berth::cri
