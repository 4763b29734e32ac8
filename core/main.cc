// SPDX-License-Identifier: Apache-2.0
#include "core/daemon.h"

int main(int argc, char** argv) { return berth::core::DaemonMain(argc, argv); }
