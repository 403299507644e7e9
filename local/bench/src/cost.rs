//! The AWS cost of one million SMS, each with Twilio's two status callbacks (`sent`,
//! `delivered`), from measured figures: the AWS calls counted per message, the measured compute
//! time per invocation and the memory configured, at public us-east-1 prices.

use std::collections::BTreeMap;

use serde::Serialize;

/// Public us-east-1 on-demand prices, in USD.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Prices {
    /// When these prices were read.
    pub as_of: &'static str,
    /// API Gateway HTTP API, per request (first 300 M a month).
    pub http_api_request: f64,
    /// Lambda, per request.
    pub lambda_request: f64,
    /// Lambda on arm64, per GB-second (first tier).
    pub lambda_arm64_gb_s: f64,
    /// SQS standard queue, per request.
    pub sqs_request: f64,
    /// DynamoDB on-demand, per write request unit.
    pub dynamodb_wru: f64,
    /// DynamoDB on-demand, per read request unit.
    pub dynamodb_rru: f64,
    /// KMS, per request.
    pub kms_request: f64,
    /// Secrets Manager, per API call.
    pub secrets_manager_call: f64,
}

/// The prices used in BENCHMARKS.md.
pub const US_EAST_1: Prices = Prices {
    as_of: "2025-11 (DynamoDB on-demand after the November 2024 price cut)",
    http_api_request: 1.00 / 1e6,
    lambda_request: 0.20 / 1e6,
    lambda_arm64_gb_s: 0.000_013_333_4,
    sqs_request: 0.40 / 1e6,
    dynamodb_wru: 0.625 / 1e6,
    dynamodb_rru: 0.125 / 1e6,
    kms_request: 0.03 / 1e4,
    secrets_manager_call: 0.05 / 1e4,
};

/// Time an AWS or Twilio request keeps a Lambda waiting (billed, the same for any language):
/// an assumption, stated in BENCHMARKS.md.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Waits {
    /// One DynamoDB request, ms.
    pub dynamodb_ms: f64,
    /// One SQS request, ms.
    pub sqs_ms: f64,
    /// One KMS request, ms.
    pub kms_ms: f64,
    /// One Secrets Manager request, ms.
    pub secrets_manager_ms: f64,
    /// Twilio's `Messages.json` create, ms.
    pub twilio_create_ms: f64,
}

/// The waits used in BENCHMARKS.md: same-region AWS round trips, and Twilio's API from
/// us-east-1.
pub const WAITS: Waits = Waits {
    dynamodb_ms: 5.0,
    sqs_ms: 10.0,
    kms_ms: 10.0,
    secrets_manager_ms: 15.0,
    twilio_create_ms: 150.0,
};

/// One kind of Lambda invocation in the flow of a message.
#[derive(Debug, Clone, Serialize)]
pub struct Invocation {
    /// What it is (`POST /v1/messages`, `status callback`).
    pub name: String,
    /// How many per message.
    pub per_message: f64,
    /// Compute measured per invocation (no waiting on the network), ms.
    pub compute_ms: f64,
    /// AWS calls it makes, by IAM action, per invocation.
    pub aws_calls: BTreeMap<String, f64>,
    /// Whether it calls Twilio's API.
    pub calls_twilio: bool,
}

/// Everything the model needs for one implementation.
#[derive(Debug, Clone, Serialize)]
pub struct Inputs {
    /// The invocations of one message.
    pub invocations: Vec<Invocation>,
    /// Memory configured, MB (what Lambda bills, whatever is used).
    pub memory_mb: f64,
    /// Share of invocations that are cold starts.
    pub cold_start_share: f64,
    /// Billed init time of a cold start, ms.
    pub init_ms: f64,
}

/// One line of the bill, per million messages.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// What.
    pub item: String,
    /// Units per message.
    pub units_per_message: f64,
    /// USD per million messages.
    pub usd_per_million: f64,
}

/// The bill per million messages.
#[derive(Debug, Clone, Serialize)]
pub struct Bill {
    /// Each line.
    pub lines: Vec<Line>,
    /// The total.
    pub total: f64,
    /// Billed duration of each invocation kind, ms.
    pub billed_ms: Vec<(String, f64)>,
}

/// Not a request: the write units a table's global secondary indexes take for the writes to it
/// (counted with the writes, billed as writes, no wait of their own).
pub const GSI_WRITE: &str = "dynamodb:(index writes)";

/// Whether an IAM action is a DynamoDB write (1 WRU per item of up to 1 KB).
pub fn is_dynamodb_write(action: &str) -> bool {
    matches!(
        action,
        "dynamodb:PutItem"
            | "dynamodb:UpdateItem"
            | "dynamodb:DeleteItem"
            | "dynamodb:BatchWriteItem"
            | "dynamodb:TransactWriteItems"
    )
}

