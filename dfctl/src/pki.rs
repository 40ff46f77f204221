//! Certificates for dragonfly-lite: the operator's CA, leaves it signs (registry and daemon
//! serving/client certificates), and reading certificates back for `dfctl cert inspect`.
//!
//! Invariants: a CA is `CA:TRUE` with path length 0 (it signs leaves only), keyCertSign and
//! cRLSign; a leaf is `CA:FALSE` with at least one SAN, an authority key identifier and the
//! extended key usages asked for. ECDSA P-256 unless RSA is asked for. Serial numbers are 128
//! random bits. Nothing here touches the filesystem; `cmd::cert` writes the PEM text.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot generate a {key_type} key: {source}")]
    KeyGen {
        key_type: &'static str,
        source: rcgen::Error,
    },
    #[error("cannot sign the certificate: {0}")]
    Sign(rcgen::Error),
    #[error("{what}: {message}")]
    Read { what: String, message: String },
    #[error("SAN '{san}': {message}")]
    San { san: String, message: String },
    #[error("a leaf needs at least one --san")]
    NoSan,
}

/// Key algorithm of a new certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KeyType {
    /// ECDSA on P-256 with SHA-256 (the default, as step and cfssl).
    #[default]
    EcdsaP256,
    /// ECDSA on P-384 with SHA-384.
    EcdsaP384,
    /// RSA 2048 with SHA-256, for legacy clients.
    Rsa2048,
    /// RSA 3072 with SHA-256.
    Rsa3072,
}

impl KeyType {
    fn name(self) -> &'static str {
        match self {
            Self::EcdsaP256 => "ECDSA P-256",
            Self::EcdsaP384 => "ECDSA P-384",
            Self::Rsa2048 => "RSA 2048",
            Self::Rsa3072 => "RSA 3072",
        }
    }

    fn generate(self) -> Result<KeyPair, PkiError> {
        let result = match self {
            Self::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            Self::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            Self::Rsa2048 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            }
            Self::Rsa3072 => {
                KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_3072)
            }
        };
        result.map_err(|source| PkiError::KeyGen {
            key_type: self.name(),
            source,
        })
    }
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct PemPair {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A subject alternative name: `DNS:name`, `IP:addr`, `URI:dragonfly://<role>/<name>` (a
/// daemon's cluster identity), or bare (an IP if it parses as one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum San {
    Dns(String),
    Ip(IpAddr),
    /// A daemon identity, `dragonfly://<scheduler|seed|peer>/<name>` ([`df_core::identity`]).
    Uri(String),
}

impl std::str::FromStr for San {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |message: &str| PkiError::San {
            san: s.to_owned(),
            message: message.to_owned(),
        };
        let (kind, value) = match s.split_once(':') {
            Some((k, v)) if k.eq_ignore_ascii_case("uri") => {
                return df_core::identity::parse_uri(v)
                    .map(|_| Self::Uri(v.to_owned()))
                    .map_err(|e| bad(&e.to_string()));
            }
            Some((k, v)) if k.eq_ignore_ascii_case("dns") => ("dns", v),
            Some((k, v)) if k.eq_ignore_ascii_case("ip") => ("ip", v),
            _ => ("auto", s),
        };
        match (kind, value.parse::<IpAddr>()) {
            ("ip", Err(_)) => Err(bad("not an IP address")),
            ("ip" | "auto", Ok(ip)) => Ok(Self::Ip(ip)),
            _ => {
                let name = value.trim_end_matches('.').to_ascii_lowercase();
                let label_ok = |l: &str| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                };
                let mut labels = name.split('.');
                let first_ok = labels.next().is_some_and(|l| l == "*" || label_ok(l));
                if name.is_empty() || !first_ok || !labels.all(label_ok) {
                    return Err(bad(
                        "not a DNS name (letters, digits, '-', dots; '*.' first)",
                    ));
                }
                Ok(Self::Dns(name))
            }
        }
    }
}

