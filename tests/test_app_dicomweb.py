"""DICOMweb through the real nginx, driven by a client nobody here wrote (the `dicomweb-client`
package): STOW-RS, QIDO-RS, WADO-RS with rendered frames, links that name the public URL, logins
and roles (a viewer reads, an uploader may also STOW), and CORS for one listed origin. The harness
runs the rendered compose file on Docker; its Orthanc stand-in loads Debian's DICOMweb plugin (1.7)
with the same rendered `DicomWeb` section the image's 1.20 gets (docs/app-harness.md)."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom import dcmread

from orthweb.settings import Settings
from orthweb_dev.containers import ContainerHost, containers_for_test
from orthweb_dev.dicom import Sample, band_means, make_instance, viewable_instance

pytestmark = pytest.mark.app

USERS = {"admin": "admin", "vera": "viewer", "ulla": "uploader"}
ALLOWED = "https://viewer.example.org"
OTHER = "https://elsewhere.example.com"
CORS_HEADERS = ("access-control-allow-origin", "access-control-allow-credentials", "access-control-allow-methods")


@pytest.fixture(scope="module")
def app() -> Iterator[ContainerHost]:
    """The application with a user of each role and one origin allowed to call DICOMweb from a browser."""
    with containers_for_test(Settings(web_users=USERS, web_cors_origins=[ALLOWED])) as host:
        yield host


def session(app: ContainerHost, password: str | None = None, user: str = "admin") -> requests.Session:
    """A requests session through nginx as ``user`` (its generated password unless ``password``),
    trusting only the certificate the host's step made."""
    s = requests.Session()
    s.trust_env = False  # neither a CA bundle nor a proxy from the environment
    s.verify = str(app.server_cert)
    s.auth = (user, app.passwords[user] if password is None else password)
    return s


def client(app: ContainerHost, password: str | None = None, user: str = "admin") -> DICOMwebClient:
    return DICOMwebClient(f"{app.web_url}/dicom-web", session=session(app, password, user))


def value(dataset: dict[str, Any], tag: str) -> Any:
    """The first value of ``tag`` in a DICOM JSON dataset."""
    return dataset[tag]["Value"][0]


@pytest.fixture(scope="module")
def study(app: ContainerHost) -> list[Sample]:
    """Two instances of one study, stored with STOW-RS (asserted here)."""
    first = viewable_instance("dicomweb-1", patient="DICOMWEB^STOW")
    second = make_instance(
        "dicomweb-2", modality="OT", sop_class=first.sop_class, bits=8, rows=64, columns=96,
        study=first.study, patient="DICOMWEB^STOW", seed=1,
    )  # fmt: skip
    response = client(app).store_instances([dcmread(io.BytesIO(s.data)) for s in (first, second)])
    stored = {item.ReferencedSOPInstanceUID for item in response.ReferencedSOPSequence}
    assert stored == {first.sop_instance, second.sop_instance}
    assert not response.get("FailedSOPSequence")  # 1.7 sends it empty; 1.19+ leaves it out
    return [first, second]


def test_qido_finds_the_study_by_patient_and_by_study(app: ContainerHost, study: list[Sample]) -> None:
    by_patient = client(app).search_for_studies(search_filters={"PatientID": "DICOMWEBSTOW"})
    assert [value(s, "0020000D") for s in by_patient] == [study[0].study]
    by_uid = client(app).search_for_studies(search_filters={"StudyInstanceUID": study[0].study})
    assert [value(s, "00100020") for s in by_uid] == ["DICOMWEBSTOW"]
    assert client(app).search_for_studies(search_filters={"PatientID": "NOBODY"}) == []
    instances = client(app).search_for_instances(study_instance_uid=study[0].study)
    assert {value(i, "00080018") for i in instances} == {s.sop_instance for s in study}


