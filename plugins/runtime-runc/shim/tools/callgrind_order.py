#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
# Prints the functions of callgrind output files (mangled; run callgrind with
# --demangle=no) in order of first appearance: the body of berth-shim.order.
# Usage: callgrind_order.py <serve process file> [<start process file>...]
import re
import sys

seen = set()
for path in sys.argv[1:]:
    with open(path) as f:
        for line in f:
            m = re.match(r"^c?fn=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
            if not m or not m.group(2):
                continue
            name = m.group(2).strip().split("'")[0]
            if name not in seen:
                seen.add(name)
                print(name)
