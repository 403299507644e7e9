"""The README's CloudWatch Logs Insights query, held to the lines the binaries print in the run.

Under the real `lambda_runtime`, every line of an invocation carries the runtime's own span
first (`{"name": "Lambda runtime invoke", "requestId": …}`), then Herald's `invocation` span
(`function`, `request_id`, and the `message_id` or `call_id` of an API call), then, inside an
SQS batch, one span per job. A query that names `spans.0.message_id` finds nothing on AWS.

`check` takes the query out of README.md and evaluates its `filter` clause (terms
`path = "…"`, joined by `or`) as Logs Insights would over the run's JSON lines: each path must
exist in some line, the request-id term must find the lines of one invocation, and the
message-id terms must find a message's lines in every function that handled it."""

import json
import re

PLACEHOLDER_MESSAGE = "msg_…"


def readme_query(readme_text):
    """The fenced block of README.md that starts with `fields @timestamp`."""
    m = re.search(r"```\n(fields @timestamp.*?)```", readme_text, re.S)
    if not m:
        raise ValueError("README.md has no Logs Insights query (a block starting `fields @timestamp`)")
    return m.group(1)


def parse(query):
    """(fields, filter terms) of a query: fields are paths; terms are (path, placeholder)."""
    fields, terms = [], []
    for clause in re.split(r"\n\s*\|", "\n" + query.strip()):
        clause = " ".join(clause.split())
        if clause.startswith("fields "):
            fields = [f.strip() for f in clause[len("fields "):].split(",")]
        elif clause.startswith("filter "):
            for term in re.split(r"\s+or\s+", clause[len("filter "):]):
                m = re.fullmatch(r'([\w.@]+)\s*=\s*"([^"]*)"', term.strip())
                if not m:
                    raise ValueError(f"filter term not understood: {term!r}")
                terms.append((m.group(1), m.group(2)))
    return fields, terms


def value_at(doc, path):
    """Logs Insights' flattening: `spans.1.message_id` is doc["spans"][1]["message_id"]."""
    cur = doc
    for part in path.split("."):
        if isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        elif isinstance(cur, dict) and part in cur:
            cur = cur[part]
        else:
            return None
    return cur


def json_lines(lines):
    """The JSON documents among captured lines (`<request id> [n] stderr: {…}`)."""
    out = []
    for line in lines:
        start = line.find("{")
        if start < 0:
            continue
        try:
            doc = json.loads(line[start:])
        except ValueError:
            continue
        if isinstance(doc, dict) and "spans" in doc:
            out.append(doc)
    return out


def run_filter(terms, docs, request_id=None, message_id=None):
    """The lines the filter keeps, with its placeholders replaced."""
    def wanted(placeholder):
        return message_id if placeholder == PLACEHOLDER_MESSAGE else request_id
    return [d for d in docs
            if any(wanted(p) is not None and value_at(d, path) == wanted(p) for path, p in terms)]


def request_ids(doc):
    """Every request id a line's spans carry (the runtime's `requestId`, Herald's `request_id`)."""
    return {v for span in doc.get("spans") or [] if isinstance(span, dict)
            for k, v in span.items() if k in ("requestId", "request_id")}


def check(readme_text, lines_by_function, message_id):
    """Problems found (empty: the query works on these lines). Every line that mentions
    `message_id`, in whichever function, must be kept by the message-id terms; every line of
    the first invocation that handled it, by the request-id terms."""
    fields, terms = parse(readme_query(readme_text))
    every = [(f, d) for f, lines in lines_by_function.items() for d in json_lines(lines)]
    problems = []
    for path in [f for f in fields if f.startswith("spans.")] + [p for p, _ in terms]:
        if not any(value_at(d, path) is not None for _, d in every):
            problems.append(f"{path} is in no line the binaries printed")
    about = [(f, d) for f, d in every if message_id in json.dumps(d)]
    if not about:
        return problems + [f"no line mentions {message_id}"]
    kept = run_filter(terms, [d for _, d in about], message_id=message_id)
    for f, d in about:
        if not any(d is k for k in kept):
            problems.append(f"the message-id terms miss a line of {f} about {message_id}: "
                            f"{d.get('message')!r} with spans {[s.get('name') for s in d['spans']]}")
    rid = sorted(request_ids(about[0][1]))
    if not rid:
        return problems + ["a line about the message carries no request id"]
    invocation = [(f, d) for f, d in every if rid[0] in request_ids(d)]
    kept = run_filter(terms, [d for _, d in invocation], request_id=rid[0])
    missed = [d for _, d in invocation if not any(d is k for k in kept)]
    if missed:
        problems.append(f"the request-id terms miss {len(missed)} of {len(invocation)} lines "
                        f"of invocation {rid[0]}")
    return problems
