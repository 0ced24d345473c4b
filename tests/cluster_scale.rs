//! The heavy cluster scenarios (issue 14), each against three real `sosqd` nodes
//! sharing one fresh PostgreSQL database:
//!
//! - 1,000 waiting customers on the three nodes, 30 experts pulling concurrently until
//!   every queue is empty: each case is pulled exactly once, and each expert's pulls come
//!   in the queue's order.
//! - 100,000 cases created through the three nodes: no two share a code.
//! - 20 rounds of `kill -9` of a random node at a random moment while customers wait and a
//!   session runs: nothing acknowledged is lost, waiting customers keep their place on a
//!   survivor, the expert re-pairs.
//!
//! Each test alone keeps both cores of a small machine busy, so they run one at a time
//! ([`one_at_a_time`]); they check counts and order, never how long anything took (the
//! waits only stop a broken run from hanging). Random choices come from a seed each test
//! prints; `SOSQ_TEST_SEED=N` repeats a run's choices.

mod common;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::cluster::{homes, relay_both_ways, wait_until, Asker, Cluster};
use common::postgres::FreshDatabase;
use common::Session;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use sosq::protocol::{CaseInfo, CaseState, ErrorKind, Event, Priority, Reply, Request};
use sosq::{Client, ClientError, ConnectOptions, SessionCode};
use tokio::task::JoinHandle;

/// How long a whole phase (1,000 customers in line, the queue worked off, 100,000
/// creations) may take before the test gives up: a guard against hangs, far above what a
/// working cluster needs.
const PHASE_PATIENCE: Duration = Duration::from_secs(600);

