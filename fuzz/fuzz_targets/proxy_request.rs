//! Fuzzes the proxy's request handling below hyper's own parser: a raw request head (request
//! line and header lines) is split as a server would, turned into `http` types wherever they
//! accept it, and given to the routing decision with a config that intercepts one host. The
//! decision must never panic; a fetch must name an absolute http(s) URL; only GETs go P2P; a
//! Range header must parse to a range inside the object or to nothing.
#![no_main]

use std::sync::OnceLock;

use df_peer::proxy::plan::{Plan, plan};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use libfuzzer_sys::fuzz_target;

fn config() -> &'static df_peer::config::ProxyConfig {
    static CFG: OnceLock<df_peer::config::ProxyConfig> = OnceLock::new();
    CFG.get_or_init(|| {
        let mut c = df_peer::Config::for_dir(std::path::Path::new("/nonexistent")).proxy;
        c.connect_ports = vec![443, 5443];
        c.hijack_hosts = vec![regex::Regex::new("^(?:registry\\.test)$").expect("a valid regex")];
        c.hijack_ca = Some((String::new(), String::new()));
        c
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split("\r\n");
    let Some(request_line) = lines.next() else {
        return;
    };
    let mut parts = request_line.splitn(3, ' ');
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return;
    };
    let Ok(uri) = target.parse::<Uri>() else {
        return;
    };
    let mut headers = HeaderMap::new();
    for line in lines.by_ref().take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) {
            headers.append(n, v);
        }
    }
    let tunnel = headers.get("x-fuzz-tunnel").and_then(|v| v.to_str().ok());
    let on = !headers.contains_key("x-fuzz-off");
    if let Ok(Plan::Fetch { url, p2p }) = plan(&method, &uri, &headers, tunnel, config(), on) {
        assert!(
            url.starts_with("http://") || url.starts_with("https://"),
            "{url}"
        );
        assert!(!p2p || method == Method::GET);
    }
    if let Some(range) = headers.get("range").and_then(|v| v.to_str().ok()) {
        let total = data.len() as u64;
        if let Some((start, end)) = df_peer::download::parse_range(range, total) {
            assert!(start < end && end <= total);
        }
    }
});
