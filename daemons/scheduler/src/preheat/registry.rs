//! Resolving an image for preheat: manifest URL -> the blobs (config and layers) to fetch, and
//! the `Authorization` value that lets peers fetch them.
//!
//! The registry's auth flow as a client meets it: the manifest `GET` is answered `401` with a
//! `WWW-Authenticate` challenge; `Bearer realm=..,service=..,scope=..` means fetching a token
//! from the realm (with the job's credentials as Basic auth, or anonymously) and retrying with
//! `Bearer <token>`; `Basic` means retrying with the credentials. An `Authorization` header in
//! the job (Harbor sends a pull token) is used as is. An image index is narrowed to the asked
//! platform (every platform with `all`, except attestation entries `unknown/unknown`).
//!
//! Invariants: blob URLs are `<scheme>://<registry>/v2/<repo>/blobs/<digest>`, exactly the URLs
//! runtimes fetch, so the task IDs computed from them are the ones the peers' proxies compute
//! when a client later pulls; each digest is listed once; manifests are read with a size cap.

use std::collections::BTreeMap;
use std::time::Duration;

use df_core::manifest_url::{ManifestUrl, ManifestUrlError};
use futures_util::StreamExt as _;
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT, AUTHORIZATION, HeaderMap, HeaderName, HeaderValue, WWW_AUTHENTICATE,
};
use serde::Deserialize;

/// Manifests larger than this are refused (real ones are a few KiB).
const MANIFEST_LIMIT: usize = 4 * 1024 * 1024;
/// Registry error bodies kept in the job's error.
const ERROR_BODY_LIMIT: usize = 512;

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_V1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const DOCKER_V1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Every manifest type we read, as one Accept value per type (registries pick the first the
/// image has).
const ACCEPTED: &[&str] = &[
    OCI_INDEX,
    DOCKER_LIST,
    OCI_MANIFEST,
    DOCKER_MANIFEST,
    DOCKER_V1_SIGNED,
    DOCKER_V1,
];

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    BadUrl(#[from] ManifestUrlError),
    #[error("'{0}' is not a platform (os/arch[/variant] or all)")]
    BadPlatform(String),
    #[error("GET {url}: {reason}")]
    Request { url: String, reason: String },
    #[error("GET {url}: registry answered {status}{message}")]
    Registry {
        url: String,
        status: StatusCode,
        /// `: <first line of the body>` or empty.
        message: String,
    },
    #[error("{url}: {reason}")]
    Manifest { url: String, reason: String },
    #[error("{url}: the registry asks for credentials ({scheme}) and the job has none")]
    NeedsCredentials { url: String, scheme: String },
    #[error("{url}: no manifest for platform {wanted} in the index (it has: {have})")]
    NoPlatform {
        url: String,
        wanted: String,
        have: String,
    },
    #[error("HTTP client: {0}")]
    Client(String),
    #[error(
        "{url}: the registry names token realm {realm}, which is neither https nor the registry's own host; the job's credentials are not sent there"
    )]
    Realm { url: String, realm: String },
}

/// Whether the job's credentials may go to the token `realm` a registry at `registry` named:
/// over https, or to the registry's own host (the registry has them anyway).
fn realm_may_get_credentials(realm: &str, registry: &str) -> bool {
    let (Ok(realm), Ok(registry)) = (reqwest::Url::parse(realm), reqwest::Url::parse(registry))
    else {
        return false;
    };
    realm.scheme() == "https"
        || (realm.host_str().is_some() && realm.host_str() == registry.host_str())
}

/// Which manifests of an index to take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformChoice {
    All,
    One {
        os: String,
        arch: String,
        variant: Option<String>,
    },
}

impl PlatformChoice {
    /// `""` (linux/amd64), `all`, or `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Self, ResolveError> {
        let s = s.trim();
        if s.is_empty() {
            return Self::parse("linux/amd64");
        }
        if s.eq_ignore_ascii_case("all") {
            return Ok(Self::All);
        }
        let parts: Vec<&str> = s.split('/').collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        };
        match parts.as_slice() {
            [os, arch] if ok(os) && ok(arch) => Ok(Self::One {
                os: (*os).to_owned(),
                arch: (*arch).to_owned(),
                variant: None,
            }),
            [os, arch, variant] if ok(os) && ok(arch) && ok(variant) => Ok(Self::One {
                os: (*os).to_owned(),
                arch: (*arch).to_owned(),
                variant: Some((*variant).to_owned()),
            }),
            _ => Err(ResolveError::BadPlatform(s.to_owned())),
        }
    }

    fn matches(&self, p: &Platform) -> bool {
        match self {
            Self::All => !(p.os == "unknown" && p.architecture == "unknown"),
            Self::One { os, arch, variant } => {
                &p.os == os
                    && &p.architecture == arch
                    && variant
                        .as_ref()
                        .is_none_or(|v| p.variant.as_deref() == Some(v))
            }
        }
    }
}

