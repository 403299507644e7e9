"""scripts/bench.sh: ns per validation of `twilio` (PyPI) RequestValidator over the shared file of
signed status callbacks (herald-bench signature-corpus).

    python signature.py CORPUS.json ROUNDS OUT.json
"""
import json
import sys
import time
from importlib.metadata import version

from twilio.request_validator import RequestValidator


def main():
    corpus_path, rounds, out_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    with open(corpus_path) as f:
        corpus = json.load(f)
    validator = RequestValidator(corpus["auth_token"])
    requests = [(r["url"], dict(r["params"]), r["signature"]) for r in corpus["requests"]]

    all_valid = all(validator.validate(u, p, s) for u, p, s in requests)
    ok = sum(validator.validate(u, p, s) for u, p, s in requests)  # warm up
    t0 = time.perf_counter_ns()
    for _ in range(rounds):
        for u, p, s in requests:
            ok += validator.validate(u, p, s)
    ns = time.perf_counter_ns() - t0
    validations = rounds * len(requests)
    result = {
        "implementation": "twilio (PyPI) RequestValidator",
        "version": f"{version('twilio')} on Python {sys.version.split()[0]}",
        "requests": len(requests),
        "validations": validations,
        "ns_per_validation": ns / validations,
        "all_valid": all_valid and ok == validations + len(requests),
    }
    with open(out_path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    print(f"  twilio (PyPI): {result['ns_per_validation']:.0f} ns/validation", file=sys.stderr)
    if not result["all_valid"]:
        sys.exit("twilio (PyPI) rejected a request of the corpus")


if __name__ == "__main__":
    main()
