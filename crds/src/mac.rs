//! A MAC address as the API carries it.
//!
//! Parsing is the `macaddr` crate's; this newtype fixes the wire form. The CRD's CEL rule
//! admits only lower-case `aa:bb:cc:dd:ee:ff`, and `macaddr` prints upper case, so the
//! newtype writes lower case itself and reads either.

use std::fmt;
use std::str::FromStr;

use macaddr::MacAddr6;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 48-bit MAC address, `aa:bb:cc:dd:ee:ff` in JSON.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac(MacAddr6);

impl Mac {
    pub const fn new(octets: [u8; 6]) -> Self {
        let [a, b, c, d, e, f] = octets;
        Mac(MacAddr6::new(a, b, c, d, e, f))
    }

    pub fn octets(self) -> [u8; 6] {
        self.0.into_array()
    }
}

impl From<[u8; 6]> for Mac {
    fn from(octets: [u8; 6]) -> Self {
        Mac::new(octets)
    }
}

/// A string that is not a MAC address.
#[derive(Debug, thiserror::Error)]
#[error("{text:?} is not a MAC address")]
pub struct MacParseError {
    text: String,
}

impl FromStr for Mac {
    type Err = MacParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        MacAddr6::from_str(text)
            .map(Mac)
            .map_err(|_| MacParseError {
                text: text.to_string(),
            })
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.octets();
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for Mac {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mac {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_lower_case_read_in_either_case() {
        let mac: Mac = "02:AB:cd:EF:01:23".parse().expect("mac");
        assert_eq!(mac.octets(), [0x02, 0xab, 0xcd, 0xef, 0x01, 0x23]);
        assert_eq!(mac.to_string(), "02:ab:cd:ef:01:23");
        assert_eq!(
            serde_json::to_string(&mac).expect("json"),
            "\"02:ab:cd:ef:01:23\""
        );
        let read: Mac = serde_json::from_str("\"02:ab:cd:ef:01:23\"").expect("read");
        assert_eq!(read, mac);
        assert_eq!(Mac::from([0x02, 0xab, 0xcd, 0xef, 0x01, 0x23]), mac);
    }

    #[test]
    fn malformed_macs_are_errors() {
        for bad in [
            "",
            "02:ab:cd:ef:01",
            "02:ab:cd:ef:01:23:45",
            "0g:ab:cd:ef:01:23",
            "2:ab:cd:ef:01:234",
            "not a mac",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad:?} accepted");
            let json = serde_json::to_string(bad).expect("json");
            assert!(serde_json::from_str::<Mac>(&json).is_err(), "{bad:?} read");
        }
        assert!(serde_json::from_str::<Mac>("42").is_err());
    }
}
