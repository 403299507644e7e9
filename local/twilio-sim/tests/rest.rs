//! The Messages REST API: create, fetch, list, authentication, validation, magic numbers.

mod common;

use common::*;
use serde_json::Value;
use twilio_sim::CallbackMode;

fn manual() -> twilio_sim::SimConfig {
    let mut c = config();
    c.callback_mode = CallbackMode::Manual;
    c
}

#[tokio::test]
async fn create_returns_twilio_message_and_fetch_returns_it() {
    let sim = start(manual()).await;
    let (status, m) = create(
        &sim,
        &[
            ("To", "+15551230001"),
            ("From", FROM),
            ("Body", "Hello {world}"),
        ],
    )
    .await;
    assert_eq!(status, 201, "{m}");
    let sid = m["sid"].as_str().unwrap().to_string();
    assert_eq!(sid.len(), 34);
    assert!(sid.starts_with("SM"));
    assert!(
        sid[2..]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(m["account_sid"], ACCOUNT);
    assert_eq!(m["api_version"], "2010-04-01");
    assert_eq!(m["body"], "Hello {world}");
    assert_eq!(m["direction"], "outbound-api");
    assert_eq!(m["from"], FROM);
    assert_eq!(m["to"], "+15551230001");
    assert_eq!(m["status"], "queued");
    assert_eq!(m["num_media"], "0");
    assert_eq!(m["num_segments"], "1");
    assert_eq!(m["price"], Value::Null);
    assert_eq!(m["price_unit"], "USD");
    assert_eq!(m["error_code"], Value::Null);
    assert_eq!(m["error_message"], Value::Null);
    assert_eq!(m["messaging_service_sid"], Value::Null);
    assert_eq!(
        m["uri"],
        format!("/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}.json")
    );
    assert_eq!(
        m["subresource_uris"]["media"],
        format!("/2010-04-01/Accounts/{ACCOUNT}/Messages/{sid}/Media.json")
    );
    // Queued: not sent yet, so no date_sent (set when the message is sent).
    assert_eq!(m["date_sent"], Value::Null);
    for field in ["date_created", "date_updated"] {
        let d = m[field].as_str().unwrap();
        time::OffsetDateTime::parse(d, &time::format_description::well_known::Rfc2822)
            .unwrap_or_else(|e| panic!("{field} {d:?} is not RFC 2822: {e}"));
        assert!(d.ends_with(" +0000"), "{field} {d:?} is in GMT");
    }

    let (status, fetched) = get_json(&message_url(&sim, &sid)).await;
    assert_eq!(status, 200);
    assert_eq!(fetched, m);

    assert_eq!(sim.creates_for("+15551230001"), 1);
    assert_eq!(sim.creates_for("+15551230002"), 0);
    let stored = sim.messages();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].sid, sid);
    assert_eq!(stored[0].body, "Hello {world}");
    assert_eq!(stored[0].meta.principal, ACCOUNT);
    sim.shutdown().await;
}

#[tokio::test]
async fn fetch_unknown_message_is_20404() {
    let sim = start(manual()).await;
    let (status, body) = get_json(&message_url(&sim, "SM00000000000000000000000000000000")).await;
    assert_twilio_error(status, &body, 404, 20404);
    sim.shutdown().await;
}

