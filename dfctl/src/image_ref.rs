//! Image references as `docker pull` reads them, turned into the registry manifest URL a
//! preheat job names.
//!
//! The rules (distribution's reference grammar, normalised as Docker does): the first path
//! component is a registry when it contains `.` or `:` or is `localhost`, else the image is on
//! Docker Hub (`docker.io`, served at `registry-1.docker.io`), where a one-component name gets
//! `library/`. `@sha256:...` pins a digest (a tag beside it is ignored, as the registry would
//! ignore it); otherwise the tag after the last `:` of the last component, default `latest`.

use df_core::manifest_url::ManifestUrl;
use std::fmt;

/// Docker Hub's registry API endpoint (`docker.io` is only its name).
const DOCKER_HUB_API: &str = "registry-1.docker.io";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// `host[:port]` as written, `docker.io` for Docker Hub.
    pub registry: String,
    pub repository: String,
    /// A tag or a `sha256:<hex>` digest.
    pub reference: String,
}

#[derive(Debug, thiserror::Error)]
#[error("'{reference}' is not an image reference: {reason}")]
pub struct ImageRefError {
    reference: String,
    reason: &'static str,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<Self, ImageRefError> {
        let err = |reason| ImageRefError {
            reference: s.to_owned(),
            reason,
        };
        if s.is_empty() || s.contains("://") || s.chars().any(char::is_whitespace) {
            return Err(err("expected [REGISTRY/]REPOSITORY[:TAG][@DIGEST]"));
        }
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (s, None),
        };
        if let Some(d) = digest {
            let hex = d
                .strip_prefix("sha256:")
                .ok_or_else(|| err("the digest must be sha256:<hex>"))?;
            if hex.len() != 64
                || !hex
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                return Err(err(
                    "the digest must be sha256: and 64 lower-case hex characters",
                ));
            }
        }
        // The tag is after the last ':' that follows the last '/' (a registry port is not).
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (path, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
            None => (name, None),
        };
        if let Some(t) = tag
            && (t.is_empty()
                || t.len() > 128
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
                || t.starts_with(['.', '-']))
        {
            return Err(err(
                "a tag is up to 128 of [A-Za-z0-9_.-], not starting with . or -",
            ));
        }
        let (registry, repository) = match path.split_once('/') {
            Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
                (first.to_owned(), rest.to_owned())
            }
            _ => ("docker.io".to_owned(), path.to_owned()),
        };
        let repository = if registry == "docker.io" && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
                })
                && c.starts_with(|ch: char| ch.is_ascii_alphanumeric())
                && c.ends_with(|ch: char| ch.is_ascii_alphanumeric())
        };
        if !repository.split('/').all(component_ok) {
            return Err(err("repository components are lower-case [a-z0-9._-]"));
        }
        let reference = match (digest, tag) {
            (Some(d), _) => d.to_owned(),
            (None, Some(t)) => t.to_owned(),
            (None, None) => "latest".to_owned(),
        };
        Ok(Self {
            registry,
            repository,
            reference,
        })
    }

    /// The registry's API host: Docker Hub's name maps to its endpoint.
    pub fn api_host(&self) -> &str {
        if self.registry == "docker.io" || self.registry == "index.docker.io" {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// `https://<registry>/v2/<repo>/manifests/<reference>` (`http://` with `plain_http`).
    pub fn manifest_url(&self, plain_http: bool) -> ManifestUrl {
        let scheme = if plain_http { "http" } else { "https" };
        ManifestUrl::new(
            &format!("{scheme}://{}", self.api_host()),
            &self.repository,
            &self.reference,
        )
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sep = if self.reference.starts_with("sha256:") {
            '@'
        } else {
            ':'
        };
        write!(
            f,
            "{}/{}{sep}{}",
            self.registry, self.repository, self.reference
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> (String, String, String) {
        let r = ImageRef::parse(s).unwrap_or_else(|e| panic!("{e}"));
        (r.registry, r.repository, r.reference)
    }

    fn t(a: &str, b: &str, c: &str) -> (String, String, String) {
        (a.into(), b.into(), c.into())
    }

    #[test]
    fn docker_hub_names_get_library_and_latest() {
        assert_eq!(parts("alpine"), t("docker.io", "library/alpine", "latest"));
        assert_eq!(
            parts("alpine:3.19"),
            t("docker.io", "library/alpine", "3.19")
        );
        assert_eq!(
            parts("bitnami/redis:7"),
            t("docker.io", "bitnami/redis", "7")
        );
        assert_eq!(
            parts("docker.io/alpine"),
            t("docker.io", "library/alpine", "latest")
        );
        assert_eq!(
            ImageRef::parse("alpine:3.19")
                .expect("ref")
                .manifest_url(false),
            "https://registry-1.docker.io/v2/library/alpine/manifests/3.19"
        );
    }

    #[test]
    fn registries_are_recognised_by_dot_colon_or_localhost() {
        assert_eq!(
            parts("registry.test:5443/e2e/img:v1"),
            t("registry.test:5443", "e2e/img", "v1")
        );
        assert_eq!(parts("localhost/app"), t("localhost", "app", "latest"));
        assert_eq!(
            parts("localhost:5000/app:1"),
            t("localhost:5000", "app", "1")
        );
        assert_eq!(
            parts("ghcr.io/org/team/tool"),
            t("ghcr.io", "org/team/tool", "latest")
        );
        assert_eq!(
            ImageRef::parse("registry.test:5000/a/b:c")
                .expect("ref")
                .manifest_url(true),
            "http://registry.test:5000/v2/a/b/manifests/c"
        );
    }

    #[test]
    fn digests_pin_the_manifest() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            parts(&format!("alpine@{d}")),
            t("docker.io", "library/alpine", &d)
        );
        assert_eq!(
            parts(&format!("r.io/x:tag@{d}")),
            t("r.io", "x", &d),
            "the digest wins over the tag"
        );
        assert_eq!(
            ImageRef::parse(&format!("r.io/x@{d}"))
                .expect("ref")
                .to_string(),
            format!("r.io/x@{d}")
        );
    }

    #[test]
    fn bad_references_are_refused() {
        for bad in [
            "",
            "Alpine",
            "alpine:",
            "alpine:-x",
            "alpine@sha256:abc",
            "alpine@md5:0123",
            "r.io//x",
            "https://r.io/v2/x/manifests/y",
            "a b",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?}");
        }
    }
}
