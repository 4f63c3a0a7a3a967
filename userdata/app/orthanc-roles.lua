-- Orthweb web roles, enforced inside Orthanc for every HTTP route (core REST, the UIs and every
-- plugin route), after Orthanc checked the login; false answers 403. Default deny. The roles:
-- admin everything; uploader a viewer's routes plus uploads; viewer reading, searches and
-- synchronous downloads. Neither deletes, modifies, labels, configures, reaches other nodes, or
-- touches jobs or /changes. The routes are those the image's UIs call, from their sources
-- (orthweb_dev.roles_table, checked by tests/test_roles_from_sources.py); see docs/host.md
-- ("Web users and roles"). Orthanc passes the method and the path only: no query, no body.

-- User name -> role, rendered from the `web_users` setting (no secret here).
local ROLES = {
  {{ web_user_roles }}
}

-- GET (and HEAD, OPTIONS) routes a viewer may read. Each entry is a Lua pattern on the path.
local READ = {
  "^/$", "^/favicon%.ico$", "^/app/", -- Orthanc Explorer
  "^/system$", "^/statistics$", "^/plugins$", "^/plugins/[^/]+$", -- what the UIs ask first
  "^/patients$", "^/patients/", "^/studies$", "^/studies/", "^/series$", "^/series/", -- resources
  "^/instances$", "^/instances/",
  "^/tools/now$", "^/tools/now%-local$", "^/tools/generate%-uid$", -- harmless tools
  "^/tools/labels$", -- the labels in use (Orthanc Explorer 2's label filters)
  -- Downloads of several resources: a GET is always synchronous (streamed, no job kept)
  "^/tools/create%-archive$", "^/tools/create%-media$", "^/tools/create%-media%-extended$",
  "^/dicom%-web/studies$", "^/dicom%-web/studies/", "^/dicom%-web/series$", -- QIDO-RS, WADO-RS
  "^/dicom%-web/series/", "^/dicom%-web/instances$", "^/dicom%-web/instances/", "^/wado$", -- WADO-URI
  "^/web%-viewer/", "^/ui/", "^/stone%-webviewer/", "^/ohif/", -- viewers
}

-- POST routes a viewer may use: searches, which change nothing stored. Not the POST forms of
-- .../archive, .../media and /tools/create-*: their body may ask for an asynchronous job
-- ("Asynchronous": true), which this filter cannot see; the UIs download with the GET forms.
local SEARCH = {
  "^/tools/find$", "^/tools/lookup$", "^/tools/count%-resources$",
}

-- POST routes an uploader may use besides SEARCH: storing new instances.
local UPLOAD = {
  "^/instances$", -- REST upload (also Orthanc Explorer's upload page)
  "^/dicom%-web/studies$", "^/dicom%-web/studies/[^/]+$", -- DICOMweb STOW-RS
  "^/tools/create%-dicom$", -- a new instance from a PDF or image (Orthanc Explorer 2's "add series")
}

local function listed(uri, patterns)
  for _, pattern in ipairs(patterns) do
    if string.find(uri, pattern) then
      return true
    end
  end
  return false
end

function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)
  local role = ROLES[username]
  -- The monitoring identity (every health check): GET /changes alone, for GET /changes?last, the
  -- cheapest request that proves Orthanc and its database answer (one row of the Changes table;
  -- /system reads no table, Orthanc caches the database version). Orthanc passes no query here:
  -- nginx refuses the identity any other request, ?last alone (docs/host.md, "Health checks").
  if role == "monitor" then
    return method == "GET" and uri == "/changes"
  end
  if role == "admin" then
    return true
  end
  if role ~= "uploader" and role ~= "viewer" then
    return false
  end
  if method == "GET" then
    return listed(uri, READ)
  end
  if method == "POST" then
    return listed(uri, SEARCH) or (role == "uploader" and listed(uri, UPLOAD))
  end
  return false -- PUT, DELETE
end
