"""DICOM TLS ingest benchmark: N realistic CT slices (512x512, 16-bit) sent with a few concurrent
associations (dcmtk ``storescu`` over TLS, verifying the host certificate) to the application as the
host runs it (the rendered compose file on Docker, :mod:`orthweb_dev.containers`): through Docker's
published port to nginx's DICOM TLS listener, which passes each association on to whatever listens
on Orthanc's port (127.0.0.1:4242) in the namespace nginx and Orthanc share. These receivers in turn:

1. Orthweb: the Orthanc container with the rendered configuration, index and images in PostgreSQL
   over TLS (PostgreSQL with fsync on, as RDS);
2. transport limit, C: dcmtk ``storescp --ignore`` (receives every byte, stores nothing), in
   Orthanc's place (the Orthanc container stopped, the receiver started in nginx's namespace);
3. transport limit, Python: a pynetdicom SCP that drops every instance, in Orthanc's place;
4. stock Orthanc: Debian's Orthanc with default settings (SQLite index, files on disk), in
   Orthanc's place.

With ``--orthancs N`` (N >= 2) a fifth receiver joins the same runs: N hosts with the rendered
configuration of a multi-host deployment on one PostgreSQL, behind the TCP balancer that stands in
for the load balancer (:mod:`orthweb_dev.fleet_harness`).

Each leg runs ``--runs`` times; the table has every run and the median. Usage (as root, as the
container harness needs): ``.venv/bin/python bench/ingest.py [--instances 400] [--associations 4]
[--runs 3] [--orthancs 2]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from orthweb.bootstrap import ORTHANC_DICOM_PORT
from orthweb.settings import Settings
from orthweb_dev.containers import ENGINE_CLIENTS, ContainerHost, container_host
from orthweb_dev.dicom import make_instance
from orthweb_dev.fleet_harness import FleetHost, fleet_host
from orthweb_dev.harness import AppHostError
from orthweb_dev.proc import port_open, stop_process, wait_until

# The benchmark's sender, a DICOM peer allowed to store from where this machine's connections reach
# nginx (the engine's networks).
BENCH_AET = "BENCH"
SETTINGS = Settings(dicom_peers=[{"aet": BENCH_AET, "cidr": ENGINE_CLIENTS, "permissions": ["store"]}])
# The same with several hosts (images in PostgreSQL: the S3 plugin is not in Debian).
FLEET = Settings(hosts=2, db_multi_az=True, endpoints_in_all_azs=True, dicom_peers=SETTINGS.dicom_peers)


def write_instances(directory: Path, count: int) -> tuple[list[Path], int]:
    """``count`` CT slices of one study, as files; their total size in bytes."""
    directory.mkdir()
    first = make_instance("bench-000", seed=0)
    paths, total = [], 0
    for i in range(count):
        sample = first if i == 0 else make_instance(f"bench-{i:03d}", seed=i, study=first.study)
        path = directory / f"{i:04d}.dcm"
        path.write_bytes(sample.data)
        paths.append(path)
        total += len(sample.data)
    return paths, total


def send(app: ContainerHost | FleetHost, files: list[Path], associations: int) -> float:
    """Send ``files`` over ``associations`` parallel storescu TLS associations; the wall time in s."""
    shares = [files[i::associations] for i in range(associations)]
    cmd = ["storescu", "--anonymous-tls", "--add-cert-file", str(app.server_cert), "-aec", "ORTHANC", "-aet", BENCH_AET]
    start = time.monotonic()
    procs = [
        subprocess.Popen(
            [*cmd, "127.0.0.1", str(app.ports["nginx_dicom"]), *map(str, share)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for share in shares
    ]
    outputs = [p.communicate(timeout=900)[0] for p in procs]
    elapsed = time.monotonic() - start
    for p, out in zip(procs, outputs, strict=True):
        if p.returncode != 0:
            raise AppHostError(f"storescu failed ({p.returncode}):\n{out.decode(errors='replace')[-2000:]}")
    return elapsed


# A receiver that accepts every C-STORE and drops it undecoded; one process, one thread per association.
DISCARD_SCP = """
import sys
from pynetdicom import AE, evt, AllStoragePresentationContexts, ALL_TRANSFER_SYNTAXES
ae = AE(ae_title="ORTHANC")
ae.maximum_pdu_size = 0
for cx in AllStoragePresentationContexts:
    ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
