"""Record this machine's hardware readings for replay: ``python -m launcher.hardware.record``.

Prints (or writes to the file given as the only argument) the readings of every adapter in
the format :class:`launcher.hardware.adapters.ReplayAdapters` replays, as stored in
``tests/core/data/hardware/``. Attach such a file to a bug report about wrong memory pools.
"""

from __future__ import annotations

import json
import sys

from launcher.fsutil import atomic_write_json
from launcher.hardware.adapters import record


def main(argv: list[str]) -> int:
    readings = record()
    if argv:
        atomic_write_json(argv[0], readings)
    else:
        print(json.dumps(readings, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
