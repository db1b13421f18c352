//! Partitions: the unit of ownership (DESIGN.md §4). Every tenant hashes into one
//! of `node.partitions` partitions; nodes lease partitions, never single tenants,
//! so leases, fences and membership cost the same for 10 or 10,000 tenants.
//!
//! The hash is the first 60 bits of SHA-256 over the tenant id's 16 bytes, modulo
//! the partition count, and the migration's SQL function `penguin_partition(uuid,
//! integer)` computes the same, so Postgres can select a partition's jobs (at a
//! takeover, say) without a list of its tenants.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A partition number, `0..partitions`.
pub type Partition = u32;

/// The partition of `tenant` among `partitions` (at least 1).
pub fn of(tenant: Uuid, partitions: u32) -> Partition {
    let digest = Sha256::digest(tenant.as_bytes());
    let first = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    ((first >> 4) % u64::from(partitions.max(1))) as Partition
}

/// The partitions of `tenants`, sorted and without repeats.
pub fn of_all(tenants: impl IntoIterator<Item = Uuid>, partitions: u32) -> Vec<Partition> {
    let mut all: Vec<Partition> = tenants.into_iter().map(|t| of(t, partitions)).collect();
    all.sort_unstable();
    all.dedup();
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_always_lands_in_the_same_partition() {
        let tenant = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        assert_eq!(of(tenant, 512), of(tenant, 512));
        assert!(of(tenant, 512) < 512);
        assert_eq!(of(tenant, 1), 0);
    }

    #[test]
    fn tenants_spread_over_the_partitions() {
        let mut counts = vec![0u32; 16];
        for i in 0..16_000u128 {
            counts[of(Uuid::from_u128(i), 16) as usize] += 1;
        }
        // 1,000 each on average; a fair hash stays well within ±15 %.
        assert!(
            counts.iter().all(|c| (850..=1150).contains(c)),
            "{counts:?}"
        );
    }

    #[test]
    fn of_all_sorts_and_dedups() {
        let t = Uuid::from_u128(7);
        assert_eq!(of_all([t, t], 64), vec![of(t, 64)]);
    }
}
