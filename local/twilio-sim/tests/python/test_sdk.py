"""twilio-sim driven by Twilio's official Python SDK (twilio 9.x)."""

import datetime

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator

from conftest import ACCOUNT_SID, AUTH_TOKEN, FROM, KEY_SECRET, KEY_SID


def test_create_and_fetch_with_auth_token(sim):
    client = sim.client()
    msg = client.messages.create(to="+15551230001", from_=FROM, body="Hello from Herald")
    assert msg.sid.startswith("SM") and len(msg.sid) == 34
    assert msg.account_sid == ACCOUNT_SID
    assert msg.status == "queued"
    assert msg.to == "+15551230001"
    assert msg.from_ == FROM
    assert msg.body == "Hello from Herald"
    assert msg.num_segments == "1"
    assert msg.direction == "outbound-api"
    assert msg.api_version == "2010-04-01"
    assert isinstance(msg.date_created, datetime.datetime)  # the SDK parsed RFC 2822

    fetched = client.messages(msg.sid).fetch()
    assert fetched.sid == msg.sid
    assert fetched.body == "Hello from Herald"
    assert fetched.status in ("queued", "sent", "delivered")

    requests = sim.get("/_sim/requests")
    assert [r["method"] for r in requests] == ["POST", "GET"]
    assert all(r["principal"] == ACCOUNT_SID for r in requests)


def test_create_with_api_key(sim):
    client = sim.client(KEY_SID, KEY_SECRET)
    msg = client.messages.create(to="+15551230001", from_=FROM, body="via key")
    assert msg.account_sid == ACCOUNT_SID
    assert client.messages(msg.sid).fetch().sid == msg.sid
    assert sim.get("/_sim/requests")[0]["principal"] == KEY_SID


def test_wrong_credentials_raise_20003(sim):
    client = sim.client(ACCOUNT_SID, "not-the-token")
    with pytest.raises(TwilioRestException) as exc:
        client.messages.create(to="+15551230001", from_=FROM, body="x")
    assert exc.value.status == 401
    assert exc.value.code == 20003
    assert sim.get("/_sim/messages") == []


def test_unknown_message_raises_20404(sim):
    with pytest.raises(TwilioRestException) as exc:
        sim.client().messages("SM00000000000000000000000000000000").fetch()
    assert exc.value.status == 404
    assert exc.value.code == 20404


@pytest.mark.parametrize(
    "to,from_,code",
    [
        ("+15005550001", FROM, 21211),
        ("+15005550002", FROM, 21612),
        ("+15005550003", FROM, 21408),
        ("+15005550004", FROM, 21610),
        ("+15005550009", FROM, 21614),
        ("+15551230001", "+15005550001", 21212),
        ("+15551230001", "+15005550007", 21606),
        ("+15551230001", "+15005550008", 21611),
    ],
)
def test_magic_numbers(sim, to, from_, code):
    with pytest.raises(TwilioRestException) as exc:
        sim.client().messages.create(to=to, from_=from_, body="magic")
    assert exc.value.status == 400
    assert exc.value.code == code
    assert sim.get("/_sim/messages") == []


def test_missing_parameters(sim):
    client = sim.client()
    with pytest.raises(TwilioRestException) as exc:
        client.messages.create(to="+15551230001", body="no sender")
    assert (exc.value.status, exc.value.code) == (400, 21603)
    with pytest.raises(TwilioRestException) as exc:
        client.messages.create(to="+15551230001", from_=FROM)
    assert (exc.value.status, exc.value.code) == (400, 21602)
    with pytest.raises(TwilioRestException) as exc:
        client.messages.create(to="+15551230001", from_=FROM, body="x" * 1601)
    assert (exc.value.status, exc.value.code) == (400, 21617)


def test_list_with_filters_and_paging(sim):
    client = sim.client()
    sids = []
    for i in range(5):
        to = "+15551230001" if i % 2 == 0 else "+15551230002"
        sender = FROM if i < 3 else "+15005550010"
        sids.append(client.messages.create(to=to, from_=sender, body=f"n{i}").sid)
    newest_first = list(reversed(sids))

    assert [m.sid for m in client.messages.list()] == newest_first
    assert [m.sid for m in client.messages.list(to="+15551230001")] == [sids[4], sids[2], sids[0]]
    assert [m.sid for m in client.messages.list(from_="+15005550010")] == [sids[4], sids[3]]
    # page_size=2 makes the SDK follow next_page_uri across three pages.
    assert [m.sid for m in client.messages.list(page_size=2)] == newest_first
    assert [m.sid for m in client.messages.list(limit=3, page_size=2)] == newest_first[:3]

    # date_sent is set once a message is sent: let the simulator move them on first.
    sim.post("/_sim/idle")
    sent = client.messages(sids[0]).fetch().date_sent
    day = sent.date()
    assert len(client.messages.list(date_sent=day)) == 5
    assert client.messages.list(date_sent=day - datetime.timedelta(days=1)) == []
    assert client.messages.list(date_sent_before=day - datetime.timedelta(days=1)) == []
    assert len(client.messages.list(date_sent_after=day)) == 5
    assert client.messages.list(date_sent_after=sent + datetime.timedelta(days=1)) == []
    assert len(client.messages.list(date_sent_before=sent + datetime.timedelta(seconds=1))) == 5

    queries = [r["query"] or "" for r in sim.get("/_sim/requests") if r["method"] == "GET"]
    assert any("DateSent%3C=" in q for q in queries)
    assert any("DateSent%3E=" in q for q in queries)


