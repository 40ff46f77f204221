//! Identifiers and digests as newtypes.
//!
//! Task IDs are upstream-Dragonfly compatible: lower-case hex SHA-256 over the filtered URL, tag,
//! application, the piece length when explicitly requested, and the literal `STANDARD`, with no
//! separators. Filtering drops query parameters that change per request (object-store signatures,
//! containerd's `ns`) so that every peer asking for the same object meets on the same task.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Query parameters dropped before hashing a URL into a task ID (upstream's default list).
pub const DEFAULT_FILTERED_QUERY_PARAMS: &[&str] = &[
    // S3
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
    "X-Amz-User-Agent",
    // GCS
    "X-Goog-Algorithm",
    "X-Goog-Credential",
    "X-Goog-Date",
    "X-Goog-Expires",
    "X-Goog-SignedHeaders",
    "X-Goog-Signature",
    // OSS
    "OSSAccessKeyId",
    "Expires",
    "Signature",
    "SecurityToken",
    // OBS
    "AccessKeyId",
    "X-Obs-Date",
    "X-Obs-Security-Token",
    // COS
    "q-sign-algorithm",
    "q-ak",
    "q-sign-time",
    "q-key-time",
    "q-header-list",
    "q-url-param-list",
    "q-signature",
    "x-cos-security-token",
    // containerd
    "ns",
];

/// Why a string is not an acceptable identifier or digest.
#[derive(Debug, thiserror::Error)]
pub enum IdError {
    #[error("'{0}' is not a task id (expected 64 lower-case hex characters)")]
    TaskId(String),
    #[error("'{url}' is not a usable URL: {reason}")]
    Url { url: String, reason: String },
    #[error("'{0}' is not a digest (expected sha256:<64 hex>)")]
    ObjectDigest(String),
}

/// The inputs of a task ID besides the URL.
#[derive(Debug, Clone, Default)]
pub struct TaskIdParams<'a> {
    pub tag: &'a str,
    pub application: &'a str,
    /// Only an explicitly requested piece length takes part in the ID.
    pub piece_length: Option<u64>,
    /// `None` means [`DEFAULT_FILTERED_QUERY_PARAMS`].
    pub filtered_query_params: Option<&'a [String]>,
}

/// A task: one object (URL) being distributed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskId(String);

impl TaskId {
    /// The upstream-compatible ID of the object at `url`.
    pub fn from_url(url: &str, params: &TaskIdParams<'_>) -> Result<Self, IdError> {
        let filtered = filter_url(url, params.filtered_query_params)?;
        let mut hasher = Sha256::new();
        hasher.update(filtered.as_bytes());
        hasher.update(params.tag.as_bytes());
        hasher.update(params.application.as_bytes());
        if let Some(len) = params.piece_length {
            hasher.update(len.to_string().as_bytes());
        }
        hasher.update(b"STANDARD");
        Ok(Self(hex::encode(hasher.finalize())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TaskId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Self(s))
        } else {
            Err(IdError::TaskId(s))
        }
    }
}

impl std::str::FromStr for TaskId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::try_from(s.to_owned())
    }
}

impl From<TaskId> for String {
    fn from(id: TaskId) -> String {
        id.0
    }
}

impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks that `url` is an absolute http(s) URL, the only kind a peer can fetch.
pub fn validate_http_url(url: &str) -> Result<url::Url, IdError> {
    let parsed = url::Url::parse(url).map_err(|e| IdError::Url {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    match parsed.scheme() {
        "http" | "https" if parsed.host_str().is_some() => Ok(parsed),
        "http" | "https" => Err(IdError::Url {
            url: url.to_owned(),
            reason: "no host".into(),
        }),
        other => Err(IdError::Url {
            url: url.to_owned(),
            reason: format!("scheme '{other}' is not http or https"),
        }),
    }
}

/// The URL with filtered query parameters removed, keeping the order and encoding of the rest.
pub fn filter_url(url: &str, filtered: Option<&[String]>) -> Result<String, IdError> {
    let mut parsed = url::Url::parse(url).map_err(|e| IdError::Url {
        url: url.to_owned(),
        reason: e.to_string(),
    })?;
    let is_filtered = |key: &str| match filtered {
        Some(list) => list.iter().any(|k| k == key),
        None => DEFAULT_FILTERED_QUERY_PARAMS.contains(&key),
    };
    if let Some(query) = parsed.query().map(str::to_owned) {
        let kept: Vec<&str> = query
            .split('&')
            .filter(|pair| !pair.is_empty())
            .filter(|pair| {
                let raw_key = pair.split('=').next().unwrap_or_default();
                let key: String = url::form_urlencoded::parse(raw_key.as_bytes())
                    .next()
                    .map(|(k, _)| k.into_owned())
                    .unwrap_or_default();
                !is_filtered(&key)
            })
            .collect();
        if kept.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.set_query(Some(&kept.join("&")));
        }
    }
    let mut out = String::from(parsed);
    if parsed_path_is_root(&out) {
        out.pop();
    }
    Ok(out)
}

/// True when the serialised URL is `scheme://authority/` with nothing after the root slash.
fn parsed_path_is_root(serialised: &str) -> bool {
    let Some(rest) = serialised.split_once("://").map(|(_, rest)| rest) else {
        return false;
    };
    rest.find('/') == Some(rest.len() - 1)
}

/// A node: `<ip>-<hostname>`, with `-seed` appended for seed peers (as upstream does).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HostId(String);

impl HostId {
    pub fn new(ip: &str, hostname: &str, seed: bool) -> Self {
        if seed {
            Self(format!("{ip}-{hostname}-seed"))
        } else {
            Self(format!("{ip}-{hostname}"))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for HostId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One download of one task on one host: `<host id>-<uuid>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PeerId(String);

impl PeerId {
    pub fn new(host: &HostId, uuid: &str) -> Self {
        Self(format!("{host}-{uuid}"))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for PeerId {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// BLAKE3 digest of one piece. BLAKE3 rather than upstream's CRC32 because a malicious peer can
/// forge a CRC; BLAKE3 is tamper-evident and still hashes at several GB/s.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PieceDigest([u8; 32]);

impl PieceDigest {
    pub fn of(bytes: &[u8]) -> Self {
        Self(*blake3::hash(bytes).as_bytes())
    }
    pub fn from_hasher(hasher: &blake3::Hasher) -> Self {
        Self(*hasher.finalize().as_bytes())
    }
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Self)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = hex::decode(s).ok()?;
        Self::from_slice(&bytes)
    }
}

impl fmt::Debug for PieceDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blake3:{}", self.to_hex())
    }
}

impl Serialize for PieceDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for PieceDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::from_hex(&s).ok_or_else(|| serde::de::Error::custom("expected 64 hex characters"))
    }
}

/// Digest of a whole object, as registries name blobs: `sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ObjectDigest {
    hex: String,
}

impl ObjectDigest {
    pub fn sha256_hex(&self) -> &str {
        &self.hex
    }

    /// The digest a registry blob URL names (`.../blobs/sha256:<hex>`), if any.
    pub fn from_blob_url(url: &str) -> Option<Self> {
        let path = url.split(['?', '#']).next()?;
        let (_, tail) = path.rsplit_once("/blobs/")?;
        Self::try_from(tail.to_owned()).ok()
    }
}

impl TryFrom<String> for ObjectDigest {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        match s.strip_prefix("sha256:") {
            Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(Self {
                    hex: hex.to_ascii_lowercase(),
                })
            }
            _ => Err(IdError::ObjectDigest(s)),
        }
    }
}

impl From<ObjectDigest> for String {
    fn from(d: ObjectDigest) -> String {
        format!("sha256:{}", d.hex)
    }
}

impl fmt::Display for ObjectDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors from upstream Dragonfly (reference/dragonfly-facts.md §2.1).
    #[test]
    fn task_id_vector_tag_and_application() {
        let id = TaskId::from_url(
            "https://example.com",
            &TaskIdParams {
                tag: "foo",
                application: "bar",
                ..Default::default()
            },
        )
        .expect("valid url");
        assert_eq!(
            id.as_str(),
            "06408fbf247ddaca478f8cb9565fe5591c28efd0994b8fea80a6a87d3203c5ca"
        );
    }

    #[test]
    fn task_id_vector_piece_length() {
        let id = TaskId::from_url(
            "https://example.com",
            &TaskIdParams {
                piece_length: Some(1024),
                ..Default::default()
            },
        )
        .expect("valid url");
        assert_eq!(
            id.as_str(),
            "9f7c9aafbc6f30f8f41a96ca77eeae80c5b60964b3034b0ee43ccf7b2f9e52b8"
        );
    }

    #[test]
    fn task_id_vector_filtered_query() {
        let filter = vec!["foo".to_owned(), "bar".to_owned()];
        let id = TaskId::from_url(
            "https://example.com?foo=foo&bar=bar",
            &TaskIdParams {
                filtered_query_params: Some(&filter),
                ..Default::default()
            },
        )
        .expect("valid url");
        assert_eq!(
            id.as_str(),
            "457b4328cde278e422c9e243f7bfd1e97f511fec43a80f535cf6b0ef6b086776"
        );
    }

    #[test]
    fn default_filter_drops_signatures_and_ns_but_keeps_order_of_the_rest() {
        let out = filter_url(
            "https://r.test/v2/a/blobs/sha256:ab?z=1&X-Amz-Signature=s&a=2&ns=docker.io",
            None,
        )
        .expect("valid url");
        assert_eq!(out, "https://r.test/v2/a/blobs/sha256:ab?z=1&a=2");
    }

    #[test]
    fn signed_urls_for_the_same_object_share_a_task() {
        let p = TaskIdParams::default();
        let a = TaskId::from_url("https://s3.test/o?X-Amz-Date=1&X-Amz-Signature=a", &p);
        let b = TaskId::from_url("https://s3.test/o?X-Amz-Date=2&X-Amz-Signature=b", &p);
        assert_eq!(a.expect("valid").as_str(), b.expect("valid").as_str());
    }

    #[test]
    fn non_http_urls_are_rejected_with_the_scheme_named() {
        let err = validate_http_url("ftp://host/file").expect_err("ftp is refused");
        assert!(err.to_string().contains("scheme 'ftp'"), "{err}");
        assert!(validate_http_url("not a url").is_err());
    }

    #[test]
    fn task_id_parses_only_lower_hex() {
        assert!("ABC".parse::<TaskId>().is_err());
        let ok = "a".repeat(64);
        assert!(ok.parse::<TaskId>().is_ok());
    }

    #[test]
    fn blob_urls_name_their_digest() {
        let hex = "a".repeat(64);
        let d = ObjectDigest::from_blob_url(&format!("http://r/v2/x/blobs/sha256:{hex}?ns=r"))
            .expect("blob url");
        assert_eq!(d.sha256_hex(), hex);
        assert!(ObjectDigest::from_blob_url("http://r/v2/x/manifests/latest").is_none());
    }
}
