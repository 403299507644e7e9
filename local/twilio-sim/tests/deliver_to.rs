//! `deliver_to` (`--deliver-to PREFIX=LOCAL`): webhooks for a public URL (an API Gateway
//! domain) reach a local server instead, with the public URL's Host header, and are signed over
//! the public https URL Twilio was given.

mod common;

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use common::*;
use twilio_sim::{CallOutcome, Outcome};

const PUBLIC: &str = "https://abc123.execute-api.us-east-1.amazonaws.com";
const HOST: &str = "abc123.execute-api.us-east-1.amazonaws.com";

#[derive(Debug, Clone)]
struct Got {
    method: String,
    host: Option<String>,
    path_and_query: String,
    signature: Option<String>,
    params: Vec<(String, String)>,
}

/// A local stand-in for the public endpoint: records every request (with its Host header),
/// answers TwiML on `/voice…` paths and 204 elsewhere.
async fn local_endpoint() -> (String, Arc<Mutex<Vec<Got>>>) {
    let got: Arc<Mutex<Vec<Got>>> = Arc::default();
    let store = Arc::clone(&got);
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
            let store = Arc::clone(&store);
            async move {
                let h = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                };
                let params = if method == Method::GET {
                    serde_urlencoded::from_str(uri.query().unwrap_or("")).expect("query")
                } else {
                    serde_urlencoded::from_bytes(&body).expect("form body")
                };
                store.lock().unwrap().push(Got {
                    method: method.to_string(),
                    host: h("host"),
                    path_and_query: uri.path_and_query().map(|p| p.to_string()).unwrap(),
                    signature: h("x-twilio-signature"),
                    params,
                });
                if uri.path().starts_with("/voice") {
                    let twiml = "<Response><Say>Hello</Say><Hangup/></Response>";
                    (StatusCode::OK, [("content-type", "text/xml")], twiml).into_response()
                } else {
                    StatusCode::NO_CONTENT.into_response()
                }
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, got)
}

fn check_signed_over_public_url(g: &Got) {
    assert_eq!(g.host.as_deref(), Some(HOST), "{g:?}");
    let public = format!("{PUBLIC}{}", g.path_and_query);
    let signed_params = if g.method == "GET" {
        Vec::new()
    } else {
        g.params.clone()
    };
    assert_eq!(
        g.signature.as_deref(),
        Some(expected_signature(TOKEN, &public, &signed_params).as_str()),
        "signed over {public}"
    );
}

#[tokio::test]
async fn callbacks_twiml_and_inbound_for_the_public_url_reach_the_local_one() {
    let (local, got) = local_endpoint().await;
    let other = Receiver::start().await;
    let mut c = config();
    c.deliver_to = vec![(PUBLIC.to_string(), local.clone())];
    let sim = start(c).await;

    // A message's status callbacks.
    sim.set_outcome("+15551230001", Outcome::Deliver);
    let cb = format!("{PUBLIC}/webhooks/twilio/status?mid=msg_1");
    let (status, _) = create(
        &sim,
        &[
            ("To", "+15551230001"),
            ("From", FROM),
            ("Body", "hi"),
            ("StatusCallback", &cb),
        ],
    )
    .await;
    assert_eq!(status, 201);
    sim.wait_idle().await;
    // A call's TwiML fetch and status callback.
    sim.set_call_outcome("+15551239001", CallOutcome::AnswerNoInput);
    let (status, _) = create_call(
        &sim,
        &[
            ("To", "+15551239001"),
            ("From", FROM),
            ("Url", &format!("{PUBLIC}/voice/twiml?cid=c1")),
            (
                "StatusCallback",
                &format!("{PUBLIC}/webhooks/twilio/call-status"),
            ),
        ],
    )
    .await;
    assert_eq!(status, 201, "call created");
    sim.wait_idle().await;
    // An inbound SMS.
    let inbound = sim
        .send_inbound_sms(
            "+15551230002",
            FROM,
            "STOP",
            &format!("{PUBLIC}/webhooks/twilio/inbound-sms"),
        )
        .await;
    assert_eq!(inbound.delivery.response_status, Some(204));
    // A URL under no prefix is requested as given.
    let (status, _) = create(
        &sim,
        &[
            ("To", "+15551230001"),
            ("From", FROM),
            ("Body", "hi"),
            ("StatusCallback", &other.url("/status?mid=msg_2")),
        ],
    )
    .await;
    assert_eq!(status, 201);
    sim.wait_idle().await;

    let got = got.lock().unwrap().clone();
    let paths: Vec<&str> = got.iter().map(|g| g.path_and_query.as_str()).collect();
    assert!(
        paths
            .iter()
            .filter(|p| **p == "/webhooks/twilio/status?mid=msg_1")
            .count()
            >= 2,
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.starts_with("/voice/twiml?cid=c1")),
        "{paths:?}"
    );
    assert!(paths.contains(&"/webhooks/twilio/call-status"), "{paths:?}");
    assert!(paths.contains(&"/webhooks/twilio/inbound-sms"), "{paths:?}");
    assert!(!paths.iter().any(|p| p.contains("msg_2")), "{paths:?}");
    for g in &got {
        check_signed_over_public_url(g);
    }
    // The simulator's records keep the URL it was given.
    assert!(
        sim.callbacks()
            .iter()
            .all(|r| r.delivery.url.starts_with(PUBLIC) || r.delivery.url.starts_with(&other.base))
    );
    let elsewhere = other.received();
    assert_eq!(elsewhere.len(), 2, "msg_2's callbacks reach their own URL");
    for r in &elsewhere {
        assert_signed(&other, r);
    }
    sim.shutdown().await;
}