def _validate(receiver, record, token=AUTH_TOKEN):
    url = receiver.base + record["path"]
    signature = record["headers"].get("x-twilio-signature")
    return RequestValidator(token).validate(url, record["params"], signature)


def test_status_callbacks_validate_with_the_sdk(sim, receiver):
    client = sim.client()
    callback = receiver.base + "/status?mid=msg_0001&tenant=a%20b"
    msg = client.messages.create(to="+15551230001", from_=FROM, body="hi", status_callback=callback)
    got = receiver.wait_for(2)
    assert [r["params"]["MessageStatus"] for r in got] == ["sent", "delivered"]
    for r in got:
        assert r["path"] == "/status?mid=msg_0001&tenant=a%20b"
        assert r["params"]["MessageSid"] == msg.sid
        assert r["params"]["SmsSid"] == msg.sid
        assert r["params"]["AccountSid"] == ACCOUNT_SID
        assert r["params"]["From"] == FROM
        assert r["params"]["To"] == "+15551230001"
        assert r["params"]["ApiVersion"] == "2010-04-01"
        assert r["headers"]["user-agent"] == "TwilioProxy/1.1"
        assert _validate(receiver, r)
        # The query string is signed, and so is the token.
        assert not RequestValidator(AUTH_TOKEN).validate(
            receiver.base + "/status", r["params"], r["headers"]["x-twilio-signature"]
        )
        assert not _validate(receiver, r, token="another-token")
    assert client.messages(msg.sid).fetch().status == "delivered"


def test_undelivered_callback_carries_error_code(sim, receiver):
    sim.post("/_sim/outcomes", {"to": "+15551230002", "outcome": "undelivered", "error_code": 30003})
    msg = sim.client().messages.create(
        to="+15551230002", from_=FROM, body="x", status_callback=receiver.base + "/u"
    )
    got = receiver.wait_for(2)
    assert [r["params"]["MessageStatus"] for r in got] == ["sent", "undelivered"]
    assert got[1]["params"]["ErrorCode"] == "30003"
    assert "ErrorCode" not in got[0]["params"]
    assert all(_validate(receiver, r) for r in got)
    fetched = sim.client().messages(msg.sid).fetch()
    assert fetched.status == "undelivered"
    assert fetched.error_code == 30003


def test_fragment_is_not_signed_and_rc_retries(sim, receiver):
    client = sim.client()
    # A failing receiver with #rc=3: one attempt and three retries per status.
    failing = receiver.base + "/fail/cb?mid=msg_0002#rc=3"
    msg = client.messages.create(to="+15551230001", from_=FROM, body="x", status_callback=failing)
    got = receiver.wait_for(8, lambda r: r["params"].get("MessageSid") == msg.sid)
    assert [r["params"]["MessageStatus"] for r in got] == ["sent"] * 4 + ["delivered"] * 4
    for r in got:
        assert r["path"] == "/fail/cb?mid=msg_0002"
        assert _validate(receiver, r)
        assert not RequestValidator(AUTH_TOKEN).validate(
            failing, r["params"], r["headers"]["x-twilio-signature"]
        ), "the #fragment is not part of the signed URL"
    assert "i-twilio-idempotency-token" not in got[0]["headers"]
    assert "i-twilio-idempotency-token" in got[1]["headers"]

    # A receiver that answers 204 with #rc=3: no retries.
    ok = receiver.base + "/ok#rc=3"
    msg2 = client.messages.create(to="+15551230001", from_=FROM, body="y", status_callback=ok)
    got2 = receiver.wait_for(2, lambda r: r["params"].get("MessageSid") == msg2.sid)
    assert all(_validate(receiver, r) for r in got2)
    sim.post("/_sim/idle")
    records = [c for c in sim.get("/_sim/callbacks") if c["message_sid"] == msg2.sid]
    assert [c["attempt"] for c in records] == [1, 1]
    assert len([r for r in receiver.snapshot() if r["params"].get("MessageSid") == msg2.sid]) == 2


def test_manual_mode_flush(manual_sim, receiver):
    client = manual_sim.client()
    msg = client.messages.create(
        to="+15551230001", from_=FROM, body="held", status_callback=receiver.base + "/m"
    )
    # Held: nothing sent, the message stays queued, with no date_sent, so a DateSent filter
    # does not list it (a To filter does).
    assert manual_sim.get("/_sim/callbacks") == []
    queued = client.messages(msg.sid).fetch()
    assert (queued.status, queued.date_sent) == ("queued", None)
    today = queued.date_created.date()
    assert client.messages.list(date_sent=today) == []
    assert [m.sid for m in client.messages.list(to="+15551230001")] == [msg.sid]
    assert receiver.snapshot() == []
    assert manual_sim.post("/_sim/flush") == {"flushed": 1}
    # The flush answers after every POST was answered.
    got = receiver.snapshot()
    assert [r["params"]["MessageStatus"] for r in got] == ["sent", "delivered"]
    assert all(_validate(receiver, r) for r in got)
    assert client.messages(msg.sid).fetch().status == "delivered"
    assert [m.sid for m in client.messages.list(date_sent=today)] == [msg.sid]
