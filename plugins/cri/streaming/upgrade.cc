// SPDX-License-Identifier: Apache-2.0
#include "plugins/cri/streaming/upgrade.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace berth::cri::streaming {
namespace {

bool ContainsToken(const std::string& header, absl::string_view token) {
  return absl::StrContains(absl::AsciiStrToLower(header), token);
}

std::string PlainError(int code, const std::string& message,
                       std::vector<std::pair<std::string, std::string>> extra = {}) {
  std::vector<std::pair<std::string, std::string>> headers = {
      {"Content-Type", "text/plain; charset=utf-8"}};
  for (auto& h : extra) headers.push_back(std::move(h));
  headers.emplace_back("X-Content-Type-Options", "nosniff");
  return HttpResponse(code, headers, message + "\n");
}

}  // namespace

const std::vector<std::string>& RemoteCommandProtocols() {
  static const std::vector<std::string> p = {"v4.channel.k8s.io", "v3.channel.k8s.io",
                                             "v2.channel.k8s.io", "channel.k8s.io"};
  return p;
}

const std::vector<std::string>& PortForwardProtocols() {
  static const std::vector<std::string> p = {"portforward.k8s.io"};
  return p;
}

Route ParseRoute(const std::string& target) {
  std::string path = target.substr(0, target.find('?'));
  std::vector<std::string> parts = absl::StrSplit(path, '/');
  // "", kind, token
  if (parts.size() != 3 || !parts[0].empty() || parts[2].empty()) return {};
  if (parts[1] != "exec" && parts[1] != "attach" && parts[1] != "portforward") return {};
  return {parts[1], parts[2]};
}

Upgrade CheckSpdyUpgrade(const HttpRequest& req,
                         const std::vector<std::string>& server_protocols) {
  Upgrade u;
  std::vector<std::string> client;
  for (const std::string& line : req.Headers("X-Stream-Protocol-Version")) {
    for (absl::string_view item : absl::StrSplit(line, ',')) {
      item = absl::StripAsciiWhitespace(item);
      if (!item.empty()) client.emplace_back(item);
    }
  }
  if (client.empty()) {
    u.response = PlainError(
        400, "unable to upgrade: unable to negotiate protocol: no X-Stream-Protocol-Version "
             "header in the request");
    return u;
  }
  for (const std::string& c : client) {
    for (const std::string& s : server_protocols) {
      if (c == s && u.protocol.empty()) u.protocol = c;
    }
  }
  if (u.protocol.empty()) {
    std::vector<std::pair<std::string, std::string>> accepted;
    for (const std::string& s : server_protocols) {
      accepted.emplace_back("X-Accepted-Stream-Protocol-Versions", s);
    }
    u.response = PlainError(403,
                            "unable to upgrade: unable to negotiate protocol: client supports [" +
                                absl::StrJoin(client, " ") + "], server accepts [" +
                                absl::StrJoin(server_protocols, " ") + "]",
                            std::move(accepted));
    return u;
  }
  if (!ContainsToken(req.Header("Connection"), "upgrade") ||
      !ContainsToken(req.Header("Upgrade"), "spdy/3.1")) {
    u.response = PlainError(
        400,
        "unable to upgrade: missing upgrade headers in request: Connection: \"" +
            req.Header("Connection") + "\", Upgrade: \"" + req.Header("Upgrade") + "\"",
        {{"X-Stream-Protocol-Version", u.protocol}});
    u.protocol.clear();
    return u;
  }
  u.ok = true;
  u.response = HttpResponse(101, {{"Connection", "Upgrade"},
                                  {"Upgrade", "SPDY/3.1"},
                                  {"X-Stream-Protocol-Version", u.protocol}});
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
