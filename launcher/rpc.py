"""llama.cpp RPC: run one model on this machine's memory plus other machines' (``rpc-server``).

llama.cpp's RPC backend turns each device of a remote ``rpc-server`` into a local ggml device
(``RPC0``, ``RPC1``... in the order the servers are added); the model's layers are then split
over the RPC devices and the local GPU like over several local GPUs. This module is the whole
client side of that, with no protocol of our own:

- :func:`parse_endpoints` reads ``HOST:PORT`` lists (``--rpc a:50052,b:50052``);
- :func:`check_reachable` tells whether a server answers at all (a TCP connect, because
  llama.cpp aborts the whole process when it cannot connect);
- :func:`query_devices` asks each server for its devices and their free/total memory with
  ggml's own RPC client (``ggml_backend_rpc_add_server`` + ``ggml_backend_dev_memory``, bound
  with ctypes) in a spawned child process, so an abort never reaches the caller;
- :func:`machine_with_rpc` adds the remote devices to a :class:`MachineProfile` as pools, and
  :func:`plan_with_rpc` places a model over local and remote devices the way llama.cpp
  assigns layers (``tensor_split`` proportional to each device's budget), returning a
  :class:`~launcher.planning.MemoryPlan` whose ``llama_params()`` carry ``rpc_servers`` and
  ``tensor_split`` for the engine;
- :func:`register_servers` (called in the model host before loading) adds the servers to
  ggml's device registry, which is what llama-server's ``--rpc`` does.

RPC needs llama.cpp built with ``-DGGML_RPC=on`` (``libggml-rpc`` next to ``libllama``):
:func:`rpc_library` finds it without importing llama_cpp; the doctor uses it.
"""

from __future__ import annotations

import ctypes
import dataclasses
import ipaddress
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from launcher.childproc import call_in_child
from launcher.errors import RpcError
from launcher.hardware.backend_query import RPC_REBUILD_FIX as REBUILD_FIX
from launcher.hardware.backend_query import llama_lib_dir, rpc_library
from launcher.hardware.profile import MachineProfile, MemoryPool

if TYPE_CHECKING:
    from launcher.planning import DeviceUse, MemoryPlan, ModelSummary, SpeedEstimate
    from launcher.planning.calibration import CalibrationStore

#: ``rpc-server``'s default port.
DEFAULT_PORT = 50052
#: llama.cpp's ``GGML_RPC_MAX_SERVERS``.
MAX_SERVERS = 16
#: Per token, each remote host costs at least one network round trip (graph compute + result).
RPC_ROUNDTRIP_S = 0.0005
QUERY_TIMEOUT_S = 60.0
# The soname first: wheels hold copies (not symlinks) of libggml.so / .so.0, and only the file
# libllama links against (libggml.so.0) holds the device registry llama.cpp reads.
_GGML_LIB_NAMES = ("libggml.so.0", "libggml.0.dylib", "libggml.so", "libggml.dylib", "ggml.dll")


@dataclass(frozen=True, order=True)
class RpcEndpoint:
    """One ``rpc-server`` address."""

    host: str
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class RpcDevice:
    """One device of an ``rpc-server`` and the memory it reports (bytes)."""

    endpoint: RpcEndpoint
    index: int  # device index on that server
    name: str  # the ggml device name this process will see: "RPC0", "RPC1", ...
    memory_free: int
    memory_total: int
    description: str = ""
    bandwidth_gbps: float | None = None  # unknown unless the user says

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["endpoint"] = str(self.endpoint)
        return d

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RpcDevice:
        d = dict(data)
        d["endpoint"] = parse_endpoints(str(d["endpoint"]))[0]
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# ------------------------------------------------------------------------------ addresses


