"""DICOM for tests and benchmarks: generated sample instances and a pynetdicom client."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from orthweb_dev.proc import wait_until

# SOP classes the clients propose (pynetdicom's named constants are generated at run time).
VERIFICATION = "1.2.840.10008.1.1"
STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
# The AE title the tests' client calls from (a DICOM peer must list it to be served).
TEST_AET = "ORTHWEB-TEST"
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


@dataclass(frozen=True)
class Sample:
    """One generated instance: its encoded file and the UIDs that identify it."""

    name: str
    data: bytes
    sop_class: str
    sop_instance: str
    study: str
    transfer_syntax: str


def make_instance(
    name: str,
    *,
    modality: str = "CT",
    sop_class: str = "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    transfer_syntax: str = "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    rows: int = 512,
    columns: int = 512,
    bits: int = 16,
    frames: int = 1,
    study: str | None = None,
    patient: str = "ORTHWEB^TEST",
    seed: int = 0,
    window: tuple[int, int] | None = None,
) -> Sample:
    """A DICOM file generated with pydicom: every row the same left-to-right gradient (shifted by
    ``seed``, with noise in the low bits at 8 bits and in bits 8-11 at 16), smooth enough to
    compress. Instances of one ``study`` and ``modality`` share one series."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import UID, ExplicitVRLittleEndian, RLELossless, generate_uid

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.SOPClassUID = UID(sop_class)
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[ds.StudyInstanceUID, modality])
    ds.file_meta.MediaStorageSOPClassUID = UID(sop_class)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = (
        ExplicitVRLittleEndian if transfer_syntax == RLELossless else UID(transfer_syntax)
    )  # RLE: below
    ds.PatientName = patient
    ds.PatientID = patient.replace("^", "")
    ds.StudyDate = "20240102"
    ds.StudyTime = "101500"
    ds.AccessionNumber = name[:16]
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = seed + 1
    ds.Modality = modality
    ds.StudyDescription = f"Orthweb harness {name}"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = bits
    ds.BitsStored = 12 if bits == 16 else 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    if window is not None:  # (center, width) viewers start with
        ds.WindowCenter, ds.WindowWidth = window
    # A gradient with a per-instance offset and a little noise: realistic size, not all zeros.
    row = bytes((x * 255 // max(columns - 1, 1) + seed) & 0xFF for x in range(columns))
    noise = os.urandom(columns)
    if bits == 16:
        line = b"".join(bytes((v, (v ^ n) & 0x0F)) for v, n in zip(row, noise, strict=True))
    else:
        line = bytes(min(v + (n & 3), 255) for v, n in zip(row, noise, strict=True))
    ds.PixelData = line * rows * frames
    if transfer_syntax == RLELossless:
        ds.compress(RLELossless, encoding_plugin="pydicom")
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return Sample(name, buf.getvalue(), sop_class, ds.SOPInstanceUID, ds.StudyInstanceUID, transfer_syntax)


def viewable_instance(name: str, *, patient: str = "ORTHWEB^TEST", study: str | None = None) -> Sample:
    """An 8-bit image that a viewer shows as a clean ramp, black on the left to white on the right
    (its window spans every value): what the browser test looks for in the viewer's pixels."""
    return make_instance(
        name,
        modality="OT",
        sop_class=SECONDARY_CAPTURE,
        bits=8,
        rows=256,
        columns=256,
        window=(128, 256),
        patient=patient,
        study=study,
    )


def band_means(row: Sequence[int], bands: int = 8) -> list[float]:
    """Mean grey level of ``bands`` equal slices of a row of pixels, left to right: a drawn
    :func:`viewable_instance` rises band after band, whatever the noise in single pixels."""
    size = len(row) // bands
    if size == 0:
        raise ValueError(f"a row of {len(row)} pixels cannot be cut into {bands} bands")
    return [sum(row[i * size : (i + 1) * size]) / size for i in range(bands)]


def dicom_ae(samples: list[Sample] = (), find: bool = False, aet: str = TEST_AET) -> Any:  # type: ignore[assignment]
    """A pynetdicom SCU calling as ``aet``, proposing Verification, the samples' classes/syntaxes
    and (optionally) C-FIND."""
    from pynetdicom import AE

    ae = AE(ae_title=aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    ae.add_requested_context(VERIFICATION)
    pairs = sorted({(s.sop_class, s.transfer_syntax) for s in samples})
    for sop_class, ts in pairs:
        ae.add_requested_context(sop_class, [ts])
    if find:
        ae.add_requested_context(STUDY_ROOT_FIND)
    return ae


def store(assoc: Any, sample: Sample) -> int:
    """C-STORE one sample on an open association; the DIMSE status."""
    from pydicom import dcmread

    ds = dcmread(io.BytesIO(sample.data))
    status = assoc.send_c_store(ds)
    return int(status.Status) if status else -1


@dataclass
class SendReport:
    """What :func:`send_with_retries` saw: the instances acknowledged (C-STORE status 0x0000),
    the attempts that failed and were sent again, and the associations opened."""

    acknowledged: dict[str, float]
    failures: list[str]
    associations: int


def send_with_retries(
    samples: list[Sample],
    connect: Any,
    *,
    workers: int = 4,
    deadline_s: float = 300.0,
    on_ack: Any = None,
) -> SendReport:
    """Send ``samples`` over ``workers`` parallel associations the way a modality does: an instance
    whose C-STORE fails (refused or aborted association, a non-zero status) is sent again on a new
    association until it is acknowledged or ``deadline_s`` passes. ``connect(ae)`` opens an
    association; ``on_ack(count)`` is called after each acknowledgement (tests use it to strike)."""
    import queue
    import threading
    import time

    from pydicom import dcmread

    pending: queue.Queue[Sample] = queue.Queue()
    for sample in samples:
        pending.put(sample)
    acknowledged: dict[str, float] = {}
    failures: list[str] = []
    opened = [0]
    lock = threading.Lock()
    stop_at = time.monotonic() + deadline_s

    def worker() -> None:
        ae = dicom_ae(samples)
        assoc = None
        while time.monotonic() < stop_at:
            try:
                sample = pending.get_nowait()
            except queue.Empty:
                break
            try:
                if assoc is None or not assoc.is_established:
                    assoc = connect(ae)
                    with lock:
                        opened[0] += 1
                    if not assoc.is_established:
                        raise ConnectionError("association not established")
                status = assoc.send_c_store(dcmread(io.BytesIO(sample.data)))
                code = int(status.Status) if status else -1
                if code != 0:
                    raise ConnectionError(f"C-STORE status {code:#06x}" if code >= 0 else "no C-STORE response")
            except Exception as exc:  # any failure is sent again, as a modality does
                with lock:
                    failures.append(f"{sample.name}: {exc}")
                if assoc is not None:
                    assoc.abort()
                assoc = None
                pending.put(sample)
                continue
            with lock:
                acknowledged[sample.sop_instance] = time.monotonic()
                count = len(acknowledged)
            if on_ack is not None:
                on_ack(count)
        if assoc is not None and assoc.is_established:
            assoc.release()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=deadline_s + 60)
    return SendReport(acknowledged=acknowledged, failures=failures, associations=opened[0])


class _OrthancLogged(Protocol):
    """An application whose Orthanc log is a file (orthweb_dev.harness.AppHost)."""

    @property
    def orthanc_log(self) -> Path: ...


def log_mark(app: _OrthancLogged) -> int:
    """Where Orthanc's log ends now (for :func:`refused_at_association`)."""
    return len(app.orthanc_log.read_text())


def refused_at_association(app: _OrthancLogged, assoc: Any, log_mark: int, *, aet: str = "", called: str = "") -> None:
    """Not established, and Orthanc itself rejected the association (its log, past ``log_mark``,
    says so): of the calling ``aet``, or for the wrong ``called`` AET. The client usually reads the
    A-ASSOCIATE-RJ; on a loaded machine it has been seen to read only the connection closing, so
    the reason is taken from Orthanc's log."""
    assert not assoc.is_established
    reason = (
        f"Rejected association for remote AET {aet} on IP"
        if aet
        else f"Rejected association, because of a bad called AET in the request ({called})"
    )
    wait_until(f"Orthanc's log: {reason}", lambda: reason in app.orthanc_log.read_text()[log_mark:], timeout=10)


def study_find(assoc: Any) -> tuple[list[int], set[str]]:
    """A study-level C-FIND for every study on an open association: the statuses, the study UIDs found."""
    from pydicom.dataset import Dataset

    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = ""
    statuses, found = [], set()
    for status, identifier in assoc.send_c_find(query, STUDY_ROOT_FIND):
        statuses.append(int(status.Status) if status else -1)
        if identifier is not None:
            found.add(str(identifier.StudyInstanceUID))
    return statuses, found
