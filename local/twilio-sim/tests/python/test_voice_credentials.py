"""Calls, API keys, auth-token rotation, JSON-signed callbacks and inbound SMS, driven by
Twilio's official Python SDK (twilio 9.x) and checked with its RequestValidator."""

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client
from twilio.twiml.voice_response import Gather, VoiceResponse

from conftest import ACCOUNT_SID, AUTH_TOKEN, FROM, KEY_SECRET, KEY_SID, TWIML_ANSWER

CALLEE = "+15551239001"


def _validate(receiver, record, token=AUTH_TOKEN):
    """Validates as a webhook handler would: JSON requests pass the raw body string."""
    url = receiver.base + record["path"]
    signature = record["headers"].get("x-twilio-signature")
    is_json = record["headers"].get("content-type", "").startswith("application/json")
    params = record["body"] if is_json else record["params"]
    return RequestValidator(token).validate(url, params, signature)


def _gather_twiml(action):
    response = VoiceResponse()
    gather = Gather(action=action, method="POST", num_digits=1, input="dtmf")
    gather.say("Herald alert. Press 1 to acknowledge.")
    response.append(gather)
    response.say("No input received.")
    return str(response)


def test_call_progress_and_gather_validate_with_the_sdk(sim, receiver):
    sim.post("/_sim/call-outcomes", {"to": CALLEE, "outcome": "answer-and-press", "digits": "1"})
    client = sim.client()
    action = receiver.base + "/twiml/ack?alert=a1&channel=voice"
    twiml = _gather_twiml(action)
    assert "alert=a1&amp;channel=voice" in twiml  # the SDK escapes it; the simulator unescapes
    call = client.calls.create(
        to=CALLEE,
        from_=FROM,
        twiml=twiml,
        status_callback=receiver.base + "/status?alert=a1",
        status_callback_event=["initiated", "ringing", "answered", "completed"],
    )
    assert call.sid.startswith("CA") and len(call.sid) == 34
    assert call.status == "queued"
    assert call.to == CALLEE
    assert call._from == FROM  # the SDK names this attribute `_from` for calls
    assert call.direction == "outbound-api"

    got = receiver.wait_for(5)
    sequence = [
        ("gather", r["params"]["Digits"])
        if r["path"].startswith("/twiml")
        else (r["params"]["CallStatus"], r["params"]["SequenceNumber"])
        for r in got
    ]
    assert sequence == [
        ("initiated", "0"),
        ("ringing", "1"),
        ("in-progress", "2"),
        ("gather", "1"),
        ("completed", "3"),
    ]
    for r in got:
        assert _validate(receiver, r)
        assert not _validate(receiver, r, token="another-token")
        assert r["params"]["CallSid"] == call.sid
        assert r["params"]["AccountSid"] == ACCOUNT_SID
        assert r["params"]["From"] == FROM
        assert r["params"]["To"] == CALLEE
        assert r["params"]["Direction"] == "outbound-api"
    status = [r for r in got if r["path"].startswith("/status")]
    assert all(r["params"]["CallbackSource"] == "call-progress-events" for r in status)
    assert "CallDuration" in status[-1]["params"] and "Duration" in status[-1]["params"]
    gather = next(r for r in got if r["path"].startswith("/twiml"))
    assert gather["path"] == "/twiml/ack?alert=a1&channel=voice"
    assert gather["params"]["FinishedOnKey"] == ""

    sim.post("/_sim/idle")
    voice = sim.get("/_sim/voice-requests")
    assert [(v["kind"], v["response_status"], v["response_body"]) for v in voice] == [
        ("gather", 200, TWIML_ANSWER)
    ]
    fetched = client.calls(call.sid).fetch()
    assert fetched.status == "completed"
    assert int(fetched.duration) >= 1
    assert [c.sid for c in client.calls.list(to=CALLEE)] == [call.sid]


def test_busy_call_reports_only_completed(sim, receiver):
    sim.post("/_sim/call-outcomes", {"to": CALLEE, "outcome": "busy"})
    call = sim.client().calls.create(
        to=CALLEE, from_=FROM, url="https://example.com/twiml", status_callback=receiver.base + "/s"
    )
    got = receiver.wait_for(1)
    assert got[0]["params"]["CallStatus"] == "busy"
    assert got[0]["params"]["SequenceNumber"] == "0"
    assert "CallDuration" not in got[0]["params"]
    assert _validate(receiver, got[0])
    sim.post("/_sim/idle")
    assert sim.client().calls(call.sid).fetch().status == "busy"


@pytest.mark.parametrize(
    "to,from_,code",
    [("+15005550001", FROM, 21217), (CALLEE, "+15005550001", 21212)],
)
def test_call_magic_numbers(sim, to, from_, code):
    with pytest.raises(TwilioRestException) as exc:
        sim.client().calls.create(to=to, from_=from_, twiml="<Response/>")
    assert (exc.value.status, exc.value.code) == (400, code)
    assert sim.get("/_sim/calls") == []


def test_twiml_over_4000_characters_is_refused(sim):
    with pytest.raises(TwilioRestException) as exc:
        sim.client().calls.create(to=CALLEE, from_=FROM, twiml="<Response>" + "x" * 4000 + "</Response>")
    assert (exc.value.status, exc.value.code) == (400, 32018)