impl std::fmt::Display for San {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dns(n) => write!(f, "DNS:{n}"),
            Self::Ip(ip) => write!(f, "IP:{ip}"),
            Self::Uri(u) => write!(f, "URI:{u}"),
        }
    }
}

/// What a leaf is for (extended key usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Usage {
    /// TLS server (serverAuth).
    Server,
    /// TLS client, e.g. mTLS between daemons (clientAuth).
    Client,
}

/// The subtree permitting exactly `name`: a host name (and its subdomains) or one address.
fn subtree(name: &str) -> rcgen::GeneralSubtree {
    match name.parse::<std::net::IpAddr>() {
        Ok(ip) => {
            let prefix = if ip.is_ipv4() { 32 } else { 128 };
            rcgen::GeneralSubtree::IpAddress(rcgen::CidrSubnet::from_addr_prefix(ip, prefix))
        }
        Err(_) => rcgen::GeneralSubtree::DnsName(name.to_ascii_lowercase()),
    }
}

/// The names a CA certificate's name constraints permit (DNS names and addresses, as text);
/// `None` when it has no constraints, so it may sign for any name.
pub fn permitted_names(ca_pem: &str) -> Result<Option<Vec<String>>, PkiError> {
    use x509_parser::extensions::GeneralName;
    let read_err = |message: String| PkiError::Read {
        what: "CA certificate".into(),
        message,
    };
    let (_, pem) = x509_parser::pem::parse_x509_pem(ca_pem.as_bytes())
        .map_err(|e| read_err(format!("not PEM: {e}")))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| read_err(format!("not an X.509 certificate: {e}")))?;
    let constraints = cert
        .name_constraints()
        .map_err(|e| read_err(format!("name constraints: {e}")))?;
    Ok(constraints.map(|ext| {
        ext.value
            .permitted_subtrees
            .iter()
            .flatten()
            .filter_map(|s| match s.base {
                GeneralName::DNSName(n) => Some(n.to_owned()),
                GeneralName::IPAddress(bytes) => ip_of_subtree(bytes),
                _ => None,
            })
            .collect()
    }))
}

/// The address of an IP subtree (address followed by mask: 8 or 32 bytes).
fn ip_of_subtree(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        8 => <[u8; 4]>::try_from(&bytes[..4])
            .ok()
            .map(|a| std::net::Ipv4Addr::from(a).to_string()),
        32 => <[u8; 16]>::try_from(&bytes[..16])
            .ok()
            .map(|a| std::net::Ipv6Addr::from(a).to_string()),
        _ => None,
    }
}