def parse_endpoints(spec: str | Iterable[str]) -> tuple[RpcEndpoint, ...]:
    """``"a:50052,b:50052"`` (or a list of such strings) -> endpoints, in order.

    A missing port means 50052 (``rpc-server``'s default). Raises :class:`RpcError` for
    anything llama.cpp could not use: empty names, bad ports, IPv6 literals (llama.cpp's
    parser splits at the first colon), duplicates, more than 16 servers.
    """
    parts = [spec] if isinstance(spec, str) else list(spec)
    items = [x.strip() for p in parts for x in p.replace(" ", ",").split(",") if x.strip()]
    if not items:
        raise RpcError("No RPC server given: use HOST:PORT, e.g. 192.168.1.20:50052.")
    out: list[RpcEndpoint] = []
    for item in items:
        host, sep, port_s = item.rpartition(":")
        if not sep:
            host, port_s = item, str(DEFAULT_PORT)
        if ":" in host or host.startswith("["):
            raise RpcError(
                f"'{item}': llama.cpp's RPC client takes a host name or an IPv4 address, "
                "not an IPv6 literal. Use the machine's name or IPv4 address."
            )
        if not host or any(c.isspace() for c in host):
            raise RpcError(f"'{item}' has no host: use HOST:PORT, e.g. 192.168.1.20:50052.")
        try:
            port = int(port_s)
        except ValueError:
            port = -1
        if not 0 < port < 65536:
            raise RpcError(f"'{item}': the port must be a number from 1 to 65535.")
        ep = RpcEndpoint(host, port)
        if ep in out:
            raise RpcError(f"{ep} is listed twice; give each rpc-server once.")
        out.append(ep)
    if len(out) > MAX_SERVERS:
        raise RpcError(f"llama.cpp takes at most {MAX_SERVERS} RPC servers ({len(out)} given).")
    return tuple(out)


def is_loopback(ep: RpcEndpoint) -> bool:
    if ep.host == "localhost":
        return True
    try:
        return ipaddress.ip_address(ep.host).is_loopback
    except ValueError:
        return False


def check_reachable(ep: RpcEndpoint, timeout: float = 3.0) -> None:
    """Raise :class:`RpcError` unless something accepts TCP connections at ``ep``."""
    try:
        with socket.create_connection((ep.host, ep.port), timeout=timeout):
            pass
    except socket.gaierror as exc:
        raise RpcError(f"Cannot resolve '{ep.host}' ({exc.strerror}); check the name.") from exc
    except OSError as exc:
        why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise RpcError(
            f"The RPC server at {ep} does not answer ({why}). Start it on that machine "
            f"(`rpc-server --host 0.0.0.0 --port {ep.port}`) and check the firewall."
        ) from exc


# ------------------------------------------------------------------------------ the library


def require_rpc() -> None:
    """Raise :class:`RpcError` with the rebuild command when llama.cpp lacks RPC."""
    if rpc_library() is None:
        raise RpcError("The installed llama.cpp was built without RPC support. " + REBUILD_FIX)


def _ggml() -> ctypes.CDLL:
    """The ggml library llama.cpp itself uses (its device registry is the one that counts)."""
    import llama_cpp  # noqa: F401  (loads libllama and, through it, its libggml)

    lib_dir = llama_lib_dir()
    for name in _GGML_LIB_NAMES:
        if lib_dir is not None and (lib_dir / name).exists():
            lib = ctypes.CDLL(str(lib_dir / name))
            break
    else:  # llama-cpp-python's own loader knows its platform's naming
        from llama_cpp import _ggml

        lib = _ggml.libggml
    vp, cp = ctypes.c_void_p, ctypes.c_char_p
    sig: dict[str, tuple[Any, list[Any]]] = {
        "ggml_backend_load_all": (None, []),
        "ggml_backend_reg_by_name": (vp, [cp]),
        "ggml_backend_reg_get_proc_address": (vp, [vp, cp]),
        "ggml_backend_register": (None, [vp]),
        "ggml_backend_reg_dev_count": (ctypes.c_size_t, [vp]),
        "ggml_backend_reg_dev_get": (vp, [vp, ctypes.c_size_t]),
        "ggml_backend_dev_name": (cp, [vp]),
        "ggml_backend_dev_description": (cp, [vp]),
        "ggml_backend_dev_memory": (
            None,
            [vp, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_size_t)],
        ),
    }
    for fn, (res, args) in sig.items():
        f = getattr(lib, fn)
        f.restype, f.argtypes = res, args
    return lib


