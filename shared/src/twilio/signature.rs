//! `X-Twilio-Signature`: computing and validating it exactly as Twilio and its official SDKs do.
//!
//! Form requests: the full URL, then every POST parameter as name followed by value, names
//! sorted, a name's values sorted with duplicates dropped; HMAC-SHA1 with the auth token; base64.
//! JSON requests: the URL alone (it carries `bodySHA256`, the hex SHA-256 of the raw body).
//! The URL is tried as given, without its port and with the default port added (the official
//! SDKs' rule), and its `#fragment` is never part of what is signed. Comparison is in constant
//! time. [`explain`] shows, for an operator, every variant tried and the string signed.
//!
//! Agreement with the official Python SDK (`twilio.request_validator.RequestValidator`) is
//! checked on a generated corpus by `shared/tests/sdk_agreement.rs`.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Which form of the URL a signature matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlVariant {
    /// The URL exactly as given (fragment removed).
    AsGiven,
    /// The URL with its port removed (as the SDKs do, whatever the port).
    WithoutPort,
    /// The URL with its default port added.
    WithPort,
}

impl UrlVariant {
    /// A short human name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AsGiven => "as given",
            Self::WithoutPort => "port removed",
            Self::WithPort => "default port added",
        }
    }
}

/// Why a request's signature is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-Twilio-Signature` header.
    #[error("missing X-Twilio-Signature")]
    Missing,
    /// The signature matches no variant of the URL.
    #[error("signature does not match")]
    Mismatch,
    /// A JSON request whose URL has no `bodySHA256`, or whose body does not hash to it.
    #[error("bodySHA256 is missing or does not match the body")]
    BodyHash,
}

/// The string Twilio signs for a form request: URL, then sorted names with their sorted,
/// de-duplicated values.
pub fn string_to_sign<'a, I>(url: &str, params: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    string_to_show(url, params, |s, _, v| s.push_str(v))
}

/// [`string_to_sign`] with each value written by `show(out, name, value)` instead of as it is:
/// the same names in the same order (values sorted and de-duplicated as they are, not as shown),
/// for displaying a signed string with personal data masked.
pub fn string_to_show<'a, I, F>(url: &str, params: I, mut show: F) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
    F: FnMut(&mut String, &str, &str),
{
    let mut by_name: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in params {
        by_name.entry(k).or_default().push(v);
    }
    let mut s = String::from(strip_fragment(url));
    for (k, mut vs) in by_name {
        vs.sort_unstable();
        vs.dedup();
        for v in vs {
            s.push_str(k);
            show(&mut s, k, v);
        }
    }
    s
}

/// The base64 HMAC-SHA1 of `data` under `auth_token`.
pub fn sign(auth_token: &str, data: &str) -> String {
    let mut mac =
        <Hmac<Sha1> as Mac>::new_from_slice(auth_token.as_bytes()).expect("any key length");
    mac.update(data.as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The signature Twilio sends for a form-encoded request to `url` with `params`.
pub fn compute<'a, I>(auth_token: &str, url: &str, params: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    sign(auth_token, &string_to_sign(url, params))
}

fn strip_fragment(url: &str) -> &str {
    url.split_once('#').map_or(url, |(u, _)| u)
}

/// The URL variants Twilio may have signed: as given, without its port, or with the scheme's
/// default port added. This is the rule of the official SDKs (Python `remove_port`/`add_port`,
/// Node `removePort`/`addPort`): any explicit port may be removed, and a URL without one may
/// have `:443` (https) or `:80` (http) added. A port that is not a number in 0..=65535 makes no
/// variant (the SDKs fail on it); port 0 counts as no port (Python's `if not uri.port`).
/// Duplicates are dropped. Only `http` and `https` URLs get variants.
pub fn url_variants(url: &str) -> Vec<(UrlVariant, String)> {
    let url = strip_fragment(url);
    let mut out = vec![(UrlVariant::AsGiven, url.to_owned())];
    let Some((scheme, rest)) = url.split_once("://") else {
        return out;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return out,
    };
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => authority.split_at(i + 1),
        None => ("", authority),
    };
    // A port follows the last ':' unless that ':' is inside an IPv6 literal.
    let (host, port) = match hostport.rfind(':') {
        Some(i) if !hostport[i..].contains(']') => (&hostport[..i], Some(&hostport[i + 1..])),
        _ => (hostport, None),
    };
    let number = port.map(|p| {
        if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
            p.parse::<u16>().ok()
        } else {
            None
        }
    });
    match number {
        // Not a port the SDKs can read: they raise, and nothing but the URL as given is tried.
        Some(None) => {}
        Some(Some(p)) if p != 0 => out.push((
            UrlVariant::WithoutPort,
            format!("{scheme}://{userinfo}{host}{tail}"),
        )),
        // No port, or port 0 (which Python treats as none): the default port is added.
        _ => out.push((
            UrlVariant::WithPort,
            format!("{scheme}://{authority}:{default_port}{tail}"),
        )),
    }
    out
}

