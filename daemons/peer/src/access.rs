//! Who may read a private object from this node's cache.
//!
//! A task is private when the origin gave it out for a client's credentials (`Authorization`,
//! `Cookie`): this peer's origin fetch carried them, or the task's authority said so through
//! the scheduler. The cache is shared by every client of the node, and the task ID comes from
//! the URL alone, so without a check any local client that knows a blob's URL would read a
//! blob only another tenant may read.
//!
//! Rule: a private task's bytes reach a client only when its credentials are *cleared* for the
//! task: this node's own origin fetch succeeded with them, or the origin answered an access
//! probe with them. The probe carries the client's own credentials and does not follow
//! redirects: a 2xx, a 3xx (the registry sends authorised clients to its storage) or a 416 (a
//! zero-length object) clears them; any other answer is what the client gets, so a 401 carries
//! the registry's challenge and the runtime fetches a token and retries. For a registry blob
//! URL the probe is the `HEAD` the distribution spec defines for "may I see this blob"; for any
//! other URL it is a one-byte ranged `GET`, for the reason the first origin request is one:
//! URLs signed for `GET` refuse `HEAD`. An origin that cannot be reached fails the request
//! (502): never open.
//!
//! Invariants: a cleared set holds credential prints (BLAKE3 of the credential headers), never
//! the credentials; it is bounded ([`CLEARED_PER_TASK`]) and not persisted, so after a restart
//! every client is asked about again. Whether a task is private is persisted, and a sidecar
//! that predates the flag counts as private.

use std::collections::VecDeque;

use df_core::ids::ObjectDigest;
use futures_util::StreamExt as _;

use crate::download::DeliveryError;
use crate::download::origin::{OriginClients, error_chain, forwardable, origin_refusal};
use crate::storage::{StoredTask, TaskFailure};

/// Credential prints remembered per task; the oldest is forgotten first (its client is then
/// asked about again: one small request, never a wrong answer).
pub const CLEARED_PER_TASK: usize = 16;

/// The BLAKE3 digest of a request's credential headers (names lower-cased, sorted, with their
/// values). Requests without any share one print, so an object the origin serves to anyone
/// is probed once, not once per anonymous request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialPrint([u8; 32]);

impl CredentialPrint {
    pub fn of(headers: &[(String, String)]) -> Self {
        let mut creds: Vec<(String, &str)> = headers
            .iter()
            .filter(|(k, _)| is_origin_credential(k))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
            .collect();
        creds.sort_unstable();
        let mut hasher = blake3::Hasher::new();
        for (k, v) in creds {
            // Lengths first, so no two header lists hash the same text.
            hasher.update(&(k.len() as u64).to_le_bytes());
            hasher.update(k.as_bytes());
            hasher.update(&(v.len() as u64).to_le_bytes());
            hasher.update(v.as_bytes());
        }
        Self(*hasher.finalize().as_bytes())
    }
}

/// A credential header that reaches the origin (`Proxy-Authorization` is for this proxy).
fn is_origin_credential(name: &str) -> bool {
    df_core::relayed::is_credential(name) && forwardable(name)
}

/// Whether `headers` carry credentials, which make what the origin answers with them private.
pub fn has_credentials(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(k, _)| is_origin_credential(k))
}

/// The credential prints cleared for one task, most recent last.
#[derive(Debug, Default, Clone)]
pub struct Cleared(VecDeque<CredentialPrint>);

impl Cleared {
    pub fn contains(&self, print: &CredentialPrint) -> bool {
        self.0.contains(print)
    }