/// Whether an IAM action is a DynamoDB read (1 RRU: strongly consistent, up to 4 KB).
pub fn is_dynamodb_read(action: &str) -> bool {
    matches!(
        action,
        "dynamodb:GetItem"
            | "dynamodb:Query"
            | "dynamodb:Scan"
            | "dynamodb:BatchGetItem"
            | "dynamodb:TransactGetItems"
    )
}

fn service(action: &str) -> &str {
    action.split(':').next().unwrap_or("")
}

/// The billed duration of one invocation: compute plus the waits for its calls, rounded up to
/// the millisecond as Lambda bills.
pub fn billed_ms(inv: &Invocation, waits: &Waits) -> f64 {
    let wait: f64 = inv
        .aws_calls
        .iter()
        .filter(|(a, _)| a.as_str() != GSI_WRITE)
        .map(|(a, n)| {
            n * match service(a) {
                "dynamodb" => waits.dynamodb_ms,
                "sqs" => waits.sqs_ms,
                "kms" => waits.kms_ms,
                "secretsmanager" => waits.secrets_manager_ms,
                _ => 0.0,
            }
        })
        .sum();
    let twilio = if inv.calls_twilio {
        waits.twilio_create_ms
    } else {
        0.0
    };
    (inv.compute_ms + wait + twilio).ceil().max(1.0)
}

/// The bill per million messages.
pub fn bill(inputs: &Inputs, prices: &Prices, waits: &Waits) -> Bill {
    let m = 1e6;
    let requests: f64 = inputs.invocations.iter().map(|i| i.per_message).sum();
    let gb = inputs.memory_mb / 1024.0;
    let billed: Vec<(String, f64)> = inputs
        .invocations
        .iter()
        .map(|i| (i.name.clone(), billed_ms(i, waits)))
        .collect();
    let gb_s: f64 = inputs
        .invocations
        .iter()
        .zip(&billed)
        .map(|(i, (_, ms))| {
            i.per_message * (ms + inputs.cold_start_share * inputs.init_ms) / 1000.0 * gb
        })
        .sum();
    let mut per_service: BTreeMap<&str, f64> = BTreeMap::new();
    for inv in &inputs.invocations {
        for (action, n) in &inv.aws_calls {
            let key = if action == GSI_WRITE {
                "dynamodb-gsi-write"
            } else if is_dynamodb_write(action) {
                "dynamodb-write"
            } else if is_dynamodb_read(action) {
                "dynamodb-read"
            } else {
                service(action)
            };
            *per_service.entry(key).or_insert(0.0) += n * inv.per_message;
        }
    }
    let units = |k: &str| per_service.get(k).copied().unwrap_or(0.0);
    let line = |item: &str, units: f64, price: f64| Line {
        item: item.to_owned(),
        units_per_message: units,
        usd_per_million: units * price * m,
    };
    let lines = vec![
        line(
            "API Gateway HTTP API requests",
            requests,
            prices.http_api_request,
        ),
        line("Lambda requests", requests, prices.lambda_request),
        line("Lambda GB-seconds (arm64)", gb_s, prices.lambda_arm64_gb_s),
        line("SQS requests", units("sqs"), prices.sqs_request),
        line(
            "DynamoDB write request units",
            units("dynamodb-write"),
            prices.dynamodb_wru,
        ),
        line(
            "DynamoDB read request units",
            units("dynamodb-read"),
            prices.dynamodb_rru,
        ),
        line("KMS requests", units("kms"), prices.kms_request),
        line(
            "Secrets Manager API calls",
            units("secretsmanager"),
            prices.secrets_manager_call,
        ),
        line(
            "DynamoDB write request units of the indexes (GSI)",
            units("dynamodb-gsi-write"),
            prices.dynamodb_wru,
        ),
    ];
    let total = lines.iter().map(|l| l.usd_per_million).sum();
    Bill {
        lines,
        total,
        billed_ms: billed,
    }
}

/// The floor: what the requests that cannot be avoided cost (one API call and two callbacks,
/// each through API Gateway and Lambda), per million messages.
pub fn floor(prices: &Prices) -> f64 {
    3.0 * (prices.http_api_request + prices.lambda_request) * 1e6
}