def register_servers(endpoints: Sequence[RpcEndpoint | str]) -> list[dict[str, Any]]:
    """Add the servers to ggml's device registry in THIS process (what ``--rpc`` does).

    Called by the model host before loading: llama.cpp then places layers on the RPC devices
    (first in its device list). Returns each device as ``{endpoint, index, name,
    description, memory_free, memory_total}``. Checks reachability first because ggml aborts
    the process when it cannot connect.
    """
    eps = [e if isinstance(e, RpcEndpoint) else parse_endpoints(e)[0] for e in endpoints]
    require_rpc()
    for ep in eps:
        check_reachable(ep)
    lib = _ggml()
    reg = lib.ggml_backend_reg_by_name(b"RPC")
    if not reg:  # builds with dynamically loaded backends (GGML_BACKEND_DL) register late
        lib.ggml_backend_load_all()
        reg = lib.ggml_backend_reg_by_name(b"RPC")
    if not reg:
        raise RpcError("llama.cpp's RPC backend did not register. " + REBUILD_FIX)
    addr = lib.ggml_backend_reg_get_proc_address(reg, b"ggml_backend_rpc_add_server")
    if not addr:
        raise RpcError(
            "This llama.cpp's RPC backend has no ggml_backend_rpc_add_server; "
            "update llama-cpp-python."
        )
    add_server = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_char_p)(addr)
    devices: list[dict[str, Any]] = []
    for ep in eps:
        server_reg = add_server(str(ep).encode())
        if not server_reg:
            raise RpcError(f"The RPC server at {ep} reports no devices; restart rpc-server.")
        lib.ggml_backend_register(server_reg)
        for i in range(lib.ggml_backend_reg_dev_count(server_reg)):
            dev = lib.ggml_backend_reg_dev_get(server_reg, i)
            free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
            lib.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
            devices.append(
                {
                    "endpoint": str(ep),
                    "index": i,
                    "name": (lib.ggml_backend_dev_name(dev) or b"").decode(),
                    "description": (lib.ggml_backend_dev_description(dev) or b"").decode(),
                    "memory_free": int(free.value),
                    "memory_total": int(total.value),
                }
            )
    return devices


def _query_child(endpoints: list[str]) -> dict[str, Any]:  # pragma: no cover - child
    """Spawned child: register the servers and report their devices (or the reason not)."""
    try:
        return {"devices": register_servers(endpoints)}
    except RpcError as exc:
        return {"error": str(exc)}


def query_devices(
    endpoints: Sequence[RpcEndpoint], timeout: float = QUERY_TIMEOUT_S
) -> tuple[RpcDevice, ...]:
    """Each server's devices and memory, as ggml's RPC client reports them.

    Runs in a spawned child process (it also works in the PyInstaller bundle): a server that
    accepts the connection but fails the handshake makes ggml abort, which must not take the
    caller down. Device names follow the order of ``endpoints``, as in the model host.
    """
    require_rpc()
    for ep in endpoints:
        check_reachable(ep)
    answer = call_in_child(
        _query_child,
        ([str(e) for e in endpoints],),
        name="rpc-query",
        timeout=timeout,
        tail_lines=2,
    )
    result = answer.value
    if isinstance(result, dict) and "error" in result:
        raise RpcError(str(result["error"]))
    if not isinstance(result, dict) or not isinstance(result.get("devices"), list):
        raise RpcError(
            "Could not talk to the RPC server(s) "
            f"{', '.join(map(str, endpoints))}: {' / '.join(answer.stderr_tail) or 'no answer'}. "
            "Both sides must run the same llama.cpp version (the RPC protocol is checked "
            "at connect); rebuild rpc-server from the same source."
        )
    by_name = {str(e): e for e in endpoints}
    return tuple(
        RpcDevice(
            endpoint=by_name[d["endpoint"]],
            index=int(d["index"]),
            name=str(d["name"]),
            memory_free=int(d["memory_free"]),
            memory_total=int(d["memory_total"]),
            description=str(d.get("description", "")),
        )
        for d in result["devices"]
    )


