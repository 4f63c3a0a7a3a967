"""What each web role may do, as a table of the calls the image's UIs make, one row per call.

Read from the UIs' own sources at the versions the image pins (REVIEWED), not guessed: Orthanc
Explorer 2 (OE2), the Stone Web Viewer, the OHIF plugin's OHIF, and the DICOMweb plugin's routes
that those viewers and DICOMweb clients use. Each row says which roles the rendered roles filter
(userdata/app/orthanc-roles.lua) must allow; every other role must be refused.
tests/test_roles_from_sources.py runs every row through the rendered filter in a real Lua 5.3
interpreter, and fails when a pinned version changes without REVIEWED being updated.
``python -m orthweb_dev.roles_table`` prints the table as Markdown.

The principle: browsing, viewing and downloading are allowed to every role; uploads to uploaders
and admins; every write, send, retrieve, job, label change, delete, modify and settings call to
admins only. Orthanc hands the filter the method and the path only (no query string, no body), so
a row's query string is shown for the reader and never decides anything.
"""

from __future__ import annotations

from dataclasses import dataclass

ADMIN, UPLOADER, VIEWER = "admin", "uploader", "viewer"
ROLES = (ADMIN, UPLOADER, VIEWER)
EVERYONE = frozenset(ROLES)
UPLOADS = frozenset({ADMIN, UPLOADER})
ADMINS = frozenset({ADMIN})


@dataclass(frozen=True)
class Reviewed:
    """The versions whose sources this table was read from (the image's build-matrix.json)."""

    image: str
    orthanc: str
    explorer2: str
    stone: str
    ohif_plugin: str
    dicomweb: str

    def line(self) -> str:
        """The versions as docs/host.md and the stand-in table name them."""
        return (
            f"{self.image} (Orthanc {self.orthanc}, DICOMweb {self.dicomweb}, Orthanc Explorer 2 "
            f"{self.explorer2}, Stone Web Viewer {self.stone}, OHIF plugin {self.ohif_plugin}"
        )


# Reviewed against orthanc-server/orthanc-builder tag 25.6.0, build-matrix.json: Orthanc-1.12.7,
# OrthancDicomWeb-1.20, orthanc-explorer-2 1.8.4, Stone e90ddb89c3ae (BuildbotVersion 2.6),
# OrthancOHIF-1.6. Change it only after re-reading the sources (docs/host.md, "Web users and roles").
REVIEWED = Reviewed(
    image="orthancteam/orthanc:25.6.0",
    orthanc="1.12.7",
    explorer2="1.8.4",
    stone="2.6",
    ohif_plugin="1.6",
    dicomweb="1.20",
)

# Where each UI's calls were read (repository@version: files).
OE2 = "orthanc-server/orthanc-explorer-2@1.8.4"
OE2_API = f"{OE2}: WebApplication/src/orthancApi.js"
STONE = "orthanc-mirrors/orthanc-stone@StoneWebViewer-2.6"
STONE_APP = f"{STONE}: Applications/StoneWebViewer/WebApplication/app.js"
STONE_LOADERS = f"{STONE}: OrthancStone/Sources/Loaders"
OHIF = "orthanc-mirrors/orthanc-ohif@1.6 (210ae43)"
DICOMWEB = "orthanc-dicomweb 1.20 (DICOMweb plugin routes)"
CORE = "Orthanc 1.12 core: OrthancServer/Sources/OrthancRestApi"

# Made-up identifiers: Orthanc IDs and DICOM UIDs.
PAT = "0946fcb6-cf12ab43-bad958c1-bf057ad5-0fc6f54c"
STUDY = "6b9e19d9-62094390-5f9ddb01-4a191ae7-9766b715"
SERIES = "9ea5d1a5-dbd1d8a1-7ab0b1e8-7dd1d9bc-2a8f9c1e"
INST = "f3b9c5e0-2a1b8d7c-0e9f4a3b-5c6d7e8f-01234567"
STUDY_UID = "1.2.826.0.1.3680043.8.498.1"
SERIES_UID = "1.2.826.0.1.3680043.8.498.2"
SOP_UID = "1.2.826.0.1.3680043.8.498.3"
WADO_RS = f"/dicom-web/studies/{STUDY_UID}/series/{SERIES_UID}"


