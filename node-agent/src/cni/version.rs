//! CNI spec versions the plugin speaks.

use std::fmt;

/// A CNI spec version the plugin accepts. Ordered, so `>=` compares releases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SpecVersion {
    V0_3_0,
    V0_3_1,
    V0_4_0,
    V1_0_0,
    V1_1_0,
}

impl SpecVersion {
    /// The newest version, used for VERSION output and for errors raised before the
    /// config's version is known.
    pub const LATEST: SpecVersion = SpecVersion::V1_1_0;

    pub const ALL: [SpecVersion; 5] = [
        SpecVersion::V0_3_0,
        SpecVersion::V0_3_1,
        SpecVersion::V0_4_0,
        SpecVersion::V1_0_0,
        SpecVersion::V1_1_0,
    ];

    pub fn parse(text: &str) -> Option<SpecVersion> {
        Self::ALL.into_iter().find(|v| v.as_str() == text)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SpecVersion::V0_3_0 => "0.3.0",
            SpecVersion::V0_3_1 => "0.3.1",
            SpecVersion::V0_4_0 => "0.4.0",
            SpecVersion::V1_0_0 => "1.0.0",
            SpecVersion::V1_1_0 => "1.1.0",
        }
    }

    /// Before 1.0.0 every entry of `ips` carried `"version": "4"|"6"`.
    pub fn ips_carry_version(self) -> bool {
        self < SpecVersion::V1_0_0
    }
}

impl fmt::Display for SpecVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The list printed by VERSION.
pub fn supported_versions() -> Vec<&'static str> {
    SpecVersion::ALL.iter().map(|v| v.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_versions_only() {
        assert_eq!(SpecVersion::parse("1.1.0"), Some(SpecVersion::V1_1_0));
        assert_eq!(SpecVersion::parse("0.4.0"), Some(SpecVersion::V0_4_0));
        assert_eq!(SpecVersion::parse("0.2.0"), None);
        assert_eq!(SpecVersion::parse("1.1"), None);
        assert_eq!(SpecVersion::parse("9.9.9"), None);
    }

    #[test]
    fn versions_are_ordered() {
        assert!(SpecVersion::V1_1_0 > SpecVersion::V1_0_0);
        assert!(SpecVersion::V0_4_0.ips_carry_version());
        assert!(!SpecVersion::V1_0_0.ips_carry_version());
        assert_eq!(supported_versions().last(), Some(&"1.1.0"));
    }
}
