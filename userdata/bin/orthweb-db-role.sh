#!/bin/bash
# Orthanc's own database login. Orthanc never holds the RDS master login: orthweb-secrets writes its
# connection URI with the role ORTHWEB_DB_ROLE and a password derived from the master password, and
# this step makes the database agree. The role owns the Orthanc database and Orthanc's objects in it
# and nothing else: no SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS, and a member of no
# role (so not of rds_superuser).
# When the role logs in with that password and holds none of these, the step does nothing.
# Otherwise (first boot, a rotated master password, a database restored from another deployment's
# snapshot, or one an earlier Orthweb filled as the master user) it logs in as the master user and
# creates or corrects the role, then hands it the database and the tables, sequences, functions
# and large objects (the DICOM files) the master user owns there (not an extension's objects, such
# as pg_trgm's functions: they stay with the extension). The master user is no superuser: it can
# neither give nor take SUPERUSER, REPLICATION or BYPASSRLS, so a role holding one is reported.
# The password reaches PostgreSQL only as a SCRAM-SHA-256 verifier (as psql's \password sends it),
# so no server log can show it; passwords go to psql in its environment, never in a command line.
# Prints nothing (no file of Orthanc's changes here); records the role it checked in the state dir.
set -euo pipefail
# shellcheck source=../lib/common.sh
. "${ORTHWEB_LIB:-/usr/local/lib/orthweb}/common.sh"
umask 077

uri=$ORTHWEB_SECRETS_DIR/ORTHANC__POSTGRESQL__CONNECTION_URI
done_file=$ORTHWEB_STATE_DIR/db-role
[ -s "$uri" ] || die "$uri is missing: orthweb-secrets writes it first"
export PGHOST=$ORTHWEB_DB_ADDRESS PGPORT=$ORTHWEB_DB_PORT PGDATABASE=$ORTHWEB_DB_NAME PGCONNECT_TIMEOUT=10
export PGSSLMODE=verify-full PGSSLROOTCERT=$ORTHWEB_TLS_DIR/rds-ca.pem PGAPPNAME=orthweb-db-role
install -d -m 0700 "$ORTHWEB_STATE_DIR"
err=$(mktemp)
trap 'rm -f "$err"' EXIT

