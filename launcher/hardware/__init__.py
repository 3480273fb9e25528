"""What this machine is: CPU, RAM, GPUs, unified memory, llama.cpp backend; live memory.

``probe()`` returns a ``MachineProfile``; ``MemorySampler`` takes live snapshots for the gauge.
"""

from launcher.hardware.profile import GPUInfo, MachineProfile, MemoryPool

__all__ = ["GPUInfo", "MachineProfile", "MemoryPool"]
