//! The attachments' part of the store contract (`contract.rs` runs it on every backend):
//! kept with their case, listed oldest first, read back in parts byte for byte, deleted
//! with their case however it goes (by code, by selection, by retention's delete), never
//! made for a case that is gone, and, for the durable stores, there after a restart.

use std::path::Path;
use std::sync::Arc;

use sosq::protocol::{AttachmentInfo, CaseState, Timestamp};

use super::contract::{case, code, commit, Make};
use super::CaseStore;
use crate::broker::{AttachmentBytes, CaseSelection, Persist, StoredAttachment};

/// A file of `len` bytes that differ from one offset to the next, so a part read from the
/// wrong place shows.
fn bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn attachment(id: u32, name: &str, len: usize) -> StoredAttachment {
    StoredAttachment {
        info: AttachmentInfo {
            id,
            name: name.into(),
            content_type: "image/png".into(),
            size: len as u64,
            attached_at: Timestamp(5_000 + u64::from(id)),
        },
        bytes: AttachmentBytes::new(bytes(len)),
    }
}

/// The attach of case `n`'s attachment `id`, after a save of the case counting it.
fn attach(n: u64, id: u32, name: &str, len: usize) -> Vec<Persist> {
    let mut record = case(n, CaseState::Pending, 1_000, 2_000);
    record.attachments = id;
    record.last_message = Some(format!("see {name}"));
    vec![
        Persist::Save(record),
        Persist::Attach {
            code: code(n),
            attachment: attachment(id, name, len),
        },
    ]
}

/// Reads attachment `id` of case `n` whole, part by part as a client does.
fn read_whole(store: &Arc<dyn CaseStore>, n: u64, id: u32) -> Vec<u8> {
    let mut whole = Vec::new();
    loop {
        let (total, part) = store
            .attachment_part(code(n), id, whole.len() as u64, 32 * 1024)
            .unwrap()
            .expect("the attachment is there");
        if part.is_empty() {
            assert_eq!(whole.len() as u64, total);
            return whole;
        }
        whole.extend_from_slice(&part);
    }
}

/// Attach, list, read in parts, and delete with the case every way a case goes.
pub(super) async fn keeps_attachments_with_their_case(make: Make) {
    let dir = tempfile::tempdir().unwrap();
    let store = make(dir.path());
    assert_eq!(store.attachments(code(1)).unwrap(), Vec::new());
    assert_eq!(store.attachment_part(code(1), 1, 0, 10).unwrap(), None);

    let big = 100 * 1024 + 17;
    commit(&store, attach(1, 1, "error.png", big)).await;
    commit(&store, attach(1, 2, "log.txt", 10)).await;
    let listed = store.attachments(code(1)).unwrap();
    assert_eq!(
        listed,
        vec![
            attachment(1, "error.png", big).info,
            attachment(2, "log.txt", 10).info
        ]
    );
    let stored = store.get(code(1)).unwrap().expect("the case");
    assert_eq!(stored.attachments, 2);
    assert_eq!(stored.last_message.as_deref(), Some("see log.txt"));

    // Parts from any offset, the last one short, none at or past the end.
    assert_eq!(read_whole(&store, 1, 1), bytes(big));
    let (total, part) = store
        .attachment_part(code(1), 1, 1_000, 3)
        .unwrap()
        .unwrap();
    assert_eq!(
        (total, part.as_slice()),
        (big as u64, &bytes(big)[1_000..1_003])
    );
    let (_, tail) = store
        .attachment_part(code(1), 1, big as u64 - 2, 10)
        .unwrap()
        .unwrap();
    assert_eq!(tail, bytes(big)[big - 2..].to_vec());
    for past in [big as u64, big as u64 + 5, u64::MAX] {
        let (_, none) = store
            .attachment_part(code(1), 1, past, 10)
            .unwrap()
            .unwrap();
        assert!(none.is_empty(), "offset {past}");
    }
    assert_eq!(store.attachment_part(code(1), 3, 0, 10).unwrap(), None);

    // An attachment for a case that is not stored is not made.
    commit(
        &store,
        vec![Persist::Attach {
            code: code(9),
            attachment: attachment(1, "lost.png", 5),
        }],
    )
    .await;
    assert_eq!(store.attachments(code(9)).unwrap(), Vec::new());

    // Deleted with the case: by code, by selection, and a new case with the code starts
    // with none.
    commit(&store, attach(2, 1, "a.png", 5)).await;
    commit(&store, attach(3, 1, "b.png", 5)).await;
    assert_eq!(
        commit(&store, vec![Persist::Delete(vec![code(1)])]).await,
        vec![code(1)]
    );
    assert_eq!(store.attachments(code(1)).unwrap(), Vec::new());
    assert_eq!(store.attachment_part(code(1), 1, 0, 10).unwrap(), None);
    let by_state = CaseSelection {
        state: Some(CaseState::Pending),
        ..CaseSelection::default()
    };
    commit(&store, vec![Persist::DeleteWhere(by_state)]).await;
    assert_eq!(store.attachments(code(2)).unwrap(), Vec::new());
    assert_eq!(store.attachments(code(3)).unwrap(), Vec::new());
    commit(
        &store,
        vec![Persist::Save(case(1, CaseState::New, 9_000, 9_000))],
    )
    .await;
    assert_eq!(store.attachments(code(1)).unwrap(), Vec::new());
}

/// A durable store's attachments are there after it is closed and opened again: `reopen`
/// opens the store `make` made in the same directory.
pub(super) async fn attachments_survive_reopening(
    make: Make,
    reopen: fn(&Path) -> Arc<dyn CaseStore>,
) {
    let dir = tempfile::tempdir().unwrap();
    let store = make(dir.path());
    commit(&store, attach(4, 1, "error.png", 70_000)).await;
    drop(store);
    let store = reopen(dir.path());
    assert_eq!(
        store.attachments(code(4)).unwrap(),
        vec![attachment(1, "error.png", 70_000).info]
    );
    assert_eq!(read_whole(&store, 4, 1), bytes(70_000));
    assert_eq!(store.get(code(4)).unwrap().map(|r| r.attachments), Some(1));
}
