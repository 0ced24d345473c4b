//! Unit tests of the queue lines: positions counted from the nearer end, what a
//! customer is told and when, walks over several lines from a cursor.

use super::*;

/// The two-ended walk agrees with counting everyone before, wherever a case lands.
#[test]
fn position_counts_from_the_nearer_end() {
    let mut queue = Queue::default();
    let id = QueueId::Group(GENERAL.into());
    let priorities = [
        Priority::Normal,
        Priority::Critical,
        Priority::Low,
        Priority::High,
    ];
    let mut codes = Vec::new();
    for n in 0..41u64 {
        let code = SessionCode::from_number(n).expect("code");
        let priority = priorities[(n * 7 % 4) as usize];
        queue.push(code, id.clone(), priority, Timestamp(n % 5), Timestamp(n));
        codes.push(code);
        for code in &codes {
            let (line_id, place) = &queue.place[code];
            let counted = queue.lines[line_id].order.range(..*place).count() as u32 + 1;
            assert_eq!(queue.position(*code), Some(counted));
        }
    }
    queue.remove(codes[3]);
    assert_eq!(queue.position(codes[3]), None);
    let order = queue.positions();
    for (code, position) in order {
        assert_eq!(queue.position(code), Some(position));
    }
}

/// A case told its position directly is not reported again unless it moves.
#[test]
fn a_told_arrival_is_reported_only_when_it_moves() {
    let mut queue = Queue::default();
    let id = QueueId::Group(GENERAL.into());
    let code = |n| SessionCode::from_number(n).expect("code");
    let push = |queue: &mut Queue, n: u64, priority| {
        queue.push(code(n), id.clone(), priority, Timestamp(0), Timestamp(n));
    };
    push(&mut queue, 1, Priority::Normal);
    push(&mut queue, 2, Priority::Normal);
    let _ = queue.take_moved();
    // At the back: nobody moved, nobody to tell.
    push(&mut queue, 3, Priority::Normal);
    queue.told(code(3), 3);
    assert_eq!(queue.take_moved(), vec![]);
    // Ahead of others: those behind it moved, it did not.
    push(&mut queue, 4, Priority::Critical);
    queue.told(code(4), 1);
    let moved = queue.take_moved();
    assert_eq!(moved, vec![(code(1), 2), (code(2), 3), (code(3), 4)]);
    // Told, but a case ahead left in the same batch: it is reported with its new place.
    push(&mut queue, 5, Priority::Normal);
    queue.remove(code(4));
    queue.told(code(5), 5);
    let moved = queue.take_moved();
    assert!(moved.contains(&(code(5), 4)), "{moved:?}");
}

/// A case taken out and put back at the same position (re-prioritised without passing
/// anyone, or routed to a line where it is first again) is not reported; a real move
/// is, and so is a case that comes back online after being away.
#[test]
fn a_case_put_back_at_the_same_position_is_not_reported() {
    let mut queue = Queue::default();
    let general = QueueId::Group(GENERAL.into());
    let billing = QueueId::Group("billing".into());
    let bo = QueueId::Expert("bo".into());
    let code = |n| SessionCode::from_number(n).expect("code");
    queue.push(
        code(1),
        general.clone(),
        Priority::Normal,
        Timestamp(0),
        Timestamp(1),
    );
    queue.told(code(1), 1);
    queue.push(
        code(2),
        billing.clone(),
        Priority::Normal,
        Timestamp(0),
        Timestamp(2),
    );
    assert_eq!(queue.take_moved(), vec![(code(2), 1)]);
    // Escalated, still first: nothing to tell.
    queue.push(
        code(1),
        general.clone(),
        Priority::Critical,
        Timestamp(0),
        Timestamp(1),
    );
    assert_eq!(queue.take_moved(), vec![]);
    // Assigned to an expert with nobody else in line: first again, nothing to tell.
    queue.push(code(1), bo, Priority::Critical, Timestamp(0), Timestamp(1));
    assert_eq!(queue.take_moved(), vec![]);
    // Routed to billing behind a more urgent case: it moved, and only it.
    queue.push(
        code(2),
        billing.clone(),
        Priority::High,
        Timestamp(0),
        Timestamp(2),
    );
    let _ = queue.take_moved();
    queue.push(
        code(1),
        billing.clone(),
        Priority::Normal,
        Timestamp(0),
        Timestamp(1),
    );
    assert_eq!(queue.take_moved(), vec![(code(1), 2)]);
    // Away and back at the same place: told again, it had no position meanwhile.
    queue.push_away(
        code(1),
        billing.clone(),
        Priority::Normal,
        Timestamp(0),
        Timestamp(1),
    );
    assert_eq!(queue.take_moved(), vec![]);
    queue.push(
        code(1),
        billing,
        Priority::Normal,
        Timestamp(0),
        Timestamp(1),
    );
    assert_eq!(queue.take_moved(), vec![(code(1), 2)]);
}

