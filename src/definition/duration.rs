//! Durations as written in definition files: one or more `<integer><unit>` pairs with
//! units `s`, `m`, `h` and `d`, e.g. `30s`, `5m`, `1h30m`, `2d`.

use std::time::Duration;

/// Parses a definition-file duration; the error is a plain sentence for a diagnostic.
pub fn parse(text: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration `{text}` (use s, m, h or d, e.g. 30s, 5m, 1h30m, 2d)");
    let s = text.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let mut rest = s;
    let mut total: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| bad())?;
        let unit = rest[digits..].chars().next().ok_or_else(bad)?;
        let factor = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(bad()),
        };
        total = value
            .checked_mul(factor)
            .and_then(|v| total.checked_add(v))
            .filter(|v| *v <= 100 * 365 * 86_400)
            .ok_or_else(|| format!("duration `{text}` is too long"))?;
        rest = &rest[digits + unit.len_utf8()..];
    }
    Ok(Duration::from_secs(total))
}

/// Formats seconds back into the file syntax (`90s` → `1m30s`), for readable output.
pub fn format(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sequences() {
        for (text, secs) in [
            ("30s", 30),
            ("5m", 300),
            ("1h30m", 5400),
            ("2d", 172_800),
            ("0s", 0),
        ] {
            assert_eq!(parse(text), Ok(Duration::from_secs(secs)), "{text}");
        }
    }

    #[test]
    fn refuses_malformed() {
        for text in [
            "",
            "5",
            "m",
            "5x",
            "1.5h",
            "-5s",
            "5 m",
            "99999999999999999999d",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn formats_round_trip() {
        for secs in [0, 59, 60, 90, 3600, 86_400 + 61] {
            let d = Duration::from_secs(secs);
            assert_eq!(parse(&format(d)), Ok(d));
        }
    }
}
