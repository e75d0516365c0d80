"""chainrule keeps freed heap memory for reuse (backend/memory.py): no page faults per step."""

import os
import subprocess
import sys

import pytest

from chainrule.backend import memory

PROBE = r"""
import resource, sys
import numpy as np
import chainrule  # applies (or, with CHAINRULE_MALLOC=0, skips) the heap settings
from chainrule.backend import memory

def step():  # three 5 MiB temporaries alive at once, then freed: a training step's pattern
    arrays = [np.ones(5 << 18, dtype=np.float32) for _ in range(3)]
    return sum(float(a[-1]) for a in arrays)

step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(memory.STATE["tuned"], resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(env_value):
    env = dict(os.environ, CHAINRULE_MALLOC=env_value)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not memory.STATE["tuned"], reason="glibc's mallopt is not available here")
def test_freed_memory_is_reused_without_page_faults():
    tuned, faults = _probe("1")
    untuned, faults_default = _probe("0")
    assert tuned and not untuned
    # with glibc's defaults the top of the heap is trimmed and faulted back in (about 5,000
    # faults over the five steps here); with the settings the pages stay mapped
    assert faults_default > 1000
    assert faults < 100
