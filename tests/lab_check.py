"""The first use case for real: `make lab`, open notebooks/unlearn.py in JupyterLab, change a parameter, run it.

Starts `make lab` (as root it adds --allow-root), opens the notebook through JupyterLab's REST API as
the browser does (jupytext serves the .py file as a notebook), starts a kernel session for it (its
working directory is notebooks/, as in the browser), changes the parameters cell, executes every cell
over the kernel's websocket and prints what each cell showed. Stops the server at the end.

    .venv/bin/python tests/lab_check.py [--port 8899]

tests/test_lab.py runs it as a slow test; run it by hand to see the notebook's outputs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# what a user would type into the parameters cell: the tiny profile, two fast methods, one epoch each
CHANGED = {"profile": '"tiny"', "methods": '["ft", "ct"]', "hparams": '{"ft": {"epochs": 1}, "ct": {"epochs": 1}}',
           "device": '"cpu"', "progress": "False"}


def api(base: str, token: str, path: str, data: dict | None = None, method: str = "GET") -> dict:
    """One JupyterLab REST call."""
    req = urllib.request.Request(f"{base}{path}", method=method, data=json.dumps(data).encode() if data else None,
                                 headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        body = r.read()
    return json.loads(body) if body else {}


def changed_parameters(source: str) -> str:
    """The parameters cell with CHANGED values substituted, comments kept."""
    out = []
    for line in source.splitlines():
        name, _, rest = line.partition(" = ")
        if name in CHANGED:
            comment = rest[rest.index("  #"):] if "  #" in rest else ""
            line = f"{name} = {CHANGED[name]}{comment}"
        out.append(line)
    return "\n".join(out)


async def execute(ws_url: str, cells: list[str]) -> list[dict]:
    """Run each cell on the kernel; per cell: its text outputs, images and error (if any)."""
    from tornado.websocket import websocket_connect

    ws = await websocket_connect(ws_url)
    session, results = uuid.uuid4().hex, []
    for code in cells:
        msg_id = uuid.uuid4().hex
        await ws.write_message(json.dumps({
            "header": {"msg_id": msg_id, "username": "lab-check", "session": session, "msg_type": "execute_request",
                       "version": "5.3"},
            "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
            "content": {"code": code, "silent": False, "store_history": True, "user_expressions": {},
                        "allow_stdin": False, "stop_on_error": True}}))
        res = {"code": code, "text": "", "images": 0, "error": None}
        while True:
            msg = json.loads(await ws.read_message())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                res["text"] += content["text"]
            elif kind in ("execute_result", "display_data"):
                res["text"] += content["data"].get("text/plain", "") + "\n"
                res["images"] += "image/png" in content["data"]
            elif kind == "error":
                res["error"] = f"{content['ename']}: {content['evalue']}"
            elif kind == "status" and content["execution_state"] == "idle":
                break
        results.append(res)
        if res["error"]:
            break
    ws.close()
    return results


def run(port: int, notebook: str = "unlearn.py") -> list[dict]:
    """Start `make lab`, run `notebook` in it with the changed parameters, stop the server; the cells' results."""
    token = secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if k != "DEEPUNLEARN_ROOT"}  # as a user's shell: nothing set
    lab_args = f"LAB_ARGS=--no-browser --port={port} --IdentityProvider.token={token} --ServerApp.port_retries=0"
    lab = subprocess.Popen(["make", "--no-print-directory", "lab", lab_args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                api(base, token, "/api/status")
                break
            except OSError:
                if lab.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"make lab did not start: {lab.stdout.read()}") from None
                time.sleep(0.5)
        nb = api(base, token, f"/api/contents/{notebook}?type=notebook&content=1")
        cells = [c for c in nb["content"]["cells"] if c["cell_type"] == "code"]
        sources = ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in cells]
        tagged = ["parameters" in c.get("metadata", {}).get("tags", []) for c in cells]
        sources = [changed_parameters(s) if t else s for s, t in zip(sources, tagged)]
        sess = api(base, token, "/api/sessions", {"path": notebook, "type": "notebook", "name": notebook,
                                                  "kernel": {"name": "python3"}}, method="POST")
        kernel = sess["kernel"]["id"]
        cwd = asyncio.run(execute(f"ws://127.0.0.1:{port}/api/kernels/{kernel}/channels?token={token}",
                                  ["import os; print(os.getcwd())"]))[0]["text"].strip()
        results = asyncio.run(execute(f"ws://127.0.0.1:{port}/api/kernels/{kernel}/channels?token={token}", sources))
        api(base, token, f"/api/sessions/{sess['id']}", method="DELETE")
        return [{"code": f"# kernel working directory: {cwd}", "text": cwd, "images": 0, "error": None}, *results]
    finally:
        os.killpg(lab.pid, signal.SIGTERM)
        try:
            lab.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(lab.pid, signal.SIGKILL)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=8899)
    p.add_argument("--notebook", default="unlearn.py")
    args = p.parse_args()
    for r in run(args.port, args.notebook):
        print(f"--- In:\n{r['code']}\n--- Out{' (' + str(r['images']) + ' image)' if r['images'] else ''}:\n"
              f"{r['text'].rstrip()}" + (f"\n--- ERROR {r['error']}" if r["error"] else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