# ------------------------------------------------------------------------------ planning


def machine_with_rpc(machine: MachineProfile, devices: Sequence[RpcDevice]) -> MachineProfile:
    """``machine`` with one extra ``vram`` pool per RPC device (after the local pools).

    Local planning is unchanged by these pools (the planner uses the first GPU pool, which
    stays the local one); :func:`plan_with_rpc` uses them, and the UI can show them.
    """
    extra = tuple(
        MemoryPool(
            name=f"RPC: {d.endpoint}" + (f" #{d.index}" if d.index else ""),
            kind="vram",
            total=d.memory_total,
            available=d.memory_free,
            gpu_usable=d.memory_free,
            device=d.name,
            bandwidth_gbps=d.bandwidth_gbps,
            notes=(f"remote memory over llama.cpp RPC ({d.endpoint}, device {d.index})",),
        )
        for d in devices
    )
    return dataclasses.replace(machine, pools=(*machine.pools, *extra))


def _split_device(il: int, i_gpu_start: int, act: int, splits: Sequence[float]) -> int:
    """llama.cpp's ``get_layer_buft_list``: which offload device holds layer ``il``."""
    x = (il - i_gpu_start) / act
    for i, s in enumerate(splits):  # std::upper_bound
        if s > x:
            return i
    return len(splits) - 1


