//! `<scheme>://<registry>/v2/<repo>/manifests/<reference>`, the one shape of an image's
//! manifest URL: dfctl builds it from an image reference and recognises it among preheat
//! targets; the scheduler takes it apart to resolve the image. Invariant: a [`ManifestUrl`]
//! has a non-empty repository and a reference without `/`, and no query or fragment.

use std::fmt;

/// Why a URL is not a manifest URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "'{url}' is not a manifest URL (<scheme>://<registry>/v2/<repo>/manifests/<tag or digest>): {reason}"
)]
pub struct ManifestUrlError {
    pub url: String,
    pub reason: String,
}

/// A manifest URL, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestUrl {
    /// `<scheme>://<registry>` (host and port as given).
    pub base: String,
    pub repository: String,
    pub reference: String,
}

impl ManifestUrl {
    /// The manifest of `repository` at `reference` (a tag or digest) on the registry at `base`
    /// (`<scheme>://<host[:port]>`).
    pub fn new(base: &str, repository: &str, reference: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            repository: repository.to_owned(),
            reference: reference.to_owned(),
        }
    }

    /// Whether `url`'s path has the manifest shape, valid or not: such a URL names an image,
    /// and [`parse`](Self::parse) says what is wrong with it.
    pub fn looks_like(url: &url::Url) -> bool {
        url.path().starts_with("/v2/") && url.path().contains("/manifests/")
    }

    pub fn parse(url: &str) -> Result<Self, ManifestUrlError> {
        let bad = |reason: &str| ManifestUrlError {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let parsed = crate::ids::validate_http_url(url).map_err(|e| bad(&e.to_string()))?;
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(bad("it has a query or fragment"));
        }
        let host = parsed.host_str().ok_or_else(|| bad("no host"))?;
        let authority = match parsed.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_owned(),
        };
        let path = parsed.path();
        let rest = path
            .strip_prefix("/v2/")
            .ok_or_else(|| bad("the path does not start with /v2/"))?;
        let (repository, reference) = rest
            .rsplit_once("/manifests/")
            .ok_or_else(|| bad("no /manifests/ in the path"))?;
        if repository.is_empty() || reference.is_empty() || reference.contains('/') {
            return Err(bad("empty repository or reference"));
        }
        Ok(Self {
            base: format!("{}://{authority}", parsed.scheme()),
            repository: repository.to_owned(),
            reference: reference.to_owned(),
        })
    }

    /// `host[:port]` of the registry, as credentials are keyed.
    pub fn registry(&self) -> &str {
        self.base
            .split_once("://")
            .map_or(self.base.as_str(), |(_, authority)| authority)
    }

    /// The manifest of the same repository at another `reference`.
    pub fn manifest(&self, reference: &str) -> String {
        format!("{}/v2/{}/manifests/{reference}", self.base, self.repository)
    }

    pub fn blob(&self, digest: &str) -> String {
        format!("{}/v2/{}/blobs/{digest}", self.base, self.repository)
    }
}

impl fmt::Display for ManifestUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.manifest(&self.reference))
    }
}

/// A manifest URL equals the text it is written as.
impl PartialEq<&str> for ManifestUrl {
    fn eq(&self, other: &&str) -> bool {
        other
            .strip_prefix(self.base.as_str())
            .and_then(|r| r.strip_prefix("/v2/"))
            .and_then(|r| r.strip_prefix(self.repository.as_str()))
            .and_then(|r| r.strip_prefix("/manifests/"))
            == Some(self.reference.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_urls_parse_back_and_name_their_registry() {
        let u = ManifestUrl::new("https://registry.test:5443", "e2e/img", "v1");
        assert_eq!(
            u.to_string(),
            "https://registry.test:5443/v2/e2e/img/manifests/v1"
        );
        assert_eq!(ManifestUrl::parse(&u.to_string()), Ok(u.clone()));
        assert_eq!(u.registry(), "registry.test:5443");
        let err = ManifestUrl::parse("https://h/v2/x/manifests/").expect_err("no reference");
        assert!(err.to_string().contains("empty repository"), "{err}");
    }
}
