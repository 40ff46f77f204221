//! The proxy's routing decision as a pure function of a request head and the config: where
//! the request goes and whether it goes P2P. No I/O, so it is unit-tested, property-tested and
//! fuzzed (`fuzz/`) on its own; [`super::Proxy`] only carries the decision out.

use http::{HeaderMap, Method, StatusCode, Uri};

use super::{HEADER_REGISTRY, HEADER_USE_P2P};
use crate::config::ProxyConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// `CONNECT host:port` on an allowed port; `intercept` when the host is on the hijack list.
    Connect {
        host: String,
        port: u16,
        intercept: bool,
    },
    /// Fetch `url` (absolute, http or https), through P2P or straight from the origin.
    Fetch { url: String, p2p: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub message: String,
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// Decides what to do with a request. `tunnel` is the authority of an intercepted CONNECT the
/// request arrived in; `p2p_enabled` is the soft switch.
pub fn plan(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    tunnel: Option<&str>,
    cfg: &ProxyConfig,
    p2p_enabled: bool,
) -> Result<Plan, Refusal> {
    if method == Method::CONNECT {
        if tunnel.is_some() {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "CONNECT inside a tunnel is not supported",
            ));
        }
        let Some(authority) = uri.authority() else {
            return Err(refuse(StatusCode::BAD_REQUEST, "CONNECT needs host:port"));
        };
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err(refuse(StatusCode::BAD_REQUEST, "CONNECT needs host:port"));
        }
        let port = authority.port_u16().unwrap_or(443);
        if !cfg.connect_ports.contains(&port) {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                format!("CONNECT to port {port} is not allowed (proxy.connect_ports)"),
            ));
        }
        let intercept = cfg.intercepts(&host);
        return Ok(Plan::Connect {
            host,
            port,
            intercept,
        });
    }
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let url = match (tunnel, uri.scheme_str()) {
        (Some(authority), _) => format!("https://{authority}{path_and_query}"),
        (None, Some("http" | "https")) if uri.authority().is_some() => uri.to_string(),
        (None, Some(other)) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                format!("scheme '{other}' is not proxied"),
            ));
        }
        (None, None) if uri.path().starts_with("/v2") => {
            let base = mirror_base(headers, uri.query(), &cfg.mirror_default)
                .map_err(|m| refuse(StatusCode::BAD_REQUEST, m))?;
            format!("{base}{path_and_query}")
        }
        (None, None) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "not a proxy request: use an absolute URI, CONNECT, or a /v2/ registry path",
            ));
        }
    };
    // Whatever the request target and headers were, what leaves here is a usable URL.
    if df_core::ids::validate_http_url(&url).is_err() {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            format!("'{url}' is not a usable URL"),
        ));
    }
    let p2p = method == Method::GET
        && p2p_enabled
        && (headers
            .get(HEADER_USE_P2P)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
            || {
                let bare = url.split(['?', '#']).next().unwrap_or(&url);
                cfg.rules.iter().any(|r| r.is_match(bare))
            });
    Ok(Plan::Fetch { url, p2p })
}

/// The registry a mirror request is for, as `scheme://host[:port]`: the
/// `X-Dragonfly-Registry` header, else containerd's `ns=` parameter (HTTPS, Docker Hub's
/// `docker.io` meaning its registry host), else the configured default.
fn mirror_base(
    headers: &http::HeaderMap,
    query: Option<&str>,
    default: &url::Url,
) -> Result<String, String> {
    if let Some(v) = headers.get(HEADER_REGISTRY) {
        let v = v
            .to_str()
            .map_err(|_| format!("{HEADER_REGISTRY} is not text"))?;
        return registry_base(v)
            .ok_or_else(|| format!("{HEADER_REGISTRY} '{v}' is not a registry address"));
    }
    let ns = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "ns")
            .map(|(_, v)| v.into_owned())
    });
    if let Some(ns) = ns {
        let ns = if ns == "docker.io" {
            "registry-1.docker.io".to_owned()
        } else {
            ns
        };
        return registry_base(&ns).ok_or_else(|| format!("ns '{ns}' is not a registry address"));
    }
    Ok(default.as_str().trim_end_matches('/').to_owned())
}

