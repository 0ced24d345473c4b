//! The random operations a sequence is made of, and the strategies that draw them.

use super::*;

// ----- operations ----------------------------------------------------------------------

/// How a test types a code.
#[derive(Debug, Clone)]
pub(super) enum CodeChoice {
    /// The n-th open case of the model (modulo how many), in one of the typed forms.
    Open(usize, u8),
    /// The n-th code the model has seen (modulo how many), in one of the typed forms.
    Known(usize, u8),
    /// A well-formed code, probably never issued.
    Strange,
    /// Not a code at all.
    Malformed,
}

/// Which resume secret a customer gives.
#[derive(Debug, Clone)]
pub(super) enum SecretChoice {
    None,
    /// The secret of the case addressed (if it has one).
    Right,
    /// A well-formed secret of nobody.
    Wrong,
    /// The secret of the n-th bound case (modulo), usually another case.
    Other(usize),
}

/// A name as a person (or an attacker) types it.
#[derive(Debug, Clone)]
pub(super) enum NameChoice {
    Plain(u8),
    Padded,
    Empty,
    Control,
    TooLong,
}

/// One step of a sequence.
#[derive(Debug, Clone)]
pub(super) enum Op {
    OpenSos {
        customer: usize,
        name: NameChoice,
    },
    Create {
        expert: usize,
        name: NameChoice,
    },
    Join {
        customer: usize,
        code: CodeChoice,
        secret: SecretChoice,
        name: NameChoice,
    },
    Pull {
        expert: usize,
        wait: bool,
    },
    Connect {
        expert: usize,
        code: CodeChoice,
    },
    Disconnect {
        party: usize,
    },
    CloseByExpert {
        expert: usize,
        code: CodeChoice,
    },
    CloseByCustomer {
        customer: usize,
        code: CodeChoice,
        secret: SecretChoice,
    },
    View {
        customer: usize,
        code: CodeChoice,
        secret: SecretChoice,
    },
    Tick {
        ms: u64,
    },
    DeleteCodes {
        codes: Vec<CodeChoice>,
    },
    DeleteWhere {
        state: Option<CaseState>,
        older_than_ms: Option<u64>,
    },
    DeleteNothing,
}

pub(super) fn code_choice() -> impl Strategy<Value = CodeChoice> {
    prop_oneof![
        10 => (any::<usize>(), 0u8..4).prop_map(|(i, form)| CodeChoice::Open(i, form)),
        5 => (any::<usize>(), 0u8..4).prop_map(|(i, form)| CodeChoice::Known(i, form)),
        1 => Just(CodeChoice::Strange),
        1 => Just(CodeChoice::Malformed),
    ]
}

pub(super) fn secret_choice() -> impl Strategy<Value = SecretChoice> {
    prop_oneof![
        3 => Just(SecretChoice::None),
        4 => Just(SecretChoice::Right),
        1 => Just(SecretChoice::Wrong),
        1 => any::<usize>().prop_map(SecretChoice::Other),
    ]
}

pub(super) fn name_choice() -> impl Strategy<Value = NameChoice> {
    prop_oneof![
        20 => (0u8..3).prop_map(NameChoice::Plain),
        2 => Just(NameChoice::Padded),
        1 => Just(NameChoice::Empty),
        1 => Just(NameChoice::Control),
        1 => Just(NameChoice::TooLong),
    ]
}

pub(super) fn state_choice() -> impl Strategy<Value = Option<CaseState>> {
    prop_oneof![
        Just(None),
        proptest::sample::select(CaseState::ALL.to_vec()).prop_map(Some),
    ]
}

pub(super) fn tick_ms() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0u64..3_000,
        1 => Just(TTL_MS - 1),
        1 => Just(TTL_MS),
        1 => TTL_MS..3 * TTL_MS,
    ]
}

pub(super) fn op() -> impl Strategy<Value = Op> {
    let customer = 0..CUSTOMERS.len();
    let expert = 0..EXPERTS.len();
    prop_oneof![
        6 => (customer.clone(), name_choice())
            .prop_map(|(customer, name)| Op::OpenSos { customer, name }),
        4 => (expert.clone(), name_choice()).prop_map(|(expert, name)| Op::Create { expert, name }),
        7 => (customer.clone(), code_choice(), secret_choice(), name_choice()).prop_map(
            |(customer, code, secret, name)| Op::Join { customer, code, secret, name }
        ),
        5 => (expert.clone(), any::<bool>()).prop_map(|(expert, wait)| Op::Pull { expert, wait }),
        4 => (expert.clone(), code_choice()).prop_map(|(expert, code)| Op::Connect { expert, code }),
        7 => (0..CUSTOMERS.len() + EXPERTS.len()).prop_map(|party| Op::Disconnect { party }),
        2 => (expert.clone(), code_choice())
            .prop_map(|(expert, code)| Op::CloseByExpert { expert, code }),
        3 => (customer.clone(), code_choice(), secret_choice()).prop_map(
            |(customer, code, secret)| Op::CloseByCustomer { customer, code, secret }
        ),
        2 => (customer, code_choice(), secret_choice())
            .prop_map(|(customer, code, secret)| Op::View { customer, code, secret }),
        4 => tick_ms().prop_map(|ms| Op::Tick { ms }),
        1 => proptest::collection::vec(code_choice(), 0..4)
            .prop_map(|codes| Op::DeleteCodes { codes }),
        1 => (
            state_choice(),
            proptest::option::of(proptest::sample::select(vec![0u64, 1_000, 30_000, TTL_MS])),
        )
            .prop_map(|(state, older_than_ms)| Op::DeleteWhere { state, older_than_ms }),
        1 => Just(Op::DeleteNothing),
    ]
}
