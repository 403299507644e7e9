"""The README query checker (logs_query.py) against lines shaped as the binaries print them
under the real lambda_runtime: its own span first, then Herald's."""

import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import logs_query  # noqa: E402

RUNTIME = {"requestId": "r-1", "xrayTraceId": "Root=1", "name": "Lambda runtime invoke"}


def line(message, spans, **fields):
    return "r-1 [0] stderr: " + json.dumps(
        {"level": "INFO", "message": message, **fields, "spans": spans})


API = line("message accepted", [RUNTIME, {"function": "send-sms", "request_id": "r-1",
                                          "message_id": "msg_a", "name": "invocation"}],
           message_id="msg_a")
JOB = line("job failed", [dict(RUNTIME, requestId="r-2"),
                          {"function": "retry-processor", "request_id": "r-2",
                           "name": "invocation"},
                          {"message_id": "msg_a", "name": "message"}])
OTHER = line("message accepted", [dict(RUNTIME, requestId="r-3"),
                                  {"function": "send-sms", "request_id": "r-3",
                                   "message_id": "msg_b", "name": "invocation"}],
             message_id="msg_b")
LINES = {"send-sms": [API, OTHER, "r-1 [0] platform: END"], "retry-processor": [JOB]}


def readme(query):
    return f"Text.\n\n```\n{query}\n```\n"


def test_the_readme_query_finds_every_line_of_a_message_and_of_its_invocation():
    text = (pathlib.Path(__file__).resolve().parents[3] / "README.md").read_text()
    assert logs_query.check(text, LINES, "msg_a") == []


def test_a_query_that_assumes_herald_s_span_comes_first_is_refused():
    old = ('fields @timestamp, level, message, spans.0.request_id, spans.0.message_id\n'
           '| filter spans.0.request_id = "<id>" or spans.0.message_id = "msg_…"\n'
           '| sort @timestamp')
    problems = logs_query.check(readme(old), LINES, "msg_a")
    assert "spans.0.request_id is in no line the binaries printed" in problems
    assert any("miss a line of send-sms" in p for p in problems)
    assert any("request-id terms miss" in p for p in problems)


def test_a_query_that_misses_a_batch_job_s_span_is_refused():
    partial = ('fields @timestamp, message\n'
               '| filter spans.0.requestId = "<id>" or spans.1.message_id = "msg_…"\n'
               '| sort @timestamp')
    problems = logs_query.check(readme(partial), LINES, "msg_a")
    assert problems == ["the message-id terms miss a line of retry-processor about msg_a: "
                        "'job failed' with spans ['Lambda runtime invoke', 'invocation', "
                        "'message']"]


def test_a_filter_term_it_cannot_read_is_an_error():
    try:
        logs_query.parse('fields a\n| filter a like /x/')
    except ValueError as e:
        assert "not understood" in str(e)
    else:
        raise AssertionError("an unreadable filter term was accepted")
