//! Which origin response headers travel between daemons and are replayed to clients.
//!
//! The peer that fetches a task from the origin reports the origin's response headers with the
//! task's layout; the scheduler relays them to every downloader, and each replays them to its
//! clients. Whatever a rogue reporter puts there would reach every client of the task, so both
//! ends keep only headers that describe the object's bytes ([`RELAYED`]) and drop the rest on
//! receipt: no `Set-Cookie`, no `Location`, no `Content-Length` (each daemon states its own),
//! no hop-by-hop or security headers.
//!
//! Invariant: at most [`MAX_RELAYED`] headers of at most [`MAX_VALUE_LEN`] bytes each survive.
//!
//! The other direction: a client's credentials ([`is_credential`]) never leave its node except
//! to the origin. A peer does not put them in its registration; it says it withheld some, and
//! the scheduler then has that peer fetch from the origin instead of a seed.

/// Lower-case names of the headers that describe an object's bytes.
pub const RELAYED: &[&str] = &[
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-type",
    "docker-content-digest",
    "docker-distribution-api-version",
    "etag",
    "expires",
    "last-modified",
];

/// Headers kept from one report.
pub const MAX_RELAYED: usize = 16;
/// Longest value kept (an ETag or a content type is far shorter).
pub const MAX_VALUE_LEN: usize = 1024;

/// Request headers that carry a client's credentials.
pub const CREDENTIALS: &[&str] = &["authorization", "cookie", "proxy-authorization"];

/// Whether a request header named `name` (any case) carries credentials.
pub fn is_credential(name: &str) -> bool {
    CREDENTIALS.iter().any(|c| c.eq_ignore_ascii_case(name))
}

/// Whether a header named `name` (any case) with `value` may be relayed.
pub fn is_relayed(name: &str, value: &str) -> bool {
    value.len() <= MAX_VALUE_LEN
        && !value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
        && RELAYED.iter().any(|r| r.eq_ignore_ascii_case(name))
}

/// The headers of `headers` that may be relayed, in order, at most [`MAX_RELAYED`].
pub fn filter<T>(
    headers: impl IntoIterator<Item = T>,
    parts: impl Fn(&T) -> (&str, &str),
) -> Vec<T> {
    headers
        .into_iter()
        .filter(|h| {
            let (name, value) = parts(h);
            is_relayed(name, value)
        })
        .take(MAX_RELAYED)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_headers_about_the_bytes_survive() {
        let headers = vec![
            ("Content-Type", "application/octet-stream"),
            ("Set-Cookie", "session=stolen"),
            ("Location", "http://evil.example/"),
            ("ETag", "\"abc\""),
            ("Content-Length", "1"),
            ("Docker-Content-Digest", "sha256:00"),
            ("Strict-Transport-Security", "max-age=0"),
        ];
        let kept = filter(headers, |h| (h.0, h.1));
        assert_eq!(
            kept,
            vec![
                ("Content-Type", "application/octet-stream"),
                ("ETag", "\"abc\""),
                ("Docker-Content-Digest", "sha256:00"),
            ]
        );
    }

    #[test]
    fn injected_line_breaks_and_floods_are_dropped() {
        assert!(!is_relayed("etag", "\"a\"\r\nSet-Cookie: x=1"));
        assert!(!is_relayed("etag", &"x".repeat(MAX_VALUE_LEN + 1)));
        let flood: Vec<(&str, &str)> = std::iter::repeat_n(("etag", "\"a\""), 100).collect();
        assert_eq!(filter(flood, |h| (h.0, h.1)).len(), MAX_RELAYED);
    }
}