fn random_serial() -> SerialNumber {
    SerialNumber::from_slice(uuid::Uuid::new_v4().as_bytes())
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "dragonfly-lite");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// A new CA valid from an hour ago (clock skew) for `days`. With `permitted` names (DNS names
/// or IP addresses), it carries name constraints: a certificate it signs for any other name
/// is refused by verifiers (RFC 5280 4.2.1.10), so its key can intercept only those
/// registries, not every site the nodes visit.
pub fn new_ca(
    common_name: &str,
    key_type: KeyType,
    days: u32,
    permitted: &[String],
) -> Result<PemPair, PkiError> {
    let key = key_type.generate()?;
    let now = OffsetDateTime::now_utc();
    let mut params = CertificateParams::default();
    params.distinguished_name = name(common_name);
    if !permitted.is_empty() {
        params.name_constraints = Some(rcgen::NameConstraints {
            permitted_subtrees: permitted.iter().map(|n| subtree(n)).collect(),
            excluded_subtrees: Vec::new(),
        });
    }
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(days));
    params.serial_number = Some(random_serial());
    let cert = params.self_signed(&key).map_err(PkiError::Sign)?;
    Ok(PemPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// What a leaf should say.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    pub sans: Vec<San>,
    /// Defaults to the first SAN.
    pub common_name: Option<String>,
    pub key_type: KeyType,
    pub usages: Vec<Usage>,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// Issues a leaf signed by the CA in `ca_cert_pem` / `ca_key_pem`.
pub fn issue(ca_cert_pem: &str, ca_key_pem: &str, spec: &LeafSpec) -> Result<PemPair, PkiError> {
    let first = spec.sans.first().ok_or(PkiError::NoSan)?;
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(|e| PkiError::Read {
        what: "CA key".into(),
        message: e.to_string(),
    })?;
    let issuer = Issuer::from_ca_cert_pem(ca_cert_pem, ca_key).map_err(|e| PkiError::Read {
        what: "CA certificate".into(),
        message: e.to_string(),
    })?;
    let key = spec.key_type.generate()?;
    let mut params = CertificateParams::default();
    let cn = spec.common_name.clone().unwrap_or_else(|| match first {
        San::Dns(n) => n.clone(),
        San::Ip(ip) => ip.to_string(),
        San::Uri(u) => u.clone(),
    });
    params.distinguished_name = name(&cn);
    params.is_ca = IsCa::ExplicitNoCa;
    params.subject_alt_names = spec
        .sans
        .iter()
        .map(|s| match s {
            San::Dns(n) => rcgen::string::Ia5String::try_from(n.as_str())
                .map(SanType::DnsName)
                .map_err(|e| PkiError::San {
                    san: n.clone(),
                    message: e.to_string(),
                }),
            San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            San::Uri(u) => rcgen::string::Ia5String::try_from(u.as_str())
                .map(SanType::URI)
                .map_err(|e| PkiError::San {
                    san: u.clone(),
                    message: e.to_string(),
                }),
        })
        .collect::<Result<_, _>>()?;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if matches!(spec.key_type, KeyType::Rsa2048 | KeyType::Rsa3072) {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = spec
        .usages
        .iter()
        .map(|u| match u {
            Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
            Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
        })
        .collect();
    params.use_authority_key_identifier_extension = true;
    params.not_before = spec.not_before;
    params.not_after = spec.not_after;
    params.serial_number = Some(random_serial());
    let cert = params.signed_by(&key, &issuer).map_err(PkiError::Sign)?;
    Ok(PemPair {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Where a certificate is in its life at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Validity {
    NotYetValid,
    Valid,
    /// Past 2/3 of its lifetime: time to issue the next one.
    RenewSoon,
    Expired,
}

/// What `cert inspect` shows of one certificate.
#[derive(Debug, Clone, Serialize)]
pub struct CertInfo {
    pub subject: String,
    pub issuer: String,
    pub serial: String,
    pub sans: Vec<String>,
    pub is_ca: bool,
    pub path_len: Option<u32>,
    pub key_usage: Vec<String>,
    pub extended_key_usage: Vec<String>,
    pub key: String,
    pub not_before: String,
    pub not_after: String,
    pub days_left: i64,
    pub validity: Validity,
    pub sha256_fingerprint: String,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// Every certificate in the PEM text `pem` (a chain gives several), seen at `now`.
pub fn inspect(what: &str, pem: &[u8], now: OffsetDateTime) -> Result<Vec<CertInfo>, PkiError> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    let read_err = |message: String| PkiError::Read {
        what: what.to_owned(),
        message,
    };
    let mut out = Vec::new();
    for block in x509_parser::pem::Pem::iter_from_buffer(pem) {
        let block = block.map_err(|e| read_err(format!("not PEM: {e}")))?;
        if block.label != "CERTIFICATE" {
            continue;
        }
        let cert = block
            .parse_x509()
            .map_err(|e| read_err(format!("not an X.509 certificate: {e}")))?;
        let mut sans = Vec::new();
        let mut key_usage = Vec::new();
        let mut eku = Vec::new();
        let mut is_ca = false;
        let mut path_len = None;
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectAlternativeName(san) => {
                    for n in &san.general_names {
                        sans.push(match n {
                            GeneralName::DNSName(d) => format!("DNS:{d}"),
                            GeneralName::IPAddress(b) => match b.len() {
                                4 => format!(
                                    "IP:{}",
                                    IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())
                                ),
                                16 => format!(
                                    "IP:{}",
                                    IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())
                                ),
                                _ => format!("IP:{}", hex::encode(b)),
                            },
                            other => other.to_string(),
                        });
                    }
                }
                ParsedExtension::BasicConstraints(bc) => {
                    is_ca = bc.ca;
                    path_len = bc.path_len_constraint;
                }
                ParsedExtension::KeyUsage(ku) => {
                    key_usage = ku.to_string().split(", ").map(str::to_owned).collect();
                }
                ParsedExtension::ExtendedKeyUsage(e) => {
                    if e.server_auth {
                        eku.push("serverAuth".to_owned());
                    }
                    if e.client_auth {
                        eku.push("clientAuth".to_owned());
                    }
                    eku.extend(e.other.iter().map(|o| o.to_id_string()));
                }
                _ => {}
            }
        }
        let not_before = cert.validity().not_before.to_datetime();
        let not_after = cert.validity().not_after.to_datetime();
        let lifetime = not_after - not_before;
        let validity = if now < not_before {
            Validity::NotYetValid
        } else if now >= not_after {
            Validity::Expired
        } else if (now - not_before) * 3 >= lifetime * 2 {
            Validity::RenewSoon
        } else {
            Validity::Valid
        };
        let spki = cert.public_key();
        let key = match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::EC(p)) => {
                format!("ECDSA {} bits", p.key_size())
            }
            Ok(x509_parser::public_key::PublicKey::RSA(r)) => format!("RSA {} bits", r.key_size()),
            _ => spki.algorithm.algorithm.to_id_string(),
        };
        out.push(CertInfo {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial: cert.raw_serial_as_string(),
            sans,
            is_ca,
            path_len,
            key_usage,
            extended_key_usage: eku,
            key,
            not_before: rfc3339(not_before),
            not_after: rfc3339(not_after),
            days_left: (not_after - now).whole_days(),
            validity,
            sha256_fingerprint: fingerprint(&block.contents),
        });
    }
    if out.is_empty() {
        return Err(read_err("no CERTIFICATE block".into()));
    }
    Ok(out)
}

