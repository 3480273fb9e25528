"""What this machine is: CPU, RAM, GPUs, unified memory, llama.cpp backend; live memory.

``probe()`` returns a ``MachineProfile``; ``MemorySampler`` takes live snapshots for the gauge;
``run_checks()`` (in ``launcher.hardware.doctor``) lists problems with their fixes.
"""

from launcher.hardware.detect import probe
from launcher.hardware.profile import GPUInfo, MachineProfile, MemoryPool
from launcher.hardware.sampler import MemorySampler, MemorySnapshot, PoolSnapshot

__all__ = [
    "GPUInfo",
    "MachineProfile",
    "MemoryPool",
    "MemorySampler",
    "MemorySnapshot",
    "PoolSnapshot",
    "probe",
]
