"""Stand-ins for the host's two images, built here from Debian 12 packages (Docker Hub is out of
reach): ``orthanc`` for ``orthancteam/orthanc`` and ``nginx`` for ``nginx:<version>-alpine``.

Each stand-in is the directory ``dev/images/<name>/``:

- ``packages``: the Debian packages, installed by ``mmdebstrap`` into a fresh root filesystem;
- ``rootfs/`` (optional): files copied into it as they are;
- ``customize.sh``: a hook run on the root filesystem (users, links, removals);
- ``image.conf``: the image's ``ENTRYPOINT``/``CMD``/... as ``docker import --change`` lines.

The tar ``mmdebstrap`` writes goes straight into ``docker import`` (untagged, then tagged once
``mmdebstrap`` succeeded). The image is tagged
``orthweb-standin/<name>:<digest>``, the digest covering every input file, so it is built once and
again only when an input changes. How each differs from the real image is in docs/app-harness.md,
"Stand-in images" (:data:`IMAGE_DIFFERENCES`, checked against these files by tests).
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from orthweb_dev import PROJECT_DIR

IMAGES_DIR = PROJECT_DIR / "dev" / "images"
REPOSITORY = "orthweb-standin"
SUITE = "bookworm"
NAMES = ("orthanc", "nginx")
# npm tarballs (checked against their pins at every build) and their unpacked directories (reused
# only with a stamp naming the integrity and directory they were unpacked from).
NPM_CACHE = PROJECT_DIR / ".tools" / "npm-packages"


# How each stand-in differs from the real image: (what, the real image, the stand-in, evidence).
# The evidence, "file: text" under dev/images/, is checked by a test to be in that build file, and
# the first three columns are the table in docs/app-harness.md, "Stand-in images".
IMAGE_DIFFERENCES: dict[str, tuple[str, str, str, str]] = {
    "orthanc_base": (
        "orthanc: base and server",
        "orthancteam/orthanc:25.6.0: Debian with Orthanc 1.12.7 built by the Orthanc team",
        "Debian 12 (mmdebstrap, essential variant) with Debian's orthanc 1.10.1 and python3",
        "orthanc/packages: orthanc",
    ),
    "orthanc_plugins": (
        "orthanc: plugins",
        "PostgreSQL 7.2, DICOMweb 1.20, Orthanc Explorer 2 1.8.4, Stone Web Viewer 2.6, OHIF 1.6, AWS S3, GDCM, "
        "Python 5.0",
        "Debian's PostgreSQL 4.0, DICOMweb 1.7 and Orthanc Web Viewer 2.8, and Python 4.0 (Orthweb's C-MOVE "
        "service, and OHIF below); "
        "a switch of any other prints that it is not in the stand-in and loads nothing",
        "orthanc/packages: orthanc-webviewer",
    ),
    "orthanc_stone": (
        "orthanc: STONE_WEB_VIEWER_PLUGIN_ENABLED",
        "loads the Stone Web Viewer",
        "loads the Orthanc Web Viewer in its place (the harness's viewer)",
        'orthanc/rootfs/usr/local/bin/orthanc-configure: replaced_by="Orthanc Web Viewer"',
    ),
    "orthanc_ohif": (
        "orthanc: OHIF_PLUGIN_ENABLED",
        "the OHIF plugin 1.6 serves its own OHIF 3 build at /ohif/, its app-config.js made from the OHIF section",
        "OHIF 3.11.1's published build (npm @ohif/app, pinned by its sha512 integrity, source maps left out) "
        "served at /ohif/ by Orthanc's Python plugin (ohif-standin.py), its base rewritten from / to /ohif/; "
        "app-config.js the project's: one DICOMweb data source, the site's /dicom-web/",
        "orthanc/npm: @ohif/app 3.11.1",
    ),
    "orthanc_python_script": (
        "orthanc: PythonScript and the OHIF switch together",
        "the Python plugin runs the one script PythonScript names (the image's OHIF is not Python)",
        "the stand-in's OHIF needs the Python plugin too: orthanc-configure points PythonScript at a runner "
        "of both scripts, the configured one first",
        "orthanc/rootfs/usr/local/bin/orthanc-configure: def chain_python_scripts",
    ),
    "orthanc_configurator": (
        "orthanc: entrypoint and configurator",
        "docker-entrypoint.sh and generateConfiguration.py",
        "the project's own docker-entrypoint.sh and orthanc-configure: the same inputs (ORTHANC__* variables "
        "and secret files, *_PLUGIN_ENABLED, /etc/orthanc/*.json, /run/secrets/*.json, ORTHANC_JSON) and "
        "output (/tmp/orthanc.json, 0600); fewer name aliases, no *_SECRET variables",
        'orthanc/image.conf: ENTRYPOINT ["/docker-entrypoint.sh"]',
    ),
    "orthanc_plugin_files": (
        "orthanc: /run/orthanc/plugins",
        "hard links to /usr/share/orthanc/plugins-available",
        "copies of Debian's /usr/lib/orthanc files, named without their version suffix (Orthanc 1.10 "
        "loads only *.so from a folder); Debian's links in /usr/share/orthanc/plugins removed",
        'orthanc/customize.sh: rm -f "$root"/usr/share/orthanc/plugins/*',
    ),
    "orthanc_etc": (
        "orthanc: /etc/orthanc",
        "the image's own, with the deployment's files mounted beside them",
        "Debian's defaults removed (a demo login among them); only the deployment's mounted files",
        'orthanc/customize.sh: rm -f "$root"/etc/orthanc/*.json',
    ),
    "nginx_base": (
        "nginx: base and server",
        "nginx:1.28.0-alpine: Alpine with nginx.org's nginx 1.28.0",
        "Debian 12 (mmdebstrap, essential variant) with nginx-light 1.22.1",
        "nginx/packages: nginx-light",
    ),
    "nginx_stream": (
        "nginx: stream module",
        "built in",
        "Debian's dynamic module, loaded by the image's command (-g load_module) before nginx.conf",
        "nginx/image.conf: load_module /usr/lib/nginx/modules/ngx_stream_module.so",
    ),
    "nginx_njs": (
        "nginx: njs",
        "njs 0.8.10 in /etc/nginx/modules, not loaded",
        "Debian's njs 0.7.9 (libnginx-mod-http-js) in /etc/nginx/modules, not loaded",
        "nginx/packages: libnginx-mod-http-js",
    ),
    "nginx_entrypoint": (
        "nginx: entrypoint",
        "/docker-entrypoint.sh runs /docker-entrypoint.d (templates, IPv6 listen; skipped on a read-only root)",
        "none: the command is nginx itself",
        "nginx/image.conf: CMD",
    ),
    "nginx_stop": (
        "nginx: stop signal",
        "SIGQUIT (graceful)",
        "SIGTERM (docker import cannot set STOPSIGNAL)",
        "nginx/image.conf: docker import cannot set STOPSIGNAL",
    ),
    "nginx_wget": (
        "nginx: wget (the health check)",
        "BusyBox's",
        "GNU wget",
        "nginx/packages: wget",
    ),
}


class ImageError(RuntimeError):
    """A stand-in could not be built: the message names the step and the fix."""


@dataclass(frozen=True)
class StandIn:
    """One stand-in's build files."""

    name: str

    @property
    def directory(self) -> Path:
        return IMAGES_DIR / self.name

    def inputs(self) -> list[Path]:
        """Every file the image is built from, sorted."""
        return sorted(p for p in self.directory.rglob("*") if p.is_file())

    def digest(self) -> str:
        """SHA-256 over the inputs' relative paths, modes and contents (12 hex digits)."""
        sha = hashlib.sha256(SUITE.encode())
        for path in self.inputs():
            sha.update(f"\0{path.relative_to(self.directory)}\0{path.stat().st_mode & 0o111:o}\0".encode())
            sha.update(path.read_bytes())
        return sha.hexdigest()[:12]

    @property
    def tag(self) -> str:
        return f"{REPOSITORY}/{self.name}:{self.digest()}"

    def packages(self) -> list[str]:
        return _lines(self.directory / "packages")

    def changes(self) -> list[str]:
        return _lines(self.directory / "image.conf")

    def npm_packages(self) -> list[NpmPackage]:
        """The npm packages copied into the image (``npm``: name, version, integrity, directory, target)."""
        path = self.directory / "npm"
        return [NpmPackage(*line.split()) for line in _lines(path)] if path.exists() else []


