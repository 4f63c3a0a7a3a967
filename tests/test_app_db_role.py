"""Orthanc's own database role, run for real on the harness's PostgreSQL (TLS, SCRAM, a master user
that, like RDS's, may create roles and databases and is no superuser): Orthanc never holds the master
login; its role owns the Orthanc database and everything in it and nothing else; the host's
``orthweb-db-role`` step repairs a role whose password or privileges are wrong and hands over a
database an earlier Orthweb filled as the master user; and no password reaches a command line or a
server log."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from orthweb.bootstrap import DB_APP_ROLE, USERDATA_DIR
from orthweb.settings import Settings
from orthweb_dev.containers import ContainerHost, containers_for_test
from orthweb_dev.dicom import make_instance
from orthweb_dev.harness import DB_NAME, DB_URI_FILE
from orthweb_dev.testing import command_lines, db_app_password, record_command_lines

pytestmark = pytest.mark.app


@pytest.fixture(scope="module")
def app() -> Iterator[ContainerHost]:
    """The application in its containers (the rendered compose file on Docker), Orthanc logging in
    to the harness's PostgreSQL from inside them."""
    with containers_for_test(Settings()) as host:
        yield host


def orthanc_login(app: ContainerHost) -> tuple[str, str]:
    uri = urlsplit((app.secrets / DB_URI_FILE).read_text())
    return unquote(uri.username or ""), unquote(uri.password or "")


def master_password(app: ContainerHost) -> str:
    secret = app.aws("secretsmanager", "get-secret-value", "--secret-id", app.db_secret_arn)["SecretString"]
    return str(json.loads(secret)["password"])


def psql_as(
    app: ContainerHost, user: str, password: str, sql: str, db: str = DB_NAME
) -> subprocess.CompletedProcess[str]:
    """``sql`` over TCP with TLS verified, as Orthanc connects, logged in as ``user``."""
    env = {
        **os.environ,
        "PGHOST": "127.0.0.1",
        "PGPORT": str(app.ports["postgres"]),
        "PGSSLMODE": "verify-full",
        "PGSSLROOTCERT": str(app.tls / "rds-ca.pem"),
        "PGUSER": user,
        "PGPASSWORD": password,
        "PGDATABASE": db,
    }
    cmd = ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)


