//! `herald-bench aws-calls`: the AWS requests Herald actually issues per message, counted by the
//! moto server (`scripts/moto_server.py`, `GET /_herald/calls`) while the real handlers run over
//! the AWS adapters: `POST /v1/messages` through `send_sms::handle`, then Twilio's two signed
//! status callbacks (`sent`, `delivered`) through `webhook_receiver::handle`, for N messages.

use std::collections::BTreeMap;

use herald::test_env::{WEBHOOK_BASE, json_request};
use serde::{Deserialize, Serialize};

use crate::{aws_env, inprocess};

/// Calls per message, by IAM action, for each phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AwsCallsReport {
    /// Messages sent.
    pub messages: usize,
    /// Calls of the `POST /v1/messages` phase, all messages together.
    pub send: BTreeMap<String, u64>,
    /// Calls of the callbacks phase (two per message), all together.
    pub callbacks: BTreeMap<String, u64>,
    /// DynamoDB writes of the `POST /v1/messages` phase by table (`messages`, `events`,
    /// `state`), as the SDK sent them.
    pub send_writes_by_table: BTreeMap<String, u64>,
    /// The same for the callbacks phase.
    pub callback_writes_by_table: BTreeMap<String, u64>,
    /// Global secondary indexes of each table (every one projects all attributes, so every
    /// write to an item also writes each index).
    pub gsis: BTreeMap<String, u64>,
}

impl AwsCallsReport {
    /// Index write units per message: each write to a table also writes each of its indexes
    /// (1 WRU each; a write that moves an item's index key costs one more there, not counted).
    pub fn gsi_writes(&self, by_table: &BTreeMap<String, u64>) -> u64 {
        by_table
            .iter()
            .map(|(t, n)| n * self.gsis.get(t).copied().unwrap_or(0))
            .sum()
    }
}

/// Counts DynamoDB writes by table, from the requests the SDK sends.
#[derive(Debug, Clone, Default)]
struct WritesByTable {
    tables: BTreeMap<String, String>,
    counts: std::sync::Arc<std::sync::Mutex<BTreeMap<String, u64>>>,
}

impl WritesByTable {
    fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.counts.lock().expect("lock"))
    }
}

impl aws_sdk_dynamodb::config::Intercept for WritesByTable {
    fn name(&self) -> &'static str {
        "herald-bench writes by table"
    }

    fn read_before_transmit(
        &self,
        ctx: &aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
        _: &aws_sdk_dynamodb::config::RuntimeComponents,
        _: &mut aws_sdk_dynamodb::config::ConfigBag,
    ) -> Result<(), aws_sdk_dynamodb::error::BoxError> {
        let req = ctx.request();
        let op = req
            .headers()
            .get("x-amz-target")
            .and_then(|t| t.split('.').nth(1))
            .unwrap_or("");
        if crate::cost::is_dynamodb_write(&format!("dynamodb:{op}")) {
            let table = req
                .body()
                .bytes()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(b).ok())
                .and_then(|v| v["TableName"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let role = self.tables.get(&table).cloned().unwrap_or(table);
            *self.counts.lock().expect("lock").entry(role).or_insert(0) += 1;
        }
        Ok(())
    }
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
    let writes = WritesByTable {
        tables: [
            ("MESSAGES_TABLE", "messages"),
            ("EVENTS_TABLE", "events"),
            ("STATE_TABLE", "state"),
        ]
        .iter()
        .map(|(var, role)| (env[*var].clone(), (*role).to_owned()))
        .collect(),
        ..Default::default()
    };
    let plain = aws_sdk_dynamodb::Client::new(&sdk);
    let mut gsis = BTreeMap::new();
    for (name, role) in &writes.tables {
        let table = plain.describe_table().table_name(name).send().await?.table;
        let n = table.map_or(0, |t| t.global_secondary_indexes().len());
        gsis.insert(role.clone(), n as u64);
    }
    let dynamodb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&sdk)
            .interceptor(writes.clone())
            .build(),
    );
    let services = aws_env::services(&sdk, &env, dynamodb)?;

    counts(&http, endpoint, true).await?;
    writes.take();
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
    let send_writes_by_table = writes.take();
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
            let resp = webhook_receiver::handle(
                &services,
                inprocess::signed_status_callback(&token, m, &url, path_and_query, status),
            )
            .await?;
            if resp.status().as_u16() != 200 {
                return Err(format!("status callback answered {}", resp.status()).into());
            }
        }
    }
    let callbacks = counts(&http, endpoint, false).await?;
    let callback_writes_by_table = writes.take();
    sim.shutdown().await;
    if send.values().sum::<u64>() == 0 || callbacks.values().sum::<u64>() == 0 {
        return Err("moto counted no AWS call: is it scripts/moto_server.py?".into());
    }
    Ok(AwsCallsReport {
        messages,
        send,
        callbacks,
        send_writes_by_table,
        callback_writes_by_table,
        gsis,
    })
}