#[tokio::test]
async fn num_segments_follow_gsm7_and_ucs2() {
    let sim = start(manual()).await;
    let cases = [
        ("a".repeat(160), "1"),
        ("a".repeat(161), "2"),
        ("[".repeat(80), "1"),
        ("[".repeat(81), "2"),
        ("ж".repeat(70), "1"),
        ("ж".repeat(71), "2"),
    ];
    for (body, segments) in cases {
        let (status, m) = create(
            &sim,
            &[("To", "+15551230001"), ("From", FROM), ("Body", &body)],
        )
        .await;
        assert_eq!(status, 201);
        assert_eq!(
            m["num_segments"],
            segments,
            "body of {} chars",
            body.chars().count()
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn media_url_without_body_is_accepted() {
    let sim = start(manual()).await;
    let (status, m) = create(
        &sim,
        &[
            ("To", "+15551230001"),
            ("From", FROM),
            ("MediaUrl", "https://example.com/a.png"),
        ],
    )
    .await;
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["num_media"], "1");
    sim.shutdown().await;
}

#[tokio::test]
async fn messaging_service_messages_start_accepted() {
    let sim = start(manual()).await;
    let mg = "MG0123456789abcdef0123456789abcdef";
    let (status, m) = create(
        &sim,
        &[
            ("To", "+15551230001"),
            ("MessagingServiceSid", mg),
            ("Body", "hi"),
        ],
    )
    .await;
    assert_eq!(status, 201, "{m}");
    assert_eq!(m["status"], "accepted");
    assert_eq!(m["messaging_service_sid"], mg);
    assert_eq!(m["from"], Value::Null);
    assert_eq!(m["num_segments"], "0");
    let (status, body) = create(
        &sim,
        &[
            ("To", "+15551230001"),
            ("MessagingServiceSid", "MGnothex"),
            ("Body", "hi"),
        ],
    )
    .await;
    assert_twilio_error(status, &body, 400, 21701);
    sim.shutdown().await;
}

#[tokio::test]
async fn authentication() {
    let sim = start(manual()).await;
    let params = [("To", "+15551230001"), ("From", FROM), ("Body", "hi")];
    let c = client();

    let r = c
        .post(messages_url(&sim))
        .form(&params)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert!(r.headers().contains_key("www-authenticate"));
    assert_twilio_error(status, &r.json().await.unwrap(), 401, 20003);

    for (user, pass) in [
        (ACCOUNT, "wrong-token"),
        (KEY_SID, "wrong-secret"),
        (KEY_SID, TOKEN),
        ("SK00000000000000000000000000000000", KEY_SECRET),
    ] {
        let r = c
            .post(messages_url(&sim))
            .basic_auth(user, Some(pass))
            .form(&params)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        assert_twilio_error(status, &r.json().await.unwrap(), 401, 20003);
    }
    assert_eq!(
        sim.messages().len(),
        0,
        "no message without valid credentials"
    );

    // An API key with its secret works; the account SID stays in the path.
    let r = c
        .post(messages_url(&sim))
        .basic_auth(KEY_SID, Some(KEY_SECRET))
        .form(&params)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    assert_eq!(sim.messages()[0].meta.principal, KEY_SID);

    // Another account in the path: not found, even with valid credentials.
    let other = format!(
        "{}/2010-04-01/Accounts/AC99999999999999999999999999999999/Messages.json",
        sim.base_url()
    );
    let r = c
        .post(other)
        .basic_auth(ACCOUNT, Some(TOKEN))
        .form(&params)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert_twilio_error(status, &r.json().await.unwrap(), 404, 20404);

    let principals: Vec<(Option<String>, u16)> = sim
        .requests()
        .into_iter()
        .map(|r| (r.principal, r.status))
        .collect();
    assert_eq!(
        principals,
        vec![
            (None, 401),
            (None, 401),
            (None, 401),
            (None, 401),
            (None, 401),
            (Some(KEY_SID.to_string()), 201),
            (Some(ACCOUNT.to_string()), 404),
        ]
    );
    assert_eq!(sim.messages().len(), 1);
    sim.shutdown().await;
}

type Params<'a> = Vec<(&'a str, &'a str)>;

#[tokio::test]
async fn required_parameters_and_limits() {
    let sim = start(manual()).await;
    let long = "a".repeat(1601);
    let max = "a".repeat(1600);
    let cases: Vec<(Params, u16, u64)> = vec![
        (vec![("From", FROM), ("Body", "hi")], 400, 21604),
        (vec![("To", ""), ("From", FROM), ("Body", "hi")], 400, 21604),
        (vec![("To", "+15551230001"), ("Body", "hi")], 400, 21603),
        (vec![("To", "+15551230001"), ("From", FROM)], 400, 21602),
        (
            vec![("To", "+15551230001"), ("From", FROM), ("Body", "")],
            400,
            21602,
        ),
        (
            vec![("To", "+15551230001"), ("From", FROM), ("Body", &long)],
            400,
            21617,
        ),
        (
            vec![("To", "15551230001"), ("From", FROM), ("Body", "hi")],
            400,
            21211,
        ),
        (
            vec![("To", "+1234567"), ("From", FROM), ("Body", "hi")],
            400,
            21211,
        ),
        (
            vec![("To", "+1234567890123456"), ("From", FROM), ("Body", "hi")],
            400,
            21211,
        ),
        (
            vec![("To", "+1555abc0001"), ("From", FROM), ("Body", "hi")],
            400,
            21211,
        ),
        (
            vec![
                ("To", "+15551230001"),
                ("From", FROM),
                ("Body", "hi"),
                ("StatusCallback", "not a url"),
            ],
            400,
            21609,
        ),
    ];
    for (params, status, code) in cases {
        let (got, body) = create(&sim, &params).await;
        assert_twilio_error(got, &body, status, code);
    }
    assert_eq!(sim.messages().len(), 0);
    let (status, _) = create(&sim, &[("To", "+12345678"), ("From", FROM), ("Body", &max)]).await;
    assert_eq!(
        status, 201,
        "1600 characters and an 8-digit number are fine"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn magic_numbers() {
    let sim = start(manual()).await;
    let to_cases = [
        ("+15005550001", 21211),
        ("+15005550002", 21612),
        ("+15005550003", 21408),
        ("+15005550004", 21610),
        ("+15005550009", 21614),
    ];
    for (to, code) in to_cases {
        let (status, body) = create(&sim, &[("To", to), ("From", FROM), ("Body", "hi")]).await;
        assert_twilio_error(status, &body, 400, code);
    }
    let from_cases = [
        ("+15005550001", 21212),
        ("+15005550007", 21606),
        ("+15005550008", 21611),
    ];
    for (from, code) in from_cases {
        let (status, body) = create(
            &sim,
            &[("To", "+15551230001"), ("From", from), ("Body", "hi")],
        )
        .await;
        assert_twilio_error(status, &body, 400, code);
    }
    assert_eq!(sim.messages().len(), 0);
    let (status, _) = create(
        &sim,
        &[("To", "+15551230001"), ("From", FROM), ("Body", "hi")],
    )
    .await;
    assert_eq!(status, 201, "From +15005550006 passes");
    let codes: Vec<Option<u32>> = sim.requests().iter().map(|r| r.error_code).collect();
    assert_eq!(
        codes,
        vec![
            Some(21211),
            Some(21612),
            Some(21408),
            Some(21610),
            Some(21614),
            Some(21212),
            Some(21606),
            Some(21611),
            None
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn list_filters_and_pages() {
    let sim = start(manual()).await;
    let mut sids = Vec::new();
    for i in 0..5 {
        let to = if i % 2 == 0 {
            "+15551230001"
        } else {
            "+15551230002"
        };
        let from = if i < 3 { FROM } else { "+15005550010" };
        let (status, m) = create(&sim, &[("To", to), ("From", from), ("Body", "hi")]).await;
        assert_eq!(status, 201);
        sids.push(m["sid"].as_str().unwrap().to_string());
    }
    let list = |query: String| {
        let url = format!("{}?{query}", messages_url(&sim));
        async move { get_json(&url).await }
    };
    let sids_of = |page: &Value| -> Vec<String> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["sid"].as_str().unwrap().to_string())
            .collect()
    };

    // Everything, newest first.
    let (status, page) = get_json(&messages_url(&sim)).await;
    assert_eq!(status, 200);
    let mut newest_first = sids.clone();
    newest_first.reverse();
    assert_eq!(sids_of(&page), newest_first);
    assert_eq!(page["page"], 0);
    assert_eq!(page["page_size"], 50);
    assert_eq!(page["start"], 0);
    assert_eq!(page["end"], 4);
    assert_eq!(page["next_page_uri"], Value::Null);
    assert_eq!(page["previous_page_uri"], Value::Null);
    assert_eq!(
        page["first_page_uri"],
        format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json?PageSize=50&Page=0")
    );

    let (_, page) = list("To=%2B15551230001".into()).await;
    assert_eq!(
        sids_of(&page),
        vec![sids[4].clone(), sids[2].clone(), sids[0].clone()]
    );
    let (_, page) = list("From=%2B15005550010".into()).await;
    assert_eq!(sids_of(&page), vec![sids[4].clone(), sids[3].clone()]);
    let (_, page) = list("To=%2B15551230001&From=%2B15005550006".into()).await;
    assert_eq!(sids_of(&page), vec![sids[2].clone(), sids[0].clone()]);

    // Send them all (date_sent is set when a message is sent), then filter on it.
    assert_eq!(sim.flush_callbacks().await, 5);
    let today = sim.messages()[0].date_sent.unwrap().date();
    let yesterday = today.previous_day().unwrap();
    let tomorrow = today.next_day().unwrap();
    let (_, page) = list(format!("DateSent={today}")).await;
    assert_eq!(sids_of(&page).len(), 5);
    let (_, page) = list(format!("DateSent={yesterday}")).await;
    assert_eq!(sids_of(&page).len(), 0);
    let (_, page) = list(format!("DateSent%3C={yesterday}")).await;
    assert_eq!(sids_of(&page).len(), 0);
    let (_, page) = list(format!("DateSent%3C={today}")).await;
    assert_eq!(sids_of(&page).len(), 5);
    let (_, page) = list(format!("DateSent%3E={tomorrow}")).await;
    assert_eq!(sids_of(&page).len(), 0);
    let (_, page) = list(format!("DateSent%3E={yesterday}")).await;
    assert_eq!(sids_of(&page).len(), 5);
    // The Python SDK sends dates as midnight timestamps; only the GMT day counts.
    let (_, page) = list(format!("DateSent={today}T00%3A00%3A00Z")).await;
    assert_eq!(sids_of(&page).len(), 5);
    let (_, page) = list(format!("DateSent%3C={yesterday}T23%3A59%3A59Z")).await;
    assert_eq!(sids_of(&page).len(), 0);
    let (status, body) = list("DateSent=yesterday".into()).await;
    assert_twilio_error(status, &body, 400, 20001);

    // Pages of two, following next_page_uri.
    let (_, mut page) = list("PageSize=2".into()).await;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        pages += 1;
        assert_eq!(page["page_size"], 2);
        assert_eq!(page["page"], pages - 1);
        seen.extend(sids_of(&page));
        let Some(next) = page["next_page_uri"].as_str() else {
            break;
        };
        assert!(next.starts_with(&format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json?")));
        page = get_json(&format!("{}{next}", sim.base_url())).await.1;
        assert!(page["previous_page_uri"].is_string());
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, newest_first);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_queued_message_has_no_date_sent_and_only_date_filters_skip_it() {
    let sim = start(manual()).await;
    let (status, m) = create(
        &sim,
        &[("To", "+15551230001"), ("From", FROM), ("Body", "held")],
    )
    .await;
    assert_eq!(status, 201, "{m}");
    let sid = m["sid"].as_str().unwrap().to_string();
    let list = |query: String| {
        let url = format!("{}?{query}", messages_url(&sim));
        async move { get_json(&url).await.1 }
    };
    let sids_of = |page: &Value| -> Vec<String> {
        page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["sid"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, fetched) = get_json(&message_url(&sim, &sid)).await;
    assert_eq!(
        (&fetched["status"], &fetched["date_sent"]),
        (&Value::from("queued"), &Value::Null)
    );
    let today = sim.messages()[0].meta.date_created.date();
    let yesterday = today.previous_day().unwrap();
    // To and From list it; no DateSent filter does, whatever its bound.
    let by_sender = format!("To=%2B15551230001&From={}", FROM.replace('+', "%2B"));
    assert_eq!(sids_of(&list(by_sender.clone()).await), [sid.as_str()]);
    for filter in [
        format!("DateSent={today}"),
        format!("DateSent%3E={yesterday}"),
        format!("DateSent%3C={today}"),
    ] {
        assert!(
            sids_of(&list(format!("{by_sender}&{filter}")).await).is_empty(),
            "{filter} lists a queued message"
        );
    }
    // Once sent it has a date_sent, and the filters list it.
    assert_eq!(sim.flush_callbacks().await, 1);
    let sent = sim.messages()[0].date_sent.expect("date_sent once sent");
    assert_eq!(sent.date(), today);
    let (_, fetched) = get_json(&message_url(&sim, &sid)).await;
    assert!(fetched["date_sent"].is_string());
    assert_eq!(
        sids_of(&list(format!("{by_sender}&DateSent={today}")).await),
        [sid]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn unsupported_method_is_an_error() {
    let sim = start(manual()).await;
    let r = client()
        .delete(message_url(&sim, "SM00000000000000000000000000000000"))
        .basic_auth(ACCOUNT, Some(TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
    sim.shutdown().await;
}

#[tokio::test]
async fn sids_come_from_the_seed() {
    let run = |seed: u64| async move {
        let mut c = manual();
        c.seed = seed;
        let sim = start(c).await;
        let mut sids = Vec::new();
        for _ in 0..3 {
            let (_, m) = create(
                &sim,
                &[("To", "+15551230001"), ("From", FROM), ("Body", "hi")],
            )
            .await;
            sids.push(m["sid"].as_str().unwrap().to_string());
        }
        sim.shutdown().await;
        sids
    };
    let a = run(7).await;
    assert_eq!(a, run(7).await);
    assert_ne!(a, run(8).await);
}
