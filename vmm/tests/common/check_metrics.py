"""Checks an OpenMetrics exposition (stdin) with prometheus_client's strict
OpenMetrics parser and the naming rules of the VMM's /metrics:
one prefix, base units, no empty label sets, no empty label values, the
exit-handling times as a histogram, every counter state emitted (0/1).
Exit 0 and one line `ok: N families, M samples` when all hold; exit 1 with
the reasons otherwise; exit 3 when prometheus_client is not installed."""

import re
import sys
from collections import defaultdict

try:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families
except ImportError:
    print("prometheus_client is not installed (pip install prometheus_client)")
    sys.exit(3)

text = sys.stdin.read()
errors = []
families = list(text_string_to_metric_families(text))
samples = [s for f in families for s in f.samples]

for f in families:
    if not f.name.startswith("vmm_"):
        errors.append(f"{f.name}: not under the vmm_ prefix")
    if re.search(r"_(ns|us|ms|nanoseconds|milliseconds)(_|$)", f.name):
        errors.append(f"{f.name}: not in base units")
for s in samples:
    for k, v in s.labels.items():
        if v == "":
            errors.append(f"{s.name}: empty label {k}")
    if "quantile" in s.labels:
        errors.append(f"{s.name}: quantile label")
for line in text.splitlines():
    if "{}" in line:
        errors.append(f"empty label set: {line}")

types = {f.name: f.type for f in families}
if types.get("vmm_pmu_exit_handling_seconds") != "histogram":
    errors.append(f"exit handling times: {types.get('vmm_pmu_exit_handling_seconds')}, not histogram")
else:
    les = [s.labels["le"] for s in samples if s.name == "vmm_pmu_exit_handling_seconds_bucket"]
    if not les or les[-1] != "+Inf":
        errors.append(f"histogram buckets {les}")

states = defaultdict(dict)
for s in samples:
    if s.name == "vmm_counter_state":
        key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "state"))
        states[key][s.labels["state"]] = s.value
if not states:
    errors.append("no vmm_counter_state series")
for key, st in states.items():
    if set(st) != {"active", "inactive", "error", "degraded", "off"} or sorted(st.values()) != [0, 0, 0, 0, 1]:
        errors.append(f"counter state set {dict(key)}: {st}")

if errors:
    print("\n".join(errors))
    sys.exit(1)
print(f"ok: {len(families)} families, {len(samples)} samples")
