"""DICOM TLS ingest benchmark: N realistic CT slices (512x512, 16-bit) sent with a few concurrent
associations (dcmtk ``storescu`` over TLS, verifying the host certificate) through the rendered
nginx DICOM TLS listener, to these receivers in turn:

1. Orthweb: Orthanc with the rendered orthanc.json, index and images in PostgreSQL over TLS
   (PostgreSQL with fsync on, as RDS), reached by nginx on loopback (the design);
2. the same with the internal hop in DICOM TLS instead (Orthanc ``DicomTlsEnabled`` with a
   certificate from a CA made here, nginx presenting a client certificate and verifying Orthanc's):
   the alternative docs/host.md weighs;
3. transport limit, C: dcmtk ``storescp --ignore`` (receives every byte, stores nothing; it binds
   all interfaces and only runs during its leg, fed by nginx from 127.0.0.1);
4. transport limit, Python: a pynetdicom SCP on loopback that drops every instance;
5. stock Orthanc: Debian's Orthanc with default settings (SQLite index, files on disk).

With ``--orthancs N`` (N >= 2) a sixth receiver joins the same runs: N Orthancs with the rendered
configuration of a multi-host deployment on one PostgreSQL, behind the nginx upstream that stands in
for the load balancer (:mod:`orthweb_dev.fleet_harness`).

Each leg runs ``--runs`` times; the table has every run and the median. Usage:
``.venv/bin/python bench/ingest.py [--instances 400] [--associations 4] [--runs 3] [--orthancs 2]``.
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

from orthweb.settings import Settings
from orthweb_dev.dicom import make_instance
from orthweb_dev.fleet_harness import fleet_host
from orthweb_dev.harness import AppHost, AppHostError, UpstreamTls, app_host
from orthweb_dev.pki import issue, make_ca
from orthweb_dev.proc import free_port, port_open, stop_process, wait_until

# The benchmark's sender, a DICOM peer allowed to store from loopback.
BENCH_AET = "BENCH"
SETTINGS = Settings(dicom_peers=[{"aet": BENCH_AET, "cidr": "127.0.0.0/8", "permissions": ["store"]}])
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


def send(app: AppHost, files: list[Path], associations: int) -> float:
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


# A receiver that accepts every C-STORE and drops it undecoded, bound to loopback (dcmtk's
# storescp --ignore cannot bind one address); one process, one thread per association.
DISCARD_SCP = """
import sys
from pynetdicom import AE, evt, AllStoragePresentationContexts, ALL_TRANSFER_SYNTAXES
ae = AE(ae_title="ORTHANC")
ae.maximum_pdu_size = 0
for cx in AllStoragePresentationContexts:
    ae.add_supported_context(cx.abstract_syntax, ALL_TRANSFER_SYNTAXES)
ae.start_server(("127.0.0.1", int(sys.argv[1])), evt_handlers=[(evt.EVT_C_STORE, lambda event: 0x0000)])
"""


def start_discard(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    log = root / "discard.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", DISCARD_SCP, str(port)], stdout=out, stderr=subprocess.STDOUT)
    wait_until("discarding SCP", lambda: port_open(port), log=log, proc=proc)
    return proc, port


def start_storescp(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    """dcmtk's receiver in C: accepts every C-STORE, one process per association, stores nothing."""
    port = free_port()
    log = root / "storescp.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["storescp", "--ignore", "--fork", "+xa", "-aet", "ORTHANC", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            # DCMTK leaves Nagle on otherwise, and the limit would measure delayed ACKs (RESULTS.md).
            env={**os.environ, "TCP_NODELAY": "1"},
        )
    wait_until("storescp", lambda: port_open(port), log=log, proc=proc)
    return proc, port


def tls_hop(root: Path) -> tuple[dict[str, object], UpstreamTls]:
    """Orthanc's DICOM TLS settings and nginx's client side, from a CA made here."""
    ca = make_ca(root / "hop-pki", "internal-hop")
    orthanc = issue(ca, "orthanc", cn="orthanc", usage="serverAuth", san="DNS:orthanc")
    nginx = issue(ca, "nginx", cn="nginx", usage="clientAuth")
    settings: dict[str, object] = {
        "DicomTlsEnabled": True,
        "DicomTlsCertificate": str(orthanc.cert),
        "DicomTlsPrivateKey": str(orthanc.key),
        "DicomTlsTrustedCertificates": str(ca.cert),
        "DicomTlsRemoteCertificateRequired": True,
    }
    return settings, UpstreamTls(cert=nginx.cert, key=nginx.key, ca=ca.cert, name="orthanc")


