"""Checks what `helm lint` cannot see in the rendered chart (stdin: `helm template` output):
fletch.toml in the ConfigMap parses and uses only keys config/fletch.example.toml
documents, and Kubernetes waits longer after SIGTERM than fletch drains.

    helm template fletch deploy/helm/fletch | python3 scripts/check_chart.py
"""

import re
import sys
import tomllib
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / "config/fletch.example.toml"


def config_toml(rendered):
    """The `fletch.toml: |` block of the ConfigMap (a YAML block scalar, indented)."""
    lines = rendered.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "fletch.toml: |")
    indent = len(lines[start]) - len(lines[start].lstrip()) + 2
    block = []
    for line in lines[start + 1:]:
        if line.strip() and len(line) - len(line.lstrip()) < indent:
            break
        block.append(line[indent:])
    return tomllib.loads("\n".join(block))


def main():
    rendered = sys.stdin.read()
    config = config_toml(rendered)
    known = tomllib.loads(EXAMPLE.read_text())
    errors = [f"unknown config key {section}.{key}" for section, keys in config.items()
              for key in keys if key not in known.get(section, {})]
    http = config.get("http", {})
    drain_s = (http.get("shutdown_delay_ms", 0) + http.get("shutdown_grace_ms", 30_000)) / 1000
    grace = re.search(r"terminationGracePeriodSeconds: (\d+)", rendered)
    if not grace or int(grace.group(1)) <= drain_s:
        errors.append(f"terminationGracePeriodSeconds ({grace and grace.group(1)}) must exceed delay + grace ({drain_s} s)")
    for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        if not re.search(rf"{probe}:\s+httpGet:\s+path: {path}\b", rendered):
            errors.append(f"{probe} does not ask {path}")
    if errors:
        sys.exit("chart check failed:\n  " + "\n  ".join(errors))
    print(f"chart ok: {sum(len(k) for k in config.values())} config keys, drains within {drain_s:.0f} s")


if __name__ == "__main__":
    main()
