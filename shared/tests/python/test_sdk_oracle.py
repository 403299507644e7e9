"""Sanity checks of the oracle itself against the SDK's documented example, so a broken
oracle cannot make shared/tests/sdk_agreement.rs pass vacuously."""

import json
import os
import subprocess
import sys
import tempfile

from twilio.request_validator import RequestValidator

HERE = os.path.dirname(os.path.abspath(__file__))


def test_documented_example_signature():
    v = RequestValidator("12345")
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Caller": "+12349013030",
        "Digits": "1234",
        "From": "+12349013030",
        "To": "+18005551212",
    }
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    assert v.compute_signature(url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


def test_oracle_marks_genuine_valid_and_tampering_invalid():
    corpus = {
        "seed": 1,
        "cases": [
            {
                "id": 0,
                "token": "tok",
                "url": "https://h.example/cb?a=1#rc=2",
                "params": [["Digits", "1"], ["Digits", "2"], ["Body", "x y"]],
                "query_pairs": [["a", "x y+"]],
            },
            {
                "id": 1,
                "token": "tok",
                "url": "http://h.example:8080/cb",
                "json_body": '{"a":"\u00e9"}',
                "query_pairs": [],
            },
        ],
    }
    with tempfile.TemporaryDirectory() as d:
        src, dst = os.path.join(d, "in.json"), os.path.join(d, "out.json")
        json.dump(corpus, open(src, "w"))
        subprocess.run([sys.executable, os.path.join(HERE, "sdk_oracle.py"), src, dst], check=True)
        results = json.load(open(dst))["results"]
    for r in results:
        by = {}
        for v in r["variants"]:
            by.setdefault(v["what"], []).append(v["sdk_valid"])
        assert by["genuine"] == [True]
        # The default port added to a URL without one is accepted; a non-default port removed
        # is not (the SDK only adds default ports).
        assert by["port changed"] == [r["id"] == 0]
        assert not any(by["signature flipped"]) and by["signature missing"] == [False]
        assert by.get("parameter duplicated", [True]) == [True]
        assert not any(by.get("value flipped", [])) and not any(by.get("body flipped", []))
    assert results[0]["urlencoded"] == "a=x+y%2B"
