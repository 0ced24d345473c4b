//! Property test of the broker core against a reference model.
//!
//! Random sequences of commands (SOS, create, join, pull, connect, close, status,
//! disconnect, time jumps followed by `expire_due`, bulk deletes followed by
//! `release_codes`) drive a real [`Broker`] and a deliberately simple [`Model`] side by
//! side. The model is written from the lifecycle rules of DESIGN.md and the doc comments of
//! the core, not from its implementation: plain `Vec`s, linear scans, the queue recomputed
//! from scratch on every look. After every step the two must agree on the answer (and the
//! kind of refusal), on every case's state, seats and deadline, on the queue order, on the
//! next deadline, on the open-case and held-code counts, and on the effects that matter
//! (pairs, unpairs, disconnects, peer-left and session-ended notices). A refused command
//! must push no effect. Invariants of the core (no party in two cases, `in_progress` has
//! both seats, a `Pair` only with both seats taken, codes never reissued while held, a
//! history that follows the lifecycle table) are checked on their own as well.
//!
//! The party pool is small on purpose (four customer connections, three expert
//! connections) so that collisions, double attaches and re-used connection ids happen
//! often; the case lifetime is one minute and the open-case limit small so that expiry and
//! `TooManyCases` are reached in short sequences.
//!
//! `ops.rs` draws the operations, `model.rs` is the reference model, `harness.rs` runs both
//! side by side and compares; this file holds the settings and the property itself.

use std::collections::VecDeque;
use std::time::Duration;

use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use sosq::protocol::{close_code, CaseFilter, CaseInfo, CaseOrigin, CaseState, Event, Timestamp};
use sosq::SessionCode;

use super::*;

mod harness;
mod model;
mod ops;

use harness::*;
use model::*;
use ops::*;

/// Case lifetime in the test, in milliseconds.
const TTL_MS: u64 = 60_000;
/// Open-case limit in the test.
const MAX_OPEN: usize = 6;
/// The first "now".
const T0: u64 = 1_700_000_000_000;
/// Customer connections.
const CUSTOMERS: [PartyId; 4] = [PartyId(1), PartyId(2), PartyId(3), PartyId(4)];
/// Expert connections.
const EXPERTS: [PartyId; 3] = [PartyId(11), PartyId(12), PartyId(13)];
/// A well-formed code that the model never hands out on purpose.
const STRANGE_CODE: u64 = 123_456_789;
/// A well-formed secret that is nobody's.
const WRONG_SECRET: &str = "00000000000000000000000000000000";

fn run(seed: u64, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut harness = Harness::new(seed);
    for op in ops {
        harness.step(op)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 10_000,
        max_shrink_iters: 20_000,
        ..ProptestConfig::default()
    })]

    /// The core and the model agree after every step of every sequence.
    #[test]
    fn broker_core_follows_the_reference_model(
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        run(seed, &ops)?;
    }
}
