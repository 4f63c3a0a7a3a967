"""Who read or deleted a study, and when: the CloudWatch Logs Insights query of docs/operations.md.

Orthanc names a resource by the SHA-1 of its DICOM identifiers (Orthanc Book, "Orthanc
identifiers"), so a study's Orthanc IDs follow from its UIDs even after it was deleted. nginx logs
every request as one JSON line with the user; the query keeps the requests whose path names the
study (its Orthanc IDs, or its StudyInstanceUID in DICOMweb paths).

Usage: python -m orthweb_dev.audit --patient-id ID --study-uid UID [--series-uid UID]...
prints the query for /<prefix>/nginx. The tests apply :func:`kept_by_query`, the query's two
filter clauses, to the access log lines the harness's nginx writes (the emulator's Insights does
not evaluate filters).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

# Reads are GETs (and POSTs such as /tools/create-archive naming the study); deletes are DELETEs.
METHODS = ("GET", "POST", "DELETE")
FIELDS = ("@timestamp", "user", "client", "method", "path", "status")
_ORTHANC_ID_RE = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{8}){4}$")
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def orthanc_id(*dicom_ids: str) -> str:
    """Orthanc's ID of the resource with these DICOM identifiers: the patient ID, then the study,
    series and SOP instance UIDs down to the resource's level."""
    digest = hashlib.sha1("|".join(dicom_ids).encode(), usedforsecurity=False).hexdigest()
    return "-".join(digest[i : i + 8] for i in range(0, 40, 8))


def study_pattern(orthanc_ids: Sequence[str], study_uid: str) -> str:
    """The regular expression that finds the study in a request path."""
    bad = [i for i in orthanc_ids if not _ORTHANC_ID_RE.match(i)]
    if bad or not _UID_RE.match(study_uid):
        raise ValueError(f"not Orthanc IDs or a DICOM UID: {bad or study_uid!r}")
    # The UID ends the path or a path segment: 1.2.3 must not find 1.2.34.
    return "(?i)(" + "|".join([*orthanc_ids, study_uid.replace(".", r"\.") + "(/|$)"]) + ")"


def insights_query(orthanc_ids: Sequence[str], study_uid: str) -> str:
    """The Logs Insights query on /<prefix>/nginx: every read or delete of the study, oldest first."""
    methods = ", ".join(f'"{m}"' for m in METHODS)
    return (
        f"fields {', '.join(FIELDS)}\n"
        f"| filter path like /{study_pattern(orthanc_ids, study_uid)}/\n"
        f"| filter method in [{methods}] and status < 400\n"
        "| sort @timestamp asc"
    )


def kept_by_query(entry: Mapping[str, Any], orthanc_ids: Sequence[str], study_uid: str) -> bool:
    """Whether the query's filters keep this access log entry (nginx's JSON line, parsed)."""
    return (
        re.search(study_pattern(orthanc_ids, study_uid), entry["path"]) is not None
        and entry["method"] in METHODS
        and int(entry["status"]) < 400
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the Logs Insights query that finds who read or deleted a study")
    parser.add_argument("--patient-id", required=True, help="the study's PatientID (0010,0020)")
    parser.add_argument("--study-uid", required=True, help="its StudyInstanceUID (0020,000D)")
    parser.add_argument("--series-uid", action="append", default=[], help="a SeriesInstanceUID of it (repeat)")
    args = parser.parse_args(argv)
    ids = [orthanc_id(args.patient_id, args.study_uid)]
    ids += [orthanc_id(args.patient_id, args.study_uid, s) for s in args.series_uid]
    try:
        print(insights_query(ids, args.study_uid))
    except ValueError as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
