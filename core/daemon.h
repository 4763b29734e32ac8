// SPDX-License-Identifier: Apache-2.0
#pragma once

namespace berth::core {

// berthd's whole life: flags, configuration, plugins, signals. Returns the exit code.
int DaemonMain(int argc, char** argv);

}  // namespace berth::core