def plan_with_rpc(
    summary: ModelSummary,
    machine: MachineProfile,
    devices: Sequence[RpcDevice],
    ctx: int,
    kv_type: str = "f16",
    flash_attn: bool = True,
    n_ubatch: int = 512,
    gpu_layers: int | None = None,
    calibration: CalibrationStore | None = None,
) -> MemoryPlan:
    """Plan ``summary`` over this machine plus the RPC ``devices`` (formula estimate).

    The offload devices are ordered as llama.cpp orders them (RPC devices first, then the
    local GPU); layers are split in proportion to each device's budget (free memory less
    1 GiB), which the plan passes as ``tensor_split`` so llama.cpp does the same. Each
    device's share is checked against its own budget; ``gpu_layers`` forces the number of
    blocks offloaded (above the block count: the output layer too), as in :func:`plan`.
    """
    from launcher import planning as est

    if not devices:
        return est.plan(
            summary, machine, ctx, kv_type, flash_attn, n_ubatch, gpu_layers, calibration
        )
    base = est.plan(summary, machine, ctx, kv_type, flash_attn, n_ubatch, 0, calibration)
    s, ctx = summary, base.context
    kv_type, type_v = base.kv_type, base.type_v
    kv_layers = est.layer_kv_bytes(s, ctx, kv_type, flash_attn, n_ubatch)
    b = est.budget(machine)
    names = [d.name for d in devices]
    budgets = [max(0, d.memory_free - est.HEADROOM_GPU) for d in devices]
    if b.gpu_name is not None:
        names.append(b.gpu_name)
        budgets.append(b.gpu_budget)
    total_budget = sum(budgets)
    weights = [x / total_budget for x in budgets] if total_budget else [1.0] * len(budgets)
    splits: list[float] = []
    acc = 0.0
    for w in weights:
        acc += w
        splits.append(acc / sum(weights))
    n = s.n_layers

    def place(ngl: int) -> dict[str, DeviceUse]:
        cpu = est.DeviceUse(weights=s.input_bytes)
        out: dict[str, DeviceUse] = {"CPU": cpu}
        offload = {name: est.DeviceUse() for name in names}
        i_gpu_start = max(n + 1 - ngl, 0)
        act = min(ngl, n + 1)
        holder = cpu
        for il in range(n + 1):
            holder = (
                cpu
                if il < i_gpu_start
                else offload[names[_split_device(il, i_gpu_start, act, splits)]]
            )
            if il < n:
                holder.weights += s.layer_bytes[il]
                holder.kv += kv_layers[il]
        out_gpu = ngl >= 1
        if out_gpu:  # the output layer (or the tied embedding's copy) on the last device
            holder.weights += s.output_bytes + (s.tied_output_bytes if s.tied_output else 0)
            cpu.compute = est.compute_bytes_estimate(s, ctx, flash_attn, n_ubatch, "cpu_with_gpu")
        else:
            cpu.weights += s.output_bytes
            cpu.compute = est.compute_bytes_estimate(s, ctx, flash_attn, n_ubatch, "all")
        for name, d in offload.items():
            if d.weights or d.kv:
                phase: Literal["gpu_full", "gpu_partial"] = (
                    "gpu_full" if d is holder and out_gpu else "gpu_partial"
                )
                d.compute = est.compute_bytes_estimate(s, ctx, flash_attn, n_ubatch, phase)
                out[name] = d
        return out

    def fits(devs: dict[str, DeviceUse]) -> bool:
        for name, budget in zip(names, budgets, strict=True):
            if name in devs and devs[name].total > budget:
                return False
        cpu = devs["CPU"].total
        if b.shared and b.gpu_name in devs:
            cpu += devs[b.gpu_name].total
        return cpu <= b.ram_budget

    if gpu_layers is not None:
        blocks = max(0, min(gpu_layers, n))
        ngl = blocks + 1 if gpu_layers > n else blocks
        devs = place(ngl)
        ok = fits(devs)
    else:
        ngl = n + 1
        devs = place(ngl)
        while not fits(devs) and ngl > 0:
            ngl -= 1
            devs = place(ngl)
        ok = fits(devs)
    blocks = max(0, ngl - 1) if ngl <= n else n
    if not ok:
        verdict: est.Verdict = "no_fit"
    elif ngl == n + 1:
        verdict = "full_gpu"
    else:
        verdict = "partial" if ngl > 0 else "cpu"
    for name, d in devs.items():
        d.budget = b.ram_budget if name == "CPU" else budgets[names.index(name)]
    used = [names[i] for i in range(len(names)) if names[i] in devs]
    notes = list(base.notes)
    notes.append(
        f"Split over {len(used)} device(s) ({', '.join(used) or 'none'}) and the CPU; remote "
        f"devices over llama.cpp RPC: {', '.join(sorted({str(d.endpoint) for d in devices}))}."
    )
    rpc_names = {d.name for d in devices}
    if len(used) > 1 or (used and used[0] in rpc_names):
        notes.append(
            "Speed assumes the RPC machines are like this one, plus a network round trip per token."
        )
    plan = dataclasses.replace(
        base,
        weights_bytes=sum(d.weights for d in devs.values()),
        kv_bytes=sum(d.kv for d in devs.values()),
        compute_bytes=sum(d.compute for d in devs.values()),
        per_device=devs,
        verdict=verdict,
        gpu_layers=blocks,
        output_on_gpu=ngl >= 1,
        max_context_full_gpu=0,
        max_context=0,
        use_mmap=True,
        type_v=type_v,
        notes=notes,
        rpc_servers=tuple(dict.fromkeys(str(d.endpoint) for d in devices)),
        tensor_split=tuple(round(w, 6) for w in weights),
    )
    plan.speed = _speed(s, machine, plan, devs, devices)
    return plan