@dataclass(frozen=True)
class NpmPackage:
    """One pinned npm package: the registry's tarball, checked against its sha512 integrity."""

    name: str
    version: str
    integrity: str
    directory: str  # the part of the package that goes into the image
    target: str  # where it goes

    def fetch(self, cache: Path) -> Path:
        """The package's ``directory`` unpacked under ``cache`` (source maps left out), fetched
        with ``npm pack`` once and checked against the pinned integrity each time."""
        unpacked = cache / f"{self.name.replace('/', '+')}-{self.version}"
        tarball = cache / f"{unpacked.name}.tgz"
        if not tarball.exists():
            cache.mkdir(parents=True, exist_ok=True)
            if shutil.which("npm") is None:
                raise ImageError("npm is missing: install Node.js 20 and npm (Debian: apt-get install nodejs npm)")
            packed = subprocess.run(
                ["npm", "pack", f"{self.name}@{self.version}", "--json", "--pack-destination", str(cache)],
                capture_output=True,
                text=True,
                check=False,
            )
            if packed.returncode != 0:
                raise ImageError(f"npm pack {self.name}@{self.version} failed: {packed.stderr.strip()[-500:]}")
            (cache / json.loads(packed.stdout)[0]["filename"]).rename(tarball)
        digest = "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
        if digest != self.integrity:
            tarball.unlink()
            raise ImageError(f"{self.name}@{self.version}'s tarball is {digest}, not the pinned {self.integrity}")
        # The unpacked tree is reused only when it was unpacked from these very bytes and directory.
        stamp = cache / f"{unpacked.name}.stamp"
        stamped = f"{self.integrity} {self.directory}\n"
        if unpacked.exists() and (not stamp.exists() or stamp.read_text() != stamped):
            shutil.rmtree(unpacked)
        if not unpacked.exists():
            staging = Path(tempfile.mkdtemp(prefix=f"{unpacked.name}.", dir=cache))
            prefix = f"package/{self.directory}/"
            with tarfile.open(tarball) as archive:
                members = [m for m in archive.getmembers() if m.name.startswith(prefix) and not m.name.endswith(".map")]
                for member in members:
                    member.name = member.name[len(prefix) :]
                archive.extractall(staging, members=members, filter="data")
            staging.chmod(0o755)  # mkdtemp's 0700 would become the image directory's mode
            stamp.write_text(stamped)
            staging.rename(unpacked)
        return unpacked


