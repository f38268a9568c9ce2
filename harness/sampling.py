"""Samples taken on the host while a stage's load runs (temperatures, GPU clocks).

The sampler is a shell loop started in the background of the same command as the load and
killed when the load ends (an EXIT trap, also on failure or cancel), so no second command
has to run beside the first: a serial console or one SSH shell runs one command at a time.
"""

from __future__ import annotations

import shlex


def sampled(command: str, sample: str, interval_s: float, path: str) -> str:
    """`command`, with `sample` appended to `path` every `interval_s` while it runs and
    once more when it ends (so even a short load has a sample from its end).

    The exit status is the command's own.
    """
    interval = f"{max(1.0, float(interval_s)):g}"
    target = shlex.quote(path)
    return (f"( : > {target}; ( while :; do {sample}; sleep {interval}; done ) >> {target} "
            f"2>/dev/null & vet_sampler=$!; trap 'kill $vet_sampler 2>/dev/null' EXIT; "
            f"{command}\nvet_rc=$?; kill $vet_sampler 2>/dev/null; wait $vet_sampler "
            f"2>/dev/null; {{ {sample}; }} >> {target} 2>/dev/null; exit $vet_rc )")
