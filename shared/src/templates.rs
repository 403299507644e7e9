//! Message templates (minijinja, strict: a missing variable is an error, never an empty string)
//! and SMS encoding: GSM-7 with its extension table, or UCS-2, and the segments a body takes.

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};

/// Twilio refuses bodies longer than this many characters (21617).
pub const MAX_BODY_CHARS: usize = 1600;

/// How an SMS body is encoded on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Encoding {
    /// The GSM 03.38 7-bit alphabet: 160 characters in one segment, 153 per segment when split.
    #[serde(rename = "GSM-7")]
    Gsm7,
    /// UTF-16: 70 code units in one segment, 67 per segment when split.
    #[serde(rename = "UCS-2")]
    Ucs2,
}

impl Encoding {
    /// `GSM-7` or `UCS-2`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gsm7 => "GSM-7",
            Self::Ucs2 => "UCS-2",
        }
    }
}

impl std::str::FromStr for Encoding {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "GSM-7" => Ok(Self::Gsm7),
            "UCS-2" => Ok(Self::Ucs2),
            _ => Err(()),
        }
    }
}

/// What a body costs to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmsInfo {
    /// The encoding it needs.
    pub encoding: Encoding,
    /// Segments (SMS parts) it takes.
    pub segments: u32,
    /// Its length in characters.
    pub characters: usize,
}

const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u{1b}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM_EXTENSION: &str = "\u{c}^{}\\[~]|€";

/// Septets a character takes in GSM-7 (2 for the extension table), `None` outside GSM-7.
fn gsm_units(c: char) -> Option<usize> {
    if GSM_BASIC.contains(c) {
        Some(1)
    } else if GSM_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// Packs units into segments of `multi` without splitting a character, or one of `single`.
fn segments(units: impl Iterator<Item = usize> + Clone, single: usize, multi: usize) -> u32 {
    let total: usize = units.clone().sum();
    if total <= single {
        return 1;
    }
    let (mut count, mut used) = (1u32, 0usize);
    for u in units {
        if used + u > multi {
            count += 1;
            used = 0;
        }
        used += u;
    }
    count
}

/// The encoding and segments of `body`.
pub fn analyse(body: &str) -> SmsInfo {
    let characters = body.chars().count();
    if body.chars().all(|c| gsm_units(c).is_some()) {
        let units = body.chars().map(|c| gsm_units(c).unwrap_or(1));
        SmsInfo {
            encoding: Encoding::Gsm7,
            segments: segments(units, 160, 153),
            characters,
        }
    } else {
        let units = body.chars().map(char::len_utf16);
        SmsInfo {
            encoding: Encoding::Ucs2,
            segments: segments(units, 70, 67),
            characters,
        }
    }
}

/// Why a template could not be rendered. Never carries variable values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// No template has that name.
    #[error("unknown template {0:?}")]
    Unknown(String),
    /// A variable the template uses was not given.
    #[error("missing variable {0:?}")]
    MissingVariable(String),
    /// A variable has a value that cannot be rendered (an object or list).
    #[error("variable {0:?} must be a string, number or boolean")]
    BadVariable(String),
    /// Rendering failed.
    #[error("template failed to render")]
    Render,
}

/// The built-in SMS templates.
pub const SMS_TEMPLATES: &[(&str, &str)] = &[
    ("alert", "[{{ service }}] ALERT: {{ summary }}"),
    ("reminder", "Reminder: {{ event }} at {{ time }}."),
    ("update", "[{{ service }}] Update: {{ summary }}"),
    (
        "otp",
        "Your {{ service }} verification code is {{ code }}. It expires in {{ minutes }} minutes. Do not share it.",
    ),
];

/// A set of templates, compiled once.
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Self::builtin()
    }
}

impl Templates {
    /// The built-in SMS templates.
    pub fn builtin() -> Self {
        Self::from_sources(SMS_TEMPLATES).expect("built-in templates compile")
    }

