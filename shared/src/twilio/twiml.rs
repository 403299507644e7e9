//! TwiML for voice alerts: `<Say>` with voice, language and loop, and the `<Gather>` that asks
//! the callee to press 1. Every piece of text and every attribute value is XML-escaped, and
//! characters XML 1.0 forbids are dropped, so no variable can break or inject TwiML.

use crate::domain::Speech;

/// What the callee hears after the alert when an acknowledgement is asked for.
pub const ACK_PROMPT: &str = "Press 1 to acknowledge this alert.";
/// The answer to a press of 1.
pub const ACK_THANKS: &str = "Thank you. Your acknowledgement has been recorded. Goodbye.";
/// The answer to another key, before the prompt is said once more.
pub const ACK_RETRY: &str = "Sorry, that was not 1.";
/// The last words when no acknowledgement came.
pub const ACK_GOODBYE: &str = "No acknowledgement was received. Goodbye.";
/// Seconds the `<Gather>` waits for a key after the prompt.
pub const GATHER_TIMEOUT_SECS: u32 = 8;

/// The XML declaration every document starts with.
const DECLARATION: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;

/// `s` escaped for XML text and attribute values (`&`, `<`, `>`, `"`, `'`), without the
/// characters XML 1.0 does not allow (control characters other than tab, newline, return).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if u32::from(c) < 0x20 || matches!(c, '\u{fffe}' | '\u{ffff}') => {}
            c => out.push(c),
        }
    }
    out
}

fn say(speech: &Speech, text: &str, loop_count: u32) -> String {
    format!(
        r#"<Say voice="{}" language="{}" loop="{}">{}</Say>"#,
        escape(&speech.voice),
        escape(&speech.language),
        loop_count,
        escape(text)
    )
}

fn gather(action: &str, inner: &str) -> String {
    format!(
        r#"<Gather numDigits="1" action="{}" method="POST" timeout="{GATHER_TIMEOUT_SECS}">{inner}</Gather>"#,
        escape(action)
    )
}

/// The alert: `text` said `speech.loop_count` times; with `ack_action`, inside a `<Gather>`
/// posting the key pressed to that URL, followed by the prompt to press 1, and a goodbye when
/// no key comes.
pub fn alert(speech: &Speech, text: &str, ack_action: Option<&str>) -> String {
    match ack_action {
        None => format!(
            "{DECLARATION}<Response>{}</Response>",
            say(speech, text, speech.loop_count)
        ),
        Some(action) => format!(
            "{DECLARATION}<Response>{}{}</Response>",
            gather(
                action,
                &format!(
                    "{}{}",
                    say(speech, text, speech.loop_count),
                    say(speech, ACK_PROMPT, 1)
                )
            ),
            say(speech, ACK_GOODBYE, 1)
        ),
    }
}

/// The answer to a press of 1: thanks, and hang up.
pub fn acknowledged(speech: &Speech) -> String {
    format!(
        "{DECLARATION}<Response>{}<Hangup/></Response>",
        say(speech, ACK_THANKS, 1)
    )
}

/// The answer to another key: the prompt once more, posting to `action`.
pub fn prompt_again(speech: &Speech, action: &str) -> String {
    format!(
        "{DECLARATION}<Response>{}{}</Response>",
        gather(
            action,
            &format!(
                "{}{}",
                say(speech, ACK_RETRY, 1),
                say(speech, ACK_PROMPT, 1)
            )
        ),
        say(speech, ACK_GOODBYE, 1)
    )
}

/// The last answer: goodbye, and hang up.
pub fn goodbye(speech: &Speech) -> String {
    format!(
        "{DECLARATION}<Response>{}<Hangup/></Response>",
        say(speech, ACK_GOODBYE, 1)
    )
}

