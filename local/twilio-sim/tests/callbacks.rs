//! Status callbacks: order, parameters, signatures, outcomes, Manual mode, wait_idle, retries.

mod common;

use common::*;
use twilio_sim::{CallbackMode, Faults, MessageStatus, Outcome, sign};

async fn send(sim: &twilio_sim::SimHandle, to: &str, callback: &str) -> String {
    let (status, m) = create(
        sim,
        &[
            ("To", to),
            ("From", FROM),
            ("Body", "alert"),
            ("StatusCallback", callback),
        ],
    )
    .await;
    assert_eq!(status, 201, "{m}");
    m["sid"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn delivered_message_reports_sent_then_delivered_signed() {
    let rx = Receiver::start().await;
    let sim = start(config()).await;
    let url = rx.url("/status?mid=msg_01&x=a%20b");
    let sid = send(&sim, "+15551230001", &url).await;
    sim.wait_idle().await;

    let got = rx.received();
    assert_eq!(
        rx.statuses(),
        vec![
            (sid.clone(), "sent".into()),
            (sid.clone(), "delivered".into())
        ]
    );
    for r in &got {
        assert_eq!(r.path_and_query, "/status?mid=msg_01&x=a%20b");
        assert_signed(&rx, r);
        assert_eq!(r.user_agent.as_deref(), Some("TwilioProxy/1.1"));
        assert!(
            r.content_type
                .as_deref()
                .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"))
        );
        assert_eq!(r.param("AccountSid"), Some(ACCOUNT));
        assert_eq!(r.param("ApiVersion"), Some("2010-04-01"));
        assert_eq!(r.param("From"), Some(FROM));
        assert_eq!(r.param("To"), Some("+15551230001"));
        assert_eq!(r.param("MessageSid"), Some(sid.as_str()));
        assert_eq!(r.param("SmsSid"), Some(sid.as_str()));
        assert_eq!(r.param("SmsStatus"), r.param("MessageStatus"));
        assert_eq!(r.param("ErrorCode"), None);
        assert_eq!(r.param("MessagingServiceSid"), None);
        assert!(r.idempotency_token.is_none());
    }
    assert!(
        got[1]
            .param("RawDlrDoneDate")
            .is_some_and(|d| d.len() == 10)
    );

    // The records match what was received, and the library's `sign` agrees.
    let records = sim.callbacks();
    assert_eq!(records.len(), 2);
    for (rec, r) in records.iter().zip(&got) {
        assert_eq!(rec.delivery.signed_url, url);
        assert_eq!(rec.delivery.response_status, Some(204));
        assert_eq!(rec.delivery.signature, r.signature.clone().unwrap());
        assert_eq!(
            rec.delivery.signature,
            sign(TOKEN, &url, &rec.delivery.params)
        );
        assert_eq!(rec.delivery.params, r.params);
    }
    let m = sim.message(&sid).unwrap();
    assert_eq!(m.status, MessageStatus::Delivered);
    let (_, fetched) = get_json(&message_url(&sim, &sid)).await;
    assert_eq!(fetched["status"], "delivered");
    sim.shutdown().await;
}

#[tokio::test]
async fn no_callback_without_status_callback_but_status_moves() {
    let rx = Receiver::start().await;
    let sim = start(config()).await;
    let (_, m) = create(
        &sim,
        &[("To", "+15551230001"), ("From", FROM), ("Body", "x")],
    )
    .await;
    sim.wait_idle().await;
    assert!(sim.callbacks().is_empty());
    assert!(rx.received().is_empty());
    let sid = m["sid"].as_str().unwrap();
    assert_eq!(sim.message(sid).unwrap().status, MessageStatus::Delivered);
    sim.shutdown().await;
}

#[tokio::test]
async fn undelivered_and_failed_outcomes() {
    let rx = Receiver::start().await;
    let sim = start(config()).await;
    sim.set_outcome("+15551230002", Outcome::Undelivered(30003));
    sim.set_outcome("+15551230003", Outcome::Failed(30008));
    let undelivered = send(&sim, "+15551230002", &rx.url("/u")).await;
    sim.wait_idle().await;
    let failed = send(&sim, "+15551230003", &rx.url("/f")).await;
    sim.wait_idle().await;

    let got = rx.received();
    assert_eq!(
        rx.statuses(),
        vec![
            (undelivered.clone(), "sent".into()),
            (undelivered.clone(), "undelivered".into()),
            (failed.clone(), "failed".into()),
        ]
    );
    assert_eq!(got[0].param("ErrorCode"), None);
    assert_eq!(got[1].param("ErrorCode"), Some("30003"));
    assert_eq!(got[2].param("ErrorCode"), Some("30008"));
    for r in &got {
        assert_signed(&rx, r);
    }
    let (_, m) = get_json(&message_url(&sim, &undelivered)).await;
    assert_eq!(m["status"], "undelivered");
    assert_eq!(m["error_code"], 30003);
    assert!(m["error_message"].is_string());
    let (_, m) = get_json(&message_url(&sim, &failed)).await;
    assert_eq!(m["status"], "failed");
    assert_eq!(m["error_code"], 30008);
    sim.shutdown().await;
}

#[tokio::test]
async fn messaging_service_callbacks_carry_the_service_sid() {
    let rx = Receiver::start().await;
    let sim = start(config()).await;
    let mg = "MG0123456789abcdef0123456789abcdef";
    let (status, m) = create(
        &sim,
        &[
            ("To", "+15551230001"),
            ("MessagingServiceSid", mg),
            ("Body", "hi"),
            ("StatusCallback", &rx.url("/ms")),
        ],
    )
    .await;
    assert_eq!(status, 201);
    sim.wait_idle().await;
    let got = rx.received();
    assert_eq!(got.len(), 2);
    for r in &got {
        assert_eq!(r.param("MessagingServiceSid"), Some(mg));
        assert_eq!(r.param("From"), Some(twilio_sim::SERVICE_SENDER));
        assert_signed(&rx, r);
    }
    let (_, fetched) = get_json(&message_url(&sim, m["sid"].as_str().unwrap())).await;
    assert_eq!(fetched["num_segments"], "1");
    assert_eq!(fetched["from"], twilio_sim::SERVICE_SENDER);
    sim.shutdown().await;
}

#[tokio::test]
async fn manual_mode_holds_callbacks_until_flush() {
    let rx = Receiver::start().await;
    let mut c = config();
    c.callback_mode = CallbackMode::Manual;
    let sim = start(c).await;
    let a = send(&sim, "+15551230001", &rx.url("/a")).await;
    let b = send(&sim, "+15551230002", &rx.url("/b")).await;
    sim.wait_idle().await; // held callbacks do not count as busy
    assert_eq!(sim.held_callbacks(), 2);
    assert!(rx.received().is_empty());
    assert!(sim.callbacks().is_empty());
    assert_eq!(sim.message(&a).unwrap().status, MessageStatus::Queued);

    assert_eq!(sim.flush_callbacks().await, 2);
    assert_eq!(sim.held_callbacks(), 0);
    assert_eq!(
        rx.statuses(),
        vec![
            (a.clone(), "sent".into()),
            (a.clone(), "delivered".into()),
            (b.clone(), "sent".into()),
            (b.clone(), "delivered".into()),
        ]
    );
    assert_eq!(sim.message(&b).unwrap().status, MessageStatus::Delivered);

    // The same through the HTTP inspection API.
    let c2 = send(&sim, "+15551230003", &rx.url("/c")).await;
    let r = client()
        .post(format!("{}/_sim/flush", sim.base_url()))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["flushed"], 1);
    assert_eq!(rx.received().len(), 6);
    assert_eq!(sim.message(&c2).unwrap().status, MessageStatus::Delivered);
    sim.shutdown().await;
}

#[tokio::test]
async fn wait_idle_waits_for_every_scheduled_callback() {
    let rx = Receiver::start().await;
    let mut c = config();
    c.callback_latency_ms = 40;
    let sim = start(c).await;
    let mut sids = Vec::new();
    for i in 0..3 {
        sids.push(send(&sim, &format!("+1555123000{i}"), &rx.url("/w")).await);
    }
    // With 40 ms before each callback, nothing can have arrived yet.
    assert!(rx.received().len() < 6);
    sim.wait_idle().await;
    assert_eq!(rx.received().len(), 6);
    for sid in &sids {
        assert_eq!(sim.message(sid).unwrap().status, MessageStatus::Delivered);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn duplicate_callbacks_at_rate_one() {
    let rx = Receiver::start().await;
    let mut c = config();
    c.faults = Faults {
        rate_duplicate_callback: 1.0,
        ..Faults::default()
    };
    let sim = start(c).await;
    let sid = send(&sim, "+15551230001", &rx.url("/d")).await;
    sim.wait_idle().await;
    assert_eq!(
        rx.statuses(),
        vec![
            (sid.clone(), "sent".into()),
            (sid.clone(), "sent".into()),
            (sid.clone(), "delivered".into()),
            (sid.clone(), "delivered".into()),
        ]
    );
    for r in rx.received() {
        assert_signed(&rx, &r);
    }
    let dups: Vec<bool> = sim.callbacks().iter().map(|c| c.duplicate).collect();
    assert_eq!(dups, vec![false, true, false, true]);
    sim.shutdown().await;
}

#[tokio::test]
async fn out_of_order_callbacks_at_rate_one() {
    let rx = Receiver::start().await;
    let mut c = config();
    c.faults = Faults {
        rate_out_of_order: 1.0,
        ..Faults::default()
    };
    let sim = start(c).await;
    let sid = send(&sim, "+15551230001", &rx.url("/o")).await;
    sim.wait_idle().await;
    assert_eq!(
        rx.statuses(),
        vec![
            (sid.clone(), "delivered".into()),
            (sid.clone(), "sent".into())
        ]
    );
    // The resource keeps its final status: a late `sent` does not undo `delivered`.
    assert_eq!(sim.message(&sid).unwrap().status, MessageStatus::Delivered);
    sim.shutdown().await;
}

#[tokio::test]
async fn failed_callbacks_are_recorded_and_retried_only_with_rc() {
    let rx = Receiver::start().await;
    let sim = start(config()).await;
    sim.set_outcome("+15551230009", Outcome::Failed(30008));

    // No fragment: one attempt, recorded as failed.
    let plain = send(&sim, "+15551230009", &rx.url("/fail/plain")).await;
    sim.wait_idle().await;
    let recs = sim.callbacks();
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].message_sid, plain);
    assert_eq!(recs[0].delivery.response_status, Some(500));
    assert!(!recs[0].delivery.succeeded());

    // `#rc=3`: three retries; the fragment is neither requested nor signed.
    let url = rx.url("/fail/retry?mid=msg_9#rc=3&rp=all");
    let retried = send(&sim, "+15551230009", &url).await;
    sim.wait_idle().await;
    let recs: Vec<_> = sim
        .callbacks()
        .into_iter()
        .filter(|c| c.message_sid == retried)
        .collect();
    assert_eq!(
        recs.iter().map(|c| c.delivery.attempt).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    let got: Vec<_> = rx
        .received()
        .into_iter()
        .filter(|r| r.param("MessageSid") == Some(retried.as_str()))
        .collect();
    assert_eq!(got.len(), 4);
    for (i, r) in got.iter().enumerate() {
        assert_eq!(r.path_and_query, "/fail/retry?mid=msg_9");
        assert_signed(&rx, r);
        assert_eq!(
            r.idempotency_token.is_some(),
            i > 0,
            "token only on retries"
        );
    }
    assert_eq!(recs[0].delivery.url, url);
    assert_eq!(recs[0].delivery.signed_url, rx.url("/fail/retry?mid=msg_9"));

    // A receiver that is down: a connection error is recorded.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let sid = send(&sim, "+15551230001", &format!("http://{dead}/cb")).await;
    sim.wait_idle().await;
    let recs: Vec<_> = sim
        .callbacks()
        .into_iter()
        .filter(|c| c.message_sid == sid)
        .collect();
    assert_eq!(recs.len(), 2);
    assert!(
        recs.iter()
            .all(|c| c.delivery.response_status.is_none() && c.delivery.error.is_some())
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_message_that_stays_sent_reports_sent_and_nothing_after() {
    let rx = Receiver::start().await;
    let sim = start(config()).await;
    sim.set_outcome("+15551230004", Outcome::StaysSent);
    let sid = send(&sim, "+15551230004", &rx.url("/s")).await;
    sim.wait_idle().await;
    assert_eq!(rx.statuses(), vec![(sid.clone(), "sent".into())]);
    assert_signed(&rx, &rx.received()[0]);
    let (_, m) = get_json(&message_url(&sim, &sid)).await;
    assert_eq!(m["status"], "sent");
    assert!(m["error_code"].is_null());
    assert_eq!(sim.message(&sid).unwrap().status, MessageStatus::Sent);
    sim.shutdown().await;
}
