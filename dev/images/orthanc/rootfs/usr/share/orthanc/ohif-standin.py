"""The Orthanc stand-in's OHIF: OHIF's published build (npm @ohif/app, in /usr/share/orthanc/ohif)
served by Orthanc itself at /ohif/, as the orthancteam image's OHIF plugin serves its own build, so
the same logins, roles (the Lua filter) and nginx are in front of it.

The published build expects to live at the site's root: its index.html and its chunk loader name
"/" as their base. Both are answered here with /ohif/ instead, and app-config.js is this file's:
the one data source the OHIF plugin configures ("DataSource": "dicom-web"), DICOMweb at the
site's /dicom-web/. Any other path under /ohif/ that is not a file is the single-page app's route
(/ohif/viewer?StudyInstanceUIDs=...): index.html.
"""

import mimetypes
import os
from typing import Any

import orthanc  # type: ignore[import-not-found]  # provided by Orthanc's Python plugin

ROOT = "/usr/share/orthanc/ohif"
BASE = "/ohif/"

APP_CONFIG = """window.config = {
  routerBasename: '/ohif/',
  showStudyList: true,
  extensions: [],
  modes: [],
  showWarningMessageForCrossOrigin: false,
  showCPUFallbackMessage: false,
  investigationalUseDialog: { option: 'never' },
  strictZSpacingForVolumeViewport: true,
  defaultDataSourceName: 'dicomweb',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'dicomweb',
      configuration: {
        friendlyName: 'Orthanc DICOMweb',
        name: 'orthanc',
        wadoUriRoot: window.location.origin + '/wado',
        qidoRoot: window.location.origin + '/dicom-web',
        wadoRoot: window.location.origin + '/dicom-web',
        qidoSupportsIncludeField: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        dicomUploadEnabled: false,
        omitQuotationForMultipartRequest: true,
        bulkDataURI: { enabled: true, relativeResolution: 'studies' },
      },
    },
  ],
};
"""


def _rebased(name: str, data: bytes) -> bytes:
    """index.html, the scripts' chunk loaders (the app's and its workers') and the style sheets'
    font URLs with /ohif/ as their base instead of the site's root."""
    base = BASE.encode()
    if name == "index.html":
        data = data.replace(b'src="/', b'src="' + base).replace(b'href="/', b'href="' + base)
        return data.replace(b"window.PUBLIC_URL = '/'", b"window.PUBLIC_URL = '" + base + b"'")
    if name.endswith(".js"):
        return data.replace(b'__webpack_require__.p = "/";', b'__webpack_require__.p = "' + base + b'";')
    if name.endswith(".css"):
        return data.replace(b"url(/", b"url(" + base)
    return data


def serve(output: Any, uri: str, **request: Any) -> None:
    if request["method"] != "GET":
        output.SendMethodNotAllowed("GET")
        return
    name = request["groups"][0] if request["groups"] else ""
    if name == "app-config.js":
        output.AnswerBuffer(APP_CONFIG.encode(), "application/javascript")
        return
    path = os.path.realpath(os.path.join(ROOT, name))
    if not path.startswith(ROOT + os.sep) or not os.path.isfile(path):
        name, path = "index.html", os.path.join(ROOT, "index.html")  # a route of the app
    with open(path, "rb") as handle:
        data = handle.read()
    mime = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if name.endswith(".wasm"):
        mime = "application/wasm"
    output.AnswerBuffer(_rebased(name, data), mime)


orthanc.RegisterRestCallback("/ohif/(.*)", serve)


def redirect(output: Any, uri: str, **request: Any) -> None:
    output.Redirect(BASE)


orthanc.RegisterRestCallback("/ohif", redirect)
