// SPDX-License-Identifier: Apache-2.0
#include "core/log.h"

#include <atomic>
#include <mutex>
#include <string>

#include "spdlog/sinks/stdout_sinks.h"

namespace berth::core {
namespace {

std::shared_ptr<spdlog::sinks::stderr_sink_mt>& Sink() {
  static auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  return sink;
}

std::atomic<int> g_level{spdlog::level::info};

}  // namespace

void InitLogging() {
  auto logger = std::make_shared<spdlog::logger>("berthd", Sink());
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %^%l%$ [%n] %v", spdlog::pattern_time_type::utc);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(logger);
  SetLogLevel(static_cast<spdlog::level::level_enum>(g_level.load()));
}

void SetLogLevel(spdlog::level::level_enum level) {
  g_level = level;
  spdlog::apply_all([level](const std::shared_ptr<spdlog::logger>& l) { l->set_level(level); });
  spdlog::set_level(level);
}

spdlog::level::level_enum CurrentLogLevel() {
  return static_cast<spdlog::level::level_enum>(g_level.load());
}

std::shared_ptr<spdlog::logger> PluginLogger(std::string_view plugin_id) {
  static std::mutex mu;
  std::lock_guard<std::mutex> lock(mu);
  std::string name(plugin_id);
  if (auto existing = spdlog::get(name)) return existing;
  auto logger = std::make_shared<spdlog::logger>(name, Sink());
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%fZ %^%l%$ [%n] %v", spdlog::pattern_time_type::utc);
  logger->flush_on(spdlog::level::warn);
  logger->set_level(CurrentLogLevel());
  spdlog::register_logger(logger);
  return logger;
}

}  // namespace berth::core
