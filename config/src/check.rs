//! What `penguin config check` shows: every problem of a configuration (not
//! only the first, as [`Config::validate`] stops at), and the configuration
//! itself with every secret masked, so it can be pasted into a ticket.

use crate::Config;
use crate::error::ConfigError;
use crate::secrets;

/// What stands for a secret that is set.
pub const MASKED: &str = "<masked>";

impl Config {
    /// Every problem found, each naming its key; empty when a node would start.
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut problems = self.setting_problems();
        let secrets = [
            secrets::check("api.admin_token", &self.api.admin_token),
            secrets::check("tracking.secret", &self.tracking.secret),
            self.secrets.validate(),
        ];
        problems.extend(secrets.into_iter().filter_map(Result::err));
        problems
    }

    /// Every problem of the settings, the secrets excepted, in the order
    /// [`Config::validate_settings`] reports the first of them.
    pub(crate) fn setting_problems(&self) -> Vec<ConfigError> {
        [
            self.database.validate(),
            self.redis.validate(),
            self.api.validate(),
            self.public.validate(&self.api.listen),
            self.node.validate(),
            self.queue.validate(),
            self.delivery.validate(),
            self.delivery.validate_against(&self.queue),
            self.tracking.validate(),
            self.limits.validate(),
            self.warmup.validate(),
            self.health.validate(),
            self.templates.validate(),
            self.domains.validate(),
            self.sequences.validate(),
            self.webhooks.validate(),
            self.log.validate(),
            self.retention.validate(),
        ]
        .into_iter()
        .filter_map(Result::err)
        .collect()
    }

    /// This configuration with the secrets (tokens, master keys, passwords in
    /// the database and Redis URLs) replaced by [`MASKED`].
    pub fn masked(&self) -> Config {
        let mut config = self.clone();
        let mask = |value: &mut String| {
            if !value.is_empty() {
                *value = MASKED.into();
            }
        };
        mask(&mut config.api.admin_token);
        mask(&mut config.tracking.secret);
        if let Some(key) = config.secrets.master_key.as_mut() {
            mask(key);
        }
        config
            .secrets
            .previous_master_keys
            .iter_mut()
            .for_each(mask);
        config.database.url = mask_password(&config.database.url);
        config.redis.url = mask_password(&config.redis.url);
        for seed in &mut config.redis.cluster {
            *seed = mask_password(seed);
        }
        config
    }
}

/// `scheme://user:password@host…` with the password masked; a key=value
/// string's `password=…` too.
fn mask_password(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _password)) = userinfo.split_once(':')
        {
            return format!("{scheme}://{user}:{MASKED}@{host}{tail}");
        }
        return url.to_string();
    }
    url.split_whitespace()
        .map(|word| match word.split_once('=') {
            Some(("password", _)) => format!("password={MASKED}"),
            _ => word.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_listed() {
        let mut config = Config::default();
        config.queue.window = 0;
        config.redis.url = "http://nope".into();
        let problems: Vec<String> = config.problems().iter().map(|p| p.to_string()).collect();
        let all = problems.join("\n");
        for key in [
            "redis.url",
            "queue.window",
            "api.admin_token",
            "tracking.secret",
        ] {
            assert!(all.contains(key), "{key} missing from:\n{all}");
        }
    }

    #[test]
    fn secrets_and_passwords_are_masked() {
        let mut config = Config::default();
        config.generate_missing_secrets();
        config.database.url = "postgres://penguin:hunter2@db:5432/penguin".into();
        config.redis.url = "rediss://:s3cret@cache:6380/0".into();
        config.redis.cluster = vec!["rediss://:cl0ster@cache-2:6380".into()];
        let masked = config.masked();
        let text = format!("{masked:?}{}", serde_json_like(&masked));
        for secret in [
            config.api.admin_token.as_str(),
            config.tracking.secret.as_str(),
            config.secrets.master_key.as_deref().unwrap(),
            "hunter2",
            "s3cret",
            "cl0ster",
        ] {
            assert!(!text.contains(secret), "{secret} shown");
        }
        assert_eq!(
            masked.database.url,
            "postgres://penguin:<masked>@db:5432/penguin"
        );
        assert_eq!(
            mask_password("host=db password=x user=p"),
            "host=db password=<masked> user=p"
        );
    }

    fn serde_json_like(config: &Config) -> String {
        figment::Figment::from(figment::providers::Serialized::defaults(config))
            .extract::<figment::value::Value>()
            .map(|v| format!("{v:?}"))
            .unwrap_or_default()
    }
}