@dataclass(frozen=True)
class Call:
    """One HTTP call a UI screen makes, and the roles the filter must allow (all others refused)."""

    ui: str
    screen: str
    method: str
    route: str
    source: str
    allowed: frozenset[str]

    @property
    def path(self) -> str:
        """What Orthanc gives the filter as ``uri``: the path, without the query string."""
        return self.route.split("?", 1)[0]

    @property
    def refused(self) -> frozenset[str]:
        return EVERYONE - self.allowed


CALLS: tuple[Call, ...] = (
    # --- Orthanc Explorer 2: loading the application (every screen) ---------------------------
    Call("OE2", "open the explorer", "GET", "/ui/app/", f"{OE2}: Plugin/Plugin.cpp", EVERYONE),
    Call("OE2", "open the explorer", "GET", "/ui/app/assets/index-3f2a.js", f"{OE2}: Plugin/Plugin.cpp", EVERYONE),
    Call("OE2", "open the explorer", "GET", "/ui/api/pre-login-configuration", f"{OE2}: WebApplication/src/main.js", EVERYONE),
    Call("OE2", "open the explorer", "GET", "/ui/api/configuration", f"{OE2_API} loadOe2Configuration", EVERYONE),
    Call("OE2", "open the explorer", "GET", "/system", f"{OE2_API} loadSystem", EVERYONE),
    # Send-to targets: OE2 catches a refusal ("not authorized ?") and offers no sending.
    Call("OE2", "open the explorer (send-to targets)", "GET", "/peers", f"{OE2_API} loadOrthancPeers", ADMINS),
    Call("OE2", "open the explorer (send-to targets)", "GET", "/modalities?expand", f"{OE2_API} loadDicomModalities", ADMINS),
    Call("OE2", "open the explorer (send-to targets)", "GET", "/dicom-web/servers", f"{OE2_API} loadDicomWebServers", ADMINS),
    Call("OE2", "open the explorer (label filters)", "GET", "/tools/labels", f"{OE2_API} loadAllLabels (store/modules/labels.js)", EVERYONE),
    # --- OE2: the study list --------------------------------------------------------------------
    Call("OE2", "study list: search, most recent", "POST", "/tools/find", f"{OE2_API} findStudies, getMostRecentStudiesExtended", EVERYONE),
    Call("OE2", "study list: statistics", "GET", "/statistics", f"{OE2_API} getStatistics (store/modules/studies.js)", EVERYONE),
    Call("OE2", "study list: studies per label (side bar)", "POST", "/tools/count-resources", f"{OE2_API} getLabelStudyCount (SideBar.vue)", EVERYONE),
    Call("OE2", "study list: one study", "GET", f"/studies/{STUDY}?requestedTags=PatientID;StudyDate", f"{OE2_API} getStudy", EVERYONE),
    Call("OE2", "study list: a study's labels", "GET", f"/studies/{STUDY}/labels", f"{OE2_API} getStudyLabels", EVERYONE),
    # Only without extended find (not this image's Orthanc 1.12.7 with PostgreSQL 7.2): /changes stays admin's.
    Call("OE2", "study list, legacy path (no extended find)", "GET", "/changes?last", f"{OE2_API} getLastChangeId", ADMINS),
    # --- OE2: study, series and instance views --------------------------------------------------
    Call("OE2", "study view: series", "GET", f"/studies/{STUDY}/series", f"{OE2_API} getStudySeries", EVERYONE),
    Call("OE2", "study view: PDF reports", "GET", f"/studies/{STUDY}/instances?expanded&requestedTags=SOPClassUID", f"{OE2_API} getStudyInstancesExpanded (StudyItem.vue)", EVERYONE),
    Call("OE2", "study view: same patient's studies", "POST", "/tools/find", f"{OE2_API} getSamePatientStudies (StudyDetails.vue)", EVERYONE),
    Call("OE2", "study view: is it stored here", "POST", "/tools/lookup", f"{OE2_API} studyExists, findStudy", EVERYONE),
    Call("OE2", "study view: patient", "GET", f"/patients/{PAT}", f"{OE2_API} getPatient", EVERYONE),
    Call("OE2", "series view: instances", "GET", f"/series/{SERIES}/instances", f"{OE2_API} getSeriesInstances", EVERYONE),
    Call("OE2", "series view: instances, paged", "POST", "/tools/find", f"{OE2_API} getSeriesInstancesExtended", EVERYONE),
    Call("OE2", "series view: parent study", "GET", f"/series/{SERIES}/study", f"{OE2_API} getSeriesParentStudy", EVERYONE),
    Call("OE2", "instance view: tags", "GET", f"/instances/{INST}/tags", f"{OE2_API} getInstanceTags", EVERYONE),
    Call("OE2", "instance view: simplified tags", "GET", f"/instances/{INST}/tags?simplify", f"{OE2_API} getSimplifiedInstanceTags", EVERYONE),
    Call("OE2", "instance view: header", "GET", f"/instances/{INST}/header", f"{OE2_API} getInstanceHeader", EVERYONE),
    Call("OE2", "instance view: parent study", "GET", f"/instances/{INST}/study", f"{OE2_API} getInstanceParentStudy", EVERYONE),
    Call("OE2", "instance view: preview", "GET", f"/instances/{INST}/preview", f"{OE2_API} getInstancePreviewUrl", EVERYONE),
    Call("OE2", "instance view: PDF", "GET", f"/instances/{INST}/pdf", f"{OE2_API} getInstancePdfUrl", EVERYONE),
    Call("OE2", "open in Stone", "GET", f"/stone-webviewer/index.html?study={STUDY_UID}", f"{OE2_API} getStoneViewerUrl", EVERYONE),
    Call("OE2", "open in OHIF", "GET", f"/ohif/viewer?StudyInstanceUIDs={STUDY_UID}", f"{OE2_API} getOhifViewerUrlForDicomWeb", EVERYONE),
    Call("OE2", "open in OHIF (DICOM JSON)", "GET", f"/studies/{STUDY}/ohif-dicom-json", f"{OE2_API} getOhifViewerUrlForDicomJson", EVERYONE),
    # --- OE2: downloads (all synchronous GETs: Orthanc streams the ZIP, no job left behind) -------
    Call("OE2", "download instance", "GET", f"/instances/{INST}/file?filename=CT1.dcm", f"{OE2_API} getInstanceDownloadUrl", EVERYONE),
    Call("OE2", "download study ZIP", "GET", f"/studies/{STUDY}/archive?filename=study.zip", f"{OE2_API} getDownloadZipUrl", EVERYONE),
    Call("OE2", "download series ZIP", "GET", f"/series/{SERIES}/archive?filename=series.zip", f"{OE2_API} getDownloadZipUrl", EVERYONE),
    Call("OE2", "download study DICOMDIR", "GET", f"/studies/{STUDY}/media?filename=study.zip", f"{OE2_API} getDownloadDicomDirUrl", EVERYONE),
    Call("OE2", "download series DICOMDIR", "GET", f"/series/{SERIES}/media", f"{OE2_API} getDownloadDicomDirUrl", EVERYONE),
    Call("OE2", "download selected studies ZIP", "GET", f"/tools/create-archive?resources={STUDY},{STUDY}", f"{OE2_API} getBulkDownloadZipUrl", EVERYONE),
    Call("OE2", "download selected studies DICOMDIR", "GET", f"/tools/create-media?resources={STUDY}", f"{OE2_API} getBulkDownloadDicomDirUrl", EVERYONE),
    # --- OE2: upload ----------------------------------------------------------------------------
    Call("OE2", "upload files", "POST", "/instances", f"{OE2_API} uploadFile (UploadHandler.vue)", UPLOADS),
    Call("OE2", "add a series (PDF, image) to a study", "POST", "/tools/create-dicom", f"{OE2_API} createDicom (AddSeriesModal.vue)", UPLOADS),
    # --- OE2: send, query and retrieve (other nodes), and the jobs they start --------------------
    Call("OE2", "send to modality", "POST", "/modalities/PACS2/store", f"{OE2_API} sendToDicomModality", ADMINS),
    Call("OE2", "send to peer", "POST", "/peers/site-b/store", f"{OE2_API} sendToOrthancPeer", ADMINS),
    Call("OE2", "send to peer (transfers)", "POST", "/transfers/send", f"{OE2_API} sendToOrthancPeerWithTransfers", ADMINS),
    Call("OE2", "send to DICOMweb server", "POST", "/dicom-web/servers/cloud/stow", f"{OE2_API} sendToDicomWebServer", ADMINS),
    Call("OE2", "modality: echo", "POST", "/modalities/PACS2/echo", f"{OE2_API} remoteModalityEcho", ADMINS),
    Call("OE2", "modality: query", "POST", "/modalities/PACS2/query", f"{OE2_API} remoteDicomFind", ADMINS),
    Call("OE2", "modality: query answers", "GET", "/queries/q-1234/answers?expand&simplify", f"{OE2_API} remoteDicomFind", ADMINS),
    Call("OE2", "modality: retrieve (C-MOVE)", "POST", "/modalities/PACS2/move", f"{OE2_API} remoteDicomRetrieveResources", ADMINS),
    Call("OE2", "modality: retrieve (C-GET)", "POST", "/modalities/PACS2/get", f"{OE2_API} remoteDicomRetrieveResources", ADMINS),
    Call("OE2", "DICOMweb server: query", "POST", "/dicom-web/servers/cloud/qido", f"{OE2_API} qidoRs", ADMINS),
    Call("OE2", "DICOMweb server: retrieve", "POST", "/dicom-web/servers/cloud/retrieve", f"{OE2_API} wadoRsRetrieve", ADMINS),
    Call("OE2", "job progress (send, modify, retrieve)", "GET", "/jobs/0e8f4b2a-7c1d-4e5f-9a8b-1c2d3e4f5a6b", f"{OE2_API} getJobStatus (JobItem.vue)", ADMINS),
    # --- OE2: modify, delete, labels --------------------------------------------------------------
    Call("OE2", "modify study", "POST", f"/studies/{STUDY}/modify", f"{OE2_API} modifyResource (ModifyModal.vue)", ADMINS),
    Call("OE2", "anonymize study", "POST", f"/studies/{STUDY}/anonymize", f"{OE2_API} anonymizeResource", ADMINS),
    Call("OE2", "move series to another study", "POST", f"/studies/{STUDY}/merge", f"{OE2_API} mergeSeriesInExistingStudy", ADMINS),
    Call("OE2", "modify: new StudyInstanceUID", "GET", "/tools/generate-uid?level=study", f"{OE2_API} generateUid", EVERYONE),
    Call("OE2", "delete study", "DELETE", f"/studies/{STUDY}", f"{OE2_API} deleteResource", ADMINS),
    Call("OE2", "delete series", "DELETE", f"/series/{SERIES}", f"{OE2_API} deleteResource", ADMINS),
    Call("OE2", "delete instance", "DELETE", f"/instances/{INST}", f"{OE2_API} deleteResource", ADMINS),
    Call("OE2", "delete selected studies", "POST", "/tools/bulk-delete", f"{OE2_API} deleteResources", ADMINS),
    Call("OE2", "add a label", "PUT", f"/studies/{STUDY}/labels/urgent", f"{OE2_API} addLabel (LabelsEditor.vue)", ADMINS),
    Call("OE2", "remove a label", "DELETE", f"/studies/{STUDY}/labels/urgent", f"{OE2_API} removeLabel (BulkLabelsModal.vue)", ADMINS),
    # --- OE2: settings --------------------------------------------------------------------------
    Call("OE2", "settings: log level", "GET", "/tools/log-level", f"{OE2_API} getVerboseLevel (Settings.vue)", ADMINS),
    Call("OE2", "settings: set log level", "PUT", "/tools/log-level", f"{OE2_API} setVerboseLevel", ADMINS),
    Call("OE2", "settings: delayed deletion", "GET", "/plugins/delayed-deletion/status", f"{OE2_API} getDelayedDeletionStatus", ADMINS),
    Call("OE2", "settings: housekeeper", "GET", "/plugins/housekeeper/status", f"{OE2_API} getHousekeeperStatus", ADMINS),
    # The authorization plugin's routes (roles, shares): not loaded here; OE2 calls them only with it.
    Call("OE2", "settings: roles", "GET", "/auth/settings/roles", f"{OE2_API} getRolesConfig", ADMINS),
    Call("OE2", "settings: set roles", "PUT", "/auth/settings/roles", f"{OE2_API} setRolesConfig", ADMINS),
    Call("OE2", "settings: permissions", "GET", "/auth/settings/permissions", f"{OE2_API} getPermissionsList", ADMINS),
    Call("OE2", "share a study (token)", "PUT", "/auth/tokens/viewer-instant-link", f"{OE2_API} createToken (ShareModal.vue)", ADMINS),
    Call("OE2", "open a shared link", "POST", "/auth/tokens/decode", f"{OE2_API} parseToken (TokenLanding.vue)", ADMINS),
    # --- Stone Web Viewer -----------------------------------------------------------------------
    Call("Stone", "open the viewer", "GET", f"/stone-webviewer/index.html?study={STUDY_UID}", f"{STONE}: Applications/StoneWebViewer/Plugin/Plugin.cpp", EVERYONE),
    Call("Stone", "open the viewer", "GET", "/stone-webviewer/configuration.json", f"{STONE_APP} (CONFIGURATION_SOURCE)", EVERYONE),
    Call("Stone", "open the viewer", "GET", "/stone-webviewer/StoneWebViewer.wasm", f"{STONE}: Applications/StoneWebViewer/Plugin/Plugin.cpp", EVERYONE),
    Call("Stone", "open the viewer", "GET", "/system", f"{STONE_APP} (orthancSystem)", EVERYONE),
    Call("Stone", "study and series list", "GET", f"/dicom-web/studies?StudyInstanceUID={STUDY_UID}", f"{STONE_LOADERS}/DicomResourcesLoader.cpp", EVERYONE),
    Call("Stone", "study and series list", "GET", f"/dicom-web/series?StudyInstanceUID={STUDY_UID}", f"{STONE_LOADERS}/DicomResourcesLoader.cpp", EVERYONE),
    Call("Stone", "thumbnails", "GET", f"/dicom-web/instances?StudyInstanceUID={STUDY_UID}&SeriesInstanceUID={SERIES_UID}", f"{STONE_LOADERS}/SeriesThumbnailsLoader.cpp", EVERYONE),
    Call("Stone", "thumbnails", "GET", f"{WADO_RS}/rendered", f"{STONE_LOADERS}/SeriesThumbnailsLoader.cpp", EVERYONE),
    Call("Stone", "series metadata", "GET", f"{WADO_RS}/metadata", f"{STONE_LOADERS}/SeriesMetadataLoader.cpp", EVERYONE),
    Call("Stone", "frames", "GET", f"{WADO_RS}/instances/{SOP_UID}/frames/1", f"{STONE_LOADERS}/SeriesFramesLoader.cpp", EVERYONE),
    Call("Stone", "frames (fallback)", "GET", f"{WADO_RS}/instances/{SOP_UID}/frames/1/rendered", f"{STONE_LOADERS}/SeriesFramesLoader.cpp", EVERYONE),
    Call("Stone", "instance metadata", "GET", f"{WADO_RS}/instances/{SOP_UID}/metadata", f"{STONE}: Applications/StoneWebViewer/WebAssembly/StoneWebViewer.cpp", EVERYONE),
    Call("Stone", "video: find the instance", "POST", "/tools/find", f"{STONE_APP} (series type VIDEO)", EVERYONE),
    Call("Stone", "video", "GET", f"/instances/{INST}/frames/0/raw", f"{STONE_APP} (series type VIDEO)", EVERYONE),
    Call("Stone", "download study: look it up", "POST", "/tools/lookup", f"{STONE_APP} DownloadStudy", EVERYONE),
    Call("Stone", "download study (ZIP streaming, ApiVersion >= 13)", "GET", f"/studies/{STUDY}/archive", f"{STONE_APP} DownloadStudy", EVERYONE),
    Call("Stone", "download study as DICOMDIR", "GET", f"/studies/{STUDY}/media", f"{STONE_APP} DownloadStudy", EVERYONE),
    # Only for Orthanc < 1.9.4 (ApiVersion < 13): an asynchronous job. Refused to non-admins (issue 19).
    Call("Stone", "download study, legacy: archive job", "POST", f"/studies/{STUDY}/archive", f"{STONE_APP} DownloadStudy", ADMINS),
    Call("Stone", "download study, legacy: job progress", "GET", "/jobs/0e8f4b2a-7c1d-4e5f-9a8b-1c2d3e4f5a6b", f"{STONE_APP} CheckIsDownloadComplete", ADMINS),
    Call("Stone", "download study, legacy: job result", "GET", "/jobs/0e8f4b2a-7c1d-4e5f-9a8b-1c2d3e4f5a6b/archive", f"{STONE_APP} CheckIsDownloadComplete", ADMINS),
    # --- OHIF (the OHIF plugin 1.6's OHIF 3 build; DataSource dicom-web, or DICOM JSON) ------------
    Call("OHIF", "study list", "GET", "/ohif/", f"{OHIF}: Sources/Plugin.cpp", EVERYONE),
    Call("OHIF", "open the viewer", "GET", f"/ohif/viewer?StudyInstanceUIDs={STUDY_UID}", f"{OHIF}: Sources/Plugin.cpp", EVERYONE),
    Call("OHIF", "open the viewer", "GET", "/ohif/app-config.js", f"{OHIF}: Sources/Plugin.cpp", EVERYONE),
    Call("OHIF", "study list (QIDO-RS)", "GET", "/dicom-web/studies?limit=101&offset=0&fuzzymatching=false", f"{OHIF}: Sources/app-config-system.js (qidoRoot ../dicom-web)", EVERYONE),
    Call("OHIF", "study's series (QIDO-RS)", "GET", f"/dicom-web/studies/{STUDY_UID}/series", f"{OHIF}: Sources/app-config-system.js", EVERYONE),
    Call("OHIF", "series metadata (WADO-RS)", "GET", f"{WADO_RS}/metadata", f"{OHIF}: Sources/app-config-system.js (wadoRoot)", EVERYONE),
    Call("OHIF", "frames (WADO-RS)", "GET", f"{WADO_RS}/instances/{SOP_UID}/frames/1", f"{OHIF}: Sources/app-config-system.js (imageRendering wadors)", EVERYONE),
    Call("OHIF", "bulk data (PDF, video)", "GET", f"{WADO_RS}/instances/{SOP_UID}/bulk/00420011", f"{OHIF}: Sources/app-config-system.js (bulkDataURI)", EVERYONE),
    Call("OHIF", "DICOM JSON mode: the study", "GET", f"/studies/{STUDY}/ohif-dicom-json", f"{OHIF}: Sources/Plugin.cpp GetOhifStudy", EVERYONE),
    Call("OHIF", "DICOM JSON mode: instances", "GET", f"/instances/{INST}/file", f"{OHIF}: Sources/Plugin.cpp (dicomweb:../instances/ID/file)", EVERYONE),
    # --- DICOMweb and WADO-URI clients (the DICOMweb plugin; Orthanc core) --------------------------
    Call("DICOMweb", "WADO-URI", "GET", f"/wado?requestType=WADO&studyUID={STUDY_UID}&objectUID={SOP_UID}", DICOMWEB, EVERYONE),
    Call("DICOMweb", "WADO-RS study", "GET", f"/dicom-web/studies/{STUDY_UID}", DICOMWEB, EVERYONE),
    Call("DICOMweb", "STOW-RS", "POST", "/dicom-web/studies", DICOMWEB, UPLOADS),
    Call("DICOMweb", "STOW-RS into a study", "POST", f"/dicom-web/studies/{STUDY_UID}", DICOMWEB, UPLOADS),
    # --- REST: the asynchronous archive and media (issue 19, item 3) ----------------------------------
    # The filter cannot read the body ("Asynchronous": true), so every POST archive/media, which is
    # the only form that can ask for a job, is admin's; the GET forms (always synchronous) stay open.
    Call("REST", "archive job", "POST", f"/studies/{STUDY}/archive", f"{CORE}/OrthancRestArchive.cpp CreateSinglePost", ADMINS),
    Call("REST", "media job", "POST", f"/series/{SERIES}/media", f"{CORE}/OrthancRestArchive.cpp CreateSinglePost", ADMINS),
    Call("REST", "archive job, several resources", "POST", "/tools/create-archive", f"{CORE}/OrthancRestArchive.cpp CreateBatchPost", ADMINS),
    Call("REST", "media job, several resources", "POST", "/tools/create-media", f"{CORE}/OrthancRestArchive.cpp CreateBatchPost", ADMINS),
    Call("REST", "media job, extended", "POST", "/tools/create-media-extended", f"{CORE}/OrthancRestArchive.cpp CreateBatchPost", ADMINS),
)  # fmt: skip