fn equal(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Validates a form-encoded request's signature; returns the URL variant that matched.
///
/// The parameters are sorted once for every URL variant, the HMAC is keyed once, and the MACs
/// are compared as bytes in constant time (`Mac::verify_slice`) with the signature decoded once:
/// the base64 decoder accepts only canonical encodings, so comparing bytes decides exactly as
/// comparing the SDKs' base64 strings does.
pub fn validate_form(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    signature: &str,
) -> Result<UrlVariant, SignatureError> {
    if signature.is_empty() {
        return Err(SignatureError::Missing);
    }
    let mut claimed = [0u8; 32];
    let claimed = match STANDARD.decode_slice(signature, &mut claimed) {
        Ok(20) => &claimed[..20],
        _ => return Err(SignatureError::Mismatch),
    };
    let signed_params = string_to_sign("", params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let keyed = <Hmac<Sha1> as Mac>::new_from_slice(auth_token.as_bytes()).expect("any key length");
    let mut matched = None;
    // Every variant is computed, so the time taken does not depend on which one matches.
    for (variant, u) in url_variants(url) {
        let mut mac = keyed.clone();
        mac.update(u.as_bytes());
        mac.update(signed_params.as_bytes());
        if mac.verify_slice(claimed).is_ok() && matched.is_none() {
            matched = Some(variant);
        }
    }
    matched.ok_or(SignatureError::Mismatch)
}

/// The hex SHA-256 of a raw body, as Twilio puts in `bodySHA256`.
pub fn body_sha256(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// Validates a JSON request: the signature over the URL alone, and `bodySHA256` in the URL's
/// query string against the raw body bytes.
pub fn validate_json(
    auth_token: &str,
    url: &str,
    body: &[u8],
    signature: &str,
) -> Result<UrlVariant, SignatureError> {
    if signature.is_empty() {
        return Err(SignatureError::Missing);
    }
    let query = strip_fragment(url).split_once('?').map_or("", |(_, q)| q);
    let claimed = url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "bodySHA256")
        .map(|(_, v)| v.into_owned())
        .ok_or(SignatureError::BodyHash)?;
    let variant = validate_form(auth_token, url, &[], signature)?;
    // Exact, as the SDKs compare: Twilio sends lowercase hex.
    if equal(&claimed, &body_sha256(body)) {
        Ok(variant)
    } else {
        Err(SignatureError::BodyHash)
    }
}

/// What a request carries for its signature: form parameters (as decoded), or the raw bytes of
/// a JSON body (whose hash rides in the URL as `bodySHA256`).
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    /// `application/x-www-form-urlencoded` parameters, in any order, repeats included.
    Form(&'a [(String, String)]),
    /// The raw body of an `application/json` request.
    Json(&'a [u8]),
}

/// Validates a request of either kind; returns the URL variant that matched.
pub fn validate(
    auth_token: &str,
    url: &str,
    payload: Payload<'_>,
    signature: &str,
) -> Result<UrlVariant, SignatureError> {
    match payload {
        Payload::Form(params) => validate_form(auth_token, url, params, signature),
        Payload::Json(body) => validate_json(auth_token, url, body, signature),
    }
}

/// Whether a `Content-Type` value is JSON (`application/json`, any case, parameters allowed).
pub fn is_json_content_type(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// One URL variant tried by [`explain`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// Which variant.
    pub variant: UrlVariant,
    /// The URL of that variant (without a `#fragment`).
    pub url: String,
    /// The string that was signed (URL variant, then the parameters for a form request). It
    /// holds the request's parameters but never the auth token.
    pub signed: String,
    /// The signature of that string.
    pub signature: String,
    /// Whether it equals the signature given.
    pub matches: bool,
}

/// Everything [`explain`] found out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// Every URL variant, with its signed string and signature.
    pub attempts: Vec<Attempt>,
    /// For a JSON request: the `bodySHA256` in the URL (if any) and the hash of the body.
    pub body_hash: Option<(Option<String>, String)>,
    /// The verdict, as [`validate`] gives it (`Missing` when no signature was given).
    pub verdict: Result<UrlVariant, SignatureError>,
}

/// Shows how a request's signature is checked: each URL variant, the string signed for it and
/// its signature, whether the body hash matches, and the verdict. For operators
/// (`herald webhook verify`) and tests; [`validate`] is the constant-time check to use on
/// requests.
pub fn explain(
    auth_token: &str,
    url: &str,
    payload: Payload<'_>,
    signature: Option<&str>,
) -> Explanation {
    let given = signature.unwrap_or("");
    let attempts = url_variants(url)
        .into_iter()
        .map(|(variant, u)| {
            let signed = match payload {
                Payload::Form(params) => {
                    string_to_sign(&u, params.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                }
                Payload::Json(_) => u.clone(),
            };
            let sig = sign(auth_token, &signed);
            Attempt {
                variant,
                url: u,
                matches: !given.is_empty() && equal(&sig, given),
                signed,
                signature: sig,
            }
        })
        .collect();
    let body_hash = match payload {
        Payload::Json(body) => {
            let query = strip_fragment(url).split_once('?').map_or("", |(_, q)| q);
            let claimed = url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == "bodySHA256")
                .map(|(_, v)| v.into_owned());
            Some((claimed, body_sha256(body)))
        }
        Payload::Form(_) => None,
    };
    Explanation {
        attempts,
        body_hash,
        verdict: validate(auth_token, url, payload, given),
    }
}

/// Form-urlencodes `pairs` exactly as Python's `urllib.parse.urlencode` (`quote_plus`) does, the
/// encoding Twilio's SDKs use for query strings: ASCII letters, digits and `_.-~` are kept, a
/// space becomes `+`, every other byte of the UTF-8 text becomes `%XX` (uppercase hex).
/// (`url::form_urlencoded` differs: it keeps `*` and encodes `~`.)
pub fn form_urlencode<'a, I>(pairs: I) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    fn push(out: &mut String, s: &str) {
        for b in s.bytes() {
            match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                    out.push(char::from(b));
                }
                b' ' => out.push('+'),
                _ => {
                    out.push('%');
                    out.push_str(&format!("{b:02X}"));
                }
            }
        }
    }
    let mut out = String::new();
    for (i, (k, v)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        push(&mut out, k);
        out.push('=');
        push(&mut out, v);
    }
    out
}

