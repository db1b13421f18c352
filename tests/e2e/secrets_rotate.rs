//! `penguin secrets rotate` re-seals every DKIM private key under the new master
//! key (issue 16): keys sealed under the old key (configured as a previous key)
//! open afterwards under the new one only, keys already current are untouched,
//! a second run has nothing to do, and a key sealed under a master key nobody
//! configured stops the run naming its row, never a key.

use std::path::Path;
use std::process::Output;

use penguin_config::{Config, SecretsConfig};
use penguin_engine::secrets::Sealer;
use penguin_engine::store::dkim_keys::key_aad;
use uuid::Uuid;

use crate::support::TestEnv;

/// base64 of 32 × 0x00 and of 32 × 0xff (no base64 crate in this test binary).
const OLD_KEY: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
const NEW_KEY: &str = "//////////////////////////////////////////8=";
const PKCS8: &[u8] = b"0\x82 stand-in for a PKCS#8 private key";

/// The contract's `dkim_keys` columns, for a database the lead's V12 migration
/// has not reached yet (with V12 the table exists and this is a no-op).
const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS dkim_keys (
    tenant_id uuid NOT NULL, domain_id uuid NOT NULL, selector text NOT NULL,
    algorithm text NOT NULL, public_key text NOT NULL, sealed_key bytea NOT NULL,
    key_version text NOT NULL, state text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(), activated_at timestamptz,
    retire_after timestamptz, PRIMARY KEY (tenant_id, domain_id, selector))";

struct Key {
    tenant: Uuid,
    domain: Uuid,
    selector: String,
}

async fn insert_key(env: &TestEnv, sealer: &Sealer, tenant: Uuid, selector: &str) -> Key {
    let domain = Uuid::new_v4();
    let client = env.pg.get().await.unwrap();
    client
        .execute(
            "INSERT INTO sending_domains (tenant_id, id, domain) VALUES ($1, $2, $3)",
            &[&tenant, &domain, &format!("{domain}.example")],
        )
        .await
        .unwrap();
    let aad = key_aad(tenant, domain, selector);
    client
        .execute(
            "INSERT INTO dkim_keys (tenant_id, domain_id, selector, algorithm, public_key,
                                    sealed_key, key_version, state)
             VALUES ($1, $2, $3, 'ed25519-sha256', 'cHVibGlj', $4, $5, 'active')",
            &[
                &tenant,
                &domain,
                &selector,
                &sealer.seal(PKCS8, aad.as_bytes()),
                &sealer.version(),
            ],
        )
        .await
        .unwrap();
    Key {
        tenant,
        domain,
        selector: selector.into(),
    }
}

/// (sealed_key, key_version) of a key's row.
async fn stored(env: &TestEnv, key: &Key) -> (Vec<u8>, String) {
    let client = env.pg.get().await.unwrap();
    let row = client
        .query_one(
            "SELECT sealed_key, key_version FROM dkim_keys
              WHERE tenant_id = $1 AND domain_id = $2 AND selector = $3",
            &[&key.tenant, &key.domain, &key.selector],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

async fn rotate(dir: &Path, env: &TestEnv, secrets: SecretsConfig) -> Output {
    let config = Config {
        database: env.config.database.clone(),
        secrets,
        ..Config::default()
    };
    let path = dir.join("penguin.toml");
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
    tokio::process::Command::new(env!("CARGO_BIN_EXE_penguin"))
        .args(["secrets", "rotate", "--batch", "2", "--config"])
        .arg(&path)
        .env_remove("PENGUIN_SECRETS__MASTER_KEY")
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test]
async fn rotate_reseals_every_old_key_and_names_an_unopenable_row() {
    let env = TestEnv::start().await;
    env.psql(CREATE_TABLE).await;
    let tenant = Uuid::new_v4();
    env.psql(&format!(
        "INSERT INTO tenants (id, name) VALUES ('{tenant}', 'rotate')"
    ))
    .await;
    let both = SecretsConfig {
        master_key: Some(NEW_KEY.into()),
        previous_master_keys: vec![OLD_KEY.into()],
    };
    let rotated = Sealer::from_config(&both).unwrap().unwrap();
    let old = Sealer::from_keys([0; 32], &[]);
    assert_eq!(
        rotated.version(),
        Sealer::from_keys([0xff; 32], &[]).version()
    );

    // Five keys under the old master key (three batches of two), one already new.
    let mut old_keys = Vec::new();
    for i in 0..5 {
        old_keys.push(insert_key(&env, &old, tenant, &format!("s{i}")).await);
    }
    let current = insert_key(&env, &rotated, tenant, "current").await;
    let current_before = stored(&env, &current).await;

    let dir = std::env::temp_dir().join(format!("penguin-rotate-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let output = rotate(&dir, &env, both.clone()).await;
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("re-sealed 5 DKIM keys"),
        "{}",
        text(&output)
    );
    let only_new = Sealer::from_keys([0xff; 32], &[]);
    for key in &old_keys {
        let (sealed, version) = stored(&env, key).await;
        assert_eq!(version, only_new.version());
        let aad = key_aad(key.tenant, key.domain, &key.selector);
        let opened = only_new.open(&sealed, &version, aad.as_bytes()).unwrap();
        assert_eq!(opened.as_slice(), PKCS8);
    }
    assert_eq!(
        stored(&env, &current).await,
        current_before,
        "already current: untouched"
    );

    let again = rotate(&dir, &env, both.clone()).await;
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("re-sealed 0 DKIM keys"),
        "{}",
        text(&again)
    );

    // A key sealed under a master key this configuration does not hold.
    let stranger = insert_key(&env, &Sealer::from_keys([7; 32], &[]), tenant, "lost").await;
    let failed = rotate(&dir, &env, both.clone()).await;
    assert!(!failed.status.success(), "{}", text(&failed));
    let shown = text(&failed);
    for part in [
        stranger.tenant.to_string(),
        stranger.domain.to_string(),
        "\"lost\"".into(),
    ] {
        assert!(shown.contains(&part), "{part} not named: {shown}");
    }
    assert!(
        !shown.contains(NEW_KEY) && !shown.contains(OLD_KEY),
        "{shown}"
    );

    // No master key at all: a clear refusal before touching the database.
    let none = rotate(&dir, &env, SecretsConfig::default()).await;
    assert!(!none.status.success(), "{}", text(&none));
    assert!(text(&none).contains("no master key"), "{}", text(&none));
    std::fs::remove_dir_all(&dir).unwrap();
}
