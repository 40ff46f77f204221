//! [`P2pSwitch`]: the operator's soft switch. Off, the peer passes every client request
//! straight to the origin and tells its schedulers it is disabled, so it is chosen as nobody's
//! parent; the node keeps pulling, just without P2P. Held in memory: a restart turns P2P back
//! on, which is what an incident switch should do once the daemon has been replaced.

use std::sync::RwLock;

pub use df_core::api::P2pState;

use crate::storage::unix_now;

#[derive(Debug, Default)]
pub struct P2pSwitch {
    off: RwLock<Option<(String, u64)>>,
}

impl P2pSwitch {
    pub fn is_disabled(&self) -> bool {
        self.off.read().unwrap_or_else(|e| e.into_inner()).is_some()
    }

    /// Switches P2P off; switching off again keeps the first time, updates the reason.
    pub fn disable(&self, reason: String) {
        let mut off = self.off.write().unwrap_or_else(|e| e.into_inner());
        let since = off.as_ref().map_or_else(unix_now, |(_, t)| *t);
        *off = Some((reason, since));
    }

    pub fn enable(&self) {
        *self.off.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    pub fn state(&self) -> P2pState {
        match &*self.off.read().unwrap_or_else(|e| e.into_inner()) {
            Some((reason, since)) => P2pState {
                enabled: false,
                reason: Some(reason.clone()),
                disabled_since: Some(*since),
            },
            None => P2pState {
                enabled: true,
                reason: None,
                disabled_since: None,
            },
        }
    }
}
