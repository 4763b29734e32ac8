// SPDX-License-Identifier: Apache-2.0
#pragma once

#include <memory>
#include <string_view>

#include "spdlog/spdlog.h"

namespace berth::core {

// berthd logs to stderr (journald picks it up under systemd). Plugins log through the host
// table into the same sink, tagged with their id.
void InitLogging();
void SetLogLevel(spdlog::level::level_enum level);
spdlog::level::level_enum CurrentLogLevel();
std::shared_ptr<spdlog::logger> PluginLogger(std::string_view plugin_id);

}  // namespace berth::core