ae.start_server(("127.0.0.1", int(sys.argv[1])), evt_handlers=[(evt.EVT_C_STORE, lambda event: 0x0000)])
"""


def in_orthancs_place(app: ContainerHost, name: str, cmd: list[str], log: Path) -> subprocess.Popen[bytes]:
    """``cmd`` run in nginx's network namespace, where it listens on Orthanc's port in Orthanc's
    place (the Orthanc container stopped first): nginx, its configuration and Docker's published
    port stay in the path, as for Orthanc."""
    app.stop_orthanc()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["nsenter", f"--net=/proc/{app.pid('nginx')}/ns/net", "--", *cmd],
            stdout=out,
            stderr=subprocess.STDOUT,
            # DCMTK leaves Nagle on otherwise, and the limit would measure delayed ACKs (RESULTS.md).
            env={**os.environ, "TCP_NODELAY": "1"},
        )
    wait_until(name, lambda: app.in_network_namespace(lambda: port_open(ORTHANC_DICOM_PORT)), log=log, proc=proc)
    return proc


def start_discard(app: ContainerHost, root: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-c", DISCARD_SCP, str(ORTHANC_DICOM_PORT)]
    return in_orthancs_place(app, "discarding SCP", cmd, root / "discard.log")


def start_storescp(app: ContainerHost, root: Path) -> subprocess.Popen[bytes]:
    """dcmtk's receiver in C: accepts every C-STORE, one process per association, stores nothing."""
    cmd = ["storescp", "--ignore", "--fork", "+xa", "-aet", "ORTHANC", str(ORTHANC_DICOM_PORT)]
    return in_orthancs_place(app, "storescp", cmd, root / "storescp.log")


def start_stock_orthanc(app: ContainerHost, root: Path) -> subprocess.Popen[bytes]:
    """Orthanc with its defaults; only its ports and directories set (it needs somewhere to write)."""
    conf = root / "stock.json"
    shutil.rmtree(root / "stock-db", ignore_errors=True)
    settings = {"DicomPort": ORTHANC_DICOM_PORT, "HttpPort": 8042, "StorageDirectory": str(root / "stock-db")}
    conf.write_text(json.dumps({**settings, "IndexDirectory": str(root / "stock-db")}))
    return in_orthancs_place(app, "stock Orthanc", ["Orthanc", str(conf)], root / "stock-orthanc.log")


# Processes whose CPU time the profile reports, by the name in /proc/PID/stat.
PROFILED = ("Orthanc", "postgres", "nginx", "docker-proxy", "storescu", "storescp", "python")


def cpu_seconds(roots: set[int]) -> tuple[dict[str, float], float, float]:
    """(CPU seconds so far of this benchmark's processes, by PROFILED name: the descendants of
    ``roots`` and of this process; busy and total seconds of the whole machine from /proc/stat).
    Processes that ended are missing: compare short intervals."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[str, int, float]] = {}  # pid -> (name, parent, cpu seconds)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        stats[int(proc.name)] = (name, int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    ours = {os.getpid(), *roots}
    grew = True
    while grew:
        grown = {pid for pid, (_, parent, _) in stats.items() if parent in ours} - ours
        grew = bool(grown)
        ours |= grown
    by_name: dict[str, float] = {}
    for pid in ours - {os.getpid()}:
        name, _, seconds = stats.get(pid, ("", 0, 0.0))
        key = next((p for p in PROFILED if name.startswith(p)), None)
        if key:
            by_name[key] = by_name.get(key, 0.0) + seconds
    cpu = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = cpu[3] + cpu[4]
    return by_name, (sum(cpu) - idle) / tick, sum(cpu) / tick


def profiled_roots(target: ContainerHost | FleetHost) -> set[int]:
    """The processes whose descendants the profile counts, besides this one: PostgreSQL's
    postmaster, the containers' first processes, and the engine (its docker-proxy processes)."""
    hosts = target.hosts if isinstance(target, FleetHost) else [target]
    roots = {int((target.pg / "data" / "postmaster.pid").read_text().split()[0])}
    roots |= {host.pid(service) for host in hosts for service in ("nginx", "orthanc") if host.running()}
    engine = subprocess.run(["pidof", "dockerd"], capture_output=True, text=True, check=False).stdout.split()
    return roots | {int(pid) for pid in engine}


