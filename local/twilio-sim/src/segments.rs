//! SMS segment counting: GSM-7 (160 per message, 153 per part, extension characters count two)
//! or UCS-2 (70 and 67, counted in UTF-16 code units).

const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\u{1b}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM_EXTENSION: &str = "^{}\\[~]|€\u{c}";

/// The number of SMS segments `body` takes.
pub fn num_segments(body: &str) -> u32 {
    let mut septets = 0usize;
    let mut gsm = true;
    for c in body.chars() {
        if GSM_BASIC.contains(c) {
            septets += 1;
        } else if GSM_EXTENSION.contains(c) {
            septets += 2;
        } else {
            gsm = false;
            break;
        }
    }
    let (units, single, part) = if gsm {
        (septets, 160, 153)
    } else {
        (body.encode_utf16().count(), 70, 67)
    };
    let n = if units <= single {
        1
    } else {
        units.div_ceil(part)
    };
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::num_segments;

    #[test]
    fn gsm_limits() {
        assert_eq!(num_segments(""), 1);
        assert_eq!(num_segments(&"a".repeat(160)), 1);
        assert_eq!(num_segments(&"a".repeat(161)), 2);
        assert_eq!(num_segments(&"a".repeat(306)), 2);
        assert_eq!(num_segments(&"a".repeat(307)), 3);
    }

    #[test]
    fn extension_characters_count_twice() {
        assert_eq!(num_segments(&"{".repeat(80)), 1);
        assert_eq!(num_segments(&"€".repeat(81)), 2);
    }

    #[test]
    fn ucs2_limits() {
        assert_eq!(num_segments(&"é".repeat(160)), 1); // é is GSM
        assert_eq!(num_segments(&"ж".repeat(70)), 1);
        assert_eq!(num_segments(&"ж".repeat(71)), 2);
        assert_eq!(num_segments(&"ж".repeat(134)), 2);
        assert_eq!(num_segments(&"ж".repeat(135)), 3);
        // An emoji is two UTF-16 code units.
        assert_eq!(num_segments(&"👍".repeat(35)), 1);
        assert_eq!(num_segments(&"👍".repeat(36)), 2);
    }
}