# The monitoring identity (the health checks' login, role "monitor") may ask GET /changes alone,
# as /changes?last: Orthanc passes its filter no query, and nginx refuses the identity every other
# request. Besides every row of CALLS it must be refused these: reads every role is allowed, and
# the other methods and neighbours of its one route. tests/test_roles_from_sources.py asks them of
# the rendered filter in lua5.3, tests/test_app_daytwo.py of nginx and Orthanc on the containers.
MONITOR_REFUSED: tuple[tuple[str, str], ...] = (
    ("GET", "/patients"),
    ("GET", "/studies"),
    ("GET", "/instances"),
    ("GET", "/system"),
    ("GET", "/statistics"),
    ("GET", "/changes/"),
    ("GET", "/changes/1"),
    ("GET", "/exports"),
    ("GET", "/tools/now"),
    ("GET", "/app/explorer.html"),
    ("GET", "/ui/app/"),
    ("GET", "/dicom-web/studies"),
    ("POST", "/tools/find"),
    ("POST", "/changes"),
    ("PUT", "/changes"),
    ("DELETE", "/changes"),
    ("POST", "/tools/execute-script"),
)


def table() -> str:
    """The table as Markdown, one row per call."""
    rows = [
        f"Reviewed: {REVIEWED.line()}).",
        "",
        "| UI | Screen / action | Method | Route (example) | Allowed | Refused | Source |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in CALLS:
        allowed = ", ".join(r for r in ROLES if r in c.allowed)
        refused = ", ".join(r for r in ROLES if r in c.refused) or "-"
        rows.append(f"| {c.ui} | {c.screen} | {c.method} | `{c.route}` | {allowed} | {refused} | {c.source} |")
    return "\n".join(rows)


def main() -> None:
    print(table())


if __name__ == "__main__":
    main()
