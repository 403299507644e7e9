//! `X-Twilio-Signature`: computing and validating it exactly as Twilio and its official SDKs do.
//!
//! Form requests: the full URL, then every POST parameter as name followed by value, names
//! sorted, a name's values sorted with duplicates dropped; HMAC-SHA1 with the auth token; base64.
//! JSON requests: the URL alone (it carries `bodySHA256`, the hex SHA-256 of the raw body).
//! The URL is tried as given, without its default port and with it, and its `#fragment` is never
//! part of what is signed. Comparison is in constant time.

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
    /// The URL with its default port (`:443`, `:80`) removed.
    WithoutPort,
    /// The URL with its default port added.
    WithPort,
}

impl UrlVariant {
    /// A short human name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AsGiven => "as given",
            Self::WithoutPort => "default port removed",
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
            s.push_str(v);
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

/// The URL variants Twilio may have signed: as given, default port removed, default port added.
/// Duplicates are dropped (a URL on a non-default port has only itself).
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
    match port {
        Some(p) if p == default_port => {
            out.push((
                UrlVariant::WithoutPort,
                format!("{scheme}://{userinfo}{host}{tail}"),
            ));
        }
        None => {
            out.push((
                UrlVariant::WithPort,
                format!("{scheme}://{userinfo}{host}:{default_port}{tail}"),
            ));
        }
        Some(_) => {}
    }
    out
}

fn equal(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// Validates a form-encoded request's signature; returns the URL variant that matched.
pub fn validate_form(
    auth_token: &str,
    url: &str,
    params: &[(String, String)],
    signature: &str,
) -> Result<UrlVariant, SignatureError> {
    if signature.is_empty() {
        return Err(SignatureError::Missing);
    }
    let mut matched = None;
    // Every variant is computed, so the time taken does not depend on which one matches.
    for (variant, u) in url_variants(url) {
        let expected = compute(
            auth_token,
            &u,
            params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        );
        if equal(&expected, signature) && matched.is_none() {
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
    if equal(&claimed.to_ascii_lowercase(), &body_sha256(body)) {
        Ok(variant)
    } else {
        Err(SignatureError::BodyHash)
    }
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
        // A non-default port is not interchangeable.
        assert!(
            validate_form(
                TOKEN,
                "https://mycompany.com:8443/myapp.php?foo=1&bar=2",
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
}
