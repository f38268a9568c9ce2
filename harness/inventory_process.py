"""load_inventory in a child interpreter, so that the pytest controller never imports Ansible.

Ansible's inventory loader (with Jinja2 and its vault) adds ~17 MB to a process that
imports it, and a process cannot give imported modules back: the controller of a run with
one xdist worker per host kept them to the end for one call at start-up (issue 8). The
child runs the same harness.inventory.load_inventory, with the same working directory and
environment (ansible.cfg, ANSIBLE_VAULT_PASSWORD_FILE), and hands back the Host records
pickled, as the controller already hands them to its workers. A subprocess rather than
multiprocessing: "spawn" would re-import the controller's __main__ (pytest, or whatever
wraps it), "fork" would copy a process that may hold threads.

    python -m harness.inventory_process   (reads its arguments as JSON on stdin)
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

from harness.errors import InventoryError, VetError
from harness.models import Host

#: Even a large inventory with vaulted values parses in seconds; past this it is stuck
#: (a vault password script that waits for input, say).
DEADLINE_S = 300.0


def load_inventory_apart(path: str | Path, pattern: str | None = None,
                         vault_password_file: str | Path | None = None, *,
                         deadline_s: float = DEADLINE_S) -> list[Host]:
    """harness.inventory.load_inventory(path, pattern, vault_password_file), run in a child
    interpreter. Raises InventoryError (the child's own message) as load_inventory does."""
    request = json.dumps({"path": str(path), "pattern": pattern,
                          "vault_password_file": None if vault_password_file is None
                          else str(vault_password_file)})
    try:
        done = subprocess.run([sys.executable, "-m", __name__], input=request.encode(),
                              capture_output=True, timeout=deadline_s, check=False)
    except subprocess.TimeoutExpired:
        raise InventoryError(
            f"{path}: loading the inventory took over {deadline_s:.0f} s; check that its "
            "vault password file (or script) answers without waiting for input") from None
    if done.returncode != 0:
        raise RuntimeError(f"loading inventory {path} in a child process failed "
                           f"(exit {done.returncode}): {done.stderr.decode(errors='replace')}")
    kind, value = pickle.loads(done.stdout)
    if kind == "error":
        raise InventoryError(value)
    hosts: list[Host] = value
    return hosts


def main() -> int:
    # The answer gets stdout to itself: whatever else writes to fd 1 (Ansible, a vault
    # password script) goes to stderr.
    answer = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    from harness.inventory import load_inventory

    request = json.loads(sys.stdin.read())
    try:
        result: tuple[str, object] = ("hosts", load_inventory(
            request["path"], request["pattern"], request["vault_password_file"]))
    except VetError as exc:
        result = ("error", str(exc))
    with answer:
        answer.write(pickle.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
