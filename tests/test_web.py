"""``python -m runner serve``: the web view, driven in a real headless Chromium (Debian's, through
Selenium and Debian's chromedriver), and its server's promises checked over HTTP: read-only,
loopback by default, a token on any other address, nothing outside its root."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Project, png_size, wait_for

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
pytest.importorskip("plotly")

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
SHOTS = Path(os.environ.get("RUNNER_SCREENSHOTS", "")) if os.environ.get(
    "RUNNER_SCREENSHOTS") else None


def _browser_installed() -> bool:
    if os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER):
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):  # as the SLURM tests install slurm
        cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium",
               "chromium-driver"]
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if subprocess.run(cmd, env=env, capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
            subprocess.run(cmd, env=env, capture_output=True)
    return os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)


class Server:
    def __init__(self, project: Project, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runner", "serve", "outputs", "--port", "0", *args],
            cwd=project.root, env=project.env(), text=True, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline()
        found = re.search(r"(http://\S+)", line)
        assert found, line + self.proc.stderr.read()
        self.url = found.group(1)
        self.base = self.url.split("?")[0].rstrip("/")

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(self.base + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                body = response.read()
                kind = response.headers.get("content-type", "")
                return response.status, json.loads(body) if "json" in kind else body
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.communicate(timeout=30)


@pytest.fixture
def served(project: Project) -> Iterator[tuple[Project, Server]]:
    project.run("+sweep=grid", "task.lr=0.1,0.2,0.3", "seed=1,2", "task.steps=6",
                "+task.val_every=1", "runner.name=alpha", check=True)
    crash = project.run("+sweep=grid", "task.mode=ok,raise", "seed=1", "runner.name=beta")
    assert crash.returncode == 1
    project.run("+sweep=random", "task.lr=interval(0.01,0.5)",
                "task.channels=choice(4,8,16)", "+task.val_every=1", "runner.name=search",
                check=True)
    server = Server(project)
    yield project, server
    server.stop()


def _tree(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


# ---------------------------------------------------------------------- the server, over HTTP

def test_the_api_pages_filters_and_sorts_in_the_server(served: tuple[Project, Server]) -> None:
    project, server = served
    before = _tree(project.root / "outputs")
    status, data = server.get("/api/sweeps")
    assert status == 200
    assert {s["name"]: (s["kind"], s["runs"], s["done"]) for s in data["sweeps"]} == {
        "alpha": ("grid", 6, 6), "beta": ("grid", 2, 1), "search": ("random", 8, 8)}
    status, first = server.get("/api/sweeps/beta/runs")  # a fresh server: the page at once ...
    assert status == 200 and len(first["runs"]) == 2 and first["runs_in_sweep"] == 2
    counted = wait_for(lambda: server.get("/api/sweeps/beta/runs")[1]["counts"], 30)
    assert counted["CRASHED"] == 1 and counted["COMPLETED"] == 1  # ... its counts on a later poll
    status, page = server.get("/api/sweeps/alpha/runs?limit=4&sort=task.lr&order=desc")
    assert status == 200 and page["total"] == 6 and len(page["runs"]) == 4
    assert [r["values"]["task.lr"] for r in page["runs"]] == [0.3, 0.3, 0.2, 0.2]
    _, rest = server.get("/api/sweeps/alpha/runs?limit=4&offset=4&sort=task.lr&order=desc")
    assert [r["values"]["task.lr"] for r in rest["runs"]] == [0.1, 0.1]
    _, crashed = server.get("/api/sweeps/beta/runs?state=crashed")
    assert [r["state"] for r in crashed["runs"]] == ["CRASHED"] and crashed["total"] == 1
    _, found = server.get("/api/sweeps/alpha/runs?q=lr%3D0.2")
    assert found["total"] == 2
    _, curves = server.get("/api/sweeps/alpha/curves?metric=val/acc")
    labels = [g["label"] for g in curves["groups"]]
    assert labels == ["task.lr=0.3", "task.lr=0.2", "task.lr=0.1"]  # best first, as report
    assert all(g["n"] == 2 and len(g["steps"]) == 6 for g in curves["groups"])
    run_id = crashed["runs"][0]["id"]
    _, run = server.get(f"/api/sweeps/beta/runs/{run_id}")
    assert "ValueError: toy failure" in run["traceback"] and run["attempts"][0]["state"] == \
        "CRASHED"
    _, search = server.get("/api/sweeps/search/search?metric=val/acc")
    assert len(search["points"]) == 8 and set(search["params"]) == {"task.lr", "task.channels"}
    assert set(search["importances"]) == {"task.lr", "task.channels"}  # PED-ANOVA, as report
    assert abs(sum(search["importances"].values()) - 1) < 1e-6
    _, compared = server.get("/api/compare?sweeps=alpha,search&metric=val/acc")
    assert [s["name"] for s in compared["sweeps"]] == ["alpha", "search"]
    assert [g["label"] for g in compared["sweeps"][0]["groups"]] == labels
    assert _tree(project.root / "outputs") == before  # read-only: not one byte written


def test_the_server_serves_nothing_outside_its_root(served: tuple[Project, Server],
                                                    tmp_path: Path) -> None:
    project, server = served
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(project.root / "outputs" / "alpha", elsewhere / "secret")
    os.symlink(elsewhere / "secret", project.root / "outputs" / "linked")
    run_dir = next((project.root / "outputs" / "beta" / "runs").iterdir())
    os.symlink("/etc/passwd", run_dir / "passwd")
    _, data = server.get("/api/sweeps")
    assert "linked" not in {s["name"] for s in data["sweeps"]}
    for path in ("/api/sweeps/linked/runs", "/api/sweeps/..%2F..%2Fetc/runs",
                 "/api/sweeps/beta/runs/..%2F..%2F..", "/static/..%2Fserver.py",
                 "/static/index.html", "/api/sweeps/beta/runs/passwd"):
        status, body = server.get(path)
        assert status in (400, 404), (path, status)
        assert b"root:" not in (body if isinstance(body, bytes) else json.dumps(body).encode())
    status, _ = server.get("/api/sweeps", {"Host": "attacker.example:80"})
    assert status == 421  # a page elsewhere cannot reach it by DNS rebinding
    status, page = server.get("/")
    assert status == 200 and b"app.js" in page
    request = urllib.request.Request(server.base + "/api/sweeps", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405
    refused.value.close()


def test_bound_to_another_address_it_asks_for_the_token(project: Project) -> None:
    project.run("seed=1", check=True)
    server = Server(project, "--host", "0.0.0.0")
    try:
        assert "?token=" in server.url and server.base.startswith("http://0.0.0.0:")
        base = server.base.replace("0.0.0.0", "127.0.0.1")
        token = server.url.split("token=")[1]
        for url, code in ((base + "/api/sweeps", 401), (base + "/api/sweeps?token=wrong", 401),
                          (base + f"/api/sweeps?token={token}", 200)):
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    got = response.status
                    cookie = response.headers.get("set-cookie", "")
            except urllib.error.HTTPError as exc:
                got = exc.code
                exc.close()
            assert got == code, url
        assert "runner_token=" in cookie and "HttpOnly" in cookie and "strict" in cookie.lower()
        request = urllib.request.Request(base + "/api/sweeps",
                                         headers={"Cookie": f"runner_token={token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    finally:
        server.stop()


def test_serve_says_what_is_wrong(project: Project) -> None:
    out = project.cli("serve", "nowhere")
    assert out.returncode != 0 and "no output folder nowhere" in out.stderr
    assert "Traceback" not in out.stderr


# ---------------------------------------------------------------------- in a real browser

@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not _browser_installed():
        pytest.skip("Debian's chromium and chromium-driver are not installed (needs root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1400,1000",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _all(driver: Any, css: str, what: str = "e.textContent") -> list[Any]:
    """Read in the page itself (the pages re-render as they poll: no stale element handles)."""
    return list(driver.execute_script(
        f"return [...document.querySelectorAll(arguments[0])].map(e => {what})", css))


def _click(driver: Any, css: str) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    for _ in range(20):
        try:
            driver.find_element(By.CSS_SELECTOR, css).click()
            return
        except StaleElementReferenceException:
            time.sleep(0.05)
    raise AssertionError(f"{css} kept being replaced")


def _console_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def _shot(driver: Any, name: str, tmp_path: Path) -> None:
    folder = SHOTS or tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    driver.save_screenshot(str(path))
    assert png_size(path) == (1400, 1000) or png_size(path)[0] > 800


def test_the_pages_load_filter_sort_and_draw(served: tuple[Project, Server], browser: Any,
                                             tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    project, server = served
    browser.get(server.url)
    wait_for(lambda: _all(browser, "#sweeps tr[data-sweep]"), 30)
    names = _all(browser, "#sweeps tr[data-sweep]", "e.dataset.sweep")
    assert sorted(names) == ["alpha", "beta", "search"]
    _shot(browser, "sweeps", tmp_path)
    _click(browser, "input.pick[value='alpha']")
    _click(browser, "input.pick[value='search']")
    _click(browser, "a#compare")
    wait_for(lambda: _all(browser, "#comparison .legendtext"), 30)
    legend = _all(browser, "#comparison .legendtext")
    assert "alpha: task.lr=0.3 (n=2)" in legend and len(legend) == 3 + 8, legend
    assert len(_all(browser, "#compare-table tbody tr")) == 11
    _shot(browser, "compare", tmp_path)

    browser.get(server.base + "/#/sweep/alpha")
    wait_for(lambda: len(_all(browser, "#runs tr[data-run]")) == 6, 30)
    wait_for(lambda: _all(browser, "#curves .legendtext"), 30)
    assert sorted(_all(browser, "#curves .legendtext")) == [
        f"task.lr={lr} (n=2)" for lr in (0.1, 0.2, 0.3)]

    def lrs() -> list[str]:
        return _all(browser, "#runs tr[data-run] td:nth-child(2)")
    assert "null" not in _all(browser, "#main > div:first-child")[0]  # no absent value shown
    _click(browser, "th[data-sort='task.lr']")
    wait_for(lambda: lrs() == ["0.1", "0.1", "0.2", "0.2", "0.3", "0.3"], 30)
    _click(browser, "th[data-sort='task.lr']")  # again: descending
    wait_for(lambda: lrs() == ["0.3", "0.3", "0.2", "0.2", "0.1", "0.1"], 30)
    box = browser.find_element(By.ID, "text-filter")
    box.send_keys("lr=0.2")
    wait_for(lambda: lrs() == ["0.2", "0.2"], 30)
    _shot(browser, "sweep", tmp_path)

    browser.get(server.base + "/#/sweep/beta")
    wait_for(lambda: len(_all(browser, "#runs tr[data-run]")) == 2, 30)
    Select(browser.find_element(By.ID, "state-filter")).select_by_value("CRASHED")
    wait_for(lambda: _all(browser, "#runs tr[data-run]", "e.dataset.state") == ["CRASHED"], 30)
    _click(browser, "#runs tr[data-run] a")
    wait_for(lambda: _all(browser, "#traceback"), 30)
    assert "ValueError: toy failure" in _all(browser, "#traceback")[0]
    assert "CRASHED" in _all(browser, "#attempts")[0]
    assert not [t for t in _all(browser, "#main > div > *") if t.strip() == "null"]
    _shot(browser, "run", tmp_path)

    browser.get(server.base + "/#/sweep/search")
    wait_for(lambda: _all(browser, "#parallel .main-svg"), 30)
    wait_for(lambda: _all(browser, "#best .main-svg"), 30)
    assert len(_all(browser, "[data-param] .main-svg")) >= 2
    wait_for(lambda: _all(browser, "#importances .main-svg"), 30)
    _shot(browser, "search", tmp_path)
    assert _console_errors(browser) == []


def test_a_run_finishing_while_the_page_is_open_shows_up(project: Project, browser: Any,
                                                         tmp_path: Path) -> None:

    proc = project.popen("+sweep=grid", "seed=1,2", "task.mode=wait_file", "runner.name=live")
    server = None
    try:
        wait_for(lambda: project.running("live") == 2, 60)
        server = Server(project)
        browser.get(server.base + "/#/sweep/live")

        def states() -> list[str]:
            return _all(browser, "#runs tr[data-run]", "e.dataset.state")
        wait_for(lambda: states() == ["RUNNING", "RUNNING"], 30)
        project.release()
        started = time.monotonic()
        wait_for(lambda: states() == ["COMPLETED", "COMPLETED"], 30)  # no reload
        assert time.monotonic() - started < 20
        wait_for(lambda: "2 completed" in _all(browser, "#counts")[0], 30)  # (the snapshot)
        _shot(browser, "live", tmp_path)
        assert _console_errors(browser) == []
    finally:
        project.release()
        proc.communicate(timeout=60)
        if server is not None:
            server.stop()
