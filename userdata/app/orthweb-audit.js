// What a web request touched, for the access log's "touched" field (docs/operations.md, "Audit"):
// the Orthanc IDs and DICOM UIDs its query string names (WADO-URI's studyUID, seriesUID and
// objectUID; the resources of GET /tools/create-archive; a QIDO search by UID) and, on the command
// routes whose small JSON body names resources (archives, media, bulk actions, sends to other
// nodes, searches), those in its body. The path is logged on its own.
//
// Only tokens of two shapes are kept, so no patient name or other free text of a search reaches
// the log: an Orthanc ID (five groups of eight hex digits) from any value, and a DICOM UID (digits
// with at least two dots) only from a value whose key names resources or UIDs (RESOURCE_KEYS,
// QUERY_KEYS): a birth date written 01.02.1970 in a search is not a UID. Values are decoded as
// Orthanc decodes them (every %XX escape, whatever else the string holds; JSON's \u escapes), so
// an escape cannot hide an identifier from the log while Orthanc still acts on it.
//
// At most MAX_TOKENS distinct tokens, those of the resource keys first, then "+N" (how many more):
// one access log line stays one CloudWatch event (Docker splits lines over 16 KB). "+?" ends the
// line if reading the request failed. The audit query keeps every line ending "+N" or "+?", since
// the study may be among the tokens left out.
//
// Written for njs 0.7.9 (Debian's, in the test harness) and 0.8 (the nginx image's): no
// destructuring, no arrow functions.

var MAX_TOKENS = 100;
var ORTHANC_ID = /^[0-9a-fA-F]{8}(-[0-9a-fA-F]{8}){4}$/;
var DICOM_UID = /^[0-9]+(\.[0-9]+){2,}$/;
// Tokens are runs of the characters IDs and UIDs are made of; anything else separates them.
var SEPARATORS = /[^0-9a-fA-F.\-]+/;
// Query-string keys whose values name resources: GET /tools/create-archive|media's resources,
// WADO-URI's, QIDO's (by keyword or tag), OHIF's and Stone's study links. Compared in any case.
var QUERY_KEYS = /^(resources|studyuid|seriesuid|objectuid|study|series|(study|series|sopinstance)instanceuids?|0020000d|0020000e|00080018)$/i;
// JSON keys of a command body whose values name resources: Resources (archives, media, bulk
// actions, sends; strings, or objects such as {"Level": ..., "ID": ...}), the UIDs of a find or
// query (by keyword or tag), a DICOMweb server's retrieve ({"Study": ...}) and get ("Uri").
var RESOURCE_KEYS = /^(resources|id|study|series|instance|uri|(study|series|sopinstance)instanceuids?|0020,?000d|0020,?000e|0008,?0018)$/i;

// Orthanc's URL decoding: '+' is a space and every %XX escape is its byte, whatever surrounds it
// (decodeURIComponent throws on one malformed escape and would leave the rest encoded).
function urlDecode(text) {
    return text.replace(/\+/g, " ").replace(/%([0-9A-Fa-f]{2})/g, function (m, hex) {
        return String.fromCharCode(parseInt(hex, 16));
    });
}

// JSON's \u escapes (four hex digits each), for a body JSON.parse refused but Orthanc's lenient
// parser may accept.
function jsonUnescape(text) {
    return text.replace(/\\u([0-9A-Fa-f]{4})/g, function (m, hex) {
        return String.fromCharCode(parseInt(hex, 16));
    });
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

// The tokens of one value: Orthanc IDs always, DICOM UIDs only where the key names resources.
function collect(text, named, out) {
    var tokens = String(text).split(SEPARATORS);
    for (var i = 0; i < tokens.length; i++) {
        var token = tokens[i].replace(/^[.\-]+|[.\-]+$/g, "");
        if (ORTHANC_ID.test(token)) {
            out[named ? 0 : 1].push(token.toLowerCase());
        } else if (named && DICOM_UID.test(token)) {
            out[0].push(token);
        }
    }
}

function fromQueryString(args, out) {
    var pairs = args.split("&");
    for (var i = 0; i < pairs.length; i++) {
        var at = pairs[i].indexOf("=");
        if (at < 0) {
            continue;
        }
        collect(urlDecode(pairs[i].slice(at + 1)), QUERY_KEYS.test(urlDecode(pairs[i].slice(0, at))), out);
    }
}

// Every string of a parsed JSON body, walked without recursion (a deeply nested body cannot
// exhaust the stack); a value is named when it or a container above it has a resource key. A
// body that is a bare string or a list (/tools/lookup, /modalities/x/store) names resources.
function fromJson(value, out) {
    var stack = [[value, typeof value !== "object" || Array.isArray(value)]];
    while (stack.length) {
        var item = stack.pop();
        var v = item[0];
        if (typeof v === "string") {
            collect(v, item[1], out);
        } else if (Array.isArray(v)) {
            for (var i = v.length - 1; i >= 0; i--) {
                stack.push([v[i], item[1]]); // last pushed, first read: the body's order
            }
        } else if (v !== null && typeof v === "object") {
            var keys = Object.keys(v);
            for (var k = keys.length - 1; k >= 0; k--) {
                stack.push([v[keys[k]], item[1] || RESOURCE_KEYS.test(keys[k])]);
            }
        }
    }
}

function fromBody(body, out) {
    if (!body) {
        return;
    }
    var parsed;
    try {
        parsed = JSON.parse(body);
    } catch (e) {
        // Not strict JSON (the bare UID of /tools/lookup, or JSON with comments, which Orthanc's
        // parser takes): every token of the text, its \u escapes decoded.
        collect(jsonUnescape(body), true, out);
        return;
    }
    fromJson(parsed, out);
}

function touched(r) {
    var out = [[], []]; // [tokens of resource keys, Orthanc IDs of other keys]
    var failed = false;
    try {
        fromQueryString(r.variables.args || "", out);
        fromBody(requestBody(r), out);
    } catch (e) {
        failed = true; // never silent: "+?" ends the line, and the audit query keeps it
    }
    var seen = {};
    var kept = [];
    var more = 0;
    var all = out[0].concat(out[1]);
    for (var i = 0; i < all.length; i++) {
        if (seen[all[i]]) {
            continue;
        }
        seen[all[i]] = true;
        if (kept.length < MAX_TOKENS) {
            kept.push(all[i]);
        } else {
            more++;
        }
    }
    var tail = failed ? "+?" : more ? "+" + more : "";
    return kept.concat(tail ? [tail] : []).join(" ");
}

export default { touched };