    pub fn insert(&mut self, print: CredentialPrint) {
        if let Some(at) = self.0.iter().position(|p| *p == print) {
            self.0.remove(at);
        }
        if self.0.len() == CLEARED_PER_TASK {
            self.0.pop_front();
        }
        self.0.push_back(print);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// Marks `task` private, fetched by this node with `headers`' credentials (which the origin
/// accepted: the caller marks it only once the origin answered with the object).
pub fn fetched_with(task: &StoredTask, headers: &[(String, String)]) {
    if has_credentials(headers) {
        let mut st = task.state();
        st.private = true;
        st.cleared.insert(CredentialPrint::of(headers));
    }
}

/// What became of a request for a task's bytes.
#[derive(Debug)]
pub enum Verdict {
    /// Serve it from the cache: the task is not private, or the client is cleared already.
    Serve,
    /// Serve it from the cache: the origin just confirmed the client's access.
    Confirmed,
    /// The origin's answer to the probe, for the client (status, headers, body).
    Refused(TaskFailure),
}

/// Decides whether the client sending `headers` may read `task` from the cache, asking the
/// origin when the task is private and the client's credentials are not cleared for it.
pub async fn check(
    origin: &OriginClients,
    task: &StoredTask,
    url: &str,
    headers: &[(String, String)],
) -> Result<Verdict, DeliveryError> {
    let print = CredentialPrint::of(headers);
    {
        let st = task.state();
        if !st.private || st.cleared.contains(&print) {
            return Ok(Verdict::Serve);
        }
    }
    let client = origin.direct(url);
    let mut rb = if ObjectDigest::from_blob_url(url).is_some() {
        client.head(url)
    } else {
        client.get(url).header(http::header::RANGE, "bytes=0-0")
    };
    for (k, v) in headers.iter().filter(|(k, _)| forwardable(k)) {
        rb = rb.header(k.as_str(), v.as_str());
    }
    let resp = rb.send().await.map_err(|e| {
        DeliveryError::Upstream(format!(
            "cannot confirm with origin {url} that this client may read the cached object: {}",
            error_chain(&e)
        ))
    })?;
    let status = resp.status();
    if status.is_success()
        || status.is_redirection()
        || status == http::StatusCode::RANGE_NOT_SATISFIABLE
    {
        // The probe's body is at most a byte (or a redirect's note): read it so the
        // connection is reused.
        let mut body = resp.bytes_stream();
        while let Some(Ok(_)) = body.next().await {}
        task.state().cleared.insert(print);
        tracing::debug!(task_id = %task.id, %status, "origin confirmed a client's access to a private object");
        return Ok(Verdict::Confirmed);
    }
    tracing::info!(task_id = %task.id, %status, "origin refused a client access to a private cached object");
    Ok(Verdict::Refused(origin_refusal(resp).await))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn prints_depend_on_credentials_only() {
        let a = CredentialPrint::of(&[h("Authorization", "Bearer a"), h("Accept", "x")]);
        let a2 = CredentialPrint::of(&[h("accept", "y"), h("authorization", "Bearer a")]);
        let b = CredentialPrint::of(&[h("Authorization", "Bearer b")]);
        let none = CredentialPrint::of(&[h("Accept", "x")]);
        assert_eq!(a, a2, "other headers and name case do not matter");
        assert_ne!(a, b);
        assert_ne!(a, none);
        assert_eq!(none, CredentialPrint::of(&[]));
        // Order of several credentials does not matter; splitting text across them does.
        let two = CredentialPrint::of(&[h("Cookie", "s=1"), h("Authorization", "x")]);
        let two_swapped = CredentialPrint::of(&[h("Authorization", "x"), h("Cookie", "s=1")]);
        assert_eq!(two, two_swapped);
        let shifted = CredentialPrint::of(&[h("Cookie", "s="), h("Authorization", "1x")]);
        assert_ne!(two, shifted);
    }

    #[test]
    fn cleared_is_bounded_and_forgets_the_oldest() {
        let mut c = Cleared::default();
        let prints: Vec<CredentialPrint> = (0..=CLEARED_PER_TASK)
            .map(|i| CredentialPrint::of(&[h("Authorization", &format!("Bearer {i}"))]))
            .collect();
        for p in &prints {
            c.insert(*p);
        }
        assert_eq!(c.len(), CLEARED_PER_TASK);
        assert!(!c.contains(&prints[0]), "the oldest is forgotten");
        assert!(c.contains(&prints[CLEARED_PER_TASK]));
        // Re-inserting refreshes instead of duplicating.
        c.insert(prints[1]);
        c.insert(CredentialPrint::of(&[h("Authorization", "new")]));
        assert!(
            c.contains(&prints[1]),
            "refreshed, so not the oldest any more"
        );
        assert!(!c.contains(&prints[2]));
    }

    #[test]
    fn credentials_are_recognised() {
        assert!(has_credentials(&[h("cookie", "a=b")]));
        assert!(has_credentials(&[h("AUTHORIZATION", "Basic x")]));
        assert!(!has_credentials(&[h("accept", "*/*")]));
        assert!(
            !has_credentials(&[h("Proxy-Authorization", "Basic x")]),
            "for this proxy, never sent to the origin"
        );
    }
}
