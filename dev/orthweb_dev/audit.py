"""Who read, downloaded, queried, sent, stored or deleted a study, and when: the CloudWatch Logs
Insights query of docs/operations.md ("Who read a study"), run on both of the deployment's log groups.

Orthanc names a resource by the SHA-1 of its DICOM identifiers (Orthanc Book, "Orthanc
identifiers"), so a study's Orthanc IDs follow from its UIDs even after it was deleted. Two kinds of
line name a study:

* nginx's access log (``/<prefix>/nginx``): one JSON line per web request with the user, the path
  and ``touched``, the Orthanc IDs and DICOM UIDs its query string or command body named
  (userdata/app/orthweb-audit.js). The query keeps the reads, sends and deletes that succeeded and
  name the study in either field, or whose ``touched`` left tokens out (``+N``, ``+?``).
* Orthanc's audit lines (``/<prefix>/orthanc``, userdata/app/orthanc-audit.lua and
  orthanc-move.py): ``orthweb-audit {...}`` for each DICOM C-FIND, each C-MOVE and each instance
  stored, with the peer's AET and network or the web user. The query keeps those naming the study.

A read of the study's patient as a whole (``/patients/<id>/archive``, a patient-level C-MOVE)
includes the study, so the patient's Orthanc ID is searched for too (:func:`study_ids`).

Usage: python -m orthweb_dev.audit --patient-id ID --study-uid UID [--series-uid UID]...
[--instance-id ID]... prints the query. The tests apply :func:`kept_by_query`, the query's filter,
to the lines the containers' nginx and Orthanc wrote (the emulator's Insights does not evaluate
filters).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Sequence

# Reads are GETs and POSTs (archives, searches, sends naming the study); deletes are DELETEs.
METHODS = ("GET", "POST", "DELETE")
FIELDS = ("@timestamp", "@log", "user", "client", "method", "path", "touched", "status", "@message")
# What starts Orthanc's audit lines (orthanc-audit.lua); the JSON object follows.
AUDIT_MARK = "orthweb-audit "
_ORTHANC_ID_RE = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{8}){4}$")
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def orthanc_id(*dicom_ids: str) -> str:
    """Orthanc's ID of the resource with these DICOM identifiers: the patient ID, then the study,
    series and SOP instance UIDs down to the resource's level."""
    digest = hashlib.sha1("|".join(dicom_ids).encode(), usedforsecurity=False).hexdigest()
    return "-".join(digest[i : i + 8] for i in range(0, 40, 8))


def study_ids(patient_id: str, study_uid: str, series_uids: Sequence[str] = ()) -> list[str]:
    """The Orthanc IDs whose reads include the study: its patient's (a patient-level archive or
    C-MOVE carries every study of the patient), the study's, and those of the series given."""
    return [
        orthanc_id(patient_id),
        orthanc_id(patient_id, study_uid),
        *(orthanc_id(patient_id, study_uid, s) for s in series_uids),
    ]


def study_pattern(orthanc_ids: Sequence[str], study_uid: str) -> str:
    """The regular expression that finds the study in a path, a ``touched`` list or an audit line."""
    bad = [i for i in orthanc_ids if not _ORTHANC_ID_RE.match(i)]
    if bad or not _UID_RE.match(study_uid):
        raise ValueError(f"not Orthanc IDs or a DICOM UID: {bad or study_uid!r}")
    # A UID is a whole path segment, list item or JSON string: 1.2.3 finds neither 1.2.34 nor 11.2.3.
    # Insights delimits a pattern with slashes: those inside are escaped (Python reads \/ as /).
    uid = r'(^|[\/ "])' + study_uid.replace(".", r"\.") + r'([\/ "]|$)'
    return "(?i)(" + "|".join([*orthanc_ids, uid]) + ")"


# The end of a touched field that left tokens out (more than orthweb-audit.js keeps, or a request
# it could not read): the study may be among them, so the query keeps such lines too.
OVERFLOW = r"\+([0-9]+|\?)$"


def insights_query(orthanc_ids: Sequence[str], study_uid: str) -> str:
    """The Logs Insights query on ``/<prefix>/nginx`` and ``/<prefix>/orthanc`` together: every
    read, search, send, store or delete of the study, oldest first."""
    pattern = study_pattern(orthanc_ids, study_uid)
    methods = ", ".join(f'"{m}"' for m in METHODS)
    return (
        f"fields {', '.join(FIELDS)}\n"
        f"| filter ((path like /{pattern}/ or touched like /{pattern}/ or touched like /{OVERFLOW}/)"
        f" and method in [{methods}] and status < 400)"
        f" or (@message like /{AUDIT_MARK}/ and @message like /{pattern}/)\n"
        "| sort @timestamp asc"
    )


def kept_by_query(message: str, orthanc_ids: Sequence[str], study_uid: str) -> bool:
    """Whether the query's filter keeps this log line (a line of either log group, as written)."""
    pattern = re.compile(study_pattern(orthanc_ids, study_uid))
    if AUDIT_MARK in message:
        return pattern.search(message) is not None
    try:
        entry = json.loads(message)
    except ValueError:
        return False
    if not isinstance(entry, dict) or "method" not in entry:
        return False  # the stream log's DICOM connection lines: no method, no path
    touched = entry.get("touched", "")
    named = pattern.search(entry.get("path", "")) or pattern.search(touched) or re.search(OVERFLOW, touched)
    return named is not None and entry["method"] in METHODS and int(entry["status"]) < 400


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Print the Logs Insights query that finds who read, queried, sent, stored or deleted a study"
    )
    parser.add_argument("--patient-id", required=True, help="the study's PatientID (0010,0020)")
    parser.add_argument("--study-uid", required=True, help="its StudyInstanceUID (0020,000D)")
    parser.add_argument("--series-uid", action="append", default=[], help="a SeriesInstanceUID of it (repeat)")
    parser.add_argument(
        "--instance-id", action="append", default=[], help="an Orthanc instance ID of it, from its store lines (repeat)"
    )
    args = parser.parse_args(argv)
    ids = study_ids(args.patient_id, args.study_uid, args.series_uid) + args.instance_id
    try:
        print(insights_query(ids, args.study_uid))
    except ValueError as exc:
        print(f"audit: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
