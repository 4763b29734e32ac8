// SPDX-License-Identifier: Apache-2.0
// Container Device Interface (CDI, github.com/cncf-tags/container-device-interface): the
// device requests of a container (ContainerConfig.CDI_devices and the "cdi.k8s.io/*"
// annotations, both naming devices as "vendor.com/class=name") resolved against the CDI spec
// files of the node and applied to the container's OCI spec as the CDI library does: the
// spec's containerEdits once per spec file, then each device's, in request order.
//
// Spec files are JSON documents named *.json in the spec directories (by default /etc/cdi,
// then /var/run/cdi; a later directory wins over an earlier one for the same device). YAML
// specs (*.yaml) are read only when they are written in JSON syntax (which is valid YAML);
// others are reported as unreadable. A spec file that does not parse or validate is skipped
// and named in the error of a request that could not be resolved, so one broken vendor file
// does not break the devices of another.
//
// Edits applied: env, deviceNodes (linux.devices plus an allow rule in
// linux.resources.devices; type, major and minor from the host node when not given), mounts
// (replacing a mount at the same destination), hooks (prestart, createRuntime,
// createContainer, startContainer, poststart, poststop), additionalGids and intelRdt.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "cri/v1/api.pb.h"

namespace berth::cri {

// /etc/cdi (static specs) and /var/run/cdi (generated ones), in increasing priority.
[[nodiscard]] const std::vector<std::string>& DefaultCdiSpecDirs();

// The annotation key prefix of CDI device requests: "cdi.k8s.io/<anything>" with a
// comma-separated list of device names as its value.
inline constexpr char kCdiAnnotationPrefix[] = "cdi.k8s.io/";

// One requested device: its qualified name and the request field that named it, for errors.
struct CdiDeviceRequest {
  std::string name;   // "vendor.com/class=name"
  std::string field;  // "CDI_devices[0].name", "annotations[\"cdi.k8s.io/gpu\"]"
};

// The devices a container asks for: CDI_devices, then the annotations (sorted by key), each
// device once. INVALID_ARGUMENT naming the field for a name that is not qualified.
[[nodiscard]] absl::StatusOr<std::vector<CdiDeviceRequest>> CdiDeviceRequests(
    const runtime::v1::ContainerConfig& config);

// "vendor.com/class=name" split; false when malformed.
struct CdiQualifiedName {
  std::string kind;  // "vendor.com/class"
  std::string name;
};
[[nodiscard]] bool ParseCdiQualifiedName(const std::string& qualified, CdiQualifiedName* out);

// One spec file, validated.
struct CdiSpec {
  std::string path;
  std::string kind;
  nlohmann::json edits;                           // the spec's containerEdits (may be null)
  std::map<std::string, nlohmann::json> devices;  // name -> containerEdits
};

// Parses and validates one spec document; `path` names it in errors (INVALID_ARGUMENT).
[[nodiscard]] absl::StatusOr<CdiSpec> ParseCdiSpec(const std::string& text,
                                                   const std::string& path);

// The specs of some directories. Loading never fails: unreadable and invalid files are kept
// as errors and shown when a request cannot be resolved.
class CdiRegistry {
 public:
  [[nodiscard]] static CdiRegistry Load(const std::vector<std::string>& dirs);

  // Applies the edits of `requests` to the OCI spec. INVALID_ARGUMENT naming the request field
  // for a device no valid spec defines (or that two files of one directory both define).
  [[nodiscard]] absl::Status Inject(const std::vector<CdiDeviceRequest>& requests,
                                    nlohmann::json* oci_spec) const;

  const std::vector<std::string>& errors() const { return errors_; }

 private:
  struct Entry {
    size_t spec = 0;       // index into specs_
    std::string conflict;  // another file of the same directory defining it too
  };
  std::vector<CdiSpec> specs_;
  std::map<std::string, Entry> devices_;  // qualified name -> where
  std::vector<std::string> errors_;       // "<path>: <why>"
  std::vector<std::string> dirs_;
};

// Everything at once: the container's requests resolved in `spec_dirs` and applied. No
// request: nothing is read.
[[nodiscard]] absl::Status ApplyCdiDevices(const runtime::v1::ContainerConfig& config,
                                           const std::vector<std::string>& spec_dirs,
                                           nlohmann::json* oci_spec);

}  // namespace berth::cri