/// SHA-256 of DER, as `AB:CD:...`.
pub fn fingerprint(der: &[u8]) -> String {
    Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf_spec(days_ago: i64, days_valid: i64) -> LeafSpec {
        let start = OffsetDateTime::now_utc() - time::Duration::days(days_ago);
        LeafSpec {
            sans: vec![
                "registry.test".parse().expect("san"),
                "IP:127.0.0.1".parse().expect("san"),
            ],
            common_name: None,
            key_type: KeyType::EcdsaP256,
            usages: vec![Usage::Server, Usage::Client],
            not_before: start,
            not_after: start + time::Duration::days(days_valid),
        }
    }

    #[test]
    fn ca_and_leaf_have_the_promised_extensions() {
        let ca = new_ca("test CA", KeyType::EcdsaP256, 3650, &[]).expect("ca");
        let now = OffsetDateTime::now_utc();
        let info = inspect("ca", ca.cert_pem.as_bytes(), now).expect("inspect");
        assert!(info[0].is_ca);
        assert_eq!(info[0].path_len, Some(0));
        assert!(
            info[0].subject.contains("CN=test CA"),
            "{}",
            info[0].subject
        );
        assert!(
            info[0].key_usage.iter().any(|k| k == "Key Cert Sign"),
            "{:?}",
            info[0].key_usage
        );
        assert!(
            (3648..=3650).contains(&info[0].days_left),
            "{}",
            info[0].days_left
        );
        assert_eq!(info[0].validity, Validity::Valid);
        assert_eq!(info[0].key, "ECDSA 256 bits");

        let leaf = issue(&ca.cert_pem, &ca.key_pem, &leaf_spec(0, 90)).expect("leaf");
        let info = inspect("leaf", leaf.cert_pem.as_bytes(), now).expect("inspect");
        assert!(!info[0].is_ca);
        assert_eq!(info[0].sans, ["DNS:registry.test", "IP:127.0.0.1"]);
        assert_eq!(info[0].extended_key_usage, ["serverAuth", "clientAuth"]);
        assert!(info[0].issuer.contains("CN=test CA"));
        assert!(info[0].subject.contains("CN=registry.test"));
    }

    #[test]
    fn validity_follows_the_lifetime() {
        let ca = new_ca("test CA", KeyType::EcdsaP256, 3650, &[]).expect("ca");
        let now = OffsetDateTime::now_utc();
        let at = |days_ago, days_valid| {
            let leaf =
                issue(&ca.cert_pem, &ca.key_pem, &leaf_spec(days_ago, days_valid)).expect("leaf");
            inspect("leaf", leaf.cert_pem.as_bytes(), now).expect("inspect")[0].validity
        };
        assert_eq!(at(10, 90), Validity::Valid);
        assert_eq!(at(70, 90), Validity::RenewSoon);
        assert_eq!(at(100, 90), Validity::Expired);
        assert_eq!(at(-5, 90), Validity::NotYetValid);
    }

    #[test]
    fn rsa_keys_work_and_bad_input_is_named() {
        let ca = new_ca("rsa CA", KeyType::Rsa2048, 30, &[]).expect("ca");
        let info =
            inspect("ca", ca.cert_pem.as_bytes(), OffsetDateTime::now_utc()).expect("inspect");
        assert_eq!(info[0].key, "RSA 2048 bits");
        assert!("IP:nope".parse::<San>().is_err());
        assert!("bad name".parse::<San>().is_err());
        assert_eq!(
            "*.example.com".parse::<San>().expect("wildcard"),
            San::Dns("*.example.com".into())
        );
        assert_eq!(
            "::1".parse::<San>().expect("ip"),
            San::Ip("::1".parse().expect("ip"))
        );
        let err = inspect("x.crt", b"not pem", OffsetDateTime::now_utc()).expect_err("not pem");
        assert!(err.to_string().starts_with("x.crt:"), "{err}");
        let mut spec = leaf_spec(0, 1);
        spec.sans.clear();
        assert!(matches!(
            issue(&ca.cert_pem, &ca.key_pem, &spec),
            Err(PkiError::NoSan)
        ));
    }
}

