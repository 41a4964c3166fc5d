"""The tests' BMCs: `sushy-emulator --fake` with a boot override that a boot uses up.

gpufleet.lab.boot_override adds what real BMCs do with BootSourceOverrideEnabled
(the lab's emulator has it too): `Once` turns `Disabled` at the next boot, and
the override can be cleared on its own. Its state goes to the file named by
GPUFLEET_EMU_BOOT_STATE. With GPUFLEET_EMU_BIOS=1 the fake driver also gets the
Bios resource of redfish_bios_emulator.py. Run like `sushy-emulator`:
`python redfish_emulator.py --fake --config ...`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from sushy_tools.emulator import main

from gpufleet.lab import boot_override

if os.environ.get("GPUFLEET_EMU_BIOS") == "1":
    import redfish_bios_emulator  # noqa: F401  (adds BIOS to the fake driver and its route)

if __name__ == "__main__":
    boot_override.install(main.app, Path(os.environ["GPUFLEET_EMU_BOOT_STATE"]))
    sys.exit(main.main())
