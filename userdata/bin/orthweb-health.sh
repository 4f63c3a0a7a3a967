#!/bin/bash
# The load balancer's health check (hosts >= 2). orthweb-health.socket accepts each connection
# and runs this once per connection, the connection on stdin and stdout: it reads the HTTP
# request, then answers 200 only when a real request through nginx reaches Orthanc and Orthanc
# reaches its database (GET /changes?last, the request the orthancteam image's own liveness probe
# makes, because it touches the database), else 503. The request goes to nginx on loopback,
# verified against the host's own certificate, logged in as the monitoring identity (allowed that
# request alone; its password never reaches a command line: common.sh), with the user agent
# orthweb-health.
# Up to three tries of 1.5 s each, within the balancer's 6 s timeout: after a database failover
# each of Orthanc's pooled connections fails one request and reconnects, which is not a broken host.
set -uo pipefail
# shellcheck source=../lib/common.sh
. "${ORTHWEB_LIB:-/usr/local/lib/orthweb}/common.sh"

# The request line and headers, up to the blank line; the content does not matter.
IFS= read -r -t 5 _request || true
while IFS= read -r -t 2 header && [ -n "${header%$'\r'}" ]; do :; done

probe() {
  local login site scheme=https port=${ORTHWEB_WEB_PORT:-443}
  if [ "${ORTHWEB_LOGIN:-basic}" = cognito ]; then
    # The balancer's login cannot be passed from here: nginx's own health port asks Orthanc.
    curl -fsS -o /dev/null --max-time 1.5 --proto '=http' -A orthweb-health \
      "http://127.0.0.1:$ORTHWEB_COGNITO_PROBE_PORT/orthanc-health"
    return
  fi
  site=${ORTHWEB_SITE_NAME:-$ORTHWEB_BALANCER_DNS}
  [ "${ORTHWEB_HTTPS:-true}" = true ] || scheme=http
  login=$(monitor_login 2>/dev/null) || return 1
  printf '%s\n' "$login" |
    curl -fsS -o /dev/null --max-time 1.5 --proto '=http,https' -A orthweb-health -K - \
      --cacert "$ORTHWEB_TLS_DIR/server.crt" --resolve "$site:$port:127.0.0.1" \
      "${ORTHWEB_HEALTH_URL:-$scheme://$site:$port/changes?last}"
}

if probe 2>/dev/null || probe 2>/dev/null || probe 2>/dev/null; then
  status="200 OK" body="ok"
else
  status="503 Service Unavailable" body="unavailable"
fi
printf 'HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s\n' \
  "$status" $((${#body} + 1)) "$body"
