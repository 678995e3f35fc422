//! What became of a PodNetwork write. A refusal by the API server is definite; a lost
//! answer (connection reset, client timeout, a 5xx from a server that may have stored the
//! object anyway) is not. The unit such a write carried stays claimed until a re-read
//! tells which it was: freeing it on a guess could give one address to two pods.

use eni_crds::PodNetworkSpec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The PodNetwork holds what was written.
    Stored,
    /// The write did not happen: the unit may go back.
    NotStored,
    /// The answer was lost: re-read before deciding.
    Unknown,
}

/// The outcome of a write that returned `e`.
pub fn of_error(e: &kube::Error) -> Outcome {
    match e {
        // A 4xx is the server refusing the request (validation, conflict, admission,
        // priority-and-fairness rejection): nothing was stored.
        kube::Error::Api(s) if (400..500).contains(&s.code) => Outcome::NotStored,
        // Failed before anything was sent.
        kube::Error::BuildRequest(_) | kube::Error::Auth(_) => Outcome::NotStored,
        // 5xx (a 504 is the server's own timeout, often after the write), transport
        // errors, an answer that could not be read: the object may exist.
        _ => Outcome::Unknown,
    }
}

/// What a re-read of the PodNetwork (`found`, by name) says about a write of `written`
/// whose answer was lost: stored only if it is this pod's, with this unit.
pub fn settle(found: Option<&PodNetworkSpec>, written: &PodNetworkSpec) -> Outcome {
    match found {
        Some(f)
            if f.pod_uid == written.pod_uid
                && f.allocation.eni_id == written.allocation.eni_id
                && f.allocation.address == written.allocation.address =>
        {
            Outcome::Stored
        }
        _ => Outcome::NotStored,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use eni_crds::{Allocation, Mode};
    use kube::core::Status;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Status::failure("x", "y").with_code(code).boxed())
    }

    #[test]
    fn refusals_are_definite_lost_answers_are_not() {
        for code in [400, 403, 404, 409, 422, 429] {
            assert_eq!(of_error(&api(code)), Outcome::NotStored, "{code}");
        }
        for code in [500, 503, 504] {
            assert_eq!(of_error(&api(code)), Outcome::Unknown, "{code}");
        }
        let reset = kube::Error::Service(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        )));
        assert_eq!(of_error(&reset), Outcome::Unknown);
        let unreadable =
            kube::Error::SerdeError(serde_json::from_str::<u8>("x").expect_err("not a number"));
        assert_eq!(of_error(&unreadable), Outcome::Unknown);
    }

    fn spec(uid: &str, eni: &str, address: &str) -> PodNetworkSpec {
        PodNetworkSpec {
            pod_uid: uid.into(),
            node_name: "n1".into(),
            pool: "p".into(),
            mode: Mode::SharedIp,
            allocation: Allocation {
                address: address.parse().expect("address"),
                eni_id: eni.into(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn a_re_read_settles_it() {
        let written = spec("u1", "eni-a", "10.0.1.5");
        assert_eq!(settle(Some(&written.clone()), &written), Outcome::Stored);
        assert_eq!(settle(None, &written), Outcome::NotStored);
        // Another pod of the same name, or this pod with another unit (a previous
        // leader's write): ours did not land.
        assert_eq!(
            settle(Some(&spec("u2", "eni-a", "10.0.1.5")), &written),
            Outcome::NotStored
        );
        assert_eq!(
            settle(Some(&spec("u1", "eni-a", "10.0.1.6")), &written),
            Outcome::NotStored
        );
    }
}