/// The form parameters of a body or query string, decoded, in order, repeats kept (`+` is a
/// space; malformed `%` sequences are kept as they are, as the SDKs' parsers do).
pub fn parse_form(raw: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw).into_owned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Values checked against the official Python SDK (twilio 9.x RequestValidator).
    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";

    fn doc_params() -> Vec<(String, String)> {
        [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+12349013030"),
            ("Digits", "1234"),
            ("From", "+12349013030"),
            ("To", "+18005551212"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn matches_the_official_sdk() {
        let p = doc_params();
        let sig = compute(TOKEN, URL, p.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        assert_eq!(sig, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=");
        assert_eq!(validate_form(TOKEN, URL, &p, &sig), Ok(UrlVariant::AsGiven));
    }

    #[test]
    fn order_of_parameters_does_not_matter_but_values_do() {
        let mut p = doc_params();
        p.reverse();
        assert!(validate_form(TOKEN, URL, &p, "0/KCTR6DLpKmkAf8muzZqo1nDgQ=").is_ok());
        p[0].1.push('0');
        assert_eq!(
            validate_form(TOKEN, URL, &p, "0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn repeated_values_are_sorted_and_deduplicated() {
        let a = string_to_sign(
            "https://x/",
            [("Digits", "2"), ("Digits", "1"), ("Digits", "2")],
        );
        assert_eq!(a, "https://x/Digits1Digits2");
    }

    #[test]
    fn default_port_variants_are_accepted_and_fragment_ignored() {
        let p = doc_params();
        let sig = compute(TOKEN, URL, p.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2#rc=3";
        assert_eq!(
            validate_form(TOKEN, with_port, &p, &sig),
            Ok(UrlVariant::WithoutPort)
        );
        let signed_with_port = compute(
            TOKEN,
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            p.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        assert_eq!(
            validate_form(TOKEN, URL, &p, &signed_with_port),
            Ok(UrlVariant::WithPort)
        );
        // As in the SDKs, any port may be removed; a malformed one gives no variant.
        assert_eq!(
            validate_form(
                TOKEN,
                "https://mycompany.com:8443/myapp.php?foo=1&bar=2",
                &p,
                &sig
            ),
            Ok(UrlVariant::WithoutPort)
        );
        assert!(
            validate_form(
                TOKEN,
                "https://mycompany.com:44a/myapp.php?foo=1&bar=2",
                &p,
                &sig
            )
            .is_err()
        );
    }

    #[test]
    fn variants_handle_userinfo_and_ipv6() {
        let v = url_variants("http://u:p@[::1]/cb?x=1");
        assert_eq!(v[1].1, "http://u:p@[::1]:80/cb?x=1");
        let v = url_variants("http://[::1]:80/cb");
        assert_eq!(v[1].1, "http://[::1]/cb");
    }

    #[test]
    fn empty_signature_is_missing() {
        assert_eq!(
            validate_form(TOKEN, URL, &[], ""),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn json_requests_check_the_body_hash() {
        let body = br#"{"a":1}"#;
        let url = format!("https://x.example/hook?bodySHA256={}", body_sha256(body));
        let sig = sign(TOKEN, &url);
        assert_eq!(
            validate_json(TOKEN, &url, body, &sig),
            Ok(UrlVariant::AsGiven)
        );
        assert_eq!(
            validate_json(TOKEN, &url, br#"{"a":2}"#, &sig),
            Err(SignatureError::BodyHash)
        );
        assert_eq!(
            validate_json(
                TOKEN,
                "https://x.example/hook",
                body,
                &sign(TOKEN, "https://x.example/hook")
            ),
            Err(SignatureError::BodyHash)
        );
    }

    #[test]
    fn port_rules_follow_the_sdks() {
        let v = |u: &str| {
            url_variants(u)
                .into_iter()
                .map(|(_, u)| u)
                .collect::<Vec<_>>()
        };
        assert_eq!(v("https://h/p"), ["https://h/p", "https://h:443/p"]);
        assert_eq!(v("http://h?q=1"), ["http://h?q=1", "http://h:80?q=1"]);
        assert_eq!(v("https://h:8443/p"), ["https://h:8443/p", "https://h/p"]);
        assert_eq!(v("https://h:0/p"), ["https://h:0/p", "https://h:0:443/p"]);
        assert_eq!(v("https://h:99999/p"), ["https://h:99999/p"]);
        assert_eq!(v("https://h:/p"), ["https://h:/p"]);
        assert_eq!(v("ftp://h/p"), ["ftp://h/p"]);
        assert_eq!(v("https://h/p#rc=3"), ["https://h/p", "https://h:443/p"]);
    }

    #[test]
    fn form_urlencode_matches_python() {
        // urllib.parse.urlencode([("a", "x y~*+%&=\u{e9}")]) == "a=x+y~%2A%2B%25%26%3D%C3%A9"
        assert_eq!(
            form_urlencode([("a", "x y~*+%&=\u{e9}")]),
            "a=x+y~%2A%2B%25%26%3D%C3%A9"
        );
        assert_eq!(form_urlencode([("a", "1"), ("a", "2")]), "a=1&a=2");
        assert_eq!(form_urlencode([]), "");
    }

    #[test]
    fn explain_shows_every_variant_and_the_verdict() {
        let p = doc_params();
        let e = explain(
            TOKEN,
            URL,
            Payload::Form(&p),
            Some("0/KCTR6DLpKmkAf8muzZqo1nDgQ="),
        );
        assert_eq!(e.verdict, Ok(UrlVariant::AsGiven));
        assert_eq!(e.attempts.len(), 2);
        assert!(e.attempts[0].matches && !e.attempts[1].matches);
        assert!(
            e.attempts[0].signed.starts_with(URL) && e.attempts[0].signed.contains("Digits1234")
        );
        let e2 = explain("s3cr3t-t0ken", URL, Payload::Form(&p), None);
        assert!(!format!("{e2:?}").contains("s3cr3t-t0ken"));
        let body = b"{}";
        let url = format!("https://x.example/h?bodySHA256={}", body_sha256(b"{ }"));
        let e = explain(TOKEN, &url, Payload::Json(body), None);
        assert_eq!(e.verdict, Err(SignatureError::Missing));
        let (claimed, actual) = e.body_hash.unwrap();
        assert_ne!(claimed.unwrap(), actual);
    }

    #[test]
    fn string_to_show_keeps_the_signed_order_and_shows_values_its_way() {
        let p = [("To", "+1999"), ("Body", "b"), ("Body", "a"), ("Body", "a")];
        assert_eq!(string_to_sign(URL, p), format!("{URL}BodyaBodybTo+1999"));
        let shown = string_to_show(URL, p, |s, k, v| {
            s.push_str(&format!("<{k}:{}>", v.to_uppercase()))
        });
        assert_eq!(shown, format!("{URL}Body<Body:A>Body<Body:B>To<To:+1999>"));
    }

    mod props {
        use std::collections::{BTreeMap, BTreeSet};

        use proptest::prelude::*;

        use super::super::*;

        fn text() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-zA-Z0-9]{0,8}",
                "[ +%&=#?/:;~*._\\-]{0,6}",
                any::<String>().prop_map(|s| s.chars().take(8).collect()),
                Just("\u{e9}\u{1f600}+%2B".to_owned()),
            ]
        }

        fn params() -> impl Strategy<Value = Vec<(String, String)>> {
            prop::collection::vec((text(), text()), 0..8)
        }

        /// The SDK rule, written as plainly as possible: names sorted, each name's distinct
        /// values sorted, concatenated after the URL.
        fn model(url: &str, p: &[(String, String)]) -> String {
            let mut m: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
            for (k, v) in p {
                m.entry(k).or_default().insert(v);
            }
            let mut s = url.split('#').next().unwrap().to_owned();
            for (k, vs) in m {
                for v in vs {
                    s.push_str(k);
                    s.push_str(v);
                }
            }
            s
        }

        fn refs(p: &[(String, String)]) -> impl Iterator<Item = (&str, &str)> {
            p.iter().map(|(k, v)| (k.as_str(), v.as_str()))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]

            #[test]
            fn parse_inverts_form_urlencode(p in params()) {
                prop_assert_eq!(parse_form(form_urlencode(refs(&p)).as_bytes()), p);
            }

            #[test]
            fn form_urlencode_output_is_plain_ascii(p in params()) {
                let s = form_urlencode(refs(&p));
                prop_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-~+%&=".contains(&b)));
            }

            #[test]
            fn the_signed_string_is_the_sdk_rule(p in params(), frag in "[a-z=&]{0,5}") {
                let url = format!("https://h.example/cb?x=1#{frag}");
                prop_assert_eq!(string_to_sign(&url, refs(&p)), model(&url, &p));
            }

            #[test]
            fn order_and_exact_duplicates_do_not_matter(
                p in params(),
                seed in any::<u64>(),
                dup in any::<prop::sample::Index>(),
            ) {
                let url = "https://h.example/cb";
                let sig = compute("tok", url, refs(&p));
                let mut q = p.clone();
                // A deterministic shuffle from the seed.
                let mut s = seed;
                for i in (1..q.len()).rev() {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    q.swap(i, (s >> 33) as usize % (i + 1));
                }
                if !p.is_empty() {
                    q.push(p[dup.index(p.len())].clone());
                }
                prop_assert_eq!(validate_form("tok", url, &q, &sig), Ok(UrlVariant::AsGiven));
            }

            #[test]
            fn a_new_value_changes_the_signature(p in params(), name in "[A-Z][a-z]{1,6}", v in "[a-z0-9]{1,6}") {
                let url = "https://h.example/cb";
                prop_assume!(!p.iter().any(|(k, x)| *k == name && *x == v));
                let sig = compute("tok", url, refs(&p));
                let mut q = p.clone();
                q.push((name, v));
                prop_assert_eq!(validate_form("tok", url, &q, &sig), Err(SignatureError::Mismatch));
            }

            #[test]
            fn what_is_signed_validates_with_or_without_fragment_and_port(
                p in params(),
                https in any::<bool>(),
                port in prop::option::of(1u16..),
                frag in prop::option::of("[a-z=&0-9]{0,6}"),
            ) {
                let scheme = if https { "https" } else { "http" };
                let hostport = port.map_or("h.example".to_owned(), |n| format!("h.example:{n}"));
                let signed = format!("{scheme}://{hostport}/cb?mid=1");
                let sig = compute("tok", &signed, refs(&p));
                let received = match &frag {
                    Some(f) => format!("{signed}#{f}"),
                    None => signed.clone(),
                };
                prop_assert_eq!(validate_form("tok", &received, &p, &sig), Ok(UrlVariant::AsGiven));
                // Signed without the port (or with the default one): still accepted.
                let default = if https { 443 } else { 80 };
                let other = match port {
                    Some(_) => format!("{scheme}://h.example/cb?mid=1"),
                    None => format!("{scheme}://h.example:{default}/cb?mid=1"),
                };
                let sig2 = compute("tok", &other, refs(&p));
                prop_assert!(validate_form("tok", &received, &p, &sig2).is_ok());
            }

            #[test]
            fn json_bodies_validate_and_any_other_body_fails(body in prop::collection::vec(any::<u8>(), 0..64), flip in any::<prop::sample::Index>()) {
                let url = format!("https://h.example/cb?a=1&bodySHA256={}", body_sha256(&body));
                let sig = sign("tok", &url);
                prop_assert_eq!(validate_json("tok", &url, &body, &sig), Ok(UrlVariant::AsGiven));
                let mut other = body.clone();
                if other.is_empty() { other.push(b'x'); } else { let i = flip.index(other.len()); other[i] ^= 0x01; }
                prop_assert_eq!(validate_json("tok", &url, &other, &sig), Err(SignatureError::BodyHash));
            }
        }
    }
}
