// SPDX-License-Identifier: Apache-2.0
// The attachment requests of berth_network_v1 (kinds.h) and what CNI makes of them: the
// CNI_ARGS of a pod and the capability arguments (CONVENTIONS.md) that plugins declaring
// the capability receive in runtimeConfig.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace berth::cni {

// Annotations of the pod sandbox that become capability arguments.
inline constexpr char kIngressBandwidthAnnotation[] = "kubernetes.io/ingress-bandwidth";
inline constexpr char kEgressBandwidthAnnotation[] = "kubernetes.io/egress-bandwidth";
inline constexpr char kIpsAnnotation[] = "cni.berth.io/ips";
inline constexpr char kMacAnnotation[] = "cni.berth.io/mac";

struct PortMapping {
  std::string protocol;  // "tcp", "udp" or "sctp"
  int container_port = 0;
  int host_port = 0;  // 0: not published on the host
  std::string host_ip;
};

struct AttachRequest {
  std::string sandbox_id;
  std::string netns;
  std::string pod_name;
  std::string pod_namespace;
  std::string pod_uid;
  std::vector<PortMapping> port_mappings;
  std::map<std::string, std::string> annotations;
  std::string pod_cidr;
  // The CNI configuration directory to attach with (a runtime handler's cni_conf_dir); empty:
  // the plugin's conf_dir. Absolute, without "." or ".." components.
  std::string conf_dir;
  // The request as received; the attachment cache keeps it.
  nlohmann::json raw;
};

// A sandbox id is a plain name: 1 to 250 bytes of [A-Za-z0-9_.-] starting with a letter or
// digit (CNI's rule for container ids; 250 so that "<id>.json" is a valid file name).
// INVALID_ARGUMENT saying what is wrong.
[[nodiscard]] absl::Status ValidateSandboxId(std::string_view id);

// Parses a request (kinds.h). sandbox_id is required and checked; every other field is
// optional but must have its type; ports must be in range and protocols tcp, udp or sctp
// (any case); conf_dir, when given, absolute and without "." or ".." components.
// INVALID_ARGUMENT naming the field.
[[nodiscard]] absl::StatusOr<AttachRequest> ParseAttachRequest(std::string_view request_json);

// CNI_ARGS for the pod: "IgnoreUnknown=1;K8S_POD_NAMESPACE=<ns>;K8S_POD_NAME=<name>;
// K8S_POD_INFRA_CONTAINER_ID=<sandbox id>;K8S_POD_UID=<uid>".
std::string CniArgs(const AttachRequest& request);

// The capability arguments the request provides (CONVENTIONS.md), only those it has:
//   portMappings  [{hostPort, containerPort, protocol, hostIP?}] for host_port != 0
//   bandwidth     {ingressRate, ingressBurst, egressRate, egressBurst} (bits per second,
//                 burst = rate) from the kubernetes.io/{ingress,egress}-bandwidth annotations
//   ipRanges      [[{"subnet": pod_cidr}]]
//   ips           the comma-separated addresses of annotation cni.berth.io/ips
//   mac           annotation cni.berth.io/mac
// INVALID_ARGUMENT naming the annotation whose value is not a quantity.
[[nodiscard]] absl::StatusOr<nlohmann::json> CapabilityArgs(const AttachRequest& request);

// A Kubernetes quantity ("10M", "1Gi", "500k", "1.5e6") as a bandwidth in bits per second,
// rounded up. INVALID_ARGUMENT when it is not a quantity or lies outside 1k..1P (the
// kubelet's bounds).
[[nodiscard]] absl::StatusOr<uint64_t> ParseBandwidth(std::string_view quantity);

}  // namespace berth::cni
