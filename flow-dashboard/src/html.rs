//! HTML made safe: every text from a flow, a parameter, a log line or a request goes
//! through [`esc`]; the page around each view.

use std::fmt::Write as _;

/// Text as HTML (element content or a quoted attribute).
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Text as a URL query value or path segment.
pub(crate) fn url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A URL-encoded value, decoded (`+` is a space).
pub(crate) fn url_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

/// The page: its title, the navigation, `body`.
pub(crate) fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · tideflow</title><link rel=\"stylesheet\" href=\"/static/app.css\"></head>\
         <body><header><a class=\"brand\" href=\"/flows\">tideflow</a><nav><a href=\"/flows\">Flows</a>\
         <a href=\"/runs\">Runs</a></nav></header><main>{body}</main>\
         <script src=\"/static/app.js\"></script></body></html>\n",
        esc(title)
    )
}

/// The CSS class of a state's colour.
pub(crate) fn state_class(state: &str) -> &'static str {
    match state {
        "Success" | "Cached" => "ok",
        "Failed" | "TimedOut" | "TriggerFailed" | "Crashed" => "bad",
        "Running" | "Mapped" => "running",
        "Retrying" => "retrying",
        "Skipped" | "Cancelled" => "off",
        _ => "waiting",
    }
}

/// A state as a coloured label.
pub(crate) fn state_badge(state: &str) -> String {
    format!(
        "<span class=\"state {}\">{}</span>",
        state_class(state),
        esc(state)
    )
}

/// `2026-11-29 02:01:23` (UTC).
pub(crate) fn time(seconds: Option<f64>) -> String {
    seconds.map(flow_history::format_time).unwrap_or_default()
}

/// `2026-11-29 02:01:23.025` (UTC).
pub(crate) fn time_ms(seconds: Option<f64>) -> String {
    seconds.map_or(String::new(), |s| {
        let millis = ((s.fract() * 1000.0).floor() as u32).min(999);
        format!("{}.{millis:03}", flow_history::format_time(s))
    })
}

/// A duration in seconds, `0.023 s`; empty when it has not ended.
pub(crate) fn duration(start: Option<f64>, end: Option<f64>) -> String {
    match (start, end) {
        (Some(s), Some(e)) => format!("{:.3} s", (e - s).max(0.0)),
        (Some(_), None) => "…".to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_and_urls_are_escaped_and_read_back() {
        assert_eq!(
            esc("<script>alert('x')</script> & \""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;"
        );
        assert_eq!(url("a b/c?d=é"), "a%20b%2Fc%3Fd%3D%C3%A9");
        assert_eq!(url_decode("a%20b%2Fc%3Fd%3D%C3%A9+x"), "a b/c?d=é x");
        assert_eq!(url_decode("100%"), "100%");
    }
}
