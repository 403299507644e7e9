//! Phone numbers: parse and normalise to E.164 (the `phonenumber` crate, Google's
//! libphonenumber metadata), reject with a reason, tell the country, and mask for display.

use std::fmt;

use phonenumber::Mode;

/// Why a string is not a phone number Herald can send to. Never carries the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    /// No phone number in it at all.
    #[error("not a phone number")]
    NotANumber,
    /// No `+` and country calling code.
    #[error("missing the + and country calling code (E.164)")]
    MissingCountryCode,
    /// The country calling code belongs to no country.
    #[error("unknown country calling code")]
    UnknownCountry,
    /// Too few or too many digits for its country.
    #[error("wrong number of digits for its country")]
    WrongLength,
    /// The right length, but not a number that exists in its country's numbering plan.
    #[error("not a valid number in its country's numbering plan")]
    Invalid,
}

impl PhoneError {
    /// A stable machine-readable reason.
    pub fn code(self) -> &'static str {
        match self {
            Self::NotANumber => "not_a_number",
            Self::MissingCountryCode => "missing_country_code",
            Self::UnknownCountry => "unknown_country",
            Self::WrongLength => "wrong_length",
            Self::Invalid => "invalid_number",
        }
    }
}

/// A valid phone number in E.164. `Debug` and `Display` show it masked.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PhoneNumber {
    e164: String,
    country: Option<String>,
}

impl PhoneNumber {
    /// `+14155552671`: what Twilio is sent. Every call site handles personal data.
    pub fn e164(&self) -> &str {
        &self.e164
    }

    /// ISO 3166-1 alpha-2 region (`US`), when the number belongs to one.
    pub fn country(&self) -> Option<&str> {
        self.country.as_deref()
    }

    /// The number as people may see it: `+*******2671`.
    pub fn masked(&self) -> Masked {
        Masked::of(&self.e164)
    }
}

impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhoneNumber({})", self.masked())
    }
}

impl fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.masked(), f)
    }
}

/// A masked phone number: `+`, a `*` per hidden digit, the last four digits.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Masked(String);

impl Masked {
    /// Masks an E.164 number (or anything: all but the last four characters are hidden).
    pub fn of(e164: &str) -> Self {
        let digits: Vec<char> = e164.chars().filter(char::is_ascii_digit).collect();
        let keep = (digits.len() / 2).min(4);
        let mut s = String::with_capacity(digits.len() + 1);
        s.push('+');
        s.extend(std::iter::repeat_n('*', digits.len() - keep));
        s.extend(&digits[digits.len() - keep..]);
        Self(s)
    }

    /// The masked text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Masked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Masked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `s` has the form of an E.164 number: `+`, a country code not starting with 0, and 7
/// to 15 digits in all, nothing else. A check of form only, without the numbering plan's
/// metadata (see [`parse`] for the full check).
pub fn is_e164(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| {
        (7..=15).contains(&d.len()) && !d.starts_with('0') && d.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Parses an international number (`+1 (415) 555-2671`, `+44 20 7946 0958` …) to E.164.
pub fn parse(input: &str) -> Result<PhoneNumber, PhoneError> {
    let input = input.trim();
    if input.is_empty() || !input.chars().any(|c| c.is_ascii_digit()) {
        return Err(PhoneError::NotANumber);
    }
    if !input.starts_with('+') {
        return Err(PhoneError::MissingCountryCode);
    }
    if input.chars().any(|c| c.is_alphabetic()) {
        return Err(PhoneError::NotANumber);
    }
    let n = phonenumber::parse(None, input).map_err(|e| match e {
        phonenumber::ParseError::InvalidCountryCode => PhoneError::UnknownCountry,
        phonenumber::ParseError::TooShortAfterIdd
        | phonenumber::ParseError::TooShortNsn
        | phonenumber::ParseError::TooLong => PhoneError::WrongLength,
        _ => PhoneError::NotANumber,
    })?;
    let country = n.country().id().map(|id| id.as_ref().to_owned());
    if !n.is_valid() {
        let code = n.code().value();
        let Some(metas) = phonenumber::metadata::DATABASE.by_code(&code) else {
            return Err(PhoneError::UnknownCountry);
        };
        let len = u16::try_from(n.national().to_string().len()).unwrap_or(u16::MAX);
        let fits = metas.iter().any(|m| {
            let d = m.descriptors();
            [
                Some(d.general()),
                d.fixed_line(),
                d.mobile(),
                d.toll_free(),
                d.personal_number(),
                d.voip(),
            ]
            .into_iter()
            .flatten()
            .any(|desc| desc.possible_length().contains(&len))
        });
        return Err(if fits {
            PhoneError::Invalid
        } else {
            PhoneError::WrongLength
        });
    }
    Ok(PhoneNumber {
        e164: n.format().mode(Mode::E164).to_string(),
        country,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e164_form_without_metadata() {
        for ok in ["+14155552671", "+442079460958", "+15005550006", "+49301234"] {
            assert!(is_e164(ok), "{ok}");
        }
        for bad in [
            "",
            "+",
            "14155552671",
            "+1 415 555 2671",
            "+1-415-555-2671",
            "+0415555267",
            "+123456",
            "+1234567890123456",
            "+1415555267a",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
        // Every number the full parser accepts has the form.
        assert!(is_e164(parse("+1 (415) 555-2671").unwrap().e164()));
    }

    #[test]
    fn normalises_to_e164_and_tells_the_country() {
        let n = parse(" +1 (415) 555-2671 ").unwrap();
        assert_eq!(n.e164(), "+14155552671");
        assert_eq!(n.country(), Some("US"));
        let uk = parse("+44 20 7946 0958").unwrap();
        assert_eq!(uk.e164(), "+442079460958");
        assert_eq!(uk.country(), Some("GB"));
        assert_eq!(parse("+33 6 12 34 56 78").unwrap().country(), Some("FR"));
    }

    #[test]
    fn twilio_magic_test_numbers_are_valid() {
        for n in [
            "+15005550001",
            "+15005550004",
            "+15005550006",
            "+15005550009",
        ] {
            assert!(parse(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn rejects_with_a_reason() {
        assert_eq!(parse(""), Err(PhoneError::NotANumber));
        assert_eq!(parse("hello"), Err(PhoneError::NotANumber));
        assert_eq!(parse("4155552671"), Err(PhoneError::MissingCountryCode));
        assert_eq!(parse("+999 1234567"), Err(PhoneError::UnknownCountry));
        assert_eq!(parse("+1 415 55"), Err(PhoneError::WrongLength));
        assert_eq!(parse("+1 415 555 26711234"), Err(PhoneError::WrongLength));
        assert_eq!(parse("+1 099 555 2671"), Err(PhoneError::Invalid));
    }

    #[test]
    fn masks_all_but_the_last_four_digits() {
        assert_eq!(Masked::of("+14155552671").as_str(), "+*******2671");
        assert_eq!(parse("+14155552671").unwrap().to_string(), "+*******2671");
        assert_eq!(
            format!("{:?}", parse("+14155552671").unwrap()),
            "PhoneNumber(+*******2671)"
        );
        // Short strings never show more than half their digits.
        assert_eq!(Masked::of("+123").as_str(), "+**3");
        assert_eq!(Masked::of("+12345").as_str(), "+***45");
    }
}
