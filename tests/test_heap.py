"""seqloom.heap: glibc's malloc keeps freed blocks for reuse, unless the user tuned it or opted out."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import resource, torch
from seqloom.heap import keep_freed_memory
changed = keep_freed_memory()
again = keep_freed_memory()
torch.set_num_threads(1)
start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
kept = torch.ones(1)
for step in range(100):  # a decoding loop's pattern: a state that grows, megabyte-sized temporaries
    grown = torch.ones(16_000 * (step + 1))
    lprobs = torch.ones(160, 2056)
    total = lprobs + 1
    kept = grown
    del lprobs, total
print(changed, again, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start)
"""


def run(env: dict[str, str], script: str = SCRIPT) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if not (k.startswith("MALLOC_") or k == "GLIBC_TUNABLES")}
    clean.pop("SEQLOOM_KEEP_FREED_MEMORY", None)
    proc = subprocess.run([sys.executable, "-c", script], env={**clean, **env}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def on_glibc() -> bool:
    try:
        return sys.platform.startswith("linux") and os.confstr("CS_GNU_LIBC_VERSION").startswith("glibc")
    except (ValueError, OSError):
        return False


@pytest.mark.skipif(not on_glibc(), reason="mallopt is glibc's")
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    changed, again, faults = run({})
    assert (changed, again) == ("True", "False")  # once per process
    default_faults = int(run({"SEQLOOM_KEEP_FREED_MEMORY": "0"})[2])
    faults = int(faults)
    # glibc's defaults give the freed temporaries back to the kernel and fault them in again
    assert default_faults > 3 * faults, (default_faults, faults)


def test_the_user_keeps_control():
    script = "from seqloom.heap import keep_freed_memory; print(keep_freed_memory())"
    for env in ({"SEQLOOM_KEEP_FREED_MEMORY": "0"}, {"MALLOC_TRIM_THRESHOLD_": "1000000"},
                {"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=1000000"}):  # fmt: skip
        assert run(env, script) == ["False"], env
