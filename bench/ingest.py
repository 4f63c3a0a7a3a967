"""DICOM TLS ingest benchmark: N realistic CT slices (512x512, 16-bit) sent with a few concurrent
associations (dcmtk ``storescu`` over TLS, verifying the host certificate) through the rendered
nginx DICOM TLS listener, to three receivers in turn:

1. Orthweb: Orthanc with the rendered orthanc.json, index and images in PostgreSQL over TLS;
2. transport limit: a pynetdicom SCP on loopback that receives every byte and stores nothing;
3. stock Orthanc: Debian's Orthanc with default settings (SQLite index, files on disk).

Prints one table (instances/s, MB/s, ratios) and the machine. Usage:
``.venv/bin/python bench/ingest.py [--instances 400] [--associations 4]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from orthweb_dev.dicom import make_instance
from orthweb_dev.harness import AppHost, AppHostError, app_host
from orthweb_dev.proc import free_port, port_open, stop_process, wait_until


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
    cmd = ["storescu", "--anonymous-tls", "--add-cert-file", str(app.server_cert), "-aec", "ORTHANC", "-aet", "BENCH"]
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
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="orthweb-bench-"))
    try:
        files, total = write_instances(work / "instances", args.instances)
        mb = total / 1e6
        results: dict[str, float] = {}
        with app_host() as app:
            before = count_orthweb_instances(app)
            results["Orthweb (rendered config, PostgreSQL over TLS)"] = send(app, files, args.associations)
            stored = count_orthweb_instances(app) - before
            if stored != args.instances:
                raise AppHostError(f"Orthweb stored {stored} of {args.instances} instances")

            scp, port = start_discard(work)
            try:
                app.restart_nginx(dicom_upstream=port)
                results["transport limit (nginx TLS -> discarding SCP)"] = send(app, files, args.associations)
            finally:
                stop_process(scp)

            stock, port = start_stock_orthanc(work)
            try:
                app.restart_nginx(dicom_upstream=port)
                results["stock Orthanc (defaults: SQLite + files)"] = send(app, files, args.associations)
            finally:
                stop_process(stock)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    names = list(results)
    orthweb, transport, stock_s = (results[n] for n in names)
    print(f"\n{args.instances} CT instances (512x512, 16-bit), {mb:.1f} MB, {args.associations} TLS associations")
    print(f"machine: {machine()}\n")
    print("| receiver | seconds | instances/s | MB/s |")
    print("| --- | ---: | ---: | ---: |")
    for name in names:
        s = results[name]
        print(f"| {name} | {s:.2f} | {args.instances / s:.1f} | {mb / s:.1f} |")
    print(f"\nOrthweb / transport limit: {transport / orthweb:.2f}x (target >= 0.5x)")
    print(f"Orthweb / stock Orthanc:   {stock_s / orthweb:.2f}x (target >= 1.0x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