def _speed(
    s: ModelSummary,
    machine: MachineProfile,
    plan: MemoryPlan,
    devs: dict[str, DeviceUse],
    devices: Sequence[RpcDevice],
) -> SpeedEstimate:
    """Decode: bytes each device reads per token at its bandwidth, plus one round trip per
    remote host; remote bandwidth is assumed like this machine's GPU (or RAM) unless known.
    Prefill is the local estimate (it is compute-bound on each device in turn)."""
    from launcher import planning as est
    from launcher.planning import speed

    if plan.verdict == "no_fit":
        return est.SpeedEstimate(0.0, 0.0, "estimated", "does not fit in the combined memory")
    b = est.budget(machine)
    local_gpu, _ = est.bandwidth(machine, b.gpu_pool, True) if b.gpu_pool else (0.0, False)
    ram_bw, _ = est.bandwidth(machine, b.ram_pool, False)
    ram_bw = min(ram_bw, speed.CPU_BANDWIDTH_PER_CORE_GBPS * max(1, machine.cpu_cores))
    remote_default = local_gpu or ram_bw
    bw = {d.name: d.bandwidth_gbps or remote_default for d in devices}
    if b.gpu_name:
        bw[b.gpu_name] = local_gpu
    moe = 1 if s.n_expert > 0 and s.n_expert_used > 0 else 0
    cls = est.device_class(machine)
    eff_gpu = speed.EFFICIENCY.get(cls, speed.EFFICIENCY["other_gpu"])[moe]
    eff_cpu = speed.EFFICIENCY["cpu"][moe]
    t = speed.PER_TOKEN_OVERHEAD_S
    hosts = {str(d.endpoint) for d in devices if d.name in devs}
    t += RPC_ROUNDTRIP_S * len(hosts)
    for name, d in devs.items():
        read = d.weights + d.kv // 2  # KV at about half depth on average
        if name == "CPU":
            read -= s.input_bytes  # only one embedding row per token is read
            t += max(0, read) / (eff_cpu * ram_bw * 1e9)
        else:
            eff = eff_gpu if local_gpu else eff_cpu  # remote assumed like this machine
            t += read / (eff * bw[name] * 1e9)
    # prefill: every layer still runs once per ubatch, on a device like this machine's best
    as_local = dataclasses.replace(
        plan,
        verdict="full_gpu" if b.gpu_name else "cpu",
        gpu_layers=s.n_layers if b.gpu_name else 0,
        output_on_gpu=bool(b.gpu_name),
    )
    prefill = est.estimate_speed(s, machine, as_local).prefill_tokens_per_s
    return est.SpeedEstimate(
        round(1.0 / t, 2),
        prefill,
        "estimated",
        f"over RPC ({len(hosts)} remote host(s)): per-device reads at "
        f"{remote_default:.0f} GB/s assumed for remote devices, "
        f"{RPC_ROUNDTRIP_S * 1e3:.1f} ms network round trip per host per token",
    )


# ------------------------------------------------------------------------------ CLI helpers


def resolve_rpc(spec: str) -> tuple[RpcDevice, ...]:
    """``--rpc`` value -> devices: ``HOST:PORT,...`` (asked live) or a saved
    ``spark-launcher rpc check --json`` file (plan for servers that are not running now)."""
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".json":
        import json

        try:
            data = json.loads(path.read_text())
            return tuple(
                RpcDevice.from_json(d) for s in data["servers"] for d in s.get("devices", ())
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RpcError(
                f"Cannot read RPC devices from {path} ({exc}); save one with "
                "`spark-launcher rpc check HOST:PORT... --json > FILE`."
            ) from exc
    return query_devices(parse_endpoints(spec))


def load_settings_with_rpc(
    path: Path, params: Any, spec: str, gpu_layers: int | None
) -> tuple[Any, MemoryPlan]:
    """``chat``/``bench`` with ``--rpc``: the engine parameters and plan spanning the servers.

    ``gpu_layers`` (``--gpu-layers``) forces the offloaded blocks (-1: all); otherwise as many
    as the local and remote memory hold.
    """
    from launcher.gguf.reader import read_model
    from launcher.hardware import probe
    from launcher.planning import ModelSummary

    devices = resolve_rpc(spec)
    summary = ModelSummary.from_header(read_model(path))
    forced = (
        None if gpu_layers is None else (summary.n_layers + 1 if gpu_layers < 0 else gpu_layers)
    )
    p = plan_with_rpc(
        summary,
        probe(),
        devices,
        ctx=params.n_ctx,
        kv_type=params.type_k,
        flash_attn=params.flash_attn is not False,
        gpu_layers=forced,
    )
    return (
        dataclasses.replace(
            params,
            n_gpu_layers=p.n_gpu_layers,
            rpc_servers=",".join(p.rpc_servers),
            tensor_split=p.tensor_split,
        ),
        p,
    )
