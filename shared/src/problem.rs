//! Problem details (RFC 9457, `application/problem+json`): the one shape of every HTTP error
//! Herald answers, with a stable `type`, the field at fault, and never an internal detail.

use serde::Serialize;

/// The media type of problem documents.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// The kinds of problem Herald reports; each has a stable `type` URI and an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// The body is not valid JSON, or not the expected shape.
    MalformedRequest,
    /// A field is present but invalid (number, template, variables, length …).
    InvalidField,
    /// No template with that name.
    UnknownTemplate,
    /// A template variable is missing.
    MissingVariable,
    /// The phone number is not one Herald can send to.
    InvalidPhoneNumber,
    /// The body is longer than 1600 characters.
    BodyTooLong,
    /// Twilio refused the message for good.
    TwilioRejected,
    /// The recipient opted out (STOP).
    RecipientOptedOut,
    /// No such resource.
    NotFound,
    /// The method is not allowed on this resource.
    MethodNotAllowed,
    /// The webhook signature is missing or invalid.
    InvalidSignature,
    /// The feature is switched off.
    FeatureDisabled,
    /// Something failed on Herald's side; retry later.
    Unavailable,
    /// Herald failed unexpectedly (a handler panicked); nothing of the request is in the answer.
    InternalError,
    /// No caller identity (no valid bearer token).
    Unauthorized,
    /// The caller sent too many requests to this endpoint this minute.
    CallerRateLimited,
    /// Too many messages to one number this hour.
    RecipientHourlyLimit,
    /// Too many messages to one number today.
    RecipientDailyLimit,
    /// The number's country is not on the allow-list.
    CountryNotAllowed,
    /// Too many messages to one country this hour.
    CountryVelocityLimit,
    /// The `Idempotency-Key` was used with a different payload.
    IdempotencyKeyReused,
    /// The first request with this `Idempotency-Key` is still being handled.
    IdempotencyKeyInUse,
    /// Too many one-time codes sent to one number in the window.
    VerificationSendLimit,
    /// Too many wrong codes: the verification is locked.
    VerificationLocked,
    /// The verification expired or was already approved.
    VerificationGone,
}

impl ProblemKind {
    /// The stable slug at the end of the `type` URI.
    pub fn slug(self) -> &'static str {
        match self {
            Self::MalformedRequest => "malformed-request",
            Self::InvalidField => "invalid-field",
            Self::UnknownTemplate => "unknown-template",
            Self::MissingVariable => "missing-variable",
            Self::InvalidPhoneNumber => "invalid-phone-number",
            Self::BodyTooLong => "body-too-long",
            Self::TwilioRejected => "twilio-rejected",
            Self::RecipientOptedOut => "recipient-opted-out",
            Self::NotFound => "not-found",
            Self::MethodNotAllowed => "method-not-allowed",
            Self::InvalidSignature => "invalid-signature",
            Self::FeatureDisabled => "feature-disabled",
            Self::Unavailable => "unavailable",
            Self::InternalError => "internal-error",
            Self::Unauthorized => "unauthorized",
            Self::CallerRateLimited => "caller-rate-limit",
            Self::RecipientHourlyLimit => "recipient-hourly-limit",
            Self::RecipientDailyLimit => "recipient-daily-limit",
            Self::CountryNotAllowed => "country-not-allowed",
            Self::CountryVelocityLimit => "country-velocity-limit",
            Self::IdempotencyKeyReused => "idempotency-key-reused",
            Self::IdempotencyKeyInUse => "idempotency-key-in-use",
            Self::VerificationSendLimit => "verification-send-limit",
            Self::VerificationLocked => "verification-locked",
            Self::VerificationGone => "verification-gone",
        }
    }

    /// The stable `type` URI: `urn:herald:problem:<slug>`.
    pub fn type_uri(self) -> &'static str {
        match self {
            Self::MalformedRequest => "urn:herald:problem:malformed-request",
            Self::InvalidField => "urn:herald:problem:invalid-field",
            Self::UnknownTemplate => "urn:herald:problem:unknown-template",
            Self::MissingVariable => "urn:herald:problem:missing-variable",
            Self::InvalidPhoneNumber => "urn:herald:problem:invalid-phone-number",
            Self::BodyTooLong => "urn:herald:problem:body-too-long",
            Self::TwilioRejected => "urn:herald:problem:twilio-rejected",
            Self::RecipientOptedOut => "urn:herald:problem:recipient-opted-out",
            Self::NotFound => "urn:herald:problem:not-found",
            Self::MethodNotAllowed => "urn:herald:problem:method-not-allowed",
            Self::InvalidSignature => "urn:herald:problem:invalid-signature",
            Self::FeatureDisabled => "urn:herald:problem:feature-disabled",
            Self::Unavailable => "urn:herald:problem:unavailable",
            Self::InternalError => "urn:herald:problem:internal-error",
            Self::Unauthorized => "urn:herald:problem:unauthorized",
            Self::CallerRateLimited => "urn:herald:problem:caller-rate-limit",
            Self::RecipientHourlyLimit => "urn:herald:problem:recipient-hourly-limit",
            Self::RecipientDailyLimit => "urn:herald:problem:recipient-daily-limit",
            Self::CountryNotAllowed => "urn:herald:problem:country-not-allowed",
            Self::CountryVelocityLimit => "urn:herald:problem:country-velocity-limit",
            Self::IdempotencyKeyReused => "urn:herald:problem:idempotency-key-reused",
            Self::IdempotencyKeyInUse => "urn:herald:problem:idempotency-key-in-use",
            Self::VerificationSendLimit => "urn:herald:problem:verification-send-limit",
            Self::VerificationLocked => "urn:herald:problem:verification-locked",
            Self::VerificationGone => "urn:herald:problem:verification-gone",
        }
    }

    /// The HTTP status it is answered with.
    pub fn status(self) -> u16 {
        match self {
            Self::MalformedRequest => 400,
            Self::InvalidField
            | Self::UnknownTemplate
            | Self::MissingVariable
            | Self::InvalidPhoneNumber
            | Self::BodyTooLong
            | Self::TwilioRejected
            | Self::RecipientOptedOut => 422,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::InvalidSignature => 403,
            Self::FeatureDisabled | Self::Unavailable => 503,
            Self::InternalError => 500,
            Self::Unauthorized => 401,
            Self::CountryNotAllowed | Self::IdempotencyKeyReused => 422,
            Self::IdempotencyKeyInUse => 409,
            Self::VerificationGone => 410,
            Self::CallerRateLimited
            | Self::RecipientHourlyLimit
            | Self::RecipientDailyLimit
            | Self::CountryVelocityLimit
            | Self::VerificationSendLimit
            | Self::VerificationLocked => 429,
        }
    }

    /// A short, fixed title.
    pub fn title(self) -> &'static str {
        match self {
            Self::MalformedRequest => "The request body is malformed",
            Self::InvalidField => "A field is invalid",
            Self::UnknownTemplate => "Unknown template",
            Self::MissingVariable => "A template variable is missing",
            Self::InvalidPhoneNumber => "Invalid phone number",
            Self::BodyTooLong => "The message body is too long",
            Self::TwilioRejected => "Twilio rejected the message",
            Self::RecipientOptedOut => "The recipient has opted out",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::InvalidSignature => "Invalid Twilio signature",
            Self::FeatureDisabled => "This feature is disabled",
            Self::Unavailable => "Temporarily unavailable",
            Self::InternalError => "Internal error",
            Self::Unauthorized => "Authentication required",
            Self::CallerRateLimited => "Too many requests",
            Self::RecipientHourlyLimit => "Too many messages to this number this hour",
            Self::RecipientDailyLimit => "Too many messages to this number today",
            Self::CountryNotAllowed => "Herald does not send to this country",
            Self::CountryVelocityLimit => "Too many messages to this country this hour",
            Self::IdempotencyKeyReused => "The idempotency key was used with another request",
            Self::IdempotencyKeyInUse => "A request with this idempotency key is in progress",
            Self::VerificationSendLimit => "Too many codes sent to this number",
            Self::VerificationLocked => "Too many wrong codes",
            Self::VerificationGone => "The verification expired or is already approved",
        }
    }
}

