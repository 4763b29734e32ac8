// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/streaming/upgrade.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "plugins/cri/streaming/k8s_remotecommand.h"

namespace berth::cri::streaming {

Route ParseRoute(const std::string& target) {
  std::string path = target.substr(0, target.find('?'));
  std::vector<std::string> parts = absl::StrSplit(path, '/');
  // "", kind, token
  if (parts.size() != 3 || !parts[0].empty() || parts[2].empty()) return {};
  if (parts[1] != "exec" && parts[1] != "attach" && parts[1] != "portforward") return {};
  return {parts[1], parts[2]};
}

Upgrade CheckSpdyUpgrade(const HttpRequest& req, bool port_forward) {
  spdy::Headers headers;
  for (const auto& [name, value] : req.headers) {
    headers.emplace_back(absl::AsciiStrToLower(name), value);
  }
  UpgradeDecision d = port_forward ? DecideSpdyUpgrade(headers, kPortForwardProtocols)
                                   : DecideSpdyUpgrade(headers, kRemoteCommandProtocols);
  Upgrade u;
  u.ok = d.status_code == 101;
  u.protocol = d.protocol;
  u.response = u.ok ? SwitchingProtocolsResponse(d.protocol)
                    : HttpResponse(d.status_code, d.headers, d.body);
  return u;
}

std::string NotFoundResponse() {
  return HttpResponse(404,
                      {{"Content-Type", "text/plain; charset=utf-8"},
                       {"X-Content-Type-Options", "nosniff"}},
                      "404 page not found\n");
}

std::string MethodNotAllowedResponse() {
  return HttpResponse(405, {{"Content-Type", "text/plain; charset=utf-8"}},
                      "405 method not allowed\n");
}

}  // namespace berth::cri::streaming
