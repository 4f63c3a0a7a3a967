"""What the audit's two recorders write, run in the interpreters the host runs them in: the access
log's ``touched`` field (userdata/app/orthweb-audit.js) under njs, and Orthanc's audit lines
(userdata/app/orthanc-audit.lua, rendered) under Lua 5.3 with Orthanc's calling conventions. Both
keep identifiers only: a patient's name, birth date or any other search value never reaches a log."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from orthweb.bootstrap import USERDATA_DIR, dicom_sources, render_app
from orthweb.settings import Settings
from orthweb_dev.testing import require

STUDY_UID = "1.2.840.113619.2.55.3.1234"
SERIES_UID = "1.2.840.113619.2.55.3.1234.1"
SOP_UID = "1.2.840.113619.2.55.3.1234.1.1"
STUDY_ID = "d34f5ab5-b474483a-6c1f4431-ff5a593e-02c82dbe"
OTHER_ID = "0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d-0a1b2c3d"
NAME = "SMITH^JOHN"

# --- orthweb-audit.js --------------------------------------------------------------------------

# Calls touched() as nginx's js_set does: r.variables.args is the raw query string; r.requestText
# is the body where nginx read it into memory, and throws where it did not (a streamed body).
NJS_HARNESS = """
import audit from 'orthweb-audit.js';
var fs = require('fs');
var cases = JSON.parse(fs.readFileSync('cases.json'));
var answers = cases.map(function (c) {
    var r = {variables: {args: c.args}};
    if (c.body === null) {
        Object.defineProperty(r, 'requestText', {get: function () { throw new Error('body not read'); }});
    } else {
        r.requestText = c.body;
    }
    return audit.touched(r);
});
fs.writeFileSync('answers.json', JSON.stringify(answers));  // console.log cuts long lines
"""


def touched(tmp_path: Path, cases: list[tuple[str, str | None]]) -> list[str]:
    """touched() for each (query string, body or None) under Debian's njs 0.7.9."""
    njs = require("njs", "njs")
    (tmp_path / "orthweb-audit.js").write_text((USERDATA_DIR / "app" / "orthweb-audit.js").read_text())
    (tmp_path / "harness.js").write_text(NJS_HARNESS)
    (tmp_path / "cases.json").write_text(json.dumps([{"args": a, "body": b} for a, b in cases]))
    subprocess.run([njs, "-p", ".", "harness.js"], cwd=tmp_path, check=True, capture_output=True, text=True)
    answers: list[str] = json.loads((tmp_path / "answers.json").read_text())
    assert len(answers) == len(cases)
    return answers


def test_touched_names_the_uids_and_ids_of_the_query_string_and_nothing_else(tmp_path: Path) -> None:
    wado = f"requestType=WADO&studyUID={STUDY_UID}&seriesUID={SERIES_UID}&objectUID={SOP_UID}"
    wado += "&contentType=application%2Fdicom"
    archive = f"resources={STUDY_ID}%2C{OTHER_ID}"
    qido_by_name = f"PatientName={NAME.replace('^', '%5E')}&PatientBirthDate=19700101&StudyDate=20200101-20201231"
    qido_by_uid = f"StudyInstanceUID={STUDY_UID}&includefield=00081030"
    assert touched(tmp_path, [(wado, None), (archive, None), (qido_by_name, None), (qido_by_uid, None), ("", "")]) == [
        f"{STUDY_UID} {SERIES_UID} {SOP_UID}",
        f"{STUDY_ID} {OTHER_ID}",
        "",  # a search by name, date and birth date: nothing of it is kept
        STUDY_UID,
        "",
    ]