impl std::fmt::Display for PlatformChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::All => f.write_str("all"),
            Self::One {
                os,
                arch,
                variant: None,
            } => write!(f, "{os}/{arch}"),
            Self::One {
                os,
                arch,
                variant: Some(v),
            } => write!(f, "{os}/{arch}/{v}"),
        }
    }
}

/// One object to preheat.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct ResolvedBlob {
    pub url: String,
    pub digest: String,
    pub size: Option<u64>,
    pub media_type: String,
    /// `os/arch[/variant]` when it came through an index; empty otherwise.
    pub platform: String,
}

#[derive(Debug, Clone)]
pub struct Resolved {
    pub blobs: Vec<ResolvedBlob>,
    /// What the peers must send to fetch the blobs; `None` for an open registry.
    pub authorization: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    variant: Option<String>,
}

impl Platform {
    fn label(&self) -> String {
        match &self.variant {
            Some(v) if !v.is_empty() => format!("{}/{}/{v}", self.os, self.architecture),
            _ => format!("{}/{}", self.os, self.architecture),
        }
    }
}

#[derive(Debug, Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Debug, Deserialize)]
struct FsLayer {
    #[serde(rename = "blobSum")]
    blob_sum: String,
}

/// Any manifest or index; which one it is comes from `mediaType` or its fields.
#[derive(Debug, Deserialize)]
struct AnyManifest {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(rename = "fsLayers", default)]
    fs_layers: Option<Vec<FsLayer>>,
}

/// The registry client of the scheduler: no proxy, TLS verified against the system store plus
/// `jobs.registry_ca_certs`, every request bounded by `jobs.registry_timeout`.
#[derive(Debug, Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
}

impl RegistryClient {
    pub fn new(
        ca_pems: &[(std::path::PathBuf, Vec<u8>)],
        timeout: Duration,
    ) -> Result<Self, ResolveError> {
        let mut roots = Vec::new();
        for (path, pem) in ca_pems {
            roots.extend(reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                ResolveError::Client(format!(
                    "{}: not a PEM certificate bundle: {e}",
                    path.display()
                ))
            })?);
        }
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(timeout)
            .timeout(timeout)
            .tls_certs_merge(roots)
            .user_agent(concat!("dfscheduler/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ResolveError::Client(e.to_string()))?;
        Ok(Self { http })
    }

    /// The blobs of the image at `url` for `platform`, and the auth the peers need for them.
    pub async fn resolve(
        &self,
        url: &str,
        headers: &BTreeMap<String, String>,
        credentials: Option<(&str, &str)>,
        platform: &PlatformChoice,
    ) -> Result<Resolved, ResolveError> {
        let target = ManifestUrl::parse(url)?;
        let mut session = Session {
            client: self,
            target: &target,
            headers: extra_headers(headers),
            authorization: headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
                .map(|(_, v)| v.clone()),
            credentials,
        };
        let (body, media_type) = session
            .manifest(&target.manifest(&target.reference))
            .await?;
        let top = parse_manifest(url, &body)?;
        let mut blobs: Vec<ResolvedBlob> = Vec::new();
        let mut push = |b: ResolvedBlob| {
            if !blobs.iter().any(|x| x.digest == b.digest) {
                blobs.push(b);
            }
        };
        if is_index(&media_type, &top) {
            let entries = top.manifests.unwrap_or_default();
            let chosen: Vec<&Descriptor> = entries
                .iter()
                .filter(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
                .collect();
            if chosen.is_empty() {
                let have: Vec<String> = entries
                    .iter()
                    .filter_map(|d| d.platform.as_ref().map(Platform::label))
                    .collect();
                return Err(ResolveError::NoPlatform {
                    url: url.to_owned(),
                    wanted: platform.to_string(),
                    have: if have.is_empty() {
                        "none".into()
                    } else {
                        have.join(", ")
                    },
                });
            }
            for d in chosen {
                let label = d.platform.as_ref().map(Platform::label).unwrap_or_default();
                let child_url = target.manifest(&d.digest);
                let (body, media_type) = session.manifest(&child_url).await?;
                let child = parse_manifest(&child_url, &body)?;
                if is_index(&media_type, &child) {
                    return Err(ResolveError::Manifest {
                        url: child_url,
                        reason: "an index inside an index is not supported".into(),
                    });
                }
                for b in image_blobs(&target, &child_url, child, &label)? {
                    push(b);
                }
            }
        } else {
            for b in image_blobs(&target, url, top, "")? {
                push(b);
            }
        }
        Ok(Resolved {
            blobs,
            authorization: session.authorization,
        })
    }
}

fn extra_headers(headers: &BTreeMap<String, String>) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (k, v) in headers {
        if k.eq_ignore_ascii_case("authorization") || k.eq_ignore_ascii_case("accept") {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::try_from(k.as_str()),
            HeaderValue::try_from(v.as_str()),
        ) {
            out.append(name, value);
        }
    }
    out
}

