"""A copy's keeper is one process per copy: it loads the containment modules only, not the
drivers, the config or the strategies (the package's names load on first use)."""

from __future__ import annotations

import subprocess
import sys

import harmony.actors.drivers as drivers


def test_the_keeper_loads_no_driver_config_or_strategy() -> None:
    code = (
        "import sys, harmony.actors.drivers.tether_main;"
        "heavy = [m for m in sys.modules if m.startswith(('harmony.config', 'harmony.strategies',"
        " 'harmony.actors.drivers.process', 'harmony.actors.drivers.hooks', 'msgspec', 'pykka'))];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


def test_every_package_name_loads_on_first_use() -> None:
    for name in drivers.__all__:
        assert getattr(drivers, name) is not None
    assert sorted(drivers.__all__) == sorted(drivers._WHERE)