/// The memory a function would be configured with: at least Lambda's 128 MB, and half again
/// its measured peak RSS (headroom a team would leave).
pub fn configured_memory_mb(peak_rss_mb: f64) -> f64 {
    (peak_rss_mb * 1.5).ceil().max(128.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn calls(pairs: &[(&str, f64)]) -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    #[test]
    fn floor_is_three_requests_through_api_gateway_and_lambda() {
        assert!((floor(&US_EAST_1) - 3.60).abs() < 1e-9);
    }

    #[test]
    fn billed_duration_adds_waits_and_rounds_up() {
        let inv = Invocation {
            name: "x".into(),
            per_message: 1.0,
            compute_ms: 0.3,
            aws_calls: calls(&[("dynamodb:PutItem", 2.0), ("kms:Decrypt", 0.5)]),
            calls_twilio: true,
        };
        // 0.3 + 2 × 5 + 0.5 × 10 + 150 = 165.3 → 166.
        assert_eq!(billed_ms(&inv, &WAITS), 166.0);
        let mut with_index = inv.clone();
        with_index.aws_calls.insert(GSI_WRITE.to_owned(), 4.0);
        assert_eq!(
            billed_ms(&with_index, &WAITS),
            166.0,
            "index writes add no wait"
        );
        let idle = Invocation {
            aws_calls: BTreeMap::new(),
            calls_twilio: false,
            compute_ms: 0.01,
            ..inv
        };
        assert_eq!(billed_ms(&idle, &WAITS), 1.0, "at least 1 ms is billed");
    }

    #[test]
    fn bill_adds_up_each_service_at_its_price() {
        let inputs = Inputs {
            invocations: vec![
                Invocation {
                    name: "send".into(),
                    per_message: 1.0,
                    compute_ms: 1.0,
                    aws_calls: calls(&[
                        ("dynamodb:PutItem", 2.0),
                        ("dynamodb:GetItem", 1.0),
                        ("kms:GenerateDataKey", 0.001),
                        ("secretsmanager:GetSecretValue", 0.001),
                    ]),
                    calls_twilio: true,
                },
                Invocation {
                    name: "callback".into(),
                    per_message: 2.0,
                    compute_ms: 1.0,
                    aws_calls: calls(&[("dynamodb:UpdateItem", 1.0), ("sqs:SendMessage", 0.0)]),
                    calls_twilio: false,
                },
            ],
            memory_mb: 128.0,
            cold_start_share: 0.0,
            init_ms: 0.0,
        };
        let b = bill(&inputs, &US_EAST_1, &WAITS);
        let get = |item: &str| {
            b.lines
                .iter()
                .find(|l| l.item.starts_with(item))
                .unwrap()
                .clone()
        };
        assert!((get("API Gateway").usd_per_million - 3.0).abs() < 1e-9);
        assert!((get("Lambda requests").usd_per_million - 0.6).abs() < 1e-9);
        // Writes: 2 + 2 × 1 = 4 WRU per message at $0.625/M.
        assert_eq!(get("DynamoDB write").units_per_message, 4.0);
        assert!((get("DynamoDB write").usd_per_million - 2.5).abs() < 1e-9);
        assert!((get("DynamoDB read").usd_per_million - 0.125).abs() < 1e-9);
        assert!((get("KMS").usd_per_million - 0.003).abs() < 1e-9);
        assert!((get("Secrets Manager").usd_per_million - 0.005).abs() < 1e-9);
        assert_eq!(
            get("DynamoDB write request units of the indexes").units_per_message,
            0.0
        );
        // send: 1 + 10 + 5 + tiny + 150 → 167 ms; callback: 1 + 5 = 6 ms, twice.
        assert_eq!(
            b.billed_ms,
            vec![("send".into(), 167.0), ("callback".into(), 6.0)]
        );
        let gb_s = (0.167 + 2.0 * 0.006) * 0.125;
        assert!((get("Lambda GB").units_per_message - gb_s).abs() < 1e-12);
        let sum: f64 = b.lines.iter().map(|l| l.usd_per_million).sum();
        assert!((b.total - sum).abs() < 1e-12);
    }

    #[test]
    fn cold_starts_bill_their_init_time() {
        let inv = Invocation {
            name: "x".into(),
            per_message: 1.0,
            compute_ms: 0.5,
            aws_calls: BTreeMap::new(),
            calls_twilio: false,
        };
        let warm = Inputs {
            invocations: vec![inv],
            memory_mb: 1024.0,
            cold_start_share: 0.0,
            init_ms: 300.0,
        };
        let cold = Inputs {
            cold_start_share: 0.01,
            ..warm.clone()
        };
        let gb_s = |i: &Inputs| bill(i, &US_EAST_1, &WAITS).lines[2].units_per_message;
        // 1 ms billed; 1% of 300 ms more with cold starts; at 1 GB.
        assert!((gb_s(&warm) - 0.001).abs() < 1e-12);
        assert!((gb_s(&cold) - 0.004).abs() < 1e-12);
    }

    #[test]
    fn configured_memory_has_headroom_and_a_floor() {
        assert_eq!(configured_memory_mb(20.0), 128.0);
        assert_eq!(configured_memory_mb(100.0), 150.0);
    }
}