def db_role_step(app: ContainerHost, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The host's orthweb-db-role step, with the host's environment (or ``env``), whatever its outcome."""
    return subprocess.run(
        [str(app.root / "sbin" / "orthweb-db-role")],
        env=env or app.script_env(),
        capture_output=True,
        text=True,
        check=False,
    )


# Objects of an extension (Orthanc creates pg_trgm) belong to whoever the extension says.
OWNERS = """
SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()
UNION SELECT pg_get_userbyid(relowner) FROM pg_class o WHERE relnamespace = 'public'::regnamespace
  AND NOT EXISTS (SELECT FROM pg_depend WHERE objid = o.oid AND deptype = 'e')
UNION SELECT pg_get_userbyid(proowner) FROM pg_proc o WHERE pronamespace = 'public'::regnamespace
  AND NOT EXISTS (SELECT FROM pg_depend WHERE objid = o.oid AND deptype = 'e')
UNION SELECT pg_get_userbyid(lomowner) FROM pg_largeobject_metadata
"""
ATTRIBUTES = "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolcanlogin FROM pg_roles"


def owners(app: ContainerHost) -> set[str]:
    """Who owns the Orthanc database, its schema objects and its large objects (the DICOM files)."""
    return set(app.psql(OWNERS).split())


@pytest.fixture(scope="module")
def stored(app: ContainerHost) -> None:
    """One instance, so the database holds Orthanc's tables and a large object of its own."""
    status, _ = app.rest("POST", "/instances", make_instance("db-role", rows=32, columns=32).data)
    assert status == 200


def test_orthanc_logs_in_as_its_own_role_and_holds_no_master_login(app: ContainerHost) -> None:
    role, password = orthanc_login(app)
    assert role == DB_APP_ROLE != app.db_user
    master = master_password(app)
    assert password != master
    # No file Orthanc is given (its secrets, configuration, CA bundle) holds the master password.
    given = [p for d in (app.secrets, app.etc, app.tls) for p in d.rglob("*") if p.is_file()]
    assert [p.name for p in given if master in p.read_text(errors="replace")] == []


def test_orthancs_role_holds_no_attribute_and_no_membership(app: ContainerHost) -> None:
    attributes = app.psql(f"{ATTRIBUTES} WHERE rolname = '{DB_APP_ROLE}'")
    assert attributes == "f|f|f|f|f|t"
    members = f"SELECT count(*) FROM pg_auth_members WHERE member = '{DB_APP_ROLE}'::regrole"  # noqa: S608
    assert app.psql(members) == "0"


def test_orthancs_role_owns_the_database_and_everything_orthanc_made_in_it(app: ContainerHost, stored: None) -> None:
    assert int(app.psql("SELECT count(*) FROM pg_largeobject_metadata")) > 0  # the DICOM file
    assert owners(app) == {DB_APP_ROLE}


def test_orthancs_role_may_not_create_roles_or_databases(app: ContainerHost) -> None:
    role, password = orthanc_login(app)
    assert psql_as(app, role, password, "SELECT 1").stdout.strip() == "1"
    for sql in ("CREATE ROLE intruder LOGIN", "CREATE DATABASE elsewhere"):
        denied = psql_as(app, role, password, sql)
        assert denied.returncode != 0
        assert "permission denied" in denied.stderr, denied.stderr


def test_no_other_role_may_connect_to_the_orthanc_database(app: ContainerHost) -> None:
    app.psql("CREATE ROLE visitor LOGIN PASSWORD 'visitor-password'", db="postgres")
    try:
        assert psql_as(app, "visitor", "visitor-password", "SELECT 1", db="postgres").returncode == 0
        refused = psql_as(app, "visitor", "visitor-password", "SELECT 1")
        assert refused.returncode != 0
        assert f'permission denied for database "{DB_NAME}"' in refused.stderr, refused.stderr
    finally:
        app.psql("DROP ROLE visitor", db="postgres")


def test_a_role_in_order_is_left_alone(app: ContainerHost) -> None:
    step = db_role_step(app)
    assert step.returncode == 0, step.stderr
    assert step.stdout == ""
    assert "setting up" not in step.stderr


@pytest.fixture
def statements_logged(app: ContainerHost) -> Iterator[Path]:
    """Every statement the server runs goes to its log (as log_statement = 'all' would on RDS)."""
    app.psql("ALTER SYSTEM SET log_statement = 'all'", db="postgres")
    app.psql("SELECT pg_reload_conf()", db="postgres")
    try:
        yield app.pg / "postgres.log"
    finally:
        app.psql("ALTER SYSTEM RESET log_statement", db="postgres")
        app.psql("SELECT pg_reload_conf()", db="postgres")


LEGACY_OBJECTS = """
CREATE TABLE legacy (id serial PRIMARY KEY, note text);
CREATE SEQUENCE legacy_counter;
CREATE FUNCTION legacy_answer() RETURNS int LANGUAGE sql AS 'SELECT 42';
SELECT count(lo_from_bytea(0, 'an old DICOM file')) FROM generate_series(1, 30000);
"""


def test_a_database_from_another_deployment_filled_as_the_master_user_is_handed_to_orthancs_role(
    app: ContainerHost, stored: None, statements_logged: Path, tmp_path: Path
) -> None:
    """What a restored snapshot of an earlier deployment holds: the role's password is another
    deployment's, and the master user owns tables, a sequence, a function and large objects: more
    of them than one transaction can lock (64 per connection slot: 6,400 here, and 30,000 fail)."""
    master = app.db_user
    app.psql(f"SET ROLE {master}; {LEGACY_OBJECTS}")
    app.psql(f"ALTER ROLE {DB_APP_ROLE} PASSWORD 'the-other-deployments-password'", db="postgres")
    assert owners(app) == {DB_APP_ROLE, master}
    role, password = orthanc_login(app)
    assert psql_as(app, role, password, "SELECT 1").returncode != 0
    log_start = statements_logged.stat().st_size

    scripts = [USERDATA_DIR / "bin" / "orthweb-db-role.sh", USERDATA_DIR / "lib" / "common.sh"]
    env = app.script_env()
    assert {"aws", "jq", "psql", "python3"} <= set(record_command_lines(scripts, env, tmp_path))
    step = db_role_step(app, env)
    assert step.returncode == 0, step.stderr
    assert f"setting up the database role {DB_APP_ROLE}" in step.stderr

    assert owners(app) == {DB_APP_ROLE}
    assert psql_as(app, role, password, "SELECT legacy_answer(), nextval('legacy_counter')").stdout.split() == ["42|1"]
    # The password went to PostgreSQL as a SCRAM verifier only, and to no command line.
    server_log = statements_logged.read_text(errors="replace")[log_start:]
    assert f"ALTER ROLE {DB_APP_ROLE} WITH LOGIN NOCREATEDB NOCREATEROLE VALID UNTIL 'infinity' PASSWORD" in server_log
    assert "PASSWORD 'SCRAM-SHA-256$4096:" in server_log
    lines = command_lines(tmp_path)
    assert any(line.startswith("psql ") for line in lines)
    for secret in (password, master_password(app)):
        assert secret not in server_log
        assert [line.split(" ", 1)[0] for line in lines if secret in line] == []
    app.restart_orthanc()  # new connections, with the repaired login
    assert app.rest("GET", "/statistics")[0] == 200


def test_privileges_the_master_user_can_remove_are_removed(app: ContainerHost) -> None:
    app.psql(f"ALTER ROLE {DB_APP_ROLE} CREATEROLE CREATEDB; GRANT pg_read_all_data TO {DB_APP_ROLE}", db="postgres")
    step = db_role_step(app)
    assert step.returncode == 0, step.stderr
    assert "setting up the database role" in step.stderr
    test_orthancs_role_holds_no_attribute_and_no_membership(app)


def test_a_role_made_superuser_is_reported_and_the_step_fails(app: ContainerHost) -> None:
    """Only a real superuser (AWS, on RDS) can make or unmake one: the step says so and fails, so
    the refresh unit shows it; it does not go on as if the role were in order."""
    app.psql(f"ALTER ROLE {DB_APP_ROLE} SUPERUSER", db="postgres")
    try:
        step = db_role_step(app)
        assert step.returncode != 0
        assert f"the role {DB_APP_ROLE} holds SUPERUSER, REPLICATION or BYPASSRLS" in step.stderr, step.stderr
        assert "setting up" not in step.stderr
    finally:
        app.psql(f"ALTER ROLE {DB_APP_ROLE} NOSUPERUSER", db="postgres")
    assert db_role_step(app).returncode == 0


def test_an_unreachable_database_fails_the_step_without_touching_the_role(app: ContainerHost) -> None:
    facts = (app.etc / "orthweb.env").read_text()
    port = str(app.ports["postgres"])
    (app.etc / "orthweb.env").write_text(facts.replace(f"ORTHWEB_DB_PORT={port}\n", "ORTHWEB_DB_PORT=9\n"))
    try:
        step = db_role_step(app)
    finally:
        (app.etc / "orthweb.env").write_text(facts)
    assert step.returncode != 0
    assert f"cannot reach the database as {DB_APP_ROLE}" in step.stderr
    assert "setting up" not in step.stderr


def test_hosts_setting_the_role_up_at_once_both_succeed(app: ContainerHost) -> None:
    """Several hosts boot together, or refresh after the same rotation: their set-ups take turns
    (an advisory lock), so neither fails on the other's half-done changes."""
    app.psql(f"ALTER ROLE {DB_APP_ROLE} PASSWORD 'before-the-rotation'", db="postgres")
    steps = [
        subprocess.Popen(
            [str(app.root / "sbin" / "orthweb-db-role")],
            env=app.script_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [(step.wait(timeout=120), step.communicate()[1]) for step in steps]
    assert [rc for rc, _ in results] == [0, 0, 0, 0], results
    role, password = orthanc_login(app)
    assert psql_as(app, role, password, "SELECT 1").stdout.strip() == "1"


def test_orthancs_role_cannot_make_the_set_up_run_its_code_as_the_master_user(app: ContainerHost) -> None:
    """The role owns the database, so it may create functions in ``public`` and force a set-up by
    changing its own password: the set-up, run as the master user, must call none of them."""
    role, password = orthanc_login(app)
    trap = (
        "BEGIN IF current_user <> '{role}' AND NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'intruder')"
        " THEN EXECUTE 'CREATE ROLE intruder LOGIN CREATEROLE'; END IF; {call}; END"
    )
    functions = {
        "format(a text, b text) RETURNS text": "RETURN pg_catalog.format(a, b)",
        "format(a text, b text, c text) RETURNS text": "RETURN pg_catalog.format(a, b, c)",
        "format(a text, b text, c text, d text) RETURNS text": "RETURN pg_catalog.format(a, b, c, d)",
        "pg_has_role(a text, b text) RETURNS boolean": "RETURN pg_catalog.pg_has_role(a, b)",
        "pg_advisory_xact_lock(a integer) RETURNS void": "PERFORM pg_catalog.pg_advisory_xact_lock(a)",
        "hashtext(a text) RETURNS integer": "RETURN pg_catalog.hashtext(a)",
        "current_setting(a text) RETURNS text": "RETURN pg_catalog.current_setting(a)",
    }
    for signature, call in functions.items():
        body = trap.format(role=role, call=call).replace("'", "''")
        created = psql_as(app, role, password, f"CREATE FUNCTION public.{signature} LANGUAGE plpgsql AS '{body}'")
        assert created.returncode == 0, created.stderr
    try:
        changed = psql_as(app, role, password, f"ALTER ROLE {role} PASSWORD 'forces-a-set-up'")
        assert changed.returncode == 0, changed.stderr
        step = db_role_step(app)
        assert step.returncode == 0, step.stderr
        assert "setting up the database role" in step.stderr
        assert app.psql("SELECT count(*) FROM pg_roles WHERE rolname = 'intruder'", db="postgres") == "0"
    finally:
        app.psql("DROP ROLE IF EXISTS intruder", db="postgres")
        for signature in functions:
            app.psql(f"DROP FUNCTION IF EXISTS public.{signature.split(' RETURNS')[0]}")


def test_a_role_that_may_not_log_in_or_has_expired_is_repaired(app: ContainerHost) -> None:
    for breakage in ("NOLOGIN", "VALID UNTIL '2000-01-01'"):
        app.psql(f"ALTER ROLE {DB_APP_ROLE} {breakage}", db="postgres")
        step = db_role_step(app)
        assert step.returncode == 0, (breakage, step.stderr)
        assert "setting up the database role" in step.stderr
        role, password = orthanc_login(app)
        assert psql_as(app, role, password, "SELECT 1").stdout.strip() == "1", breakage


def test_a_uri_left_from_before_a_rotation_never_sets_an_old_password(app: ContainerHost) -> None:
    """The master password rotated, another host already set the new derived password, and here
    orthweb-secrets failed, so Orthanc's URI still holds the old one: the step must not set it back
    (the hosts would take turns locking each other out); it fails, and the next refresh catches up."""
    rotated = "rotated-after-the-uri-was-written"
    app.set_db_password(rotated)
    app.put_db_secret(rotated)
    app.psql(f"ALTER ROLE {DB_APP_ROLE} PASSWORD '{db_app_password(rotated)}'", db="postgres")  # the other host
    step = db_role_step(app)
    assert step.returncode != 0
    assert "Orthanc's URI is not derived from the current master password" in step.stderr
    assert psql_as(app, DB_APP_ROLE, db_app_password(rotated), "SELECT 1").stdout.strip() == "1"  # untouched
    app.host_step("orthweb-refresh")  # the next refresh: new URI, the role already agrees
    assert orthanc_login(app) == (DB_APP_ROLE, db_app_password(rotated))
    app.restart_orthanc()
    assert app.rest("GET", "/statistics")[0] == 200
