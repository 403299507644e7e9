//! Voice alerts' options: the voices and languages Herald lets callers choose (a documented
//! allow-list of what Twilio's `<Say>` supports), the loop range, and the voice templates.
//!
//! Voices:
//! - `alice` with any language of [`LANGUAGES`];
//! - `man` and `woman` with `en-US`, `en-GB`, `es-ES`, `fr-FR` or `de-DE` (the languages Twilio's
//!   basic voices speak);
//! - Amazon Polly voices `Polly.<Name>` or `Polly.<Name>-Neural` for the names of
//!   [`POLLY_VOICES`] (Twilio speaks them in their own language);
//! - Google voices `Google.<language>-<Standard|Wavenet|Neural2|Chirp3-HD>-<Name>`, whose
//!   language must be the call's `language` (e.g. `Google.en-US-Neural2-F` with `en-US`).
//!
//! Languages: [`LANGUAGES`] (`en-US` by default). Voice templates: [`VOICE_TEMPLATES`], rendered
//! by the same strict engine as SMS templates.

use std::sync::LazyLock;

use crate::templates::Templates;

/// The voice used when none is given.
pub const DEFAULT_VOICE: &str = "alice";
/// The language used when none is given.
pub const DEFAULT_LANGUAGE: &str = "en-US";
/// The most times an alert may be said (`loop`); `loop="0"` (forever) is not allowed.
pub const MAX_LOOP: u32 = 10;

/// The languages a call may be spoken in (those of Twilio's `alice` voice).
pub const LANGUAGES: &[&str] = &[
    "ca-ES", "da-DK", "de-DE", "en-AU", "en-CA", "en-GB", "en-IN", "en-US", "es-ES", "es-MX",
    "fi-FI", "fr-CA", "fr-FR", "it-IT", "ja-JP", "ko-KR", "nb-NO", "nl-NL", "pl-PL", "pt-BR",
    "pt-PT", "ru-RU", "sv-SE", "zh-CN", "zh-HK", "zh-TW",
];

/// The languages of the basic `man` and `woman` voices.
pub const BASIC_VOICE_LANGUAGES: &[&str] = &["en-US", "en-GB", "es-ES", "fr-FR", "de-DE"];

/// Amazon Polly voice names Twilio offers (standard; `-Neural` where Polly has it).
pub const POLLY_VOICES: &[&str] = &[
    "Aditi",
    "Amy",
    "Aria",
    "Arthur",
    "Astrid",
    "Ayanda",
    "Bianca",
    "Brian",
    "Camila",
    "Carla",
    "Carmen",
    "Celine",
    "Chantal",
    "Conchita",
    "Cristiano",
    "Daniel",
    "Dora",
    "Emma",
    "Enrique",
    "Ewa",
    "Filiz",
    "Gabrielle",
    "Geraint",
    "Giorgio",
    "Gwyneth",
    "Hannah",
    "Hans",
    "Ines",
    "Ivy",
    "Jacek",
    "Jan",
    "Joanna",
    "Joey",
    "Justin",
    "Karl",
    "Kendra",
    "Kevin",
    "Kimberly",
    "Lea",
    "Liv",
    "Lotte",
    "Lucia",
    "Lupe",
    "Mads",
    "Maja",
    "Marlene",
    "Mathieu",
    "Matthew",
    "Maxim",
    "Mia",
    "Miguel",
    "Mizuki",
    "Naja",
    "Nicole",
    "Olivia",
    "Penelope",
    "Raveena",
    "Ricardo",
    "Ruben",
    "Russell",
    "Ruth",
    "Salli",
    "Seoyeon",
    "Stephen",
    "Takumi",
    "Tatyana",
    "Vicki",
    "Vitoria",
    "Zeina",
    "Zhiyu",
];

/// The Google voice families Herald accepts.
pub const GOOGLE_FAMILIES: &[&str] = &["Standard", "Wavenet", "Neural2", "Chirp3-HD"];

/// The built-in voice templates.
pub const VOICE_TEMPLATES: &[(&str, &str)] = &[
    (
        "emergency_alert",
        "This is an emergency alert from {{ service }}. {{ summary }}. I repeat: {{ summary }}.",
    ),
    (
        "reminder",
        "This is a reminder from {{ service }}: {{ event }} at {{ time }}.",
    ),
];

/// The voice templates, compiled once.
pub fn templates() -> &'static Templates {
    static T: LazyLock<Templates> = LazyLock::new(|| {
        Templates::from_sources(VOICE_TEMPLATES).expect("built-in voice templates compile")
    });
    &T
}