fn is_index(media_type: &str, m: &AnyManifest) -> bool {
    let declared = if m.media_type.is_empty() {
        media_type
    } else {
        &m.media_type
    };
    declared.starts_with(OCI_INDEX)
        || declared.starts_with(DOCKER_LIST)
        || (m.manifests.is_some() && m.layers.is_none())
}

fn parse_manifest(url: &str, body: &[u8]) -> Result<AnyManifest, ResolveError> {
    serde_json::from_slice(body).map_err(|e| ResolveError::Manifest {
        url: url.to_owned(),
        reason: format!("not a manifest: {e}"),
    })
}

fn image_blobs(
    target: &ManifestUrl,
    url: &str,
    m: AnyManifest,
    platform: &str,
) -> Result<Vec<ResolvedBlob>, ResolveError> {
    let blob = |d: Descriptor| ResolvedBlob {
        url: target.blob(&d.digest),
        digest: d.digest,
        size: d.size,
        media_type: d.media_type,
        platform: platform.to_owned(),
    };
    if let Some(layers) = m.layers {
        let mut out: Vec<ResolvedBlob> = m.config.into_iter().map(blob).collect();
        out.extend(layers.into_iter().map(blob));
        return Ok(out);
    }
    if let Some(fs) = m.fs_layers {
        // Schema 1 lists layers newest first, with repeats and no sizes.
        return Ok(fs
            .into_iter()
            .map(|l| ResolvedBlob {
                url: target.blob(&l.blob_sum),
                digest: l.blob_sum,
                size: None,
                media_type: "application/vnd.docker.image.rootfs.diff.tar.gzip".into(),
                platform: platform.to_owned(),
            })
            .collect());
    }
    Err(ResolveError::Manifest {
        url: url.to_owned(),
        reason: "neither an image manifest nor an index (no layers, no manifests)".into(),
    })
}

/// One resolution: the auth obtained so far is reused for every later request.
struct Session<'a> {
    client: &'a RegistryClient,
    target: &'a ManifestUrl,
    headers: HeaderMap,
    authorization: Option<String>,
    credentials: Option<(&'a str, &'a str)>,
}