/// Serializes the tests of this file: three nodes and PostgreSQL under load already fill
/// two cores, and two such tests at once would only slow each other down.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The run's random generator, from `SOSQ_TEST_SEED` or a fresh seed; prints the seed.
fn seeded(test: &str) -> StdRng {
    let seed = std::env::var("SOSQ_TEST_SEED")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("{test}: seed {seed} (SOSQ_TEST_SEED={seed} repeats this run's choices)");
    StdRng::seed_from_u64(seed)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The outputs of spawned tasks, in order.
async fn all<T>(tasks: Vec<JoinHandle<T>>) -> Vec<T> {
    let mut outputs = Vec::with_capacity(tasks.len());
    for task in tasks {
        outputs.push(task.await.expect("a test task panicked"));
    }
    outputs
}

fn random_priority(rng: &mut StdRng) -> Priority {
    Priority::ALL[rng.random_range(0..Priority::ALL.len())]
}

// ---- 1,000 waiting cases, 30 experts ----------------------------------------------------

const CUSTOMERS: usize = 1_000;
const EXPERTS_PER_NODE: usize = 10;
const TEAMS: [&str; 2] = ["red", "blue"];

/// What a waiting customer heard until its session ended.
#[derive(Debug, Default)]
struct Heard {
    paired: usize,
    ended: bool,
}

/// A library customer asking for help on the nodes `options` names: its case (once the
/// node acknowledged it), and the task that holds its connection and counts its events
/// until the session ends. A library customer does not reconnect: a lost connection shows.
async fn wait_in_line(
    options: ConnectOptions,
    request: Request,
) -> Result<(SessionCode, JoinHandle<Heard>), String> {
    let (mut client, reply) = Client::connect_with(&options, Some(request))
        .await
        .map_err(|e| format!("customer on {}: {e}", options.server))?;
    let Some(Reply::Attached { case, .. }) = reply else {
        return Err(format!("customer on {}: {reply:?}", options.server));
    };
    let mut events = client.take_events().ok_or("no event stream")?;
    let listen = tokio::spawn(async move {
        let _connection = client;
        let mut heard = Heard::default();
        while let Some(event) = events.recv().await {
            match event {
                Event::Paired { .. } => heard.paired += 1,
                Event::SessionEnded { .. } => {
                    heard.ended = true;
                    break;
                }
                _ => {}
            }
        }
        heard
    });
    Ok((case.code, listen))
}

/// An expert working its queue: pull (no waiting), close the case, again, until its
/// queues are empty; the codes it was given, in order.
///
/// One connection is one party in one case, and closing the case ends the connection (the
/// server says `SessionEnded` and closes it), so every pull runs on a fresh connection:
/// the simplest way that never leaves a pulled case behind. (Leaving without closing
/// would put the case back in line.)
async fn work_queue(options: ConnectOptions) -> Result<Vec<SessionCode>, String> {
    let mut pulled = Vec::new();
    let deadline = Instant::now() + PHASE_PATIENCE;
    while Instant::now() < deadline {
        let mut client = Client::connect(&options)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        match client.request(Request::Pull { wait: false }).await {
            Ok(Reply::Attached { case, .. }) => {
                pulled.push(case.code);
                let code = case.code.to_string();
                let close = Request::Close {
                    code,
                    resume_secret: None,
                };
                match client.request(close).await {
                    Ok(Reply::Case(info)) if info.state == CaseState::Closed => {}
                    other => return Err(format!("close {} after pull: {other:?}", case.code)),
                }
            }
            Ok(other) => return Err(format!("pull answered {other:?}")),
            // Empty for this expert now; cases others claimed but have not paired yet
            // still show in its queue, and would come back if a pairing fell through.
            Err(ClientError::Refused(refusal)) if refusal.kind == ErrorKind::QueueEmpty => {
                let look = Request::Queue {
                    after: None,
                    limit: 1,
                };
                match client.request(look).await {
                    Ok(Reply::Queue(page)) if page.entries.is_empty() => {
                        client.close().await;
                        return Ok(pulled);
                    }
                    Ok(Reply::Queue(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
                    other => return Err(format!("queue: {other:?}")),
                }
            }
            Err(e) => return Err(format!("pull after {} cases: {e}", pulled.len())),
        }
    }
    Err(format!("still pulling after {PHASE_PATIENCE:?}"))
}

#[test]
fn a_thousand_waiting_cases_are_each_pulled_once_and_in_queue_order_by_thirty_experts() {
    let _alone = one_at_a_time();
    let Some(db) = FreshDatabase::create() else {
        return;
    };
    let mut rng = seeded("1,000 waiting cases");
    let started = Instant::now();
    // 1,000 customers come from one address (127.0.0.1): more than the default 100 each.
    let cluster = Cluster::start(3, db.url(), "max_connections_per_address = 5000\n");
    for team in TEAMS {
        cluster.add_group(team);
    }
    // Ten experts per node, five of each team: e0 (n1, red), e1 (n2, red), e2 (n3, red),
    // e3 (n1, blue)...
    let experts: Vec<(String, usize, [&str; 1])> = (0..3 * EXPERTS_PER_NODE)
        .map(|k| (format!("e{k}"), k % 3, [TEAMS[k / 3 % 2]]))
        .collect();
    let mut users: Vec<(&str, &str, &[&str])> = experts
        .iter()
        .map(|(name, _, team)| (name.as_str(), "expert", &team[..]))
        .collect();
    users.push(("root", "admin", &[]));
    let tokens = cluster.add_users(&users);
    let rt = runtime();
    // Tasks are spawned from this thread too, between the phases it waits on.
    let _spawn_here = rt.enter();
    let admin = Asker::new(&rt, &cluster, &tokens[3 * EXPERTS_PER_NODE]);

    // The customers, spread evenly over the nodes, each on one node only.
    let intake = Instant::now();
    let customers: Vec<(SessionCode, JoinHandle<Heard>)> = rt.block_on(async {
        let gate = Arc::new(tokio::sync::Semaphore::new(64));
        let mut tasks = Vec::new();
        for i in 0..CUSTOMERS {
            let team = TEAMS[rng.random_range(0..TEAMS.len())];
            let ask = Request::OpenSos {
                customer: format!("customer {i}"),
                description: format!("case {i} for {team}"),
                priority: random_priority(&mut rng),
                group: Some(team.to_string()),
            };
            let (gate, options) = (gate.clone(), cluster.options(&[i % 3], None));
            tasks.push(tokio::spawn(async move {
                let _turn = gate.acquire_owned().await.expect("gate");
                wait_in_line(options, ask).await
            }));
        }
        let customers = all(tasks).await.into_iter();
        customers
            .map(|c| c.unwrap_or_else(|e| panic!("{e}")))
            .collect()
    });
    let codes: HashSet<SessionCode> = customers.iter().map(|(code, _)| *code).collect();
    assert_eq!(codes.len(), CUSTOMERS, "a case per customer");

    // The queue order, from an admin's pages once every customer shows online.
    let line = wait_until("every customer online in the queue", PHASE_PATIENCE, || {
        let entries = admin.queue(&[0]);
        let all = entries.len() == CUSTOMERS && entries.iter().all(|e| e.online);
        all.then_some(entries)
    });
    let intake_took = intake.elapsed();
    let listed: HashSet<SessionCode> = line.iter().map(|e| e.code).collect();
    assert_eq!(
        listed, codes,
        "the queue holds exactly the customers' cases"
    );
    for pair in line.windows(2) {
        let [a, b] = [&pair[0], &pair[1]].map(|e| (e.priority, e.response_due, e.waiting_since));
        assert!(a <= b, "the queue is out of order: {pair:?}");
    }
    let mut places: HashMap<&str, u32> = HashMap::new();
    for entry in &line {
        let place = places.entry(entry.group.as_str()).or_default();
        *place += 1;
        assert_eq!(entry.position, Some(*place), "its place in its team's line");
    }
    let rank: HashMap<SessionCode, (usize, &str)> = line
        .iter()
        .enumerate()
        .map(|(i, e)| (e.code, (i, e.group.as_str())))
        .collect();

    // Thirty experts pull at once, each from its own node.
    let pulling = Instant::now();
    let results = rt.block_on(all(experts
        .iter()
        .zip(&tokens)
        .map(|((_, node, _), token)| {
            tokio::spawn(work_queue(cluster.options(&[*node], Some(token))))
        })
        .collect()));
    let pulling_took = pulling.elapsed();

    let mut times_pulled: HashMap<SessionCode, usize> = HashMap::new();
    for ((name, node, [team]), result) in experts.iter().zip(&results) {
        let pulled = result
            .as_ref()
            .unwrap_or_else(|e| panic!("expert {name} on n{}: {e}", node + 1));
        let mut last: Option<usize> = None;
        for code in pulled {
            *times_pulled.entry(*code).or_default() += 1;
            let (place, group) = *rank
                .get(code)
                .unwrap_or_else(|| panic!("{name} pulled {code}, which was not in line"));
            assert_eq!(group, *team, "{name} of {team} pulled {code} of {group}");
            assert!(
                last.is_none_or(|before| before < place),
                "{name} pulled {code} (place {place} in line) after place {last:?}: {pulled:?}"
            );
            last = Some(place);
        }
    }
    let twice: Vec<_> = times_pulled.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "cases pulled more than once: {twice:?}");
    let never: Vec<_> = codes
        .iter()
        .filter(|c| !times_pulled.contains_key(c))
        .collect();
    assert!(never.is_empty(), "cases never pulled: {never:?}");
    let left = admin.queue(&[1]);
    assert!(left.is_empty(), "still waiting: {left:?}");

    // Each customer was paired once and saw its session end.
    rt.block_on(async {
        for (code, listen) in customers {
            let heard = tokio::time::timeout(PHASE_PATIENCE, listen)
                .await
                .unwrap_or_else(|_| panic!("{code}: the session never ended"))
                .expect("customer task");
            assert!(heard.paired == 1 && heard.ended, "{code}: {heard:?}");
        }
    });
    let closed = db.query_texts("SELECT count(*)::text FROM cases WHERE state = 'closed'");
    assert_eq!(
        closed,
        [Some(CUSTOMERS.to_string())],
        "every case closed once"
    );
    let per_expert: Vec<usize> = results.iter().flatten().map(Vec::len).collect();
    eprintln!(
        "1,000 cases: in line after {intake_took:.1?}, pulled after {pulling_took:.1?}, \
         test {:.1?}; pulls per expert {per_expert:?}",
        started.elapsed()
    );
}

// ---- 100,000 codes ----------------------------------------------------------------------

const CREATIONS: usize = 100_000;
const CREATORS_PER_NODE: usize = 16;

/// What one creating connection did: the codes it was given, and how often a node had no
/// code reserved at that moment and said to try again.
#[derive(Debug, Default)]
struct Created {
    codes: Vec<SessionCode>,
    no_code_yet: usize,
}

/// Creates `count` cases on one expert connection to the nodes `options` names, one
/// after another. A node that has used up the codes it reserved says so ("no free
/// session code right now ... try again in a moment", an internal error) until its next
/// reservation; a node whose lease lapsed (a machine too loaded to renew it in time) says
/// it "cannot reach the cluster's database right now" until it renews. Both refusals
/// create nothing and ask to try again: they are retried after a moment and counted;
/// anything else fails.
async fn create_cases(options: ConnectOptions, count: usize) -> Result<Created, String> {
    let mut client = Client::connect(&options)
        .await
        .map_err(|e| format!("connect to {}: {e}", options.server))?;
    let mut created = Created::default();
    let deadline = Instant::now() + PHASE_PATIENCE;
    while created.codes.len() < count {
        let request = Request::Create {
            customer: format!("customer {}", created.codes.len()),
            description: String::new(),
        };
        match client.request(request).await {
            Ok(Reply::Created(case)) => created.codes.push(case.code),
            Ok(other) => return Err(format!("create answered {other:?}")),
            Err(ClientError::Refused(refusal))
                if refusal.kind == ErrorKind::Internal
                    && (refusal.message.contains("no free session code")
                        || refusal
                            .message
                            .contains("cannot reach the cluster's database right now"))
                    && Instant::now() < deadline =>
            {
                created.no_code_yet += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                let done = created.codes.len();
                return Err(format!("create on {} after {done}: {e}", options.server));
            }
        }
    }
    client.close().await;
    Ok(created)
}

#[test]
fn a_hundred_thousand_cases_created_through_three_nodes_have_distinct_codes() {
    let _alone = one_at_a_time();
    let Some(db) = FreshDatabase::create() else {
        return;
    };
    let started = Instant::now();
    let cluster = Cluster::start(3, db.url(), "");
    let expert = cluster.add_user("maker", "expert");
    let rt = runtime();
    let _spawn_here = rt.enter();
    let creating = Instant::now();
    let connections = 3 * CREATORS_PER_NODE;
    let results = rt.block_on(all((0..connections)
        .map(|k| {
            // An even share, the first connections taking what does not divide.
            let share = CREATIONS / connections + usize::from(k < CREATIONS % connections);
            tokio::spawn(create_cases(
                cluster.options(&[k % 3], Some(&expert)),
                share,
            ))
        })
        .collect()));
    let creating_took = creating.elapsed();
    let (mut codes, mut per_node, mut no_code_yet) = (Vec::new(), [0usize; 3], 0);
    for (k, result) in results.iter().enumerate() {
        let created = result
            .as_ref()
            .unwrap_or_else(|e| panic!("connection {k}: {e}"));
        codes.extend(created.codes.iter().map(|code| code.number()));
        per_node[k % 3] += created.codes.len();
        no_code_yet += created.no_code_yet;
    }
    assert_eq!(codes.len(), CREATIONS, "every creation answered");
    let distinct: BTreeSet<u64> = codes.iter().copied().collect();
    assert_eq!(distinct.len(), CREATIONS, "no code handed out twice");

    // The store holds exactly those cases, each code once.
    let counts = "SELECT count(*)::text || ' ' || count(DISTINCT code)::text FROM cases";
    let expected = format!("{CREATIONS} {CREATIONS}");
    assert_eq!(
        db.query_texts(counts),
        [Some(expected)],
        "rows, distinct codes"
    );
    let stored: BTreeSet<u64> = db
        .query_texts("SELECT code::text FROM cases")
        .into_iter()
        .map(|code| code.and_then(|c| c.parse().ok()).expect("a stored code"))
        .collect();
    assert!(
        stored == distinct,
        "the store holds other codes than the replies named"
    );
    eprintln!(
        "100,000 codes: created in {creating_took:.1?} ({per_node:?} per node, {no_code_yet} \
         'no free session code' or lapsed-lease refusals retried), test {:.1?}",
        started.elapsed()
    );
}

// ---- kill -9 at random moments ----------------------------------------------------------

const ROUNDS: usize = 20;
/// Waiting customers started per node and round.
const WAITING_PER_NODE: usize = 2;

/// A short lease, so a dead node's cases move within a second; pings every half second
/// and a two-second idle timeout, so its parties notice within two.
const FAILOVER_CONFIG: &str = "lease = \"1s\"\nkeep_alive = \"500ms\"\nidle_timeout = \"2s\"\n";

fn code_of(event: &Value) -> SessionCode {
    event["code"]
        .as_str()
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no code in {event}"))
}

/// What must not change about a waiting case when its node dies: its place in line.
fn place(case: &CaseInfo) -> impl PartialEq + std::fmt::Debug {
    let (created, due, expires) = (case.created_at, case.response_due, case.expires_at);
    (created, case.priority, due, expires, case.group.clone())
}

fn said_reconnecting(session: &Session) -> bool {
    let lines = session.stderr.lock().unwrap_or_else(|p| p.into_inner());
    lines.iter().any(|line| line.contains("reconnecting"))
}

#[test]
fn twenty_kill_9s_at_random_moments_lose_no_case_place_or_session() {
    let _alone = one_at_a_time();
    let Some(db) = FreshDatabase::create() else {
        return;
    };
    let mut rng = seeded("kill -9 rounds");
    let started = Instant::now();
    let mut cluster = Cluster::start(3, db.url(), FAILOVER_CONFIG);
    let tokens = cluster.add_users(&[("ana", "expert", &[]), ("root", "admin", &[])]);
    let rt = runtime();
    let (admin, expert) = (
        Asker::new(&rt, &cluster, &tokens[1]),
        Asker::new(&rt, &cluster, &tokens[0]),
    );
    let mut acknowledged: BTreeSet<SessionCode> = BTreeSet::new();
    let mut failovers = Vec::new();

    for round in 1..=ROUNDS {
        // Real `sosq request` customers wait, given every node, the first named in turn
        // (each lands on the first node that answers, not always the first named); one
        // more is in a session with the expert, who comes in through another node than
        // the one the customer named first and is sent to the customer's.
        let mut waiting: Vec<Session> = Vec::new();
        for first in 0..3 {
            for k in 0..WAITING_PER_NODE {
                let (name, priority) = (format!("w{round}.{first}.{k}"), random_priority(&mut rng));
                let args = ["request", "--name", &name, "--priority", priority.as_str()];
                waiting.push(cluster.session(&cluster.starting_at(first), None, &args));
            }
        }
        let first = rng.random_range(0..3);
        let name = format!("s{round}");
        let mut customer = cluster.session(
            &cluster.starting_at(first),
            None,
            &["request", "--name", &name],
        );
        let codes: Vec<SessionCode> = waiting
            .iter_mut()
            .map(|session| code_of(&session.expect_event("attached")))
            .collect();
        let code = code_of(&customer.expect_event("attached"));
        acknowledged.extend(codes.iter().chain([&code]));
        let entrance = (first + rng.random_range(1..3)) % 3;
        let connect = ["connect", &code.to_string()];
        let mut pro = cluster.session(&cluster.starting_at(entrance), Some(&tokens[0]), &connect);
        assert_eq!(code_of(&pro.expect_event("paired")), code);
        customer.expect_event("paired");
        relay_both_ways(&mut customer, &mut pro, 20_000, round as u64 * 10);

        // The line, each waiting case's place in it, and which node serves which case.
        let line = wait_until(
            "the round's customers online in line",
            PHASE_PATIENCE,
            || {
                let entries = admin.queue(&[0, 1, 2]);
                let all = entries.len() == codes.len() && entries.iter().all(|e| e.online);
                all.then(|| entries.iter().map(|e| e.code).collect::<Vec<_>>())
            },
        );
        let places: HashMap<SessionCode, _> = line
            .iter()
            .map(|c| (*c, place(&admin.status(&[0, 1, 2], *c))))
            .collect();
        let home = homes(&db);

        let moment = Duration::from_millis(rng.random_range(0..1_500));
        let victim = rng.random_range(0..3);
        std::thread::sleep(moment);
        let hit = codes.iter().filter(|c| home[c] == victim).count();
        let session_hit = home[&code] == victim;
        eprintln!(
            "round {round}: kill -9 n{} {moment:?} after the session ran; it served {hit} \
             waiting customers{}",
            victim + 1,
            if session_hit { " and the session" } else { "" },
        );
        let killed = Instant::now();
        cluster.node_mut(victim).kill9();
        let survivors: Vec<usize> = cluster.starting_at(victim)[1..].to_vec();

        // Its waiting customers come back to their own cases on a survivor, in line.
        for (session, code) in waiting
            .iter_mut()
            .zip(&codes)
            .filter(|(_, c)| home[c] == victim)
        {
            session.expect_event("reconnecting");
            session.expect_event("reconnected");
            let back = session.expect_event("attached");
            assert_eq!(code_of(&back), *code, "back on its own case");
            assert!(back["position"].is_u64(), "in line again: {back}");
        }
        // The session goes on: re-paired on a survivor if its node died.
        if session_hit {
            for side in [&mut customer, &mut pro] {
                side.expect_event("reconnecting");
                side.expect_event("reconnected");
            }
            assert_eq!(
                code_of(&pro.expect_event("paired")),
                code,
                "the expert re-pairs"
            );
            customer.expect_event("paired");
        }
        relay_both_ways(&mut customer, &mut pro, 20_000, round as u64 * 10 + 5);
        let line_after = wait_until("everyone online in line again", PHASE_PATIENCE, || {
            let entries = admin.queue(&survivors);
            let all = entries.len() == line.len() && entries.iter().all(|e| e.online);
            all.then(|| entries.iter().map(|e| e.code).collect::<Vec<_>>())
        });
        failovers.push(killed.elapsed());
        assert_eq!(line_after, line, "round {round}: the line kept its order");
        for survivor in &survivors {
            for c in &line {
                let case = admin.status(&[*survivor], *c);
                assert_eq!(place(&case), places[c], "{c} kept its place");
                assert!(
                    case.state == CaseState::Pending && case.customer_online,
                    "{case:?}"
                );
            }
            let case = admin.status(&[*survivor], code);
            assert_eq!(case.state, CaseState::InProgress, "{case:?}");
            assert_eq!(case.expert.as_deref(), Some("ana"), "{case:?}");
        }
        for (session, code) in waiting
            .iter()
            .zip(&codes)
            .filter(|(_, c)| home[c] != victim)
        {
            let (on, dead) = (home[code] + 1, victim + 1);
            assert!(
                !said_reconnecting(session),
                "{code} on n{on} was disturbed by n{dead}'s death"
            );
        }
        // Nothing acknowledged, in this round or before, is lost.
        let stored: BTreeSet<SessionCode> =
            admin.cases(&survivors).iter().map(|c| c.code).collect();
        assert_eq!(stored, acknowledged, "round {round}: the stored cases");

        // The node comes back, and the round's cases are closed through it.
        cluster.node_mut(victim).restart();
        for c in line.iter().chain([&code]) {
            let close = Request::Close {
                code: c.to_string(),
                resume_secret: None,
            };
            match expert.ask(&[victim], close) {
                Reply::Case(case) => assert_eq!(case.state, CaseState::Closed, "{case:?}"),
                other => panic!("close {c}: {other:?}"),
            }
        }
    }
    failovers.sort();
    eprintln!(
        "kill -9 rounds: {ROUNDS} in {:.1?}; kill to everyone back in line, sorted: {failovers:.1?}",
        started.elapsed()
    );
}