/// Why a voice or language is refused: which field, and why (never echoing the value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SpeechError {
    /// `voice`, `language` or `loop`.
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

fn refuse(field: &'static str, reason: impl Into<String>) -> SpeechError {
    SpeechError {
        field,
        reason: reason.into(),
    }
}

/// Checks a voice and language against the allow-list.
pub fn check_voice(voice: &str, language: &str) -> Result<(), SpeechError> {
    if !LANGUAGES.contains(&language) {
        return Err(refuse(
            "language",
            format!("not a supported language; one of {}", LANGUAGES.join(", ")),
        ));
    }
    match voice {
        "alice" => Ok(()),
        "man" | "woman" if BASIC_VOICE_LANGUAGES.contains(&language) => Ok(()),
        "man" | "woman" => Err(refuse(
            "language",
            format!(
                "the {voice} voice speaks only {}",
                BASIC_VOICE_LANGUAGES.join(", ")
            ),
        )),
        v if v.starts_with("Polly.") => {
            let name = &v["Polly.".len()..];
            let name = name.strip_suffix("-Neural").unwrap_or(name);
            if POLLY_VOICES.contains(&name) {
                Ok(())
            } else {
                Err(refuse("voice", "not a supported Amazon Polly voice"))
            }
        }
        v if v.starts_with("Google.") => {
            let rest = &v["Google.".len()..];
            let ok = rest
                .strip_prefix(language)
                .and_then(|r| r.strip_prefix('-'))
                .and_then(|r| {
                    GOOGLE_FAMILIES
                        .iter()
                        .find_map(|f| r.strip_prefix(f).and_then(|n| n.strip_prefix('-')))
                })
                .is_some_and(|name| {
                    !name.is_empty()
                        && name.len() <= 16
                        && name.chars().all(|c| c.is_ascii_alphanumeric())
                });
            if ok {
                Ok(())
            } else {
                Err(refuse(
                    "voice",
                    "not a supported Google voice for this language (Google.<language>-<Standard|Wavenet|Neural2|Chirp3-HD>-<name>)",
                ))
            }
        }
        _ => Err(refuse(
            "voice",
            "not a supported voice: alice, man, woman, Polly.<name> or Google.<voice>",
        )),
    }
}

/// Checks a loop count (1..=[`MAX_LOOP`]).
pub fn check_loop(n: u64) -> Result<u32, SpeechError> {
    u32::try_from(n)
        .ok()
        .filter(|n| (1..=MAX_LOOP).contains(n))
        .ok_or_else(|| refuse("loop", format!("must be 1 to {MAX_LOOP}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_allow_list_takes_twilio_voices_and_refuses_the_rest() {
        for (v, l) in [
            ("alice", "ja-JP"),
            ("man", "en-GB"),
            ("woman", "de-DE"),
            ("Polly.Joanna", "en-US"),
            ("Polly.Lea-Neural", "fr-FR"),
            ("Google.en-US-Neural2-F", "en-US"),
            ("Google.fr-FR-Wavenet-A", "fr-FR"),
        ] {
            assert_eq!(check_voice(v, l), Ok(()), "{v} {l}");
        }
        for (v, l, field) in [
            ("alice", "xx-XX", "language"),
            ("alice", "en-us", "language"),
            ("man", "ja-JP", "language"),
            ("robot", "en-US", "voice"),
            ("Polly.Nobody", "en-US", "voice"),
            ("Google.en-GB-Neural2-F", "en-US", "voice"),
            ("Google.en-US-Neural2-<x>", "en-US", "voice"),
            ("Polly.Joanna\"/><Dial>", "en-US", "voice"),
        ] {
            assert_eq!(check_voice(v, l).unwrap_err().field, field, "{v} {l}");
        }
        assert_eq!(check_loop(3), Ok(3));
        assert!(check_loop(0).is_err() && check_loop(11).is_err());
    }

    #[test]
    fn voice_templates_are_strict() {
        let t = templates();
        let vars = json!({"service": "payments", "summary": "error rate 7%"});
        assert_eq!(
            t.render("emergency_alert", vars.as_object().unwrap())
                .unwrap(),
            "This is an emergency alert from payments. error rate 7%. I repeat: error rate 7%."
        );
        let missing = json!({"service": "x", "event": "standup"});
        assert_eq!(
            t.render("reminder", missing.as_object().unwrap()),
            Err(crate::templates::TemplateError::MissingVariable(
                "time".into()
            ))
        );
        let mut names = t.names();
        names.sort();
        assert_eq!(names, ["emergency_alert", "reminder"]);
    }
}