def test_api_keys_are_created_used_and_revoked(sim):
    client = sim.client()
    key = client.new_keys.create(friendly_name="herald-rotation")
    assert key.sid.startswith("SK") and len(key.sid) == 34
    assert key.friendly_name == "herald-rotation"
    assert key.secret

    keyed = sim.client(key.sid, key.secret)
    msg = keyed.messages.create(to="+15551230001", from_=FROM, body="with the new key")
    assert msg.account_sid == ACCOUNT_SID

    assert key.sid in [k.sid for k in client.keys.list()]
    assert client.keys(key.sid).fetch().friendly_name == "herald-rotation"
    assert client.keys(key.sid).update(friendly_name="renamed").friendly_name == "renamed"
    assert client.keys(key.sid).delete() is True

    with pytest.raises(TwilioRestException) as exc:
        keyed.messages.create(to="+15551230001", from_=FROM, body="revoked")
    assert (exc.value.status, exc.value.code) == (401, 20003)
    with pytest.raises(TwilioRestException) as exc:
        client.keys(key.sid).fetch()
    assert exc.value.status == 404


def test_a_standard_key_cannot_create_keys(sim):
    with pytest.raises(TwilioRestException) as exc:
        sim.client(KEY_SID, KEY_SECRET).new_keys.create(friendly_name="nope")
    assert (exc.value.status, exc.value.code) == (401, 20003)


def test_account_fetch(sim):
    account = sim.client().api.v2010.accounts(ACCOUNT_SID).fetch()
    assert account.sid == ACCOUNT_SID
    assert account.status == "active"
    assert account.auth_token == AUTH_TOKEN


def test_auth_token_rotation(sim, receiver):
    client = sim.client()
    secondary = client.accounts.v1.secondary_auth_token().create()
    assert secondary.account_sid == ACCOUNT_SID
    new_token = secondary.secondary_auth_token
    assert new_token and new_token != AUTH_TOKEN

    # Not promoted yet: refused.
    with pytest.raises(TwilioRestException) as exc:
        sim.client(ACCOUNT_SID, new_token).messages.create(to="+15551230001", from_=FROM, body="x")
    assert (exc.value.status, exc.value.code) == (401, 20003)

    promotion = client.accounts.v1.auth_token_promotion().update()
    assert promotion.auth_token == new_token
    assert sim.get("/_sim/auth-token") == {"primary": new_token, "secondary": None}

    with pytest.raises(TwilioRestException) as exc:
        client.messages.create(to="+15551230001", from_=FROM, body="old token")
    assert (exc.value.status, exc.value.code) == (401, 20003)

    fresh = sim.client(ACCOUNT_SID, new_token)
    fresh.messages.create(
        to="+15551230001", from_=FROM, body="new token", status_callback=receiver.base + "/after"
    )
    got = receiver.wait_for(2)
    for r in got:
        assert _validate(receiver, r, token=new_token)
        assert not _validate(receiver, r, token=AUTH_TOKEN)

    # A second secondary can be created and deleted.
    fresh.accounts.v1.secondary_auth_token().create()
    assert fresh.accounts.v1.secondary_auth_token().delete() is True
    assert sim.get("/_sim/auth-token")["secondary"] is None


def test_json_callbacks_validate_with_the_sdk(json_sim, receiver):
    client = json_sim.client()
    msg = client.messages.create(
        to="+15551230001", from_=FROM, body="json", status_callback=receiver.base + "/status?mid=m1"
    )
    got = receiver.wait_for(2)
    for r in got:
        assert r["headers"]["content-type"] == "application/json"
        assert r["path"].startswith("/status?mid=m1&bodySHA256=")
        assert r["params"]["MessageSid"] == msg.sid
        assert _validate(receiver, r)
        url = receiver.base + r["path"]
        signature = r["headers"]["x-twilio-signature"]
        # A changed body no longer matches bodySHA256.
        assert not RequestValidator(AUTH_TOKEN).validate(url, r["body"] + " ", signature)
        assert not RequestValidator("another-token").validate(url, r["body"], signature)
    assert [r["params"]["MessageStatus"] for r in got] == ["sent", "delivered"]

    json_sim.post("/_sim/idle")
    call = client.calls.create(
        to=CALLEE, from_=FROM, twiml="<Response/>", status_callback=receiver.base + "/call"
    )
    got = receiver.wait_for(1, lambda r: r["path"].startswith("/call"))
    assert got[0]["params"]["CallSid"] == call.sid
    assert got[0]["params"]["CallStatus"] == "completed"
    assert _validate(receiver, got[0])


def test_inbound_sms_is_signed_and_answered_with_twiml(sim, receiver):
    answer = sim.post(
        "/_sim/inbound",
        {"from": "+447700900123", "to": FROM, "body": "ACK 42", "url": receiver.base + "/twiml/sms?t=1"},
    )
    assert answer["response_status"] == 200
    assert answer["response_body"] == TWIML_ANSWER
    got = receiver.wait_for(1)
    r = got[0]
    assert _validate(receiver, r)
    p = r["params"]
    assert p["MessageSid"] == answer["message_sid"] == p["SmsSid"] == p["SmsMessageSid"]
    assert (p["From"], p["To"], p["Body"]) == ("+447700900123", FROM, "ACK 42")
    assert (p["FromCountry"], p["ToCountry"], p["NumMedia"], p["SmsStatus"]) == ("GB", "US", "0", "received")

    # STOP opts the sender out: sending to it fails with 21610.
    sim.post("/_sim/inbound", {"from": "+15551230007", "to": FROM, "body": "STOP", "url": receiver.base + "/in"})
    with pytest.raises(TwilioRestException) as exc:
        sim.client().messages.create(to="+15551230007", from_=FROM, body="x")
    assert exc.value.code == 21610


def test_sdk_client_for_a_new_key_needs_no_account_token(sim):
    key = sim.client().new_keys.create()
    client = Client(key.sid, key.secret, ACCOUNT_SID)
    client.api.base_url = sim.url
    assert client.calls.create(to=CALLEE, from_=FROM, twiml="<Response/>").status == "queued"
