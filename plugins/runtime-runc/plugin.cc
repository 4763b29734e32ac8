// SPDX-License-Identifier: Apache-2.0
// OCI runtime handlers for runc-compatible binaries (runc, crun) through berth-shim or any
// shim v2 binary (docs/shim.md §6). Registration only: see runc_runtime.h.
#include "berth/plugin.hpp"

#include "plugins/runtime-runc/runc_runtime.h"

BERTH_PLUGIN(berth::runc::RuncRuntime, "io.berth.runtime.runc", BERTH_KIND_RUNTIME, "0.1.0",
             "runc/crun runtime handlers over berth-shim (shim v2)", "{}", BERTH_NO_REQUIRES)