def test_qido_links_name_the_public_url_never_orthancs_port(app: ContainerHost, study: list[Sample]) -> None:
    uid = study[0].study
    response = session(app).get(f"{app.web_url}/dicom-web/studies", params={"StudyInstanceUID": uid})
    (found,) = response.json()
    assert value(found, "00081190") == f"{app.web_url}/dicom-web/studies/{uid}"
    response = session(app).get(f"{app.web_url}/dicom-web/studies/{uid}/instances")
    for instance in response.json():
        assert value(instance, "00081190").startswith(f"{app.web_url}/dicom-web/studies/{uid}/series/")
    # The links name the site as the client named it (its Host header). dicomweb-client 0.61 sends
    # Host without the port (its workaround for a requests issue), so it gets port-less links: right
    # on 443, and still never Orthanc's own address.
    (found,) = client(app).search_for_studies(search_filters={"StudyInstanceUID": uid})
    assert value(found, "00081190") == f"https://localhost/dicom-web/studies/{uid}"
    assert ":8042" not in response.text + str(found)  # Orthanc's own port, inside the containers


def test_wado_returns_the_instances_as_stored(app: ContainerHost, study: list[Sample]) -> None:
    for sample in study:
        series = dcmread(io.BytesIO(sample.data)).SeriesInstanceUID
        got = client(app).retrieve_instance(sample.study, series, sample.sop_instance)
        assert got.SOPInstanceUID == sample.sop_instance
        assert got.PixelData == dcmread(io.BytesIO(sample.data)).PixelData
    whole = client(app).retrieve_study(study[0].study)
    assert {ds.SOPInstanceUID for ds in whole} == {s.sop_instance for s in study}


def test_wado_renders_the_frame_as_the_gradient_it_holds(app: ContainerHost, study: list[Sample]) -> None:
    sample = study[0]
    series = dcmread(io.BytesIO(sample.data)).SeriesInstanceUID
    png = client(app).retrieve_instance_frames_rendered(
        sample.study, series, sample.sop_instance, frame_numbers=[1], media_types=("image/png",)
    )
    image = Image.open(io.BytesIO(png)).convert("L")
    assert image.size == (256, 256)
    bands = band_means(image.crop((0, 128, 256, 129)).tobytes())  # the middle row, one byte a pixel
    assert bands[0] < 32  # black on the left
    assert bands[-1] > 223  # white on the right
    assert all(b > a for a, b in itertools.pairwise(bands))  # rising in between


def test_a_wrong_login_gets_401_and_no_data(app: ContainerHost, study: list[Sample]) -> None:
    s = session(app, password="not-the-password")
    response = s.get(f"{app.web_url}/dicom-web/studies", params={"PatientID": "DICOMWEBSTOW"})
    assert response.status_code == 401
    assert study[0].study not in response.text
    anonymous = requests.Session()
    anonymous.trust_env = False
    response = anonymous.get(f"{app.web_url}/dicom-web/studies", verify=str(app.server_cert))
    assert response.status_code == 401
    upload = viewable_instance("dicomweb-refused")
    with pytest.raises(requests.HTTPError) as refused:
        client(app, password="not-the-password").store_instances([dcmread(io.BytesIO(upload.data))])
    assert refused.value.response is not None
    assert refused.value.response.status_code == 401
    assert client(app).search_for_studies(search_filters={"StudyInstanceUID": upload.study}) == []


# --- roles ---------------------------------------------------------------------------------------


def test_a_viewer_reads_dicomweb_but_cannot_store(app: ContainerHost, study: list[Sample]) -> None:
    viewer = client(app, user="vera")
    (found,) = viewer.search_for_studies(search_filters={"StudyInstanceUID": study[0].study})
    assert value(found, "00100020") == "DICOMWEBSTOW"
    series = dcmread(io.BytesIO(study[0].data)).SeriesInstanceUID
    assert (
        viewer.retrieve_instance(study[0].study, series, study[0].sop_instance).SOPInstanceUID == study[0].sop_instance
    )
    refused = viewable_instance("dicomweb-by-viewer")
    with pytest.raises(requests.HTTPError) as stow:
        viewer.store_instances([dcmread(io.BytesIO(refused.data))])
    assert stow.value.response is not None
    assert stow.value.response.status_code == 403  # logged in, but the role filter refuses
    assert client(app).search_for_studies(search_filters={"StudyInstanceUID": refused.study}) == []


def test_an_uploader_stores_with_stow(app: ContainerHost) -> None:
    upload = viewable_instance("dicomweb-by-uploader")
    response = client(app, user="ulla").store_instances([dcmread(io.BytesIO(upload.data))])
    assert [item.ReferencedSOPInstanceUID for item in response.ReferencedSOPSequence] == [upload.sop_instance]
    (found,) = client(app, user="vera").search_for_studies(search_filters={"StudyInstanceUID": upload.study})
    assert value(found, "0020000D") == upload.study


