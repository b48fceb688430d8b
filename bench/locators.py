"""Benchmark one look of the locators and of the page probe on a huge page: a table of
200,000 rows, side by side with the same look on a page of --baseline rows (100) in the same
browser, and the ratio. Prints the milliseconds of each look (the median of --runs); it does not
pass or fail. Run apart from the tests:
``python bench/locators.py [--rows 200000] [--baseline 100] [--runs 5]``.

A wait looks every 50 ms, so a look that takes seconds holds a step (and the worker) that long
at each poll.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from selenium.common.exceptions import TimeoutException
from selenium.webdriver.remote.webdriver import WebDriver

from shared.sop.model import Locator
from worker.agent import locators
from worker.browser import egress_of, new_driver, quit_quietly
from worker.egress import Origin


def _page(rows: int) -> bytes:
    body = "".join(f"<tr><td>M{i}</td><td>Jane {i}</td><td>active</td></tr>" for i in range(rows))
    return f"<h1>Members</h1><table>{body}</table><p id=end>The end</p>".encode()


def _serve(body: bytes) -> str:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}/"


def _ms(look: Callable[[], object], runs: int) -> float:
    """The median milliseconds of a look; infinite when it ran past the browser's script
    timeout (on a loaded machine the slowest looks can), so the others are still printed."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        try:
            look()
        except TimeoutException:
            return math.inf
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _timings(driver: WebDriver, url: str, runs: int) -> dict[str, float]:
    """Each look's median milliseconds on the page at ``url``."""
    proxy = egress_of(driver)
    if proxy is not None:
        proxy.allow([Origin.of(url, allow_private=True)])
    driver.get(url)
    looks: dict[str, Callable[[], object]] = {
        "text, first row": lambda: locators.find_all(driver, Locator("text", "M0")),
        "text, last row": lambda: locators.find_all(driver, Locator("text", "The end")),
        "text, absent": lambda: locators.find_all(driver, Locator("text", "No such text")),
        "text, every row": lambda: locators.find_all(driver, Locator("text", "active")),
        # What a wait, a click or a check asks: the first match only.
        "first, every row": lambda: locators.find_first(driver, Locator("text", "active")),
        "css #end": lambda: locators.find_all(driver, Locator("css", "#end")),
        "label, absent": lambda: locators.find_all(driver, Locator("label", "Member ID")),
        "page probe": lambda: locators.probe_page(driver),
    }
    return {name: _ms(look, runs) for name, look in looks.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--baseline", type=int, default=100, help="rows of the baseline page")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    driver = new_driver(
        chromium_path=os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"),
        chromedriver_path=os.environ.get("CHROMEDRIVER_PATH", "/usr/bin/chromedriver"),
        page_load_timeout_s=120,
    )
    try:
        small = _timings(driver, _serve(_page(args.baseline)), args.runs)
        huge = _timings(driver, _serve(_page(args.rows)), args.runs)
        print(f"one look, median of {args.runs} (ms)")
        print(f"  {'':<18} {f'{args.baseline:,} rows':>12} {f'{args.rows:,} rows':>14}  ratio")
        for name, base in small.items():
            ratio = huge[name] / max(base, 0.1)
            print(f"  {name:<18} {base:>12.0f} {huge[name]:>14.0f}  {ratio:>5.0f}x")
    finally:
        quit_quietly(driver)


if __name__ == "__main__":
    main()