/// `http://host:port` from a registry address given with or without a scheme (without one,
/// HTTPS, as container runtimes assume).
fn registry_base(v: &str) -> Option<String> {
    let v = v.trim().trim_end_matches('/');
    let with_scheme = if v.contains("://") {
        v.to_owned()
    } else {
        format!("https://{v}")
    };
    let parsed = df_core::ids::validate_http_url(&with_scheme).ok()?;
    let host = parsed.host_str()?;
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    Some(match parsed.port() {
        Some(p) => format!("{}://{host}:{p}", parsed.scheme()),
        None => format!("{}://{host}", parsed.scheme()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn cfg() -> ProxyConfig {
        let mut c = crate::Config::for_dir(std::path::Path::new("/tmp/unused")).proxy;
        c.connect_ports = vec![443, 5443];
        c.hijack_hosts = vec![regex::Regex::new("^(?:registry\\.test)$").expect("regex")];
        c.hijack_ca = Some((String::new(), String::new()));
        c
    }

    fn decide(
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        tunnel: Option<&str>,
        on: bool,
    ) -> Result<Plan, Refusal> {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.append(
                http::header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        let method = Method::from_bytes(method.as_bytes()).expect("method");
        plan(&method, &uri.parse().expect("uri"), &h, tunnel, &cfg(), on)
    }

    fn fetch(url: &str, p2p: bool) -> Result<Plan, Refusal> {
        Ok(Plan::Fetch {
            url: url.to_owned(),
            p2p,
        })
    }

    #[test]
    fn routing_decisions() {
        let blob = "http://registry.test:5000/v2/a/blobs/sha256:abc";
        assert_eq!(decide("GET", blob, &[], None, true), fetch(blob, true));
        assert_eq!(
            decide("GET", blob, &[], None, false),
            fetch(blob, false),
            "switched off"
        );
        assert_eq!(
            decide("HEAD", blob, &[], None, true),
            fetch(blob, false),
            "HEAD never P2P"
        );
        let manifest = "http://registry.test:5000/v2/a/manifests/1";
        assert_eq!(
            decide("GET", manifest, &[], None, true),
            fetch(manifest, false)
        );
        assert_eq!(
            decide(
                "GET",
                manifest,
                &[("x-dragonfly-use-p2p", "TRUE")],
                None,
                true
            ),
            fetch(manifest, true)
        );
        // The query does not count for the rules.
        let q = "http://r/v2/a/manifests/1?x=blobs/sha256:1";
        assert_eq!(decide("GET", q, &[], None, true), fetch(q, false));
        assert_eq!(
            decide(
                "GET",
                "/v2/a/blobs/sha256:1?ns=registry.test",
                &[],
                None,
                true
            ),
            fetch(
                "https://registry.test/v2/a/blobs/sha256:1?ns=registry.test",
                true
            )
        );
        assert_eq!(
            decide(
                "GET",
                "/v2/a/blobs/sha256:1",
                &[],
                Some("registry.test:5443"),
                true
            ),
            fetch("https://registry.test:5443/v2/a/blobs/sha256:1", true)
        );
        assert_eq!(
            decide("CONNECT", "registry.test:5443", &[], None, true),
            Ok(Plan::Connect {
                host: "registry.test".into(),
                port: 5443,
                intercept: true
            })
        );
        assert_eq!(
            decide("CONNECT", "other.test:443", &[], None, true),
            Ok(Plan::Connect {
                host: "other.test".into(),
                port: 443,
                intercept: false
            })
        );
        assert_eq!(
            decide("CONNECT", "registry.test:22", &[], None, true).map_err(|r| r.status),
            Err(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            decide("CONNECT", "registry.test:443", &[], Some("x"), true).map_err(|r| r.status),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            decide("GET", "/etc/passwd", &[], None, true).map_err(|r| r.status),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            decide("GET", "ftp://x/y", &[], None, true).map_err(|r| r.status),
            Err(StatusCode::BAD_REQUEST)
        );
    }

    proptest::proptest! {
        /// Whatever the head, the decision never panics, a fetch is always of an absolute
        /// http(s) URL with a host, and only GETs go P2P.
        #[test]
        fn any_request_head_gets_a_sane_decision(
            method in proptest::sample::select(vec!["GET", "HEAD", "POST", "PUT", "CONNECT", "DELETE", "PATCH"]),
            uri in "[ -~]{0,80}",
            registry in proptest::option::of("[ -~]{0,40}"),
            tunnel in proptest::option::of("[a-z0-9.:-]{1,30}"),
            on in proptest::bool::ANY,
        ) {
            let Ok(uri) = uri.parse::<Uri>() else { return Ok(()) };
            let mut h = HeaderMap::new();
            if let Some(r) = registry.and_then(|r| HeaderValue::from_str(&r).ok()) {
                h.insert(HEADER_REGISTRY, r);
            }
            let method = Method::from_bytes(method.as_bytes()).expect("method");
            if let Ok(Plan::Fetch { url, p2p }) = plan(&method, &uri, &h, tunnel.as_deref(), &cfg(), on) {
                let parsed = url::Url::parse(&url);
                proptest::prop_assert!(parsed.is_ok(), "{url}");
                let parsed = parsed.expect("checked");
                proptest::prop_assert!(matches!(parsed.scheme(), "http" | "https"), "{url}");
                proptest::prop_assert!(parsed.host_str().is_some_and(|h| !h.is_empty()), "{url}");
                proptest::prop_assert!(!p2p || method == Method::GET);
            }
        }
    }

    #[test]
    fn mirror_registry_comes_from_header_then_ns_then_default() {
        let default = url::Url::parse("https://index.docker.io").expect("url");
        let mut h = http::HeaderMap::new();
        let pick = |h: &http::HeaderMap, q| mirror_base(h, q, &default);
        assert_eq!(pick(&h, None).as_deref(), Ok("https://index.docker.io"));
        assert_eq!(
            pick(&h, Some("ns=registry.test%3A5443")).as_deref(),
            Ok("https://registry.test:5443")
        );
        assert_eq!(
            pick(&h, Some("ns=docker.io")).as_deref(),
            Ok("https://registry-1.docker.io")
        );
        h.insert(
            HEADER_REGISTRY,
            HeaderValue::from_static("http://registry.test:5000"),
        );
        assert_eq!(
            pick(&h, Some("ns=other")).as_deref(),
            Ok("http://registry.test:5000")
        );
        h.insert(HEADER_REGISTRY, HeaderValue::from_static("ftp://nope"));
        assert!(pick(&h, None).is_err());
    }

    #[test]
    fn registry_addresses_normalise() {
        assert_eq!(
            registry_base("registry.test:5000").as_deref(),
            Some("https://registry.test:5000")
        );
        assert_eq!(
            registry_base("http://registry.test:5000/").as_deref(),
            Some("http://registry.test:5000")
        );
        assert_eq!(
            registry_base("https://index.docker.io").as_deref(),
            Some("https://index.docker.io")
        );
        assert_eq!(registry_base("ftp://x"), None);
        assert_eq!(registry_base(""), None);
    }
}
