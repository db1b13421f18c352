//! `dkim_keys`: re-sealing every stored DKIM private key under the current
//! master key (`penguin secrets rotate`).
//!
//! Guarantees of [`reseal_all`]:
//! - every row whose `key_version` is not [`Sealer::version`] is opened with the
//!   master key of its own version and sealed again with the current one, under
//!   the same aad ([`key_aad`]); the private key exists in the clear only in a
//!   zeroizing buffer, for that moment;
//! - rows are read in bounded batches (keyset order on the primary key) and each
//!   batch is written in one transaction; every `UPDATE` is conditional on the
//!   row's old `key_version`, so a row changed meanwhile (rotated by the API,
//!   re-sealed by another run) is left alone and not counted;
//! - a row that cannot be opened (its master key was not configured, or it was
//!   tampered with) stops the run with an error naming tenant, domain and
//!   selector, never key material; batches committed before stay re-sealed, so
//!   running again after fixing the configuration finishes the job.

use deadpool_postgres::Pool;
use uuid::Uuid;

use crate::db::StoreError;
use crate::secrets::Sealer;

/// The aad binding a sealed DKIM key to its row: `"<tenant_id>/<domain_id>/<selector>"`.
pub fn key_aad(tenant_id: Uuid, domain_id: Uuid, selector: &str) -> String {
    format!("{tenant_id}/{domain_id}/{selector}")
}

/// One stored key, as [`reseal_all`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedKeyRow {
    pub tenant_id: Uuid,
    pub domain_id: Uuid,
    pub selector: String,
    pub sealed_key: Vec<u8>,
    pub key_version: String,
}

/// The row's key sealed under the current master key; `None` when it already is.
pub fn reseal_row(sealer: &Sealer, row: &SealedKeyRow) -> Result<Option<Vec<u8>>, StoreError> {
    if row.key_version == sealer.version() {
        return Ok(None);
    }
    let aad = key_aad(row.tenant_id, row.domain_id, &row.selector);
    let private_key = sealer
        .open(&row.sealed_key, &row.key_version, aad.as_bytes())
        .map_err(|err| {
            StoreError::Invalid(format!(
                "DKIM key of tenant {} domain {} selector {:?} cannot be opened: {err}",
                row.tenant_id, row.domain_id, row.selector
            ))
        })?;
    Ok(Some(sealer.seal(&private_key, aad.as_bytes())))
}

/// Re-seals every key not sealed under the current master key, `batch` rows at a
/// time; returns how many rows were re-sealed.
pub async fn reseal_all(pool: &Pool, sealer: &Sealer, batch: i64) -> Result<u64, StoreError> {
    if batch <= 0 {
        return Err(StoreError::Invalid(format!(
            "reseal batch must be positive, not {batch}"
        )));
    }
    let mut client = pool.get().await?;
    let current = sealer.version();
    let mut after: Option<(Uuid, Uuid, String)> = None;
    let mut resealed = 0;
    loop {
        let rows = match &after {
            None => {
                let select = client
                    .prepare_cached(
                        "SELECT tenant_id, domain_id, selector, sealed_key, key_version
                           FROM dkim_keys
                          WHERE key_version <> $1
                          ORDER BY tenant_id, domain_id, selector
                          LIMIT $2",
                    )
                    .await?;
                client.query(&select, &[&current, &batch]).await?
            }
            Some((tenant, domain, selector)) => {
                let select = client
                    .prepare_cached(
                        "SELECT tenant_id, domain_id, selector, sealed_key, key_version
                           FROM dkim_keys
                          WHERE key_version <> $1
                            AND (tenant_id, domain_id, selector) > ($3, $4, $5)
                          ORDER BY tenant_id, domain_id, selector
                          LIMIT $2",
                    )
                    .await?;
                client
                    .query(&select, &[&current, &batch, tenant, domain, selector])
                    .await?
            }
        };
        let rows: Vec<SealedKeyRow> = rows
            .iter()
            .map(|row| SealedKeyRow {
                tenant_id: row.get(0),
                domain_id: row.get(1),
                selector: row.get(2),
                sealed_key: row.get(3),
                key_version: row.get(4),
            })
            .collect();
        let Some(last) = rows.last() else {
            return Ok(resealed);
        };
        after = Some((last.tenant_id, last.domain_id, last.selector.clone()));

        let tx = client.transaction().await?;
        let update = tx
            .prepare_cached(
                "UPDATE dkim_keys SET sealed_key = $4, key_version = $5
                  WHERE tenant_id = $1 AND domain_id = $2 AND selector = $3
                    AND key_version = $6",
            )
            .await?;
        for row in &rows {
            let Some(sealed) = reseal_row(sealer, row)? else {
                continue;
            };
            resealed += tx
                .execute(
                    &update,
                    &[
                        &row.tenant_id,
                        &row.domain_id,
                        &row.selector,
                        &sealed,
                        &current,
                        &row.key_version,
                    ],
                )
                .await?;
        }
        tx.commit().await?;
        if (rows.len() as i64) < batch {
            return Ok(resealed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PKCS8: &[u8] = b"0\x82 pretend PKCS#8 private key bytes";

    fn row(sealer: &Sealer, selector: &str) -> SealedKeyRow {
        let (tenant_id, domain_id) = (Uuid::new_v4(), Uuid::new_v4());
        let aad = key_aad(tenant_id, domain_id, selector);
        SealedKeyRow {
            tenant_id,
            domain_id,
            selector: selector.into(),
            sealed_key: sealer.seal(PKCS8, aad.as_bytes()),
            key_version: sealer.version().into(),
        }
    }

    #[test]
    fn a_row_under_a_previous_key_is_resealed_under_the_current_one() {
        let old = Sealer::from_keys([1; 32], &[]);
        let rotated = Sealer::from_keys([2; 32], &[[1; 32]]);
        let stored = row(&old, "s1");
        let resealed = reseal_row(&rotated, &stored).unwrap().expect("re-sealed");
        let aad = key_aad(stored.tenant_id, stored.domain_id, "s1");
        let opened = rotated
            .open(&resealed, rotated.version(), aad.as_bytes())
            .unwrap();
        assert_eq!(opened.as_slice(), PKCS8);
        assert!(old.open(&resealed, old.version(), aad.as_bytes()).is_err());
        // Already current: nothing to do.
        let current = SealedKeyRow {
            sealed_key: resealed,
            key_version: rotated.version().into(),
            ..stored
        };
        assert_eq!(reseal_row(&rotated, &current).unwrap(), None);
    }

    #[test]
    fn an_unopenable_row_names_the_row_never_the_key() {
        let old = Sealer::from_keys([1; 32], &[]);
        let without_old = Sealer::from_keys([2; 32], &[]);
        let stored = row(&old, "s1");
        let err = reseal_row(&without_old, &stored).unwrap_err().to_string();
        for part in [
            stored.tenant_id.to_string(),
            stored.domain_id.to_string(),
            "\"s1\"".to_string(),
            old.version().to_string(),
        ] {
            assert!(err.contains(&part), "{part} missing from {err}");
        }
        assert!(!err.contains("pretend"), "{err}");

        // Sealed for another row (aad), or tampered: also refused by name.
        let rotated = Sealer::from_keys([2; 32], &[[1; 32]]);
        let mut moved = row(&old, "s1");
        moved.selector = "s2".into();
        let err = reseal_row(&rotated, &moved).unwrap_err().to_string();
        assert!(
            err.contains("\"s2\"") && err.contains("cannot be opened"),
            "{err}"
        );
    }
}
