#!/bin/bash
# Every minute (orthweb-probe.timer, only with alarms): asks Orthanc, through nginx over HTTPS as
# a client would and as the monitoring identity (common.sh), for its last change (GET
# /changes?last answers only when Orthanc and its database work; it is the orthancteam image's
# own liveness probe), then publishes 1 (answered 200) or 0 as the CloudWatch metric the
# application-health alarm watches. No data at all (host down, probe broken) counts as failing
# there. The same request as the load balancer's health check (orthweb-health, several hosts),
# which answers the balancer instead of CloudWatch.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "${ORTHWEB_LIB:-/usr/local/lib/orthweb}/common.sh"

scheme=http
[ "$ORTHWEB_HTTPS" != true ] || scheme=https
# The name the certificate carries: with several hosts the shared one names the site or the load
# balancer; with one, orthweb-cert named it after the site or the host.
site=${ORTHWEB_SITE_NAME:-${ORTHWEB_BALANCER_DNS:-$(site_name)}}
port=$ORTHWEB_WEB_PORT
url="$scheme://$site:$port/changes?last"

through_nginx() {
  if [ "${ORTHWEB_LOGIN:-basic}" = cognito ]; then
    # The balancer's login cannot be passed from here: nginx's own health port asks Orthanc.
    url="http://127.0.0.1:$ORTHWEB_COGNITO_PROBE_PORT/orthanc-health"
    curl -fsS -o /dev/null --max-time 10 --proto '=http' --user-agent orthweb-health "$url"
    return
  fi
  # As the monitoring identity, allowed this request alone; curl reads the login from stdin, so it
  # never appears on a command line.
  local login
  login=$(monitor_login) || return 1
  printf '%s\n' "$login" | curl -fsS -o /dev/null --max-time 10 --proto '=https,http' \
    --cacert "$ORTHWEB_TLS_DIR/server.crt" --connect-to "$site:$port:${ORTHWEB_HEALTH_CONNECT:-127.0.0.1:$port}" \
    --user-agent orthweb-health --config - "$url"
}

if through_nginx; then
  healthy=1
else
  healthy=0
  log "health check failed: GET $url through nginx did not answer 200"
fi
aws cloudwatch put-metric-data --namespace "$ORTHWEB_HEALTH_NAMESPACE" --metric-name "$ORTHWEB_HEALTH_METRIC" \
  --dimensions "Deployment=$ORTHWEB_NAME_PREFIX" --unit Count --value "$healthy"