# The role and password in Orthanc's URI, and the password's SCRAM-SHA-256 verifier (RFC 5802/7677).
# shellcheck disable=SC2016 # the quoted text is Python
{ read -r role && read -r password && read -r verifier; } < <(python3 -c '
import base64, hashlib, hmac, os, sys, urllib.parse as up
uri = up.urlsplit(open(sys.argv[1]).read().strip())
pw, salt = up.unquote(uri.password or ""), os.urandom(16)
key = hashlib.pbkdf2_hmac("sha256", pw.encode(), salt, 4096)
mac = lambda text: hmac.new(key, text, hashlib.sha256).digest()
b64 = lambda data: base64.b64encode(data).decode()
print(up.unquote(uri.username or ""), pw, sep="\n")
print("SCRAM-SHA-256$4096:%s$%s:%s" % (b64(salt), b64(hashlib.sha256(mac(b"Client Key")).digest()), b64(mac(b"Server Key"))))
' "$uri")
if [ "$role" != "${ORTHWEB_DB_ROLE:-}" ] || [ -z "$password" ]; then
  die "Orthanc's URI does not hold the role '${ORTHWEB_DB_ROLE:-}' and a password; run orthweb-secrets"
fi

# in_order: logs in as the role; prints "ok", "fixable" (CREATEROLE, CREATEDB or a membership, which
# the master user removes) or "unfixable" (SUPERUSER, REPLICATION or BYPASSRLS: only AWS can remove them).
in_order() {
  PGUSER=$role PGPASSWORD=$password psql -XAtq 2>"$err" -c "SELECT CASE
    WHEN rolsuper OR rolreplication OR rolbypassrls THEN 'unfixable' WHEN rolcreaterole OR rolcreatedb
    OR EXISTS (SELECT FROM pg_auth_members WHERE member = r.oid) THEN 'fixable' ELSE 'ok' END
    FROM pg_roles r WHERE rolname = current_user"
}
unfixable="the role $role holds SUPERUSER, REPLICATION or BYPASSRLS, which only AWS can remove"
state=$(in_order) || true
[ "$state" != unfixable ] || die "$unfixable"
# Set up when the login fails or the role holds too much, and until one set-up has run to the end
# on this host (it may have stopped half-way through handing over the large objects).
if [ "$state" != ok ] || [ ! -e "$done_file" ]; then
  login_refused="password authentication failed\|does not exist\|not permitted to log in\|permission denied for database"
  if [ -z "$state" ] && ! grep -q "$login_refused" "$err"; then
    cat "$err" >&2
    die "cannot reach the database as $role"  # not a login problem: the next run tries again
  fi
  log "setting up the database role $role"
  rm -f "$done_file"
  master=$(retry "read the database master secret" aws secretsmanager get-secret-value \
    --secret-id "$ORTHWEB_DB_SECRET_ARN" --query SecretString --output text)
  user=$(jq -er '.username | strings' <<<"$master") || die "the database secret has no username"
  # A URI left from before a rotation (orthweb-secrets failed) must not set an old password.
  [ "$(jq -j .password <<<"$master" | db_app_password)" = "$password" ] ||
    die "Orthanc's URI is not derived from the current master password (orthweb-secrets has not run since it changed); not changing the role"
  # The role, in one transaction (all or nothing), one host at a time (the lock); then what the
  # master user owns in the database, 1,000 objects a transaction (a transaction holds a lock on
  # each until it ends; large objects, a DICOM file each, may be millions). The search path leaves
  # out public, where the role may create functions named like the ones called here. The GRANT
  # always runs: from PostgreSQL 16 a role's creator holds ADMIN on it, but not SET.
  # \gexec runs each row a query returns as a statement; :'x' is the variable x as a quoted literal.
  {
    printf "\\set role '%s'\n\\set verifier '%s'\n" "$role" "$verifier"
    cat <<'SQL'
\set ON_ERROR_STOP on
SET search_path = pg_catalog, pg_temp;
SET client_min_messages = warning;
SET orthweb.role = :'role';
BEGIN;
SELECT pg_advisory_xact_lock(hashtext('orthweb-db-role'));
SELECT format('CREATE ROLE %I', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN NOCREATEDB NOCREATEROLE VALID UNTIL %L PASSWORD %L', :'role', 'infinity',
  :'verifier') \gexec
SELECT format('REVOKE %I FROM %I', pg_get_userbyid(roleid), :'role') FROM pg_auth_members
  WHERE member = :'role'::regrole \gexec
SELECT format('GRANT %I TO %I', :'role', current_user) \gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database()) \gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', current_database(), :'role') \gexec
COMMIT;
DO $$ DECLARE o record; n int := 0; me regrole := current_user; BEGIN
  FOR o IN SELECT CASE relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END AS kind, c.oid::regclass::text AS name
      FROM pg_class c WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p', 'v', 'm', 'S')
      AND relowner = me AND NOT EXISTS (SELECT FROM pg_depend WHERE objid = c.oid AND deptype IN ('a', 'i', 'e'))
    UNION ALL SELECT 'ROUTINE', p.oid::regprocedure::text FROM pg_proc p WHERE pronamespace = 'public'::regnamespace
      AND proowner = me AND NOT EXISTS (SELECT FROM pg_depend WHERE objid = p.oid AND deptype = 'e')
    UNION ALL SELECT 'LARGE OBJECT', oid::text FROM pg_largeobject_metadata WHERE lomowner = me LOOP
    EXECUTE format('ALTER %s %s OWNER TO %I', o.kind, o.name, current_setting('orthweb.role'));
    n := n + 1;
    IF n % 1000 = 0 THEN COMMIT; END IF;
  END LOOP;
END $$;
SQL
  } | PGUSER=$user PGPASSWORD=$(jq -r .password <<<"$master") psql -Xq -o /dev/null ||
    die "setting up the role $role failed (PostgreSQL's error is above); the next run starts it again"
  state=$(in_order) || true
  [ "$state" != unfixable ] || die "$unfixable"
  [ "$state" != fixable ] || die "the role $role keeps a membership the master user did not grant and cannot revoke"
  [ "$state" = ok ] || { cat "$err" >&2; die "the role $role cannot log in after the set-up"; }
  printf '%s\n' "$role" >"$done_file"
  log "the database role $role is set up"
fi