def test_a_wrong_password_for_a_real_viewer_gets_401(app: ContainerHost, study: list[Sample]) -> None:
    response = session(app, password="not-vera's", user="vera").get(f"{app.web_url}/dicom-web/studies")
    assert response.status_code == 401
    assert study[0].study not in response.text


# --- CORS ----------------------------------------------------------------------------------------


def cors(response: requests.Response) -> dict[str, str]:
    return {k.lower(): v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


def test_an_allowed_origin_gets_its_own_origin_back_with_credentials(app: ContainerHost, study: list[Sample]) -> None:
    response = session(app).get(f"{app.web_url}/dicom-web/studies", headers={"Origin": ALLOWED})
    assert response.status_code == 200
    assert cors(response) == {"access-control-allow-origin": ALLOWED, "access-control-allow-credentials": "true"}
    assert "Origin" in response.headers["Vary"]
    # A wrong login from that origin still gets 401, readable by the page (so it can ask again).
    refused = session(app, password="nope").get(f"{app.web_url}/dicom-web/studies", headers={"Origin": ALLOWED})
    assert refused.status_code == 401
    assert cors(refused)["access-control-allow-origin"] == ALLOWED


def test_the_preflight_is_answered_by_nginx_without_credentials(app: ContainerHost) -> None:
    anonymous = requests.Session()
    anonymous.trust_env = False
    headers = {
        "Origin": ALLOWED,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    response = anonymous.options(f"{app.web_url}/dicom-web/studies", headers=headers, verify=str(app.server_cert))
    assert response.status_code == 204
    got = cors(response)
    assert got["access-control-allow-origin"] == ALLOWED
    assert got["access-control-allow-credentials"] == "true"
    assert {m.strip() for m in got["access-control-allow-methods"].split(",")} == {"GET", "POST", "OPTIONS"}
    assert {"authorization", "accept", "content-type"} <= {
        h.strip().lower() for h in got["access-control-allow-headers"].split(",")
    }
    assert 0 < int(got["access-control-max-age"]) <= 7200
    # nginx's own answer still carries the security headers.
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_another_origin_gets_no_cors_header_anywhere(app: ContainerHost, study: list[Sample]) -> None:
    s = session(app)
    for method, path in (("GET", "/dicom-web/studies"), ("OPTIONS", "/dicom-web/studies"), ("GET", "/system")):
        response = s.request(
            method, app.web_url + path, headers={"Origin": OTHER, "Access-Control-Request-Method": "GET"}
        )
        assert cors(response) == {}, (method, path)
    # The listed origin opens DICOMweb only: the REST API and the UI stay closed to other sites.
    for path in ("/system", "/studies", "/app/explorer.html", "/dicom-web"):
        response = s.get(app.web_url + path, headers={"Origin": ALLOWED})
        assert cors(response) == {}, path
        preflight = requests.Session()
        preflight.trust_env = False
        answer = preflight.options(
            app.web_url + path,
            headers={"Origin": ALLOWED, "Access-Control-Request-Method": "GET"},
            verify=str(app.server_cert),
        )
        assert answer.status_code != 204, path
        assert cors(answer) == {}, path


def test_dicomweb_answers_keep_the_security_headers(app: ContainerHost, study: list[Sample]) -> None:
    response = session(app).get(f"{app.web_url}/dicom-web/studies")
    assert response.headers["Strict-Transport-Security"].startswith("max-age=")
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "SAMEORIGIN"


def test_the_root_redirects_to_the_ui_without_reaching_orthanc(app: ContainerHost) -> None:
    anonymous = requests.Session()
    anonymous.trust_env = False
    response = anonymous.get(app.web_url + "/", allow_redirects=False, verify=str(app.server_cert))
    # 302 without a login: nginx answered; Orthanc would have asked for one (401).
    assert response.status_code == 302
    # Relative, so it is right whatever name the client used: Orthanc Explorer 2, as on the host
    # (the rendered nginx.conf runs unmodified here).
    assert response.headers["Location"] == "/ui/app/"
