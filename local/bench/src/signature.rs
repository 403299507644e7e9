//! `herald-bench signature-corpus` and `signature`: one JSON file of realistic Twilio message
//! status callbacks (URL, form parameters, `X-Twilio-Signature`), and the time Herald's
//! `herald::twilio::signature::validate_form` takes per request over it. The same file is
//! validated by `bench/node/signature.js` (`twilio` on npm) and `bench/python/signature.py`
//! (`twilio` on PyPI), so the three figures are over the very same requests.

use std::time::Instant;

use herald::twilio::signature;
use serde::{Deserialize, Serialize};

/// The request file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Corpus {
    /// The (fake) auth token every request is signed with.
    pub auth_token: String,
    /// The requests.
    pub requests: Vec<SignedRequest>,
}

/// One status callback as Twilio sends it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedRequest {
    /// The full URL Twilio called (query included).
    pub url: String,
    /// The form parameters, in the order sent (names are unique, as in Twilio's callbacks).
    pub params: Vec<(String, String)>,
    /// `X-Twilio-Signature`.
    pub signature: String,
}

/// What an implementation measured over the corpus (the node and Python benches write the same
/// shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignatureResult {
    /// Which implementation.
    pub implementation: String,
    /// Its version.
    pub version: String,
    /// Requests in the corpus.
    pub requests: usize,
    /// Validations timed.
    pub validations: u64,
    /// Nanoseconds per validation.
    pub ns_per_validation: f64,
    /// Whether every request validated.
    pub all_valid: bool,
}

/// A small deterministic generator (SplitMix64), so the corpus is the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b"0123456789abcdef"[(self.next() % 16) as usize]))
            .collect()
    }

    fn pick<'a>(&mut self, of: &[&'a str]) -> &'a str {
        of[(self.next() % of.len() as u64) as usize]
    }
}

/// `count` status callbacks for messages sent through Herald, signed with `auth_token`: the
/// parameters Twilio sends (some with an error code, some through a Messaging Service, some
/// with a delivery receipt's date), to the callback URL Herald gives (`?mid=…&a=…`).
pub fn corpus(count: usize, auth_token: &str) -> Corpus {
    let mut rng = Rng(0x4845_5241_4c44);
    let account = format!("AC{}", rng.hex(32));
    let requests = (0..count)
        .map(|i| {
            let mid = format!("msg_01j{}", rng.hex(23));
            let url = format!(
                "https://hooks.example.com/prod/webhooks/twilio/message-status?mid={mid}&a={}",
                1 + i % 3
            );
            let sid = format!("SM{}", rng.hex(32));
            let status = rng.pick(&["queued", "sent", "delivered", "undelivered", "failed"]);
            let mut params: Vec<(String, String)> = vec![
                ("AccountSid".into(), account.clone()),
                ("ApiVersion".into(), "2010-04-01".into()),
                ("From".into(), "+15005550006".into()),
                ("MessageSid".into(), sid.clone()),
                ("MessageStatus".into(), status.into()),
                ("SmsSid".into(), sid),
                ("SmsStatus".into(), status.into()),
                ("To".into(), format!("+1415555{:04}", rng.next() % 10_000)),
            ];
            if matches!(status, "undelivered" | "failed") {
                let code = rng.pick(&["30003", "30005", "30006", "30007", "21610"]);
                params.push(("ErrorCode".into(), code.into()));
            }
            if status == "delivered" {
                params.push(("RawDlrDoneDate".into(), "2611211200".into()));
            }
            if rng.next().is_multiple_of(4) {
                params.push(("MessagingServiceSid".into(), format!("MG{}", rng.hex(32))));
            }
            let signature = signature::compute(
                auth_token,
                &url,
                params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            );
            SignedRequest {
                url,
                params,
                signature,
            }
        })
        .collect();
    Corpus {
        auth_token: auth_token.to_owned(),
        requests,
    }
}

/// Validates every request of `corpus` `rounds` times with Herald's validator; the time per
/// validation, and whether all passed.
pub fn bench(corpus: &Corpus, rounds: u64) -> SignatureResult {
    let validate = |r: &SignedRequest| {
        signature::validate_form(&corpus.auth_token, &r.url, &r.params, &r.signature).is_ok()
    };
    let all_valid = corpus.requests.iter().all(validate);
    // Warm up, then time.
    let mut ok = 0_u64;
    for r in &corpus.requests {
        ok += u64::from(validate(r));
    }
    let t = Instant::now();
    for _ in 0..rounds {
        for r in &corpus.requests {
            ok += u64::from(validate(std::hint::black_box(r)));
        }
    }
    let elapsed = t.elapsed();
    let validations = rounds * corpus.requests.len() as u64;
    std::hint::black_box(ok);
    SignatureResult {
        implementation: "herald (Rust)".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        requests: corpus.requests.len(),
        validations,
        ns_per_validation: elapsed.as_nanos() as f64 / validations.max(1) as f64,
        all_valid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corpus_is_deterministic_valid_and_tamper_evident() {
        let a = corpus(30, "token");
        let b = corpus(30, "token");
        assert_eq!(
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&b).unwrap()
        );
        let r = bench(&a, 2);
        assert!(r.all_valid);
        assert_eq!((r.requests, r.validations), (30, 60));
        assert!(r.ns_per_validation > 0.0);
        let mut forged = a.clone();
        forged.requests[3].params[4].1 = "delivered-ish".into();
        assert!(!bench(&forged, 1).all_valid);
        assert!(a.requests.iter().any(|r| r.params.len() > 8));
    }
}