def test_touched_names_the_resources_of_a_command_body(tmp_path: Path) -> None:
    archive = json.dumps({"Resources": [STUDY_ID], "Asynchronous": True, "Transcode": "1.2.840.10008.1.2.1"})
    find = json.dumps({"Level": "Study", "Query": {"PatientName": NAME, "StudyInstanceUID": STUDY_UID}})
    lookup = STUDY_UID  # /tools/lookup's body is the bare identifier
    send = json.dumps({"Resources": [{"Level": "Study", "ID": STUDY_ID}], "Compression": "gzip"})  # transfers/send
    move = json.dumps({"Level": "Study", "Resources": [{"StudyInstanceUID": STUDY_UID}]})  # modalities/x/move
    retrieve = json.dumps({"Resources": [{"Study": STUDY_UID, "Series": SERIES_UID}]})  # dicom-web/servers/x/retrieve
    get = json.dumps({"Uri": f"/studies/{STUDY_UID}/series/{SERIES_UID}/metadata"})  # dicom-web/servers/x/get
    store = json.dumps([STUDY_ID, OTHER_ID])  # modalities/x/store: a bare list of IDs
    got = touched(
        tmp_path,
        [("", b) for b in (archive, find, lookup, "not json at all: Smith, John", send, move, retrieve, get, store)],
    )
    # The transfer syntax is a UID, but not under a resource key: left out.
    assert got == [
        STUDY_ID,
        STUDY_UID,
        STUDY_UID,
        "",
        STUDY_ID,
        STUDY_UID,
        f"{STUDY_UID} {SERIES_UID}",
        f"{STUDY_UID} {SERIES_UID}",
        f"{STUDY_ID} {OTHER_ID}",
    ]


def test_touched_keeps_each_token_once_and_caps_the_line(tmp_path: Path) -> None:
    ids = [f"{n:08x}-00000000-00000000-00000000-00000000" for n in range(130)]
    body = json.dumps({"Resources": ids + ids[:5]})
    (got,) = touched(tmp_path, [("", body)])
    assert got.split(" ") == [*ids[:100], "+30"]


def test_padding_cannot_push_the_resources_out_of_the_line(tmp_path: Path) -> None:
    # Orthanc ignores arguments and JSON keys it does not know: fillers there come after the
    # resources, and UIDs there are not kept at all.
    fillers = [f"{n:08x}-11111111-11111111-11111111-11111111" for n in range(120)]
    uids = "+".join(f"1.1.{n}" for n in range(120))
    args = f"x={'+'.join(fillers)}&y={uids}&resources={STUDY_ID}"
    body = json.dumps({"Junk": fillers, "Query": {"StudyInstanceUID": STUDY_UID}, "More": uids})
    by_args, by_body = touched(tmp_path, [(args, None), ("", body)])
    assert by_args.split(" ")[0] == STUDY_ID
    assert by_args.endswith(" +21")
    assert by_body.split(" ")[0] == STUDY_UID
    assert by_body.endswith(" +21")
    assert "1.1.7" not in by_args + by_body


def test_no_escape_hides_an_identifier_that_orthanc_decodes(tmp_path: Path) -> None:
    study_hex = "".join(f"%{ord(c):02X}" for c in STUDY_ID)
    got = touched(
        tmp_path,
        [
            # A stray % made decodeURIComponent throw, and the raw string kept the escapes.
            (f"resources={study_hex}&x=%", None),
            (f"studyUID={STUDY_UID.replace('.', '%2E')}&z=%&objectUID={SOP_UID}", None),
            (f"re%73ources={STUDY_ID.upper()}", None),  # an escaped key, an upper-case ID
            (f"studyUID={STUDY_UID}&x=%E0%A4%A", None),  # a malformed escape at the end
            # JSON's \u escapes, strict and in a body only a lenient parser reads (a comment).
            ("", '{"Resources": ["\\u0064' + STUDY_ID[1:] + '"]}'),
            ("", '{"Query": {"StudyInstanceUID": "\\u0031' + STUDY_UID[1:] + '"}} /* lenient */'),
        ],
    )
    assert got == [STUDY_ID, f"{STUDY_UID} {SOP_UID}", STUDY_ID, STUDY_UID, STUDY_ID, STUDY_UID]


def test_dotted_dates_and_numbers_of_a_search_are_not_uids(tmp_path: Path) -> None:
    qido = "PatientBirthDate=01.02.1970&PatientID=555.123.4567&StudyInstanceUID=" + STUDY_UID
    find = json.dumps({"Level": "Study", "Query": {"PatientBirthDate": "01.02.1970", "OtherPatientIDs": "1.2.3"}})
    assert touched(tmp_path, [(qido, None), ("", find)]) == [STUDY_UID, ""]