def start_stock_orthanc(root: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Orthanc with its defaults; only ports and directories set (it needs somewhere to write)."""
    conf = root / "stock.json"
    dicom, http = free_port(), free_port()
    conf.write_text(
        json.dumps(
            {
                "DicomPort": dicom,
                "HttpPort": http,
                "StorageDirectory": str(root / "stock-db"),
                "IndexDirectory": str(root / "stock-db"),
            }
        )
    )
    log = root / "stock-orthanc.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["Orthanc", str(conf)], cwd=root, stdout=out, stderr=subprocess.STDOUT)
    wait_until("stock Orthanc", lambda: port_open(dicom) and port_open(http), log=log, proc=proc)
    return proc, dicom


# Processes whose CPU time the profile reports, by the name in /proc/PID/stat.
PROFILED = ("Orthanc", "postgres", "nginx", "storescu", "storescp", "python")


def cpu_seconds(postmaster: int) -> tuple[dict[str, float], float, float]:
    """(CPU seconds so far of this benchmark's processes, by PROFILED name: its descendants and
    PostgreSQL's postmaster's; busy and total seconds of the whole machine from /proc/stat).
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
    ours = {os.getpid(), postmaster}
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


def count_orthweb_instances(app: AppHost) -> int:
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
            app = stack.enter_context(app_host(SETTINGS))
            fleet = stack.enter_context(fleet_host(args.orthancs, FLEET)) if args.orthancs > 1 else None
            hop_settings, upstream = tls_hop(work)
            receiver: subprocess.Popen[bytes] | None = None

            def orthweb_leg(tls: bool) -> None:
                app.orthanc_overrides = hop_settings if tls else {}
                app.restart_orthanc()
                app.restart_nginx(upstream_tls=upstream if tls else None)

            def other(start: Callable[[Path], tuple[subprocess.Popen[bytes], int]]) -> Callable[[], None]:
                def setup() -> None:
                    nonlocal receiver
                    receiver, port = start(work)
                    app.restart_nginx(dicom_upstream=port)

                return setup

            legs: list[tuple[str, Callable[[], None], bool, AppHost]] = [
                ("Orthweb, internal hop on loopback (the design)", lambda: orthweb_leg(False), True, app),
                ("Orthweb, internal hop in DICOM TLS (the alternative)", lambda: orthweb_leg(True), True, app),
                ("transport limit, C (nginx TLS -> storescp --ignore)", other(start_storescp), False, app),
                ("transport limit, Python (nginx TLS -> pynetdicom, dropped)", other(start_discard), False, app),
                ("stock Orthanc (defaults: SQLite + files)", other(start_stock_orthanc), True, app),
            ]
            if fleet is not None:
                name = f"Orthweb, {args.orthancs} Orthancs behind the upstream (one PostgreSQL)"
                legs.append((name, lambda: None, True, fleet))
            # Interleaved (each run visits every receiver), so that a change in the machine's
            # load (other people's work) affects every receiver alike.
            for _ in range(args.runs):
                for name, setup, store, target in legs:
                    setup()
                    postmaster = int((target.pg / "data" / "postmaster.pid").read_text().split()[0])
                    batch = fresh() if store else files
                    before = count_orthweb_instances(target)
                    cpu_before, busy_before, span_before = cpu_seconds(postmaster)
                    results.setdefault(name, []).append(send(target, batch, args.associations))
                    cpu_after, busy_after, span_after = cpu_seconds(postmaster)
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
    orthweb, tls_variant, c_limit, py_limit, stock = list(median.values())[:5]
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
    print(f"Internal hop in TLS / on loopback:  {orthweb / tls_variant:.2f}x")
    if len(median) > 5:
        several = list(median.values())[5]
        print(f"{args.orthancs} Orthancs / 1 Orthanc:            {orthweb / several:.2f}x (same machine, same runs)")
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