/// A problem document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `urn:herald:problem:<slug>`.
    #[serde(rename = "type")]
    pub type_uri: &'static str,
    /// Fixed title of the kind.
    pub title: &'static str,
    /// HTTP status.
    pub status: u16,
    /// What exactly is wrong (never personal data).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The request field at fault, as a JSON pointer-ish path (`to`, `variables.code`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The message the problem concerns, when one was recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Twilio's error code, when Twilio refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub twilio_code: Option<u32>,
    /// Seconds to wait before retrying: sent as the `Retry-After` header, not in the body.
    #[serde(skip)]
    pub retry_after_secs: Option<std::num::NonZeroU32>,
}

impl Problem {
    /// A problem of `kind`.
    pub fn new(kind: ProblemKind) -> Self {
        Self {
            type_uri: kind.type_uri(),
            title: kind.title(),
            status: kind.status(),
            detail: None,
            field: None,
            message_id: None,
            twilio_code: None,
            retry_after_secs: None,
        }
    }

    /// Adds the detail.
    pub fn detail(mut self, d: impl Into<String>) -> Self {
        self.detail = Some(d.into());
        self
    }

    /// Adds the field at fault.
    pub fn field(mut self, f: impl Into<String>) -> Self {
        self.field = Some(f.into());
        self
    }

    /// The JSON body.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("problem serialises")
    }
}

/// An HTTP response carrying this problem.
impl Problem {
    /// The response: status, `application/problem+json`, the document.
    pub fn into_response(self) -> http::Response<String> {
        let mut resp = respond(self.status, CONTENT_TYPE, self.to_json());
        if let Some(secs) = self.retry_after_secs {
            resp.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from(secs.get()),
            );
        }
        resp
    }
}

/// `405 method-not-allowed` with the `Allow` header (RFC 9110) listing `allow`, e.g. `"GET, POST"`.
pub fn method_not_allowed(allow: &'static str) -> http::Response<String> {
    let mut resp = Problem::new(ProblemKind::MethodNotAllowed).into_response();
    resp.headers_mut()
        .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
    resp
}

/// A response with a body and its content type.
pub fn respond(status: u16, content_type: &str, body: String) -> http::Response<String> {
    http::Response::builder()
        .status(status)
        .header(http::header::CONTENT_TYPE, content_type)
        .header(http::header::CACHE_CONTROL, "no-store")
        .body(body)
        .expect("static response parts are valid")
}

/// A JSON response.
pub fn json(status: u16, value: &impl Serialize) -> http::Response<String> {
    respond(
        status,
        "application/json",
        serde_json::to_string(value).expect("response serialises"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_uris_are_built_from_the_slug() {
        for k in [
            ProblemKind::MalformedRequest,
            ProblemKind::TwilioRejected,
            ProblemKind::Unavailable,
        ] {
            assert_eq!(k.type_uri(), format!("urn:herald:problem:{}", k.slug()));
        }
        let p = Problem::new(ProblemKind::InvalidPhoneNumber).field("to");
        let v: serde_json::Value = serde_json::from_str(&p.to_json()).unwrap();
        assert_eq!(v["type"], "urn:herald:problem:invalid-phone-number");
        assert_eq!(v["status"], 422);
        assert_eq!(v["field"], "to");
        assert!(v.get("detail").is_none());
    }
}
