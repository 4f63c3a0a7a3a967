"""A real browser against the application harness: Debian's headless Chromium, driven by Selenium
through Debian's chromedriver (its path is given, so Selenium Manager never downloads a driver or a
browser), trusting only the certificate the host's step made (pinned by its public key, not by
ignoring certificate errors).

:func:`chromium` starts it; :func:`log_in` logs in with Basic auth the way a person does once per
site: Chromium keeps the login in its HTTP auth cache and sends it with every later request to
the site, from any tab (the viewer opens in a new one). :func:`open_viewer` clicks from the
explorer to the study, its series and the viewer; :func:`drawn_ramp` reads the viewer's pixels.

``python -m orthweb_dev.browser docs/viewer.png`` starts the harness, stores the sample image and
saves a screenshot of the viewer showing it (the README's picture).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import io
import itertools
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

from orthweb_dev.dicom import band_means

CHROMIUM = Path("/usr/bin/chromium")  # Debian package chromium
CHROMEDRIVER = Path("/usr/bin/chromedriver")  # Debian package chromium-driver
WINDOW = (1280, 800)
TIMEOUT_S = 60.0
EDGE = 3
# OHIF loads ~15 MB of scripts and its codecs' WebAssembly before it draws anything.
OHIF_TIMEOUT_S = 180.0


def missing() -> list[str]:
    """The browser programs this machine lacks."""
    return [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]


def spki_pin(certificate: Path) -> str:
    """Base64 SHA-256 of the certificate's public key (SubjectPublicKeyInfo): what Chromium's
    ``--ignore-certificate-errors-spki-list`` trusts, for this one key only."""
    cert = x509.load_pem_x509_certificate(certificate.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


@contextlib.contextmanager
def chromium(server_cert: Path) -> Iterator[WebDriver]:
    """Headless Chromium in a throwaway profile that trusts ``server_cert``'s key; quit after."""
    with tempfile.TemporaryDirectory(prefix="orthweb-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (
            "--headless=new",
            "--no-sandbox",  # root in a container has no user namespaces for Chromium's sandbox
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--ignore-certificate-errors-spki-list={spki_pin(server_cert)}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
        ):
            options.add_argument(flag)
        # The pages' console, Content-Security-Policy reports among it (csp_violations).
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def log_in(driver: WebDriver, base_url: str, user: str, password: str, at: str = "/system") -> None:
    """Log in to the site with Basic auth at the path ``at``: one navigation with the login in the
    address puts it in Chromium's HTTP auth cache (as answering its login prompt there does), then
    the login leaves the address. Chromium refuses sub-resources of a page whose address holds a
    login, so no page is used from that navigation. Chromium then sends the login unasked only to
    paths under ``at``'s directory; a request elsewhere goes first without it, meets the 401 and is
    sent again with it (as after a person's login on a UI's page)."""
    parts = urlsplit(base_url)
    netloc = f"{quote(user, safe='')}:{quote(password, safe='')}@{parts.netloc}"
    driver.get(urlunsplit((parts.scheme, netloc, at, "", "")))
    driver.get(base_url + "/")


# Each Content-Security-Policy violation of a page of the tab, kept in the tab's sessionStorage:
# it outlives the tab's navigations and reloads (the site is one origin).
CSP_WATCH = """
document.addEventListener("securitypolicyviolation", (e) => {
  const seen = JSON.parse(sessionStorage.getItem("orthweb-csp") || "[]");
  seen.push(`${e.disposition} ${e.effectiveDirective} blocked ${e.blockedURI || "inline"} `
    + `in ${e.sourceFile || e.documentURI}:${e.lineNumber} ${e.sample}`);
  sessionStorage.setItem("orthweb-csp", JSON.stringify(seen));
});
"""


def watch_csp(driver: WebDriver) -> None:
    """Record every Content-Security-Policy violation of each page the current tab loads from now
    on (a script Chromium runs in each new document before the page's own, through CDP)."""
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CSP_WATCH})


def csp_violations(driver: WebDriver) -> list[str]:
    """The violations the current tab recorded (:func:`watch_csp`) and the Content-Security-Policy
    messages of the browser's console (every tab's, workers' included where Chromium logs them)."""
    recorded: list[str] = driver.execute_script('return JSON.parse(sessionStorage.getItem("orthweb-csp") || "[]")')
    log: list[dict[str, str]] = driver.get_log("browser")  # type: ignore[no-untyped-call]
    console = [e["message"] for e in log if "Content Security Policy" in e["message"]]
    return recorded + console


def _wait(driver: WebDriver) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, TIMEOUT_S)


# Orthanc's own UI, which Debian's Orthanc 1.10 serves (the host's / is Orthanc Explorer 2, which is
# not in Debian): where the harnesses' browser tests start.
LEGACY_UI = "/app/explorer.html"