    /// Templates from `(name, source)` pairs.
    pub fn from_sources(sources: &[(&'static str, &'static str)]) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_keep_trailing_newline(false);
        for (name, src) in sources {
            env.add_template(name, src)
                .map_err(|_| TemplateError::Render)?;
        }
        Ok(Self { env })
    }

    /// The template names.
    pub fn names(&self) -> Vec<String> {
        self.env.templates().map(|(n, _)| n.to_owned()).collect()
    }

    /// The variables template `name` needs, sorted.
    pub fn variables(&self, name: &str) -> Result<Vec<String>, TemplateError> {
        let t = self
            .env
            .get_template(name)
            .map_err(|_| TemplateError::Unknown(name.to_owned()))?;
        let mut v: Vec<String> = t.undeclared_variables(false).into_iter().collect();
        v.sort();
        Ok(v)
    }

    /// Renders template `name` with `vars`: every variable it uses must be given, as a string,
    /// number or boolean.
    pub fn render(
        &self,
        name: &str,
        vars: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, TemplateError> {
        let t = self
            .env
            .get_template(name)
            .map_err(|_| TemplateError::Unknown(name.to_owned()))?;
        let mut ctx = BTreeMap::new();
        for needed in self.variables(name)? {
            match vars.get(&needed) {
                None | Some(serde_json::Value::Null) => {
                    return Err(TemplateError::MissingVariable(needed));
                }
                Some(serde_json::Value::String(s)) => {
                    ctx.insert(needed, minijinja::Value::from(s.as_str()));
                }
                Some(v @ (serde_json::Value::Number(_) | serde_json::Value::Bool(_))) => {
                    ctx.insert(needed, minijinja::Value::from(v.to_string()));
                }
                Some(_) => return Err(TemplateError::BadVariable(needed)),
            }
        }
        t.render(ctx).map_err(|e| match e.kind() {
            minijinja::ErrorKind::UndefinedError => TemplateError::MissingVariable(String::new()),
            _ => TemplateError::Render,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn gsm_bodies_fit_160_then_153_per_segment() {
        assert_eq!(
            analyse(&"a".repeat(160)),
            SmsInfo {
                encoding: Encoding::Gsm7,
                segments: 1,
                characters: 160
            }
        );
        assert_eq!(analyse(&"a".repeat(161)).segments, 2);
        assert_eq!(analyse(&"a".repeat(306)).segments, 2);
        assert_eq!(analyse(&"a".repeat(307)).segments, 3);
        assert_eq!(analyse("").segments, 1);
    }

    #[test]
    fn extension_characters_count_twice_and_are_not_split() {
        // 80 braces are 160 septets: one segment.
        assert_eq!(analyse(&"{".repeat(80)).segments, 1);
        assert_eq!(analyse(&"€".repeat(81)).segments, 2);
        assert_eq!(analyse(&"€".repeat(81)).encoding, Encoding::Gsm7);
        // 152 letters then an escape pair: the pair moves to the next segment.
        let s = format!("{}{{{}", "a".repeat(152), "a".repeat(10));
        assert_eq!(analyse(&s).segments, 2);
    }

    #[test]
    fn anything_else_is_ucs2_at_70_then_67() {
        assert_eq!(analyse("héllo ✓").encoding, Encoding::Ucs2);
        assert_eq!(analyse(&"ж".repeat(70)).segments, 1);
        assert_eq!(analyse(&"ж".repeat(71)).segments, 2);
        assert_eq!(analyse(&"ж".repeat(134)).segments, 2);
        assert_eq!(analyse(&"ж".repeat(135)).segments, 3);
        // An emoji is two UTF-16 units.
        assert_eq!(analyse(&"🚨".repeat(35)).segments, 1);
        assert_eq!(analyse(&"🚨".repeat(36)).segments, 2);
    }

    #[test]
    fn builtins_render_with_their_variables() {
        let t = Templates::builtin();
        assert_eq!(
            t.render(
                "alert",
                &vars(json!({"service": "db", "summary": "disk 95%"}))
            )
            .unwrap(),
            "[db] ALERT: disk 95%"
        );
        assert_eq!(
            t.render(
                "otp",
                &vars(json!({"service": "Acme", "code": "123456", "minutes": 10}))
            )
            .unwrap(),
            "Your Acme verification code is 123456. It expires in 10 minutes. Do not share it."
        );
        let mut names = t.names();
        names.sort();
        assert_eq!(names, ["alert", "otp", "reminder", "update"]);
    }

    #[test]
    fn missing_variable_is_an_error_naming_it() {
        let t = Templates::builtin();
        assert_eq!(
            t.render("reminder", &vars(json!({"event": "standup"}))),
            Err(TemplateError::MissingVariable("time".into()))
        );
        assert_eq!(
            t.render("reminder", &vars(json!({"event": "standup", "time": null}))),
            Err(TemplateError::MissingVariable("time".into()))
        );
        assert_eq!(
            t.render("alert", &vars(json!({"service": {"a": 1}, "summary": "x"}))),
            Err(TemplateError::BadVariable("service".into()))
        );
        assert_eq!(
            t.render("nope", &vars(json!({}))),
            Err(TemplateError::Unknown("nope".into()))
        );
    }

    #[test]
    fn values_are_not_evaluated_as_template_code() {
        let t = Templates::builtin();
        let out = t
            .render(
                "alert",
                &vars(json!({"service": "{{ 7*7 }}", "summary": "<b>&"})),
            )
            .unwrap();
        assert_eq!(out, "[{{ 7*7 }}] ALERT: <b>&");
    }
}
