"""The data room's import rule: no ``distributed``; CuPy and Pillow only when used."""

from __future__ import annotations

import json
import subprocess
import sys


def test_importing_the_data_room_loads_no_distributed_cupy_or_pillow():
    code = (
        "import json, sys, bptdask.data\n"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & {'distributed', 'cupy', 'PIL'})))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