def test_a_deeply_nested_body_neither_fails_nor_hides_its_resources(tmp_path: Path) -> None:
    nested = "[" * 5000 + json.dumps(STUDY_ID) + "]" * 5000
    assert touched(tmp_path, [("", json.dumps({"Resources": [STUDY_ID]})), ("", nested)]) == [STUDY_ID, STUDY_ID]


# --- orthanc-audit.lua -------------------------------------------------------------------------

# Orthanc's conventions (OrthancServer/Sources/OrthancFindRequestHandler.cpp, LuaScripting.cpp,
# DicomInstanceOrigin.cpp; the same in 1.10.1 and the 1.12 sources read): the C-FIND query as a
# table of "gggg,eeee" tags (lowercase hex) to strings, which the filter must return; the origin
# with RequestOrigin and RemoteIp, RemoteAet, CalledAet (DICOM) or Username (REST); print writes
# "Lua says: ..." to Orthanc's log; DumpJson(value, true) writes one line of JSON. The stand-in
# DumpJson here does the same for flat tables of strings.
LUA_HARNESS = """
function DumpJson(value, keepStrings)
  local keys = {}
  for k in pairs(value) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    parts[#parts + 1] = string.format("%q:%q", k, value[k])
  end
  return "{" .. table.concat(parts, ",") .. "}"
end
dofile(arg[1])
local remote = arg[2]
local query = {["0008,0052"] = "STUDY", ["0010,0010"] = "SMITH^JOHN", ["0010,0030"] = "19700101",
               ["0020,000d"] = "1.2.840.113619.2.55.3.1234"}
local returned = IncomingFindRequestFilter(query, {RemoteIp = remote, RemoteAet = "CT01", CalledAet = "ORTHANC"})
assert(returned == query and returned["0010,0010"] == "SMITH^JOHN", "the query goes on unchanged")
local tags = {PatientName = "SMITH^JOHN", PatientID = "PAT01", StudyInstanceUID = "1.2.840.113619.2.55.3.1234",
              SeriesInstanceUID = "1.2.840.113619.2.55.3.1234.1", SOPInstanceUID = "1.2.840.113619.2.55.3.1234.1.1"}
OnStoredInstance("i1", tags, {}, {RequestOrigin = "DicomProtocol", RemoteIp = remote, RemoteAet = "CT01",
                                  CalledAet = "ORTHANC"})
OnStoredInstance("i2", tags, {}, {RequestOrigin = "RestApi", RemoteIp = "127.0.0.1", Username = "ann"})
OnStoredInstance("i3", tags, {}, {RequestOrigin = "Plugins"})
-- A device that puts a name where the UID goes, and free text as the level.
local odd = {["0008,0052"] = "Smith", ["0020,000d"] = "SMITH^JOHN"}
assert(IncomingFindRequestFilter(odd, {RemoteIp = remote, RemoteAet = "CT01"}) == odd)
"""


