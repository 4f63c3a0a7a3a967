// What a web request touched, for the access log's "touched" field (docs/operations.md, "Who read
// a study"): the Orthanc IDs and DICOM UIDs its query string names (WADO-URI's studyUID, seriesUID
// and objectUID; the resources of GET /tools/create-archive; a QIDO search by UID) and, on the
// command routes whose small JSON body names resources (archives, media, bulk actions, sends to
// other nodes, /tools/find), those in its body. The path is logged on its own.
//
// Only tokens of those two shapes are kept, so no patient name, date or other free text of a
// search ever reaches the log: an Orthanc ID is five groups of eight lowercase hex digits, a DICOM
// UID is digits with at least two dots. At most MAX_TOKENS distinct tokens, then "+N" (how many
// more): one access log line stays one CloudWatch event.
//
// Written for njs 0.7.9 (Debian's, in the test harness) and 0.8 (the nginx image's): no
// destructuring, no arrow functions.

var MAX_TOKENS = 100;
var ORTHANC_ID = /^[0-9a-f]{8}(-[0-9a-f]{8}){4}$/;
var DICOM_UID = /^[0-9]+(\.[0-9]+){2,}$/;
// Tokens are runs of the characters IDs and UIDs are made of; anything else separates them.
var SEPARATORS = /[^0-9a-f.\-]+/;

function decodedArgs(r) {
    var args = r.variables.args || "";
    try {
        return decodeURIComponent(args.replace(/\+/g, " "));
    } catch (e) {
        return args; // a malformed escape: the raw string still holds the well-formed tokens
    }
}

function requestBody(r) {
    // Set only where nginx.conf reads the body into memory (the command routes); elsewhere the
    // body streams to Orthanc and njs has none.
    try {
        return r.requestText || "";
    } catch (e) {
        return "";
    }
}

function touched(r) {
    var seen = {};
    var kept = [];
    var more = 0;
    var texts = [decodedArgs(r), requestBody(r)];
    for (var t = 0; t < texts.length; t++) {
        var tokens = texts[t].split(SEPARATORS);
        for (var i = 0; i < tokens.length; i++) {
            var token = tokens[i].replace(/^[.\-]+|[.\-]+$/g, "");
            if (seen[token] || !(ORTHANC_ID.test(token) || DICOM_UID.test(token))) {
                continue;
            }
            seen[token] = true;
            if (kept.length < MAX_TOKENS) {
                kept.push(token);
            } else {
                more++;
            }
        }
    }
    return kept.join(" ") + (more ? " +" + more : "");
}

export default { touched };
