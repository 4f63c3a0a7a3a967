-- Orthweb's audit of what reaches Orthanc outside the web front's access log: every DICOM C-FIND,
-- and every instance stored (by DICOM C-STORE, a REST upload, DICOMweb STOW-RS or Orthanc itself).
-- One line each in Orthanc's log (CloudWatch Logs group <prefix>/orthanc): "orthweb-audit " and
-- one JSON object. DICOM lines name the peer (its AET, and the network nginx took the connection
-- from: Orthanc sees each peer network at its own loopback address); uploads name the web
-- identity. Only identifiers: the query level, DICOM UIDs, Orthanc IDs; never a patient's name,
-- birth date or other search value. orthweb_dev.audit's Logs Insights query reads these lines
-- together with nginx's (docs/operations.md, "Who read a study").
--
-- Orthanc offers no Lua callback for C-GET or C-MOVE (docs/operations.md says what records those).

-- The loopback address nginx connects from -> the peer network(s) behind it (rendered; no secret).
local PEER_NETWORKS = {
  {{ audit_peer_networks }}
}

local function audit(entry)
  -- DumpJson writes one line; keepStrings: UIDs stay strings, never numbers.
  print("orthweb-audit " .. DumpJson(entry, true))
end

local function value(tags, key)
  local v = tags[key]
  if type(v) == "string" then
    return v
  end
  return ""
end

-- A UID as the peer or the file gave it, kept only if it is made of what UIDs (and C-FIND's lists
-- and wildcards) are made of: whatever else a device put there never reaches the log.
local function uid(tags, key)
  local v = value(tags, key)
  if v:match("^[%d%.\\%*%?]*$") then
    return v
  end
  return "(not a UID)"
end

-- C-FIND: the level asked, and the study and series UIDs when the query names them (a query by
-- patient name is logged as a query at its level, the name left out). The query goes on unchanged.
function IncomingFindRequestFilter(query, origin)
  audit({
    op = "C-FIND",
    aet = value(origin, "RemoteAet"),
    network = PEER_NETWORKS[value(origin, "RemoteIp")] or value(origin, "RemoteIp"),
    level = value(query, "0008,0052"):match("^%u*$") or "(not a level)",
    study = uid(query, "0020,000d"),
    series = uid(query, "0020,000e"),
  })
  return query
end

-- Every new instance, whatever brought it. RequestOrigin: DicomProtocol (C-STORE from a peer),
-- RestApi (a web upload: Username is the web identity), Plugins (DICOMweb STOW-RS: no user here;
-- nginx's line has it), Lua.
function OnStoredInstance(instanceId, tags, metadata, origin)
  local how = value(origin, "RequestOrigin")
  local entry = {
    op = (how == "DicomProtocol") and "C-STORE" or "store",
    via = how,
    instance = instanceId,
    study = uid(tags, "StudyInstanceUID"),
    series = uid(tags, "SeriesInstanceUID"),
    sop = uid(tags, "SOPInstanceUID"),
  }
  if how == "DicomProtocol" then
    entry["aet"] = value(origin, "RemoteAet")
    entry["network"] = PEER_NETWORKS[value(origin, "RemoteIp")] or value(origin, "RemoteIp")
  elseif how == "RestApi" then
    entry["user"] = value(origin, "Username")
  end
  audit(entry)
end
