"""The official Twilio Python SDK as an oracle for Herald's signature checks.

Reads a corpus of requests (JSON, written by shared/tests/sdk_agreement.rs), and for each one:
signs it as Twilio does with `RequestValidator.compute_signature` (JSON bodies: `compute_hash`
added to the URL as `bodySHA256`), makes mutated copies (URL, parameter names and values, body,
body hash, signature; parameters added, removed, duplicated; ports added or removed), and records
`RequestValidator.validate` for the genuine request and every mutant. Also checks that Herald's
query encoding equals `urllib.parse.urlencode`. Writes the results as JSON for the Rust side,
which checks that Herald's verdict is the same on every request.

Usage: python sdk_oracle.py CORPUS.json RESULTS.json
"""

import json
import random
import string
import sys
from urllib.parse import urlencode, urlparse

from twilio.request_validator import RequestValidator

ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"


class MultiDict(dict):
    """Repeated form parameters, as Flask/werkzeug hands them to the SDK (`getall`)."""

    def __init__(self, pairs):
        super().__init__()
        self.pairs = list(pairs)
        for k, _ in self.pairs:
            self[k] = None

    def getall(self, name):
        return [v for k, v in self.pairs if k == name]


def flip(s, i, alphabet=ALNUM):
    c = s[i]
    choices = [a for a in alphabet if a != c]
    return s[:i] + random.choice(choices) + s[i + 1 :]


def validate(validator, url, form, body, signature):
    try:
        if body is not None:
            return bool(validator.validate(url, body, signature))
        return bool(validator.validate(url, MultiDict(form), signature))
    except Exception:  # the SDK raises on some malformed input: not valid
        return False


def with_query(url, extra):
    return url + ("&" if "?" in url else "?") + extra


def port_variants(url):
    """The same URL with its port removed, or the default one added."""
    p = urlparse(url)
    out = []
    try:
        port = p.port
    except ValueError:
        return out
    if port:
        out.append(p._replace(netloc=p.netloc.rsplit(":", 1)[0]).geturl())
    else:
        default = 443 if p.scheme == "https" else 80
        out.append(p._replace(netloc=f"{p.netloc}:{default}").geturl())
    return out


def main():
    corpus = json.load(open(sys.argv[1], encoding="utf-8"))
    random.seed(corpus["seed"])
    results = []
    for case in corpus["cases"]:
        validator = RequestValidator(case["token"])
        configured = case["url"]  # as given to Twilio, maybe with a #fragment
        url = configured.split("#", 1)[0]  # what Twilio requests and signs
        assert urlparse(url).geturl() == url, url
        body = case.get("json_body")
        form = [tuple(p) for p in case.get("params", [])]
        if body is not None:
            url = with_query(url, "bodySHA256=" + validator.compute_hash(body))
            signature = validator.compute_signature(url, {})
        else:
            signature = validator.compute_signature(url, MultiDict(form))
        variants = [("genuine", url, form, body, signature)]
        for u in port_variants(url):
            variants.append(("port changed", u, form, body, signature))
        start = url.index("://") + 3
        for _ in range(3):
            i = random.randrange(start, len(url))
            variants.append(("URL flipped", flip(url, i), form, body, signature))
        for _ in range(2):
            i = random.randrange(len(signature))
            variants.append(("signature flipped", url, form, body, flip(signature, i, B64)))
        variants.append(("signature missing", url, form, body, ""))
        variants.append(("query parameter added", with_query(url, "x=1"), form, body, signature))
        if body is not None:
            i = random.randrange(len(body)) if body else 0
            if body:
                variants.append(("body flipped", url, form, flip(body, i), signature))
            variants.append(("body extended", url, form, body + " ", signature))
            h = url.index("bodySHA256=") + len("bodySHA256=")
            variants.append(("hash flipped", flip(url, h + random.randrange(64), "0123456789abcdef"), form, body, signature))
        else:
            if form:
                j = random.randrange(len(form))
                k, v = form[j]
                if k:
                    m = list(form)
                    m[j] = (flip(k, random.randrange(len(k))), v)
                    variants.append(("name flipped", url, m, body, signature))
                if v:
                    m = list(form)
                    m[j] = (k, flip(v, random.randrange(len(v))))
                    variants.append(("value flipped", url, m, body, signature))
                m = list(form)
                del m[j]
                variants.append(("parameter removed", url, m, body, signature))
                variants.append(("parameter duplicated", url, list(form) + [form[j]], body, signature))
                variants.append(("value added to a name", url, list(form) + [(k, v + "1")], body, signature))
            variants.append(("parameter added", url, list(form) + [("Extra", "1")], body, signature))
        out = []
        for what, u, f, b, s in variants:
            out.append(
                {
                    "what": what,
                    "url": u,
                    "params": [list(p) for p in f],
                    "json_body": b,
                    "signature": s,
                    "sdk_valid": validate(validator, u, f, b, s),
                }
            )
        results.append(
            {
                "id": case["id"],
                "signature": signature,
                "urlencoded": urlencode([tuple(p) for p in case["query_pairs"]]),
                "variants": out,
            }
        )
    json.dump({"results": results}, open(sys.argv[2], "w", encoding="utf-8"), ensure_ascii=False)


if __name__ == "__main__":
    main()