def audit_lines(tmp_path: Path, settings: Settings, remote: str = "127.1.0.1") -> list[dict[str, str]]:
    """Orthanc's audit lines for one C-FIND and three stored instances (one by DICOM), the DICOM
    caller connecting from ``remote`` (the loopback address nginx chose for it)."""
    lua = require("lua5.3", "lua5.3")
    (tmp_path / "orthanc-audit.lua").write_text(render_app(settings)["orthanc-audit.lua"])
    (tmp_path / "harness.lua").write_text(LUA_HARNESS)
    out = subprocess.run(
        [lua, str(tmp_path / "harness.lua"), str(tmp_path / "orthanc-audit.lua"), remote],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for value in (NAME, "PAT01", "19700101"):  # the name, the patient ID, the birth date
        assert value not in out
    lines = out.splitlines()
    assert all(line.startswith("orthweb-audit {") for line in lines), out
    return [json.loads(line.removeprefix("orthweb-audit ")) for line in lines]


def test_orthanc_writes_one_audit_line_per_find_and_per_stored_instance(tmp_path: Path) -> None:
    peers = [{"aet": "CT01", "cidr": "10.20.0.0/24", "permissions": ["store", "find"]}]
    settings = Settings(dicom_peers=peers)
    assert dicom_sources(settings).networks == {"10.20.0.0/24": "127.1.0.1"}
    stored = {"study": STUDY_UID, "series": SERIES_UID, "sop": SOP_UID}
    assert audit_lines(tmp_path, settings) == [
        # The network behind nginx's loopback address, not the address.
        {"op": "C-FIND", "aet": "CT01", "network": "10.20.0.0/24", "level": "STUDY", "study": STUDY_UID, "series": ""},
        {"op": "C-STORE", "via": "DicomProtocol", "instance": "i1", **stored, "aet": "CT01", "network": "10.20.0.0/24"},
        {"op": "store", "via": "RestApi", "instance": "i2", **stored, "user": "ann"},
        {"op": "store", "via": "Plugins", "instance": "i3", **stored},
        {"op": "C-FIND", "aet": "CT01", "network": "10.20.0.0/24", "level": "(not a level)", "study": "(not a UID)",
         "series": ""},
    ]  # fmt: skip


def test_a_peer_bound_to_its_certificate_is_audited_with_its_network_not_its_own_address(tmp_path: Path) -> None:
    ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    peers = [
        {"aet": "CT01", "cidr": "10.20.0.0/24", "permissions": ["store", "find"], "certificate_subject": "CN=ct01"},
        {"aet": "MR01", "cidr": "10.20.0.0/24", "permissions": ["store"]},
    ]
    settings = Settings(dicom_peers=peers, dicom_client_ca=ca)
    sources = dicom_sources(settings)
    assert sources.peers["CT01"] != sources.networks["10.20.0.0/24"]  # CT01 has an address of its own
    lines = audit_lines(tmp_path, settings, remote=sources.peers["CT01"])
    assert {line["network"] for line in lines if "aet" in line} == {"10.20.0.0/24"}


@pytest.mark.parametrize("name", ["orthanc-audit.lua", "orthweb-audit.js"])
def test_the_recorders_reach_both_containers(name: str) -> None:
    app = render_app(Settings())
    assert name in app
    orthanc = json.loads(app["orthanc.json"])
    assert "/etc/orthweb/orthanc-audit.lua" in orthanc["LuaScripts"]
    assert "./orthanc-audit.lua:/etc/orthweb/orthanc-audit.lua:ro" in app["docker-compose.yml"]
    assert "./orthweb-audit.js:/etc/nginx/orthweb-audit.js:ro" in app["docker-compose.yml"]
    assert '"touched":"$orthweb_touched"' in app["nginx.conf"]


def test_only_the_small_command_bodies_are_read_into_memory() -> None:
    """The location whose bodies reach touched(): command routes naming resources, never uploads."""
    conf = render_app(Settings())["nginx.conf"]
    (pattern,) = re.findall(r"^\s*location ~ (\S+) \{$", conf, flags=re.MULTILINE)
    block = conf[conf.index(f"location ~ {pattern}") :].split("}", 1)[0]
    assert "proxy_request_buffering on;" in block
    assert "client_max_body_size 64k;" in block
    assert "client_body_buffer_size 64k;" in block  # the whole body in memory, where njs reads it
    commands = ["/tools/create-archive", "/tools/create-media", "/tools/create-media-extended", "/tools/bulk-delete"]
    commands += ["/tools/find", "/tools/lookup", "/modalities/PACS2/store", "/modalities/PACS2/move"]
    commands += ["/peers/site2/store", "/transfers/send", "/dicom-web/servers/site2/stow"]
    assert all(re.fullmatch(pattern, path) for path in commands)
    # Orthanc drops a trailing slash (and nginx makes /tools/find/. into /tools/find/): same route.
    assert all(re.fullmatch(pattern, path + "/") for path in commands)
    # Basic logins: only a right login has its body read; the others go on to Orthanc's 401 bodiless.
    assert "auth_request /orthweb-login;" in block
    check = conf[conf.index("location = /orthweb-login {") :]
    assert "internal;" in check.split("\n")[1]
    # Uploads and everything else stream to Orthanc, unbuffered and uncapped.
    streamed = ["/instances", "/dicom-web/studies", "/tools/create-dicom", "/modalities/PACS2/store-straight"]
    streamed += ["/studies/x/archive", "/tools/find/x", "/wado"]
    assert not any(re.fullmatch(pattern, path) for path in streamed)
