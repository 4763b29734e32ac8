// SPDX-License-Identifier: Apache-2.0
// The HTTP side of a streaming request (kubernetes-streaming.md §3, §4, §8): the route and
// token in the path, the method, the X-Stream-Protocol-Version negotiation and the upgrade
// headers, and the exact responses the Go clients expect.
#pragma once

#include <string>
#include <vector>

#include "plugins/cri/streaming/http.h"

namespace berth::cri::streaming {

struct Route {
  std::string kind;   // "exec", "attach", "portforward"; "" when the path is none of them
  std::string token;  // the last path segment
};
// "/exec/AbCd1234" -> {"exec", "AbCd1234"}. Anything else (more segments, a query string
// is ignored) -> kind "".
[[nodiscard]] Route ParseRoute(const std::string& target);

// The outcome of checking an upgrade request: `response` is the full HTTP response to send —
// the 101 when `ok`, an error otherwise — and `protocol` the negotiated sub-protocol.
struct Upgrade {
  bool ok = false;
  std::string protocol;
  std::string response;
};
// §4.2, decided by DecideSpdyUpgrade (k8s_remotecommand.h) and rendered as HTTP: 400 without
// a usable X-Stream-Protocol-Version, 403 listing the server's protocols when none is common
// (the client's order wins), 400 without the upgrade headers, else the 101.
[[nodiscard]] Upgrade CheckSpdyUpgrade(const HttpRequest& req, bool port_forward);

// The 404 of unknown, expired, used or wrong-kind tokens and unknown paths; the 405 of other
// methods.
[[nodiscard]] std::string NotFoundResponse();
[[nodiscard]] std::string MethodNotAllowedResponse();

}  // namespace berth::cri::streaming