def count_orthweb_instances(app: ContainerHost | FleetHost) -> int:
    return int(app.psql("SELECT count(*) FROM storagearea WHERE type = 1"))


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line)
    return f"{os.cpu_count()} CPUs ({cpu}), {mem_kb / 1024 / 1024:.1f} GiB RAM, {platform.platform()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=400)
    parser.add_argument("--associations", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--orthancs", type=int, default=1, help="also N Orthancs behind the upstream (N >= 2)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="orthweb-bench-"))
    results: dict[str, list[float]] = {}
    profiles: dict[str, tuple[dict[str, float], float, float]] = {}
    try:
        files, total = write_instances(work / "instances", args.instances)
        mb = total / 1e6
        sets = iter(range(1_000_000))

        def fresh() -> list[Path]:
            """New instances (new UIDs): Orthanc ignores an instance it already holds."""
            directory = work / f"set-{next(sets)}"
            return write_instances(directory, args.instances)[0]

        with contextlib.ExitStack() as stack:
            app = stack.enter_context(container_host(SETTINGS))
            fleet = stack.enter_context(fleet_host(args.orthancs, FLEET)) if args.orthancs > 1 else None
            receiver: subprocess.Popen[bytes] | None = None

            def orthweb_leg() -> None:
                if not app.running():
                    app.start_orthanc()

            def other(start: Callable[[ContainerHost, Path], subprocess.Popen[bytes]]) -> Callable[[], None]:
                def setup() -> None:
                    nonlocal receiver
                    receiver = start(app, work)

                return setup

            legs: list[tuple[str, Callable[[], None], bool, ContainerHost | FleetHost]] = [
                ("Orthweb (the rendered compose file, one host)", orthweb_leg, True, app),
                ("transport limit, C (nginx TLS -> storescp --ignore)", other(start_storescp), False, app),
                ("transport limit, Python (nginx TLS -> pynetdicom, dropped)", other(start_discard), False, app),
                ("stock Orthanc (defaults: SQLite + files)", other(start_stock_orthanc), True, app),
            ]
            if fleet is not None:
                name = f"Orthweb, {args.orthancs} hosts behind the balancer (one PostgreSQL)"
                legs.append((name, lambda: None, True, fleet))
            # Interleaved (each run visits every receiver), so that a change in the machine's
            # load (other people's work) affects every receiver alike.
            for _ in range(args.runs):
                for name, setup, store, target in legs:
                    setup()
                    roots = profiled_roots(target)
                    batch = fresh() if store else files
                    before = count_orthweb_instances(target)
                    cpu_before, busy_before, span_before = cpu_seconds(roots)
                    results.setdefault(name, []).append(send(target, batch, args.associations))
                    cpu_after, busy_after, span_after = cpu_seconds(roots)
                    if name not in profiles:  # the first run of each leg
                        used = {k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after}
                        profiles[name] = (used, busy_after - busy_before, span_after - span_before)
                    stored = count_orthweb_instances(target) - before
                    if name.startswith("Orthweb") and stored != args.instances:
                        raise AppHostError(f"{name}: stored {stored} of {args.instances} instances")
                    if batch is not files:
                        shutil.rmtree(batch[0].parent)
                    stop_process(receiver)
                    receiver = None
    finally:
        shutil.rmtree(work, ignore_errors=True)

    median = {name: statistics.median(runs) for name, runs in results.items()}
    orthweb, c_limit, py_limit, stock = list(median.values())[:4]
    print(f"\n{args.instances} CT instances (512x512, 16-bit), {mb:.1f} MB, {args.associations} TLS associations,")
    print(f"{args.runs} runs per receiver, interleaved (instances/s each, then the median's MB/s)")
    print(f"machine: {machine()}\n")
    print("| receiver | instances/s, each run | median instances/s | median MB/s |")
    print("| --- | --- | ---: | ---: |")
    for name, runs in results.items():
        each = ", ".join(f"{args.instances / s:.1f}" for s in runs)
        print(f"| {name} | {each} | {args.instances / median[name]:.1f} | {mb / median[name]:.1f} |")
    print(f"\nOrthweb / transport limit (C):      {c_limit / orthweb:.2f}x (target >= 0.5x)")
    print(f"Orthweb / transport limit (Python): {py_limit / orthweb:.2f}x")
    print(f"Orthweb / stock Orthanc:            {stock / orthweb:.2f}x (target >= 1.0x)")
    if len(median) > 4:
        several = list(median.values())[4]
        print(f"{args.orthancs} hosts / 1 host:                  {orthweb / several:.2f}x (same machine, same runs)")
    print("\nWhere the time goes (first run of each leg): CPU seconds of this benchmark's processes,")
    print("and how busy the whole machine was (other users' work included; 100% = every CPU busy)\n")
    print("| receiver | wall s | " + " | ".join(PROFILED) + " | machine busy |")
    print("| --- | ---: | " + " | ".join("---:" for _ in PROFILED) + " | ---: |")
    for name, (used, busy, span) in profiles.items():
        cells = " | ".join(f"{used.get(p, 0.0):.1f}" for p in PROFILED)
        print(f"| {name} | {results[name][0]:.1f} | {cells} | {100 * busy / span:.0f}% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
