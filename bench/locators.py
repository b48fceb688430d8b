"""Benchmark one look of the locators and of the page probe on a huge page: a table of
200,000 rows. Prints the milliseconds of each look (the median of --runs); it does not pass or
fail. Run apart from the tests: ``python bench/locators.py [--rows 200000] [--runs 5]``.

A wait looks every 50 ms, so a look that takes seconds holds a step (and the worker) that long
at each poll.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        look()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    driver = new_driver(
        chromium_path=os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"),
        chromedriver_path=os.environ.get("CHROMEDRIVER_PATH", "/usr/bin/chromedriver"),
        page_load_timeout_s=120,
    )
    try:
        url = _serve(_page(args.rows))
        proxy = egress_of(driver)
        if proxy is not None:
            proxy.allow([Origin.of(url, allow_private=True)])
        driver.get(url)
        looks: dict[str, Callable[[], object]] = {
            "text, first row": lambda: locators.find_all(driver, Locator("text", "M0")),
            "text, last row": lambda: locators.find_all(driver, Locator("text", "The end")),
            "text, absent": lambda: locators.find_all(driver, Locator("text", "No such text")),
            "text, every row": lambda: locators.find_all(driver, Locator("text", "active")),
            "css #end": lambda: locators.find_all(driver, Locator("css", "#end")),
            "label, absent": lambda: locators.find_all(driver, Locator("label", "Member ID")),
            "page probe": lambda: locators.probe_page(driver),
        }
        print(f"one look on a page of {args.rows:,} rows (median of {args.runs}):")
        for name, look in looks.items():
            print(f"  {name:<18} {_ms(look, args.runs):>9.0f} ms")
    finally:
        quit_quietly(driver)


if __name__ == "__main__":
    main()