/// An empty document (Twilio expects TwiML, and nothing is to be done).
pub fn empty() -> String {
    format!("{DECLARATION}<Response/>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speech() -> Speech {
        Speech {
            voice: "Polly.Joanna".into(),
            language: "en-US".into(),
            loop_count: 2,
        }
    }

    /// An element: depth, name, attributes, text.
    type Element = (usize, String, Vec<(String, String)>, String);

    /// Every element of `doc` as (depth, name, attributes, text), through a real XML parser:
    /// anything malformed fails the test.
    fn elements(doc: &str) -> Vec<Element> {
        use quick_xml::events::Event;
        let mut reader = quick_xml::Reader::from_str(doc);
        let mut out: Vec<Element> = Vec::new();
        let mut open: Vec<usize> = Vec::new();
        loop {
            match reader.read_event().expect("well-formed XML") {
                Event::Start(e) => {
                    out.push(element(&e, open.len()));
                    open.push(out.len() - 1);
                }
                Event::Empty(e) => out.push(element(&e, open.len())),
                Event::End(_) => {
                    open.pop();
                }
                Event::Text(t) => {
                    let text = t.decode().expect("utf-8").into_owned();
                    let text = quick_xml::escape::unescape(&text)
                        .expect("entities")
                        .into_owned();
                    if let Some(&i) = open.last() {
                        out[i].3.push_str(&text);
                    }
                }
                Event::GeneralRef(r) => {
                    let name = r.decode().expect("utf-8").into_owned();
                    let ch = quick_xml::escape::unescape(&format!("&{name};"))
                        .expect("entity")
                        .into_owned();
                    if let Some(&i) = open.last() {
                        out[i].3.push_str(&ch);
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        assert!(open.is_empty(), "unclosed elements");
        out
    }

    fn element(e: &quick_xml::events::BytesStart<'_>, depth: usize) -> Element {
        let name = String::from_utf8(e.name().as_ref().to_vec()).expect("utf-8");
        let attrs = e
            .attributes()
            .map(|a| {
                let a = a.expect("attribute");
                (
                    String::from_utf8(a.key.as_ref().to_vec()).expect("utf-8"),
                    a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .expect("value")
                        .into_owned(),
                )
            })
            .collect();
        (depth, name, attrs, String::new())
    }

    #[test]
    fn hostile_text_stays_text() {
        let evil = r#"</Say><Dial>+19005550000</Dial><Say a='1'>"&amp; ' < > \u{0}"#;
        let doc = alert(&speech(), evil, Some("https://h.example/g?cid=call_1&a=2"));
        let els = elements(&doc);
        let names: Vec<(usize, &str)> = els.iter().map(|e| (e.0, e.1.as_str())).collect();
        assert_eq!(
            names,
            [
                (0, "Response"),
                (1, "Gather"),
                (2, "Say"),
                (2, "Say"),
                (1, "Say")
            ]
        );
        assert_eq!(els[2].3, evil.replace('\u{0}', ""));
        let gather = &els[1].2;
        assert!(gather.contains(&("numDigits".into(), "1".into())));
        assert!(gather.contains(&("action".into(), "https://h.example/g?cid=call_1&a=2".into())));
        assert!(els[2].2.contains(&("loop".into(), "2".into())));
        assert!(els[2].2.contains(&("voice".into(), "Polly.Joanna".into())));
        assert_eq!(els[3].3, ACK_PROMPT);
    }

    #[test]
    fn without_an_acknowledgement_it_is_one_say() {
        let doc = alert(&speech(), "Disk full", None);
        let els = elements(&doc);
        assert_eq!(els.len(), 2);
        assert_eq!((els[1].1.as_str(), els[1].3.as_str()), ("Say", "Disk full"));
        assert!(!doc.contains("Gather"));
    }

    #[test]
    fn answers_to_keys_are_well_formed() {
        for doc in [
            acknowledged(&speech()),
            prompt_again(&speech(), "https://h/g?cid=c&a=1&r=1"),
            goodbye(&speech()),
            empty(),
        ] {
            assert_eq!(elements(&doc)[0].1, "Response");
        }
        assert!(acknowledged(&speech()).contains("<Hangup/>"));
        assert!(prompt_again(&speech(), "https://h/g?a=1&r=1").contains("a=1&amp;r=1"));
    }
}