def _lines(path: Path) -> list[str]:
    """A build file's lines, without comments and blank lines."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True, check=False).returncode == 0


def build(name: str, log: Path | None = None) -> tuple[str, float | None]:
    """The stand-in ``name``'s tag, built first unless an image with its inputs' digest exists;
    with the seconds the build took (``None`` when it was cached)."""
    standin = StandIn(name)
    tag = standin.tag
    if image_exists(tag):
        return tag, None
    if shutil.which("mmdebstrap") is None:
        raise ImageError("mmdebstrap is missing: install the Debian package mmdebstrap (make debian)")
    started = time.monotonic()
    hooks = []
    for package in standin.npm_packages():
        unpacked = package.fetch(NPM_CACHE)
        hooks += ["--customize-hook", f'mkdir -p "$1{package.target}"']
        hooks += ["--customize-hook", f"sync-in {unpacked} {package.target}"]
    if (standin.directory / "rootfs").is_dir():
        hooks += ["--customize-hook", f"sync-in {standin.directory / 'rootfs'} /"]
    hooks += ["--customize-hook", f'{standin.directory / "customize.sh"} "$1"']
    strap = [
        "mmdebstrap", "--variant=essential", f"--include={','.join(standin.packages())}",
        "--dpkgopt=path-exclude=/usr/share/doc/*", "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*", *hooks, SUITE, "-",
    ]  # fmt: skip
    changes = [arg for change in standin.changes() for arg in ("--change", change)]
    # Imported untagged: the tag (the cache's "built") is given only once mmdebstrap finished well, so
    # a truncated tar (mmdebstrap failed, or this process was stopped) is never taken for the image.
    importer = ["docker", "import", *changes, "--message", f"orthweb stand-in {name} ({standin.digest()})", "-"]
    out = log.open("ab") if log else subprocess.DEVNULL
    try:
        # Its own session: mmdebstrap's clean-up signals its whole process group.
        strap_proc = subprocess.Popen(strap, stdout=subprocess.PIPE, stderr=out, start_new_session=True)
        imported = subprocess.run(importer, stdin=strap_proc.stdout, capture_output=True, text=True, check=False)
        assert strap_proc.stdout is not None
        strap_proc.stdout.close()
        strap_rc = strap_proc.wait()
    finally:
        if log:
            out.close()  # type: ignore[union-attr]
    where = f"; its log: {log}" if log else ""
    if imported.returncode != 0:
        raise ImageError(
            f"docker import of the {name} stand-in failed: {imported.stderr.strip()} "
            f"(mmdebstrap exit status {strap_rc}){where}"
        )
    image = imported.stdout.strip()
    if strap_rc != 0:
        subprocess.run(["docker", "image", "rm", "--force", image], capture_output=True, check=False)
        raise ImageError(f"mmdebstrap failed building the {name} stand-in (exit status {strap_rc}){where}")
    tagged = subprocess.run(["docker", "tag", image, tag], capture_output=True, text=True, check=False)
    if tagged.returncode != 0:
        raise ImageError(f"docker tag {tag} failed: {tagged.stderr.strip()}")
    return tag, time.monotonic() - started


def build_all(log: Path | None = None) -> dict[str, str]:
    """Every stand-in's tag (building those whose inputs changed)."""
    return {name: build(name, log)[0] for name in NAMES}


def main() -> int:
    """``make images``: build the stand-ins (on the running engine, or on dockerd started for the
    while); print each tag, its size and the build time."""
    import sys

    from orthweb_dev.engine import EngineError, running_engine

    log = PROJECT_DIR / ".tools" / "images.log"
    log.parent.mkdir(exist_ok=True)
    try:
        with running_engine(log):
            for name in NAMES:
                tag, seconds = build(name, log)
                size = subprocess.run(
                    ["docker", "image", "inspect", "--format", "{{.Size}}", tag],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.strip()
                took = "cached" if seconds is None else f"built in {seconds:.0f} s"
                print(f"{tag}: {int(size) / 1e6:.0f} MB, {took}")
    except (ImageError, EngineError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
