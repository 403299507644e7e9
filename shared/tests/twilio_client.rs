//! Herald's Twilio REST client against the Twilio simulator: requests, answers, and every class
//! of failure mapped to its retry class.

use std::time::Duration;

use herald::Secret;
use herald::ports::TwilioCredentials;
use herald::twilio::{Client, ClientOptions, NewMessage, RetryClass, Sender, TwilioError};

const ACCOUNT: &str = "AC0123456789abcdef0123456789abcdef";
const KEY: &str = "SK0123456789abcdef0123456789abcdef";

async fn sim() -> twilio_sim::SimHandle {
    let mut cfg = twilio_sim::SimConfig::new(ACCOUNT.to_owned(), "auth-token".to_owned());
    cfg.api_keys = vec![(KEY.to_owned(), "key-secret".to_owned())];
    cfg.callback_mode = twilio_sim::CallbackMode::Manual;
    twilio_sim::Simulator::start(cfg).await.unwrap()
}

fn creds(secret: &str) -> TwilioCredentials {
    TwilioCredentials {
        account_sid: ACCOUNT.to_owned(),
        api_key_sid: KEY.to_owned(),
        api_key_secret: Secret::new(secret.to_owned()),
        auth_token: Secret::new("auth-token".to_owned()),
        previous_auth_token: None,
        previous_valid_until_ms: None,
    }
}

fn client(base_url: String, timeout_ms: u64) -> Client {
    Client::new(&ClientOptions {
        base_url,
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(timeout_ms),
    })
    .unwrap()
}

async fn send(
    c: &Client,
    secret: &str,
    to: &str,
    sender: &Sender,
) -> Result<herald::twilio::MessageResource, TwilioError> {
    c.create_message(
        &creds(secret),
        &NewMessage {
            to,
            sender,
            body: "hello",
            status_callback: "https://hooks.example.test/cb?mid=x",
        },
    )
    .await
}

#[tokio::test]
async fn creates_and_fetches_a_message_with_an_api_key() {
    let sim = sim().await;
    let c = client(sim.base_url(), 2000);
    let from = Sender::From("+15005550006".into());
    let m = send(&c, "key-secret", "+14155552671", &from).await.unwrap();
    assert!(herald::twilio::is_sid(&m.sid, "SM"), "{}", m.sid);
    assert_eq!(m.status, "queued");
    assert_eq!(m.num_segments.as_deref(), Some("1"));
    let fetched = c.fetch_message(&creds("key-secret"), &m.sid).await.unwrap();
    assert_eq!(fetched.sid, m.sid);
    let recorded = sim.requests();
    assert_eq!(recorded.len(), 2);
    let sent = sim.messages();
    assert_eq!(
        sent[0].status_callback.as_deref(),
        Some("https://hooks.example.test/cb?mid=x")
    );
}

#[tokio::test]
async fn a_messaging_service_sender_is_sent_as_such() {
    let sim = sim().await;
    let c = client(sim.base_url(), 2000);
    let mg = Sender::MessagingService(format!("MG{}", "c".repeat(32)));
    let m = send(&c, "key-secret", "+14155552671", &mg).await.unwrap();
    assert_eq!(m.status, "accepted");
    assert_eq!(
        sim.messages()[0].messaging_service_sid.as_deref(),
        Some(format!("MG{}", "c".repeat(32)).as_str())
    );
}

#[tokio::test]
async fn permanent_refusals_carry_twilio_codes() {
    let sim = sim().await;
    let c = client(sim.base_url(), 2000);
    let from = Sender::From("+15005550006".into());
    for (to, code) in [
        ("+15005550001", 21211),
        ("+15005550002", 21612),
        ("+15005550003", 21408),
        ("+15005550004", 21610),
        ("+15005550009", 21614),
    ] {
        let e = send(&c, "key-secret", to, &from).await.unwrap_err();
        assert_eq!(e.code(), Some(code), "{to}");
        assert_eq!(e.retry_class(), RetryClass::Never, "{to}");
        assert!(
            !e.to_string().contains(to),
            "errors must not quote the number"
        );
    }
    let e = send(
        &c,
        "key-secret",
        "+14155552671",
        &Sender::From("+15005550008".into()),
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Some(21611));
    assert_eq!(e.retry_class(), RetryClass::RetryLater);
}

