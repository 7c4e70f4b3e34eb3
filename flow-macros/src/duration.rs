//! Duration strings in task options: "2s", "1m30s", "500ms".

use std::time::Duration;

/// Parses a duration string; the error says what is wrong and how to write it.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("empty duration: write it like \"2s\", \"1m30s\" or \"500ms\"".to_owned());
    }
    humantime::parse_duration(trimmed).map_err(|e| {
        format!("malformed duration \"{text}\": {e}; write it like \"2s\", \"1m30s\" or \"500ms\"")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1h 2m"), Ok(Duration::from_secs(3720)));
    }

    #[test]
    fn rejects_malformed_strings_with_a_hint() {
        let e = parse("2 parsecs").unwrap_err();
        assert!(e.contains("malformed duration \"2 parsecs\""), "{e}");
        assert!(e.contains("write it like"), "{e}");
        assert!(parse("").is_err());
        assert!(parse("fast").is_err());
    }
}