#[cfg(test)]
mod identity_tests {
    use super::*;

    #[test]
    fn a_daemon_identity_san_reads_back_as_its_identity() {
        let san: San = "URI:dragonfly://seed/node-1".parse().expect("uri san");
        assert_eq!(san.to_string(), "URI:dragonfly://seed/node-1");
        assert!("URI:dragonfly://admin/x".parse::<San>().is_err());
        let ca = new_ca("t", KeyType::EcdsaP256, 1, &[]).expect("ca");
        let now = OffsetDateTime::now_utc();
        let spec = LeafSpec {
            sans: vec![san, "IP:10.0.0.5".parse().expect("ip")],
            common_name: Some("node-1".into()),
            key_type: KeyType::EcdsaP256,
            usages: vec![Usage::Server, Usage::Client],
            not_before: now,
            not_after: now + time::Duration::days(1),
        };
        let leaf = issue(&ca.cert_pem, &ca.key_pem, &spec).expect("leaf");
        let (_, pem) = x509_parser::pem::parse_x509_pem(leaf.cert_pem.as_bytes()).expect("pem");
        let id = df_core::identity::Identity::from_der(&pem.contents).expect("identity");
        assert_eq!(id.uri(), "dragonfly://seed/node-1");
        assert_eq!(id.ips, vec!["10.0.0.5".parse::<IpAddr>().expect("ip")]);
    }
}