#[tokio::test]
async fn bad_credentials_ask_for_a_refresh() {
    let sim = sim().await;
    let c = client(sim.base_url(), 2000);
    let e = send(
        &c,
        "wrong-secret",
        "+14155552671",
        &Sender::From("+15005550006".into()),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            e,
            TwilioError::Api {
                status: 401,
                code: Some(20003),
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(e.retry_class(), RetryClass::RefreshCredentials);
}

#[tokio::test]
async fn throttling_and_server_errors_are_transient_and_keep_retry_after() {
    let sim = sim().await;
    let c = client(sim.base_url(), 2000);
    let from = Sender::From("+15005550006".into());
    sim.set_faults(twilio_sim::Faults {
        rate_429: 1.0,
        retry_after_secs: 7,
        ..Default::default()
    });
    let e = send(&c, "key-secret", "+14155552671", &from)
        .await
        .unwrap_err();
    assert_eq!(e.retry_class(), RetryClass::Retry);
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    sim.set_faults(twilio_sim::Faults {
        rate_500: 1.0,
        ..Default::default()
    });
    let e = send(&c, "key-secret", "+14155552671", &from)
        .await
        .unwrap_err();
    assert!(matches!(e, TwilioError::Api { status: 500, .. }));
    assert_eq!(e.retry_class(), RetryClass::Retry);
    assert!(sim.messages().is_empty());
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_transient() {
    let sim = sim().await;
    sim.set_faults(twilio_sim::Faults {
        rate_timeout: 1.0,
        timeout_ms: 3_000,
        ..Default::default()
    });
    let c = client(sim.base_url(), 200);
    let e = send(
        &c,
        "key-secret",
        "+14155552671",
        &Sender::From("+15005550006".into()),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, TwilioError::Timeout), "{e:?}");
    assert_eq!(e.retry_class(), RetryClass::Retry);

    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = closed.local_addr().unwrap();
    drop(closed);
    let c = client(format!("http://{addr}"), 2000);
    let e = send(
        &c,
        "key-secret",
        "+14155552671",
        &Sender::From("+15005550006".into()),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, TwilioError::Connect(_)), "{e:?}");
    assert_eq!(e.retry_class(), RetryClass::Retry);
}

#[tokio::test]
async fn fetch_refuses_what_is_not_a_message_sid() {
    let sim = sim().await;
    let c = client(sim.base_url(), 2000);
    let e = c
        .fetch_message(&creds("key-secret"), "../../Keys")
        .await
        .unwrap_err();
    assert!(matches!(e, TwilioError::Decode(_)));
    assert!(sim.requests().is_empty());
}

#[tokio::test]
async fn listing_finds_queued_messages_by_to_and_from_within_its_bound() {
    let sim = sim().await;
    let c = client(sim.base_url(), 2000);
    let from = Sender::From("+15005550006".into());
    let other = Sender::From("+15005550010".into());
    let to = "+14155552671";
    let mut mine = Vec::new();
    for _ in 0..3 {
        mine.push(send(&c, "key-secret", to, &from).await.unwrap().sid);
    }
    send(&c, "key-secret", to, &other).await.unwrap();
    send(&c, "key-secret", "+14155552672", &from).await.unwrap();
    // Held callbacks: every message is still queued, with no date_sent, and is listed all the same.
    assert!(sim.messages().iter().all(|m| m.date_sent.is_none()));
    let creds = creds("key-secret");
    let listed = c
        .list_messages(&creds, to, Some("+15005550006"), herald::twilio::LIST_MAX)
        .await
        .unwrap();
    let mut sids: Vec<String> = listed.items.iter().map(|m| m.sid.clone()).collect();
    sids.sort();
    mine.sort();
    assert_eq!(sids, mine);
    assert!(!listed.truncated);
    assert!(listed.items.iter().all(|m| m.status == "queued"
        && m.from.as_deref() == Some("+15005550006")
        && m.to.as_deref() == Some(to)));
    // No DateSent filter, and pages as large as the bound (Twilio's most is 1000).
    let query = sim
        .requests()
        .iter()
        .rev()
        .find(|r| r.method == "GET")
        .and_then(|r| r.query.clone())
        .unwrap();
    assert!(!query.contains("DateSent"), "{query}");
    assert!(query.contains("PageSize=1000"), "{query}");
    // The bound: two of three, read in pages of two, and the cut is reported.
    let bounded = c
        .list_messages(&creds, to, Some("+15005550006"), 2)
        .await
        .unwrap();
    assert_eq!((bounded.items.len(), bounded.truncated), (2, true));
    // By recipient only (a Messaging Service picks its own From): all four to that number.
    let all = c.list_messages(&creds, to, None, 1000).await.unwrap();
    assert_eq!(all.items.len(), 4);
}