def open_viewer(driver: WebDriver, base_url: str, study_description: str) -> WebElement:
    """From Orthanc Explorer: all studies, the study, its series, then the web viewer (a new tab,
    switched to). Returns the viewer's image element."""
    driver.get(base_url + LEGACY_UI)
    wait = _wait(driver)
    wait.until(ec.element_to_be_clickable((By.XPATH, "//a[normalize-space()='All studies']"))).click()
    study = f"//ul[@id='all-studies']//a[contains(., '{study_description}')]"
    wait.until(ec.element_to_be_clickable((By.XPATH, study))).click()
    wait.until(ec.element_to_be_clickable((By.XPATH, "//ul[@id='list-series']//a"))).click()
    tabs = set(driver.window_handles)
    viewer = "//a[@data-role='button'][contains(., 'Orthanc Web Viewer')]"
    wait.until(ec.element_to_be_clickable((By.XPATH, viewer))).click()
    wait.until(lambda d: len(d.window_handles) > len(tabs))
    (new,) = set(driver.window_handles) - tabs
    driver.switch_to.window(new)
    return wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR, "#dicomImage canvas")))


def open_ohif(driver: WebDriver, base_url: str, study_uid: str) -> WebElement:
    """OHIF's viewer at ``/ohif/viewer`` for the study (as the OHIF plugin's links open it); the
    canvas of its first viewport, once OHIF has made it."""
    driver.get(f"{base_url}/ohif/viewer?StudyInstanceUIDs={quote(study_uid)}")
    located = ec.presence_of_element_located((By.CSS_SELECTOR, "canvas.cornerstone-canvas"))
    canvas: WebElement = WebDriverWait(driver, OHIF_TIMEOUT_S).until(located, "OHIF never made a viewport")
    # OHIF's first-visit tour, if it shows: skipped, as a user would (it covers the toolbar).
    with contextlib.suppress(TimeoutException):
        skip = ec.element_to_be_clickable((By.XPATH, "//*[normalize-space()='Skip all']"))
        WebDriverWait(driver, 10).until(skip).click()
    return canvas


def drawn_ramp(canvas: WebElement) -> list[float] | None:
    """The band means of the image drawn on ``canvas`` along its middle row, if what is drawn
    there is the sample's ramp (black to white, rising band after band, over most of the
    image's width); None while the canvas is still blank or shows anything else."""
    image = Image.open(io.BytesIO(canvas.screenshot_as_png)).convert("L")
    width, height = image.size
    # A few pixels in from each side: a viewer may frame its viewport (OHIF's 1-pixel border).
    row = image.crop((EDGE, height // 2, width - EDGE, height // 2 + 1)).tobytes()
    lit = [x for x, v in enumerate(row) if v > 8]
    if len(lit) < 64:
        return None
    # The image is the span between the first and last lit pixels (the viewer's background is black).
    span = row[lit[0] : lit[-1] + 1]
    bands = band_means(span)
    rising = all(b > a for a, b in itertools.pairwise(bands))
    if len(set(span)) < 64 or not rising or bands[-1] - bands[0] < 160:
        return None
    return bands


def wait_for_ramp(driver: WebDriver, canvas: WebElement) -> list[float]:
    """Poll the canvas until the ramp is drawn (raises selenium's TimeoutException if never)."""
    found: list[list[float]] = []

    def drawn(_: WebDriver) -> bool:
        bands = drawn_ramp(canvas)
        if bands:
            found.append(bands)
        return bands is not None

    _wait(driver).until(drawn, "the viewer never drew the sample's ramp")
    return found[-1]


def main() -> int:
    from orthweb_dev.containers import container_host

    parser = argparse.ArgumentParser(description="Screenshot the web viewer showing the sample image")
    parser.add_argument("output", type=Path, help="PNG file to write, e.g. docs/viewer.png")
    args = parser.parse_args()
    if missing():
        print(f"orthweb browser: missing {', '.join(missing())} (make debian)", file=sys.stderr)
        return 2
    from orthweb_dev.dicom import viewable_instance

    sample = viewable_instance("viewer", patient="ORTHWEB^DEMO")
    with container_host() as app, chromium(app.server_cert) as driver:
        status, body = app.rest("POST", "/instances", sample.data)
        if status != 200:
            print(f"orthweb browser: upload refused ({status}): {body[:200]!r}", file=sys.stderr)
            return 1
        log_in(driver, app.web_url, app.admin_user, app.admin_password)
        canvas = open_viewer(driver, app.web_url, "Orthweb harness viewer")
        wait_for_ramp(driver, canvas)
        args.output.write_bytes(driver.get_screenshot_as_png())
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
