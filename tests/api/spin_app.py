"""A WSGI app that never finishes a request, to show the worker's per-request deadline.

Served by gunicorn with the API's own config and worker class (tests/api/test_gunicorn.py).
"""

from __future__ import annotations

from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/spin")
def spin():
    while True:  # pure Python: the deadline interrupts it between two instructions
        pass


@app.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@app.get("/ping")
def ping():  # answered by a thread, unlike /healthz (the worker answers probes itself)
    return jsonify({"status": "ok"})
