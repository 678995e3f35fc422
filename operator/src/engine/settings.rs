//! A pool's spec resolved into the values the engine works with: durations parsed,
//! mode defaults applied.

use std::{collections::BTreeMap, time::Duration};

use eni_crds::{Datapath, ENIPool, Mode, SubnetPolicy};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("{field}: {value:?} is not a duration such as 30s, 5m or 1h30m")]
    Duration { field: &'static str, value: String },
    #[error("pool has no name")]
    Unnamed,
}

/// Warm free addresses a SharedIP node keeps when the pool does not say.
pub const DEFAULT_WARM_IPS: u32 = 2;
/// Warm ENIs (Exclusive) or member ENIs (Trunk) a node keeps when the pool does not say.
pub const DEFAULT_WARM_ENIS: u32 = 1;

#[derive(Clone, Debug, PartialEq)]
pub struct PoolSettings {
    pub name: String,
    pub mode: Mode,
    pub priority: i32,
    /// SharedIP: addresses; Exclusive/Trunk: ENIs / member ENIs.
    pub min_units: u32,
    pub warm_units: u32,
    pub max_units: Option<u32>,
    pub max_enis: Option<u32>,
    pub release_delay: Duration,
    pub cooldown: Duration,
    pub prefix_delegation: bool,
    pub datapath: Datapath,
    pub subnet_ids: Vec<String>,
    pub subnet_tags: BTreeMap<String, String>,
    pub subnet_policy: SubnetPolicy,
    pub security_groups: Vec<String>,
    pub tags: BTreeMap<String, String>,
    pub sticky_release_after: Option<Duration>,
}

impl PoolSettings {
    pub fn from_pool(pool: &ENIPool) -> Result<Self, SettingsError> {
        let name = pool.metadata.name.clone().ok_or(SettingsError::Unnamed)?;
        let spec = &pool.spec;
        let warm = spec.warm.clone().unwrap_or_default();
        let (min_units, warm_units, max_units) = match spec.mode {
            Mode::SharedIp => (
                warm.min_ips.unwrap_or(0),
                warm.warm_ips.unwrap_or(DEFAULT_WARM_IPS),
                warm.max_ips,
            ),
            Mode::Exclusive | Mode::Trunk => (
                0,
                warm.warm_enis.unwrap_or(DEFAULT_WARM_ENIS),
                warm.max_enis,
            ),
        };
        let release_delay = match &spec.warm {
            Some(w) => parse_duration("warm.releaseDelay", &w.release_delay)?,
            None => Duration::from_secs(300),
        };
        Ok(PoolSettings {
            name,
            mode: spec.mode,
            priority: spec.priority,
            min_units,
            warm_units,
            max_units,
            max_enis: warm.max_enis,
            release_delay,
            cooldown: parse_duration("ipCooldown", &spec.ip_cooldown)?,
            prefix_delegation: spec.prefix_delegation,
            datapath: spec.datapath.unwrap_or_default(),
            subnet_ids: spec.subnets.ids.clone(),
            subnet_tags: spec.subnets.tags.clone(),
            subnet_policy: spec.subnets.policy,
            security_groups: spec.security_groups.clone(),
            tags: spec.tags.clone(),
            sticky_release_after: spec
                .sticky_ip_for_stateful_sets
                .as_ref()
                .map(|s| parse_duration("stickyIPForStatefulSets.releaseAfter", &s.release_after))
                .transpose()?,
        })
    }
}

/// Parses the Go-style durations the CRD accepts: one or more `<n><unit>` with units
/// ms, s, m, h (e.g. `1h30m`, `500ms`).
pub fn parse_duration(field: &'static str, value: &str) -> Result<Duration, SettingsError> {
    let err = || SettingsError::Duration {
        field,
        value: value.to_owned(),
    };
    let mut rest = value;
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return Err(err());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(err());
        }
        let n: u64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let (unit, len) = if rest.starts_with("ms") {
            (Duration::from_millis(1), 2)
        } else if rest.starts_with('s') {
            (Duration::from_secs(1), 1)
        } else if rest.starts_with('m') {
            (Duration::from_secs(60), 1)
        } else if rest.starts_with('h') {
            (Duration::from_secs(3600), 1)
        } else {
            return Err(err());
        };
        rest = &rest[len..];
        let part = unit
            .checked_mul(u32::try_from(n).map_err(|_| err())?)
            .ok_or_else(err)?;
        total = total.checked_add(part).ok_or_else(err)?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok = [
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
            ("1m30s250ms", 90_250),
            ("0s", 0),
        ];
        for (s, ms) in ok {
            assert_eq!(parse_duration("f", s), Ok(Duration::from_millis(ms)), "{s}");
        }
        for bad in ["", "30", "s", "5d", "1.5h", "-1s", "m5"] {
            assert!(parse_duration("f", bad).is_err(), "{bad} accepted");
        }
    }

    fn pool(yaml: &str) -> ENIPool {
        serde_yaml::from_str(yaml).expect("pool yaml")
    }

    #[test]
    fn mode_defaults() {
        let shared = pool(
            "metadata: {name: a}\nspec: {mode: SharedIP, nodeSelector: {}, subnets: {ids: [subnet-1]}}",
        );
        let s = PoolSettings::from_pool(&shared).expect("settings");
        assert_eq!(
            (s.min_units, s.warm_units, s.max_units),
            (0, DEFAULT_WARM_IPS, None)
        );
        assert_eq!(s.cooldown, Duration::from_secs(30));
        assert_eq!(s.release_delay, Duration::from_secs(300));

        let excl = pool(
            "metadata: {name: b}\nspec: {mode: Exclusive, nodeSelector: {}, subnets: {ids: [subnet-1]}, warm: {warmENIs: 3, maxENIs: 5, releaseDelay: 1m}}",
        );
        let s = PoolSettings::from_pool(&excl).expect("settings");
        assert_eq!((s.min_units, s.warm_units, s.max_units), (0, 3, Some(5)));
        assert_eq!(s.release_delay, Duration::from_secs(60));
    }
}