impl Session<'_> {
    async fn get(&self, url: &str) -> Result<reqwest::Response, ResolveError> {
        let mut rb = self.client.http.get(url).headers(self.headers.clone());
        for a in ACCEPTED {
            rb = rb.header(ACCEPT, *a);
        }
        if let Some(auth) = &self.authorization {
            rb = rb.header(AUTHORIZATION, auth);
        }
        rb.send().await.map_err(|e| ResolveError::Request {
            url: url.to_owned(),
            reason: error_chain(&e),
        })
    }

    /// A manifest's bytes and content type, authenticating on a challenge once.
    async fn manifest(&mut self, url: &str) -> Result<(Vec<u8>, String), ResolveError> {
        let mut resp = self.get(url).await?;
        if resp.status() == StatusCode::UNAUTHORIZED && self.authorize(url, &resp).await? {
            resp = self.get(url).await?;
        }
        let status = resp.status();
        if !status.is_success() {
            return Err(registry_error(url, resp).await);
        }
        let media_type = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = read_limited(url, resp, MANIFEST_LIMIT).await?;
        Ok((body, media_type))
    }

    /// Answers a 401's challenge; false when there is nothing new to try.
    async fn authorize(
        &mut self,
        url: &str,
        resp: &reqwest::Response,
    ) -> Result<bool, ResolveError> {
        let Some(challenge) = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .map(Challenge::parse)
        else {
            return Ok(false);
        };
        // A token we were given (Harbor's) or already obtained was refused: asking again
        // with the same inputs would be refused too.
        if self.authorization.is_some() && self.credentials.is_none() {
            return Ok(false);
        }
        match challenge {
            Challenge::Basic => {
                let Some((user, pass)) = self.credentials else {
                    return Err(ResolveError::NeedsCredentials {
                        url: url.to_owned(),
                        scheme: "Basic".into(),
                    });
                };
                let value = basic_value(&self.client.http, url, user, pass)?;
                if self.authorization.as_deref() == Some(value.as_str()) {
                    return Ok(false);
                }
                self.authorization = Some(value);
                Ok(true)
            }
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let scope =
                    scope.unwrap_or_else(|| format!("repository:{}:pull", self.target.repository));
                let mut query: Vec<(&str, &str)> = vec![("scope", scope.as_str())];
                if let Some(s) = &service {
                    query.push(("service", s.as_str()));
                }
                let mut rb = self.client.http.get(&realm).query(&query);
                if let Some((user, pass)) = self.credentials {
                    if !realm_may_get_credentials(&realm, url) {
                        return Err(ResolveError::Realm {
                            url: url.to_owned(),
                            realm,
                        });
                    }
                    rb = rb.basic_auth(user, Some(pass));
                }
                let token_resp = rb.send().await.map_err(|e| ResolveError::Request {
                    url: realm.clone(),
                    reason: error_chain(&e),
                })?;
                if !token_resp.status().is_success() {
                    return Err(registry_error(&realm, token_resp).await);
                }
                #[derive(Deserialize)]
                struct Token {
                    #[serde(default)]
                    token: String,
                    #[serde(default)]
                    access_token: String,
                }
                let body = read_limited(&realm, token_resp, MANIFEST_LIMIT).await?;
                let t: Token =
                    serde_json::from_slice(&body).map_err(|e| ResolveError::Manifest {
                        url: realm.clone(),
                        reason: format!("not a token response: {e}"),
                    })?;
                let token = if t.token.is_empty() {
                    t.access_token
                } else {
                    t.token
                };
                if token.is_empty() {
                    return Err(ResolveError::Manifest {
                        url: realm,
                        reason: "the token response holds no token".into(),
                    });
                }
                let value = format!("Bearer {token}");
                if self.authorization.as_deref() == Some(value.as_str()) {
                    return Ok(false);
                }
                self.authorization = Some(value);
                Ok(true)
            }
            Challenge::Other(scheme) => Err(ResolveError::NeedsCredentials {
                url: url.to_owned(),
                scheme,
            }),
        }
    }
}

/// `Basic <base64(user:pass)>`, encoded by reqwest itself.
fn basic_value(
    http: &reqwest::Client,
    url: &str,
    user: &str,
    pass: &str,
) -> Result<String, ResolveError> {
    let req = http
        .get(url)
        .basic_auth(user, Some(pass))
        .build()
        .map_err(|e| ResolveError::Client(e.to_string()))?;
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| ResolveError::Client("cannot encode Basic credentials".into()))
}

#[derive(Debug, PartialEq, Eq)]
enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Other(String),
}

impl Challenge {
    /// `Bearer realm="..",service="..",scope=".."` or `Basic realm=".."`.
    fn parse(header: &str) -> Self {
        let header = header.trim();
        let (scheme, params) = header.split_once(' ').unwrap_or((header, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            return Self::Basic;
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Self::Other(scheme.to_owned());
        }
        let params = auth_params(params);
        match params.get("realm") {
            Some(realm) => Self::Bearer {
                realm: realm.clone(),
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            },
            None => Self::Other("Bearer without realm".into()),
        }
    }
}

/// `k="v",k2=v2` (commas inside quotes allowed, as in `scope="repository:a:pull,push"`).
fn auth_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, tail) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.insert(key, value.to_owned());
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

