//! Consistent hashing of task IDs onto schedulers, so every peer of one task meets on the same
//! scheduler without coordination, and losing a scheduler moves only its share of tasks.

use sha2::{Digest as _, Sha256};

/// Virtual nodes per member; enough to spread load evenly across a handful of schedulers.
const VNODES: u32 = 64;

#[derive(Debug, Clone)]
pub struct HashRing {
    members: Vec<String>,
    points: Vec<(u64, usize)>,
}

fn point(key: &[u8]) -> u64 {
    let digest = Sha256::digest(key);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

impl HashRing {
    pub fn new(members: impl IntoIterator<Item = String>) -> Self {
        let members: Vec<String> = members.into_iter().collect();
        let mut points = Vec::with_capacity(members.len() * VNODES as usize);
        for (index, member) in members.iter().enumerate() {
            for v in 0..VNODES {
                points.push((point(format!("{member}#{v}").as_bytes()), index));
            }
        }
        points.sort_unstable();
        Self { members, points }
    }

    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// Every member, in the order a key should try them: owner first, then failover order.
    pub fn order(&self, key: &str) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::with_capacity(self.members.len());
        if self.points.is_empty() {
            return out;
        }
        let h = point(key.as_bytes());
        let start = self.points.partition_point(|(p, _)| *p < h);
        for i in 0..self.points.len() {
            let (_, idx) = self.points[(start + i) % self.points.len()];
            let m = self.members[idx].as_str();
            if !out.contains(&m) {
                out.push(m);
                if out.len() == self.members.len() {
                    break;
                }
            }
        }
        out
    }

    /// The member that owns `key`.
    pub fn owner(&self, key: &str) -> Option<&str> {
        self.order(key).into_iter().next()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_lists_every_member_once_owner_first() {
        let ring = HashRing::new(["a:1".to_owned(), "b:1".to_owned(), "c:1".to_owned()]);
        let order = ring.order("some-task");
        assert_eq!(order.len(), 3);
        assert_eq!(Some(order[0]), ring.owner("some-task"));
        let mut sorted = order.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, ["a:1", "b:1", "c:1"]);
    }

    #[test]
    fn removing_a_member_moves_only_its_keys() {
        let full = HashRing::new(["a".to_owned(), "b".to_owned(), "c".to_owned()]);
        let less = HashRing::new(["a".to_owned(), "b".to_owned()]);
        let mut per_member = [0usize; 3];
        for i in 0..3000 {
            let key = format!("task-{i}");
            let owner = full.owner(&key).expect("non-empty");
            per_member[(owner.as_bytes()[0] - b'a') as usize] += 1;
            if owner != "c" {
                assert_eq!(less.owner(&key), Some(owner));
            } else {
                // The failover order of the full ring is what the smaller ring picks.
                assert_eq!(less.owner(&key), Some(full.order(&key)[1]));
            }
        }
        assert!(
            per_member.iter().all(|&n| n > 600),
            "uneven spread {per_member:?}"
        );
    }
}
