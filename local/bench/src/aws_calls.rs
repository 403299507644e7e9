//! `herald-bench aws-calls`: the AWS requests Herald actually issues per message, counted by the
//! moto server (`scripts/moto_server.py`, `GET /_herald/calls`) while the real handlers run over
//! the AWS adapters: `POST /v1/messages` through `send_sms::handle`, then Twilio's two signed
//! status callbacks (`sent`, `delivered`) through `webhook_receiver::handle`, for N messages.

use std::collections::BTreeMap;

use herald::test_env::{WEBHOOK_BASE, json_request, request};
use herald::twilio::signature;
use serde::{Deserialize, Serialize};

use crate::aws_env;

/// Calls per message, by IAM action, for each phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AwsCallsReport {
    /// Messages sent.
    pub messages: usize,
    /// Calls of the `POST /v1/messages` phase, all messages together.
    pub send: BTreeMap<String, u64>,
    /// Calls of the callbacks phase (two per message), all together.
    pub callbacks: BTreeMap<String, u64>,
}

impl AwsCallsReport {
    /// Calls per message, by action, both phases.
    pub fn per_message(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (k, v) in self.send.iter().chain(&self.callbacks) {
            *out.entry(k.clone()).or_insert(0.0) += *v as f64 / self.messages.max(1) as f64;
        }
        out
    }
}

async fn counts(
    http: &reqwest::Client,
    endpoint: &str,
    reset: bool,
) -> Result<BTreeMap<String, u64>, Box<dyn std::error::Error + Send + Sync>> {
    let url = format!("{endpoint}/_herald/calls");
    let req = if reset {
        http.delete(&url)
    } else {
        http.get(&url)
    };
    Ok(req.send().await?.error_for_status()?.json().await?)
}

/// Runs `aws-calls` for `messages` messages against the moto server at `endpoint`.
pub async fn run(
    endpoint: &str,
    messages: usize,
) -> Result<AwsCallsReport, Box<dyn std::error::Error + Send + Sync>> {
    let http = reqwest::Client::new();
    let sdk = aws_env::sdk_config(endpoint).await;
    let resources = aws_env::provision(&sdk, &aws_env::unique_prefix("calls")).await?;
    let sim = aws_env::start_simulator().await?;
    let mut env = aws_env::herald_env(&sim.base_url());
    env.extend(resources);
    let services = aws_env::services(&sdk, &env)?;

    counts(&http, endpoint, true).await?;
    for i in 0..messages {
        let resp = send_sms::handle(
            &services,
            json_request(
                "POST",
                "/v1/messages",
                &serde_json::json!({"to": format!("+1415555{:04}", i % 10_000), "body": "Disk almost full on db-1"}),
            ),
        )
        .await?;
        if resp.status().as_u16() != 201 {
            return Err(format!("POST /v1/messages answered {}", resp.status()).into());
        }
    }
    let send = counts(&http, endpoint, false).await?;
    counts(&http, endpoint, true).await?;

    let token = aws_env::credentials().auth_token.expose().clone();
    let sent = sim.messages();
    if sent.len() != messages {
        return Err(format!(
            "the simulator holds {} messages, not {messages}",
            sent.len()
        )
        .into());
    }
    for status in ["sent", "delivered"] {
        for m in &sent {
            let url = m.status_callback.clone().ok_or("no StatusCallback")?;
            let path_and_query = url
                .strip_prefix(WEBHOOK_BASE)
                .ok_or("StatusCallback is not under the webhook base URL")?;
            let params = [
                ("AccountSid", m.account_sid.as_str()),
                ("ApiVersion", "2010-04-01"),
                ("From", "+15005550006"),
                ("MessageSid", m.sid.as_str()),
                ("MessageStatus", status),
                ("SmsSid", m.sid.as_str()),
                ("SmsStatus", status),
                ("To", m.to.as_str()),
            ];
            let sig = signature::compute(&token, &url, params.iter().copied());
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(params)
                .finish();
            let resp = webhook_receiver::handle(
                &services,
                request(
                    "POST",
                    path_and_query,
                    &[
                        ("content-type", "application/x-www-form-urlencoded"),
                        ("X-Twilio-Signature", &sig),
                    ],
                    body.as_bytes(),
                ),
            )
            .await?;
            if resp.status().as_u16() != 200 {
                return Err(format!("status callback answered {}", resp.status()).into());
            }
        }
    }
    let callbacks = counts(&http, endpoint, false).await?;
    sim.shutdown().await;
    if send.values().sum::<u64>() == 0 || callbacks.values().sum::<u64>() == 0 {
        return Err("moto counted no AWS call: is it scripts/moto_server.py?".into());
    }
    Ok(AwsCallsReport {
        messages,
        send,
        callbacks,
    })
}