async fn read_limited(
    url: &str,
    resp: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, ResolveError> {
    let mut out = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| ResolveError::Request {
            url: url.to_owned(),
            reason: error_chain(&e),
        })?;
        if out.len() + chunk.len() > limit {
            return Err(ResolveError::Manifest {
                url: url.to_owned(),
                reason: format!("more than {limit} bytes"),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn registry_error(url: &str, resp: reqwest::Response) -> ResolveError {
    let status = resp.status();
    let body = read_limited(url, resp, 64 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or_default();
    let line: String = line.chars().take(ERROR_BODY_LIMIT).collect();
    ResolveError::Registry {
        url: url.to_owned(),
        status,
        message: if line.is_empty() {
            String::new()
        } else {
            format!(": {line}")
        },
    }
}

fn error_chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out = format!("{out}: {s}");
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_urls_split_into_registry_repo_and_reference() {
        let u = ManifestUrl::parse("https://registry.test:5443/v2/e2e/img/manifests/v1")
            .expect("parses");
        assert_eq!(u.base, "https://registry.test:5443");
        assert_eq!(u.repository, "e2e/img");
        assert_eq!(u.reference, "v1");
        assert_eq!(
            u.blob("sha256:ab"),
            "https://registry.test:5443/v2/e2e/img/blobs/sha256:ab"
        );
        let d =
            ManifestUrl::parse("http://h/v2/library/alpine/manifests/sha256:0123").expect("parses");
        assert_eq!(d.reference, "sha256:0123");
        assert_eq!(d.base, "http://h");
        for bad in [
            "https://h/v1/x/manifests/t",
            "https://h/v2/x/blobs/sha256:a",
            "https://h/v2//manifests/t",
            "https://h/v2/x/manifests/",
            "ftp://h/v2/x/manifests/t",
            "https://h/v2/x/manifests/t?x=1",
        ] {
            assert!(ManifestUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn challenges_parse() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push""#
            ),
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull,push".into()),
            }
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="df-e2e""#),
            Challenge::Basic
        );
        assert_eq!(
            Challenge::parse("Bearer realm=https://a/t"),
            Challenge::Bearer {
                realm: "https://a/t".into(),
                service: None,
                scope: None
            }
        );
        assert!(matches!(Challenge::parse("Negotiate"), Challenge::Other(_)));
    }

    #[test]
    fn platforms_parse_and_match() {
        let p = |os: &str, arch: &str, variant: Option<&str>| Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: variant.map(Into::into),
        };
        let default = PlatformChoice::parse("").expect("default");
        assert_eq!(default.to_string(), "linux/amd64");
        assert!(default.matches(&p("linux", "amd64", None)));
        assert!(!default.matches(&p("linux", "arm64", Some("v8"))));
        let arm = PlatformChoice::parse("linux/arm64/v8").expect("parses");
        assert!(arm.matches(&p("linux", "arm64", Some("v8"))));
        assert!(!arm.matches(&p("linux", "arm64", None)));
        let all = PlatformChoice::parse("all").expect("parses");
        assert!(all.matches(&p("linux", "s390x", None)));
        assert!(
            !all.matches(&p("unknown", "unknown", None)),
            "attestations are not images"
        );
        for bad in ["linux", "linux/", "a/b/c/d", "linux/amd 64"] {
            assert!(PlatformChoice::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn image_manifests_list_config_then_layers_and_indexes_are_recognised() {
        let target = ManifestUrl::parse("https://r/v2/a/b/manifests/t").expect("url");
        let m: AnyManifest = serde_json::from_str(
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
                "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:c","size":10},
                "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:l1","size":20},
                          {"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:l2","size":30}]}"#,
        )
        .expect("manifest");
        assert!(!is_index("", &m));
        let blobs = image_blobs(&target, "u", m, "").expect("blobs");
        let digests: Vec<&str> = blobs.iter().map(|b| b.digest.as_str()).collect();
        assert_eq!(digests, ["sha256:c", "sha256:l1", "sha256:l2"]);
        assert_eq!(blobs[2].url, "https://r/v2/a/b/blobs/sha256:l2");
        assert_eq!(blobs[1].size, Some(20));
        let index: AnyManifest = serde_json::from_str(
            r#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:m","size":1,"platform":{"os":"linux","architecture":"amd64"}}]}"#,
        )
        .expect("index");
        assert!(
            is_index("", &index),
            "an index without mediaType is still an index"
        );
    }

    #[test]
    fn credentials_go_only_to_https_realms_or_the_registry_itself() {
        let registry = "http://registry.internal:5000/v2/app/manifests/1";
        assert!(realm_may_get_credentials(
            "https://auth.example/token",
            registry
        ));
        assert!(realm_may_get_credentials(
            "http://registry.internal:5000/token",
            registry
        ));
        assert!(!realm_may_get_credentials(
            "http://evil.example/token",
            registry
        ));
        assert!(!realm_may_get_credentials("not a url", registry));
    }
}