/// Counting the cases up to a place from the nearer end agrees with counting everyone
/// up to it, for places in line and places that left it.
#[test]
fn up_to_counts_the_cases_at_or_before_a_place() {
    let mut queue = Queue::default();
    let id = QueueId::Group(GENERAL.into());
    for n in 0..25u64 {
        let code = SessionCode::from_number(n).expect("code");
        let priority = Priority::ALL[(n % 4) as usize];
        queue.push(code, id.clone(), priority, Timestamp(n % 3), Timestamp(n));
    }
    let places: Vec<Place> = queue.lines[&id].order.keys().copied().collect();
    for (i, place) in places.iter().enumerate() {
        assert_eq!(queue.up_to(&id, *place), i as u32 + 1);
    }
    let gone = queue.place[&SessionCode::from_number(7).expect("code")].1;
    let before = queue.up_to(&id, gone);
    queue.remove(SessionCode::from_number(7).expect("code"));
    assert_eq!(queue.up_to(&id, gone), before - 1);
    assert_eq!(queue.up_to(&QueueId::Expert("nobody".into()), gone), 0);
}

/// Walking several lines from any cursor gives the merged order from there on.
#[test]
fn a_walk_merges_lines_in_pull_order_from_a_cursor() {
    let mut queue = Queue::default();
    let ids = [
        QueueId::Group(GENERAL.into()),
        QueueId::Group("billing".into()),
        QueueId::Expert("ana".into()),
    ];
    for n in 0..30u64 {
        let code = SessionCode::from_number(n).expect("code");
        let priority = Priority::ALL[(n % 4) as usize];
        let id = ids[(n % 3) as usize].clone();
        queue.push(code, id, priority, Timestamp(n % 7), Timestamp(n));
    }
    let merged = queue.among(&ids[..2]);
    let walked: Vec<SessionCode> = queue
        .walk(Some(&ids[..2]), None, false)
        .map(|(_, c)| c)
        .collect();
    assert_eq!(walked, merged);
    assert_eq!(queue.count(Some(&ids[..2])), merged.len());
    for cut in 0..merged.len() {
        let after = queue.place[&merged[cut]].1;
        let rest: Vec<SessionCode> = queue
            .walk(Some(&ids[..2]), Some(after), false)
            .map(|(_, c)| c)
            .collect();
        assert_eq!(rest, merged[cut + 1..].to_vec());
    }
    let everything: Vec<SessionCode> = queue.walk(None, None, true).map(|(_, c)| c).collect();
    assert_eq!(everything, queue.iter().collect::<Vec<_>>());
}

/// `take_moved` reports every case whose position changed, with the right position:
/// what each waiting case was last told is where it stands.
#[test]
fn take_moved_covers_every_changed_position() {
    let mut queue = Queue::default();
    let id = QueueId::Group(GENERAL.into());
    let mut known: HashMap<SessionCode, u32> = HashMap::new();
    for n in 0..60u64 {
        let code = SessionCode::from_number(n).expect("code");
        let priority = if n % 9 == 0 {
            Priority::Critical
        } else {
            Priority::Normal
        };
        queue.push(code, id.clone(), priority, Timestamp(0), Timestamp(n));
        if n % 7 == 3 {
            if let Some(front) = queue.front() {
                queue.remove(front);
            }
        }
        for (code, position) in queue.take_moved() {
            known.insert(code, position);
        }
        for (code, position) in queue.positions() {
            assert_eq!(known.get(&code), Some(&position), "{code}");
        }
    }
}
