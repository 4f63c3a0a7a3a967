"""Orthweb's DICOM C-MOVE service, in place of Orthanc's own (run by Orthanc's Python plugin when a
peer is granted move; docs/host.md, "DICOM peers"). Two things Orthanc's own service cannot do:

* A peer may move only to itself. Orthanc would send to any listed destination a peer with move
  names; here the destination must be the calling peer's own AET, whose modality entry points at
  nginx's relay to that peer's host, port and certificate name.
* Every move leaves an audit line: Orthanc has no Lua callback for C-MOVE. The line is
  "orthweb-audit " and one JSON object, like orthanc-audit.lua's: the peer's AET and network, the
  level, the UIDs asked for, the destination, and the Orthanc IDs sent, or why it was refused. It
  is written before anything is sent (a crash mid-move still leaves it); a send that fails adds a
  second line with "failed".

Orthanc has already checked the caller before this runs: its AET from its own network's address
(DicomCheckModalityHost), and AllowMove. Written for the plugin's first C-MOVE interface
(orthanc.RegisterMoveCallback: one call does the whole move), which Debian's plugin 4.0 (the
stand-in) and the image's plugin both have; the move reports one sub-operation.
"""

import json

import orthanc  # provided by Orthanc's Python plugin

# The peers granted move, by AET in upper case (Orthanc compares AETs case-insensitively): the
# name of their modality entry, and the network they were listed with. Rendered; no secret.
MOVERS = json.loads("""{{ move_peers }}""")

# C-MOVE's query level -> Orthanc's resource type, and the unique key that names the resources.
LEVELS = {
    "PATIENT": ("Patient", "PatientID"),
    "STUDY": ("Study", "StudyInstanceUID"),
    "SERIES": ("Series", "SeriesInstanceUID"),
    "IMAGE": ("Instance", "SOPInstanceUID"),
    "INSTANCE": ("Instance", "SOPInstanceUID"),
}
# Without a level (not DICOM, but some devices), the most specific key given decides, as in Orthanc.
LEVELS_BY_KEY = ("IMAGE", "SERIES", "STUDY", "PATIENT")


def audit(entry):
    orthanc.LogWarning("orthweb-audit " + json.dumps(entry, sort_keys=True))


def uid(request, key):
    """A UID as the peer sent it, kept only if made of what UID lists are made of."""
    value = str(request.get(key) or "")
    return value if all(c in "0123456789.\\" for c in value) else "(not a UID)"


def level_of(request):
    level = str(request.get("Level") or "").upper()
    if level in LEVELS:
        return level
    for candidate in LEVELS_BY_KEY:
        if request.get(LEVELS[candidate][1]):
            return candidate
    raise ValueError("the C-MOVE names no resource")


def resources(level, request):
    """The Orthanc IDs of the resources the request names (a key may list several, backslash-separated)."""
    kind, key = LEVELS[level]
    found = []
    for value in str(request.get(key) or "").split("\\"):
        if value:
            for match in json.loads(orthanc.RestApiPost("/tools/lookup", value)):
                if match["Type"] == kind and match["ID"] not in found:
                    found.append(match["ID"])
    return found


def on_move(**request):
    originator = str(request.get("OriginatorAET") or "")
    target = str(request.get("TargetAET") or "")
    peer = MOVERS.get(originator.upper())
    level = str(request.get("Level") or "")
    entry = {
        "op": "C-MOVE",
        "aet": originator,
        "network": peer["network"] if peer else "",
        "destination": target,
        "level": level if level.upper() in LEVELS or not level else "(not a level)",
        "study": uid(request, "StudyInstanceUID"),
        "series": uid(request, "SeriesInstanceUID"),
        "sop": uid(request, "SOPInstanceUID"),
    }
    if peer is None or target.upper() != originator.upper():
        entry["refused"] = "a peer may move only to itself"
        audit(entry)
        raise ValueError(f"C-MOVE refused: {originator} may move only to itself, not to {target}")
    try:
        ids = resources(level_of(request), request)
    except ValueError as err:
        entry["refused"] = str(err)
        audit(entry)
        raise
    entry["resources"] = ids
    audit(entry)  # before anything leaves
    body = {"Resources": ids, "Synchronous": True, "MoveOriginatorAet": originator}
    if request.get("OriginatorID"):
        body["MoveOriginatorID"] = int(request["OriginatorID"])
    if ids:
        try:
            orthanc.RestApiPost(f"/modalities/{peer['modality']}/store", json.dumps(body))
        except Exception:
            audit({**entry, "failed": True})
            raise


orthanc.RegisterMoveCallback(on_move)
